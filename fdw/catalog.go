package fdw

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/privata/privata/policy"
	"github.com/privata/privata/storage"
)

// catalog is what plan reads of a cluster: the application's tables, the
// objects Privata keeps for cross-region reads and what the last apply
// recorded about them.
type catalog struct {
	// tables are the columns of each classified table as the application
	// sees it (a plain table before adoption, the view after).
	tables map[*policy.Table][]column
	// superuser says whether plan runs as a superuser: only one may create
	// postgres_fdw and read passwords.
	superuser bool
	extension bool // postgres_fdw is installed
	state     *state
	// fingerprint is privata.fdw_fingerprint() of the state's objects.
	fingerprint string
	// servers are the foreign servers that exist, by name, with the name
	// of their wrapper.
	servers map[string]string
	// mappings holds the user and password options of the user mappings
	// of the servers Privata keeps, by server and role.
	mappings map[[2]string]mapping
	// schemas are the schemas Privata keeps that exist.
	schemas []string
	// roles are the export roles that exist.
	roles map[string]*roleInfo
}

type column struct{ name, typ string }

type state struct {
	servers, schemas []string
	derivedHash      string
	catalogHash      string
}

type mapping struct{ user, password string }

type roleInfo struct {
	login, inherit, super bool
	memberOf              []string
	config                []string // rolconfig
	// verifier is the role's SCRAM verifier; "" when plan may not read it.
	verifier string
}

