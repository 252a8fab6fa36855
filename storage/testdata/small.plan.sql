-- Privata plan for cluster test (home regions it serves: us).
-- `privata apply` runs exactly this, as one transaction.

BEGIN;

-- Serialise with every other change Privata makes to this database.
SELECT pg_catalog.pg_advisory_xact_lock(31650994674824289);

-- The statements below name everything with its schema.
SET LOCAL search_path = pg_catalog, pg_temp;

-- Roles. privata_owner (no login, not a superuser) owns every derived object, so that
-- forced row-level security binds it too. Membership in the four group roles
-- privata_{identity,clinical}_{full,masked} is what the access views and the base tables'
-- grants look at. Missing policy roles are created without login.
GRANT SELECT ON privata.secrets TO "privata_owner";

-- Schemas for the base tables (privata_identity, privata_clinical) and the access views
-- (privata_access), owned by privata_owner. Policy roles may look names up in them; what
-- they may read is granted per table.
ALTER SCHEMA "privata_identity" OWNER TO "privata_owner";
GRANT USAGE ON SCHEMA "privata_identity" TO "clerk", "doctor", "nurse";
ALTER SCHEMA "privata_clinical" OWNER TO "privata_owner";
GRANT USAGE ON SCHEMA "privata_clinical" TO "clerk", "doctor", "nurse";
CREATE SCHEMA "privata_access" AUTHORIZATION "privata_owner";
GRANT USAGE ON SCHEMA "privata_access" TO "clerk", "doctor", "nurse";

-- Which home regions this cluster serves; row-level security refuses identity rows of
-- other regions.
INSERT INTO privata.settings (cluster, regions, default_region)
VALUES ('test', ARRAY['us']::text[], 'us')
ON CONFLICT (one) DO UPDATE SET cluster = EXCLUDED.cluster,
    regions = EXCLUDED.regions, default_region = EXCLUDED.default_region;

