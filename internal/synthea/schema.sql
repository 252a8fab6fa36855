-- The Synthea sample as plain tables, the way an application would keep
-- it before Privata: one table per CSV file, one column per CSV header (in
-- lower case), the union of the US and the Swedish sets' columns.
--
-- Types: ids are uuid, dates date, instants timestamptz, amounts and
-- measures numeric; codes stay text (some have leading zeros). Keys and
-- foreign keys are declared where both data sets satisfy them: the Swedish
-- set has no organizations, providers or payers, so encounters and
-- medications do not refer to those tables.

CREATE TABLE organizations (
    id          uuid PRIMARY KEY,
    name        text NOT NULL,
    address     text,
    city        text,
    state       text,
    zip         text,
    lat         numeric,
    lon         numeric,
    phone       text,
    revenue     numeric,
    utilization numeric
);

CREATE TABLE providers (
    id           uuid PRIMARY KEY,
    organization uuid REFERENCES organizations,
    name         text NOT NULL,
    gender       text,
    speciality   text,
    address      text,
    city         text,
    state        text,
    zip          text,
    lat          numeric,
    lon          numeric,
    utilization  numeric
);

CREATE TABLE payers (
    id                      uuid PRIMARY KEY,
    name                    text NOT NULL,
    address                 text,
    city                    text,
    state_headquartered     text,
    zip                     text,
    phone                   text,
    amount_covered          numeric,
    amount_uncovered        numeric,
    revenue                 numeric,
    covered_encounters      numeric,
    uncovered_encounters    numeric,
    covered_medications     numeric,
    uncovered_medications   numeric,
    covered_procedures      numeric,
    uncovered_procedures    numeric,
    covered_immunizations   numeric,
    uncovered_immunizations numeric,
    unique_customers        numeric,
    qols_avg                numeric,
    member_months           numeric
);

CREATE TABLE patients (
    id                  uuid PRIMARY KEY,
    birthdate           date NOT NULL,
    deathdate           date,
    ssn                 text,
    drivers             text,
    passport            text,
    prefix              text,
    first               text,
    middle              text,
    last                text,
    suffix              text,
    maiden              text,
    marital             text,
    race                text,
    ethnicity           text,
    gender              text,
    birthplace          text,
    address             text,
    city                text,
    state               text,
    county              text,
    fips                text,
    zip                 text,
    lat                 numeric,
    lon                 numeric,
    healthcare_expenses numeric,
    healthcare_coverage numeric,
    income              numeric
);

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

CREATE TABLE conditions (
    start       date NOT NULL,
    stop        date,
    patient     uuid NOT NULL REFERENCES patients,
    encounter   uuid REFERENCES encounters,
    system      text,
    code        text,
    description text
);

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

CREATE TABLE immunizations (
    date        timestamptz NOT NULL,
    patient     uuid NOT NULL REFERENCES patients,
    encounter   uuid REFERENCES encounters,
    code        text,
    description text,
    base_cost   numeric
);

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
