package rewrite

import (
	"slices"

	pg "github.com/pganalyze/pg_query_go/v5"

	"github.com/privata/privata/policy"
	"github.com/privata/privata/storage"
)

// A CREATE TABLE of a table the policy classifies is carried out by
// Privata (package proxy): PostgreSQL runs it as the application wrote it,
// so that every constraint, default, serial or identity column is its own,
// and the storage planner adopts the new, empty table into split storage
// in the same transaction. TableDDL says what such a statement is; SQL
// gives the text to run.

// TableDDL is a statement that defines a classified table.
type TableDDL struct {
	Table *policy.Table
	// IfNotExists is CREATE TABLE IF NOT EXISTS.
	IfNotExists bool
	// References are the classified tables its foreign keys refer to: if
	// they are split, their application names are views, which a foreign
	// key cannot refer to (see SQL).
	References []*policy.Table

	stmt   *pg.Node
	text   string
	policy *policy.Policy
	path   []string
}

// ClassifiedDDL returns the TableDDL of the i-th statement of text when it
// creates a table the policy classifies, or nil. It parses the text again:
// DDL on classified tables is rare.
func ClassifiedDDL(text string, i int, p *policy.Policy, searchPath []string) (*TableDDL, error) {
	if p == nil {
		return nil, nil
	}
	tree, err := pg.Parse(text)
	if err != nil || i >= len(tree.Stmts) {
		return nil, err
	}
	cs := tree.Stmts[i].Stmt.GetCreateStmt()
	if cs == nil {
		return nil, nil
	}
	if len(searchPath) == 0 {
		searchPath = []string{"public"}
	}
	rw := &rewriting{policy: p, path: searchPath}
	t := rw.table(cs.Relation)
	// A temporary table of the same name is the session's own. An unlogged
	// or partitioned one the storage planner refuses when it adopts it.
	if t == nil || cs.Relation.Relpersistence == "t" {
		return nil, nil
	}
	raw := tree.Stmts[i]
	end := len(text)
	if raw.StmtLen > 0 {
		end = int(raw.StmtLocation + raw.StmtLen)
	}
	d := &TableDDL{Table: t, IfNotExists: cs.IfNotExists, stmt: raw.Stmt,
		text: text[raw.StmtLocation:end], policy: p, path: searchPath}
	for _, fk := range foreignKeys(cs) {
		if r := rw.table(fk.Pktable); r != nil && !slices.Contains(d.References, r) {
			d.References = append(d.References, r)
		}
	}
	return d, nil
}

// foreignKeys returns the FOREIGN KEY and REFERENCES constraints of a
// CREATE TABLE.
func foreignKeys(cs *pg.CreateStmt) []*pg.Constraint {
	var out []*pg.Constraint
	for _, e := range cs.TableElts {
		switch n := e.Node.(type) {
		case *pg.Node_ColumnDef:
			for _, c := range n.ColumnDef.Constraints {
				if k := c.GetConstraint(); k != nil && k.Contype == pg.ConstrType_CONSTR_FOREIGN {
					out = append(out, k)
				}
			}
		case *pg.Node_Constraint:
			if n.Constraint.Contype == pg.ConstrType_CONSTR_FOREIGN {
				out = append(out, n.Constraint)
			}
		}
	}
	return out
}

// SQL returns the statement to run: the application's own, except that a
// foreign key to a table that split reports split refers to the base
// table holding the referred columns (a subject's key: its identity
// table), since PostgreSQL refuses a foreign key to a view. The storage
// planner turns a child's reference to its subject's identity table into
// the foreign key on the pseudonym that split storage keeps. bases are
// the base tables it then refers to, schema and name.
func (d *TableDDL) SQL(split func(*policy.Table) bool) (sql string, bases [][2]string, err error) {
	cs := d.stmt.GetCreateStmt()
	rw := &rewriting{policy: d.policy, path: d.path}
	for _, fk := range foreignKeys(cs) {
		r := rw.table(fk.Pktable)
		if r == nil || !split(r) {
			continue
		}
		base := [2]string{splitBaseSchema(r, fk.PkAttrs, d.policy.Unclassified), r.Name}
		fk.Pktable = &pg.RangeVar{Schemaname: base[0], Relname: base[1], Inh: true, Relpersistence: "p"}
		if !slices.Contains(bases, base) {
			bases = append(bases, base)
		}
	}
	if len(bases) == 0 {
		return d.text, nil, nil
	}
	sql, err = pg.Deparse(&pg.ParseResult{Stmts: []*pg.RawStmt{{Stmt: d.stmt}}})
	return sql, bases, err
}

// splitBaseSchema is the schema of the base table of split table t that holds
// cols (its primary key when cols is empty).
func splitBaseSchema(t *policy.Table, cols []*pg.Node, unclassified policy.Class) string {
	if t.Kind != policy.Subject {
		return storage.ClinicalSchema
	}
	if len(cols) == 0 {
		return storage.IdentitySchema
	}
	for _, c := range cols {
		name := stringValue(c)
		if name != t.Key && t.SideOf(name, unclassified) != policy.Identity {
			return storage.ClinicalSchema
		}
	}
	return storage.IdentitySchema
}
