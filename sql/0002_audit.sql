-- The audit trail: who read and who changed which subject's data.
--
-- privata_audit holds two append-only logs: read_log (written by the proxy
-- through audit.Writer) and change_log (written by the logical replication
-- consumer). Each record belongs to a chain (one per proxy instance and per
-- change consumer) and carries the hash of its predecessor, so that
-- `privata audit verify` can name a record that was changed, removed or
-- reordered. No record holds a value of a subject's data: tables and columns
-- are named, subjects are pseudonyms.

CREATE SCHEMA IF NOT EXISTS privata_audit;
REVOKE ALL ON SCHEMA privata_audit FROM PUBLIC;

-- The schemas of the split tables, so that the publication can name them
-- before the first table is split.
CREATE SCHEMA IF NOT EXISTS privata_identity;
CREATE SCHEMA IF NOT EXISTS privata_clinical;

-- Roles for DBAs and for a non-superuser Privata login.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'privata_audit_reader') THEN
        CREATE ROLE privata_audit_reader NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'privata_audit_writer') THEN
        CREATE ROLE privata_audit_writer NOLOGIN;
    END IF;
END $$;

-- One row per chain, written when the chain starts. key_id names the HMAC
-- key the chain is hashed with (NULL: plain SHA-256).
CREATE TABLE IF NOT EXISTS privata_audit.chains (
    chain      text PRIMARY KEY,
    kind       text NOT NULL CHECK (kind IN ('read', 'change')),
    source     text NOT NULL,
    key_id     text,
    started_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);

-- A statement that touched classified columns, as the proxy saw it.
CREATE TABLE IF NOT EXISTS privata_audit.read_log (
    chain       text NOT NULL,
    seq         bigint NOT NULL CHECK (seq > 0),
    at          timestamptz NOT NULL,
    actor       text,
    role        text,
    client_addr text,
    application text,
    purpose     text,
    break_glass boolean NOT NULL,
    statement   text NOT NULL,
    fingerprint text NOT NULL,
    tables      text[] NOT NULL,
    columns     text[] NOT NULL,
    decision    text NOT NULL CHECK (decision IN ('allowed', 'masked', 'refused')),
    reason      text,
    rows        bigint NOT NULL,
    subjects    uuid[] NOT NULL,
    prev_hash   bytea NOT NULL,
    hash        bytea NOT NULL,
    PRIMARY KEY (chain, seq)
);
-- Inserts go to the GIN pending list, merged in bulk by (auto)vacuum: this
-- index is most of what storing a read record costs the server.
CREATE INDEX IF NOT EXISTS read_log_subjects ON privata_audit.read_log USING gin (subjects)
    WITH (gin_pending_list_limit = 32768);

-- A committed change of one row (or a TRUNCATE of one table), from the WAL.
-- lsn is the transaction's commit LSN and ordinal the change's position in
-- the transaction: together they say how far the consumer has come.
CREATE TABLE IF NOT EXISTS privata_audit.change_log (
    chain       text NOT NULL,
    seq         bigint NOT NULL CHECK (seq > 0),
    commit_time timestamptz NOT NULL,
    xid         bigint NOT NULL,
    lsn         pg_lsn NOT NULL,
    ordinal     integer NOT NULL,
    operation   text NOT NULL CHECK (operation IN ('insert', 'update', 'delete', 'truncate')),
    relation    text NOT NULL,
    subject     uuid,
    columns     text[] NOT NULL,
    actor       text,
    purpose     text,
    role        text,
    application text,
    break_glass boolean NOT NULL,
    prev_hash   bytea NOT NULL,
    hash        bytea NOT NULL,
    PRIMARY KEY (chain, seq)
);
CREATE INDEX IF NOT EXISTS change_log_subject ON privata_audit.change_log (subject)
    WHERE subject IS NOT NULL;

-- Append-only: no role may update, delete or truncate, and a trigger refuses
-- it even for the owner and superusers (ENABLE ALWAYS: also when
-- session_replication_role is replica).
CREATE OR REPLACE FUNCTION privata_audit.refuse_change() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RAISE EXCEPTION '% on %.% refused: the audit log is append-only',
            TG_OP, TG_TABLE_SCHEMA, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'audit records are never changed or removed';
