package rewrite

import (
	"strconv"
	"strings"

	pg "github.com/pganalyze/pg_query_go/v5"
)

// Hints is what one statement's text says about the rows it writes and the
// subjects it reads, for routing (package regions): the values an INSERT
// writes, the column = value conditions a WHERE clause requires, the
// values an UPDATE assigns. Values are constants or parameters; anything
// else is Unknown.
type Hints struct {
	// Command is INSERT, UPDATE, DELETE, SELECT, COPY FROM, COPY TO, a
	// transaction control statement (BEGIN, COMMIT, ROLLBACK, SAVEPOINT,
	// RELEASE, ROLLBACK TO, PREPARE TRANSACTION, COMMIT PREPARED, ROLLBACK
	// PREPARED), or "" for any other statement (which has no hints).
	Command string
	// Target is the relation an INSERT, UPDATE, DELETE or COPY writes or
	// reads; nil for a SELECT and for COPY (query) TO.
	Target *Relation
	// From are the plain relations of a SELECT's top-level FROM clause
	// (joined ones included), or of an UPDATE's or DELETE's FROM or USING.
	From []Relation
	// Columns are an INSERT's or COPY's column list; nil when it has none
	// (every column of the table, in order).
	Columns []string
	// Rows are the rows of INSERT ... VALUES, one Value per column.
	Rows [][]Value
	// FromQuery is set for INSERT ... SELECT and INSERT ... DEFAULT
	// VALUES, whose values the text does not show.
	FromQuery bool
	// Equal are the conditions column = value, or column IN (values...),
	// that the WHERE clause requires (its top-level AND terms).
	Equal []Equality
	// OnlyEqual is set when the WHERE clause is nothing but the
	// conditions in Equal.
	OnlyEqual bool
	// Set are an UPDATE's assignments, by column.
	Set map[string]Value
	// Returning is set when an INSERT, UPDATE or DELETE returns rows.
	Returning bool
	// CopyOptions are a COPY's options (format, delimiter, null, header,
	// quote, escape, ...), names in lower case, values as written.
	CopyOptions map[string]string
}

// Equality is a condition column = value (or IN values) on a relation.
type Equality struct {
	// Relation is the relation the column belongs to, as the statement
	// names it (an alias resolved to its relation); nil when the text
	// does not say which.
	Relation *Relation
	Column   string
	Values   []Value
}

// Value is a value a statement writes or compares with.
type Value struct {
	// Param is the 1-based number of the parameter ($n) that holds the
	// value; 0 otherwise.
	Param int
	// Const is a constant's text (as PostgreSQL would read it as text);
	// Null a NULL constant.
	Const string
	Null  bool
	// Default is DEFAULT in a VALUES list.
	Default bool
	// Unknown is set for an expression Privata does not evaluate.
	Unknown bool
}

// IsConst reports whether v is a constant (or NULL).
func (v Value) IsConst() bool { return !v.Unknown && !v.Default && v.Param == 0 }

// RouteHints parses a statement text and returns the hints of each of its
// statements. Texts are guarded as Analyze guards them; the error is an
// *Error. The result depends on the text's constants: callers may cache it
// by exact text.
func RouteHints(text string) ([]*Hints, error) {
	opt := options{maxBytes: DefaultMaxTextBytes, maxDepth: DefaultMaxDepth}
	if _, err := guard(text, &opt); err != nil {
		return nil, err
	}
	tree, err := parse(text)
	if err != nil {
		return nil, parserError(err)
	}
	out := make([]*Hints, 0, len(tree.Stmts))
	for _, raw := range tree.Stmts {
		out = append(out, hintsOf(raw.Stmt))
	}
	return out, nil
}

