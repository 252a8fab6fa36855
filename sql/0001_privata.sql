-- The schema privata: Privata's own objects in every cluster.
CREATE SCHEMA IF NOT EXISTS privata;

CREATE TABLE IF NOT EXISTS privata.version (
    one          boolean PRIMARY KEY DEFAULT true CHECK (one),
    version      integer NOT NULL,
    hash         text NOT NULL,
    installed_at timestamptz NOT NULL
);

-- A pseudonym links a subject's identity row to its clinical rows. It is
-- random, never derived from the subject's key or data.
CREATE OR REPLACE FUNCTION privata.new_pseudonym() RETURNS uuid
    LANGUAGE sql VOLATILE PARALLEL SAFE
    RETURN pg_catalog.gen_random_uuid();
