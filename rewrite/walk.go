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
	w.temporary(n)
	start := len(w.st.Relations)
	switch s := n.Node.(type) {
	case *pg.Node_SelectStmt, *pg.Node_InsertStmt, *pg.Node_UpdateStmt,
		*pg.Node_DeleteStmt, *pg.Node_MergeStmt:
		first := len(w.st.Relations)
		w.query(n, sc)
		if sel := n.GetSelectStmt(); sel != nil && selectInto(sel) != nil {
			w.readsSince(first, OpTableAs)
		}
		if sel := n.GetSelectStmt(); sel != nil && len(sel.LockingClause) > 0 {
			w.lockedSince(first, sel.LockingClause)
		}
	case *pg.Node_CopyStmt:
		w.copyStmt(s.CopyStmt)
	case *pg.Node_ExplainStmt:
		w.statement(s.ExplainStmt.Query, sc)
	case *pg.Node_PrepareStmt:
		first := len(w.st.Relations)
		w.statement(s.PrepareStmt.Query, sc)
		if returnsRows(s.PrepareStmt.Query) {
			w.readsSince(first, OpPrepare)
		}
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
		first := len(w.st.Relations)
		w.statement(s.CreateTableAsStmt.Query, sc)
		if s.CreateTableAsStmt.Objtype == pg.ObjectType_OBJECT_MATVIEW {
			w.readsSince(first, OpMatView)
		} else {
			w.readsSince(first, OpTableAs)
		}
	case *pg.Node_ViewStmt:
		w.relation(s.ViewStmt.View, Write)
		first := len(w.st.Relations)
		w.statement(s.ViewStmt.Query, sc)
		w.readsSince(first, OpView)
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
		first := len(w.st.Relations)
		w.node(n, sc)
		w.ddl = saved
		w.utilityOperations(n, first)
	}
	// Privata turns DDL on a classified table into DDL on its split storage
	// only when the DDL is a statement of its own (package proxy, ddl.go).
	if w.via != "" {
		if k, _ := kindAndTag(n); k == DDL {
			w.accessedSince(start, Write, OpBodyDDL)
		}
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
		w.operation(target, OpUpsert)
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
	if s.WhereClause.GetCurrentOfExpr() != nil {
		w.operation(target, OpCurrentOf)
	}
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
	if s.WhereClause.GetCurrentOfExpr() != nil {
		w.operation(target, OpCurrentOf)
	}
}

func (w *walker) mergeStmt(s *pg.MergeStmt, parent *scope) {
	sc := parent.child()
	w.with(s.WithClause, sc)
	target := w.relation(s.Relation, Write)
	w.operation(target, OpMerge)
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
	if s.IsFrom {
		w.operation(target, OpCopyFrom)
	} else {
		w.operation(target, OpCopyTo)
	}
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

// temporary records the name of a temporary relation that statement n
// creates (Statement.Temporary), or the new name of a relation it renames
// (Statement.Renamed).
func (w *walker) temporary(n *pg.Node) {
	var rv *pg.RangeVar
	switch s := n.Node.(type) {
	case *pg.Node_CreateStmt:
		rv = s.CreateStmt.Relation
	case *pg.Node_ViewStmt:
		rv = s.ViewStmt.View
	case *pg.Node_CreateSeqStmt:
		rv = s.CreateSeqStmt.Sequence
	case *pg.Node_CreateTableAsStmt:
		if s.CreateTableAsStmt.Into != nil {
			rv = s.CreateTableAsStmt.Into.Rel
		}
	case *pg.Node_SelectStmt:
		if in := selectInto(s.SelectStmt); in != nil {
			rv = in.Rel
		}
	case *pg.Node_RenameStmt:
		switch s.RenameStmt.RenameType {
		case pg.ObjectType_OBJECT_TABLE, pg.ObjectType_OBJECT_VIEW, pg.ObjectType_OBJECT_SEQUENCE,
			pg.ObjectType_OBJECT_MATVIEW, pg.ObjectType_OBJECT_FOREIGN_TABLE:
			w.st.Renamed = append(w.st.Renamed, s.RenameStmt.Newname)
		}
	}
	if rv == nil {
		return
	}
	if schema := rv.Schemaname; rv.Relpersistence == "t" || schema == "pg_temp" ||
		strings.HasPrefix(schema, "pg_temp_") {
		w.st.Temporary = append(w.st.Temporary, rv.Relname)
	}
}

// selectInto returns the INTO clause of SELECT ... INTO, which a set
// operation keeps in its leftmost branch; nil for other SELECTs.
func selectInto(s *pg.SelectStmt) *pg.IntoClause {
	for ; s != nil; s = s.Larg {
		if s.IntoClause != nil {
			return s.IntoClause
		}
	}
	return nil
}

// returnsRows reports whether a statement returns rows it reads: a SELECT,
// or a write with RETURNING.
func returnsRows(n *pg.Node) bool {
	switch s := n.GetNode().(type) {
	case *pg.Node_SelectStmt:
		return true
	case *pg.Node_InsertStmt:
		return len(s.InsertStmt.ReturningList) > 0
	case *pg.Node_UpdateStmt:
		return len(s.UpdateStmt.ReturningList) > 0
	case *pg.Node_DeleteStmt:
		return len(s.DeleteStmt.ReturningList) > 0
	}
	return false
}
