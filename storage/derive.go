package storage

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"

	"github.com/privata/privata/policy"
)

// Step is one block of a plan: SQL statements and a comment that tells a
// DBA what they do and why.
type Step struct {
	Comment string
	SQL     string
}

// Env is what Derive needs besides the split table itself.
type Env struct {
	Policy *policy.Policy
	// EmitContext says whether privata.emit_context() exists; the base
	// tables get their change-context triggers only then.
	EmitContext bool
	// Children are a subject table's child tables, whose foreign keys the
	// subject's update trigger enforces when a key changes.
	Children []*Split
	// Current is the catalog as plan read it, to replace what exists; nil
	// derives as if nothing existed.
	Current *Catalog
	// Dropped names relations (schema.name) that earlier steps drop.
	Dropped map[string]bool
}

// Derive returns the statements that give split table s its application
// view, access views, INSTEAD OF triggers, grants, row-level security and
// change-context triggers, from its base tables. It is the one place that
// knows how these objects look: apply calls it after creating or migrating
// base tables, and DDL rewriting calls it after changing them.
//
// The hash identifies what Derive would create from nothing; privata.tables
// keeps it, so that plan sees when a policy change alters the result.
func Derive(s *Split, env Env) (steps []Step, hash string, err error) {
	canon := env
	canon.Current, canon.Dropped = nil, nil
	fresh, err := (&deriver{s: s, env: &canon}).steps()
	if err != nil {
		return nil, "", err
	}
	if env.Current == nil {
		return fresh, hashSteps(fresh), nil
	}
	steps, err = (&deriver{s: s, env: &env}).steps()
	return steps, hashSteps(fresh), err
}

func hashSteps(steps []Step) string {
	h := sha256.New()
	for _, s := range steps {
		h.Write([]byte(s.SQL))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))
}

type deriver struct {
	s   *Split
	env *Env
}

func (d *deriver) t() *policy.Table { return d.s.Table }

// current returns the relation as it exists now, or nil (also when an
// earlier step drops it, or when deriving from nothing).
func (d *deriver) current(schema, name string) *Relation {
	if d.env.Current == nil || d.env.Dropped[schema+"."+name] {
		return nil
	}
	return d.env.Current.Relation(schema, name)
}

func (d *deriver) steps() ([]Step, error) {
	views, err := d.views()
	if err != nil {
		return nil, err
	}
	return []Step{
		views,
		d.triggers(),
		d.upserts(),
		d.grants(),
		d.security(),
	}, nil
}

// viewColumn is a column of a generated view.
type viewColumn struct{ name, expr, typ string }

func (d *deriver) accessName(side policy.Class) string { return accessName(d.t(), side) }

// accessName names split table t's access view of a side (in AccessSchema).
func accessName(t *policy.Table, side policy.Class) string { return t.Name + "_" + string(side) }

// accessColumns returns the columns of the access view of a side.
func (d *deriver) accessColumns(side policy.Class) ([]viewColumn, error) {
	s, t := d.s, d.t()
	var cols []viewColumn
	plain := func(c *Column) { cols = append(cols, viewColumn{c.Name, "t." + ident(c.Name), c.Type}) }
	valued := func(c *Column) error {
		e, err := valueExpr(t, "t", c)
		cols = append(cols, viewColumn{c.Name, e, c.Type})
		return err
	}
	switch {
	case t.Kind == policy.Child:
		for _, a := range s.App {
			if a.Column == nil {
				key := s.Subject.Key()
				e := "s." + ident(key.Name)
				if key.Type != s.ReferenceType {
					e += "::" + s.ReferenceType
				}
				cols = append(cols, viewColumn{a.Name, e, s.ReferenceType})
			} else if err := valued(a.Column); err != nil {
				return nil, err
			}
		}
		plain(s.Clinical.Column(PseudonymColumn))
		cols = append(cols, viewColumn{rowColumn, "t.ctid", "tid"})
	case side == policy.Identity:
		plain(s.Key())
		plain(s.Identity.Column(PseudonymColumn))
		plain(s.Identity.Column(RegionColumn))
		for _, a := range s.SideColumns(side) {
			if a.Name != t.Key {
				if err := valued(a.Column); err != nil {
					return nil, err
				}
			}
		}
	default:
		plain(s.Clinical.Column(PseudonymColumn))
		for _, a := range s.SideColumns(side) {
			if err := valued(a.Column); err != nil {
				return nil, err
			}
		}
	}
	return cols, nil
}

