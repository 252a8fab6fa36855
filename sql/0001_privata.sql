-- The schema privata: Privata's own objects in every cluster.
--
-- Everything here is idempotent: installing the file again changes nothing
-- that is already in place. Objects that `privata apply` derives from a
-- policy (roles, the split tables, their views) are not created here.
CREATE SCHEMA IF NOT EXISTS privata;
GRANT USAGE ON SCHEMA privata TO PUBLIC;

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

-- Session context. The proxy sets these settings for each session or
-- statement; SQL (views, triggers, the audit) reads them here. An unset or
-- empty setting reads as NULL (break_glass as false).
CREATE OR REPLACE FUNCTION privata.actor() RETURNS text
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN NULLIF(pg_catalog.current_setting('privata.actor', true), '');

CREATE OR REPLACE FUNCTION privata.purpose() RETURNS text
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN NULLIF(pg_catalog.current_setting('privata.purpose', true), '');

CREATE OR REPLACE FUNCTION privata.break_glass() RETURNS boolean
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN COALESCE(
        NULLIF(pg_catalog.current_setting('privata.break_glass', true), '')::boolean,
        false);

-- What `privata apply` recorded about this cluster: its name in
-- privata.yaml and the home regions whose subjects it stores. Readable by
-- everyone: row-level security checks new rows against regions().
CREATE TABLE IF NOT EXISTS privata.settings (
    one            boolean PRIMARY KEY DEFAULT true CHECK (one),
    cluster        text NOT NULL,
    regions        text[] NOT NULL,
    default_region text NOT NULL
);
GRANT SELECT ON privata.settings TO PUBLIC;

-- The home regions this cluster serves.
CREATE OR REPLACE FUNCTION privata.regions() RETURNS text[]
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN (SELECT s.regions FROM privata.settings s);

-- The registry of split tables: what `privata apply` converted, how, and
-- hashes of what it derived (derived_hash: the SQL of the views, triggers,
-- grants and policies; catalog_hash: privata.fingerprint() right after
-- apply), so that plan can tell "nothing to do" from a change or a drift.
CREATE TABLE IF NOT EXISTS privata.tables (
    schema_name      text NOT NULL,
    table_name       text NOT NULL,
    kind             text NOT NULL CHECK (kind IN ('subject', 'child')),
    -- subject tables: the key column
    key_column       text,
    -- child tables: the subject table, and the column that held its key
    subject_schema   text,
    subject_table    text,
    reference_column text,
    reference_type   text,
    -- the application's columns, in order
    columns          text[] NOT NULL,
    -- the grants the original table carried, kept on the view
    -- (grantee, privilege, grantable), as aclexplode() gives them
    app_grants       text[] NOT NULL,
    derived_hash     text NOT NULL,
    catalog_hash     text NOT NULL,
    applied_at       timestamptz NOT NULL,
    PRIMARY KEY (schema_name, table_name),
    CHECK ((kind = 'subject') = (key_column IS NOT NULL)),
    CHECK ((kind = 'child') = (reference_column IS NOT NULL))
);
GRANT SELECT ON privata.tables TO PUBLIC;

-- fingerprint describes, as a hash, every object Privata derives for the
-- split table schema_name.table_name: the application's view, the access
-- views, the upsert views, the base tables, their columns, grants,
-- triggers, row-level security policies, constraints and indexes, and the
-- trigger functions.
-- A change made behind Privata's back (a dropped trigger, a changed grant)
-- changes it.
CREATE OR REPLACE FUNCTION privata.fingerprint(schema_name text, table_name text)
    RETURNS text
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $fingerprint$
WITH rels AS (
    SELECT c.oid, c.relname, n.nspname
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE (n.nspname, c.relname) IN (
        (schema_name, table_name),
        ('privata_identity', table_name),
        ('privata_clinical', table_name),
        ('privata_access', table_name || '_identity'),
        ('privata_access', table_name || '_clinical'),
        ('privata_access', table_name || '_upsert'),
        ('privata_access', table_name || '_apply'),
        ('privata_access', table_name || '_echo'))
), parts AS (
    SELECT format('rel %s.%s %s %s %s %s %s %s %s %s', r.nspname, r.relname, c.relkind,
                  pg_get_userbyid(c.relowner), c.relacl, c.reloptions, c.relrowsecurity,
                  c.relforcerowsecurity, c.relreplident,
                  CASE WHEN c.relkind = 'v' THEN pg_get_viewdef(c.oid) END) AS part
    FROM rels r JOIN pg_class c ON c.oid = r.oid
    UNION ALL
    SELECT format('col %s.%s %s %s %s %s %s%s %s %s', r.nspname, r.relname, a.attnum, a.attname,
                  format_type(a.atttypid, a.atttypmod), a.attnotnull, a.attidentity,
                  a.attgenerated, a.attacl, pg_get_expr(d.adbin, d.adrelid))
    FROM rels r
    JOIN pg_attribute a ON a.attrelid = r.oid AND NOT a.attisdropped
    LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
    WHERE a.attnum > 0 OR a.attacl IS NOT NULL
    UNION ALL
    SELECT format('trigger %s.%s %s %s', r.nspname, r.relname, t.tgenabled, pg_get_triggerdef(t.oid))
    FROM rels r JOIN pg_trigger t ON t.tgrelid = r.oid AND NOT t.tgisinternal
    UNION ALL
    SELECT format('policy %s.%s %s %s %s %s %s %s', r.nspname, r.relname, p.polname, p.polcmd,
                  p.polpermissive, p.polroles::regrole[], pg_get_expr(p.polqual, p.polrelid),
                  pg_get_expr(p.polwithcheck, p.polrelid))
    FROM rels r JOIN pg_policy p ON p.polrelid = r.oid
    UNION ALL
    SELECT format('constraint %s.%s %s %s', r.nspname, r.relname, k.conname,
                  pg_get_constraintdef(k.oid))
    FROM rels r JOIN pg_constraint k ON k.conrelid = r.oid
    UNION ALL
    SELECT format('index %s', pg_get_indexdef(i.indexrelid))
    FROM rels r JOIN pg_index i ON i.indrelid = r.oid
    UNION ALL
    SELECT format('function %s %s %s %s %s %s', p.proname, pg_get_userbyid(p.proowner),
                  p.prosecdef, p.proconfig, p.proacl, p.prosrc)
    FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
    WHERE n.nspname = 'privata_access'
      AND p.proname IN (table_name || '_insert', table_name || '_update', table_name || '_delete',
                        table_name || '_upsert', table_name || '_apply', table_name || '_echo')
)
SELECT encode(sha256(convert_to(coalesce(string_agg(part, E'\n' ORDER BY part COLLATE "C"), ''),
                                'UTF8')), 'hex')
