package storage

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/privata/privata/policy"
)

// The catalog queries. Every name they return is as the catalog has it;
// Printed and Sequence are quoted as PostgreSQL prints them.

// readCatalog reads what planning p needs. Session is the session login
// (or "") whose role memberships plan manages.
func readCatalog(ctx context.Context, tx pgx.Tx, p *policy.Policy, session string) (*Catalog, error) {
	c := &Catalog{relations: map[string]*Relation{}, Registry: map[string]*Registered{},
		Roles: map[string]*RoleInfo{}, Members: map[string][]string{}, SchemaOwners: map[string]string{},
		SchemaUsage: map[string]map[string]bool{}}
	if err := c.readPrivata(ctx, tx); err != nil {
		return nil, err
	}
	names := map[[2]string]bool{}
	add := func(schema, name string) { names[[2]string{schema, name}] = true }
	for _, t := range p.Tables {
		add(t.Schema, t.Name)
		add(IdentitySchema, t.Name)
		add(ClinicalSchema, t.Name)
		add(AccessSchema, t.Name+"_identity")
		add(AccessSchema, t.Name+"_clinical")
		for _, v := range upsertViews {
			add(AccessSchema, t.Name+v)
		}
	}
	for _, r := range c.Registry {
		add(r.Schema, r.Name)
		add(IdentitySchema, r.Name)
		add(ClinicalSchema, r.Name)
	}
	for n := range names {
		rel, err := readRelation(ctx, tx, n[0], n[1])
		if err != nil {
			return nil, fmt.Errorf("read %s.%s: %w", n[0], n[1], err)
		}
		c.relations[n[0]+"."+n[1]] = rel
	}
	roles := append(slices.Clone(groupRoles), Owner)
	for _, r := range p.Roles {
		roles = append(roles, r.PGRole)
	}
	if session != "" {
		roles = append(roles, session)
	}
	if err := c.readRoles(ctx, tx, roles); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Catalog) readPrivata(ctx context.Context, tx pgx.Tx) error {
	var hasTables, hasSettings bool
	err := tx.QueryRow(ctx, `SELECT to_regclass('privata.tables') IS NOT NULL,
		to_regclass('privata.settings') IS NOT NULL,
		to_regprocedure('privata.emit_context()') IS NOT NULL,
		COALESCE((SELECT prosrc FROM pg_catalog.pg_proc
			WHERE oid = to_regprocedure('privata.region_of(text)')), '')`).
		Scan(&hasTables, &hasSettings, &c.EmitContext, &c.RegionOf)
	if err != nil {
		return fmt.Errorf("read privata schema: %w", err)
	}
	if hasSettings {
		var s Settings
		err := tx.QueryRow(ctx, `SELECT cluster, regions, default_region FROM privata.settings`).
			Scan(&s.Cluster, &s.Regions, &s.DefaultRegion)
		switch {
		case err == nil:
			c.Settings = &s
		case err != pgx.ErrNoRows:
			return fmt.Errorf("read privata.settings: %w", err)
		}
	}
	if hasTables {
		if err := c.readRegistry(ctx, tx); err != nil {
			return err
		}
	}
	rows, err := tx.Query(ctx, `SELECT n.nspname, pg_catalog.pg_get_userbyid(n.nspowner),
			ARRAY(SELECT pg_catalog.pg_get_userbyid(a.grantee)
				FROM pg_catalog.aclexplode(n.nspacl) a
				WHERE a.privilege_type = 'USAGE' AND a.grantee <> 0)::text[]
		FROM pg_catalog.pg_namespace n WHERE n.nspname = ANY($1)`,
		[]string{IdentitySchema, ClinicalSchema, AccessSchema})
	if err != nil {
		return fmt.Errorf("read schemas: %w", err)
	}
	for rows.Next() {
		var n, o string
		var usage []string
		if err := rows.Scan(&n, &o, &usage); err != nil {
			return err
		}
		c.SchemaOwners[n] = o
		c.SchemaUsage[n] = map[string]bool{}
		for _, u := range usage {
			c.SchemaUsage[n][u] = true
		}
	}
	return rows.Err()
}

