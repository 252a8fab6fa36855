-- Clinical facts about a patient, one row per encounter.
CREATE TABLE encounters (
    id                  uuid PRIMARY KEY,
    start               timestamptz NOT NULL,
    stop                timestamptz,
    patient             uuid NOT NULL REFERENCES patients,
    organization        uuid,
    provider            uuid,
    payer               uuid,
    encounterclass      text,
    code                text,
    description         text,
    base_encounter_cost numeric,
    total_claim_cost    numeric,
    payer_coverage      numeric,
    reasoncode          text,
    reasondescription   text
);
