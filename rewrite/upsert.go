package rewrite

import (
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"
	pg "github.com/pganalyze/pg_query_go/v5"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/privata/privata/policy"
	"github.com/privata/privata/storage"
)

// An upsert on a split table T,
//
//	[WITH ...] INSERT INTO T [AS a] [(columns)] source
//	ON CONFLICT [target] DO UPDATE SET c = e, ... [WHERE w] [RETURNING r]
//
// becomes one statement over T's upsert views (storage/upsert.go):
//
//	WITH ..., privata_claim AS (
//	    INSERT INTO privata_access.T_upsert (privata_on_conflict, columns)
//	    source, with ARRAY['update', kind, target...] before each row
//	    RETURNING privata_conflict, privata_target, privata_old, privata_new
//	), privata_rows AS (...the claimed rows, numbered in order...),
//	privata_checked AS (...error 21000 when two rows reach one row...),
//	privata_applied AS (
//	    INSERT INTO privata_access.T_apply (privata_set, privata_old, privata_ord, c, ...)
//	    SELECT ARRAY['c', ...], k.privata_old, k.privata_ord, e, ...
//	      FROM privata_checked k, LATERAL (SELECT (k.privata_old).*) AS a,
//	           LATERAL (SELECT (k.privata_new).*) AS excluded
//	     WHERE k.privata_conflict AND (w) ORDER BY k.privata_ord
//	    RETURNING privata_ord, privata_result
//	)
//	INSERT INTO privata_access.T_echo AS a
//	SELECT (o.privata_result).* FROM (rows inserted UNION ALL rows updated) o
//	ORDER BY o.privata_ord
//	RETURNING r
//
// The source, the SET expressions, WHERE and RETURNING are the client's
// parse trees, grafted into a skeleton built from Privata's own names: the
// names a and excluded stand for the existing row and the proposed one as
// they do in the original, parameters keep their numbers and the types
// PostgreSQL infers for them, and the statement's command tag is INSERT 0
// n with n the rows inserted or updated. DO NOTHING needs only the first
// insert and the last.

// upsert rewrites an INSERT ... ON CONFLICT into split table t.
func (rw *rewriting) upsert(ins *pg.InsertStmt, t *policy.Table) (*pg.Node, *Error) {
	oc := ins.OnConflictClause
	update := oc.Action == pg.OnConflictAction_ONCONFLICT_UPDATE
	control, err := conflictControl(oc, update)
	if err != nil {
		return nil, err
	}
	alias := ins.Relation.Relname
	if ins.Relation.Alias != nil {
		alias = ins.Relation.Alias.Aliasname
	}
	var sets []assignment
	if update {
		if sets, err = assignments(oc.TargetList); err != nil {
			return nil, err
		}
	}

	tree, err := skeletonTree(t, alias, update)
	if err != nil {
		return nil, err
	}
	top := tree.Stmts[0].Stmt.GetInsertStmt()
	ctes := top.WithClause.Ctes
	claim := ctes[0].GetCommonTableExpr().Ctequery.GetInsertStmt()

	// The proposed rows, each with its conflict control first.
	ctrl := func() *pg.Node { return stringArray(control) }
	claim.Override = ins.Override
	switch {
	case ins.SelectStmt == nil: // DEFAULT VALUES
		claim.Cols = []*pg.Node{pg.MakeResTargetNodeWithName(storage.OnConflictColumn, -1)}
		claim.SelectStmt = &pg.Node{Node: &pg.Node_SelectStmt{SelectStmt: &pg.SelectStmt{
			ValuesLists: []*pg.Node{pg.MakeListNode([]*pg.Node{ctrl()})},
			LimitOption: pg.LimitOption_LIMIT_OPTION_DEFAULT, Op: pg.SetOperation_SETOP_NONE}}}
	default:
		if len(ins.Cols) > 0 {
			claim.Cols = append([]*pg.Node{pg.MakeResTargetNodeWithName(storage.OnConflictColumn, -1)},
				ins.Cols...)
		}
		sel := ins.SelectStmt.GetSelectStmt()
		if sel == nil {
			return nil, &Error{SQLState: CodeFeatureNotSupported,
				Message: "this form of INSERT ... ON CONFLICT is not supported on split tables"}
		}
		prependConstant(sel, ctrl)
		claim.SelectStmt = ins.SelectStmt
	}

	target := func(n *pg.Node) { qualifiedToAlias(n, ins.Relation, t, alias) }
	if update {
		apply := ctes[3].GetCommonTableExpr().Ctequery.GetInsertStmt()
		sel := apply.SelectStmt.GetSelectStmt()
		names := make([]string, len(sets))
		for i, s := range sets {
			names[i] = s.column
			target(s.value)
			apply.Cols = append(apply.Cols, pg.MakeResTargetNodeWithName(s.column, -1))
			sel.TargetList = append(sel.TargetList, pg.MakeResTargetNodeWithVal(s.value, -1))
		}
		sel.TargetList[0] = pg.MakeResTargetNodeWithVal(stringArray(names), -1)
		if oc.WhereClause != nil {
			target(oc.WhereClause)
			and := sel.WhereClause.GetBoolExpr()
			and.Args = append(and.Args, oc.WhereClause)
		}
	}

	for _, r := range ins.ReturningList {
		target(r)
	}
	top.ReturningList = ins.ReturningList
	if w := ins.WithClause; w != nil {
		for _, c := range w.Ctes {
			if name := c.GetCommonTableExpr().GetCtename(); slices.Contains(skeletonCTEs, name) {
				return nil, &Error{SQLState: CodeFeatureNotSupported, Message: fmt.Sprintf(
					"WITH query name %q is reserved for Privata in an upsert on a split table", name)}
			}
		}
		top.WithClause.Ctes = append(w.Ctes, top.WithClause.Ctes...)
		top.WithClause.Recursive = w.Recursive
	}
	return tree.Stmts[0].Stmt, nil
}

