-- Clinical facts about a patient, one row per procedure.
CREATE TABLE procedures (
    start             timestamptz NOT NULL,
    stop              timestamptz,
    patient           uuid NOT NULL REFERENCES patients,
    encounter         uuid REFERENCES encounters,
    code              text,
    description       text,
    base_cost         numeric,
    reasoncode        text,
    reasondescription text
);