func readCatalog(ctx context.Context, tx pgx.Tx, p *policy.Policy, allowMissing bool) (*catalog, error) {
	c := &catalog{tables: map[*policy.Table][]column{}, servers: map[string]string{},
		mappings: map[[2]string]mapping{}, roles: map[string]*roleInfo{}}
	err := tx.QueryRow(ctx, `SELECT r.rolsuper,
			EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname = 'postgres_fdw')
		FROM pg_catalog.pg_roles r WHERE r.rolname = current_user`).Scan(&c.superuser, &c.extension)
	if err != nil {
		return nil, fmt.Errorf("read role: %w", err)
	}
	for _, t := range p.Tables {
		cols, err := readColumns(ctx, tx, t)
		var pe *policy.Error
		if allowMissing && errors.As(err, &pe) {
			continue // not created yet: no cross-region objects
		}
		if err != nil {
			return nil, err
		}
		c.tables[t] = cols
	}
	for _, read := range []func(context.Context, pgx.Tx) error{c.readState, c.readServers, c.readRoles} {
		if err := read(ctx, tx); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func readColumns(ctx context.Context, tx pgx.Tx, t *policy.Table) ([]column, error) {
	rows, err := tx.Query(ctx, `SELECT a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod)
		FROM pg_catalog.pg_attribute a
		JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
		JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'v', 'p')
		  AND a.attnum > 0 AND NOT a.attisdropped
		ORDER BY a.attnum`, t.Schema, t.Name)
	if err != nil {
		return nil, fmt.Errorf("read columns of %s: %w", t.QualifiedName(), err)
	}
	cols, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (column, error) {
		var c column
		return c, r.Scan(&c.name, &c.typ)
	})
	if err != nil {
		return nil, fmt.Errorf("read columns of %s: %w", t.QualifiedName(), err)
	}
	if len(cols) == 0 {
		return nil, &policy.Error{Pos: t.Pos,
			Msg:  fmt.Sprintf("table %s does not exist in the database", t.QualifiedName()),
			Hint: "create the table first, or remove it from the policy"}
	}
	return cols, nil
}

func (c *catalog) readState(ctx context.Context, tx pgx.Tx) error {
	s := &state{}
	err := tx.QueryRow(ctx, `SELECT servers, schemas, derived_hash, catalog_hash,
			privata.fdw_fingerprint(servers, schemas)
		FROM privata.fdw_state`).Scan(&s.servers, &s.schemas, &s.derivedHash, &s.catalogHash,
		&c.fingerprint)
	switch {
	case err == pgx.ErrNoRows:
		return nil
	case err != nil:
		return fmt.Errorf("read privata.fdw_state: %w", err)
	}
	c.state = s
	return nil
}

func (c *catalog) readServers(ctx context.Context, tx pgx.Tx) error {
	rows, err := tx.Query(ctx, `SELECT s.srvname, w.fdwname
		FROM pg_catalog.pg_foreign_server s
		JOIN pg_catalog.pg_foreign_data_wrapper w ON w.oid = s.srvfdw`)
	if err != nil {
		return fmt.Errorf("read foreign servers: %w", err)
	}
	for rows.Next() {
		var name, fdw string
		if err := rows.Scan(&name, &fdw); err != nil {
			return fmt.Errorf("read foreign servers: %w", err)
		}
		c.servers[name] = fdw
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read foreign servers: %w", err)
	}
	err = tx.QueryRow(ctx, `SELECT ARRAY(SELECT nspname::text FROM pg_catalog.pg_namespace
		WHERE nspname IN ($1, $2) OR starts_with(nspname, $3) ORDER BY nspname)`,
		ExportSchema, GlobalSchema, RegionSchemaPrefix).Scan(&c.schemas)
	if err != nil {
		return fmt.Errorf("read schemas: %w", err)
	}
	if !c.superuser {
		return nil // only a superuser reads user mappings' passwords
	}
	rows, err = tx.Query(ctx, `SELECT srvname, usename, COALESCE(umoptions, '{}')
		FROM pg_catalog.pg_user_mappings`)
	if err != nil {
		return fmt.Errorf("read user mappings: %w", err)
	}
	for rows.Next() {
		var server, user string
		var options []string
		if err := rows.Scan(&server, &user, &options); err != nil {
			return fmt.Errorf("read user mappings: %w", err)
		}
		var m mapping
		for _, o := range options {
			k, v, _ := strings.Cut(o, "=")
			switch k {
			case "user":
				m.user = v
			case "password":
				m.password = v
			}
		}
		c.mappings[[2]string{server, user}] = m
	}
	return rows.Err()
}

func (c *catalog) readRoles(ctx context.Context, tx pgx.Tx) error {
	verifier := "''"
	if c.superuser {
		verifier = `COALESCE((SELECT a.rolpassword FROM pg_catalog.pg_authid a WHERE a.oid = r.oid), '')`
	}
	rows, err := tx.Query(ctx, `SELECT r.rolname, r.rolcanlogin, r.rolinherit, r.rolsuper,
			ARRAY(SELECT g.rolname::text FROM pg_catalog.pg_auth_members m
				JOIN pg_catalog.pg_roles g ON g.oid = m.roleid
				WHERE m.member = r.oid ORDER BY g.rolname), COALESCE(r.rolconfig, '{}'), `+verifier+`
		FROM pg_catalog.pg_roles r WHERE starts_with(r.rolname, $1)`, storage.ExportRolePrefix)
	if err != nil {
		return fmt.Errorf("read export roles: %w", err)
	}
	for rows.Next() {
		var name string
		ri := &roleInfo{}
		if err := rows.Scan(&name, &ri.login, &ri.inherit, &ri.super, &ri.memberOf, &ri.config,
			&ri.verifier); err != nil {
			return fmt.Errorf("read export roles: %w", err)
		}
		c.roles[name] = ri
	}
	return rows.Err()
}

// dependents returns the objects outside Privata's schemas and servers
// that depend on them: views on their views or foreign tables, and foreign
// tables of others on their servers. Rebuilding would drop them.
func dependents(ctx context.Context, tx pgx.Tx, schemas, servers []string) ([]string, error) {
	var out []string
	err := tx.QueryRow(ctx, `SELECT ARRAY(
		SELECT DISTINCT pg_catalog.quote_ident(vn.nspname) || '.' || pg_catalog.quote_ident(v.relname)
		FROM pg_catalog.pg_depend d
		JOIN pg_catalog.pg_rewrite rw ON rw.oid = d.objid
		JOIN pg_catalog.pg_class v ON v.oid = rw.ev_class
		JOIN pg_catalog.pg_namespace vn ON vn.oid = v.relnamespace
		JOIN pg_catalog.pg_class c ON c.oid = d.refobjid
		JOIN pg_catalog.pg_namespace cn ON cn.oid = c.relnamespace
		WHERE d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass
		  AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
		  AND cn.nspname = ANY ($1) AND vn.nspname <> ALL ($1)
		UNION
		SELECT pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(c.relname)
		FROM pg_catalog.pg_foreign_table ft
		JOIN pg_catalog.pg_foreign_server s ON s.oid = ft.ftserver
		JOIN pg_catalog.pg_class c ON c.oid = ft.ftrelid
		JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		WHERE s.srvname = ANY ($2) AND n.nspname <> ALL ($1)
		ORDER BY 1)`, schemas, servers).Scan(&out)
	if err != nil {
		return nil, fmt.Errorf("read dependents: %w", err)
	}
	return out, nil
}