func (d *deriver) appColumns() []viewColumn {
	var cols []viewColumn
	for _, a := range d.s.App {
		alias := "a"
		if d.t().Kind == policy.Subject {
			alias = map[policy.Class]string{policy.Identity: "i", policy.Clinical: "c"}[a.Side]
		}
		typ := d.s.ReferenceType
		if a.Column != nil {
			typ = a.Column.Type
		}
		cols = append(cols, viewColumn{a.Name, alias + "." + ident(a.Name), typ})
	}
	return cols
}

// replaceable reports whether CREATE OR REPLACE VIEW can turn the existing
// relation into a view with these columns: PostgreSQL allows it only when
// names and types stay as they are.
func replaceable(r *Relation, cols []viewColumn) bool {
	if r == nil || r.Kind != "v" || len(r.Columns) != len(cols) {
		return false
	}
	for i, c := range r.Columns {
		if c.Name != cols[i].name || c.Type != cols[i].typ {
			return false
		}
	}
	return true
}

func viewSQL(name, options string, cols []viewColumn, from string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "CREATE OR REPLACE VIEW %s%s AS\nSELECT ", name, options)
	for i, c := range cols {
		if i > 0 {
			b.WriteString(",\n       ")
		}
		b.WriteString(c.expr)
		if !strings.HasSuffix(c.expr, "."+ident(c.name)) {
			b.WriteString(" AS " + ident(c.name))
		}
	}
	b.WriteString("\n  FROM " + from + ";\n")
	return b.String()
}

// sides lists the access views' sides.
func (d *deriver) sides() []policy.Class { return accessSides(d.t()) }

// accessSides are the sides of split table t that have an access view: a
// child's rows are all clinical.
func accessSides(t *policy.Table) []policy.Class {
	if t.Kind == policy.Child {
		return []policy.Class{policy.Clinical}
	}
	return []policy.Class{policy.Identity, policy.Clinical}
}

