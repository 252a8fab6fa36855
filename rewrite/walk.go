package rewrite

import (
	"strings"

	pg "github.com/pganalyze/pg_query_go/v5"
)

// walker collects one statement's analysis from its parse tree.
type walker struct {
	st *Statement
	// text is the statement's own text, for pg_query's PL/pgSQL parser.
	text string
	// an is the text's analysis; constants read while walking mark it.
	an *Analysis
	// opt bounds nested parsing (function bodies, SQL in constants).
	opt *options
	// ddl is set while walking DDL: relations found are written, column
	// references are not recorded.
	ddl bool
	// via prefixes RoleChange and Unsafe reasons found in a body, e.g.
	// "the DO block runs ".
	via string
	// nesting counts bodies and SQL constants analysed inside each other.
	nesting int
	// err is the first error found in a body: the text is refused.
	err *Error
}

// statement walks a statement node; sc is the enclosing query level (a
// rule's, or nil).
func (w *walker) statement(n *pg.Node, sc *scope) {
	if n == nil {
		return
	}
	switch s := n.Node.(type) {
	case *pg.Node_SelectStmt, *pg.Node_InsertStmt, *pg.Node_UpdateStmt,
		*pg.Node_DeleteStmt, *pg.Node_MergeStmt:
		w.query(n, sc)
	case *pg.Node_CopyStmt:
		w.copyStmt(s.CopyStmt)
	case *pg.Node_ExplainStmt:
		w.statement(s.ExplainStmt.Query, sc)
	case *pg.Node_PrepareStmt:
		w.statement(s.PrepareStmt.Query, sc)
	case *pg.Node_DeclareCursorStmt:
		w.statement(s.DeclareCursorStmt.Query, sc)
	case *pg.Node_ExecuteStmt:
		w.exprs(s.ExecuteStmt.Params, sc)
	case *pg.Node_CallStmt:
		w.funcCall(s.CallStmt.Funccall, sc)
	case *pg.Node_CreateTableAsStmt:
		if s.CreateTableAsStmt.Into != nil {
			w.relation(s.CreateTableAsStmt.Into.Rel, Write)
		}
		w.statement(s.CreateTableAsStmt.Query, sc)
	case *pg.Node_ViewStmt:
		w.relation(s.ViewStmt.View, Write)
		w.statement(s.ViewStmt.Query, sc)
	case *pg.Node_RuleStmt:
		w.ruleStmt(s.RuleStmt)
	case *pg.Node_CreateSchemaStmt:
		for _, e := range s.CreateSchemaStmt.SchemaElts {
			w.statement(e, sc)
		}
	case *pg.Node_VariableSetStmt:
		w.setStmt(s.VariableSetStmt)
	case *pg.Node_AlterRoleSetStmt:
		w.storedSetting(s.AlterRoleSetStmt.Setstmt, "ALTER ROLE ... SET")
	case *pg.Node_AlterDatabaseSetStmt:
		w.storedSetting(s.AlterDatabaseSetStmt.Setstmt, "ALTER DATABASE ... SET")
	case *pg.Node_AlterSystemStmt:
		w.storedSetting(s.AlterSystemStmt.Setstmt, "ALTER SYSTEM SET")
	case *pg.Node_DoStmt:
		w.doStmt(s.DoStmt)
	case *pg.Node_CreateFunctionStmt:
		w.createFunction(s.CreateFunctionStmt)
	case *pg.Node_AlterFunctionStmt:
		w.alterFunction(s.AlterFunctionStmt)
	case *pg.Node_DefineStmt:
		w.defineStmt(s.DefineStmt)
	case *pg.Node_DropStmt:
		w.dropStmt(s.DropStmt)
	case *pg.Node_CommentStmt:
		w.namedObject(s.CommentStmt.Objtype, s.CommentStmt.Object)
	case *pg.Node_SecLabelStmt:
		w.namedObject(s.SecLabelStmt.Objtype, s.SecLabelStmt.Object)
	case *pg.Node_TransactionStmt, *pg.Node_VariableShowStmt, *pg.Node_DiscardStmt,
		*pg.Node_ListenStmt, *pg.Node_UnlistenStmt, *pg.Node_NotifyStmt,
		*pg.Node_DeallocateStmt, *pg.Node_FetchStmt, *pg.Node_ClosePortalStmt,
		*pg.Node_CheckPointStmt:
		if d, ok := s.(*pg.Node_DiscardStmt); ok &&
			d.DiscardStmt.Target == pg.DiscardMode_DISCARD_ALL {
			w.st.ResetsSession = true
		}
	default:
		// DDL and the rest: every relation named is written; expressions
		// (defaults, checks, policies) are searched for functions.
		saved := w.ddl
		w.ddl = true
		w.node(n, sc)
		w.ddl = saved
	}
}

