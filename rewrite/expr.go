package rewrite

import (
	pg "github.com/pganalyze/pg_query_go/v5"
	"google.golang.org/protobuf/reflect/protoreflect"
)

func (w *walker) exprs(list []*pg.Node, sc *scope) {
	for _, n := range list {
		w.expr(n, sc)
	}
}

// expr walks an expression at level sc. The common node types are handled
// directly; every other one is searched field by field (node), so that a
// subquery, a column or a function call is found wherever it sits.
func (w *walker) expr(n *pg.Node, sc *scope) {
	if n == nil {
		return
	}
	switch e := n.Node.(type) {
	case nil, *pg.Node_AConst, *pg.Node_ParamRef, *pg.Node_String_, *pg.Node_Integer,
		*pg.Node_Float, *pg.Node_Boolean, *pg.Node_BitString, *pg.Node_AStar,
		*pg.Node_SqlvalueFunction, *pg.Node_TypeName:
	case *pg.Node_ColumnRef:
		w.columnRef(e.ColumnRef, sc)
	case *pg.Node_AExpr:
		w.expr(e.AExpr.Lexpr, sc)
		w.expr(e.AExpr.Rexpr, sc)
	case *pg.Node_BoolExpr:
		w.exprs(e.BoolExpr.Args, sc)
	case *pg.Node_TypeCast:
		w.expr(e.TypeCast.Arg, sc)
	case *pg.Node_FuncCall:
		w.funcCall(e.FuncCall, sc)
	case *pg.Node_SubLink:
		w.expr(e.SubLink.Testexpr, sc)
		w.query(e.SubLink.Subselect, sc)
	case *pg.Node_List:
		w.exprs(e.List.Items, sc)
	case *pg.Node_ResTarget:
		w.exprs(e.ResTarget.Indirection, sc)
		w.expr(e.ResTarget.Val, sc)
	case *pg.Node_SortBy:
		w.expr(e.SortBy.Node, sc)
	case *pg.Node_NullTest:
		w.expr(e.NullTest.Arg, sc)
	case *pg.Node_BooleanTest:
		w.expr(e.BooleanTest.Arg, sc)
	case *pg.Node_CaseExpr:
		w.expr(e.CaseExpr.Arg, sc)
		w.exprs(e.CaseExpr.Args, sc)
		w.expr(e.CaseExpr.Defresult, sc)
	case *pg.Node_CaseWhen:
		w.expr(e.CaseWhen.Expr, sc)
		w.expr(e.CaseWhen.Result, sc)
	case *pg.Node_CoalesceExpr:
		w.exprs(e.CoalesceExpr.Args, sc)
	case *pg.Node_MinMaxExpr:
		w.exprs(e.MinMaxExpr.Args, sc)
	case *pg.Node_RowExpr:
		w.exprs(e.RowExpr.Args, sc)
	case *pg.Node_AArrayExpr:
		w.exprs(e.AArrayExpr.Elements, sc)
	case *pg.Node_AIndirection:
		w.expr(e.AIndirection.Arg, sc)
		w.exprs(e.AIndirection.Indirection, sc)
	case *pg.Node_AIndices:
		w.expr(e.AIndices.Lidx, sc)
		w.expr(e.AIndices.Uidx, sc)
	case *pg.Node_NamedArgExpr:
		w.expr(e.NamedArgExpr.Arg, sc)
	case *pg.Node_CollateClause:
		w.expr(e.CollateClause.Arg, sc)
	case *pg.Node_SelectStmt, *pg.Node_InsertStmt, *pg.Node_UpdateStmt,
		*pg.Node_DeleteStmt, *pg.Node_MergeStmt:
		w.query(n, sc)
	default:
		w.node(n, sc)
	}
}

// node searches every field of a node of any type.
func (w *walker) node(n *pg.Node, sc *scope) {
	m := n.ProtoReflect()
	fd := m.WhichOneof(m.Descriptor().Oneofs().Get(0))
	if fd == nil {
		return
	}
	w.message(m.Get(fd).Message(), sc)
}

