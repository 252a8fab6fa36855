package rewrite

import (
	"errors"
	"strings"

	pg "github.com/pganalyze/pg_query_go/v5"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// ReadShape is what the proxy's read path needs to know of a statement's
// result: whether its rows are rows of the relations in its top-level FROM
// list, one per relation (attributable to those rows' data subjects), and
// where columns can be appended to its select list. It depends only on the
// statement's tokens and tree, never on the policy or the session.
type ReadShape struct {
	// NotAttributable says why the rows the statement returns are not rows
	// of relations in its FROM list ("" when they are): "not a SELECT",
	// "set operation", "DISTINCT", "GROUP BY", "HAVING", "aggregate",
	// "VALUES", "TABLE command", "no FROM list".
	NotAttributable string
	// From lists the relations of the top-level FROM list, outside
	// subqueries and joins that carry an alias: each result row holds at
	// most one row of each. Ref is the name that qualifies their columns.
	From []FromRef
	// Calls are the functions called at the top query level (select list,
	// ORDER BY), outside subqueries and window functions: lower-case,
	// unqualified names. PostgreSQL's own aggregates among them make the
	// statement an aggregate here; the caller treats those that are
	// aggregates of its database (CREATE AGGREGATE) the same way.
	Calls []string
	// Pure is set when nothing makes the answer depend on more than the
	// rows of the FROM relations, the constants and the parameters: no
	// function call, subquery, locking clause, CTE or special value such as
	// CURRENT_TIMESTAMP.
	Pure bool
	// Point is set for a pure point read: one relation and a WHERE clause
	// that is an equality of PointColumn with a constant or a parameter,
	// alone or ANDed with other conditions.
	Point       bool
	PointColumn string

	// at is the ordinal, among the statement's tokens without comments, of
	// the FROM keyword that ends the select list; empty is set when the
	// select list is empty.
	at    int
	empty bool
}

// FromRef is a relation of a statement's top-level FROM list.
type FromRef struct {
	Schema string // "" when the name is unqualified
	Name   string
	// Ref is the alias, or "" when there is none: columns are then
	// qualified by the relation's name as written (schema included).
	Ref string
}

// QualifiedColumn returns the reference to column col of the relation,
// identifiers quoted.
func (f FromRef) QualifiedColumn(col string) string {
	if f.Ref != "" {
		return quoteIdent(f.Ref) + "." + quoteIdent(col)
	}
	if f.Schema != "" {
		return quoteIdent(f.Schema) + "." + quoteIdent(f.Name) + "." + quoteIdent(col)
	}
	return quoteIdent(f.Name) + "." + quoteIdent(col)
}

func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// Shaper computes ReadShapes and keeps them in an LRU keyed by the
// statement's shape (its tokens with constants replaced by their class, see
// fastpath.go) or, for texts the lexer does not model exactly, its exact
// text: texts that differ only in constants share an entry and are parsed
// once. It is safe for concurrent use.
type Shaper struct {
	cache *lru[*ReadShape]
}

// NewShaper returns a Shaper that keeps up to entries shapes.
func NewShaper(entries int) *Shaper {
	return &Shaper{cache: newLRU[*ReadShape](entries, DefaultCacheBytes)}
}

// Shape returns the read shape of statement st of text (st must come from
// the analysis of text).
func (s *Shaper) Shape(text string, st *Statement) (*ReadShape, error) {
	span, err := stmtText(text, st)
	if err != nil {
		return nil, err
	}
	if st.Kind != Select {
		return &ReadShape{NotAttributable: "not a SELECT"}, nil
	}
	l := lex(span)
	key := ""
	if len(span) <= maxCachedText {
		if k := shapeKey(l); k != "" {
			key = "s" + k
		} else {
			key = "t" + span
		}
	}
	if key != "" {
		if sh, ok := s.cache.get(key); ok {
			return sh, nil
		}
	}
	tree, perr := parse(span)
	if perr != nil {
		return nil, parserError(perr)
	}
	if len(tree.Stmts) != 1 {
		return nil, errors.New("read shape: the span holds more than one statement")
	}
	sh := readShape(tree.Stmts[0].Stmt, l)
	if key != "" {
		s.cache.put(key, sh)
	}
	return sh, nil
}

func stmtText(text string, st *Statement) (string, error) {
	if st.Location < 0 || st.Length < 0 || st.Location+st.Length > len(text) {
		return "", errors.New("read shape: the statement's span is outside the text")
	}
	return text[st.Location : st.Location+st.Length], nil
}

// readShape examines a parsed statement whose tokens are l.
func readShape(n *pg.Node, l *lexer) *ReadShape {
	sel := n.GetSelectStmt()
	switch {
	case sel == nil:
		return &ReadShape{NotAttributable: "not a SELECT"}
	case sel.Op != pg.SetOperation_SETOP_NONE && sel.Op != pg.SetOperation_SET_OPERATION_UNDEFINED:
		return &ReadShape{NotAttributable: "set operation"}
	case len(sel.ValuesLists) > 0:
		return &ReadShape{NotAttributable: "VALUES"}
	case sel.IntoClause != nil:
		return &ReadShape{NotAttributable: "not a SELECT"}
	case len(sel.DistinctClause) > 0:
		return &ReadShape{NotAttributable: "DISTINCT"}
	case len(sel.GroupClause) > 0:
		return &ReadShape{NotAttributable: "GROUP BY"}
	case sel.HavingClause != nil:
		return &ReadShape{NotAttributable: "HAVING"}
	case len(sel.FromClause) == 0:
		return &ReadShape{NotAttributable: "no FROM list"}
	}
	sh := &ReadShape{empty: len(sel.TargetList) == 0}
	for _, f := range sel.FromClause {
		sh.From = appendFrom(sh.From, f)
	}
	calls := &callScan{}
	for _, list := range [][]*pg.Node{sel.TargetList, sel.SortClause} {
		for _, t := range list {
			calls.walk(t.ProtoReflect())
		}
	}
	if calls.aggregate {
		return &ReadShape{NotAttributable: "aggregate"}
	}
	sh.Calls = calls.names
	at, ok := fromToken(l)
	if !ok {
		return &ReadShape{NotAttributable: "TABLE command"}
	}
	sh.at = at
	sh.Pure = len(sel.LockingClause) == 0 && sel.WithClause == nil && len(sel.WindowClause) == 0 &&
		pure(sel.ProtoReflect(), true)
	if sh.Pure {
		sh.PointColumn = pointColumn(sel)
		sh.Point = sh.PointColumn != ""
	}
	return sh
}

// appendFrom adds the relations of a FROM item that the select list can
// name: plain relations, and those inside joins without an alias.
func appendFrom(out []FromRef, n *pg.Node) []FromRef {
	switch {
	case n.GetRangeVar() != nil:
		rv := n.GetRangeVar()
		ref := FromRef{Schema: rv.Schemaname, Name: rv.Relname}
		if rv.Alias != nil {
			if len(rv.Alias.Colnames) > 0 {
				return out // its columns go by other names
			}
			ref.Ref = rv.Alias.Aliasname
		}
		return append(out, ref)
	case n.GetJoinExpr() != nil:
		j := n.GetJoinExpr()
		if j.Alias != nil {
			return out
		}
		return appendFrom(appendFrom(out, j.Larg), j.Rarg)
	}
	return out
}

// callScan collects the functions called at one query level.
type callScan struct {
	names     []string
	aggregate bool
}

func (c *callScan) walk(m protoreflect.Message) {
	switch v := m.Interface().(type) {
	case *pg.SubLink, *pg.RangeSubselect:
		return
	case *pg.GroupingFunc:
		c.aggregate = true
		return
	case *pg.FuncCall:
		if v.Over == nil {
			if v.AggStar || v.AggDistinct || len(v.AggOrder) > 0 || v.AggFilter != nil ||
				v.AggWithinGroup {
				c.aggregate = true
			}
			if len(v.Funcname) > 0 {
				name := strings.ToLower(v.Funcname[len(v.Funcname)-1].GetString_().GetSval())
				if builtinAggregates[name] {
					c.aggregate = true
				}
				c.names = append(c.names, name)
			}
		}
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.Kind() != protoreflect.MessageKind || fd.IsMap():
		case fd.IsList():
			for i := 0; i < v.List().Len(); i++ {
				c.walk(v.List().Get(i).Message())
			}
		default:
			c.walk(v.Message())
		}
		return true
	})
}