func (d *deriver) views() (Step, error) {
	s, t := d.s, d.t()
	var b strings.Builder
	// The upsert views read the application's view: they go first, and
	// are made again after it (upsert.go).
	for _, v := range upsertViews {
		if d.current(AccessSchema, t.Name+v) != nil {
			fmt.Fprintf(&b, "DROP VIEW %s;\n", qname(AccessSchema, t.Name+v))
		}
	}
	access := map[policy.Class][]viewColumn{}
	dropAccess := map[policy.Class]bool{}
	for _, side := range d.sides() {
		cols, err := d.accessColumns(side)
		if err != nil {
			return Step{}, err
		}
		access[side] = cols
		cur := d.current(AccessSchema, d.accessName(side))
		dropAccess[side] = cur != nil && !replaceable(cur, cols)
	}
	app := d.appColumns()
	cur := d.current(t.Schema, t.Name)
	dropApp := cur != nil && (!replaceable(cur, app) || dropAccess[policy.Identity] ||
		dropAccess[policy.Clinical])
	if dropApp {
		if len(cur.Dependents) > 0 {
			return Step{}, &Error{Table: t, Msg: fmt.Sprintf(
				"%s must be recreated, and views depend on it: %s", t.QualifiedName(),
				strings.Join(cur.Dependents, ", ")),
				Hint: "drop those views, apply, then create them again"}
		}
		fmt.Fprintf(&b, "DROP VIEW %s;\n", qname(t.Schema, t.Name))
	}
	for _, side := range d.sides() {
		if dropAccess[side] {
			fmt.Fprintf(&b, "DROP VIEW %s;\n", qname(AccessSchema, d.accessName(side)))
		}
	}
	for _, side := range d.sides() {
		name := qname(AccessSchema, d.accessName(side))
		from := s.Base(side).QualifiedName() + " t"
		if t.Kind == policy.Child {
			from += fmt.Sprintf("\n  LEFT JOIN %s s ON s.%s = t.%s", s.Subject.Identity.QualifiedName(),
				ident(PseudonymColumn), ident(PseudonymColumn))
		}
		b.WriteString(viewSQL(name, "", access[side], from))
		fmt.Fprintf(&b, "ALTER VIEW %s OWNER TO %s;\n", name, ident(Owner))
	}
	view := qname(t.Schema, t.Name)
	from := qname(AccessSchema, d.accessName(policy.Clinical)) + " a"
	if t.Kind == policy.Subject {
		from = fmt.Sprintf("%s i\n  LEFT JOIN %s c ON c.%s = i.%s",
			qname(AccessSchema, d.accessName(policy.Identity)),
			qname(AccessSchema, d.accessName(policy.Clinical)),
			ident(PseudonymColumn), ident(PseudonymColumn))
	}
	b.WriteString(viewSQL(view, " WITH (security_invoker = true)", app, from))
	fmt.Fprintf(&b, "ALTER VIEW %s OWNER TO %s;\n", view, ident(Owner))
	if comment := s.Base(d.sides()[0]).Comment; comment != "" {
		fmt.Fprintf(&b, "COMMENT ON VIEW %s IS %s;\n", view, literal(comment))
	}
	for _, a := range s.App {
		if a.Column == nil {
			continue
		}
		def := viewDefault(a.Column)
		if def != "" {
			fmt.Fprintf(&b, "ALTER VIEW %s ALTER COLUMN %s SET DEFAULT %s;\n", view, ident(a.Name), def)
		} else if cur != nil && !dropApp && cur.Column(a.Name) != nil && cur.Column(a.Name).Default != "" {
			fmt.Fprintf(&b, "ALTER VIEW %s ALTER COLUMN %s DROP DEFAULT;\n", view, ident(a.Name))
		}
		if a.Column.Comment != "" {
			fmt.Fprintf(&b, "COMMENT ON COLUMN %s.%s IS %s;\n", view, ident(a.Name),
				literal(a.Column.Comment))
		}
	}
	comment := fmt.Sprintf("%s becomes a view with the original columns in their order. "+
		"It reads the access views in %s, owned by %s, whose columns show each value "+
		"in full, masked or not at all by the reader's policy role. Defaults of the "+
		"base tables are copied onto the view, so that INSERT sees them.", t.QualifiedName(),
		AccessSchema, Owner)
	return Step{Comment: comment, SQL: b.String()}, nil
}

// viewDefault is the default the application's view gives a column: the
// base column's default, or the next value of a BY DEFAULT identity
// column's sequence (a GENERATED ALWAYS one takes its value in the insert
// trigger).
func viewDefault(c *Column) string {
	if c.Identity == "d" && c.Sequence != "" {
		return "pg_catalog.nextval(" + literal(c.Sequence) + "::pg_catalog.regclass)"
	}
	return c.Default
}

// grants gives the policy's roles their privileges, and keeps the original
// table's grants on the view.
func (d *deriver) grants() Step {
	s, t := d.s, d.t()
	var b strings.Builder
	roles := policyRoles(d.env.Policy)
	view := qname(t.Schema, t.Name)

	d.revokeAll(&b, t.Schema, t.Name, "")
	b.WriteString(grantsSQL(s.AppGrants, view))
	if len(roles) > 0 {
		fmt.Fprintf(&b, "GRANT SELECT, INSERT, UPDATE, DELETE ON %s TO %s;\n", view, idents(roles))
	}
	readers := slices.Clone(roles)
	for _, g := range s.AppGrants {
		if g.Privilege == "SELECT" && g.Grantee != Owner && !slices.Contains(readers, g.Grantee) {
			readers = append(readers, g.Grantee)
		}
	}
	for _, side := range d.sides() {
		name := qname(AccessSchema, d.accessName(side))
		d.revokeAll(&b, AccessSchema, d.accessName(side), "")
		if len(readers) > 0 {
			fmt.Fprintf(&b, "GRANT SELECT ON %s TO %s;\n", name, granteeList(readers))
		}
	}
	if extra := slices.DeleteFunc(slices.Clone(readers), func(r string) bool {
		return slices.Contains(roles, r)
	}); len(extra) > 0 {
		fmt.Fprintf(&b, "GRANT USAGE ON SCHEMA %s TO %s;\n", ident(AccessSchema), granteeList(extra))
	}
	for _, base := range s.Bases() {
		d.baseGrants(&b, base, roles)
	}
	comment := fmt.Sprintf("Grants. The policy's roles may use %s and read its access views; "+
		"they may read only the key and the pseudonym of the base tables, so that no value "+
		"reaches them but through the access views (not by COPY, functions or pg_stats). "+
		"Writes run with the writer's own privileges: only members of %s and %s may write "+
		"the identity and the clinical base tables.", t.QualifiedName(),
		GroupRole(policy.Identity, policy.Full), GroupRole(policy.Clinical, policy.Full))
	if len(s.AppGrants) > 0 {
		comment += " The original table's grants are kept on the view."
	}
	return Step{Comment: comment, SQL: b.String()}
}