var skeletonCTEs = []string{"privata_claim", "privata_rows", "privata_checked", "privata_applied"}

// skeletons keeps parsed skeletons, encoded, by table, alias and action:
// decoding one costs less than parsing it again.
var skeletons = newLRU[[]byte](1000, 1<<20)

// skeletonTree returns a parse tree of upsertSkeleton of its own.
func skeletonTree(t *policy.Table, alias string, update bool) (*pg.ParseResult, *Error) {
	key := fmt.Sprintf("%s\x00%s\x00%t", t.QualifiedName(), alias, update)
	failed := &Error{SQLState: CodeInternalError, Message: "upsert skeleton does not parse"}
	enc, ok := skeletons.get(key)
	if !ok {
		tree, err := parse(upsertSkeleton(t, alias, update))
		if err != nil {
			return nil, failed
		}
		if enc, err = proto.Marshal(tree); err != nil {
			return nil, failed
		}
		skeletons.put(key, enc)
	}
	tree := &pg.ParseResult{}
	if err := proto.Unmarshal(enc, tree); err != nil {
		return nil, failed
	}
	return tree, nil
}

// upsertSkeleton is the statement an upsert on t becomes, before the
// client's parts are grafted in (see upsert). It is built from Privata's
// names and the target's alias, all quoted; DEFAULT VALUES, NULL and true
// mark where the grafts go.
func upsertSkeleton(t *policy.Table, alias string, update bool) string {
	upsert, apply, echo := storage.UpsertViews(t)
	q := func(name string) string { return pgIdent(name) }
	v := func(name string) string { return pgIdent(storage.AccessSchema) + "." + pgIdent(name) }
	a := q(alias)
	claim := fmt.Sprintf(`privata_claim AS (
    INSERT INTO %s DEFAULT VALUES
    RETURNING %s, %s, %s, %s)`, v(upsert), q(storage.ConflictColumn), q(storage.TargetColumn),
		q(storage.OldColumn), q(storage.NewColumn))
	if !update {
		return fmt.Sprintf(`WITH %s
INSERT INTO %s AS %s
SELECT (c.%s).* FROM privata_claim c WHERE NOT c.%s`, claim, v(echo), a, q(storage.NewColumn),
			q(storage.ConflictColumn))
	}
	return fmt.Sprintf(`WITH %[1]s,
privata_rows AS (
    SELECT pg_catalog.row_number() OVER () AS %[2]s, c.* FROM privata_claim c),
privata_checked AS (
    SELECT r.*, CASE WHEN r.%[3]s IS NOT NULL AND pg_catalog.count(*) OVER (PARTITION BY r.%[3]s) > 1
        THEN privata.upsert_twice() END AS privata_check
      FROM privata_rows r),
privata_applied AS (
    INSERT INTO %[4]s (%[5]s, %[6]s, %[2]s)
    SELECT NULL, k.%[6]s, k.%[2]s
      FROM privata_checked k, LATERAL (SELECT (k.%[6]s).*) AS %[7]s,
           LATERAL (SELECT (k.%[8]s).*) AS excluded
     WHERE k.%[9]s AND k.privata_check IS NULL
     ORDER BY k.%[2]s
    RETURNING %[2]s, %[10]s)
INSERT INTO %[11]s AS %[7]s
SELECT (o.%[10]s).*
  FROM (SELECT %[2]s, %[8]s FROM privata_checked WHERE NOT %[9]s
        UNION ALL SELECT %[2]s, %[10]s FROM privata_applied) AS o (%[2]s, %[10]s)
 ORDER BY o.%[2]s`, claim, q(storage.OrdColumn), q(storage.TargetColumn), v(apply),
		q(storage.SetColumn), q(storage.OldColumn), a, q(storage.NewColumn), q(storage.ConflictColumn),
		q(storage.ResultColumn), v(echo))
}

