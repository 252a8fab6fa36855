package rewrite

import (
	"fmt"
	"slices"

	pg "github.com/pganalyze/pg_query_go/v5"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/privata/privata/policy"
	"github.com/privata/privata/storage"
)

// DDL on a table the policy classifies is carried out by Privata (package
// proxy), in one transaction with the storage planner:
//
//   - CREATE TABLE runs as the application wrote it, so that every
//     constraint, default, serial or identity column is PostgreSQL's own,
//     and the planner adopts the new, empty table into split storage.
//   - On a split table, ALTER TABLE (ADD, DROP, RENAME and ALTER COLUMN,
//     ADD and DROP CONSTRAINT), CREATE INDEX, DROP TABLE and COMMENT ON
//     become statements on the base tables that hold the columns (Base),
//     and the planner derives the table's views, triggers and grants
//     again.
//   - Anything else naming a classified table (SET SCHEMA, RENAME TO,
//     rules, triggers, row-level security, ...) is refused with 0A000.
//
// TableDDL says what such a statement is.

// TableDDL is a DDL statement on a classified table.
type TableDDL struct {
	Table *policy.Table
	// Tag is the command tag to answer with.
	Tag string
	// Create is CREATE TABLE; IfNotExists with it.
	Create, IfNotExists bool
	// References are the classified tables its foreign keys refer to: if
	// they are split, their application names are views, which a foreign
	// key cannot refer to.
	References []*policy.Table
	// DropViews says the base tables change in a way the views over them
	// block (a column dropped, renamed or changing type).
	DropViews bool
	// RenamedColumn is the old and new name of a column RENAME COLUMN
	// renames: the registry keeps the column's place under its new name.
	RenamedColumn *[2]string
	// Drop is DROP TABLE; Cascade with it.
	Drop, Cascade bool
	// Index is the index a DROP INDEX or ALTER INDEX ... RENAME TO
	// (NewName) names, schema and name, with IfExists; Table is nil then. Whether it is an index of a split
	// table's base table (in privata_identity or privata_clinical, where an
	// unqualified name does not find it) only the catalog says.
	Index    *[2]string
	NewName  string
	IfExists bool

	stmt   *pg.Node
	text   string
	policy *policy.Policy
	path   []string
}

