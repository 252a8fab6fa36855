-- Insurers (US set only).
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