// message walks the fields of a message that is not a Node.
func (w *walker) message(m protoreflect.Message, sc *scope) {
	switch v := m.Interface().(type) {
	case *pg.Node:
		w.expr(v, sc)
		return
	case *pg.RangeVar:
		access := Read
		if w.ddl {
			access = Write
		}
		w.relation(v, access)
		return
	case *pg.FuncCall:
		w.funcCall(v, sc)
		return
	case *pg.WithClause, *pg.IntoClause, *pg.OnConflictClause:
		// Only inside the statements walked above.
	}
	// Fields in declaration order: Range's order is undefined, and the
	// analysis must not vary from one run to the next.
	fields := m.Descriptor().Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		if fd.Kind() != protoreflect.MessageKind || fd.IsMap() || !m.Has(fd) {
			continue
		}
		if fd.IsList() {
			l := m.Get(fd).List()
			for j := 0; j < l.Len(); j++ {
				w.message(l.Get(j).Message(), sc)
			}
			continue
		}
		w.message(m.Get(fd).Message(), sc)
	}
}

// ddlNode walks a DDL message's fields generically.
func (w *walker) ddlNode(m interface{ ProtoReflect() protoreflect.Message }) {
	saved := w.ddl
	w.ddl = true
	w.message(m.ProtoReflect(), nil)
	w.ddl = saved
}

// columnRef records a column reference (c, t.c, s.t.c, *, t.*).
func (w *walker) columnRef(cr *pg.ColumnRef, sc *scope) {
	if w.ddl {
		return
	}
	names := make([]string, 0, len(cr.Fields))
	star := false
	for _, f := range cr.Fields {
		if f.GetAStar() != nil {
			star = true
			continue
		}
		names = append(names, stringValue(f))
	}
	switch {
	case star && len(names) == 0:
		if sc != nil {
			for _, it := range sc.items {
				w.starItem(it, Read)
			}
		}
	case star:
		w.qualified(names, "", true, sc)
	case len(names) == 1:
		w.columnName(names[0], sc, Read)
	case len(names) > 1:
		w.qualified(names[:len(names)-1], names[len(names)-1], false, sc)
	}
}

// qualified records q.col or q.*, where q names a FROM item (or is a
// composite column, as in (address).city written address.city).
func (w *walker) qualified(q []string, col string, star bool, sc *scope) {
	name, schema := q[len(q)-1], ""
	if len(q) > 1 {
		schema = q[len(q)-2]
	}
	it, ok := sc.lookup(schema, name)
	switch {
	case !ok:
		w.columnName(q[0], sc, Read)
	case star:
		w.starItem(it, Read)
	case it.rel >= 0:
		w.addColumn(Column{Relation: it.rel, Name: col, Access: Read})
	case len(it.members) > 0:
		w.addColumn(Column{Relation: -1, Name: col, Access: Read, Candidates: it.members})
	}
}

// starItem records every column of a FROM item.
func (w *walker) starItem(it item, access Access) {
	if it.rel >= 0 {
		w.addColumn(Column{Relation: it.rel, Star: true, Access: access})
	}
	for _, m := range it.members {
		w.addColumn(Column{Relation: m, Star: true, Access: access})
	}
}

// columnName records an unqualified column name.
func (w *walker) columnName(name string, sc *scope, access Access) {
	if name == "" || w.ddl {
		return
	}
	// A FROM item's name used as a value is a whole-row reference (or a
	// column of that name, which the star covers too).
	if it, ok := sc.lookup("", name); ok {
		w.starItem(it, access)
		return
	}
	rels, single := sc.visible()
	if single {
		w.addColumn(Column{Relation: rels[0], Name: name, Access: access})
		return
	}
	w.addColumn(Column{Relation: -1, Name: name, Access: access, Candidates: rels})
}

// funcCall walks a function call, looking out for the functions that change
// settings or run SQL text.
func (w *walker) funcCall(fc *pg.FuncCall, sc *scope) {
	if fc == nil {
		return
	}
	switch _, name := funcName(fc); {
	case name == "set_config":
		w.setConfig(fc)
	case sqlTextArgs[name] != nil:
		w.sqlTextCall(fc, name)
	case tableReaders[name]:
		w.tableReader(fc, name)
	case bulkReaders[name]:
		w.opaque(name + "() reads tables it does not name")
	}
	w.exprs(fc.Args, sc)
	w.exprs(fc.AggOrder, sc)
	w.expr(fc.AggFilter, sc)
	if fc.Over != nil {
		w.exprs(fc.Over.PartitionClause, sc)
		w.exprs(fc.Over.OrderClause, sc)
		w.expr(fc.Over.StartOffset, sc)
		w.expr(fc.Over.EndOffset, sc)
	}
}
