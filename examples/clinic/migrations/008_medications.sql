-- Clinical facts about a patient, one row per medication.
CREATE TABLE medications (
    start             timestamptz NOT NULL,
    stop              timestamptz,
    patient           uuid NOT NULL REFERENCES patients,
    payer             uuid,
    encounter         uuid REFERENCES encounters,
    code              text,
    description       text,
    base_cost         numeric,
    payer_coverage    numeric,
    dispenses         numeric,
    totalcost         numeric,
    reasoncode        text,
    reasondescription text
);
