-- Clinicians and the organization they work for (US set only).
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
