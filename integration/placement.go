package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/privata/privata/policy"
)

// The schemas that hold a split table's two parts.
const (
	IdentitySchema = "privata_identity"
	ClinicalSchema = "privata_clinical"
)

// Value is one value an application stored, as its report gives it: the
// table and column it wrote (the application's names), the value as
// PostgreSQL casts it to text with TimeZone UTC, and whether it should still
// be in the database when the application ends (false for a value it
// replaced, deleted or rolled back).
type Value struct {
	Table  string `json:"table"`
	Column string `json:"column"`
	Value  string `json:"value"`
	Live   bool   `json:"live"`
}

// Report is what an application wrote to its values file.
type Report struct {
	App    string  `json:"app"`
	Values []Value `json:"values"`
}

// ReadReport reads an application's values file.
func ReadReport(path string) (*Report, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read values: %w", err)
	}
	var r Report
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("read values %s: %w", path, err)
	}
	if len(r.Values) == 0 {
		return nil, fmt.Errorf("read values %s: no values", path)
	}
	return &r, nil
}

// Location is a column of a relation where a value was found.
type Location struct {
	Schema, Table, Column string
}

func (l Location) String() string { return l.Schema + "." + l.Table + "." + l.Column }

// Rule names what a Finding breaks.
type Rule string

// The rules the checks enforce.
const (
	// Misplaced: a value was found outside the schema its class belongs in.
	Misplaced Rule = "misplaced"
	// Missing: a value the application should still have stored was not
	// found where it belongs.
	Missing Rule = "missing"
	// Exposed: a role read, in the clear, a value its access level masks or
	// withholds.
	Exposed Rule = "exposed"
)

// Finding is one breach of a rule.
type Finding struct {
	Rule  Rule
	Value Value
	// Where the value was found (Misplaced, Exposed) or looked for (Missing).
	Where Location
	// Role is the PostgreSQL role that read it (Exposed only).
	Role string
}

func (f Finding) String() string {
	s := fmt.Sprintf("%s: %s.%s value %q", f.Rule, f.Value.Table, f.Value.Column, f.Value.Value)
	switch f.Rule {
	case Missing:
		return s + " not found in " + f.Where.String()
	case Exposed:
		return s + " readable in the clear by role " + f.Role + " in " + f.Where.String()
	}
	return s + " found in " + f.Where.String()
}

// CheckPlain checks a database the application wrote to directly: every live
// value is in the column of the table it was written to (schema public). It
// shows that a report is complete and accurate before it is trusted for
// CheckSplit.
func CheckPlain(ctx context.Context, conn *pgx.Conn, values []Value) ([]Finding, error) {
	found, err := search(ctx, conn, values, "", relationsSQL(false))
	if err != nil {
		return nil, err
	}
	var out []Finding
	for i, v := range values {
		want := Location{"public", v.Table, v.Column}
		if v.Live && !contains(found[i], want) {
			out = append(out, Finding{Rule: Missing, Value: v, Where: want})
		}
	}
	return out, nil
}

// CheckSplit checks a database that Privata split under policy p. It reads
// every column of every table of every schema (system catalogs aside) and
// looks for each value:
//
//   - an identity value, or a subject's key (as a child's reference too), is
//     only in IdentitySchema, and a live one is in its column of its table
//     there;
//   - a clinical value is only in ClinicalSchema, and a live one is in its
//     column of its table there;
//   - a value of a column the policy calls other, or of a table it does not
//     classify, is not checked.
//
// Short integer values (keys from a sequence) are not looked for, see
// Distinctive. A value is found in a cell equal to it or, when it has at
// least six characters, containing it; a value of one or two characters (a
// code such as gender 'F') counts only in a column of its own name.
func CheckSplit(ctx context.Context, conn *pgx.Conn, p *policy.Policy,
	values []Value) ([]Finding, error) {
	rules := make([]placement, len(values))
	var wanted []Value
	var index []int
	for i, v := range values {
		rules[i] = placementOf(p, v)
		if rules[i].schema != "" && Distinctive(v.Value) {
			wanted = append(wanted, v)
			index = append(index, i)
		}
	}
	found, err := search(ctx, conn, wanted, "", relationsSQL(false))
	if err != nil {
		return nil, err
	}
	var out []Finding
	for k, v := range wanted {
		rule := rules[index[k]]
		for _, at := range found[k] {
			if at.Schema != rule.schema {
				out = append(out, Finding{Rule: Misplaced, Value: v, Where: at})
			}
		}
		if v.Live && !contains(found[k], rule.home) {
			out = append(out, Finding{Rule: Missing, Value: v, Where: rule.home})
		}
	}
	return out, nil
}

