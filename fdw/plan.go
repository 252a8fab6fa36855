package fdw

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"

	privatasql "github.com/privata/privata/sql"
	"github.com/privata/privata/storage"
)

// Step is one block of the cross-region part of a plan: SQL and a comment
// for a DBA. SQL is what plan prints, with every secret replaced by
// Placeholder; apply runs the secrets.
type Step struct {
	Comment string
	SQL     string
	// exec is the SQL apply runs, when it holds secrets.
	exec string
}

func (s Step) run() string {
	if s.exec != "" {
		return s.exec
	}
	return s.SQL
}

// Plan is the cross-region part of applying a policy to one cluster.
type Plan struct {
	Target storage.Target
	// Before runs before the split storage's steps, After after them, in
	// the same transaction. Before drops the views over the split tables
	// when the storage steps change those tables.
	Before, After []Step
	// Reasons say why the cross-region objects are rebuilt; none when
	// they are not.
	Reasons []string
}

// Empty reports whether there is nothing to do.
func (p *Plan) Empty() bool { return len(p.Before) == 0 && len(p.After) == 0 }

// Input is what plan needs besides the database.
type Input struct {
	Topology *Topology
	// Target names the cluster to plan (a storage.Target's Name).
	Target string
	// SplitChanges says that the split storage's part of the plan changes
	// the split tables, so that the views over them must be rebuilt.
	SplitChanges bool
	// AllowMissing skips tables the policy classifies that do not exist
	// yet (storage.AllowMissing): they get their cross-region objects from
	// an apply after they are created.
	AllowMissing bool
}

// Preview computes the cross-region part of the plan for in.Target without
// changing anything: it works in a transaction that it rolls back.
func Preview(ctx context.Context, conn *pgx.Conn, in Input) (*Plan, error) {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback(context.Background())
	return PlanTx(ctx, tx, in)
}

// PlanTx computes the cross-region part of the plan inside the caller's
// transaction, after taking Privata's advisory lock and installing its
// SQL there.
func PlanTx(ctx context.Context, tx pgx.Tx, in Input) (*Plan, error) {
	if _, err := tx.Exec(ctx, "SELECT pg_catalog.pg_advisory_xact_lock($1)", privatasql.LockKey); err != nil {
		return nil, fmt.Errorf("advisory lock: %w", err)
	}
	if _, err := privatasql.Install(ctx, tx); err != nil {
		return nil, err
	}
	// Types print with their schema unless it is pg_catalog.
	if _, err := tx.Exec(ctx, "SET LOCAL search_path = pg_catalog, pg_temp"); err != nil {
		return nil, fmt.Errorf("set search_path: %w", err)
	}
	local := in.Topology.Peer(in.Target)
	if local == nil {
		return nil, fmt.Errorf("cluster %s is not in the topology", in.Target)
	}
	cat, err := readCatalog(ctx, tx, in.Topology.Policy, in.AllowMissing)
	if err != nil {
		return nil, err
	}
	pl := &planner{ctx: ctx, tx: tx, topo: in.Topology, local: local, cat: cat, in: in}
	return pl.plan()
}

// Run runs steps in tx. Statements that carry secrets run with statement
// logging off, when the role may turn it off, so that the server's log
// does not keep them.
func Run(ctx context.Context, tx pgx.Tx, steps []Step) error {
	quiet := false
	for i, s := range steps {
		if s.exec != "" && !quiet {
			quiet = true
			_, err := tx.Exec(ctx, `SELECT pg_catalog.set_config(name, value, true)
				FROM (VALUES ('log_statement', 'none'), ('log_min_duration_statement', '-1'),
					('log_min_error_statement', 'panic')) v(name, value),
					pg_catalog.pg_roles r
				WHERE r.rolname = current_user AND r.rolsuper`)
			if err != nil {
				return fmt.Errorf("turn statement logging off: %w", err)
			}
		}
		if _, err := tx.Exec(ctx, s.run()); err != nil {
			return fmt.Errorf("cross-region step %d of %d (%s): %w", i+1, len(steps), summary(s.Comment), err)
		}
	}
	return nil
}

func summary(comment string) string {
	if i := strings.Index(comment, ": "); i > 0 && i < 40 {
		return comment[:i]
	}
	if i := strings.Index(comment, ". "); i > 0 {
		return comment[:i]
	}
	return strings.TrimSuffix(comment, ".")
}

type planner struct {
	ctx   context.Context
	tx    pgx.Tx
	topo  *Topology
	local *Peer
	cat   *catalog
	in    Input
}