// builtinAggregates are PostgreSQL 15's aggregate functions (pg_proc rows
// with prokind 'a'): a call of one of these names (not windowed) makes a
// statement an aggregate whatever its arguments.
var builtinAggregates = func() map[string]bool {
	m := map[string]bool{}
	for _, name := range strings.Fields(`array_agg any_value avg bit_and bit_or bit_xor
		bool_and bool_or corr count covar_pop covar_samp cume_dist dense_rank every json_agg
		json_object_agg jsonb_agg jsonb_object_agg max min mode percent_rank percentile_cont
		percentile_disc range_agg range_intersect_agg rank regr_avgx regr_avgy regr_count
		regr_intercept regr_r2 regr_slope regr_sxx regr_sxy regr_syy stddev stddev_pop
		stddev_samp string_agg sum var_pop var_samp variance xmlagg`) {
		m[name] = true
	}
	return m
}()

// fromToken finds the FROM keyword that ends a SELECT's select list: the
// first FROM outside brackets that is not part of IS [NOT] DISTINCT FROM.
// It returns its ordinal among the tokens that are not comments.
func fromToken(l *lexer) (int, bool) {
	depth, i := 0, 0
	var prev token
	for _, t := range l.toks {
		if t.kind == tComment {
			continue
		}
		switch {
		case t.kind == tPunct && (l.text[t.start] == '(' || l.text[t.start] == '['):
			depth++
		case t.kind == tPunct && (l.text[t.start] == ')' || l.text[t.start] == ']'):
			depth--
		case depth == 0 && l.isKeyword(t, "from") && !l.isKeyword(prev, "distinct"):
			return i, true
		}
		prev = t
		i++
	}
	return 0, false
}

