-- Catalog emulation: the catalogs as they would read if every split table
-- were a plain table.
--
-- After `privata apply`, a classified table is a view over base tables in
-- privata_identity and privata_clinical. ORMs introspect the catalogs
-- (information_schema, pg_catalog) to learn a table's columns, keys and
-- indexes, and would see a view with no constraints. The proxy (package
-- rewrite) makes the statements that read those catalogs read the views of
-- schema privata_catalog instead. Each has exactly the columns of the
-- relation it stands for, and shows a split table's view as a table
-- (relkind 'r', BASE TABLE) carrying its base tables' constraints, indexes,
-- NOT NULL flags, defaults and identity columns, under the application's
-- column names and the view's attribute numbers. The view's oid stands for
-- the table. The base tables stay visible in their own schemas, without the
-- objects the view now shows.
--
-- The pg_catalog relations are rebuilt column by column from the originals'
-- definitions; the information_schema views and pg_catalog's own views are
-- created from their definitions (pg_get_viewdef) with privata_catalog first
-- on the search path, so that they read the emulated relations. Both follow
-- the server's version. The schema is dropped and created again whenever this
-- file is installed: nothing outside it depends on it.
DROP SCHEMA IF EXISTS privata_catalog CASCADE;
CREATE SCHEMA privata_catalog;
GRANT USAGE ON SCHEMA privata_catalog TO PUBLIC;

-- split_relations pairs each split table's view with its base tables.
-- main marks the base table whose storage stands for the table's (the
-- identity table of a subject, the clinical table of a child).
CREATE VIEW privata_catalog.split_relations AS
SELECT v.oid AS view_oid, v.relnamespace AS view_namespace, b.oid AS base_oid,
       t.kind, t.key_column, t.reference_column,
       (bn.nspname = 'privata_identity') = (t.kind = 'subject') AS main
FROM privata.tables t
JOIN pg_catalog.pg_namespace n ON n.nspname = t.schema_name
JOIN pg_catalog.pg_class v ON v.relnamespace = n.oid AND v.relname = t.table_name AND v.relkind = 'v'
JOIN pg_catalog.pg_namespace bn ON bn.nspname IN ('privata_identity', 'privata_clinical')
JOIN pg_catalog.pg_class b ON b.relnamespace = bn.oid AND b.relname = t.table_name
    AND b.relkind IN ('r', 'p');

-- split_columns maps base columns to the view's columns. stores marks the
-- column that stores a view column (one per view column; a child's
-- reference column is stored as the pseudonym, flagged reference). A
-- subject's pseudonyms stand for its key only where a foreign key refers
-- to them (stores false).
CREATE VIEW privata_catalog.split_columns AS
SELECT r.view_oid, va.attnum AS view_attnum, r.base_oid, ba.attnum AS base_attnum,
       ba.attname = 'privata_pseudonym' AS reference,
       ba.attname <> 'privata_pseudonym' OR r.kind = 'child' AS stores
FROM privata_catalog.split_relations r
JOIN pg_catalog.pg_attribute ba ON ba.attrelid = r.base_oid AND ba.attnum > 0 AND NOT ba.attisdropped
JOIN pg_catalog.pg_attribute va ON va.attrelid = r.view_oid AND va.attnum > 0 AND NOT va.attisdropped
    AND va.attname = CASE WHEN ba.attname <> 'privata_pseudonym' THEN ba.attname
                          WHEN r.kind = 'child' THEN r.reference_column
                          ELSE r.key_column END;

-- splits and split_attnums return the rows of split_relations and
-- split_columns. The emulations read them through these PL/pgSQL
-- functions, which the planner does not look into: a catalog query over
-- several emulations is planned in a few milliseconds, not a hundred.
CREATE FUNCTION privata_catalog.splits() RETURNS SETOF privata_catalog.split_relations
    LANGUAGE plpgsql STABLE ROWS 10
AS $splits$ BEGIN RETURN QUERY SELECT * FROM privata_catalog.split_relations; END $splits$;

CREATE FUNCTION privata_catalog.split_attnums() RETURNS SETOF privata_catalog.split_columns
    LANGUAGE plpgsql STABLE ROWS 100