func (pl *planner) plan() (*Plan, error) {
	out := &Plan{Target: pl.local.Target}
	roles, why, err := pl.rolesStep()
	if err != nil {
		return nil, err
	}
	if roles.SQL != "" {
		out.After = append(out.After, roles)
	}
	imports := pl.topo.Imports(pl.local)
	for _, im := range imports {
		if im.From.Password == "" {
			return nil, fmt.Errorf("transfers let cluster %s read cluster %s, and privata.yaml gives "+
				"%s no fdw password\n\thint: set clusters.<name>.fdw.password for it",
				pl.local.Target.Name, im.From.Target.Name, im.From.Target.Name)
		}
	}
	d := &deriver{topo: pl.topo, local: pl.local, imports: imports, cat: pl.cat}
	multi := len(pl.topo.Peers) > 1
	var fresh []Step
	servers, schemas := []string{}, []string{}
	if multi {
		fresh = append(fresh, d.exportStep())
		schemas = append(schemas, ExportSchema)
		for _, im := range imports {
			fresh = append(fresh, d.importStep(im))
			servers = append(servers, im.From.Server)
			schemas = append(schemas, im.From.Schema())
		}
		fresh = append(fresh, d.globalStep(), d.transfersStep())
		schemas = append(schemas, GlobalSchema)
	}
	hash := hashSteps(fresh)
	if err := pl.checkServers(servers); err != nil {
		return nil, err
	}
	reasons := pl.reasons(multi, hash, servers, schemas)
	if len(reasons) == 0 {
		if s := pl.passwords(imports); s.SQL != "" {
			out.After = append(out.After, s)
			why = append(why, "a user mapping's password differs from privata.yaml's")
		}
		out.Reasons = why
		out.introduce()
		return out, nil
	}
	out.Reasons = append(why, reasons...)

	drop, err := pl.dropStep(multi)
	if err != nil {
		return nil, err
	}
	switch {
	case drop.SQL == "":
	case pl.in.SplitChanges:
		out.Before = append(out.Before, drop)
	default:
		out.After = append(out.After, drop)
	}
	if len(imports) > 0 && !pl.cat.extension {
		if !pl.cat.superuser {
			return nil, fmt.Errorf("postgres_fdw is not installed in cluster %s, and only a superuser "+
				"may install it\n\thint: as a superuser, run CREATE EXTENSION postgres_fdw there",
				pl.local.Target.Name)
		}
		out.After = append(out.After, Step{Comment: "postgres_fdw reads other clusters' tables.",
			SQL: "CREATE EXTENSION IF NOT EXISTS postgres_fdw SCHEMA privata;\n"})
	}
	out.After = append(out.After, fresh...)
	if multi {
		out.After = append(out.After, stateStep(servers, schemas, hash))
	}
	out.introduce()
	return out, nil
}

// introduce starts the first step's comment with what this part of the
// plan is and why it runs.
func (p *Plan) introduce() {
	first := &p.After
	if len(p.Before) > 0 {
		first = &p.Before
	}
	if len(*first) == 0 {
		return
	}
	intro := "Cross-region reads (postgres_fdw)"
	if len(p.Reasons) > 0 {
		intro += ": " + strings.Join(p.Reasons, "; ")
	}
	(*first)[0].Comment = intro + ". " + (*first)[0].Comment
}

func hashSteps(steps []Step) string {
	h := sha256.New()
	for _, s := range steps {
		h.Write([]byte(s.SQL))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))
}

// checkServers refuses to take over foreign servers Privata did not
// create.
func (pl *planner) checkServers(servers []string) error {
	for _, s := range servers {
		if _, exists := pl.cat.servers[s]; !exists {
			continue
		}
		if pl.cat.state == nil || !slices.Contains(pl.cat.state.servers, s) {
			return fmt.Errorf("cluster %s has a foreign server named %s that Privata did not create; "+
				"Privata names the server it reads region %s by after the region\n\thint: rename or "+
				"drop that server", pl.local.Target.Name, s, s)
		}
	}
	return nil
}