// ClassifiedDDL returns the TableDDL of the i-th statement of text when it
// is DDL on a table the policy classifies, nil when it is not, or the
// refusal of DDL Privata does not carry out on such a table. It parses the
// text again: DDL on classified tables is rare.
func ClassifiedDDL(text string, i int, p *policy.Policy, searchPath []string) (*TableDDL, *Error) {
	if p == nil {
		return nil, nil
	}
	tree, err := parse(text)
	if err != nil || i >= len(tree.Stmts) {
		return nil, nil
	}
	if len(searchPath) == 0 {
		searchPath = []string{"public"}
	}
	raw := tree.Stmts[i]
	end := len(text)
	if raw.StmtLen > 0 {
		end = int(raw.StmtLocation + raw.StmtLen)
	}
	rw := &rewriting{policy: p, path: searchPath}
	d := &TableDDL{stmt: raw.Stmt, text: text[raw.StmtLocation:end], policy: p, path: searchPath,
		Tag: ddlTag(raw.Stmt)}
	refuse := func(t *policy.Table, what string) *Error {
		return &Error{SQLState: CodeFeatureNotSupported, Message: fmt.Sprintf("%s is not supported on "+
			"table %s, which Privata splits into identity and clinical storage", what, t.QualifiedName()),
			Hint: "Privata carries out CREATE TABLE, ALTER TABLE ADD/DROP/RENAME/ALTER COLUMN, " +
				"ADD/DROP CONSTRAINT, CREATE/DROP INDEX, DROP TABLE and COMMENT ON on split tables."}
	}
	switch s := raw.Stmt.Node.(type) {
	case *pg.Node_CreateStmt:
		cs := s.CreateStmt
		t := rw.table(cs.Relation)
		// A temporary table of the same name is the session's own. An
		// unlogged or partitioned one the planner refuses when it adopts it.
		if t == nil || cs.Relation.Relpersistence == "t" {
			return nil, nil
		}
		d.Table, d.Create, d.IfNotExists = t, true, cs.IfNotExists
		for _, fk := range foreignKeys(cs.TableElts) {
			d.reference(rw.table(fk.Pktable))
		}
	case *pg.Node_IndexStmt:
		t := rw.table(s.IndexStmt.Relation)
		if t == nil {
			return nil, nil
		}
		d.Table = t
		if s.IndexStmt.Concurrent {
			return nil, refuse(t, "CREATE INDEX CONCURRENTLY")
		}
	case *pg.Node_AlterTableStmt:
		at := s.AlterTableStmt
		t := rw.table(at.Relation)
		if t == nil {
			return nil, nil
		}
		d.Table = t
		if at.Objtype != pg.ObjectType_OBJECT_TABLE {
			return nil, refuse(t, "ALTER "+objectWords(at.Objtype))
		}
		for _, c := range at.Cmds {
			cmd := c.GetAlterTableCmd()
			switch cmd.Subtype {
			case pg.AlterTableType_AT_AddColumn:
				if cd := cmd.Def.GetColumnDef(); cd != nil {
					for _, k := range cd.Constraints {
						if k := k.GetConstraint(); k != nil && k.Contype == pg.ConstrType_CONSTR_FOREIGN {
							d.reference(rw.table(k.Pktable))
						}
					}
				}
			case pg.AlterTableType_AT_AddConstraint:
				if k := cmd.Def.GetConstraint(); k != nil && k.Contype == pg.ConstrType_CONSTR_FOREIGN {
					d.reference(rw.table(k.Pktable))
				}
			case pg.AlterTableType_AT_DropColumn, pg.AlterTableType_AT_AlterColumnType:
				d.DropViews = true
			case pg.AlterTableType_AT_ColumnDefault, pg.AlterTableType_AT_SetNotNull,
				pg.AlterTableType_AT_DropNotNull, pg.AlterTableType_AT_DropConstraint:
			default:
				return nil, refuse(t, "this ALTER TABLE subcommand")
			}
		}
	case *pg.Node_RenameStmt:
		rs := s.RenameStmt
		if rs.RenameType == pg.ObjectType_OBJECT_INDEX && rs.Relation != nil {
			d.Index = &[2]string{rs.Relation.Schemaname, rs.Relation.Relname}
			d.NewName, d.IfExists = rs.Newname, rs.MissingOk
			return d, nil
		}
		t := rw.table(rs.Relation)
		if t == nil {
			return nil, nil
		}
		d.Table = t
		if rs.RenameType == pg.ObjectType_OBJECT_TABCONSTRAINT {
			break
		}
		if rs.RenameType != pg.ObjectType_OBJECT_COLUMN || rs.RelationType != pg.ObjectType_OBJECT_TABLE {
			return nil, refuse(t, "ALTER ... RENAME of anything but a column or constraint")
		}
		if t.Column(rs.Subname) != nil || rs.Subname == t.Key || rs.Subname == t.Reference {
			return nil, &Error{SQLState: CodeFeatureNotSupported, Message: fmt.Sprintf("column %s of "+
				"table %s is named by the policy: renaming it is not supported", rs.Subname,
				t.QualifiedName()), Hint: "Add a column with the new name, copy the values, drop the old " +
				"one, and change the policy."}
		}
		d.DropViews = true
		d.RenamedColumn = &[2]string{rs.Subname, rs.Newname}
	case *pg.Node_DropStmt:
		ds := s.DropStmt
		if ds.RemoveType == pg.ObjectType_OBJECT_INDEX && len(ds.Objects) == 1 && !ds.Concurrent {
			names := nameList(ds.Objects[0])
			ix := [2]string{"", names[len(names)-1]}
			if len(names) > 1 {
				ix[0] = names[len(names)-2]
			}
			d.Index, d.IfExists, d.Cascade = &ix, ds.MissingOk, ds.Behavior == pg.DropBehavior_DROP_CASCADE
			return d, nil
		}
		var ts []*policy.Table
		for _, o := range ds.Objects {
			names := nameList(o)
			rv := &pg.RangeVar{Relname: names[len(names)-1]}
			if len(names) > 1 {
				rv.Schemaname = names[len(names)-2]
			}
			if t := rw.table(rv); t != nil {
				ts = append(ts, t)
			}
		}
		if len(ts) == 0 {
			return nil, nil
		}
		d.Table = ts[0]
		if ds.RemoveType != pg.ObjectType_OBJECT_TABLE {
			return nil, refuse(ts[0], "DROP "+objectWords(ds.RemoveType))
		}
		if len(ds.Objects) > 1 {
			return nil, refuse(ts[0], "DROP TABLE of several tables")
		}
		d.Drop, d.Cascade = true, ds.Behavior == pg.DropBehavior_DROP_CASCADE
	case *pg.Node_CommentStmt:
		cs := s.CommentStmt
		names := nameList(cs.Object)
		skip := 0
		if cs.Objtype == pg.ObjectType_OBJECT_COLUMN {
			skip = 1
		} else if cs.Objtype != pg.ObjectType_OBJECT_TABLE {
			return nil, nil
		}
		if len(names) <= skip {
			return nil, nil
		}
		names = names[:len(names)-skip]
		rv := &pg.RangeVar{Relname: names[len(names)-1]}
		if len(names) > 1 {
			rv.Schemaname = names[len(names)-2]
		}
		if d.Table = rw.table(rv); d.Table == nil {
			return nil, nil
		}
	default:
		// Other statements that name a classified table as the one they
		// change: refused.
		var rv *pg.RangeVar
		what := d.Tag
		switch s := raw.Stmt.Node.(type) {
		case *pg.Node_AlterObjectSchemaStmt:
			rv, what = s.AlterObjectSchemaStmt.Relation, "SET SCHEMA"
		case *pg.Node_CreateTableAsStmt:
			// The table would be made with its rows, plain.
			if in := s.CreateTableAsStmt.Into; in != nil && in.Rel != nil && in.Rel.Relpersistence != "t" {
				rv, what = in.Rel, "CREATE TABLE AS"
			}
		case *pg.Node_SelectStmt:
			if in := selectInto(s.SelectStmt); in != nil && in.Rel != nil && in.Rel.Relpersistence != "t" {
				rv, what = in.Rel, "SELECT INTO"
			}
		case *pg.Node_CreateTrigStmt:
			rv = s.CreateTrigStmt.Relation
		case *pg.Node_RuleStmt:
			rv = s.RuleStmt.Relation
		case *pg.Node_CreatePolicyStmt:
			rv = s.CreatePolicyStmt.Table
		case *pg.Node_AlterPolicyStmt:
			rv = s.AlterPolicyStmt.Table
		case *pg.Node_CreateStatsStmt:
			for _, r := range s.CreateStatsStmt.Relations {
				if rv = r.GetRangeVar(); rw.table(rv) != nil {
					break
				}
			}
		}
		if t := rw.table(rv); t != nil {
			return nil, refuse(t, what)
		}
		return nil, nil
	}
	return d, nil
}