// pointColumn returns the column a pure SELECT of one relation reads by
// equality, or "".
func pointColumn(sel *pg.SelectStmt) string {
	if len(sel.FromClause) != 1 || sel.FromClause[0].GetRangeVar() == nil ||
		sel.WhereClause == nil {
		return ""
	}
	return pointEquality(sel.WhereClause)
}

// pointEquality returns the column that a WHERE clause compares for equality
// with a constant or parameter, at its top or in a top-level AND.
func pointEquality(n *pg.Node) string {
	if b := n.GetBoolExpr(); b != nil {
		if b.Boolop != pg.BoolExprType_AND_EXPR {
			return ""
		}
		for _, a := range b.Args {
			if c := pointEquality(a); c != "" {
				return c
			}
		}
		return ""
	}
	e := n.GetAExpr()
	if e == nil || e.Kind != pg.A_Expr_Kind_AEXPR_OP || len(e.Name) != 1 ||
		e.Name[0].GetString_().GetSval() != "=" {
		return ""
	}
	for _, side := range [][2]*pg.Node{{e.Lexpr, e.Rexpr}, {e.Rexpr, e.Lexpr}} {
		if c := columnName(side[0]); c != "" && isValue(side[1]) {
			return c
		}
	}
	return ""
}

// columnName returns the column a (possibly qualified) column reference
// names, or "".
func columnName(n *pg.Node) string {
	cr := n.GetColumnRef()
	if cr == nil || len(cr.Fields) == 0 || len(cr.Fields) > 3 {
		return ""
	}
	return cr.Fields[len(cr.Fields)-1].GetString_().GetSval()
}

// isValue reports whether n is a constant or a parameter, possibly cast.
func isValue(n *pg.Node) bool {
	if tc := n.GetTypeCast(); tc != nil {
		return isValue(tc.Arg)
	}
	return n.GetAConst() != nil || n.GetParamRef() != nil
}

// pure reports whether a tree holds only nodes whose value depends on the
// row and the statement's constants and parameters: no function call, no
// subquery, no special value such as CURRENT_TIMESTAMP or CURRENT_USER.
func pure(m protoreflect.Message, top bool) bool {
	switch m.Interface().(type) {
	case *pg.FuncCall, *pg.SubLink, *pg.RangeSubselect, *pg.RangeFunction, *pg.SQLValueFunction,
		*pg.CoalesceExpr, *pg.MinMaxExpr, *pg.XmlExpr, *pg.XmlSerialize, *pg.GroupingFunc,
		*pg.CollateClause, *pg.RowExpr, *pg.A_ArrayExpr, *pg.MultiAssignRef, *pg.WithClause:
		// Coalesce, GREATEST and friends, COLLATE, ROW() and ARRAY[] are
		// pure, but the point reads a cache serves have no need of them.
		return false
	case *pg.SelectStmt:
		if !top {
			return false
		}
	}
	ok := true
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.Kind() != protoreflect.MessageKind || fd.IsMap():
		case fd.IsList():
			for i := 0; i < v.List().Len() && ok; i++ {
				ok = pure(v.List().Get(i).Message(), false)
			}
		default:
			ok = pure(v.Message(), false)
		}
		return ok
	})
	return ok
}