-- privata.region_of(value) computes a subject's home region: the policy has no residency
-- rule, so every subject lives in us.
CREATE OR REPLACE FUNCTION privata.region_of(value text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $body$
SELECT 'us'::text$body$;

-- Role memberships: each policy role is a member of exactly the group roles its access
-- implies.
GRANT "privata_identity_full" TO "clerk", "doctor";
GRANT "privata_identity_masked" TO "nurse";
GRANT "privata_clinical_full" TO "doctor", "nurse";

-- Keep every other session away from the tables this plan converts until it commits.
LOCK TABLE "public"."people", "public"."visits", "public"."findings" IN ACCESS EXCLUSIVE MODE;

-- Serial sequences move to the schema of the base table that will own them (PostgreSQL
-- keeps an owned sequence in its table's schema). Their values go on.
ALTER SEQUENCE "public"."people_id_seq" OWNED BY NONE;
ALTER SEQUENCE "public"."people_id_seq" SET SCHEMA "privata_identity";

-- Base tables, owned by privata_owner. A subject's identity table holds its key, a random
-- pseudonym, its home region and the identity columns; its clinical table holds the
-- pseudonym and the clinical columns. A child's clinical table holds its columns with the
-- subject's pseudonym in place of the reference column.
CREATE TABLE "privata_identity"."people" (
    "id" integer DEFAULT nextval('privata_identity.people_id_seq'::regclass) NOT NULL,
    "privata_pseudonym" uuid DEFAULT privata.new_pseudonym() NOT NULL,
    "privata_region" text NOT NULL,
    "ssn" text NOT NULL,
    "name" text NOT NULL,
    "born" date,
    "email" character varying(40) DEFAULT 'none@example.org'::character varying
);
ALTER TABLE "privata_identity"."people" OWNER TO "privata_owner";
COMMENT ON TABLE "privata_identity"."people" IS 'one row per person';
COMMENT ON COLUMN "privata_identity"."people"."ssn" IS 'social security number';
CREATE TABLE "privata_clinical"."people" (
    "privata_pseudonym" uuid NOT NULL,
    "blood" text,
    "note" text,
    "created" timestamp with time zone DEFAULT now() NOT NULL
);
ALTER TABLE "privata_clinical"."people" OWNER TO "privata_owner";
CREATE TABLE "privata_clinical"."visits" (
    "privata_pseudonym" uuid NOT NULL,
    "id" bigint GENERATED ALWAYS AS IDENTITY (SEQUENCE NAME "privata_clinical"."visits_id_seq" START WITH 1 INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 CACHE 1 NO CYCLE) NOT NULL,
    "at" timestamp with time zone DEFAULT now() NOT NULL,
    "reason" text NOT NULL,
    "cost" numeric(10,2)
);
ALTER TABLE "privata_clinical"."visits" OWNER TO "privata_owner";
CREATE TABLE "privata_clinical"."findings" (
    "privata_pseudonym" uuid,
    "visit" bigint,
    "code" text NOT NULL,
    "value" text
);
ALTER TABLE "privata_clinical"."findings" OWNER TO "privata_owner";

-- Copy the rows. Every subject gets a fresh random pseudonym and its home region from the
-- residency rule.
INSERT INTO "privata_identity"."people" ("id", "privata_region", "ssn", "name", "born", "email") OVERRIDING SYSTEM VALUE
SELECT t."id", privata.region_of(NULL), t."ssn", t."name", t."born", t."email"
  FROM "public"."people" t;

-- Copy the clinical rows, linked by pseudonym; children find their subject's pseudonym by
-- the key in their reference column.
INSERT INTO "privata_clinical"."people" ("privata_pseudonym", "blood", "note", "created") OVERRIDING SYSTEM VALUE
SELECT i."privata_pseudonym", t."blood", t."note", t."created"
  FROM "public"."people" t
  JOIN "privata_identity"."people" i ON i."id" = t."id";
INSERT INTO "privata_clinical"."visits" ("privata_pseudonym", "id", "at", "reason", "cost") OVERRIDING SYSTEM VALUE
SELECT s."privata_pseudonym", t."id", t."at", t."reason", t."cost"
  FROM "public"."visits" t
  LEFT JOIN "privata_identity"."people" s ON s."id" = t."person";
INSERT INTO "privata_clinical"."findings" ("privata_pseudonym", "visit", "code", "value") OVERRIDING SYSTEM VALUE
SELECT s."privata_pseudonym", t."visit", t."code", t."value"
  FROM "public"."findings" t
  LEFT JOIN "privata_identity"."people" s ON s."id" = t."person";

-- Recreate the original tables' keys, constraints and indexes on the base table that
-- holds their columns, under their original names.
ALTER TABLE "privata_identity"."people" ADD CONSTRAINT "people_pkey" PRIMARY KEY (id);
ALTER TABLE "privata_identity"."people" ADD CONSTRAINT "people_privata_pseudonym_key" UNIQUE ("privata_pseudonym");
ALTER TABLE "privata_clinical"."people" ADD CONSTRAINT "people_pkey" PRIMARY KEY ("privata_pseudonym");
ALTER TABLE "privata_clinical"."people" ADD CONSTRAINT "people_blood_check" CHECK ((blood = ANY (ARRAY['A'::text, 'B'::text, 'AB'::text, 'O'::text])));
ALTER TABLE "privata_identity"."people" ADD CONSTRAINT "people_born_check" CHECK ((born > '1900-01-01'::date));
ALTER TABLE "privata_identity"."people" ADD CONSTRAINT "people_ssn_key" UNIQUE (ssn);
CREATE INDEX people_name ON "privata_identity"."people" USING btree (lower(name));
CREATE INDEX "visits_privata_pseudonym_idx" ON "privata_clinical"."visits" ("privata_pseudonym");
ALTER TABLE "privata_clinical"."visits" ADD CONSTRAINT "visits_cost_check" CHECK ((cost >= (0)::numeric));
ALTER TABLE "privata_clinical"."visits" ADD CONSTRAINT "visits_pkey" PRIMARY KEY (id);
CREATE INDEX findings_person ON "privata_clinical"."findings" USING btree (privata_pseudonym);

-- Recreate the foreign keys between the base tables and to other tables, with their
-- actions. A child's reference to its subject becomes a foreign key on the pseudonym.
ALTER TABLE "privata_clinical"."visits" ADD CONSTRAINT "visits_person_fkey" FOREIGN KEY ("privata_pseudonym") REFERENCES "privata_clinical"."people" ("privata_pseudonym") ON UPDATE NO ACTION ON DELETE CASCADE;
ALTER TABLE "privata_clinical"."findings" ADD CONSTRAINT "findings_person_fkey" FOREIGN KEY ("privata_pseudonym") REFERENCES "privata_clinical"."people" ("privata_pseudonym") ON UPDATE NO ACTION ON DELETE RESTRICT;
ALTER TABLE "privata_clinical"."findings" ADD CONSTRAINT "findings_visit_fkey" FOREIGN KEY ("visit") REFERENCES "privata_clinical"."visits" ("id") ON UPDATE NO ACTION ON DELETE CASCADE;

-- Sequences: identity columns continue where they stood; moved serial sequences belong to
-- their new columns.
ALTER SEQUENCE "privata_identity"."people_id_seq" OWNER TO "privata_owner";
ALTER SEQUENCE "privata_identity"."people_id_seq" OWNED BY "privata_identity"."people"."id";
SELECT pg_catalog.setval('privata_clinical.visits_id_seq', s.last_value, s.is_called) FROM "public"."visits_id_seq" s;

-- Drop the original tables; the views below take their names.
DROP TABLE "public"."people", "public"."visits", "public"."findings";

-- public.people: a plain table converted in place. public.people becomes a view with the
-- original columns in their order. It reads the access views in privata_access, owned by
-- privata_owner, whose columns show each value in full, masked or not at all by the
-- reader's policy role. Defaults of the base tables are copied onto the view, so that
-- INSERT sees them.
CREATE OR REPLACE VIEW "privata_access"."people_identity" AS
SELECT t."id",
       t."privata_pseudonym",
       t."privata_region",
       CAST(CASE WHEN privata.has_access('privata_identity_full') THEN t."ssn"
                 WHEN privata.has_access('privata_identity_masked') THEN privata.mask_last4(t."ssn"::text) END AS text) AS "ssn",
       CAST(CASE WHEN privata.has_access('privata_identity_full') THEN t."name"
                 WHEN privata.has_access('privata_identity_masked') THEN privata.mask_partial(t."name"::text) END AS text) AS "name",
       CAST(CASE WHEN privata.has_access('privata_identity_full') THEN t."born"
                 WHEN privata.has_access('privata_identity_masked') THEN privata.mask_year(t."born"::date) END AS date) AS "born",
       CAST(CASE WHEN privata.has_access('privata_identity_full') THEN t."email"
                 WHEN privata.has_access('privata_identity_masked') THEN privata.mask_partial(t."email"::text) END AS character varying(40)) AS "email"
  FROM "privata_identity"."people" t;
ALTER VIEW "privata_access"."people_identity" OWNER TO "privata_owner";
CREATE OR REPLACE VIEW "privata_access"."people_clinical" AS
SELECT t."privata_pseudonym",
       CAST(CASE WHEN privata.has_access('privata_clinical_full') THEN t."blood"
                 WHEN privata.has_access('privata_clinical_masked') THEN privata.mask_partial(t."blood"::text) END AS text) AS "blood",
       CAST(CASE WHEN privata.has_access('privata_clinical_full') THEN t."note"
                 WHEN privata.has_access('privata_clinical_masked') THEN privata.mask_partial(t."note"::text) END AS text) AS "note",
       t."created"
  FROM "privata_clinical"."people" t;
ALTER VIEW "privata_access"."people_clinical" OWNER TO "privata_owner";
CREATE OR REPLACE VIEW "public"."people" WITH (security_invoker = true) AS
SELECT i."id",
       i."ssn",
       i."name",
       i."born",
       i."email",
       c."blood",
       c."note",
       c."created"
  FROM "privata_access"."people_identity" i
  LEFT JOIN "privata_access"."people_clinical" c ON c."privata_pseudonym" = i."privata_pseudonym";
ALTER VIEW "public"."people" OWNER TO "privata_owner";
COMMENT ON VIEW "public"."people" IS 'one row per person';
ALTER VIEW "public"."people" ALTER COLUMN "id" SET DEFAULT nextval('privata_identity.people_id_seq'::regclass);
COMMENT ON COLUMN "public"."people"."ssn" IS 'social security number';
ALTER VIEW "public"."people" ALTER COLUMN "email" SET DEFAULT 'none@example.org'::character varying;
ALTER VIEW "public"."people" ALTER COLUMN "created" SET DEFAULT now();

-- public.people: INSTEAD OF triggers split each row written to public.people: identity
-- columns to "privata_identity"."people", clinical columns to
-- "privata_clinical"."people", linked by a new random pseudonym. An update writes a base
-- table only when one of its columns changed, so a role that reads masked identity values
-- can still update clinical ones.
CREATE OR REPLACE FUNCTION "privata_access"."people_insert"() RETURNS trigger
    LANGUAGE plpgsql AS $body$
#variable_conflict use_column
DECLARE
    privata_p uuid;
BEGIN
    INSERT INTO "privata_identity"."people" ("id", "privata_region", "ssn", "name", "born", "email")
    VALUES (NEW."id", privata.region_of(NULL), NEW."ssn", NEW."name", NEW."born", NEW."email")
    RETURNING "privata_pseudonym" INTO privata_p;
    INSERT INTO "privata_clinical"."people" ("privata_pseudonym", "blood", "note", "created")
    VALUES (privata_p, NEW."blood", NEW."note", NEW."created");
    RETURN NEW;
END
$body$;
ALTER FUNCTION "privata_access"."people_insert"() OWNER TO "privata_owner";
REVOKE ALL ON FUNCTION "privata_access"."people_insert"() FROM PUBLIC;
CREATE OR REPLACE TRIGGER "privata_insert" INSTEAD OF INSERT ON "public"."people"
    FOR EACH ROW EXECUTE FUNCTION "privata_access"."people_insert"();
CREATE OR REPLACE FUNCTION "privata_access"."people_update"() RETURNS trigger
    LANGUAGE plpgsql AS $body$
#variable_conflict use_column
DECLARE
    privata_p uuid;
BEGIN
    IF NEW."id"::text IS DISTINCT FROM OLD."id"::text
        OR NEW."ssn"::text IS DISTINCT FROM OLD."ssn"::text
        OR NEW."name"::text IS DISTINCT FROM OLD."name"::text
        OR NEW."born"::text IS DISTINCT FROM OLD."born"::text
        OR NEW."email"::text IS DISTINCT FROM OLD."email"::text THEN
        IF NEW."id" IS DISTINCT FROM OLD."id" THEN
            SELECT "privata_pseudonym" INTO privata_p FROM "privata_identity"."people" WHERE "id" = OLD."id";
            IF EXISTS (SELECT FROM "privata_clinical"."visits" WHERE "privata_pseudonym" = privata_p) THEN
                RAISE EXCEPTION USING ERRCODE = 'foreign_key_violation', MESSAGE = 'update or delete on table "people" violates foreign key constraint "visits_person_fkey" on table "visits"',
                    DETAIL = 'Key (id) is still referenced from table "visits".', TABLE = 'people', CONSTRAINT = 'visits_person_fkey';
            END IF;
            IF EXISTS (SELECT FROM "privata_clinical"."findings" WHERE "privata_pseudonym" = privata_p) THEN
                RAISE EXCEPTION USING ERRCODE = 'foreign_key_violation', MESSAGE = 'update or delete on table "people" violates foreign key constraint "findings_person_fkey" on table "findings"',
                    DETAIL = 'Key (id) is still referenced from table "findings".', TABLE = 'people', CONSTRAINT = 'findings_person_fkey';
            END IF;
        END IF;
        UPDATE "privata_identity"."people"
           SET "id" = NEW."id",
               "ssn" = NEW."ssn",
               "name" = NEW."name",
               "born" = NEW."born",
               "email" = NEW."email",
               "privata_region" = privata.region_of(NULL)
         WHERE "id" = OLD."id"
        RETURNING "privata_pseudonym" INTO privata_p;
        IF NOT FOUND THEN
            RETURN NULL;
        END IF;
    END IF;
    IF NEW."blood"::text IS DISTINCT FROM OLD."blood"::text
        OR NEW."note"::text IS DISTINCT FROM OLD."note"::text
        OR NEW."created"::text IS DISTINCT FROM OLD."created"::text THEN
        IF privata_p IS NULL THEN
            SELECT "privata_pseudonym" INTO privata_p FROM "privata_identity"."people" WHERE "id" = OLD."id";
        END IF;
        UPDATE "privata_clinical"."people"
           SET "blood" = NEW."blood",
               "note" = NEW."note",
               "created" = NEW."created"
         WHERE "privata_pseudonym" = privata_p;
        IF NOT FOUND THEN
            RETURN NULL;
        END IF;
    END IF;
    RETURN NEW;
END
$body$;
ALTER FUNCTION "privata_access"."people_update"() OWNER TO "privata_owner";
REVOKE ALL ON FUNCTION "privata_access"."people_update"() FROM PUBLIC;
CREATE OR REPLACE TRIGGER "privata_update" INSTEAD OF UPDATE ON "public"."people"
    FOR EACH ROW EXECUTE FUNCTION "privata_access"."people_update"();
CREATE OR REPLACE FUNCTION "privata_access"."people_delete"() RETURNS trigger
    LANGUAGE plpgsql AS $body$
#variable_conflict use_column
DECLARE
    privata_p uuid;
BEGIN
    DELETE FROM "privata_identity"."people" WHERE "id" = OLD."id"
    RETURNING "privata_pseudonym" INTO privata_p;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    DELETE FROM "privata_clinical"."people" WHERE "privata_pseudonym" = privata_p;
    RETURN OLD;
END
$body$;
ALTER FUNCTION "privata_access"."people_delete"() OWNER TO "privata_owner";
REVOKE ALL ON FUNCTION "privata_access"."people_delete"() FROM PUBLIC;
CREATE OR REPLACE TRIGGER "privata_delete" INSTEAD OF DELETE ON "public"."people"
    FOR EACH ROW EXECUTE FUNCTION "privata_access"."people_delete"();

-- public.people: Upserts. PostgreSQL refuses INSERT ... ON CONFLICT on a view with
-- INSTEAD OF triggers, so Privata runs an upsert on public.people as inserts into three
-- views of privata_access that hold no rows: people_upsert (the proposed rows; its
-- trigger inserts each through public.people, or finds and locks the row it conflicts
-- with), people_apply (the new values of DO UPDATE SET, applied through public.people)
-- and people_echo (what the statement returns). They need the same rights as writing
-- public.people.
CREATE OR REPLACE VIEW "privata_access"."people_echo" AS
SELECT NULL::integer AS "id",
       NULL::text AS "ssn",
       NULL::text AS "name",
       NULL::date AS "born",
       NULL::character varying(40) AS "email",
       NULL::text AS "blood",
       NULL::text AS "note",
       NULL::timestamp with time zone AS "created"
 WHERE false;
CREATE OR REPLACE VIEW "privata_access"."people_upsert" AS
SELECT NULL::text[] AS "privata_on_conflict",
       NULL::integer AS "id",
       NULL::text AS "ssn",
       NULL::text AS "name",
       NULL::date AS "born",
       NULL::character varying(40) AS "email",
       NULL::text AS "blood",
       NULL::text AS "note",
       NULL::timestamp with time zone AS "created",
       NULL::boolean AS "privata_conflict", NULL::text AS "privata_target", NULL::"privata_access"."people_echo" AS "privata_old", NULL::"privata_access"."people_echo" AS "privata_new"
 WHERE false;
ALTER VIEW "privata_access"."people_upsert" ALTER COLUMN "id" SET DEFAULT nextval('privata_identity.people_id_seq'::regclass);
ALTER VIEW "privata_access"."people_upsert" ALTER COLUMN "email" SET DEFAULT 'none@example.org'::character varying;
ALTER VIEW "privata_access"."people_upsert" ALTER COLUMN "created" SET DEFAULT now();
CREATE OR REPLACE VIEW "privata_access"."people_apply" AS
SELECT NULL::text[] AS "privata_set", NULL::"privata_access"."people_echo" AS "privata_old", NULL::bigint AS "privata_ord",
       NULL::integer AS "id",
       NULL::text AS "ssn",
       NULL::text AS "name",
       NULL::date AS "born",
       NULL::character varying(40) AS "email",
       NULL::text AS "blood",
       NULL::text AS "note",
       NULL::timestamp with time zone AS "created",
       NULL::"privata_access"."people_echo" AS "privata_result"
 WHERE false;
ALTER VIEW "privata_access"."people_echo" OWNER TO "privata_owner";
CREATE OR REPLACE FUNCTION "privata_access"."people_echo"() RETURNS trigger
    LANGUAGE plpgsql AS $body$
#variable_conflict use_column
BEGIN
    RETURN NEW;
END
$body$;
ALTER FUNCTION "privata_access"."people_echo"() OWNER TO "privata_owner";
REVOKE ALL ON FUNCTION "privata_access"."people_echo"() FROM PUBLIC;
CREATE OR REPLACE TRIGGER "privata_echo" INSTEAD OF INSERT ON "privata_access"."people_echo"
    FOR EACH ROW EXECUTE FUNCTION "privata_access"."people_echo"();
ALTER VIEW "privata_access"."people_upsert" OWNER TO "privata_owner";
CREATE OR REPLACE FUNCTION "privata_access"."people_upsert"() RETURNS trigger
    LANGUAGE plpgsql AS $body$
#variable_conflict use_column
DECLARE
    privata_kind text;
    privata_names text[];
    privata_arbiters text[] := '{}';
    privata_constraint text;
    privata_found boolean;
    privata_old "privata_access"."people_echo";
    privata_row "privata_access"."people_echo";
BEGIN
    IF NEW."privata_conflict" IS NOT NULL OR NEW."privata_target" IS NOT NULL OR NEW."privata_old" IS NOT NULL OR NEW."privata_new" IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'syntax_error',
            MESSAGE = 'INSERT has more expressions than target columns';
    END IF;
    IF NOT (privata.has_access('privata_identity_full') AND privata.has_access('privata_clinical_full')) THEN
        RAISE EXCEPTION USING ERRCODE = 'insufficient_privilege',
            MESSAGE = 'permission denied to upsert into people',
            DETAIL = 'INSERT ... ON CONFLICT on people needs full access to its identity and clinical data.';
    END IF;
    NEW."privata_new" := ROW(NEW."id", NEW."ssn", NEW."name", NEW."born", NEW."email", NEW."blood", NEW."note", NEW."created");
    privata_kind := NEW."privata_on_conflict"[2];
    privata_names := NEW."privata_on_conflict"[3:];
    IF privata_kind = 'any' THEN
        privata_arbiters := ARRAY['people_pkey', 'people_ssn_key']::text[];
    ELSIF privata_kind = 'constraint' THEN
        IF privata_names[1] = ANY (ARRAY['people_pkey', 'people_ssn_key']::text[]) THEN
            privata_arbiters := privata_names[1:1];
        ELSE
            RAISE EXCEPTION USING ERRCODE = 'undefined_object',
                MESSAGE = pg_catalog.format('constraint "%s" for table "%s" does not exist', privata_names[1], 'people');
        END IF;
    ELSE
        IF privata_names = ARRAY['id']::text[] THEN
            privata_arbiters := privata_arbiters || 'people_pkey'::text;
        END IF;
        IF privata_names = ARRAY['ssn']::text[] THEN
            privata_arbiters := privata_arbiters || 'people_ssn_key'::text;
        END IF;
        IF pg_catalog.cardinality(privata_arbiters) = 0 THEN
            RAISE EXCEPTION USING ERRCODE = 'invalid_column_reference',
                MESSAGE = 'there is no unique or exclusion constraint matching the ON CONFLICT specification';
        END IF;
    END IF;
    IF NEW."privata_on_conflict"[1] = 'nothing' THEN
        BEGIN
            INSERT INTO "public"."people" ("id", "ssn", "name", "born", "email", "blood", "note", "created")
            VALUES (NEW."id", NEW."ssn", NEW."name", NEW."born", NEW."email", NEW."blood", NEW."note", NEW."created")
            RETURNING * INTO privata_row;
        EXCEPTION WHEN unique_violation THEN
            GET STACKED DIAGNOSTICS privata_constraint = CONSTRAINT_NAME;
            IF privata_constraint = ANY (privata_arbiters) THEN
                NEW."privata_conflict" := true;
                RETURN NEW;
            END IF;
            RAISE;
        END;
        NEW."privata_conflict" := false;
        NEW."privata_target" := privata_row."id"::text;
        NEW."privata_new" := privata_row;
        RETURN NEW;
    END IF;
    LOOP
        privata_found := false;
        IF NOT privata_found AND 'people_pkey' = ANY (privata_arbiters) AND NEW."id" IS NOT NULL THEN
            SELECT a.* INTO privata_old FROM "public"."people" a
             WHERE a."id" = NEW."id";
            privata_found := FOUND;
        END IF;
        IF NOT privata_found AND 'people_ssn_key' = ANY (privata_arbiters) AND NEW."ssn" IS NOT NULL THEN
            SELECT a.* INTO privata_old FROM "public"."people" a
             WHERE a."ssn" = NEW."ssn";
            privata_found := FOUND;
        END IF;
        IF privata_found THEN
            PERFORM FROM "privata_identity"."people" b WHERE b."id" = privata_old."id" FOR UPDATE;
            IF FOUND THEN
                privata_found := false;
                IF NOT privata_found AND 'people_pkey' = ANY (privata_arbiters) AND NEW."id" IS NOT NULL THEN
                    SELECT a.* INTO privata_row FROM "public"."people" a
                     WHERE a."id" = NEW."id";
                    privata_found := FOUND;
                END IF;
                IF NOT privata_found AND 'people_ssn_key' = ANY (privata_arbiters) AND NEW."ssn" IS NOT NULL THEN
                    SELECT a.* INTO privata_row FROM "public"."people" a
                     WHERE a."ssn" = NEW."ssn";
                    privata_found := FOUND;
                END IF;
                IF privata_found AND privata_row."id" IS NOT DISTINCT FROM privata_old."id" THEN
                    NEW."privata_conflict" := true;
                    NEW."privata_target" := privata_row."id"::text;
                    NEW."privata_old" := privata_row;
                    RETURN NEW;
                END IF;
            END IF;
        ELSE
            BEGIN
                INSERT INTO "public"."people" ("id", "ssn", "name", "born", "email", "blood", "note", "created")
                VALUES (NEW."id", NEW."ssn", NEW."name", NEW."born", NEW."email", NEW."blood", NEW."note", NEW."created")
                RETURNING * INTO privata_row;
                NEW."privata_conflict" := false;
                NEW."privata_target" := privata_row."id"::text;
                NEW."privata_new" := privata_row;
                RETURN NEW;
            EXCEPTION WHEN unique_violation THEN
                GET STACKED DIAGNOSTICS privata_constraint = CONSTRAINT_NAME;
                IF NOT privata_constraint = ANY (privata_arbiters) THEN
                    RAISE;
                END IF;
                IF pg_catalog.current_setting('transaction_isolation') <> 'read committed' THEN
                    RAISE EXCEPTION USING ERRCODE = 'serialization_failure',
                        MESSAGE = 'could not serialize access due to concurrent update';
                END IF;
            END;
        END IF;
    END LOOP;
END
$body$;
ALTER FUNCTION "privata_access"."people_upsert"() OWNER TO "privata_owner";
REVOKE ALL ON FUNCTION "privata_access"."people_upsert"() FROM PUBLIC;
CREATE OR REPLACE TRIGGER "privata_upsert" INSTEAD OF INSERT ON "privata_access"."people_upsert"
    FOR EACH ROW EXECUTE FUNCTION "privata_access"."people_upsert"();
ALTER VIEW "privata_access"."people_apply" OWNER TO "privata_owner";
CREATE OR REPLACE FUNCTION "privata_access"."people_apply"() RETURNS trigger
    LANGUAGE plpgsql AS $body$
#variable_conflict use_column
DECLARE
    privata_row "privata_access"."people_echo";
BEGIN
    UPDATE "public"."people" AS t
       SET "id" = CASE WHEN 'id' = ANY (NEW."privata_set") THEN NEW."id" ELSE t."id" END,
           "ssn" = CASE WHEN 'ssn' = ANY (NEW."privata_set") THEN NEW."ssn" ELSE t."ssn" END,
           "name" = CASE WHEN 'name' = ANY (NEW."privata_set") THEN NEW."name" ELSE t."name" END,
           "born" = CASE WHEN 'born' = ANY (NEW."privata_set") THEN NEW."born" ELSE t."born" END,
           "email" = CASE WHEN 'email' = ANY (NEW."privata_set") THEN NEW."email" ELSE t."email" END,
           "blood" = CASE WHEN 'blood' = ANY (NEW."privata_set") THEN NEW."blood" ELSE t."blood" END,
           "note" = CASE WHEN 'note' = ANY (NEW."privata_set") THEN NEW."note" ELSE t."note" END,
           "created" = CASE WHEN 'created' = ANY (NEW."privata_set") THEN NEW."created" ELSE t."created" END
     WHERE t."id" = (NEW."privata_old")."id"
    RETURNING t.* INTO privata_row;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    NEW."privata_result" := privata_row;
    RETURN NEW;
END
$body$;
ALTER FUNCTION "privata_access"."people_apply"() OWNER TO "privata_owner";
REVOKE ALL ON FUNCTION "privata_access"."people_apply"() FROM PUBLIC;
CREATE OR REPLACE TRIGGER "privata_apply" INSTEAD OF INSERT ON "privata_access"."people_apply"
    FOR EACH ROW EXECUTE FUNCTION "privata_access"."people_apply"();
GRANT SELECT, INSERT ON "privata_access"."people_upsert", "privata_access"."people_apply", "privata_access"."people_echo" TO "clerk", "doctor", "nurse", "postgres";
GRANT USAGE ON SCHEMA "privata_access" TO "postgres";

-- public.people: Grants. The policy's roles may use public.people and read its access
-- views; they may read only the key and the pseudonym of the base tables, so that no
-- value reaches them but through the access views (not by COPY, functions or pg_stats).
-- Writes run with the writer's own privileges: only members of privata_identity_full and
-- privata_clinical_full may write the identity and the clinical base tables. The original
-- table's grants are kept on the view.
GRANT DELETE, INSERT, REFERENCES, SELECT, TRIGGER, TRUNCATE, UPDATE ON "public"."people" TO "postgres";
GRANT SELECT, INSERT, UPDATE, DELETE ON "public"."people" TO "clerk", "doctor", "nurse";
GRANT SELECT ON "privata_access"."people_identity" TO "clerk", "doctor", "nurse", "postgres";
GRANT SELECT ON "privata_access"."people_clinical" TO "clerk", "doctor", "nurse", "postgres";
GRANT USAGE ON SCHEMA "privata_access" TO "postgres";
REVOKE ALL ON "privata_identity"."people" FROM PUBLIC;
GRANT SELECT ("id", "privata_pseudonym") ON "privata_identity"."people" TO "clerk", "doctor", "nurse";
GRANT INSERT ("id", "privata_region", "ssn", "name", "born", "email"), UPDATE ("id", "privata_region", "ssn", "name", "born", "email"), DELETE ON "privata_identity"."people" TO "privata_identity_full";
GRANT TRUNCATE ON "privata_identity"."people" TO "postgres";
GRANT USAGE ON SEQUENCE privata_identity.people_id_seq TO "privata_identity_full";
REVOKE ALL ON "privata_clinical"."people" FROM PUBLIC;
GRANT SELECT ("privata_pseudonym") ON "privata_clinical"."people" TO "clerk", "doctor", "nurse";
GRANT INSERT ("privata_pseudonym", "blood", "note", "created"), UPDATE ("blood", "note", "created"), DELETE ON "privata_clinical"."people" TO "privata_clinical_full";
GRANT TRUNCATE ON "privata_clinical"."people" TO "postgres";

-- public.people: Row-level security, forced so that it binds the owner too: every policy
-- role may read and write rows through the views, and a new identity row must belong to a
-- home region this cluster serves (privata.regions()). REPLICA IDENTITY FULL gives the
-- audit's change stream whole old rows. The statement triggers call
-- privata.emit_context(), which records who changed the rows and why in the write-ahead
-- log.
ALTER TABLE "privata_identity"."people" OWNER TO "privata_owner";
ALTER TABLE "privata_identity"."people" ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY, REPLICA IDENTITY FULL;
CREATE POLICY "privata" ON "privata_identity"."people" USING (true) WITH CHECK ("privata_region" = ANY (privata.regions()));
CREATE OR REPLACE TRIGGER "privata_context" BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON "privata_identity"."people"
    FOR EACH STATEMENT EXECUTE FUNCTION privata.emit_context();
ALTER TABLE "privata_clinical"."people" OWNER TO "privata_owner";
ALTER TABLE "privata_clinical"."people" ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY, REPLICA IDENTITY FULL;
CREATE POLICY "privata" ON "privata_clinical"."people" USING (true) WITH CHECK (true);
CREATE OR REPLACE TRIGGER "privata_context" BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON "privata_clinical"."people"
    FOR EACH STATEMENT EXECUTE FUNCTION privata.emit_context();

-- public.visits: a plain table converted in place. public.visits becomes a view with the
-- original columns in their order. It reads the access views in privata_access, owned by
-- privata_owner, whose columns show each value in full, masked or not at all by the
-- reader's policy role. Defaults of the base tables are copied onto the view, so that
-- INSERT sees them.
CREATE OR REPLACE VIEW "privata_access"."visits_clinical" AS
SELECT t."id",
       s."id" AS "person",
       t."at",
       CAST(CASE WHEN privata.has_access('privata_clinical_full') THEN t."reason"
                 WHEN privata.has_access('privata_clinical_masked') THEN privata.mask_partial(t."reason"::text) END AS text) AS "reason",
       CAST(CASE WHEN privata.has_access('privata_clinical_full') THEN t."cost"
                 WHEN privata.has_access('privata_clinical_masked') THEN NULL END AS numeric(10,2)) AS "cost",
       t."privata_pseudonym",
       t.ctid AS "privata_row"
  FROM "privata_clinical"."visits" t
  LEFT JOIN "privata_identity"."people" s ON s."privata_pseudonym" = t."privata_pseudonym";
ALTER VIEW "privata_access"."visits_clinical" OWNER TO "privata_owner";
CREATE OR REPLACE VIEW "public"."visits" WITH (security_invoker = true) AS
SELECT a."id",
       a."person",
       a."at",
       a."reason",
       a."cost"
  FROM "privata_access"."visits_clinical" a;
ALTER VIEW "public"."visits" OWNER TO "privata_owner";
ALTER VIEW "public"."visits" ALTER COLUMN "at" SET DEFAULT now();

-- public.visits: INSTEAD OF triggers write public.visits's rows to
-- "privata_clinical"."visits", with the subject's pseudonym in place of person; a person
-- that names no subject fails as the foreign key did (23503).
CREATE OR REPLACE FUNCTION "privata_access"."visits_insert"() RETURNS trigger
    LANGUAGE plpgsql AS $body$
#variable_conflict use_column
DECLARE
    privata_p uuid;
BEGIN
    IF NEW."id" IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'generated_always',
            MESSAGE = 'cannot insert a non-DEFAULT value into column "id"', DETAIL = 'Column "id" is an identity column defined as GENERATED ALWAYS.';
    END IF;
    NEW."id" := pg_catalog.nextval('privata_clinical.visits_id_seq'::pg_catalog.regclass);
    IF NEW."person" IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'not_null_violation', MESSAGE = 'null value in column "person" of relation "visits" violates not-null constraint',
            COLUMN = 'person', TABLE = 'visits', SCHEMA = 'public';
    END IF;
    privata_p := NULL;
    IF NEW."person" IS NOT NULL THEN
        SELECT s."privata_pseudonym" INTO privata_p FROM "privata_identity"."people" s WHERE s."id" = NEW."person";
        IF NOT FOUND THEN
            RAISE EXCEPTION USING ERRCODE = 'foreign_key_violation', MESSAGE = 'insert or update on table "visits" violates foreign key constraint "visits_person_fkey"',
                DETAIL = 'Key (person) is not present in table "people".', TABLE = 'visits', CONSTRAINT = 'visits_person_fkey';
        END IF;
    END IF;
    INSERT INTO "privata_clinical"."visits" ("privata_pseudonym", "id", "at", "reason", "cost") OVERRIDING SYSTEM VALUE
    VALUES (privata_p, NEW."id", NEW."at", NEW."reason", NEW."cost");
    RETURN NEW;
END
$body$;
ALTER FUNCTION "privata_access"."visits_insert"() OWNER TO "privata_owner";
REVOKE ALL ON FUNCTION "privata_access"."visits_insert"() FROM PUBLIC;
CREATE OR REPLACE TRIGGER "privata_insert" INSTEAD OF INSERT ON "public"."visits"
    FOR EACH ROW EXECUTE FUNCTION "privata_access"."visits_insert"();
CREATE OR REPLACE FUNCTION "privata_access"."visits_update"() RETURNS trigger
    LANGUAGE plpgsql AS $body$
#variable_conflict use_column
DECLARE
    privata_p uuid;
BEGIN
    IF NEW."id" IS DISTINCT FROM OLD."id" THEN
        RAISE EXCEPTION USING ERRCODE = 'generated_always',
            MESSAGE = 'column "id" can only be updated to DEFAULT', DETAIL = 'Column "id" is an identity column defined as GENERATED ALWAYS.';
    END IF;
    IF NEW."person"::text IS NOT DISTINCT FROM OLD."person"::text THEN
        UPDATE "privata_clinical"."visits"
           SET "at" = NEW."at",
               "reason" = NEW."reason",
               "cost" = NEW."cost"
         WHERE "id" = OLD."id";
    ELSE
        IF NEW."person" IS NULL THEN
            RAISE EXCEPTION USING ERRCODE = 'not_null_violation', MESSAGE = 'null value in column "person" of relation "visits" violates not-null constraint',
                COLUMN = 'person', TABLE = 'visits', SCHEMA = 'public';
        END IF;
        privata_p := NULL;
        IF NEW."person" IS NOT NULL THEN
            SELECT s."privata_pseudonym" INTO privata_p FROM "privata_identity"."people" s WHERE s."id" = NEW."person";
            IF NOT FOUND THEN
                RAISE EXCEPTION USING ERRCODE = 'foreign_key_violation', MESSAGE = 'insert or update on table "visits" violates foreign key constraint "visits_person_fkey"',
                    DETAIL = 'Key (person) is not present in table "people".', TABLE = 'visits', CONSTRAINT = 'visits_person_fkey';
            END IF;
        END IF;
        UPDATE "privata_clinical"."visits"
           SET "at" = NEW."at",
               "reason" = NEW."reason",
               "cost" = NEW."cost",
               "privata_pseudonym" = privata_p
         WHERE "id" = OLD."id";
    END IF;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    RETURN NEW;
END
$body$;
ALTER FUNCTION "privata_access"."visits_update"() OWNER TO "privata_owner";
REVOKE ALL ON FUNCTION "privata_access"."visits_update"() FROM PUBLIC;
CREATE OR REPLACE TRIGGER "privata_update" INSTEAD OF UPDATE ON "public"."visits"
    FOR EACH ROW EXECUTE FUNCTION "privata_access"."visits_update"();
CREATE OR REPLACE FUNCTION "privata_access"."visits_delete"() RETURNS trigger
    LANGUAGE plpgsql AS $body$
#variable_conflict use_column
DECLARE
    privata_p uuid;
BEGIN
    DELETE FROM "privata_clinical"."visits" WHERE "id" = OLD."id";
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    RETURN OLD;
END
$body$;
ALTER FUNCTION "privata_access"."visits_delete"() OWNER TO "privata_owner";
REVOKE ALL ON FUNCTION "privata_access"."visits_delete"() FROM PUBLIC;
CREATE OR REPLACE TRIGGER "privata_delete" INSTEAD OF DELETE ON "public"."visits"
    FOR EACH ROW EXECUTE FUNCTION "privata_access"."visits_delete"();

-- public.visits: Upserts. PostgreSQL refuses INSERT ... ON CONFLICT on a view with
-- INSTEAD OF triggers, so Privata runs an upsert on public.visits as inserts into three
-- views of privata_access that hold no rows: visits_upsert (the proposed rows; its
-- trigger inserts each through public.visits, or finds and locks the row it conflicts
-- with), visits_apply (the new values of DO UPDATE SET, applied through public.visits)
-- and visits_echo (what the statement returns). They need the same rights as writing
-- public.visits.
CREATE OR REPLACE VIEW "privata_access"."visits_echo" AS
SELECT NULL::bigint AS "id",
       NULL::integer AS "person",
       NULL::timestamp with time zone AS "at",
       NULL::text AS "reason",
       NULL::numeric(10,2) AS "cost"
 WHERE false;
CREATE OR REPLACE VIEW "privata_access"."visits_upsert" AS
SELECT NULL::text[] AS "privata_on_conflict",
       NULL::bigint AS "id",
       NULL::integer AS "person",
       NULL::timestamp with time zone AS "at",
       NULL::text AS "reason",
       NULL::numeric(10,2) AS "cost",
       NULL::boolean AS "privata_conflict", NULL::text AS "privata_target", NULL::"privata_access"."visits_echo" AS "privata_old", NULL::"privata_access"."visits_echo" AS "privata_new"
 WHERE false;
ALTER VIEW "privata_access"."visits_upsert" ALTER COLUMN "at" SET DEFAULT now();
CREATE OR REPLACE VIEW "privata_access"."visits_apply" AS
SELECT NULL::text[] AS "privata_set", NULL::"privata_access"."visits_echo" AS "privata_old", NULL::bigint AS "privata_ord",
       NULL::bigint AS "id",
       NULL::integer AS "person",
       NULL::timestamp with time zone AS "at",
       NULL::text AS "reason",
       NULL::numeric(10,2) AS "cost",
       NULL::"privata_access"."visits_echo" AS "privata_result"
 WHERE false;
ALTER VIEW "privata_access"."visits_echo" OWNER TO "privata_owner";
CREATE OR REPLACE FUNCTION "privata_access"."visits_echo"() RETURNS trigger
    LANGUAGE plpgsql AS $body$
#variable_conflict use_column
BEGIN
    RETURN NEW;
END
$body$;
ALTER FUNCTION "privata_access"."visits_echo"() OWNER TO "privata_owner";
REVOKE ALL ON FUNCTION "privata_access"."visits_echo"() FROM PUBLIC;
CREATE OR REPLACE TRIGGER "privata_echo" INSTEAD OF INSERT ON "privata_access"."visits_echo"
    FOR EACH ROW EXECUTE FUNCTION "privata_access"."visits_echo"();
ALTER VIEW "privata_access"."visits_upsert" OWNER TO "privata_owner";
CREATE OR REPLACE FUNCTION "privata_access"."visits_upsert"() RETURNS trigger
    LANGUAGE plpgsql AS $body$
#variable_conflict use_column
DECLARE
    privata_kind text;
    privata_names text[];
    privata_arbiters text[] := '{}';
    privata_constraint text;
    privata_found boolean;
    privata_old "privata_access"."visits_echo";
    privata_row "privata_access"."visits_echo";
BEGIN
    IF NEW."privata_conflict" IS NOT NULL OR NEW."privata_target" IS NOT NULL OR NEW."privata_old" IS NOT NULL OR NEW."privata_new" IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'syntax_error',
            MESSAGE = 'INSERT has more expressions than target columns';
    END IF;
    IF NOT (privata.has_access('privata_clinical_full')) THEN
        RAISE EXCEPTION USING ERRCODE = 'insufficient_privilege',
            MESSAGE = 'permission denied to upsert into visits',
            DETAIL = 'INSERT ... ON CONFLICT on visits needs full access to its clinical data.';
    END IF;
    NEW."privata_new" := ROW(NEW."id", NEW."person", NEW."at", NEW."reason", NEW."cost");
    privata_kind := NEW."privata_on_conflict"[2];
    privata_names := NEW."privata_on_conflict"[3:];
    IF privata_kind = 'any' THEN
        privata_arbiters := ARRAY['visits_pkey']::text[];
    ELSIF privata_kind = 'constraint' THEN
        IF privata_names[1] = ANY (ARRAY['visits_pkey']::text[]) THEN
            privata_arbiters := privata_names[1:1];
        ELSE
            RAISE EXCEPTION USING ERRCODE = 'undefined_object',
                MESSAGE = pg_catalog.format('constraint "%s" for table "%s" does not exist', privata_names[1], 'visits');
        END IF;
    ELSE
        IF privata_names = ARRAY['id']::text[] THEN
            privata_arbiters := privata_arbiters || 'visits_pkey'::text;
        END IF;
        IF pg_catalog.cardinality(privata_arbiters) = 0 THEN
            RAISE EXCEPTION USING ERRCODE = 'invalid_column_reference',
                MESSAGE = 'there is no unique or exclusion constraint matching the ON CONFLICT specification';
        END IF;
    END IF;
    IF NEW."privata_on_conflict"[1] = 'nothing' THEN
        BEGIN
            INSERT INTO "public"."visits" ("id", "person", "at", "reason", "cost")
            VALUES (NEW."id", NEW."person", NEW."at", NEW."reason", NEW."cost")
            RETURNING * INTO privata_row;
        EXCEPTION WHEN unique_violation THEN
            GET STACKED DIAGNOSTICS privata_constraint = CONSTRAINT_NAME;
            IF privata_constraint = ANY (privata_arbiters) THEN
                NEW."privata_conflict" := true;
                RETURN NEW;
            END IF;
            RAISE;
        END;
        NEW."privata_conflict" := false;
        NEW."privata_target" := privata_row."id"::text;
        NEW."privata_new" := privata_row;
        RETURN NEW;
    END IF;
    LOOP
        privata_found := false;
        IF NOT privata_found AND 'visits_pkey' = ANY (privata_arbiters) AND NEW."id" IS NOT NULL THEN
            SELECT a.* INTO privata_old FROM "public"."visits" a
             WHERE a."id" = NEW."id";
            privata_found := FOUND;
        END IF;
        IF privata_found THEN
            PERFORM FROM "privata_clinical"."visits" b WHERE b."id" = privata_old."id" FOR UPDATE;
            IF FOUND THEN
                privata_found := false;
                IF NOT privata_found AND 'visits_pkey' = ANY (privata_arbiters) AND NEW."id" IS NOT NULL THEN
                    SELECT a.* INTO privata_row FROM "public"."visits" a
                     WHERE a."id" = NEW."id";
                    privata_found := FOUND;
                END IF;
                IF privata_found AND privata_row."id" IS NOT DISTINCT FROM privata_old."id" THEN
                    NEW."privata_conflict" := true;
                    NEW."privata_target" := privata_row."id"::text;
                    NEW."privata_old" := privata_row;
                    RETURN NEW;
                END IF;
            END IF;
        ELSE
            BEGIN
                INSERT INTO "public"."visits" ("id", "person", "at", "reason", "cost")
                VALUES (NEW."id", NEW."person", NEW."at", NEW."reason", NEW."cost")
                RETURNING * INTO privata_row;
                NEW."privata_conflict" := false;
                NEW."privata_target" := privata_row."id"::text;
                NEW."privata_new" := privata_row;
                RETURN NEW;
            EXCEPTION WHEN unique_violation THEN
                GET STACKED DIAGNOSTICS privata_constraint = CONSTRAINT_NAME;
                IF NOT privata_constraint = ANY (privata_arbiters) THEN
                    RAISE;
                END IF;
                IF pg_catalog.current_setting('transaction_isolation') <> 'read committed' THEN
                    RAISE EXCEPTION USING ERRCODE = 'serialization_failure',
                        MESSAGE = 'could not serialize access due to concurrent update';
                END IF;
            END;
        END IF;
    END LOOP;
END
$body$;
ALTER FUNCTION "privata_access"."visits_upsert"() OWNER TO "privata_owner";
REVOKE ALL ON FUNCTION "privata_access"."visits_upsert"() FROM PUBLIC;
CREATE OR REPLACE TRIGGER "privata_upsert" INSTEAD OF INSERT ON "privata_access"."visits_upsert"
    FOR EACH ROW EXECUTE FUNCTION "privata_access"."visits_upsert"();
ALTER VIEW "privata_access"."visits_apply" OWNER TO "privata_owner";
CREATE OR REPLACE FUNCTION "privata_access"."visits_apply"() RETURNS trigger
    LANGUAGE plpgsql AS $body$
#variable_conflict use_column
DECLARE
    privata_row "privata_access"."visits_echo";
BEGIN
    UPDATE "public"."visits" AS t
       SET "id" = CASE WHEN 'id' = ANY (NEW."privata_set") THEN NEW."id" ELSE t."id" END,
           "person" = CASE WHEN 'person' = ANY (NEW."privata_set") THEN NEW."person" ELSE t."person" END,
           "at" = CASE WHEN 'at' = ANY (NEW."privata_set") THEN NEW."at" ELSE t."at" END,
           "reason" = CASE WHEN 'reason' = ANY (NEW."privata_set") THEN NEW."reason" ELSE t."reason" END,
           "cost" = CASE WHEN 'cost' = ANY (NEW."privata_set") THEN NEW."cost" ELSE t."cost" END
     WHERE t."id" = (NEW."privata_old")."id"
    RETURNING t.* INTO privata_row;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    NEW."privata_result" := privata_row;
    RETURN NEW;
END
$body$;
ALTER FUNCTION "privata_access"."visits_apply"() OWNER TO "privata_owner";
REVOKE ALL ON FUNCTION "privata_access"."visits_apply"() FROM PUBLIC;
CREATE OR REPLACE TRIGGER "privata_apply" INSTEAD OF INSERT ON "privata_access"."visits_apply"
    FOR EACH ROW EXECUTE FUNCTION "privata_access"."visits_apply"();
GRANT SELECT, INSERT ON "privata_access"."visits_upsert", "privata_access"."visits_apply", "privata_access"."visits_echo" TO "clerk", "doctor", "nurse", "postgres";
GRANT USAGE ON SCHEMA "privata_access" TO "postgres";

-- public.visits: Grants. The policy's roles may use public.visits and read its access
-- views; they may read only the key and the pseudonym of the base tables, so that no
-- value reaches them but through the access views (not by COPY, functions or pg_stats).
-- Writes run with the writer's own privileges: only members of privata_identity_full and
-- privata_clinical_full may write the identity and the clinical base tables. The original
-- table's grants are kept on the view.
GRANT DELETE, INSERT, REFERENCES, SELECT, TRIGGER, TRUNCATE, UPDATE ON "public"."visits" TO "postgres";
GRANT SELECT, INSERT, UPDATE, DELETE ON "public"."visits" TO "clerk", "doctor", "nurse";
GRANT SELECT ON "privata_access"."visits_clinical" TO "clerk", "doctor", "nurse", "postgres";
GRANT USAGE ON SCHEMA "privata_access" TO "postgres";
REVOKE ALL ON "privata_clinical"."visits" FROM PUBLIC;
GRANT SELECT ("privata_pseudonym") ON "privata_clinical"."visits" TO "clerk", "doctor", "nurse";
GRANT INSERT ("privata_pseudonym", "id", "at", "reason", "cost"), UPDATE ("privata_pseudonym", "id", "at", "reason", "cost"), DELETE ON "privata_clinical"."visits" TO "privata_clinical_full";
GRANT TRUNCATE ON "privata_clinical"."visits" TO "postgres";
GRANT SELECT ("id") ON "privata_clinical"."visits" TO "privata_clinical_full";
GRANT USAGE ON SEQUENCE privata_clinical.visits_id_seq TO "privata_clinical_full";

-- public.visits: Row-level security, forced so that it binds the owner too: every policy
-- role may read and write rows through the views, and a new identity row must belong to a
-- home region this cluster serves (privata.regions()). REPLICA IDENTITY FULL gives the
-- audit's change stream whole old rows. The statement triggers call
-- privata.emit_context(), which records who changed the rows and why in the write-ahead
-- log.
ALTER TABLE "privata_clinical"."visits" OWNER TO "privata_owner";
ALTER TABLE "privata_clinical"."visits" ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY, REPLICA IDENTITY FULL;
CREATE POLICY "privata" ON "privata_clinical"."visits" USING (true) WITH CHECK (true);
CREATE OR REPLACE TRIGGER "privata_context" BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON "privata_clinical"."visits"
    FOR EACH STATEMENT EXECUTE FUNCTION privata.emit_context();

-- public.findings: a plain table converted in place. public.findings becomes a view with
-- the original columns in their order. It reads the access views in privata_access, owned
-- by privata_owner, whose columns show each value in full, masked or not at all by the
-- reader's policy role. Defaults of the base tables are copied onto the view, so that
-- INSERT sees them.
CREATE OR REPLACE VIEW "privata_access"."findings_clinical" AS
SELECT s."id" AS "person",
       CAST(CASE WHEN privata.has_access('privata_clinical_full') THEN t."visit"
                 WHEN privata.has_access('privata_clinical_masked') THEN NULL END AS bigint) AS "visit",
       CAST(CASE WHEN privata.has_access('privata_clinical_full') THEN t."code"
                 WHEN privata.has_access('privata_clinical_masked') THEN privata.mask_partial(t."code"::text) END AS text) AS "code",
       CAST(CASE WHEN privata.has_access('privata_clinical_full') THEN t."value"
                 WHEN privata.has_access('privata_clinical_masked') THEN privata.mask_partial(t."value"::text) END AS text) AS "value",
       t."privata_pseudonym",
       t.ctid AS "privata_row"
  FROM "privata_clinical"."findings" t
  LEFT JOIN "privata_identity"."people" s ON s."privata_pseudonym" = t."privata_pseudonym";
ALTER VIEW "privata_access"."findings_clinical" OWNER TO "privata_owner";
CREATE OR REPLACE VIEW "public"."findings" WITH (security_invoker = true) AS
SELECT a."person",
       a."visit",
       a."code",
       a."value"
  FROM "privata_access"."findings_clinical" a;
ALTER VIEW "public"."findings" OWNER TO "privata_owner";

-- public.findings: INSTEAD OF triggers write public.findings's rows to
-- "privata_clinical"."findings", with the subject's pseudonym in place of person; a
-- person that names no subject fails as the foreign key did (23503).
CREATE OR REPLACE FUNCTION "privata_access"."findings_insert"() RETURNS trigger
    LANGUAGE plpgsql AS $body$
#variable_conflict use_column
DECLARE
    privata_p uuid;
BEGIN
    privata_p := NULL;
    IF NEW."person" IS NOT NULL THEN
        SELECT s."privata_pseudonym" INTO privata_p FROM "privata_identity"."people" s WHERE s."id" = NEW."person";
        IF NOT FOUND THEN
            RAISE EXCEPTION USING ERRCODE = 'foreign_key_violation', MESSAGE = 'insert or update on table "findings" violates foreign key constraint "findings_person_fkey"',
                DETAIL = 'Key (person) is not present in table "people".', TABLE = 'findings', CONSTRAINT = 'findings_person_fkey';
        END IF;
    END IF;
    INSERT INTO "privata_clinical"."findings" ("privata_pseudonym", "visit", "code", "value")
    VALUES (privata_p, NEW."visit", NEW."code", NEW."value");
    RETURN NEW;
END
$body$;
ALTER FUNCTION "privata_access"."findings_insert"() OWNER TO "privata_owner";
REVOKE ALL ON FUNCTION "privata_access"."findings_insert"() FROM PUBLIC;
CREATE OR REPLACE TRIGGER "privata_insert" INSTEAD OF INSERT ON "public"."findings"
    FOR EACH ROW EXECUTE FUNCTION "privata_access"."findings_insert"();
CREATE OR REPLACE FUNCTION "privata_access"."findings_update"() RETURNS trigger
    LANGUAGE plpgsql AS $body$
#variable_conflict use_column
DECLARE
    privata_p uuid;
    privata_r tid;
BEGIN
    IF OLD."person" IS NULL THEN
        SELECT a.privata_row INTO privata_r FROM "privata_access"."findings_clinical" a
         WHERE a."person" IS NULL
               AND a."visit"::text IS NOT DISTINCT FROM OLD."visit"::text
               AND a."code"::text IS NOT DISTINCT FROM OLD."code"::text
               AND a."value"::text IS NOT DISTINCT FROM OLD."value"::text
         LIMIT 1;
    ELSE
        SELECT a.privata_row INTO privata_r FROM "privata_access"."findings_clinical" a
         WHERE a."person" = OLD."person"
               AND a."visit"::text IS NOT DISTINCT FROM OLD."visit"::text
               AND a."code"::text IS NOT DISTINCT FROM OLD."code"::text
               AND a."value"::text IS NOT DISTINCT FROM OLD."value"::text
         LIMIT 1;
    END IF;
    IF NEW."person"::text IS NOT DISTINCT FROM OLD."person"::text THEN
        UPDATE "privata_clinical"."findings"
           SET "visit" = NEW."visit",
               "code" = NEW."code",
               "value" = NEW."value"
         WHERE ctid = privata_r;
    ELSE
        privata_p := NULL;
        IF NEW."person" IS NOT NULL THEN
            SELECT s."privata_pseudonym" INTO privata_p FROM "privata_identity"."people" s WHERE s."id" = NEW."person";
            IF NOT FOUND THEN
                RAISE EXCEPTION USING ERRCODE = 'foreign_key_violation', MESSAGE = 'insert or update on table "findings" violates foreign key constraint "findings_person_fkey"',
                    DETAIL = 'Key (person) is not present in table "people".', TABLE = 'findings', CONSTRAINT = 'findings_person_fkey';
            END IF;
        END IF;
        UPDATE "privata_clinical"."findings"
           SET "visit" = NEW."visit",
               "code" = NEW."code",
               "value" = NEW."value",
               "privata_pseudonym" = privata_p
         WHERE ctid = privata_r;
    END IF;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    RETURN NEW;
END
$body$;
ALTER FUNCTION "privata_access"."findings_update"() OWNER TO "privata_owner";
REVOKE ALL ON FUNCTION "privata_access"."findings_update"() FROM PUBLIC;
CREATE OR REPLACE TRIGGER "privata_update" INSTEAD OF UPDATE ON "public"."findings"
    FOR EACH ROW EXECUTE FUNCTION "privata_access"."findings_update"();
CREATE OR REPLACE FUNCTION "privata_access"."findings_delete"() RETURNS trigger
    LANGUAGE plpgsql AS $body$
#variable_conflict use_column
DECLARE
    privata_p uuid;
    privata_r tid;
BEGIN
    IF OLD."person" IS NULL THEN
        SELECT a.privata_row INTO privata_r FROM "privata_access"."findings_clinical" a
         WHERE a."person" IS NULL
               AND a."visit"::text IS NOT DISTINCT FROM OLD."visit"::text
               AND a."code"::text IS NOT DISTINCT FROM OLD."code"::text
               AND a."value"::text IS NOT DISTINCT FROM OLD."value"::text
         LIMIT 1;
    ELSE
        SELECT a.privata_row INTO privata_r FROM "privata_access"."findings_clinical" a
         WHERE a."person" = OLD."person"
               AND a."visit"::text IS NOT DISTINCT FROM OLD."visit"::text
               AND a."code"::text IS NOT DISTINCT FROM OLD."code"::text
               AND a."value"::text IS NOT DISTINCT FROM OLD."value"::text
         LIMIT 1;
    END IF;
    DELETE FROM "privata_clinical"."findings" WHERE ctid = privata_r;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    RETURN OLD;
END
$body$;
ALTER FUNCTION "privata_access"."findings_delete"() OWNER TO "privata_owner";
REVOKE ALL ON FUNCTION "privata_access"."findings_delete"() FROM PUBLIC;
CREATE OR REPLACE TRIGGER "privata_delete" INSTEAD OF DELETE ON "public"."findings"
    FOR EACH ROW EXECUTE FUNCTION "privata_access"."findings_delete"();

-- public.findings: Upserts. PostgreSQL refuses INSERT ... ON CONFLICT on a view with
-- INSTEAD OF triggers, so Privata runs an upsert on public.findings as inserts into three
-- views of privata_access that hold no rows: findings_upsert (the proposed rows; its
-- trigger inserts each through public.findings, or finds and locks the row it conflicts
-- with), findings_apply (the new values of DO UPDATE SET, applied through
-- public.findings) and findings_echo (what the statement returns). They need the same
-- rights as writing public.findings.
CREATE OR REPLACE VIEW "privata_access"."findings_echo" AS
SELECT NULL::integer AS "person",
       NULL::bigint AS "visit",
       NULL::text AS "code",
       NULL::text AS "value"
 WHERE false;
CREATE OR REPLACE VIEW "privata_access"."findings_upsert" AS
SELECT NULL::text[] AS "privata_on_conflict",
       NULL::integer AS "person",
       NULL::bigint AS "visit",
       NULL::text AS "code",
       NULL::text AS "value",
       NULL::boolean AS "privata_conflict", NULL::text AS "privata_target", NULL::"privata_access"."findings_echo" AS "privata_old", NULL::"privata_access"."findings_echo" AS "privata_new"
 WHERE false;
CREATE OR REPLACE VIEW "privata_access"."findings_apply" AS
SELECT NULL::text[] AS "privata_set", NULL::"privata_access"."findings_echo" AS "privata_old", NULL::bigint AS "privata_ord",
       NULL::integer AS "person",
       NULL::bigint AS "visit",
       NULL::text AS "code",
       NULL::text AS "value",
       NULL::"privata_access"."findings_echo" AS "privata_result"
 WHERE false;
ALTER VIEW "privata_access"."findings_echo" OWNER TO "privata_owner";
CREATE OR REPLACE FUNCTION "privata_access"."findings_echo"() RETURNS trigger
    LANGUAGE plpgsql AS $body$
#variable_conflict use_column
BEGIN
    RETURN NEW;
END
$body$;
ALTER FUNCTION "privata_access"."findings_echo"() OWNER TO "privata_owner";
REVOKE ALL ON FUNCTION "privata_access"."findings_echo"() FROM PUBLIC;
CREATE OR REPLACE TRIGGER "privata_echo" INSTEAD OF INSERT ON "privata_access"."findings_echo"
    FOR EACH ROW EXECUTE FUNCTION "privata_access"."findings_echo"();
ALTER VIEW "privata_access"."findings_upsert" OWNER TO "privata_owner";
CREATE OR REPLACE FUNCTION "privata_access"."findings_upsert"() RETURNS trigger
    LANGUAGE plpgsql AS $body$
#variable_conflict use_column
DECLARE
    privata_kind text;
    privata_names text[];
    privata_arbiters text[] := '{}';
    privata_constraint text;
    privata_row "privata_access"."findings_echo";
BEGIN
    IF NEW."privata_conflict" IS NOT NULL OR NEW."privata_target" IS NOT NULL OR NEW."privata_old" IS NOT NULL OR NEW."privata_new" IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'syntax_error',
            MESSAGE = 'INSERT has more expressions than target columns';
    END IF;
    IF NOT (privata.has_access('privata_clinical_full')) THEN
        RAISE EXCEPTION USING ERRCODE = 'insufficient_privilege',
            MESSAGE = 'permission denied to upsert into findings',
            DETAIL = 'INSERT ... ON CONFLICT on findings needs full access to its clinical data.';
    END IF;
    NEW."privata_new" := ROW(NEW."person", NEW."visit", NEW."code", NEW."value");
    privata_kind := NEW."privata_on_conflict"[2];
    privata_names := NEW."privata_on_conflict"[3:];
    IF privata_kind = 'any' THEN
        privata_arbiters := ARRAY[]::text[];
    ELSIF privata_kind = 'constraint' THEN
        IF privata_names[1] = ANY (ARRAY[]::text[]) THEN
            privata_arbiters := privata_names[1:1];
        ELSE
            RAISE EXCEPTION USING ERRCODE = 'undefined_object',
                MESSAGE = pg_catalog.format('constraint "%s" for table "%s" does not exist', privata_names[1], 'findings');
        END IF;
    ELSE
        IF pg_catalog.cardinality(privata_arbiters) = 0 THEN
            RAISE EXCEPTION USING ERRCODE = 'invalid_column_reference',
                MESSAGE = 'there is no unique or exclusion constraint matching the ON CONFLICT specification';
        END IF;
    END IF;
    IF NEW."privata_on_conflict"[1] = 'nothing' THEN
        BEGIN
            INSERT INTO "public"."findings" ("person", "visit", "code", "value")
            VALUES (NEW."person", NEW."visit", NEW."code", NEW."value")
            RETURNING * INTO privata_row;
        EXCEPTION WHEN unique_violation THEN
            GET STACKED DIAGNOSTICS privata_constraint = CONSTRAINT_NAME;
            IF privata_constraint = ANY (privata_arbiters) THEN
                NEW."privata_conflict" := true;
                RETURN NEW;
            END IF;
            RAISE;
        END;
        NEW."privata_conflict" := false;
        NEW."privata_target" := NULL;
        NEW."privata_new" := privata_row;
        RETURN NEW;
    END IF;
    RAISE EXCEPTION USING ERRCODE = 'feature_not_supported',
        MESSAGE = 'ON CONFLICT DO UPDATE is not supported on split table public.findings, which has no primary key to lock rows by',
        HINT = 'Give the table a primary key, or use ON CONFLICT DO NOTHING.';
END
$body$;
ALTER FUNCTION "privata_access"."findings_upsert"() OWNER TO "privata_owner";
REVOKE ALL ON FUNCTION "privata_access"."findings_upsert"() FROM PUBLIC;
CREATE OR REPLACE TRIGGER "privata_upsert" INSTEAD OF INSERT ON "privata_access"."findings_upsert"
    FOR EACH ROW EXECUTE FUNCTION "privata_access"."findings_upsert"();
ALTER VIEW "privata_access"."findings_apply" OWNER TO "privata_owner";
CREATE OR REPLACE FUNCTION "privata_access"."findings_apply"() RETURNS trigger
    LANGUAGE plpgsql AS $body$
#variable_conflict use_column
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'feature_not_supported',
        MESSAGE = 'ON CONFLICT DO UPDATE is not supported on split table public.findings';
END
$body$;
ALTER FUNCTION "privata_access"."findings_apply"() OWNER TO "privata_owner";
REVOKE ALL ON FUNCTION "privata_access"."findings_apply"() FROM PUBLIC;
CREATE OR REPLACE TRIGGER "privata_apply" INSTEAD OF INSERT ON "privata_access"."findings_apply"
    FOR EACH ROW EXECUTE FUNCTION "privata_access"."findings_apply"();
GRANT SELECT, INSERT ON "privata_access"."findings_upsert", "privata_access"."findings_apply", "privata_access"."findings_echo" TO "clerk", "doctor", "nurse", "postgres";
GRANT USAGE ON SCHEMA "privata_access" TO "postgres";

-- public.findings: Grants. The policy's roles may use public.findings and read its access
-- views; they may read only the key and the pseudonym of the base tables, so that no
-- value reaches them but through the access views (not by COPY, functions or pg_stats).
-- Writes run with the writer's own privileges: only members of privata_identity_full and
-- privata_clinical_full may write the identity and the clinical base tables. The original
-- table's grants are kept on the view.
GRANT DELETE, INSERT, REFERENCES, SELECT, TRIGGER, TRUNCATE, UPDATE ON "public"."findings" TO "postgres";
GRANT SELECT, INSERT, UPDATE, DELETE ON "public"."findings" TO "clerk", "doctor", "nurse";
GRANT SELECT ON "privata_access"."findings_clinical" TO "clerk", "doctor", "nurse", "postgres";
GRANT USAGE ON SCHEMA "privata_access" TO "postgres";
REVOKE ALL ON "privata_clinical"."findings" FROM PUBLIC;
GRANT SELECT ("privata_pseudonym") ON "privata_clinical"."findings" TO "clerk", "doctor", "nurse";
GRANT INSERT ("privata_pseudonym", "visit", "code", "value"), UPDATE ("privata_pseudonym", "visit", "code", "value"), DELETE ON "privata_clinical"."findings" TO "privata_clinical_full";
GRANT TRUNCATE ON "privata_clinical"."findings" TO "postgres";
GRANT SELECT ("ctid") ON "privata_clinical"."findings" TO "privata_clinical_full";

-- public.findings: Row-level security, forced so that it binds the owner too: every
-- policy role may read and write rows through the views, and a new identity row must
-- belong to a home region this cluster serves (privata.regions()). REPLICA IDENTITY FULL
-- gives the audit's change stream whole old rows. The statement triggers call
-- privata.emit_context(), which records who changed the rows and why in the write-ahead
-- log.
ALTER TABLE "privata_clinical"."findings" OWNER TO "privata_owner";
ALTER TABLE "privata_clinical"."findings" ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY, REPLICA IDENTITY FULL;
CREATE POLICY "privata" ON "privata_clinical"."findings" USING (true) WITH CHECK (true);
CREATE OR REPLACE TRIGGER "privata_context" BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON "privata_clinical"."findings"
    FOR EACH STATEMENT EXECUTE FUNCTION privata.emit_context();

-- Record what is split and how in privata.tables, with the hash of what was derived and a
-- fingerprint of the catalog, so that the next plan can tell a policy change, or a change
-- made behind Privata's back, from nothing to do.
INSERT INTO privata.tables (schema_name, table_name, kind, key_column,
    subject_schema, subject_table, reference_column, reference_type, columns, app_grants,
    derived_hash, catalog_hash, applied_at)
VALUES ('public', 'people', 'subject', 'id', NULL, NULL, NULL, NULL,
    ARRAY['id', 'ssn', 'name', 'born', 'email', 'blood', 'note', 'created']::text[],
    ARRAY['{"grantee":"postgres","privilege":"DELETE"}', '{"grantee":"postgres","privilege":"INSERT"}', '{"grantee":"postgres","privilege":"REFERENCES"}', '{"grantee":"postgres","privilege":"SELECT"}', '{"grantee":"postgres","privilege":"TRIGGER"}', '{"grantee":"postgres","privilege":"TRUNCATE"}', '{"grantee":"postgres","privilege":"UPDATE"}']::text[],
    '22ee61d2ab3a56b4ed114afa4d51d1c86bacdb6d3283b6815172c5319c00b896', privata.fingerprint('public', 'people'), pg_catalog.now())
ON CONFLICT (schema_name, table_name) DO UPDATE SET kind = EXCLUDED.kind,
    key_column = EXCLUDED.key_column, subject_schema = EXCLUDED.subject_schema,
    subject_table = EXCLUDED.subject_table, reference_column = EXCLUDED.reference_column,
    reference_type = EXCLUDED.reference_type, columns = EXCLUDED.columns,
    app_grants = EXCLUDED.app_grants, derived_hash = EXCLUDED.derived_hash,
    catalog_hash = EXCLUDED.catalog_hash, applied_at = EXCLUDED.applied_at;
INSERT INTO privata.tables (schema_name, table_name, kind, key_column,
    subject_schema, subject_table, reference_column, reference_type, columns, app_grants,
    derived_hash, catalog_hash, applied_at)
VALUES ('public', 'visits', 'child', NULL, 'public', 'people', 'person', 'integer',
    ARRAY['id', 'person', 'at', 'reason', 'cost']::text[],
    ARRAY['{"grantee":"postgres","privilege":"DELETE"}', '{"grantee":"postgres","privilege":"INSERT"}', '{"grantee":"postgres","privilege":"REFERENCES"}', '{"grantee":"postgres","privilege":"SELECT"}', '{"grantee":"postgres","privilege":"TRIGGER"}', '{"grantee":"postgres","privilege":"TRUNCATE"}', '{"grantee":"postgres","privilege":"UPDATE"}']::text[],
    '62d7a1a2a160d7bd8752cd47030be732700ebefc043603b6ae0b615c4fcc79ec', privata.fingerprint('public', 'visits'), pg_catalog.now())
ON CONFLICT (schema_name, table_name) DO UPDATE SET kind = EXCLUDED.kind,
    key_column = EXCLUDED.key_column, subject_schema = EXCLUDED.subject_schema,
    subject_table = EXCLUDED.subject_table, reference_column = EXCLUDED.reference_column,
    reference_type = EXCLUDED.reference_type, columns = EXCLUDED.columns,
    app_grants = EXCLUDED.app_grants, derived_hash = EXCLUDED.derived_hash,
    catalog_hash = EXCLUDED.catalog_hash, applied_at = EXCLUDED.applied_at;
INSERT INTO privata.tables (schema_name, table_name, kind, key_column,
    subject_schema, subject_table, reference_column, reference_type, columns, app_grants,
    derived_hash, catalog_hash, applied_at)
VALUES ('public', 'findings', 'child', NULL, 'public', 'people', 'person', 'integer',
    ARRAY['person', 'visit', 'code', 'value']::text[],
    ARRAY['{"grantee":"postgres","privilege":"DELETE"}', '{"grantee":"postgres","privilege":"INSERT"}', '{"grantee":"postgres","privilege":"REFERENCES"}', '{"grantee":"postgres","privilege":"SELECT"}', '{"grantee":"postgres","privilege":"TRIGGER"}', '{"grantee":"postgres","privilege":"TRUNCATE"}', '{"grantee":"postgres","privilege":"UPDATE"}']::text[],
    '963d02a9984795dd7494310185e1374f695470a09e8ab10e082d8ca5dd294d58', privata.fingerprint('public', 'findings'), pg_catalog.now())
ON CONFLICT (schema_name, table_name) DO UPDATE SET kind = EXCLUDED.kind,
    key_column = EXCLUDED.key_column, subject_schema = EXCLUDED.subject_schema,
    subject_table = EXCLUDED.subject_table, reference_column = EXCLUDED.reference_column,
    reference_type = EXCLUDED.reference_type, columns = EXCLUDED.columns,
    app_grants = EXCLUDED.app_grants, derived_hash = EXCLUDED.derived_hash,
    catalog_hash = EXCLUDED.catalog_hash, applied_at = EXCLUDED.applied_at;

COMMIT;