AS $attnums$ BEGIN RETURN QUERY SELECT * FROM privata_catalog.split_columns; END $attnums$;

-- map_keys maps the attribute numbers keys of base table base to the
-- view's, or returns NULL when one has no counterpart. Zeros (expressions
-- of an index) stay zeros. A subject's pseudonym counts only when
-- referenced, a child's reference column only when with_reference.
CREATE FUNCTION privata_catalog.map_keys(base oid, keys int2[], referenced boolean,
                                         with_reference boolean) RETURNS int2[]
    LANGUAGE plpgsql STABLE
AS $map_keys$
BEGIN
    RETURN (
        SELECT CASE WHEN count(*) = count(m.view_attnum) + count(*) FILTER (WHERE k.n = 0)
                    THEN array_agg(COALESCE(m.view_attnum, 0)::int2 ORDER BY k.i) END
        FROM unnest(keys) WITH ORDINALITY k(n, i)
        LEFT JOIN privata_catalog.split_columns m ON m.base_oid = base AND m.base_attnum = k.n
            AND (referenced OR m.stores) AND (with_reference OR NOT m.reference));
END
$map_keys$;

-- emulate creates privata_catalog.<name> with exactly the columns of
-- pg_catalog.<name>: each is x.<column> of from_clause, or the expression
-- overrides gives for it, cast to the column's type.
CREATE FUNCTION privata_catalog.emulate(name text, from_clause text, overrides jsonb)
    RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $emulate$
DECLARE
    cols text;
    unknown text;
BEGIN
    SELECT string_agg(CASE WHEN overrides ? a.attname
                           THEN format('(%s)::%s AS %I', overrides ->> a.attname,
                                       format_type(a.atttypid, a.atttypmod), a.attname)
                           -- a view cannot have a column of type anyarray
                           -- (pg_attribute.attmissingval): it reads as text[]
                           WHEN a.atttypid = 'anyarray'::regtype
                           THEN format('x.%I::text::text[] AS %I', a.attname, a.attname)
                           ELSE format('x.%I', a.attname) END, ', ' ORDER BY a.attnum)
    INTO cols
    FROM pg_attribute a
    WHERE a.attrelid = format('pg_catalog.%I', name)::regclass AND a.attnum > 0 AND NOT a.attisdropped;

    SELECT string_agg(k, ', ') INTO unknown
    FROM jsonb_object_keys(overrides) k
    WHERE NOT EXISTS (SELECT FROM pg_attribute a
                      WHERE a.attrelid = format('pg_catalog.%I', name)::regclass AND a.attname = k);
    IF unknown IS NOT NULL THEN
        RAISE EXCEPTION 'privata_catalog.%: pg_catalog.% has no column %', name, name, unknown;
    END IF;

    EXECUTE format('CREATE VIEW privata_catalog.%I AS SELECT %s %s', name, cols, from_clause);
END
$emulate$;

