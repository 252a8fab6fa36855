-- Access checks and upserts on split tables.

-- has_access says whether the current user has the privileges of one of
-- Privata's group roles (privata_identity_full, ...). The access views call
-- it with a constant, and it is declared IMMUTABLE so that the planner
-- evaluates it once, when it plans a query: each view column then becomes
-- the plain column, its mask or NULL, and filters and joins on it can use
-- the base tables' indexes. A plan is specific to the user it was made for
-- and to the memberships at that time; PostgreSQL plans again when either
-- changes, because every query over the split tables depends on their
-- row-level security (storage/plans_test.go checks both).
-- It is PL/pgSQL rather than SQL: the planner calls it once for each
-- classified column a query reads, and PL/pgSQL keeps its compiled body
-- between calls where an SQL function is parsed and planned on each.
CREATE OR REPLACE FUNCTION privata.has_access(group_role text) RETURNS boolean
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
    AS $$BEGIN RETURN pg_catalog.pg_has_role(group_role, 'USAGE'); END$$;

-- upsert_twice raises the error PostgreSQL raises when an INSERT ... ON
-- CONFLICT DO UPDATE proposes two rows for the same existing row. Upserts
-- on split tables are rewritten (package rewrite) and call it themselves.
CREATE OR REPLACE FUNCTION privata.upsert_twice() RETURNS boolean
    LANGUAGE plpgsql VOLATILE
    AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'cardinality_violation',
        MESSAGE = 'ON CONFLICT DO UPDATE command cannot affect row a second time',
        HINT = 'Ensure that no rows proposed for insertion within the same command have '
            || 'duplicate constrained values.';
END
$$;