// conflictControl is the privata_on_conflict value of an ON CONFLICT
// clause: {action, kind, names...} (see storage.OnConflictColumn).
func conflictControl(oc *pg.OnConflictClause, update bool) ([]string, *Error) {
	action := storage.ActionNothing
	if update {
		action = storage.ActionUpdate
	}
	inf := oc.Infer
	switch {
	case inf == nil && update:
		return nil, &Error{SQLState: CodeSyntaxError,
			Message: "ON CONFLICT DO UPDATE requires inference specification or constraint name",
			Hint:    "For example, ON CONFLICT (column_name)."}
	case inf == nil:
		return []string{action, storage.ConflictAny}, nil
	case inf.Conname != "":
		return []string{action, storage.ConflictConstraint, inf.Conname}, nil
	}
	var cols []string
	for _, n := range inf.IndexElems {
		e := n.GetIndexElem()
		if e == nil || e.Name == "" || len(e.Collation) > 0 || len(e.Opclass) > 0 {
			return nil, &Error{SQLState: CodeFeatureNotSupported,
				Message: "a conflict target other than columns or a constraint is not supported on " +
					"split tables (an expression, a collation or an operator class)",
				Hint: "Name the columns of a unique constraint or index, or the constraint."}
		}
		if !slices.Contains(cols, e.Name) {
			cols = append(cols, e.Name)
		}
	}
	slices.Sort(cols)
	kind := storage.ConflictColumns
	if inf.WhereClause != nil {
		kind = storage.ConflictColumnsWhere
	}
	return append([]string{action, kind}, cols...), nil
}

// assignment is one column that DO UPDATE SET assigns.
type assignment struct {
	column string
	value  *pg.Node
}

// assignments reads a DO UPDATE SET list: c = e, and (a, b) = (e1, e2).
func assignments(list []*pg.Node) ([]assignment, *Error) {
	var out []assignment
	for _, n := range list {
		rt := n.GetResTarget()
		if rt == nil {
			continue
		}
		if len(rt.Indirection) > 0 {
			return nil, unsupportedSet("assigning to an element or a field of a column")
		}
		val := rt.Val
		if m := val.GetMultiAssignRef(); m != nil {
			row := m.Source.GetRowExpr()
			if row == nil || len(row.Args) != int(m.Ncolumns) || m.Colno < 1 ||
				int(m.Colno) > len(row.Args) {
				return nil, unsupportedSet("assigning several columns from a subquery")
			}
			val = row.Args[m.Colno-1]
		}
		if val.GetSetToDefault() != nil {
			return nil, unsupportedSet("SET column = DEFAULT")
		}
		out = append(out, assignment{column: rt.Name, value: val})
	}
	return out, nil
}

