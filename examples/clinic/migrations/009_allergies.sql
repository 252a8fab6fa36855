-- Clinical facts about a patient, one row per allergy.
CREATE TABLE allergies (
    start        date NOT NULL,
    stop         date,
    patient      uuid NOT NULL REFERENCES patients,
    encounter    uuid REFERENCES encounters,
    code         text,
    system       text,
    description  text,
    type         text,
    category     text,
    reaction1    text,
    description1 text,
    severity1    text,
    reaction2    text,
    description2 text,
    severity2    text
);