func (d *deriver) baseGrants(b *strings.Builder, base *Base, roles []string) {
	s, t := d.s, d.t()
	name := base.QualifiedName()
	side := policy.Clinical
	if base == s.Identity {
		side = policy.Identity
	}
	writer := GroupRole(side, policy.Full)
	d.revokeAll(b, base.Schema, base.Name, "PUBLIC")
	if len(roles) > 0 {
		keys := []string{PseudonymColumn}
		if side == policy.Identity {
			keys = []string{t.Key, PseudonymColumn}
		}
		fmt.Fprintf(b, "GRANT SELECT (%s) ON %s TO %s;\n", idents(keys), name, idents(roles))
	}
	// The pseudonym is set once: by default on an identity row, by the
	// insert trigger on a clinical row. Only a child row's pseudonym changes,
	// when the row is given to another subject.
	var ins, upd []string
	for _, c := range base.Columns {
		if c.Name == PseudonymColumn && side == policy.Identity {
			continue
		}
		ins = append(ins, c.Name)
		if c.Name != PseudonymColumn || t.Kind == policy.Child {
			upd = append(upd, c.Name)
		}
	}
	privs := []string{"INSERT (" + idents(ins) + ")"}
	if len(upd) > 0 {
		privs = append(privs, "UPDATE ("+idents(upd)+")")
	}
	fmt.Fprintf(b, "GRANT %s, DELETE ON %s TO %s;\n", strings.Join(privs, ", "), name, ident(writer))
	// TRUNCATE of the application's table truncates its base tables
	// (package rewrite): whoever may truncate the one may truncate these.
	var truncate []string
	for _, g := range s.AppGrants {
		if g.Privilege == "TRUNCATE" && g.Column == "" && g.Grantee != Owner &&
			!slices.Contains(truncate, g.Grantee) {
			truncate = append(truncate, g.Grantee)
		}
	}
	if len(truncate) > 0 {
		fmt.Fprintf(b, "GRANT TRUNCATE ON %s TO %s;\n", name, granteeList(truncate))
	}
	if t.Kind == policy.Child {
		locate := s.rowKey()
		if locate == nil {
			locate = []string{"ctid"}
			// DO UPDATE locks a row by a primary key that includes the
			// pseudonym (upsert.go).
			if key, _ := d.upsertKey(); key != nil {
				locate = append(locate, replaced(key, t.Reference, PseudonymColumn)...)
			}
		}
		fmt.Fprintf(b, "GRANT SELECT (%s) ON %s TO %s;\n", idents(locate), name, ident(writer))
	}
	for _, c := range base.Columns {
		if c.Sequence != "" {
			fmt.Fprintf(b, "GRANT USAGE ON SEQUENCE %s TO %s;\n", c.Sequence, ident(writer))
		}
	}
}