func hintsOf(n *pg.Node) *Hints {
	h := &Hints{}
	switch s := n.GetNode().(type) {
	case *pg.Node_InsertStmt:
		h.insert(s.InsertStmt)
	case *pg.Node_UpdateStmt:
		u := s.UpdateStmt
		h.Command, h.Target = "UPDATE", rangeVar(u.Relation)
		h.Returning = len(u.ReturningList) > 0
		h.Set = map[string]Value{}
		for _, t := range u.TargetList {
			if rt := t.GetResTarget(); rt != nil && len(rt.Indirection) == 0 {
				h.Set[rt.Name] = valueOf(rt.Val)
			}
		}
		h.From = fromRelations(u.FromClause)
		h.where(u.WhereClause, u.Relation)
	case *pg.Node_DeleteStmt:
		d := s.DeleteStmt
		h.Command, h.Target = "DELETE", rangeVar(d.Relation)
		h.Returning = len(d.ReturningList) > 0
		h.From = fromRelations(d.UsingClause)
		h.where(d.WhereClause, d.Relation)
	case *pg.Node_SelectStmt:
		sel := s.SelectStmt
		h.Command = "SELECT"
		if sel.Op != pg.SetOperation_SETOP_NONE {
			return h
		}
		h.From = fromRelations(sel.FromClause)
		h.where(sel.WhereClause, nil)
	case *pg.Node_CopyStmt:
		h.copy(s.CopyStmt)
	case *pg.Node_TransactionStmt:
		h.Command = transactionCommands[s.TransactionStmt.Kind]
	}
	return h
}

// transactionCommands name transaction control statements in Hints.
var transactionCommands = map[pg.TransactionStmtKind]string{
	pg.TransactionStmtKind_TRANS_STMT_BEGIN:             "BEGIN",
	pg.TransactionStmtKind_TRANS_STMT_START:             "BEGIN",
	pg.TransactionStmtKind_TRANS_STMT_COMMIT:            "COMMIT",
	pg.TransactionStmtKind_TRANS_STMT_ROLLBACK:          "ROLLBACK",
	pg.TransactionStmtKind_TRANS_STMT_SAVEPOINT:         "SAVEPOINT",
	pg.TransactionStmtKind_TRANS_STMT_RELEASE:           "RELEASE",
	pg.TransactionStmtKind_TRANS_STMT_ROLLBACK_TO:       "ROLLBACK TO",
	pg.TransactionStmtKind_TRANS_STMT_PREPARE:           "PREPARE TRANSACTION",
	pg.TransactionStmtKind_TRANS_STMT_COMMIT_PREPARED:   "COMMIT PREPARED",
	pg.TransactionStmtKind_TRANS_STMT_ROLLBACK_PREPARED: "ROLLBACK PREPARED",
}

func (h *Hints) insert(ins *pg.InsertStmt) {
	h.Command, h.Target = "INSERT", rangeVar(ins.Relation)
	h.Returning = len(ins.ReturningList) > 0
	for _, c := range ins.Cols {
		if rt := c.GetResTarget(); rt != nil {
			h.Columns = append(h.Columns, rt.Name)
		}
	}
	sel := ins.SelectStmt.GetSelectStmt()
	if sel == nil || len(sel.ValuesLists) == 0 || ins.WithClause != nil {
		h.FromQuery = true
		return
	}
	for _, l := range sel.ValuesLists {
		var row []Value
		for _, item := range l.GetList().GetItems() {
			row = append(row, valueOf(item))
		}
		h.Rows = append(h.Rows, row)
	}
}

func (h *Hints) copy(c *pg.CopyStmt) {
	h.Command = "COPY TO"
	if c.IsFrom {
		h.Command = "COPY FROM"
	}
	h.Target = rangeVar(c.Relation)
	for _, a := range c.Attlist {
		if s := a.GetString_(); s != nil {
			h.Columns = append(h.Columns, s.Sval)
		}
	}
	h.CopyOptions = map[string]string{}
	for _, o := range c.Options {
		d := o.GetDefElem()
		if d == nil {
			continue
		}
		v := ""
		switch a := d.Arg.GetNode().(type) {
		case *pg.Node_String_:
			v = a.String_.Sval
		case *pg.Node_Integer:
			v = strconv.Itoa(int(a.Integer.Ival))
		case *pg.Node_Boolean:
			v = strconv.FormatBool(a.Boolean.Boolval)
		case *pg.Node_AStar:
			v = "*"
		}
		h.CopyOptions[strings.ToLower(d.Defname)] = v
	}
}

func rangeVar(rv *pg.RangeVar) *Relation {
	if rv == nil {
		return nil
	}
	return &Relation{Schema: rv.Schemaname, Name: rv.Relname, Alias: rv.GetAlias().GetAliasname()}
}

