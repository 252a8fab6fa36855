-- Clinical facts about a patient, one row per immunization.
CREATE TABLE immunizations (
    date        timestamptz NOT NULL,
    patient     uuid NOT NULL REFERENCES patients,
    encounter   uuid REFERENCES encounters,
    code        text,
    description text,
    base_cost   numeric
);
