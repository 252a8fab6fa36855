-- Clinical facts about a patient, one row per careplan.
CREATE TABLE careplans (
    id                uuid PRIMARY KEY,
    start             date NOT NULL,
    stop              date,
    patient           uuid NOT NULL REFERENCES patients,
    encounter         uuid REFERENCES encounters,
    code              text,
    description       text,
    reasoncode        text,
    reasondescription text
);