// AppendTargets returns the text of statement st of text with exprs
// appended to its select list, each under its own alias. The shape must be
// st's, with NotAttributable empty. The expressions are Privata's own SQL;
// nothing of the statement is copied into them.
func (sh *ReadShape) AppendTargets(text string, st *Statement, exprs []string,
	aliases []string) (string, error) {
	return sh.AppendTargetsIn(text, st, exprs, aliases, "")
}

// AppendTargetsIn is AppendTargets that also puts schema before the name
// of the FROM list's first relation when the text leaves it unqualified,
// so that PostgreSQL reads the table Privata resolved the name to and not
// one the session's temporary schema or search path puts first. A shape
// with more than one FROM item is returned unqualified with an error.
func (sh *ReadShape) AppendTargetsIn(text string, st *Statement, exprs []string,
	aliases []string, schema string) (string, error) {
	if schema != "" && len(sh.From) != 1 {
		return "", errors.New("append targets: only a single FROM item is qualified")
	}
	span, err := stmtText(text, st)
	if err != nil {
		return "", err
	}
	if sh.NotAttributable != "" || len(exprs) != len(aliases) {
		return "", errors.New("append targets: the statement's rows are not attributable")
	}
	l := lex(span)
	var code []token // the tokens that are not comments
	for _, t := range l.toks {
		if t.kind != tComment {
			code = append(code, t)
		}
	}
	if sh.at < len(code) && l.isKeyword(code[sh.at], "from") {
		from := code[sh.at]
		// Where the schema goes: before the first relation's name, after
		// ONLY, unless a dot follows the name.
		at := -1
		if schema != "" {
			n := sh.at + 1
			if n < len(code) && l.isKeyword(code[n], "only") {
				n++
			}
			if n >= len(code) || code[n].kind != tIdent && code[n].kind != tQIdent {
				return "", errors.New("append targets: the FROM list does not start with a name")
			}
			if n+1 >= len(code) || l.tokText(code[n+1]) != "." {
				at = int(code[n].start)
			}
		}
		var b strings.Builder
		b.Grow(len(span) + 64*len(exprs) + len(schema) + 3)
		b.WriteString(span[:from.start])
		for k, e := range exprs {
			if k > 0 || !sh.empty {
				b.WriteString(", ")
			}
			b.WriteString(e)
			b.WriteString(" AS ")
			b.WriteString(quoteIdent(aliases[k]))
		}
		b.WriteByte(' ')
		if at < 0 {
			b.WriteString(span[from.start:])
			return b.String(), nil
		}
		b.WriteString(span[from.start:at])
		b.WriteString(quoteIdent(schema))
		b.WriteByte('.')
		b.WriteString(span[at:])
		return b.String(), nil
	}
	return "", errors.New("append targets: the statement does not have its shape's FROM")
}

// Normalize returns the statement text of st with every constant replaced
// by a placeholder ($n, numbered after the statement's own parameters),
// comments removed and whitespace collapsed: a form that holds no value
// of the statement, for the audit trail. It fails for a text the lexer
// cannot read (an unterminated literal), which PostgreSQL would not run.
func Normalize(text string, st *Statement) (string, error) {
	span, err := stmtText(text, st)
	if err != nil {
		return "", err
	}
	l := lex(span)
	if l.broken {
		return "", errors.New("normalize: unterminated literal, identifier or comment")
	}
	next := 1
	for _, t := range l.toks {
		if t.kind == tParam {
			if n := paramNumber(l.tokText(t)); n >= next {
				next = n + 1
			}
		}
	}
	var b strings.Builder
	b.Grow(len(span))
	first := true
	for _, t := range l.toks {
		if t.kind == tComment {
			continue
		}
		if !first && t.gap != gapNone {
			b.WriteByte(' ')
		}
		first = false
		switch t.kind {
		case tString, tXString, tInt, tNum:
			b.WriteByte('$')
			b.WriteString(itoa(next))
			next++
		default:
			b.WriteString(l.tokText(t))
		}
	}
	return b.String(), nil
}

func paramNumber(s string) int {
	n := 0
	for _, c := range s[1:] {
		if c < '0' || c > '9' || n > 1<<20 {
			return 0
		}
		n = 10*n + int(c-'0')
	}
	return n
}

func itoa(n int) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			return string(b[i:])
		}
	}
}