FROM parts
$fingerprint$;

-- Masking. A role with masked access to a class of data reads these
-- functions' results instead of the values; each keeps the column's type
-- (the generated views cast back to it). The names are the masks a policy
-- may name: redact, partial, last4, initial, year, hash.

-- redact (no value at all) is a NULL of the column's type in the views.

-- partial: the first and the last character, stars between; values of two
-- characters or fewer are all stars.
CREATE OR REPLACE FUNCTION privata.mask_partial(value text) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN CASE WHEN pg_catalog.length(value) <= 2 THEN pg_catalog.repeat('*', pg_catalog.length(value))
                ELSE pg_catalog.left(value, 1)
                     || pg_catalog.repeat('*', pg_catalog.length(value) - 2)
                     || pg_catalog.right(value, 1) END;

-- last4: stars, then the last four characters; values of four characters or
-- fewer are all stars.
CREATE OR REPLACE FUNCTION privata.mask_last4(value text) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN CASE WHEN pg_catalog.length(value) <= 4 THEN pg_catalog.repeat('*', pg_catalog.length(value))
                ELSE pg_catalog.repeat('*', pg_catalog.length(value) - 4) || pg_catalog.right(value, 4) END;

-- initial: the first character and a full stop.
CREATE OR REPLACE FUNCTION privata.mask_initial(value text) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN CASE WHEN value = '' THEN '' ELSE pg_catalog.left(value, 1) || '.' END;

-- year: the first of January of the value's year (for timestamptz, in UTC).
CREATE OR REPLACE FUNCTION privata.mask_year(value date) RETURNS date
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN pg_catalog.date_trunc('year', value::timestamp)::date;

CREATE OR REPLACE FUNCTION privata.mask_year(value timestamp) RETURNS timestamp
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN pg_catalog.date_trunc('year', value);

CREATE OR REPLACE FUNCTION privata.mask_year(value timestamptz) RETURNS timestamptz
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN pg_catalog.date_trunc('year', value, 'UTC');

-- hash: HMAC-SHA-256 with a key of this cluster. Equal values give equal
-- hashes, so masked columns can still be grouped and joined. The key is
-- readable only by privata_owner, which owns the access views: the views
-- compute the hash inline (see storage/masks.go), and no function offers it,
-- so a role cannot hash its own guesses to compare them with masked values.
CREATE TABLE IF NOT EXISTS privata.secrets (
    one       boolean PRIMARY KEY DEFAULT true CHECK (one),
    -- HMAC's inner and outer keys: the 64-byte key XOR 0x36, XOR 0x5c
    hash_ikey bytea NOT NULL,
    hash_okey bytea NOT NULL
);
REVOKE ALL ON privata.secrets FROM PUBLIC;

DO $secrets$
DECLARE
    k bytea;
    i bytea;
    o bytea;
BEGIN
    IF EXISTS (SELECT FROM privata.secrets) THEN
        RETURN;
    END IF;
    -- 64 bytes from four random UUIDs (gen_random_uuid uses the server's
    -- strong random source).
    k := pg_catalog.decode(pg_catalog.replace(
        pg_catalog.gen_random_uuid()::text || pg_catalog.gen_random_uuid()::text
        || pg_catalog.gen_random_uuid()::text || pg_catalog.gen_random_uuid()::text,
        '-', ''), 'hex');
    i := k;
    o := k;
    FOR n IN 0 .. 63 LOOP
        i := pg_catalog.set_byte(i, n, pg_catalog.get_byte(k, n) # 54);
        o := pg_catalog.set_byte(o, n, pg_catalog.get_byte(k, n) # 92);
    END LOOP;
    INSERT INTO privata.secrets (hash_ikey, hash_okey) VALUES (i, o);
END
$secrets$;
