-- Clinical facts about a patient, one row per observation.
CREATE TABLE observations (
    date        timestamptz NOT NULL,
    patient     uuid NOT NULL REFERENCES patients,
    encounter   uuid REFERENCES encounters,
    category    text,
    code        text,
    description text,
    value       text,
    units       text,
    type        text
);
