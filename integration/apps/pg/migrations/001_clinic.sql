-- The clinic schema, hand-written as a node-postgres team would.
CREATE TABLE patients (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    ssn        text NOT NULL UNIQUE,
    first_name text NOT NULL,
    last_name  text NOT NULL,
    birthdate  date NOT NULL,
    address    text,
    marital    char(1),
    gender     char(1) NOT NULL CHECK (gender IN ('F', 'M', 'O', 'U')),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE encounters (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    patient_id  uuid NOT NULL REFERENCES patients (id) ON DELETE CASCADE,
    code        text NOT NULL,
    description text,
    started_at  timestamptz NOT NULL
);

CREATE INDEX encounters_patient_id_idx ON encounters (patient_id);
CREATE INDEX encounters_started_at_idx ON encounters (started_at);
