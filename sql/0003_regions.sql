-- Cross-region reads (package fdw). A cluster reads other regions' data
-- through postgres_fdw foreign tables; the views of schema privata_global
-- join them with local rows. What may cross is the policy's transfers:
-- `privata apply` writes those that lead into this cluster's regions to
-- privata.transfers, and the views check them for every query.

CREATE TABLE IF NOT EXISTS privata.transfers (
    name        text PRIMARY KEY,
    from_region text NOT NULL,
    to_region   text NOT NULL,
    -- PostgreSQL roles of the policy roles the transfer names
    pg_roles    text[] NOT NULL,
    -- values of privata.purpose; empty: any purpose
    purposes    text[] NOT NULL,
    -- 'identity' and/or 'clinical'
    classes     text[] NOT NULL,
    basis       text NOT NULL
);
GRANT SELECT ON privata.transfers TO PUBLIC;

-- transfer_permits says whether the current role, acting for the session's
-- purpose (privata.purpose()), may read class ('identity' or 'clinical')
-- data of subjects of region from_region in a session of this cluster.
CREATE OR REPLACE FUNCTION privata.transfer_permits(from_region text, class text)
    RETURNS boolean
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN EXISTS (
        SELECT FROM privata.transfers t
        WHERE t.from_region = transfer_permits.from_region
          AND t.to_region = ANY (privata.regions())
          AND transfer_permits.class = ANY (t.classes)
          AND (pg_catalog.cardinality(t.purposes) = 0 OR privata.purpose() = ANY (t.purposes))
          AND EXISTS (SELECT FROM pg_catalog.pg_roles r
                      WHERE r.rolname = ANY (t.pg_roles)
                        AND pg_catalog.pg_has_role(r.oid, 'USAGE')));

-- transfer_gate is true when the current role may read the clinical data
-- of region from_region, and raises insufficient_privilege (42501) naming
-- the region otherwise, so that a cross-region view never returns partial
-- results silently. relation names the view, for the message.
CREATE OR REPLACE FUNCTION privata.transfer_gate(from_region text, relation text)
    RETURNS boolean
    LANGUAGE plpgsql STABLE PARALLEL SAFE
AS $gate$
BEGIN
    IF privata.transfer_permits(from_region, 'clinical') THEN
        RETURN true;
    END IF;
    RAISE EXCEPTION USING ERRCODE = 'insufficient_privilege',
        MESSAGE = pg_catalog.format('%s reads data of region %s, and no transfer of the policy '
            'lets role %s read it for purpose %s', relation, from_region, current_user,
            COALESCE(privata.purpose(), '(none)')),
        HINT = 'Add a transfer to the policy (transfers:), or read the tables of region '
            || from_region || ' you may read through their foreign tables in schema privata_region_'
            || from_region || '.';
END
$gate$;

-- What the last `privata apply` derived for cross-region reads, so that
-- plan can tell a policy change, or a change made behind Privata's back
-- (drift), from nothing to do: derived_hash identifies the SQL apply ran
-- (without secrets); catalog_hash is privata.fdw_fingerprint() right after.
CREATE TABLE IF NOT EXISTS privata.fdw_state (
    one          boolean PRIMARY KEY DEFAULT true CHECK (one),
    servers      text[] NOT NULL,
    schemas      text[] NOT NULL,
    derived_hash text NOT NULL,
    catalog_hash text NOT NULL,
    applied_at   timestamptz NOT NULL
);
REVOKE ALL ON privata.fdw_state FROM PUBLIC;

-- fdw_fingerprint describes, as a hash, the objects Privata keeps for
-- cross-region reads: the foreign servers named, their user mappings
-- (without passwords, which plan compares itself), every relation in the
-- schemas named with its columns, options, grants and view definition,
-- the schemas themselves, and privata.transfers.
CREATE OR REPLACE FUNCTION privata.fdw_fingerprint(servers text[], schemas text[])
    RETURNS text
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $fingerprint$
WITH parts AS (
    SELECT format('server %s %s %s %s %s', s.srvname, w.fdwname, pg_get_userbyid(s.srvowner),
                  s.srvoptions, s.srvacl) AS part
    FROM pg_foreign_server s JOIN pg_foreign_data_wrapper w ON w.oid = s.srvfdw
    WHERE s.srvname = ANY (servers)
    UNION ALL
    SELECT format('mapping %s %s %s', s.srvname,
                  CASE WHEN m.umuser = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(m.umuser) END,
                  ARRAY(SELECT o FROM unnest(m.umoptions) o WHERE o NOT LIKE 'password=%' ORDER BY o))
    FROM pg_user_mapping m JOIN pg_foreign_server s ON s.oid = m.umserver
    WHERE s.srvname = ANY (servers)
    UNION ALL
    SELECT format('schema %s %s %s', n.nspname, pg_get_userbyid(n.nspowner), n.nspacl)
    FROM pg_namespace n WHERE n.nspname = ANY (schemas)
    UNION ALL
    SELECT format('rel %s.%s %s %s %s %s %s %s', n.nspname, c.relname, c.relkind,
                  pg_get_userbyid(c.relowner), c.relacl, c.reloptions,
                  (SELECT format('%s %s', fs.srvname, ft.ftoptions)
                   FROM pg_foreign_table ft JOIN pg_foreign_server fs ON fs.oid = ft.ftserver
                   WHERE ft.ftrelid = c.oid),
                  CASE WHEN c.relkind = 'v' THEN pg_get_viewdef(c.oid) END)
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = ANY (schemas)
    UNION ALL
    SELECT format('col %s.%s %s %s %s %s %s', n.nspname, c.relname, a.attnum, a.attname,
                  format_type(a.atttypid, a.atttypmod), a.attfdwoptions, a.attacl)
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
    WHERE n.nspname = ANY (schemas)
    UNION ALL
    SELECT format('transfer %s %s %s %s %s %s %s', t.name, t.from_region, t.to_region,
                  t.pg_roles, t.purposes, t.classes, t.basis)
    FROM privata.transfers t
)
SELECT encode(sha256(convert_to(coalesce(string_agg(part, E'\n' ORDER BY part COLLATE "C"), ''),
                                'UTF8')), 'hex')
FROM parts
$fingerprint$;

-- Decisions of transactions that wrote to several regions' clusters
-- (two-phase commit, package regions). Each participant's part is prepared
-- with PREPARE TRANSACTION under a global id naming the cluster that keeps
-- the decision; whoever records a decision first (the coordinator:
-- commit; recovery of a transaction left in doubt: abort) decides, and
-- every participant follows it.
CREATE TABLE IF NOT EXISTS privata.twophase (
    gid        text PRIMARY KEY,
    decision   text NOT NULL CHECK (decision IN ('commit', 'abort')),
    decided_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
REVOKE ALL ON privata.twophase FROM PUBLIC;