// placement says where a value belongs: only in schema, and, when live, in
// home. An empty schema means the value is not checked.
type placement struct {
	schema string
	home   Location
}

func placementOf(p *policy.Policy, v Value) placement {
	t := p.Table("public", v.Table)
	if t == nil {
		return placement{}
	}
	if t.Kind == policy.Child && v.Column == t.Reference {
		s := p.SubjectOf(t)
		if s == nil {
			return placement{}
		}
		return placement{IdentitySchema, Location{IdentitySchema, s.Name, s.Key}}
	}
	if t.Kind == policy.Subject && v.Column == t.Key {
		return placement{IdentitySchema, Location{IdentitySchema, t.Name, t.Key}}
	}
	var schema string
	switch t.ClassOf(v.Column) {
	case policy.Identity:
		schema = IdentitySchema
	case policy.Clinical:
		schema = ClinicalSchema
	default:
		return placement{}
	}
	return placement{schema, Location{schema, t.Name, v.Column}}
}

// CheckRoles reads the database as each of the policy's roles (SET ROLE to
// its PostgreSQL role, which must exist): every column of every table, view
// and materialized view the role may select from. A role with masked or no
// access to a class must not read any value of that class in the clear.
// Relations and columns the role may not read are passed over.
func CheckRoles(ctx context.Context, conn *pgx.Conn, p *policy.Policy,
	values []Value) ([]Finding, error) {
	var out []Finding
	for _, r := range p.Roles {
		var exists bool
		err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT FROM pg_roles WHERE rolname = $1)",
			r.PGRole).Scan(&exists)
		if err != nil {
			return nil, fmt.Errorf("look up role %s: %w", r.PGRole, err)
		}
		if !exists {
			return nil, fmt.Errorf("read as role %s: no such role in the cluster", r.PGRole)
		}
		var hidden []Value
		for _, v := range values {
			t := p.Table("public", v.Table)
			if t == nil || !Distinctive(v.Value) {
				continue
			}
			c := t.ClassOf(v.Column)
			if c != policy.Other && r.AccessTo(c) != policy.Full &&
				!(r.AccessTo(c) == policy.Masked && ownMask(ctx, conn, t, v)) {
				hidden = append(hidden, v)
			}
		}
		found, err := search(ctx, conn, hidden, r.PGRole, relationsSQL(true))
		if err != nil {
			return nil, fmt.Errorf("read as role %s: %w", r.PGRole, err)
		}
		for k, v := range hidden {
			for _, at := range found[k] {
				out = append(out, Finding{Rule: Exposed, Value: v, Where: at, Role: r.PGRole})
			}
		}
	}
	return out, nil
}

// ownMask reports whether a value is its own mask (a date of birth on the
// first of January, masked to its year): reading it masked reveals only
// the mask.
func ownMask(ctx context.Context, conn *pgx.Conn, t *policy.Table, v Value) bool {
	pc := t.Column(v.Column)
	if pc == nil {
		return false
	}
	var q string
	switch pc.Mask {
	case "year":
		q = "SELECT privata.mask_year($1::text::date)::text = $1::text"
	case "partial", "last4", "initial":
		q = "SELECT privata.mask_" + pc.Mask + "($1::text) = $1::text"
	default:
		return false
	}
	var same bool
	if err := conn.QueryRow(ctx, q, v.Value).Scan(&same); err != nil {
		return false
	}
	return same
}

// Distinctive reports whether a value is worth looking for: not empty, and
// not a number short enough to be found by chance (an integer key).
func Distinctive(s string) bool {
	if s == "" {
		return false
	}
	digits := strings.Trim(s, "0123456789") == ""
	return !digits || len(s) >= 8
}

// relationsSQL lists the columns of the user's tables (and, with views, of
// views and materialized views), system schemas aside.
func relationsSQL(views bool) string {
	kinds := "'r', 'p', 'm'"
	if views {
		kinds += ", 'v'"
	}
	return `SELECT n.nspname, c.relname, array_agg(a.attname::text ORDER BY a.attnum)
	  FROM pg_class c
	  JOIN pg_namespace n ON n.oid = c.relnamespace
	  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
	 WHERE c.relkind IN (` + kinds + `)
	   AND n.nspname NOT IN ('pg_catalog', 'information_schema')
	   AND n.nspname NOT LIKE 'pg\_toast%' AND n.nspname NOT LIKE 'pg\_temp\_%'
	 GROUP BY n.nspname, c.relname
	 ORDER BY 1, 2`
}

type relation struct {
	schema, name string
	columns      []string
}