END $$;

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['chains', 'read_log', 'change_log'] LOOP
        EXECUTE format('CREATE OR REPLACE TRIGGER append_only
            BEFORE UPDATE OR DELETE OR TRUNCATE ON privata_audit.%I
            FOR EACH STATEMENT EXECUTE FUNCTION privata_audit.refuse_change()', t);
        EXECUTE format('ALTER TABLE privata_audit.%I ENABLE ALWAYS TRIGGER append_only', t);
        EXECUTE format('REVOKE ALL ON privata_audit.%I FROM PUBLIC', t);
        EXECUTE format('REVOKE UPDATE, DELETE, TRUNCATE ON privata_audit.%I FROM CURRENT_USER', t);
        EXECUTE format('GRANT SELECT, INSERT ON privata_audit.%I TO privata_audit_writer', t);
    END LOOP;
END $$;

-- What DBAs and compliance officers query.
CREATE OR REPLACE VIEW privata_audit.reads AS
SELECT r.at, r.actor, r.role, r.purpose, r.break_glass, r.application, r.client_addr,
       r.statement, r.fingerprint, r.tables, r.columns, r.decision, r.reason, r.rows,
       r.subjects, r.chain, r.seq, pg_catalog.encode(r.hash, 'hex') AS hash
FROM privata_audit.read_log r;

CREATE OR REPLACE VIEW privata_audit.changes AS
SELECT c.commit_time AS at, c.actor, c.role, c.purpose, c.break_glass, c.application,
       c.operation, pg_catalog.split_part(c.relation, '.', 1) AS table_schema,
       pg_catalog.split_part(c.relation, '.', 2) AS table_name, c.subject, c.columns,
       c.xid, c.lsn, c.chain, c.seq, pg_catalog.encode(c.hash, 'hex') AS hash
FROM privata_audit.change_log c;

-- disclosures lists who received a subject's data (reads that returned the
-- subject's rows) and who changed it, oldest first.
CREATE OR REPLACE FUNCTION privata_audit.disclosures(subject uuid)
RETURNS TABLE (at timestamptz, kind text, actor text, role text, purpose text,
               break_glass boolean, application text, client_addr text, action text,
               tables text[], columns text[], chain text, seq bigint)
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT r.at, 'read', r.actor, r.role, r.purpose, r.break_glass, r.application,
           r.client_addr, r.decision, r.tables, r.columns, r.chain, r.seq
    FROM privata_audit.reads r
    WHERE r.subjects @> ARRAY[disclosures.subject] AND r.decision <> 'refused'
    UNION ALL
    SELECT c.at, 'change', c.actor, c.role, c.purpose, c.break_glass, c.application,
           NULL, c.operation, ARRAY[c.table_schema || '.' || c.table_name], c.columns,
           c.chain, c.seq
    FROM privata_audit.changes c
    WHERE c.subject = disclosures.subject
    ORDER BY 1, 12, 13
$$;

REVOKE ALL ON privata_audit.reads, privata_audit.changes FROM PUBLIC;
REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON privata_audit.reads, privata_audit.changes
    FROM CURRENT_USER;
GRANT USAGE ON SCHEMA privata_audit TO privata_audit_reader, privata_audit_writer;
GRANT SELECT ON privata_audit.reads, privata_audit.changes, privata_audit.chains
    TO privata_audit_reader;
GRANT EXECUTE ON FUNCTION privata_audit.disclosures(uuid) TO privata_audit_reader;

-- The change stream: every split table, as pgoutput sees it.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_publication WHERE pubname = 'privata_changes') THEN
        CREATE PUBLICATION privata_changes FOR TABLES IN SCHEMA privata_identity, privata_clinical;
    END IF;
END $$;

-- The session context of a change, carried into the WAL. Every base table
-- gets a BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ... FOR EACH STATEMENT
-- trigger running emit_context(), which writes a transactional logical
-- message (prefix 'privata') with the actor, purpose, break-glass flag, role
-- and application name, once per transaction and context: the consumer
-- attributes the transaction's following changes to it. A client that
-- bypasses Privata gets no actor but is still named by its role.
--
-- Only emit_context_message may write 'privata' messages: PUBLIC may not
-- call pg_logical_emit_message, and the role a message names must be one the
-- session may take on, so that a session cannot attribute its changes to a
-- role it could not act as.
REVOKE EXECUTE ON FUNCTION pg_catalog.pg_logical_emit_message(boolean, text, text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION pg_catalog.pg_logical_emit_message(boolean, text, bytea) FROM PUBLIC;

CREATE OR REPLACE FUNCTION privata.emit_context_message(context text) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    claimed text := (context::json)->>'role';
BEGIN
    IF claimed IS NULL OR NOT EXISTS (SELECT FROM pg_roles WHERE rolname = claimed)
            OR NOT pg_has_role(session_user, claimed, 'MEMBER') THEN
        RAISE EXCEPTION 'audit context names a role this session cannot act as'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    PERFORM pg_logical_emit_message(true, 'privata', context);
END $$;

CREATE OR REPLACE FUNCTION privata.emit_context() RETURNS trigger
    LANGUAGE plpgsql AS $$
DECLARE
    context text;
BEGIN
    context := pg_catalog.json_build_object(
        'actor', nullif(pg_catalog.current_setting('privata.actor', true), ''),
        'purpose', nullif(pg_catalog.current_setting('privata.purpose', true), ''),
        'break_glass', coalesce(pg_catalog.lower(
            pg_catalog.current_setting('privata.break_glass', true))
            IN ('on', 'true', 'yes', '1', 't'), false),
        'role', current_user::text,
        'application', nullif(pg_catalog.current_setting('application_name', true), '')
    )::text;
    IF context IS DISTINCT FROM pg_catalog.current_setting('privata.emitted_context', true) THEN
        PERFORM privata.emit_context_message(context);
        PERFORM pg_catalog.set_config('privata.emitted_context', context, true);
    END IF;
    RETURN NULL;
END $$;

-- Every role whose writes fire the trigger must reach emit_context_message.
GRANT USAGE ON SCHEMA privata TO PUBLIC;