// query walks a query-shaped node at a new level below parent.
func (w *walker) query(n *pg.Node, parent *scope) {
	if n == nil {
		return
	}
	saved := w.ddl
	w.ddl = false
	defer func() { w.ddl = saved }()

	switch s := n.Node.(type) {
	case *pg.Node_SelectStmt:
		w.selectStmt(s.SelectStmt, parent)
	case *pg.Node_InsertStmt:
		w.insertStmt(s.InsertStmt, parent)
	case *pg.Node_UpdateStmt:
		w.updateStmt(s.UpdateStmt, parent)
	case *pg.Node_DeleteStmt:
		w.deleteStmt(s.DeleteStmt, parent)
	case *pg.Node_MergeStmt:
		w.mergeStmt(s.MergeStmt, parent)
	default:
		w.statement(n, parent)
	}
}

func (w *walker) selectStmt(s *pg.SelectStmt, parent *scope) {
	if s == nil {
		return
	}
	sc := parent.child()
	w.with(s.WithClause, sc)

	if s.Larg != nil || s.Rarg != nil {
		// A set operation: each side is a level of its own; ORDER BY and
		// LIMIT name output columns.
		w.selectStmt(s.Larg, sc)
		w.selectStmt(s.Rarg, sc)
		w.exprs(s.SortClause, sc)
		w.expr(s.LimitCount, sc)
		w.expr(s.LimitOffset, sc)
		return
	}

	for _, v := range s.ValuesLists {
		w.expr(v, sc)
	}
	w.fromList(s.FromClause, sc)
	if s.IntoClause != nil {
		w.relation(s.IntoClause.Rel, Write)
	}
	for _, t := range s.TargetList {
		if rt := t.GetResTarget(); rt != nil && rt.Name != "" {
			sc.addOutput(rt.Name)
		}
	}
	w.targets(s.TargetList, sc, Read)
	w.expr(s.WhereClause, sc)
	w.orderBy(s.GroupClause, sc)
	w.expr(s.HavingClause, sc)
	w.exprs(s.WindowClause, sc)
	w.exprs(s.DistinctClause, sc)
	w.orderBy(s.SortClause, sc)
	w.expr(s.LimitCount, sc)
	w.expr(s.LimitOffset, sc)
}

// orderBy walks ORDER BY or GROUP BY items, which may name an output
// column instead of an input one.
func (w *walker) orderBy(list []*pg.Node, sc *scope) {
	for _, n := range list {
		e := n
		if sb := n.GetSortBy(); sb != nil {
			e = sb.Node
		}
		if cr := e.GetColumnRef(); cr != nil && len(cr.Fields) == 1 &&
			sc.isOutput(stringValue(cr.Fields[0])) {
			continue
		}
		w.expr(n, sc)
	}
}

func (w *walker) insertStmt(s *pg.InsertStmt, parent *scope) {
	sc := parent.child()
	w.with(s.WithClause, sc)
	target := w.relation(s.Relation, Write)

	// The source sees the WITH queries, not the target.
	w.query(s.SelectStmt, sc)

	if len(s.Cols) == 0 {
		w.addColumn(Column{Relation: target, Star: true, Access: Write})
	}
	for _, c := range s.Cols {
		if rt := c.GetResTarget(); rt != nil {
			w.addColumn(Column{Relation: target, Name: rt.Name, Access: Write})
		}
	}

	sc.add(w.itemFor(target, s.Relation))
	if oc := s.OnConflictClause; oc != nil {
		if oc.Infer != nil {
			for _, e := range oc.Infer.IndexElems {
				w.indexElem(e.GetIndexElem(), target, sc)
			}
			w.expr(oc.Infer.WhereClause, sc)
		}
		up := sc.child()
		up.items = []item{{name: "excluded", rel: target}}
		w.assignments(oc.TargetList, target, up)
		w.expr(oc.WhereClause, up)
	}
	w.targets(s.ReturningList, sc, Read)
}