func (c *Catalog) readRegistry(ctx context.Context, tx pgx.Tx) error {
	rows, err := tx.Query(ctx, `SELECT schema_name, table_name, kind, COALESCE(key_column, ''),
			COALESCE(subject_schema, ''), COALESCE(subject_table, ''),
			COALESCE(reference_column, ''), COALESCE(reference_type, ''), columns, app_grants,
			derived_hash, catalog_hash, privata.fingerprint(schema_name, table_name)
		FROM privata.tables ORDER BY schema_name, table_name`)
	if err != nil {
		return fmt.Errorf("read privata.tables: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		r := &Registered{}
		var kind string
		var grants []string
		err := rows.Scan(&r.Schema, &r.Name, &kind, &r.Key, &r.SubjectSchema, &r.SubjectTable,
			&r.Reference, &r.ReferenceType, &r.Columns, &grants, &r.DerivedHash, &r.CatalogHash,
			&r.Fingerprint)
		if err != nil {
			return fmt.Errorf("read privata.tables: %w", err)
		}
		r.Kind = policy.Kind(kind)
		for _, g := range grants {
			var gr Grant
			if err := json.Unmarshal([]byte(g), &gr); err != nil {
				return fmt.Errorf("privata.tables: grant of %s.%s: %w", r.Schema, r.Name, err)
			}
			r.AppGrants = append(r.AppGrants, gr)
		}
		c.Registry[r.Schema+"."+r.Name] = r
	}
	return rows.Err()
}

func (c *Catalog) readRoles(ctx context.Context, tx pgx.Tx, names []string) error {
	rows, err := tx.Query(ctx, `SELECT r.rolname, r.rolsuper, r.rolcanlogin, r.rolinherit,
			ARRAY(SELECT g.rolname FROM pg_catalog.pg_auth_members m
				JOIN pg_catalog.pg_roles g ON g.oid = m.roleid
				WHERE m.member = r.oid ORDER BY g.rolname)
		FROM pg_catalog.pg_roles r WHERE r.rolname = ANY($1)`, names)
	if err != nil {
		return fmt.Errorf("read roles: %w", err)
	}
	for rows.Next() {
		var name string
		ri := &RoleInfo{}
		if err := rows.Scan(&name, &ri.Super, &ri.Login, &ri.Inherit, &ri.MemberOf); err != nil {
			return fmt.Errorf("read roles: %w", err)
		}
		c.Roles[name] = ri
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read roles: %w", err)
	}
	rows, err = tx.Query(ctx, `SELECT g.rolname, m.rolname
		FROM pg_catalog.pg_auth_members am
		JOIN pg_catalog.pg_roles g ON g.oid = am.roleid
		JOIN pg_catalog.pg_roles m ON m.oid = am.member
		WHERE g.rolname = ANY($1) ORDER BY 1, 2`, groupRoles)
	if err != nil {
		return fmt.Errorf("read group members: %w", err)
	}
	for rows.Next() {
		var g, m string
		if err := rows.Scan(&g, &m); err != nil {
			return err
		}
		c.Members[g] = append(c.Members[g], m)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read group members: %w", err)
	}
	if c.Roles[Owner] != nil {
		err := tx.QueryRow(ctx, `SELECT to_regclass('privata.secrets') IS NOT NULL
			AND pg_catalog.has_table_privilege($1, 'privata.secrets', 'SELECT')`, Owner).
			Scan(&c.OwnerReadsSecrets)
		if err != nil {
			return fmt.Errorf("read privileges of %s: %w", Owner, err)
		}
	}
	return nil
}

// readRelation reads schema.name and everything plan needs of it; nil
// when there is no such relation.
func readRelation(ctx context.Context, tx pgx.Tx, schema, name string) (*Relation, error) {
	r := &Relation{Schema: schema, Name: name}
	err := tx.QueryRow(ctx, `SELECT c.oid,
			pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(c.relname),
			c.relkind::text, c.relpersistence::text,
			pg_catalog.pg_get_userbyid(c.relowner), COALESCE(pg_catalog.obj_description(c.oid, 'pg_class'), ''),
			c.relrowsecurity,
			c.relispartition OR EXISTS (SELECT FROM pg_catalog.pg_inherits i
				WHERE i.inhrelid = c.oid OR i.inhparent = c.oid)
		FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'v', 'p', 'm', 'f')`,
		schema, name).Scan(&r.OID, &r.Printed, &r.Kind, &r.Persistence, &r.Owner, &r.Comment, &r.RowSecurity,
		&r.Inherits)
	if err == pgx.ErrNoRows {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	for _, read := range []func(context.Context, pgx.Tx) error{
		r.readColumns, r.readConstraints, r.readIndexes, r.readGrants, r.readDependents,
	} {
		if err := read(ctx, tx); err != nil {
			return nil, err
		}
	}
	return r, nil
}

func (r *Relation) readColumns(ctx context.Context, tx pgx.Tx) error {
	rows, err := tx.Query(ctx, `SELECT a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod),
			pg_catalog.format_type(CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END, NULL),
			t.typcategory::text, a.attnotnull, COALESCE(pg_catalog.pg_get_expr(d.adbin, d.adrelid), ''),
			a.attidentity::text, a.attgenerated::text,
			COALESCE(CASE WHEN a.attcollation <> t.typcollation
				THEN pg_catalog.quote_ident(cn.nspname) || '.' || pg_catalog.quote_ident(co.collname) END, ''),
			COALESCE(pg_catalog.col_description(a.attrelid, a.attnum), ''),
			COALESCE((SELECT ARRAY[sn.nspname::text, s.relname::text,
					pg_catalog.quote_ident(sn.nspname) || '.' || pg_catalog.quote_ident(s.relname)]
				FROM pg_catalog.pg_depend dep
				JOIN pg_catalog.pg_class s ON s.oid = dep.objid
				JOIN pg_catalog.pg_namespace sn ON sn.oid = s.relnamespace
				WHERE dep.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
				  AND dep.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
				  AND dep.refobjid = a.attrelid AND dep.refobjsubid = a.attnum
				  AND dep.deptype IN ('a', 'i') AND s.relkind = 'S'
				LIMIT 1), '{}'),
			COALESCE((SELECT pg_catalog.format('START WITH %s INCREMENT BY %s MINVALUE %s MAXVALUE %s CACHE %s %s',
					sq.seqstart, sq.seqincrement, sq.seqmin, sq.seqmax, sq.seqcache,
					CASE WHEN sq.seqcycle THEN 'CYCLE' ELSE 'NO CYCLE' END)
				FROM pg_catalog.pg_sequence sq
				WHERE a.attidentity <> '' AND sq.seqrelid = pg_catalog.pg_get_serial_sequence(
					pg_catalog.quote_ident($2) || '.' || pg_catalog.quote_ident($3), a.attname)::pg_catalog.regclass), '')
		FROM pg_catalog.pg_attribute a
		JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
		LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
		LEFT JOIN pg_catalog.pg_collation co ON co.oid = a.attcollation
		LEFT JOIN pg_catalog.pg_namespace cn ON cn.oid = co.collnamespace
		WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped
		ORDER BY a.attnum`, r.OID, r.Schema, r.Name)
	if err != nil {
		return fmt.Errorf("columns: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		c := &Column{}
		var seq []string
		err := rows.Scan(&c.Name, &c.Type, &c.BaseType, &c.Category, &c.NotNull, &c.Default,
			&c.Identity, &c.Generated, &c.Collation, &c.Comment, &seq, &c.SequenceOptions)
		if err != nil {
			return fmt.Errorf("columns: %w", err)
		}
		if len(seq) == 3 {
			c.SequenceSchema, c.SequenceName, c.Sequence = seq[0], seq[1], seq[2]
		}
		r.Columns = append(r.Columns, c)
	}
	return rows.Err()
}

func (r *Relation) readConstraints(ctx context.Context, tx pgx.Tx) error {
	read := func(where string) ([]*Constraint, error) {
		rows, err := tx.Query(ctx, `SELECT n.nspname, c.relname, k.conname, k.contype::text,
				pg_catalog.pg_get_constraintdef(k.oid),
				ARRAY(SELECT a.attname FROM unnest(k.conkey) WITH ORDINALITY u(num, i)
					JOIN pg_catalog.pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = u.num
					ORDER BY u.i)::text[],
				COALESCE(fn.nspname, ''), COALESCE(fc.relname, ''),
				ARRAY(SELECT a.attname FROM unnest(k.confkey) WITH ORDINALITY u(num, i)
					JOIN pg_catalog.pg_attribute a ON a.attrelid = k.confrelid AND a.attnum = u.num
					ORDER BY u.i)::text[],
				k.confupdtype::text, k.confdeltype::text, k.confmatchtype::text,
				k.condeferrable, k.condeferred, k.convalidated,
				COALESCE(pg_catalog.cardinality(k.confdelsetcols), 0) > 0
			FROM pg_catalog.pg_constraint k
			JOIN pg_catalog.pg_class c ON c.oid = k.conrelid
			JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
			LEFT JOIN pg_catalog.pg_class fc ON fc.oid = k.confrelid
			LEFT JOIN pg_catalog.pg_namespace fn ON fn.oid = fc.relnamespace
			WHERE `+where+` ORDER BY n.nspname, c.relname, k.conname`, r.OID)
		if err != nil {
			return nil, fmt.Errorf("constraints: %w", err)
		}
		defer rows.Close()
		var out []*Constraint
		for rows.Next() {
			k := &Constraint{}
			err := rows.Scan(&k.Schema, &k.Table, &k.Name, &k.Type, &k.Def, &k.Columns,
				&k.RefSchema, &k.RefTable, &k.RefColumns, &k.OnUpdate, &k.OnDelete, &k.Match,
				&k.Deferrable, &k.Deferred, &k.Validated, &k.SetColumns)
			if err != nil {
				return nil, fmt.Errorf("constraints: %w", err)
			}
			out = append(out, k)
		}
		return out, rows.Err()
	}
	var err error
	if r.Constraints, err = read(`k.conrelid = $1 AND k.contype IN ('p', 'u', 'c', 'f', 'x')`); err != nil {
		return err
	}
	r.ReferencedBy, err = read(`k.confrelid = $1 AND k.conrelid <> $1 AND k.contype = 'f'`)
	return err
}

func (r *Relation) readIndexes(ctx context.Context, tx pgx.Tx) error {
	rows, err := tx.Query(ctx, `SELECT ic.relname, pg_catalog.pg_get_indexdef(i.indexrelid),
			ARRAY(SELECT DISTINCT a.attname FROM pg_catalog.pg_depend d
				JOIN pg_catalog.pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
				WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.objid = i.indexrelid
				  AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
				  AND d.refobjid = i.indrelid AND d.refobjsubid > 0)::text[],
			i.indisunique,
			ARRAY(SELECT COALESCE(a.attname, '') FROM unnest(i.indkey[0:i.indnkeyatts - 1])
					WITH ORDINALITY u(num, o)
				LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = u.num
				ORDER BY u.o)::text[],
			COALESCE(pg_catalog.pg_get_expr(i.indpred, i.indrelid), ''), i.indnullsnotdistinct
		FROM pg_catalog.pg_index i
		JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
		WHERE i.indrelid = $1 AND NOT EXISTS (SELECT FROM pg_catalog.pg_constraint k
			WHERE k.conindid = i.indexrelid AND k.conrelid = i.indrelid AND k.contype IN ('p', 'u', 'x'))
		ORDER BY ic.relname`, r.OID)
	if err != nil {
		return fmt.Errorf("indexes: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		ix := &Index{}
		if err := rows.Scan(&ix.Name, &ix.Def, &ix.Columns, &ix.Unique, &ix.Keys, &ix.Predicate,
			&ix.NullsNotDistinct); err != nil {
			return fmt.Errorf("indexes: %w", err)
		}
		r.Indexes = append(r.Indexes, ix)
	}
	return rows.Err()
}

func (r *Relation) readGrants(ctx context.Context, tx pgx.Tx) error {
	rows, err := tx.Query(ctx, `SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC'
				ELSE pg_catalog.pg_get_userbyid(a.grantee) END, a.privilege_type, a.is_grantable, ''
			FROM pg_catalog.pg_class c,
				pg_catalog.aclexplode(COALESCE(c.relacl, pg_catalog.acldefault('r', c.relowner))) a
			WHERE c.oid = $1
		UNION ALL
		SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC'
				ELSE pg_catalog.pg_get_userbyid(a.grantee) END, a.privilege_type, a.is_grantable, t.attname
			FROM pg_catalog.pg_attribute t, pg_catalog.aclexplode(t.attacl) a
			WHERE t.attrelid = $1 AND t.attacl IS NOT NULL AND NOT t.attisdropped
		ORDER BY 4, 1, 2`, r.OID)
	if err != nil {
		return fmt.Errorf("grants: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var g Grant
		if err := rows.Scan(&g.Grantee, &g.Privilege, &g.Grantable, &g.Column); err != nil {
			return fmt.Errorf("grants: %w", err)
		}
		r.Grants = append(r.Grants, g)
	}
	return rows.Err()
}

// readDependents reads the user triggers, rules, row-level security
// policies, publications and dependent views.
func (r *Relation) readDependents(ctx context.Context, tx pgx.Tx) error {
	err := tx.QueryRow(ctx, `SELECT
		ARRAY(SELECT tgname FROM pg_catalog.pg_trigger WHERE tgrelid = $1 AND NOT tgisinternal
			ORDER BY tgname)::text[],
		ARRAY(SELECT rulename FROM pg_catalog.pg_rewrite WHERE ev_class = $1 AND rulename <> '_RETURN'
			ORDER BY rulename)::text[],
		ARRAY(SELECT polname FROM pg_catalog.pg_policy WHERE polrelid = $1 ORDER BY polname)::text[],
		ARRAY(SELECT p.pubname FROM pg_catalog.pg_publication_rel pr
			JOIN pg_catalog.pg_publication p ON p.oid = pr.prpubid WHERE pr.prrelid = $1
			ORDER BY p.pubname)::text[],
		ARRAY(SELECT DISTINCT pg_catalog.quote_ident(vn.nspname) || '.' || pg_catalog.quote_ident(v.relname)
			FROM pg_catalog.pg_depend d
			JOIN pg_catalog.pg_rewrite rw ON rw.oid = d.objid
			JOIN pg_catalog.pg_class v ON v.oid = rw.ev_class
			JOIN pg_catalog.pg_namespace vn ON vn.oid = v.relnamespace
			WHERE d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass AND d.refobjid = $1
			  AND v.oid <> $1 AND vn.nspname <> $2
			ORDER BY 1)::text[]`, r.OID, AccessSchema).
		Scan(&r.Triggers, &r.Rules, &r.Policies, &r.Publications, &r.Dependents)
	if err != nil {
		return fmt.Errorf("dependents: %w", err)
	}
	return nil
}