-- object_name is the name Privata gives an object it makes (package
-- storage's objectName): name, or when longer than an identifier can be,
-- its first bytes and a hash.
CREATE FUNCTION privata_catalog.object_name(name text) RETURNS text
    LANGUAGE plpgsql IMMUTABLE STRICT
AS $object_name$
DECLARE
    b bytea := pg_catalog.convert_to(name, 'UTF8');
    cut int := 63 - 9;
BEGIN
    IF pg_catalog.length(b) <= 63 THEN
        RETURN name;
    END IF;
    WHILE cut > 0 AND pg_catalog.get_byte(b, cut) & 192 = 128 LOOP
        cut := cut - 1;
    END LOOP;
    RETURN pg_catalog.convert_from(pg_catalog.substring(b, 1, cut), 'UTF8') || '_'
        || pg_catalog.left(pg_catalog.encode(pg_catalog.sha256(b), 'hex'), 8);
END
$object_name$;

-- split_indexes are the indexes of the base tables, with the view and key
-- columns they show on (keys NULL: Privata's own, on the pseudonym). A
-- child's index that names its reference column shows, on that column,
-- unless it is the one Privata adds for the pseudonym.
CREATE FUNCTION privata_catalog.split_indexes()
    RETURNS TABLE (indexrelid oid, view_oid oid, view_namespace oid, keys int2[])
    LANGUAGE plpgsql STABLE ROWS 20
AS $split_indexes$
BEGIN
    RETURN QUERY
    SELECT i.indexrelid, r.view_oid, r.view_namespace,
           privata_catalog.map_keys(i.indrelid, i.indkey::int2[], false,
               r.kind = 'child' AND ic.relname <> privata_catalog.object_name(
                   b.relname || '_privata_pseudonym_idx'))
    FROM pg_catalog.pg_index i
    JOIN privata_catalog.split_relations r ON r.base_oid = i.indrelid
    JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
    JOIN pg_catalog.pg_class b ON b.oid = i.indrelid;
END
$split_indexes$;

-- reference_named prints the pseudonym, in a definition of an index or
-- constraint of child table rel's, as the reference column it stores.
CREATE FUNCTION privata_catalog.reference_named(def text, rel oid) RETURNS text
    LANGUAGE sql STABLE
RETURN COALESCE(
    (SELECT pg_catalog.regexp_replace(def, '\mprivata_pseudonym\M',
                                      pg_catalog.quote_ident(r.reference_column), 'g')
     FROM privata_catalog.splits() r WHERE r.view_oid = rel AND r.kind = 'child' LIMIT 1),
    def);

-- split_constraints are the constraints on or referring to base tables,
-- as they show: on the view, with its columns, a foreign key that refers
-- to a subject's pseudonym referring to the subject's view, key and key
-- index; a child's that names its reference column (stored as the
-- pseudonym) on that column. shown is false for Privata's own (on a
-- subject's pseudonym).
CREATE FUNCTION privata_catalog.split_constraints()
    RETURNS TABLE (oid oid, contype "char", shown boolean, conrelid oid, connamespace oid,
                   conkey int2[], confrelid oid, confkey int2[], conindid oid, base_conindid oid)
    LANGUAGE plpgsql STABLE ROWS 20
AS $split_constraints$
BEGIN
    RETURN QUERY
    SELECT k.oid, k.contype,
           (r.view_oid IS NULL OR m.keys IS NOT NULL) AND (fr.view_oid IS NULL OR fm.keys IS NOT NULL),
           COALESCE(r.view_oid, k.conrelid), COALESCE(r.view_namespace, k.connamespace),
           CASE WHEN r.view_oid IS NULL THEN k.conkey ELSE m.keys END,
           COALESCE(fr.view_oid, k.confrelid),
           CASE WHEN fr.view_oid IS NULL THEN k.confkey ELSE fm.keys END,
           COALESCE(pk.conindid, k.conindid), k.conindid
    FROM pg_catalog.pg_constraint k
    LEFT JOIN privata_catalog.split_relations r ON r.base_oid = k.conrelid
    LEFT JOIN privata_catalog.split_relations fr ON fr.base_oid = k.confrelid
    CROSS JOIN LATERAL (SELECT privata_catalog.map_keys(k.conrelid, k.conkey, false, true)
                        AS keys) m
    CROSS JOIN LATERAL (SELECT privata_catalog.map_keys(k.confrelid, k.confkey, true, true) AS keys) fm
    LEFT JOIN LATERAL (
        SELECT p.conindid FROM pg_catalog.pg_constraint p
        JOIN privata_catalog.split_relations pr ON pr.base_oid = p.conrelid
        WHERE pr.view_oid = fr.view_oid AND pr.main AND p.contype = 'p') pk
        ON fr.kind = 'subject' AND NOT fr.main
    WHERE r.view_oid IS NOT NULL OR fr.view_oid IS NOT NULL;
END
$split_constraints$;

-- index_classes returns the operator classes (classes) or collations of
-- index idx of a base table as they show on view: where the index has a
-- child's pseudonym, the default operator class of the reference column's
-- type (or one it is binary coercible to) and its collation.
CREATE FUNCTION privata_catalog.index_classes(idx oid, view oid, classes boolean) RETURNS oid[]
    LANGUAGE sql STABLE
RETURN (
    SELECT pg_catalog.array_agg(CASE WHEN b.attname IS DISTINCT FROM 'privata_pseudonym' THEN k.cls
                                     WHEN NOT classes THEN v.attcollation
                                     ELSE (SELECT oc.oid FROM pg_catalog.pg_opclass oc
                                           WHERE oc.opcmethod = ic.relam AND oc.opcdefault
                                             AND (oc.opcintype = v.atttypid
                                                  OR EXISTS (SELECT FROM pg_catalog.pg_cast c
                                                             WHERE c.castsource = v.atttypid
                                                               AND c.casttarget = oc.opcintype
                                                               AND c.castmethod = 'b'))
                                           ORDER BY oc.opcintype = v.atttypid DESC LIMIT 1) END
                                ORDER BY k.i)
    FROM pg_catalog.pg_index i
    JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
    CROSS JOIN LATERAL pg_catalog.unnest(CASE WHEN classes THEN i.indclass::oid[]
                                              ELSE i.indcollation::oid[] END) WITH ORDINALITY k(cls, i)
    LEFT JOIN pg_catalog.pg_attribute b ON b.attrelid = i.indrelid AND b.attnum = i.indkey[k.i - 1]
    LEFT JOIN privata_catalog.splits() r ON r.view_oid = view AND r.kind = 'child'
    LEFT JOIN pg_catalog.pg_attribute v ON v.attrelid = view AND v.attname = r.reference_column
    WHERE i.indexrelid = idx);

-- pg_index: a base table's index whose key columns all belong to the
-- application shows on the view, a child's on the reference column that
-- its pseudonym stores; the indexes Privata adds (pseudonyms) stay on the
-- base tables.
SELECT privata_catalog.emulate('pg_index', $from$
FROM pg_catalog.pg_index x
LEFT JOIN privata_catalog.split_indexes() s ON s.indexrelid = x.indexrelid
WHERE s.indexrelid IS NULL OR s.keys IS NOT NULL
$from$, jsonb_build_object(
    'indrelid', 'COALESCE(s.view_oid, x.indrelid)',
    'indclass', 'CASE WHEN s.indexrelid IS NULL THEN x.indclass
                      ELSE pg_catalog.array_to_string(privata_catalog.index_classes(x.indexrelid,
                               s.view_oid, true), '' '')::pg_catalog.oidvector END',
    'indcollation', 'CASE WHEN s.indexrelid IS NULL THEN x.indcollation
                          ELSE pg_catalog.array_to_string(privata_catalog.index_classes(x.indexrelid,
                                   s.view_oid, false), '' '')::pg_catalog.oidvector END',
    'indkey', 'CASE WHEN s.indexrelid IS NULL THEN x.indkey
                    ELSE pg_catalog.array_to_string(s.keys, '' '')::pg_catalog.int2vector END'));

-- pg_constraint: a base table's constraint whose columns all belong to the
-- application shows on the view, and a foreign key that refers to a
-- subject's pseudonym refers to the subject's view and key.
SELECT privata_catalog.emulate('pg_constraint', $from$
FROM pg_catalog.pg_constraint x
LEFT JOIN privata_catalog.split_constraints() s ON s.oid = x.oid
WHERE s.oid IS NULL OR s.shown
$from$, jsonb_build_object(
    'conrelid', 'COALESCE(s.conrelid, x.conrelid)',
    'connamespace', 'COALESCE(s.connamespace, x.connamespace)',
    'conkey', 'CASE WHEN s.oid IS NULL THEN x.conkey ELSE s.conkey END',
    'confrelid', 'COALESCE(s.confrelid, x.confrelid)',
    'confkey', 'CASE WHEN s.oid IS NULL THEN x.confkey ELSE s.confkey END',
    'conindid', 'COALESCE(s.conindid, x.conindid)'));

-- pg_attribute: a view column carries what the column that stores it
-- carries (NOT NULL, default, identity, generation, statistics), and the
-- view gets a table's system columns.
SELECT privata_catalog.emulate('pg_attribute', $from$
FROM (SELECT a.*, a.attrelid AS rel FROM pg_catalog.pg_attribute a
      UNION ALL
      SELECT a.*, r.view_oid FROM privata_catalog.splits() r
      JOIN pg_catalog.pg_attribute a ON a.attrelid = r.base_oid AND a.attnum < 0
      WHERE r.main) x
LEFT JOIN privata_catalog.split_attnums() m ON m.view_oid = x.attrelid AND m.view_attnum = x.attnum AND m.stores
LEFT JOIN pg_catalog.pg_attribute b ON b.attrelid = m.base_oid AND b.attnum = m.base_attnum
$from$, jsonb_build_object(
    'attrelid', 'x.rel',
    'attstattarget', 'COALESCE(b.attstattarget, x.attstattarget)',
    'attcompression', 'COALESCE(b.attcompression, x.attcompression)',
    'attnotnull', 'COALESCE(b.attnotnull, x.attnotnull)',
    'atthasdef', 'COALESCE(b.atthasdef, x.atthasdef)',
    'attidentity', 'COALESCE(b.attidentity, x.attidentity)',
    'attgenerated', 'COALESCE(b.attgenerated, x.attgenerated)',
    'attoptions', 'CASE WHEN b.attrelid IS NULL THEN x.attoptions ELSE b.attoptions END'));

-- pg_attrdef: the view keeps a copy of its base tables' defaults; an
-- identity column has none (its sequence is its default).
SELECT privata_catalog.emulate('pg_attrdef', $from$
FROM pg_catalog.pg_attrdef x
LEFT JOIN privata_catalog.split_attnums() m ON m.view_oid = x.adrelid AND m.view_attnum = x.adnum AND m.stores
LEFT JOIN pg_catalog.pg_attribute b ON b.attrelid = m.base_oid AND b.attnum = m.base_attnum
WHERE m.view_oid IS NULL OR b.atthasdef
$from$, '{}');

-- pg_depend: what depends on a base column (its identity or serial
-- sequence, a check constraint) depends on the view's column; a foreign
-- key that now refers to a subject's key depends on the key's index.
SELECT privata_catalog.emulate('pg_depend', $from$
FROM pg_catalog.pg_depend x
LEFT JOIN privata_catalog.split_attnums() m ON x.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
    AND m.base_oid = x.refobjid AND m.base_attnum = x.refobjsubid AND m.stores AND NOT m.reference
LEFT JOIN privata_catalog.split_constraints() ci
    ON x.classid = 'pg_catalog.pg_constraint'::pg_catalog.regclass AND ci.oid = x.objid
    AND x.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass AND x.refobjid = ci.base_conindid
    AND ci.conindid <> ci.base_conindid
$from$, jsonb_build_object(
    'refobjid', 'COALESCE(ci.conindid, m.view_oid, x.refobjid)',
    'refobjsubid', 'COALESCE(m.view_attnum, x.refobjsubid)'));

-- pg_trigger: the INSTEAD OF triggers that split a view's writes are
-- Privata's; a plain table has none.
SELECT privata_catalog.emulate('pg_trigger', $from$
FROM pg_catalog.pg_trigger x
WHERE NOT (x.tgname IN ('privata_insert', 'privata_update', 'privata_delete')
           AND EXISTS (SELECT FROM privata_catalog.splits() r WHERE r.view_oid = x.tgrelid))
$from$, '{}');

-- pg_class: the view reads as a table, with its main base table's storage,
-- owned by the role reading the catalog when it has a privilege on it: as
-- a table the application created (information_schema shows some facts,
-- such as constraint_column_usage, to a table's owner only); an index that
-- shows on the view is in the view's schema. A sequence a column owns
-- stays where it is (privata_identity or privata_clinical): a regclass
-- names it there. The base tables and the indexes
-- Privata adds to them are left out: ORMs that look a table up by name
-- without its schema (Sequelize's showIndex) would take them for the
-- application's.
SELECT privata_catalog.emulate('pg_class', $from$
FROM pg_catalog.pg_class x
LEFT JOIN privata_catalog.splits() r ON r.view_oid = x.oid AND r.main
LEFT JOIN pg_catalog.pg_class b ON b.oid = r.base_oid
LEFT JOIN privata_catalog.split_indexes() ix ON ix.indexrelid = x.oid
WHERE NOT EXISTS (SELECT FROM privata_catalog.splits() h WHERE h.base_oid = x.oid)
  AND (ix.indexrelid IS NULL OR ix.keys IS NOT NULL)
$from$, jsonb_build_object(
    'relnamespace', 'COALESCE(ix.view_namespace, x.relnamespace)',
    'relowner', 'CASE WHEN r.view_oid IS NOT NULL AND pg_catalog.has_table_privilege(x.oid,
                          ''SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER'')
                      THEN CURRENT_USER::pg_catalog.regrole
                      ELSE x.relowner END',
    'relkind', 'CASE WHEN r.view_oid IS NULL THEN x.relkind ELSE ''r'' END',
    'relam', 'COALESCE(b.relam, x.relam)',
    'relfilenode', 'COALESCE(b.relfilenode, x.relfilenode)',
    'reltablespace', 'COALESCE(b.reltablespace, x.reltablespace)',
    'relpages', 'COALESCE(b.relpages, x.relpages)',
    'reltuples', 'COALESCE(b.reltuples, x.reltuples)',
    'relallvisible', 'COALESCE(b.relallvisible, x.relallvisible)',
    'reltoastrelid', 'COALESCE(b.reltoastrelid, x.reltoastrelid)',
    'relhasindex', 'CASE WHEN r.view_oid IS NULL THEN x.relhasindex
                         ELSE EXISTS (SELECT FROM privata_catalog.split_indexes() i
                                      WHERE i.view_oid = x.oid AND i.keys IS NOT NULL) END',
    'relchecks', 'CASE WHEN r.view_oid IS NULL THEN x.relchecks
                       ELSE (SELECT pg_catalog.count(*) FROM privata_catalog.split_constraints() k
                             WHERE k.conrelid = x.oid AND k.shown AND k.contype = ''c'') END',
    'relhasrules', 'x.relhasrules AND r.view_oid IS NULL',
    'relhastriggers', 'CASE WHEN r.view_oid IS NULL THEN x.relhastriggers
                            ELSE EXISTS (SELECT FROM privata_catalog.split_constraints() k
                                         WHERE k.contype = ''f'' AND k.shown
                                         AND x.oid IN (k.conrelid, k.confrelid)) END',
    'relreplident', 'CASE WHEN r.view_oid IS NULL THEN x.relreplident ELSE ''d'' END',
    'relfrozenxid', 'COALESCE(b.relfrozenxid, x.relfrozenxid)',
    'relminmxid', 'COALESCE(b.relminmxid, x.relminmxid)',
    'reloptions', 'CASE WHEN r.view_oid IS NULL THEN x.reloptions ELSE b.reloptions END'));

-- Text that names base tables or their sequences names the view instead.

-- pg_get_expr: an expression of a split table's index (indexprs, indpred)
-- or check constraint (conbin) numbers the columns of its base table, and
-- is printed against it; a serial default names its sequence as it would
-- in the table's schema.
CREATE FUNCTION privata_catalog.pg_get_expr(expr pg_catalog.pg_node_tree, rel oid,
                                            pretty boolean DEFAULT false) RETURNS text
    LANGUAGE sql STABLE
RETURN CASE WHEN EXISTS (SELECT FROM privata_catalog.splits() r WHERE r.view_oid = rel)
            THEN privata_catalog.reference_named(pg_catalog.regexp_replace(
                     pg_catalog.pg_get_expr(expr, COALESCE(
                         (SELECT i.indrelid FROM pg_catalog.pg_index i
                          JOIN privata_catalog.splits() r ON r.base_oid = i.indrelid
                          WHERE r.view_oid = rel AND (i.indpred::text = expr::text
                                                      OR i.indexprs::text = expr::text)
                          LIMIT 1),
                         (SELECT k.conrelid FROM pg_catalog.pg_constraint k
                          JOIN privata_catalog.splits() r ON r.base_oid = k.conrelid
                          WHERE r.view_oid = rel AND k.conbin::text = expr::text
                          LIMIT 1),
                         rel), pretty),
                     '^nextval\(''privata_(identity|clinical)\.',
                     'nextval(''' || (SELECT CASE WHEN pg_catalog.pg_table_is_visible(rel) THEN ''
                                                  ELSE pg_catalog.quote_ident(n.nspname) || '.' END
                                      FROM pg_catalog.pg_class c
                                      JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                                      WHERE c.oid = rel)), rel)
            ELSE pg_catalog.pg_get_expr(expr, rel, pretty) END;

-- relation_name prints a relation's name as the server does, qualified,
-- or (qualify false) only when the search path does not find it.
CREATE FUNCTION privata_catalog.relation_name(rel oid, qualify boolean) RETURNS text
    LANGUAGE sql STABLE
RETURN (SELECT CASE WHEN qualify OR NOT pg_catalog.pg_table_is_visible(c.oid)
                    THEN pg_catalog.quote_ident(n.nspname) || '.' ELSE '' END
               || pg_catalog.quote_ident(c.relname)
        FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        WHERE c.oid = rel);

-- pg_get_indexdef: an index that shows on a view is defined on it, on
-- the view's columns.
CREATE FUNCTION privata_catalog.pg_get_indexdef(idx oid, col integer, pretty boolean)
    RETURNS text
    LANGUAGE sql STABLE
RETURN COALESCE(
    (SELECT privata_catalog.reference_named(
                pg_catalog.replace(pg_catalog.pg_get_indexdef(idx, col, pretty),
                                   ' ON ' || privata_catalog.relation_name(i.indrelid, true) || ' USING ',
                                   ' ON ' || privata_catalog.relation_name(s.view_oid, NOT pretty) || ' USING '),
                s.view_oid)
     FROM privata_catalog.split_indexes() s JOIN pg_catalog.pg_index i ON i.indexrelid = s.indexrelid
     WHERE s.indexrelid = idx AND s.keys IS NOT NULL),
    pg_catalog.pg_get_indexdef(idx, col, pretty));

CREATE FUNCTION privata_catalog.pg_get_indexdef(idx oid) RETURNS text
    LANGUAGE sql STABLE
RETURN privata_catalog.pg_get_indexdef(idx, 0, false);

-- pg_get_constraintdef: a foreign key that now refers to a view column
-- names it; a child's constraint names its reference column.
CREATE FUNCTION privata_catalog.pg_get_constraintdef(con oid, pretty boolean) RETURNS text
    LANGUAGE sql STABLE
RETURN COALESCE(
    (SELECT CASE WHEN e.contype <> 'f' THEN privata_catalog.reference_named(
                     pg_catalog.pg_get_constraintdef(con, pretty), e.conrelid)
            ELSE pg_catalog.regexp_replace(pg_catalog.pg_get_constraintdef(con, pretty),
                '^FOREIGN KEY \(.*?\) REFERENCES .*?\(.*?\)',
                'FOREIGN KEY (' || (SELECT pg_catalog.string_agg(pg_catalog.quote_ident(a.attname), ', '
                                                                ORDER BY k.i)
                                    FROM pg_catalog.unnest(e.conkey) WITH ORDINALITY k(n, i)
                                    JOIN pg_catalog.pg_attribute a ON a.attrelid = e.conrelid
                                        AND a.attnum = k.n)
                || ') REFERENCES ' || privata_catalog.relation_name(e.confrelid, false) || '('
                || (SELECT pg_catalog.string_agg(pg_catalog.quote_ident(a.attname), ', ' ORDER BY k.i)
                    FROM pg_catalog.unnest(e.confkey) WITH ORDINALITY k(n, i)
                    JOIN pg_catalog.pg_attribute a ON a.attrelid = e.confrelid AND a.attnum = k.n)
                || ')') END
     FROM privata_catalog.split_constraints() e JOIN pg_catalog.pg_constraint o ON o.oid = e.oid
     WHERE e.oid = con AND e.shown
       AND (e.conrelid, e.confrelid) <> (o.conrelid, o.confrelid)),
    pg_catalog.pg_get_constraintdef(con, pretty));

CREATE FUNCTION privata_catalog.pg_get_constraintdef(con oid) RETURNS text
    LANGUAGE sql STABLE
RETURN privata_catalog.pg_get_constraintdef(con, false);

-- pg_get_serial_sequence: the sequence a split table's column owns (its
-- serial or identity sequence), which PostgreSQL's own function, reading
-- the view, does not find. It is named where it is: in privata_identity or
-- privata_clinical.
CREATE FUNCTION privata_catalog.pg_get_serial_sequence(tab text, col text) RETURNS text
    LANGUAGE sql STABLE STRICT
RETURN COALESCE(
    (SELECT pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(s.relname)
     FROM pg_catalog.pg_attribute a
     JOIN privata_catalog.pg_depend d ON d.refobjid = a.attrelid AND d.refobjsubid = a.attnum
         AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
         AND d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.deptype IN ('a', 'i')
     JOIN pg_catalog.pg_class s ON s.oid = d.objid AND s.relkind = 'S'
     JOIN pg_catalog.pg_namespace n ON n.oid = s.relnamespace
     WHERE a.attrelid = tab::pg_catalog.regclass AND a.attname = col AND NOT a.attisdropped
       AND EXISTS (SELECT FROM privata_catalog.splits() r WHERE r.view_oid = a.attrelid)
     LIMIT 1),
    pg_catalog.pg_get_serial_sequence(tab, col));

-- _pg_index_position: information_schema's helper, over the emulated
-- pg_index.
CREATE FUNCTION privata_catalog._pg_index_position(oid, smallint) RETURNS integer
    LANGUAGE sql STABLE STRICT
RETURN (SELECT (ss.a).n
        FROM (SELECT information_schema._pg_expandarray(COALESCE(s.keys, i.indkey::int2[])) AS a
              FROM pg_catalog.pg_index i
              LEFT JOIN privata_catalog.split_indexes() s ON s.indexrelid = i.indexrelid
              WHERE i.indexrelid = $1) ss
        WHERE (ss.a).x = $2);

-- _pg_truetypid, _pg_truetypmod: information_schema's helpers, taking the
-- emulated pg_attribute's rows.
CREATE FUNCTION privata_catalog._pg_truetypid(privata_catalog.pg_attribute, pg_catalog.pg_type)
    RETURNS oid
    LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
RETURN CASE WHEN ($2).typtype = 'd' THEN ($2).typbasetype ELSE ($1).atttypid END;

CREATE FUNCTION privata_catalog._pg_truetypmod(privata_catalog.pg_attribute, pg_catalog.pg_type)
    RETURNS integer
    LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
RETURN CASE WHEN ($2).typtype = 'd' THEN ($2).typtypmod ELSE ($1).atttypmod END;

-- The views over the catalogs, from their own definitions. A regclass
-- constant in a definition ('pg_class'::regclass) names the catalog
-- itself, not its emulation.
DO $views$
DECLARE
    saved text := pg_catalog.current_setting('search_path');
    v record;
    def text;
BEGIN
    FOR v IN SELECT * FROM (VALUES
            (1, 'information_schema', 'tables'), (2, 'information_schema', 'columns'),
            (3, 'information_schema', 'table_constraints'),
            (4, 'information_schema', 'key_column_usage'),
            (5, 'information_schema', 'constraint_column_usage'),
            (6, 'information_schema', 'referential_constraints'),
            (7, 'information_schema', 'check_constraints'), (8, 'information_schema', 'views'),
            (12, 'information_schema', 'triggers'),
            (9, 'pg_catalog', 'pg_tables'), (10, 'pg_catalog', 'pg_indexes'),
            (11, 'pg_catalog', 'pg_views'), (13, 'pg_catalog', 'pg_sequences'),
            (14, 'pg_catalog', 'pg_stat_all_tables'), (15, 'pg_catalog', 'pg_stat_user_tables'),
            (16, 'pg_catalog', 'pg_statio_all_tables'),
            (17, 'pg_catalog', 'pg_stat_all_indexes'), (18, 'pg_catalog', 'pg_stat_user_indexes'))
        AS l(i, schema, name)
        ORDER BY i
    LOOP
        PERFORM pg_catalog.set_config('search_path', 'information_schema, pg_catalog', true);
        def := pg_catalog.pg_get_viewdef(pg_catalog.format('%I.%I', v.schema, v.name)::regclass);
        def := pg_catalog.regexp_replace(def, '''(pg_[a-z_]+)''::regclass',
                                         '''pg_catalog.\1''::regclass', 'g');
        PERFORM pg_catalog.set_config('search_path',
                                      'privata_catalog, pg_catalog, information_schema', true);
        EXECUTE pg_catalog.format('CREATE VIEW privata_catalog.%I AS %s', v.name, def);
    END LOOP;
    PERFORM pg_catalog.set_config('search_path', saved, true);
END
$views$;

GRANT SELECT ON ALL TABLES IN SCHEMA privata_catalog TO PUBLIC;
