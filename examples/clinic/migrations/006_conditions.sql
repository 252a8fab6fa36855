-- Clinical facts about a patient, one row per condition.
CREATE TABLE conditions (
    start       date NOT NULL,
    stop        date,
    patient     uuid NOT NULL REFERENCES patients,
    encounter   uuid REFERENCES encounters,
    system      text,
    code        text,
    description text
);