// revokeAll revokes every privilege that the relation carries now, from
// every grantee but its owner (and from extra, when set), so that the
// grants that follow are all it has.
func (d *deriver) revokeAll(b *strings.Builder, schema, name, extra string) {
	var from []string
	if extra != "" {
		from = append(from, extra)
	}
	if r := d.current(schema, name); r != nil {
		for _, g := range r.Grants {
			if g.Grantee != r.Owner && g.Grantee != Owner && !slices.Contains(from, g.Grantee) {
				from = append(from, g.Grantee)
			}
		}
	}
	if len(from) > 0 {
		fmt.Fprintf(b, "REVOKE ALL ON %s FROM %s;\n", qname(schema, name), granteeList(from))
	}
}

func granteeList(roles []string) string {
	q := make([]string, len(roles))
	for i, r := range roles {
		q[i] = ident(r)
		if r == "PUBLIC" {
			q[i] = "PUBLIC"
		}
	}
	return strings.Join(q, ", ")
}

// grantsSQL replays grants on relation on, one statement per grantee,
// column and grant option.
func grantsSQL(grants []Grant, on string) string {
	type key struct {
		grantee, column string
		grantable       bool
	}
	var order []key
	privs := map[key][]string{}
	for _, g := range grants {
		if g.Grantee == Owner {
			continue
		}
		k := key{g.Grantee, g.Column, g.Grantable}
		if privs[k] == nil {
			order = append(order, k)
		}
		privs[k] = append(privs[k], g.Privilege)
	}
	var b strings.Builder
	for _, k := range order {
		list := strings.Join(privs[k], ", ")
		if k.column != "" {
			list = strings.ReplaceAll(list, ",", " ("+ident(k.column)+"),") + " (" + ident(k.column) + ")"
		}
		fmt.Fprintf(&b, "GRANT %s ON %s TO %s", list, on, granteeList([]string{k.grantee}))
		if k.grantable {
			b.WriteString(" WITH GRANT OPTION")
		}
		b.WriteString(";\n")
	}
	return b.String()
}

func policyRoles(p *policy.Policy) []string {
	out := make([]string, 0, len(p.Roles))
	for _, r := range p.Roles {
		out = append(out, r.PGRole)
	}
	slices.Sort(out)
	return out
}

// security enables and forces row-level security on the base tables, sets
// their replica identity, and adds the change-context triggers.
func (d *deriver) security() Step {
	var b strings.Builder
	for _, base := range d.s.Bases() {
		name := base.QualifiedName()
		fmt.Fprintf(&b, "ALTER TABLE %s OWNER TO %s;\n", name, ident(Owner))
		fmt.Fprintf(&b, "ALTER TABLE %s ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY, "+
			"REPLICA IDENTITY FULL;\n", name)
		check := "true"
		if base == d.s.Identity {
			check = ident(RegionColumn) + " = ANY (privata.regions())"
		}
		if r := d.current(base.Schema, base.Name); r != nil {
			for _, p := range r.Policies {
				fmt.Fprintf(&b, "DROP POLICY %s ON %s;\n", ident(p), name)
			}
			for _, tg := range r.Triggers {
				if tg != contextTrigger || !d.env.EmitContext {
					fmt.Fprintf(&b, "DROP TRIGGER %s ON %s;\n", ident(tg), name)
				}
			}
		}
		fmt.Fprintf(&b, "CREATE POLICY %s ON %s USING (true) WITH CHECK (%s);\n",
			ident("privata"), name, check)
		if d.env.EmitContext {
			fmt.Fprintf(&b, "CREATE OR REPLACE TRIGGER %s BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON %s\n"+
				"    FOR EACH STATEMENT EXECUTE FUNCTION privata.emit_context();\n", ident(contextTrigger), name)
		}
	}
	comment := "Row-level security, forced so that it binds the owner too: every policy role " +
		"may read and write rows through the views, and a new identity row must belong to a " +
		"home region this cluster serves (privata.regions()). REPLICA IDENTITY FULL gives " +
		"the audit's change stream whole old rows."
	if d.env.EmitContext {
		comment += " The statement triggers call privata.emit_context(), which records " +
			"who changed the rows and why in the write-ahead log."
	}
	return Step{Comment: comment, SQL: b.String()}
}

const contextTrigger = "privata_context"
