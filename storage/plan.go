package storage

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/privata/privata/policy"
	privatasql "github.com/privata/privata/sql"
)

// Plan is what applying a policy to one cluster takes.
type Plan struct {
	Target Target
	// Install is true when the SQL of package sql must be installed (or
	// upgraded) first.
	Install bool
	// Steps run in order, in one transaction, after the install.
	Steps []Step
	// Pending are the tables the policy classifies that do not exist yet
	// (with AllowMissing): they are split when created through Privata.
	Pending []string
	// locks are the relations the steps convert; apply locks them and plans
	// again before it runs the steps.
	locks []string
}

// Empty reports whether there is nothing to do.
func (p *Plan) Empty() bool { return !p.Install && len(p.Steps) == 0 }

// SQL is the plan as the script apply runs, commented for a DBA.
func (p *Plan) SQL() string {
	var b strings.Builder
	fmt.Fprintf(&b, "-- Privata plan for cluster %s (home regions it serves: %s).\n", p.Target.Name,
		strings.Join(p.Target.Regions, ", "))
	for _, t := range p.Pending {
		fmt.Fprintf(&b, "-- Pending: %s does not exist yet; it will be split when created through Privata.\n", t)
	}
	if p.Empty() {
		b.WriteString("-- Nothing to do: the database matches the policy.\n")
		return b.String()
	}
	b.WriteString("-- `privata apply` runs exactly this, as one transaction.\n\nBEGIN;\n\n")
	writeComment(&b, "Serialise with every other change Privata makes to this database.")
	fmt.Fprintf(&b, "SELECT pg_catalog.pg_advisory_xact_lock(%d);\n\n", privatasql.LockKey)
	if p.Install {
		writeComment(&b, fmt.Sprintf("Install Privata's own SQL (schema privata, version %d): "+
			"pseudonyms, session context, masking functions, the registry of split tables.",
			privatasql.Version))
		b.WriteString(privatasql.Script())
		b.WriteString("\n")
	}
	writeComment(&b, "The statements below name everything with its schema.")
	b.WriteString(searchPath + "\n\n")
	for _, s := range p.Steps {
		writeComment(&b, s.Comment)
		b.WriteString(s.SQL)
		b.WriteString("\n")
	}
	b.WriteString("COMMIT;\n")
	return b.String()
}

// searchPath makes catalog functions print names with their schema, and
// keeps generated SQL from depending on the caller's search_path.
const searchPath = "SET LOCAL search_path = pg_catalog, pg_temp;"

// writeComment writes text as SQL comment lines of at most 90 columns.
func writeComment(b *strings.Builder, text string) {
	line := "--"
	for _, w := range strings.Fields(text) {
		if len(line)+1+len(w) > 90 && line != "--" {
			b.WriteString(line + "\n")
			line = "--"
		}
		line += " " + w
	}
	b.WriteString(line + "\n")
}

// planner computes the plan for one cluster inside a transaction.
type planner struct {
	ctx context.Context
	tx  pgx.Tx
	p   *policy.Policy
	t   Target
	cat *Catalog

	splits  map[*policy.Table]*Split
	adopted []*adoption
	// derive says which tables get their views, triggers and grants
	// derived again; the value is why, for the plan's comments.
	derive     map[*policy.Table]string
	migrations []Step
	locks      []string
	dropped    map[string]bool
	// pending are tables that do not exist yet (AllowMissing).
	pending map[*policy.Table]bool
	errs    Errors
}