func (w *walker) updateStmt(s *pg.UpdateStmt, parent *scope) {
	sc := parent.child()
	w.with(s.WithClause, sc)
	target := w.relation(s.Relation, Write)
	sc.add(w.itemFor(target, s.Relation))
	w.fromList(s.FromClause, sc)
	w.assignments(s.TargetList, target, sc)
	w.expr(s.WhereClause, sc)
	w.targets(s.ReturningList, sc, Read)
}

func (w *walker) deleteStmt(s *pg.DeleteStmt, parent *scope) {
	sc := parent.child()
	w.with(s.WithClause, sc)
	target := w.relation(s.Relation, Write)
	w.addColumn(Column{Relation: target, Star: true, Access: Write})
	sc.add(w.itemFor(target, s.Relation))
	w.fromList(s.UsingClause, sc)
	w.expr(s.WhereClause, sc)
	w.targets(s.ReturningList, sc, Read)
}

func (w *walker) mergeStmt(s *pg.MergeStmt, parent *scope) {
	sc := parent.child()
	w.with(s.WithClause, sc)
	target := w.relation(s.Relation, Write)
	sc.add(w.itemFor(target, s.Relation))
	w.fromItem(s.SourceRelation, sc)
	w.expr(s.JoinCondition, sc)
	for _, n := range s.MergeWhenClauses {
		wc := n.GetMergeWhenClause()
		if wc == nil {
			continue
		}
		w.expr(wc.Condition, sc)
		switch wc.CommandType {
		case pg.CmdType_CMD_UPDATE:
			w.assignments(wc.TargetList, target, sc)
		case pg.CmdType_CMD_INSERT:
			if len(wc.TargetList) == 0 {
				w.addColumn(Column{Relation: target, Star: true, Access: Write})
			}
			for _, t := range wc.TargetList {
				if rt := t.GetResTarget(); rt != nil {
					w.addColumn(Column{Relation: target, Name: rt.Name, Access: Write})
				}
			}
			w.exprs(wc.Values, sc)
		case pg.CmdType_CMD_DELETE:
			w.addColumn(Column{Relation: target, Star: true, Access: Write})
		}
	}
}

func (w *walker) copyStmt(s *pg.CopyStmt) {
	if s.Query != nil {
		w.query(s.Query, nil)
		return
	}
	access := Read
	if s.IsFrom {
		access = Write
	}
	target := w.relation(s.Relation, access)
	if len(s.Attlist) == 0 {
		w.addColumn(Column{Relation: target, Star: true, Access: access})
	}
	for _, a := range s.Attlist {
		if name := stringValue(a); name != "" {
			w.addColumn(Column{Relation: target, Name: name, Access: access})
		}
	}
	if s.WhereClause != nil {
		sc := &scope{items: []item{w.itemFor(target, s.Relation)}}
		w.expr(s.WhereClause, sc)
	}
}

func (w *walker) ruleStmt(s *pg.RuleStmt) {
	target := w.relation(s.Relation, Write)
	sc := &scope{items: []item{{name: "new", rel: target}, {name: "old", rel: target}}}
	w.expr(s.WhereClause, sc)
	for _, a := range s.Actions {
		w.query(a, sc)
	}
}

// with registers a WITH clause's names at level sc and walks its queries.
// A query of a non-recursive WITH sees the names defined before it; a
// recursive one sees them all.
func (w *walker) with(wc *pg.WithClause, sc *scope) {
	if wc == nil {
		return
	}
	ctes := make([]*pg.CommonTableExpr, 0, len(wc.Ctes))
	for _, n := range wc.Ctes {
		if c := n.GetCommonTableExpr(); c != nil {
			ctes = append(ctes, c)
		}
	}
	if wc.Recursive {
		for _, c := range ctes {
			sc.addCTE(c.Ctename)
		}
	}
	for _, c := range ctes {
		w.query(c.Ctequery, sc.withoutItems())
		if !wc.Recursive {
			sc.addCTE(c.Ctename)
		}
	}
}

func (w *walker) fromList(items []*pg.Node, sc *scope) {
	for _, n := range items {
		w.fromItem(n, sc)
	}
}