// search reads every column, as text, of the relations listed by listSQL and
// returns where each value was found, by the value's index. With a role, it
// reads as that role, passing over what the role may not read.
func search(ctx context.Context, conn *pgx.Conn, values []Value, role,
	listSQL string) ([][]Location, error) {
	found := make([][]Location, len(values))
	if len(values) == 0 {
		return found, nil
	}
	rows, err := conn.Query(ctx, listSQL)
	if err != nil {
		return nil, fmt.Errorf("list relations: %w", err)
	}
	rels, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (relation, error) {
		var rel relation
		err := r.Scan(&rel.schema, &rel.name, &rel.columns)
		return rel, err
	})
	if err != nil {
		return nil, fmt.Errorf("list relations: %w", err)
	}
	m := newMatcher(values)
	for _, rel := range rels {
		err := scan(ctx, conn, role, rel, rel.columns, m, found)
		if isDenied(err) {
			// Some column is denied to the role: read the others one by one.
			for _, col := range rel.columns {
				err := scan(ctx, conn, role, rel, []string{col}, m, found)
				if err != nil && !isDenied(err) {
					return nil, err
				}
			}
			continue
		}
		if err != nil {
			return nil, err
		}
	}
	return found, nil
}

// scan reads columns of rel in a read-only transaction (as role, if set) and
// records the values found in them.
func scan(ctx context.Context, conn *pgx.Conn, role string, rel relation, columns []string,
	m *matcher, found [][]Location) error {
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback(ctx)

	setup := "SET LOCAL TimeZone = 'UTC'; SET LOCAL DateStyle = 'ISO, YMD'"
	if role != "" {
		setup += "; SET LOCAL ROLE " + pgx.Identifier{role}.Sanitize()
	}
	if _, err := tx.Exec(ctx, setup); err != nil {
		return fmt.Errorf("set up read of %s.%s: %w", rel.schema, rel.name, err)
	}
	exprs := make([]string, len(columns))
	for i, c := range columns {
		exprs[i] = pgx.Identifier{c}.Sanitize() + "::text"
	}
	q := "SELECT " + strings.Join(exprs, ", ") + " FROM " +
		pgx.Identifier{rel.schema, rel.name}.Sanitize()
	rows, err := tx.Query(ctx, q, pgx.QueryExecModeSimpleProtocol)
	if err != nil {
		return fmt.Errorf("read %s.%s: %w", rel.schema, rel.name, err)
	}
	defer rows.Close()

	seen := make(map[[2]int]bool)
	cells := make([]*string, len(columns))
	dest := make([]any, len(columns))
	for i := range cells {
		dest[i] = &cells[i]
	}
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return fmt.Errorf("read %s.%s: %w", rel.schema, rel.name, err)
		}
		for c, cell := range cells {
			if cell == nil {
				continue
			}
			for _, v := range m.match(*cell) {
				if len(m.vals[v]) < minAnywhere && columns[c] != m.cols[v] {
					continue
				}
				if !seen[[2]int{v, c}] {
					seen[[2]int{v, c}] = true
					found[v] = append(found[v], Location{rel.schema, rel.name, columns[c]})
				}
			}
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read %s.%s: %w", rel.schema, rel.name, err)
	}
	return nil
}

// isDenied reports whether err is PostgreSQL's insufficient_privilege.
func isDenied(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "42501"
}

// matcher finds which values a cell holds: a cell equal to a value, or
// containing one of at least minContained characters.
type matcher struct {
	exact map[string][]int
	long  []int
	vals  []string
	cols  []string
	short int // length of the shortest long value
}

const (
	minContained = 6
	// Values shorter than minAnywhere (codes such as a gender 'F') count
	// only in a column of the same name: elsewhere they match by chance.
	minAnywhere = 3
)

func newMatcher(values []Value) *matcher {
	m := &matcher{exact: make(map[string][]int), short: -1}
	for i, v := range values {
		m.vals = append(m.vals, v.Value)
		m.cols = append(m.cols, v.Column)
		m.exact[v.Value] = append(m.exact[v.Value], i)
		if len(v.Value) >= minContained {
			m.long = append(m.long, i)
			if m.short < 0 || len(v.Value) < m.short {
				m.short = len(v.Value)
			}
		}
	}
	return m
}

func (m *matcher) match(cell string) []int {
	out := m.exact[cell]
	if m.short < 0 || len(cell) <= m.short {
		return out
	}
	var more []int
	for _, i := range m.long {
		if len(cell) > len(m.vals[i]) && strings.Contains(cell, m.vals[i]) {
			more = append(more, i)
		}
	}
	if more == nil {
		return out
	}
	return append(append([]int(nil), out...), more...)
}

func contains(locs []Location, l Location) bool {
	for _, x := range locs {
		if x == l {
			return true
		}
	}
	return false
}