// reasons says why the cross-region objects must be rebuilt; none when
// they match what the policy and the configuration imply.
func (pl *planner) reasons(multi bool, hash string, servers, schemas []string) []string {
	st := pl.cat.state
	switch {
	case st == nil && !multi:
		return nil
	case st == nil:
		return []string{"the cross-region objects are created"}
	case !multi:
		return []string{"the configuration has a single cluster: the cross-region objects are removed"}
	}
	var out []string
	if st.derivedHash != hash {
		out = append(out, "the policy or the configuration changed what is derived")
	}
	if st.catalogHash != pl.cat.fingerprint {
		var what []string
		for _, s := range servers {
			if _, ok := pl.cat.servers[s]; !ok {
				what = append(what, "foreign server "+s+" is missing")
			}
		}
		for _, s := range schemas {
			if !slices.Contains(pl.cat.schemas, s) {
				what = append(what, "schema "+s+" is missing")
			}
		}
		if len(what) == 0 {
			what = append(what, "an object was changed or dropped")
		}
		out = append(out, "the cross-region objects were changed behind Privata's back (drift: "+
			strings.Join(what, "; ")+"); they are rebuilt")
	}
	if pl.in.SplitChanges {
		out = append(out, "the split tables change in this plan, and the views over them are rebuilt")
	}
	return out
}

// passwords repairs user mappings whose password differs from the
// configuration's (changed there, or behind Privata's back).
func (pl *planner) passwords(imports []*Import) Step {
	if !pl.cat.superuser {
		return Step{}
	}
	var s script
	var servers []string
	for _, im := range imports {
		for _, role := range sortedKeys(im.Mappings) {
			m, ok := pl.cat.mappings[[2]string{im.From.Server, role}]
			if !ok || m.password == im.From.Password {
				continue // a missing mapping changes the fingerprint
			}
			s.f("ALTER USER MAPPING FOR %s SERVER %s OPTIONS (SET password ", ident(role),
				ident(im.From.Server))
			s.secret(im.From.Password)
			s.f(");\n")
			if !slices.Contains(servers, im.From.Server) {
				servers = append(servers, im.From.Server)
			}
		}
	}
	if s.empty() {
		return Step{}
	}
	return s.step(fmt.Sprintf("The password of the user mappings on %s differs from privata.yaml's "+
		"fdw password of that cluster; it is set again (not shown).", strings.Join(servers, ", ")))
}

// dropStep drops every cross-region object that exists, refusing when
// objects of others depend on them.
func (pl *planner) dropStep(multi bool) (Step, error) {
	var managed []string
	if pl.cat.state != nil {
		managed = pl.cat.state.servers
	}
	var servers []string
	for _, s := range managed {
		if _, ok := pl.cat.servers[s]; ok {
			servers = append(servers, s)
		}
	}
	deps, err := dependents(pl.ctx, pl.tx, pl.cat.schemas, servers)
	if err != nil {
		return Step{}, err
	}
	if len(deps) > 0 {
		return Step{}, fmt.Errorf("cluster %s: the cross-region objects must be rebuilt, and objects "+
			"that are not Privata's depend on them: %s\n\thint: drop those, apply, then create them "+
			"again", pl.local.Target.Name, strings.Join(deps, ", "))
	}
	var s script
	order := slices.Clone(pl.cat.schemas)
	// The views over the foreign tables and the export views go first.
	slices.SortStableFunc(order, func(a, b string) int {
		rank := func(n string) int {
			switch n {
			case GlobalSchema:
				return 0
			case ExportSchema:
				return 2
			}
			return 1
		}
		return rank(a) - rank(b)
	})
	for _, n := range order {
		s.f("DROP SCHEMA %s CASCADE;\n", ident(n))
	}
	for _, n := range servers {
		s.f("DROP SERVER %s CASCADE;\n", ident(n))
	}
	if !multi && pl.cat.state != nil {
		s.f("DELETE FROM privata.transfers;\nDELETE FROM privata.fdw_state;\n")
	}
	return s.step("Drop the cross-region objects that exist, to build them again below: " +
		"they hold no data (views, foreign tables, servers and user mappings), and nothing " +
		"outside them depends on them."), nil
}

// stateStep records what was derived and a fingerprint of the catalog.
func stateStep(servers, schemas []string, hash string) Step {
	return Step{Comment: "Record what was derived, and a fingerprint of the cross-region objects, " +
		"so that the next plan can tell a policy change or drift from nothing to do.",
		SQL: fmt.Sprintf("INSERT INTO privata.fdw_state (servers, schemas, derived_hash, catalog_hash, "+
			"applied_at)\nVALUES (%s, %s, %s,\n    privata.fdw_fingerprint(%s, %s), pg_catalog.now())\n"+
			"ON CONFLICT (one) DO UPDATE SET servers = EXCLUDED.servers, schemas = EXCLUDED.schemas,\n"+
			"    derived_hash = EXCLUDED.derived_hash, catalog_hash = EXCLUDED.catalog_hash,\n"+
			"    applied_at = EXCLUDED.applied_at;\n", textArray(servers), textArray(schemas),
			literal(hash), textArray(servers), textArray(schemas))}
}