// fromItem binds one FROM item at level sc and walks what it contains.
func (w *walker) fromItem(n *pg.Node, sc *scope) {
	if n == nil {
		return
	}
	switch f := n.Node.(type) {
	case *pg.Node_RangeVar:
		rv := f.RangeVar
		if rv.Schemaname == "" && sc.isCTE(rv.Relname) {
			sc.add(item{name: aliasOr(rv.Alias, rv.Relname), rel: -1})
			return
		}
		idx := w.relation(rv, Read)
		sc.add(w.itemFor(idx, rv))
	case *pg.Node_JoinExpr:
		j := f.JoinExpr
		first := len(sc.items)
		w.fromItem(j.Larg, sc)
		w.fromItem(j.Rarg, sc)
		for _, u := range j.UsingClause {
			w.columnName(stringValue(u), sc, Read)
		}
		w.expr(j.Quals, sc)
		if j.Alias != nil {
			// The alias hides the names inside the join.
			joined := item{name: j.Alias.Aliasname, rel: -1}
			for _, it := range sc.items[first:] {
				if it.rel >= 0 {
					joined.members = append(joined.members, it.rel)
				}
				joined.members = append(joined.members, it.members...)
			}
			sc.setItems(append(sc.items[:first], joined))
		}
	case *pg.Node_RangeSubselect:
		r := f.RangeSubselect
		if r.Lateral {
			w.query(r.Subquery, sc)
		} else {
			w.query(r.Subquery, sc.withoutItems())
		}
		sc.add(item{name: aliasOr(r.Alias, ""), rel: -1})
	case *pg.Node_RangeFunction:
		w.rangeFunction(f.RangeFunction, sc)
	case *pg.Node_RangeTableSample:
		w.fromItem(f.RangeTableSample.Relation, sc)
		w.exprs(f.RangeTableSample.Args, sc)
		w.expr(f.RangeTableSample.Repeatable, sc)
	case *pg.Node_RangeTableFunc:
		t := f.RangeTableFunc
		w.expr(t.Docexpr, sc)
		w.expr(t.Rowexpr, sc)
		w.exprs(t.Columns, sc)
		sc.add(item{name: aliasOr(t.Alias, ""), rel: -1})
	default:
		w.node(n, sc)
	}
}

// rangeFunction binds a function in FROM; it is a relation of its own.
func (w *walker) rangeFunction(r *pg.RangeFunction, sc *scope) {
	it := item{rel: -1}
	for _, f := range r.Functions {
		// Each entry is a list: the call, then its column definitions.
		var call *pg.Node
		if l := f.GetList(); l != nil && len(l.Items) > 0 {
			call = l.Items[0]
		} else {
			call = f
		}
		fc := call.GetFuncCall()
		if fc == nil {
			w.expr(call, sc)
			continue
		}
		schema, name := funcName(fc)
		idx := w.addRelation(Relation{Schema: schema, Name: name, Access: Read,
			Alias: aliasOr(r.Alias, ""), Function: true})
		if it.rel < 0 && it.members == nil {
			it.rel, it.name = idx, name
		} else {
			it.members = append(it.members, idx)
		}
		w.funcCall(fc, sc)
	}
	if r.Alias != nil {
		it.name = r.Alias.Aliasname
	}
	if len(it.members) > 0 {
		it.members = append(it.members, it.rel)
		it.rel = -1
	}
	sc.add(it)
}

// relation records a reference to a table or view and returns its index.
func (w *walker) relation(rv *pg.RangeVar, access Access) int {
	if rv == nil {
		return -1
	}
	return w.addRelation(Relation{Schema: rv.Schemaname, Name: rv.Relname, Access: access,
		Alias: aliasOr(rv.Alias, "")})
}

func (w *walker) addRelation(r Relation) int {
	w.st.Relations = append(w.st.Relations, r)
	return len(w.st.Relations) - 1
}

func (w *walker) itemFor(idx int, rv *pg.RangeVar) item {
	if rv == nil {
		return item{rel: -1}
	}
	return item{name: aliasOr(rv.Alias, rv.Relname), schema: rv.Schemaname, rel: idx}
}

func (w *walker) addColumn(c Column) {
	if c.Relation < 0 && len(c.Candidates) == 0 {
		return
	}
	if c.Relation >= 0 && c.Access&Read != 0 {
		w.st.Relations[c.Relation].Access |= Read
	}
	w.st.Columns = append(w.st.Columns, c)
}

// targets walks a target or RETURNING list.
func (w *walker) targets(list []*pg.Node, sc *scope, access Access) {
	for _, t := range list {
		rt := t.GetResTarget()
		if rt == nil {
			w.expr(t, sc)
			continue
		}
		w.expr(rt.Val, sc)
	}
}