// plan reads the catalog and computes the plan. The caller has installed
// Privata's SQL and set searchPath in tx.
func plan(ctx context.Context, tx pgx.Tx, p *policy.Policy, t Target, o options) (*Plan, error) {
	cat, err := readCatalog(ctx, tx, p, t.Session)
	if err != nil {
		return nil, err
	}
	var pending []*policy.Table
	if o.allowMissing {
		pending, err = policy.CheckPending(p, cat)
	} else {
		err = policy.CheckDatabase(p, cat)
	}
	if err != nil {
		return nil, err
	}
	pl := &planner{ctx: ctx, tx: tx, p: p, t: t, cat: cat, splits: map[*policy.Table]*Split{},
		derive: map[*policy.Table]string{}, dropped: map[string]bool{}, pending: map[*policy.Table]bool{}}
	var pendingNames []string
	for _, t := range pending {
		pl.pending[t] = true
		pendingNames = append(pendingNames, t.QualifiedName())
	}
	if err := pl.checkPolicy(); err != nil {
		return nil, err
	}
	setup, err := pl.setup()
	if err != nil {
		return nil, err
	}
	for _, tab := range p.Tables {
		if err := pl.table(tab); err != nil {
			pl.errs = append(pl.errs, err)
		}
	}
	pl.resolveForeignKeys()
	for _, key := range sortedKeys(cat.Registry) {
		r := cat.Registry[key]
		if p.Table(r.Schema, r.Name) == nil {
			pl.errs = append(pl.errs, fmt.Errorf("%s is split, but the policy no longer classifies it; "+
				"converting it back to a plain table is not supported\n\thint: keep it in the policy",
				qname(r.Schema, r.Name)))
		}
	}
	if err := pl.errs.err(); err != nil {
		return nil, err
	}
	steps := setup
	if len(pl.locks) > 0 {
		steps = append(steps, Step{
			Comment: "Keep every other session away from the tables this plan converts until it commits.",
			SQL:     fmt.Sprintf("LOCK TABLE %s IN ACCESS EXCLUSIVE MODE;\n", strings.Join(pl.locks, ", ")),
		})
	}
	steps = append(steps, pl.migrations...)
	steps = append(steps, pl.adoptionSteps()...)
	derived, err := pl.derived()
	if err != nil {
		return nil, err
	}
	steps = append(steps, derived...)
	return &Plan{Target: t, Steps: steps, Pending: pendingNames, locks: pl.locks}, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// checkPolicy refuses what the policy asks and this plan cannot build.
func (pl *planner) checkPolicy() error {
	var errs policy.ErrorList
	for _, r := range pl.p.Regions {
		if r.Cluster == "" {
			errs = append(errs, &policy.Error{Pos: r.Pos,
				Msg: fmt.Sprintf("region %s keeps identity and clinical data in different "+
					"clusters; apply does not support that yet", r.Name),
				Hint: "give the region one cluster"})
		}
	}
	byName := map[string]*policy.Table{}
	for _, t := range pl.p.Tables {
		switch {
		case len(t.Name)+len("_identity") > maxIdentLen:
			errs = append(errs, &policy.Error{Pos: t.Pos,
				Msg:  fmt.Sprintf("table name %s is too long for the names Privata derives from it", t.Name),
				Hint: fmt.Sprintf("table names of split tables have at most %d bytes", maxIdentLen-len("_identity"))})
		case slices.Contains([]string{IdentitySchema, ClinicalSchema, AccessSchema, "privata"}, t.Schema):
			errs = append(errs, &policy.Error{Pos: t.Pos,
				Msg: fmt.Sprintf("schema %s is Privata's own", t.Schema)})
		case byName[t.Name] != nil:
			errs = append(errs, &policy.Error{Pos: t.Pos,
				Msg: fmt.Sprintf("tables %s and %s have the same name; their base tables would collide",
					byName[t.Name].QualifiedName(), t.QualifiedName()),
				Hint: "classify at most one table of each name"})
		}
		byName[t.Name] = t
	}
	if len(errs) > 0 {
		return errs
	}
	return nil
}

// table plans one classified table: adoption of a plain table, or the
// migration and re-derivation of a split one.
func (pl *planner) table(t *policy.Table) error {
	if pl.pending[t] {
		return nil
	}
	if t.Kind == policy.Child && pl.splits[pl.p.SubjectOf(t)] == nil {
		return nil // the subject's error is reported
	}
	if reg := pl.cat.Registry[t.Schema+"."+t.Name]; reg != nil {
		return pl.existing(t, reg)
	}
	rel := pl.cat.Relation(t.Schema, t.Name)
	if rel.Kind != "r" {
		return &Error{Table: t, Msg: fmt.Sprintf("%s is a %s, not a plain table", t.QualifiedName(),
			relkindName(rel.Kind)), Hint: "Privata converts plain tables"}
	}
	return pl.adopt(t, rel)
}

func relkindName(kind string) string {
	switch kind {
	case "v":
		return "view"
	case "p":
		return "partitioned table"
	case "m":
		return "materialized view"
	case "f":
		return "foreign table"
	}
	return "relation of kind " + kind
}

// derived returns the derive steps of every table that needs them, and
// the registry rows.
func (pl *planner) derived() ([]Step, error) {
	var steps, registry []Step
	var errs Errors
	for _, t := range pl.p.Tables {
		s := pl.splits[t]
		if s == nil {
			continue
		}
		env := Env{Policy: pl.p, EmitContext: pl.cat.EmitContext, Current: pl.cat, Dropped: pl.dropped}
		if t.Kind == policy.Subject {
			for _, c := range pl.p.Children(t) {
				if cs := pl.splits[c]; cs != nil {
					env.Children = append(env.Children, cs)
				}
			}
		}
		ds, hash, err := Derive(s, env)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		why, ok := pl.derive[t]
		reg := pl.cat.Registry[t.Schema+"."+t.Name]
		switch {
		case ok:
		case reg.DerivedHash != hash:
			why = "the policy changed what it derives"
		case reg.CatalogHash != reg.Fingerprint:
			why = "its derived objects were changed behind Privata's back (drift); they are repaired"
		case !slices.Equal(reg.Columns, appNames(s)):
			why = "its base tables' columns changed"
		default:
			continue
		}
		for i := range ds {
			if i == 0 {
				ds[i].Comment = fmt.Sprintf("%s: %s. %s", t.QualifiedName(), why, ds[i].Comment)
			} else {
				ds[i].Comment = t.QualifiedName() + ": " + ds[i].Comment
			}
		}
		steps = append(steps, ds...)
		registry = append(registry, pl.registryStep(s, hash))
	}
	if err := errs.err(); err != nil {
		return nil, err
	}
	if len(registry) > 0 {
		var b strings.Builder
		for _, r := range registry {
			b.WriteString(r.SQL)
		}
		steps = append(steps, Step{Comment: "Record what is split and how in privata.tables, with the " +
			"hash of what was derived and a fingerprint of the catalog, so that the next plan can " +
			"tell a policy change, or a change made behind Privata's back, from nothing to do.",
			SQL: b.String()})
	}
	return steps, nil
}

func appNames(s *Split) []string {
	out := make([]string, len(s.App))
	for i, a := range s.App {
		out[i] = a.Name
	}
	return out
}

func (pl *planner) registryStep(s *Split, hash string) Step {
	t := s.Table
	null := "NULL"
	key, subjSchema, subjTable, ref, refType := null, null, null, null, null
	if t.Kind == policy.Subject {
		key = literal(t.Key)
	} else {
		subj := s.Subject.Table
		subjSchema, subjTable = literal(subj.Schema), literal(subj.Name)
		ref, refType = literal(t.Reference), literal(s.ReferenceType)
	}
	grants := make([]string, len(s.AppGrants))
	for i, g := range s.AppGrants {
		b, _ := json.Marshal(g)
		grants[i] = string(b)
	}
	sql := fmt.Sprintf(`INSERT INTO privata.tables (schema_name, table_name, kind, key_column,
    subject_schema, subject_table, reference_column, reference_type, columns, app_grants,
    derived_hash, catalog_hash, applied_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s,
    %s,
    %s,
    %s, privata.fingerprint(%s, %s), pg_catalog.now())
ON CONFLICT (schema_name, table_name) DO UPDATE SET kind = EXCLUDED.kind,
    key_column = EXCLUDED.key_column, subject_schema = EXCLUDED.subject_schema,
    subject_table = EXCLUDED.subject_table, reference_column = EXCLUDED.reference_column,
    reference_type = EXCLUDED.reference_type, columns = EXCLUDED.columns,
    app_grants = EXCLUDED.app_grants, derived_hash = EXCLUDED.derived_hash,
    catalog_hash = EXCLUDED.catalog_hash, applied_at = EXCLUDED.applied_at;
`, literal(t.Schema), literal(t.Name), literal(string(t.Kind)), key, subjSchema, subjTable, ref, refType,
		textArray(appNames(s)), textArray(grants), literal(hash), literal(t.Schema), literal(t.Name))
	return Step{SQL: sql}
}

// printed returns schema.name as PostgreSQL prints it (quote_ident), so
// that what plan expects matches what the catalog will say.
func (pl *planner) printed(schema, name string) (string, error) {
	var s string
	err := pl.tx.QueryRow(pl.ctx, `SELECT pg_catalog.quote_ident($1) || '.' || pg_catalog.quote_ident($2)`,
		schema, name).Scan(&s)
	return s, err
}