// fromRelations returns the plain relations of a FROM list, through joins.
func fromRelations(list []*pg.Node) []Relation {
	var out []Relation
	var walk func(n *pg.Node)
	walk = func(n *pg.Node) {
		switch f := n.GetNode().(type) {
		case *pg.Node_RangeVar:
			out = append(out, *rangeVar(f.RangeVar))
		case *pg.Node_JoinExpr:
			walk(f.JoinExpr.Larg)
			walk(f.JoinExpr.Rarg)
		}
	}
	for _, n := range list {
		walk(n)
	}
	return out
}

// where collects the equalities of a WHERE clause's top-level AND terms.
// target is an UPDATE's or DELETE's relation (in scope besides From).
func (h *Hints) where(n *pg.Node, target *pg.RangeVar) {
	scope := h.From
	if target != nil {
		scope = append([]Relation{*rangeVar(target)}, scope...)
	}
	h.OnlyEqual = n != nil
	var terms func(n *pg.Node)
	terms = func(n *pg.Node) {
		switch e := n.GetNode().(type) {
		case *pg.Node_BoolExpr:
			if e.BoolExpr.Boolop == pg.BoolExprType_AND_EXPR {
				for _, a := range e.BoolExpr.Args {
					terms(a)
				}
				return
			}
		case *pg.Node_AExpr:
			if eq, ok := equality(e.AExpr, scope); ok {
				h.Equal = append(h.Equal, eq)
				return
			}
		}
		h.OnlyEqual = false
	}
	terms(n)
}

// equality reads col = value, value = col and col IN (values).
func equality(e *pg.A_Expr, scope []Relation) (Equality, bool) {
	op := ""
	if len(e.Name) == 1 {
		op = e.Name[0].GetString_().GetSval()
	}
	switch {
	case e.Kind == pg.A_Expr_Kind_AEXPR_OP && op == "=":
		col, val := e.Lexpr.GetColumnRef(), e.Rexpr
		if col == nil {
			col, val = e.Rexpr.GetColumnRef(), e.Lexpr
		}
		v := valueOf(val)
		if col == nil || v.Unknown || v.Default {
			return Equality{}, false
		}
		return column(col, scope, []Value{v})
	case e.Kind == pg.A_Expr_Kind_AEXPR_IN && op == "=":
		col := e.Lexpr.GetColumnRef()
		items := e.Rexpr.GetList().GetItems()
		if col == nil || len(items) == 0 {
			return Equality{}, false
		}
		var vals []Value
		for _, it := range items {
			v := valueOf(it)
			if v.Unknown {
				return Equality{}, false
			}
			vals = append(vals, v)
		}
		return column(col, scope, vals)
	}
	return Equality{}, false
}

// column resolves a column reference against the relations in scope.
func column(cr *pg.ColumnRef, scope []Relation, vals []Value) (Equality, bool) {
	var names []string
	for _, f := range cr.Fields {
		s := f.GetString_()
		if s == nil {
			return Equality{}, false // a star
		}
		names = append(names, s.Sval)
	}
	eq := Equality{Column: names[len(names)-1], Values: vals}
	switch len(names) {
	case 1:
		if len(scope) == 1 {
			eq.Relation = &scope[0]
		}
	case 2, 3:
		qual := names[len(names)-2]
		for i := range scope {
			r := &scope[i]
			if r.Alias == qual || r.Alias == "" && r.Name == qual {
				eq.Relation = r
				break
			}
		}
		if eq.Relation == nil {
			return Equality{}, false
		}
	default:
		return Equality{}, false
	}
	return eq, true
}

// valueOf reads a constant, a parameter or DEFAULT, through casts.
func valueOf(n *pg.Node) Value {
	switch e := n.GetNode().(type) {
	case *pg.Node_AConst:
		c := e.AConst
		switch {
		case c.Isnull:
			return Value{Null: true}
		case c.GetSval() != nil:
			return Value{Const: c.GetSval().Sval}
		case c.GetIval() != nil:
			return Value{Const: strconv.Itoa(int(c.GetIval().Ival))}
		case c.GetFval() != nil:
			return Value{Const: c.GetFval().Fval}
		case c.GetBoolval() != nil:
			return Value{Const: strconv.FormatBool(c.GetBoolval().Boolval)}
		}
	case *pg.Node_TypeCast:
		return valueOf(e.TypeCast.Arg)
	case *pg.Node_ParamRef:
		return Value{Param: int(e.ParamRef.Number)}
	case *pg.Node_SetToDefault:
		return Value{Default: true}
	}
	return Value{Unknown: true}
}