// assignments walks SET a = ..., (b, c) = (...): the names are written
// columns of target, the values are read at level sc.
func (w *walker) assignments(list []*pg.Node, target int, sc *scope) {
	for _, t := range list {
		rt := t.GetResTarget()
		if rt == nil {
			continue
		}
		w.addColumn(Column{Relation: target, Name: rt.Name, Access: Write})
		w.exprs(rt.Indirection, sc)
		if m := rt.Val.GetMultiAssignRef(); m != nil {
			// Every column of (a, b) = (SELECT ...) shares one source.
			if m.Colno == 1 {
				w.expr(m.Source, sc)
			}
			continue
		}
		w.expr(rt.Val, sc)
	}
}

// indexElem walks an ON CONFLICT (column | (expression)) element.
func (w *walker) indexElem(e *pg.IndexElem, target int, sc *scope) {
	if e == nil {
		return
	}
	if e.Name != "" {
		w.addColumn(Column{Relation: target, Name: e.Name, Access: Read})
	}
	w.expr(e.Expr, sc)
}

// defineStmt checks CREATE AGGREGATE (and the other definitions with
// options) for a support function that is set_config: an aggregate whose
// state function is set_config, with 'role' as its initial state, changes
// the role of whoever runs it.
func (w *walker) defineStmt(s *pg.DefineStmt) {
	for _, d := range s.Definition {
		de := d.GetDefElem()
		if de == nil {
			continue
		}
		if tn := de.Arg.GetTypeName(); tn != nil && len(tn.Names) > 0 &&
			stringValue(tn.Names[len(tn.Names)-1]) == "set_config" {
			w.roleChange("a definition whose " + de.Defname + " is set_config()")
		}
	}
	w.ddlNode(s)
}

// dropStmt records the relations DROP TABLE/VIEW/INDEX/... names.
func (w *walker) dropStmt(s *pg.DropStmt) {
	if !isRelationType(s.RemoveType) {
		w.ddlNode(s)
		return
	}
	for _, o := range s.Objects {
		w.namedRelation(o, 0)
	}
}

// namedObject records the relation a COMMENT or SECURITY LABEL names.
func (w *walker) namedObject(t pg.ObjectType, obj *pg.Node) {
	switch {
	case isRelationType(t):
		w.namedRelation(obj, 0)
	case t == pg.ObjectType_OBJECT_COLUMN:
		w.namedRelation(obj, 1)
	}
}

// namedRelation records a relation named by a list of strings, dropping
// the last skip names (a column's).
func (w *walker) namedRelation(n *pg.Node, skip int) {
	l := n.GetList()
	if l == nil || len(l.Items) <= skip {
		return
	}
	names := make([]string, 0, len(l.Items))
	for _, it := range l.Items[:len(l.Items)-skip] {
		names = append(names, stringValue(it))
	}
	r := Relation{Name: names[len(names)-1], Access: Write}
	if len(names) > 1 {
		r.Schema = names[len(names)-2]
	}
	w.addRelation(r)
}

func isRelationType(t pg.ObjectType) bool {
	switch t {
	case pg.ObjectType_OBJECT_TABLE, pg.ObjectType_OBJECT_VIEW, pg.ObjectType_OBJECT_MATVIEW,
		pg.ObjectType_OBJECT_FOREIGN_TABLE, pg.ObjectType_OBJECT_INDEX,
		pg.ObjectType_OBJECT_SEQUENCE:
		return true
	}
	return false
}

func aliasOr(a *pg.Alias, name string) string {
	if a != nil {
		return a.Aliasname
	}
	return name
}

// stringValue returns the value of a String node, or "".
func stringValue(n *pg.Node) string {
	if s := n.GetString_(); s != nil {
		return s.Sval
	}
	return ""
}

// funcName splits a function's qualified name.
func funcName(fc *pg.FuncCall) (schema, name string) {
	parts := make([]string, 0, len(fc.Funcname))
	for _, n := range fc.Funcname {
		parts = append(parts, stringValue(n))
	}
	if len(parts) == 0 {
		return "", ""
	}
	name = parts[len(parts)-1]
	if len(parts) > 1 {
		schema = parts[len(parts)-2]
	}
	return schema, name
}

// lowerASCII lower-cases a run-time parameter name the way PostgreSQL
// compares them.
func lowerASCII(s string) string { return strings.ToLower(s) }