// Text is the statement's text as the client sent it.
func (d *TableDDL) Text() string { return d.text }

// Name names what the statement changes, for messages.
func (d *TableDDL) Name() string {
	if d.Table == nil && d.Index != nil {
		return "index " + d.Index[1]
	}
	return "table " + d.Table.QualifiedName()
}

func (d *TableDDL) reference(t *policy.Table) {
	if t != nil && !slices.Contains(d.References, t) {
		d.References = append(d.References, t)
	}
}

// nameList is the strings of a List node.
func nameList(n *pg.Node) []string {
	var out []string
	if l := n.GetList(); l != nil {
		for _, it := range l.Items {
			out = append(out, stringValue(it))
		}
	}
	if len(out) == 0 {
		out = []string{""}
	}
	return out
}

// foreignKeys returns the FOREIGN KEY and REFERENCES constraints of table
// elements.
func foreignKeys(elts []*pg.Node) []*pg.Constraint {
	var out []*pg.Constraint
	for _, e := range elts {
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

// retarget points foreign keys to tables that split reports split at the
// base table holding the referred columns (a subject's key: its identity
// table), since PostgreSQL refuses a foreign key to a view, and returns
// the base tables they now refer to.
func (d *TableDDL) retarget(fks []*pg.Constraint, split func(*policy.Table) bool) [][2]string {
	rw := &rewriting{policy: d.policy, path: d.path}
	var bases [][2]string
	for _, fk := range fks {
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
	return bases
}

// SQL returns the CREATE TABLE to run: the application's own, except that
// a foreign key to a table that split reports split refers to the base
// table holding the referred columns. The storage planner turns a child's
// reference to its subject's identity table into the foreign key on the
// pseudonym that split storage keeps. bases are the base tables it then
// refers to, schema and name.
func (d *TableDDL) SQL(split func(*policy.Table) bool) (sql string, bases [][2]string, err error) {
	cs := d.stmt.GetCreateStmt()
	if cs == nil {
		return d.text, nil, nil
	}
	if bases = d.retarget(foreignKeys(cs.TableElts), split); len(bases) == 0 {
		return d.text, nil, nil
	}
	sql, err = deparseNode(d.stmt)
	return sql, bases, err
}

// Base returns the statements that carry out d on the base tables of its
// split table, in order. constraintBase names the base table's schema
// that holds a constraint of the table's, or "".
func (d *TableDDL) Base(split func(*policy.Table) bool, constraintBase func(name string) string) ([]string,
	*Error) {
	t := d.Table
	var out []*pg.Node
	fail := func(format string, args ...any) *Error {
		return &Error{SQLState: CodeFeatureNotSupported, Message: fmt.Sprintf(format, args...),
			Hint: "Keep the statement's columns in one class (identity or clinical) of the policy."}
	}
	switch s := d.stmt.Node.(type) {
	case *pg.Node_IndexStmt:
		ix := s.IndexStmt
		var cols []string
		for _, p := range append(slices.Clone(ix.IndexParams), ix.IndexIncludingParams...) {
			e := p.GetIndexElem()
			if e.Name == "" {
				cols = append(cols, columnRefs(e.Expr)...)
				continue
			}
			cols = append(cols, e.Name)
		}
		cols = append(cols, columnRefs(ix.WhereClause)...)
		if t.Kind == policy.Child && storage.RenameReference(ix.ProtoReflect(), t.Reference) {
			return nil, &Error{SQLState: CodeFeatureNotSupported, Message: fmt.Sprintf("index on table %s "+
				"names its reference column %s in an expression or its condition", t.QualifiedName(),
				t.Reference), Hint: referenceHint}
		}
		schema, ok := d.side(cols)
		if !ok {
			return nil, fail("index on table %s spans identity and clinical columns", t.QualifiedName())
		}
		ix.Relation = d.base(schema)
		if ix.Idxname == "" && slices.Contains(cols, t.Reference) {
			out = append(out, d.namedByReference(d.stmt)...)
		} else {
			out = append(out, d.stmt)
		}
	case *pg.Node_AlterTableStmt:
		for _, c := range s.AlterTableStmt.Cmds {
			cmd := c.GetAlterTableCmd()
			var cols []string
			switch cmd.Subtype {
			case pg.AlterTableType_AT_AddColumn:
				cd := cmd.Def.GetColumnDef()
				if cd.Colname == t.Key || cd.Colname == t.Reference {
					return nil, fail("column %s of table %s is its key or reference", cd.Colname,
						t.QualifiedName())
				}
				cols = []string{cd.Colname}
				var fks []*pg.Constraint
				for _, k := range cd.Constraints {
					if k := k.GetConstraint(); k != nil && k.Contype == pg.ConstrType_CONSTR_FOREIGN {
						fks = append(fks, k)
					}
				}
				d.retarget(fks, split)
			case pg.AlterTableType_AT_DropColumn, pg.AlterTableType_AT_AlterColumnType,
				pg.AlterTableType_AT_ColumnDefault, pg.AlterTableType_AT_SetNotNull,
				pg.AlterTableType_AT_DropNotNull:
				if cmd.Name == t.Key || cmd.Name == t.Reference {
					return nil, fail("changing the key or reference column %s of table %s is not supported",
						cmd.Name, t.QualifiedName())
				}
				if cmd.Subtype == pg.AlterTableType_AT_DropColumn && t.Column(cmd.Name) != nil {
					return nil, &Error{SQLState: CodeFeatureNotSupported, Message: fmt.Sprintf("column %s "+
						"of table %s is named by the policy: dropping it is not supported", cmd.Name,
						t.QualifiedName()), Hint: "Take the column out of the policy and run privata apply, " +
						"then drop it."}
				}
				cols = []string{cmd.Name}
			case pg.AlterTableType_AT_AddConstraint:
				k := cmd.Def.GetConstraint()
				switch k.Contype {
				case pg.ConstrType_CONSTR_FOREIGN:
					fk := nameStrings(k.FkAttrs)
					if t.Kind == policy.Child && slices.Contains(fk, t.Reference) {
						subj := d.policy.SubjectOf(t)
						if r := (&rewriting{policy: d.policy, path: d.path}).table(k.Pktable); len(fk) != 1 ||
							r != subj || (len(k.PkAttrs) > 0 && !slices.Equal(nameStrings(k.PkAttrs),
							[]string{subj.Key})) {
							return nil, fail("foreign key on the reference column %s of table %s must "+
								"refer to %s(%s)", t.Reference, t.QualifiedName(), subj.QualifiedName(),
								subj.Key)
						}
						// The reference is stored as the subject's pseudonym.
						k.FkAttrs = []*pg.Node{pg.MakeStrNode(storage.PseudonymColumn)}
						k.PkAttrs = []*pg.Node{pg.MakeStrNode(storage.PseudonymColumn)}
						k.Pktable = &pg.RangeVar{Schemaname: storage.ClinicalSchema, Relname: subj.Name,
							Inh: true, Relpersistence: "p"}
						if k.Conname == "" {
							k.FkAttrs = []*pg.Node{pg.MakeStrNode(t.Reference)}
							out = append(out, d.namedByReference(d.alter(storage.ClinicalSchema, c))...)
							continue
						}
						cols = nil
						break
					}
					cols = fk
					d.retarget([]*pg.Constraint{k}, split)
				case pg.ConstrType_CONSTR_UNIQUE, pg.ConstrType_CONSTR_PRIMARY:
					if k.Indexname != "" {
						return nil, fail("a constraint USING INDEX on table %s is not supported",
							t.QualifiedName())
					}
					cols = nameStrings(append(slices.Clone(k.Keys), k.Including...))
					if t.Kind == policy.Child && slices.Contains(cols, t.Reference) {
						storage.RenameReference(k.ProtoReflect(), t.Reference)
						if k.Conname == "" && k.Contype == pg.ConstrType_CONSTR_UNIQUE {
							out = append(out, d.namedByReference(d.alter(storage.ClinicalSchema, c))...)
							continue
						}
					}
				case pg.ConstrType_CONSTR_CHECK:
					cols = columnRefs(k.RawExpr)
					if t.Kind == policy.Child && slices.Contains(cols, t.Reference) {
						e := fail("a check constraint on the reference column %s of table %s is not "+
							"supported", t.Reference, t.QualifiedName())
						e.Hint = referenceHint
						return nil, e
					}
				default:
					return nil, fail("this kind of constraint is not supported on table %s", t.QualifiedName())
				}
			case pg.AlterTableType_AT_DropConstraint:
				schema := constraintBase(cmd.Name)
				if schema == "" {
					schema = storage.ClinicalSchema
					if t.Kind == policy.Subject {
						schema = storage.IdentitySchema
					}
				}
				out = append(out, d.alter(schema, c))
				continue
			}
			schema, ok := d.side(cols)
			if !ok {
				return nil, fail("ALTER TABLE of table %s spans identity and clinical columns",
					t.QualifiedName())
			}
			out = append(out, d.alter(schema, c))
		}
	case *pg.Node_RenameStmt:
		schema, _ := d.side([]string{s.RenameStmt.Subname})
		if s.RenameStmt.RenameType == pg.ObjectType_OBJECT_TABCONSTRAINT {
			if schema = constraintBase(s.RenameStmt.Subname); schema == "" {
				schema, _ = d.side(nil)
			}
		}
		s.RenameStmt.Relation = d.base(schema)
		out = append(out, d.stmt)
	case *pg.Node_CommentStmt:
		cs := s.CommentStmt
		names := nameList(cs.Object)
		if cs.Objtype == pg.ObjectType_OBJECT_COLUMN {
			schema, _ := d.side([]string{names[len(names)-1]})
			cs.Object = pg.MakeListNode([]*pg.Node{pg.MakeStrNode(schema), pg.MakeStrNode(t.Name),
				pg.MakeStrNode(names[len(names)-1])})
		} else {
			// The application sees its table's comment on the view.
			cs.Objtype = pg.ObjectType_OBJECT_VIEW
			cs.Object = pg.MakeListNode([]*pg.Node{pg.MakeStrNode(t.Schema), pg.MakeStrNode(t.Name)})
		}
		out = append(out, d.stmt)
	}
	sqls := make([]string, 0, len(out))
	for _, n := range out {
		sql, err := deparseNode(n)
		if err != nil {
			return nil, &Error{SQLState: CodeInternalError, Message: "DDL rewrite failed"}
		}
		sqls = append(sqls, sql)
	}
	return sqls, nil
}

// namedByReference returns stmt, which creates an index or constraint
// without a name on a child's clinical base table, between two renames of
// the pseudonym to the child's reference column and back: PostgreSQL then
// names what it makes after the reference column, as on a plain table
// (choosing another name when that one is taken, as it does).
func (d *TableDDL) namedByReference(stmt *pg.Node) []*pg.Node {
	ref := d.Table.Reference
	storage.RenameColumn(stmt.ProtoReflect(), storage.PseudonymColumn, ref)
	rename := func(from, to string) *pg.Node {
		return &pg.Node{Node: &pg.Node_RenameStmt{RenameStmt: &pg.RenameStmt{
			RenameType: pg.ObjectType_OBJECT_COLUMN, RelationType: pg.ObjectType_OBJECT_TABLE,
			Relation: d.base(storage.ClinicalSchema), Subname: from, Newname: to}}}
	}
	return []*pg.Node{rename(storage.PseudonymColumn, ref), stmt, rename(ref, storage.PseudonymColumn)}
}

// alter is ALTER TABLE of one subcommand on a base table.
func (d *TableDDL) alter(schema string, cmd *pg.Node) *pg.Node {
	at := d.stmt.GetAlterTableStmt()
	return &pg.Node{Node: &pg.Node_AlterTableStmt{AlterTableStmt: &pg.AlterTableStmt{
		Relation: d.base(schema), Cmds: []*pg.Node{cmd}, Objtype: at.Objtype, MissingOk: at.MissingOk}}}
}

func (d *TableDDL) base(schema string) *pg.RangeVar {
	return &pg.RangeVar{Schemaname: schema, Relname: d.Table.Name, Inh: true, Relpersistence: "p"}
}

// side returns the schema of the base table that holds cols (a child's
// are all in its clinical table), false when they are stored apart.
func (d *TableDDL) side(cols []string) (string, bool) {
	t := d.Table
	if t.Kind != policy.Subject {
		return storage.ClinicalSchema, true
	}
	schema := ""
	for _, c := range cols {
		s := storage.IdentitySchema
		if c != t.Key && t.SideOf(c, d.policy.Unclassified) != policy.Identity {
			s = storage.ClinicalSchema
		}
		if schema != "" && s != schema {
			return "", false
		}
		schema = s
	}
	if schema == "" {
		schema = storage.IdentitySchema
	}
	return schema, true
}

// referenceHint explains refusals of DDL that names a child's reference
// column where its pseudonym cannot stand for it.
const referenceHint = "Privata stores the reference column as the subject's pseudonym, which stands " +
	"for it only as a column of an index, unique or primary key constraint, or in an index " +
	"condition's IS [NOT] NULL."

// columnRefs returns the column names an expression refers to.
func columnRefs(n *pg.Node) []string {
	if n == nil {
		return nil
	}
	var out []string
	eachColumnRef(n.ProtoReflect(), func(cr *pg.ColumnRef) {
		if s := stringValue(cr.Fields[len(cr.Fields)-1]); s != "" {
			out = append(out, s)
		}
	})
	return out
}

func eachColumnRef(m protoreflect.Message, f func(*pg.ColumnRef)) {
	if cr, ok := m.Interface().(*pg.ColumnRef); ok {
		if len(cr.Fields) > 0 {
			f(cr)
		}
		return
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.Kind() != protoreflect.MessageKind || fd.IsMap():
		case fd.IsList():
			for i := 0; i < v.List().Len(); i++ {
				eachColumnRef(v.List().Get(i).Message(), f)
			}
		default:
			eachColumnRef(v.Message(), f)
		}
		return true
	})
}

func nameStrings(ns []*pg.Node) []string {
	out := make([]string, len(ns))
	for i, n := range ns {
		out[i] = stringValue(n)
	}
	return out
}

func deparseNode(n *pg.Node) (string, error) {
	return deparse(&pg.ParseResult{Stmts: []*pg.RawStmt{{Stmt: n}}})
}

// splitBaseSchema is the schema of the base table of split table t that
// holds cols (its primary key when cols is empty).
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