func unsupportedSet(what string) *Error {
	return &Error{SQLState: CodeFeatureNotSupported,
		Message: "in ON CONFLICT DO UPDATE on a split table, " + what + " is not supported",
		Hint:    "Assign each column an expression of its own."}
}

// stringArray is ARRAY['a', 'b', ...] of constants.
func stringArray(ss []string) *pg.Node {
	elems := make([]*pg.Node, len(ss))
	for i, s := range ss {
		elems[i] = pg.MakeAConstStrNode(s, -1)
	}
	return &pg.Node{Node: &pg.Node_AArrayExpr{AArrayExpr: &pg.A_ArrayExpr{Elements: elems,
		Location: -1}}}
}

// prependConstant puts a constant before the values of each row a source
// query gives: in each VALUES row, or first in the target list of each
// SELECT of a set operation. ORDER BY, GROUP BY and DISTINCT ON items that
// name an output column by its position move up by one.
func prependConstant(sel *pg.SelectStmt, val func() *pg.Node) {
	if sel == nil {
		return
	}
	shiftPositions(sel.SortClause)
	if sel.Op != pg.SetOperation_SETOP_NONE {
		prependConstant(sel.Larg, val)
		prependConstant(sel.Rarg, val)
		return
	}
	if len(sel.ValuesLists) > 0 {
		for _, n := range sel.ValuesLists {
			if l := n.GetList(); l != nil {
				l.Items = append([]*pg.Node{val()}, l.Items...)
			}
		}
		return
	}
	sel.TargetList = append([]*pg.Node{pg.MakeResTargetNodeWithVal(val(), -1)}, sel.TargetList...)
	shiftPositions(sel.GroupClause)
	shiftPositions(sel.DistinctClause)
}

// shiftPositions adds one to the integer constants that stand for output
// positions in ORDER BY, GROUP BY (and grouping sets) or DISTINCT ON.
func shiftPositions(items []*pg.Node) {
	for _, n := range items {
		if n == nil {
			continue
		}
		switch x := n.Node.(type) {
		case *pg.Node_SortBy:
			shiftPositions([]*pg.Node{x.SortBy.Node})
		case *pg.Node_GroupingSet:
			shiftPositions(x.GroupingSet.Content)
		case *pg.Node_List:
			shiftPositions(x.List.Items)
		case *pg.Node_AConst:
			if iv, ok := x.AConst.Val.(*pg.A_Const_Ival); ok && !x.AConst.Isnull {
				iv.Ival.Ival++
			}
		}
	}
}

// qualifiedToAlias rewrites, in the expression n, column references that
// name the target with its schema (public.patients.ssn) to name its alias,
// which the rewritten statement gives the existing and the new row.
func qualifiedToAlias(n *pg.Node, rv *pg.RangeVar, t *policy.Table, alias string) {
	if n == nil {
		return
	}
	visit(n.ProtoReflect(), func(m protoreflect.Message) {
		cr, ok := m.Interface().(*pg.ColumnRef)
		if !ok || len(cr.Fields) < 3 {
			return
		}
		k := len(cr.Fields)
		schema, rel := stringValue(cr.Fields[k-3]), stringValue(cr.Fields[k-2])
		if rel == rv.Relname && (schema == rv.Schemaname || rv.Schemaname == "" && schema == t.Schema) {
			cr.Fields = []*pg.Node{pg.MakeStrNode(alias), cr.Fields[k-1]}
		}
	})
}

// visit calls f on every message of a parse tree.
func visit(m protoreflect.Message, f func(protoreflect.Message)) {
	f(m)
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.Kind() != protoreflect.MessageKind || fd.IsMap():
		case fd.IsList():
			for i := 0; i < v.List().Len(); i++ {
				visit(v.List().Get(i).Message(), f)
			}
		default:
			visit(v.Message(), f)
		}
		return true
	})
}

// pgIdent quotes an identifier.
func pgIdent(name string) string { return pgx.Identifier{name}.Sanitize() }
