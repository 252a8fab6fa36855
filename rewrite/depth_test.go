package rewrite

import (
	"errors"
	"strings"
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// treeDepth is how deeply the messages of a parse tree nest: what Go's
// protobuf decoder (limit 10,000) and pg_query's C serialiser recurse on.
func treeDepth(m protoreflect.Message) int {
	d := 0
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.Kind() != protoreflect.MessageKind || fd.IsMap():
		case fd.IsList():
			for i := 0; i < v.List().Len(); i++ {
				d = max(d, treeDepth(v.List().Get(i).Message()))
			}
		default:
			d = max(d, treeDepth(v.Message()))
		}
		return true
	})
	return d + 1
}

// nesting is a statement that nests n times, one way: prefix, then n
// times open, middle, then n times close.
type nesting struct{ name, prefix, open, middle, close string }

// nestings are the ways of nesting the guard must bound.
var nestings = []nesting{
	{"parens", "SELECT ", "(", "a", ")"},
	{"parensop", "SELECT ", "(a+", "a", ")"},
	{"scalarsub", "", "SELECT (", "SELECT 1", ")"},
	{"fromsub", "", "SELECT * FROM (", "SELECT 1", ") s"},
	{"exists", "", "SELECT EXISTS (", "SELECT 1", ")"},
	{"arraysub", "", "SELECT ARRAY(", "SELECT 1", ")"},
	{"insub", "", "SELECT 1 WHERE a IN (", "SELECT 1", ")"},
	{"cte", "", "WITH a AS (", "SELECT 1", ") SELECT 1"},
	{"plus", "SELECT a", "+a", "", ""},
	{"cast", "SELECT a", "::int", "", ""},
	{"not", "SELECT ", "NOT ", "a", ""},
	{"minus", "SELECT ", "- ", "a", ""},
	{"isnull", "SELECT a", " IS NULL", "", ""},
	{"collate", "SELECT a", ` COLLATE "C"`, "", ""},
	{"attz", "SELECT a", " AT TIME ZONE 'x'", "", ""},
	{"union", "SELECT 1", " UNION SELECT 1", "", ""},
	{"join", "SELECT 1 FROM t", " JOIN t ON true", "", ""},
	{"case", "SELECT ", "CASE WHEN a THEN ", "1", " END"},
	{"caseelse", "SELECT ", "CASE WHEN a THEN 1 ELSE ", "1", " END"},
	{"array", "SELECT ", "ARRAY[", "1", "]"},
	{"func", "SELECT ", "f(", "1", ")"},
	{"coalesce", "SELECT ", "coalesce(a, ", "1", ")"},
	{"row", "SELECT ", "ROW(", "1", ")"},
	{"subscript", "SELECT ", "(", "a", ")[1]"},
	{"field", "SELECT ", "(", "a", ").f"},
	{"andor", "SELECT ", "(a AND (b OR ", "c", "))"},
	{"joinparen", "SELECT 1 FROM ", "(t JOIN ", "t", " ON true)"},
	{"unionparen", "", "(SELECT 1 UNION ", "SELECT 1", ")"},
	{"values", "", "SELECT * FROM (VALUES ((", "SELECT 1", "))) v"},
	{"lateral", "", "SELECT * FROM t, LATERAL (", "SELECT 1", ") s"},
	{"window", "SELECT ", "sum(", "a", ") OVER ()"},
	{"filter", "SELECT ", "count(*) FILTER (WHERE a = (SELECT ", "1", "))"},
	{"between", "SELECT ", "(a BETWEEN ", "1", " AND 2)"},
	{"typecastp", "SELECT ", "CAST(", "1", " AS int)"},
	{"jsonop", "SELECT a", "->'x'", "", ""},
	{"deleteret", "", "WITH a AS (DELETE FROM t RETURNING (", "SELECT 1", ")) SELECT 1"},
	{"indirect", "SELECT ", "(", "a", ")[1:2]"},
	{"xml", "SELECT ", "xmlelement(name a, ", "1", ")"},
	{"grouping", "SELECT 1 FROM t GROUP BY ", "ROLLUP((", "a", "))"},
	{"insertsel", "", "WITH x AS (INSERT INTO t SELECT * FROM (",
		"SELECT 1", ") s RETURNING 1) SELECT 1"},
}

func (n nesting) build(times int) string {
	return n.prefix + strings.Repeat(n.open, times) + n.middle + strings.Repeat(n.close, times)
}

// depthFactor bounds how many tree levels one unit of nestingDepth can
// stand for. With DefaultMaxDepth units, trees stay under 9,000 levels.
const depthFactor = 9

func TestNestingDepthBoundsTheTree(t *testing.T) {
	if depthFactor*DefaultMaxDepth > 9000 {
		t.Fatalf("%d units of up to %d levels reach Go's protobuf limit", DefaultMaxDepth, depthFactor)
	}
	for _, nest := range nestings {
		for _, n := range []int{1, 10, 40} {
			text := nest.build(n)
			tree, err := parse(text)
			if err != nil {
				t.Fatalf("%s %d: %v", nest.name, n, err)
			}
			depth, bound := treeDepth(tree.ProtoReflect()), nestingDepth(lex(text))
			if depth > depthFactor*bound {
				t.Errorf("%s %d: tree depth %d, bound %d units", nest.name, n, depth, bound)
			}
		}
	}
}

// TestDeepestAcceptedStatementsParse builds, for each way of nesting, the
// deepest statement the guard accepts, and parses it: pg_query and the
// protobuf decoder must handle it. One level deeper is refused.
func TestDeepestAcceptedStatementsParse(t *testing.T) {
	a := NewAnalyzer(0)
	for _, nest := range nestings {
		build := nest.build
		t.Run(nest.name, func(t *testing.T) {
			n := 1
			for nestingDepth(lex(build(n*2))) <= DefaultMaxDepth {
				n *= 2
			}
			for step := n / 2; step > 0; step /= 2 {
				if nestingDepth(lex(build(n+step))) <= DefaultMaxDepth {
					n += step
				}
			}
			if _, err := a.Analyze(build(n)); err != nil {
				var e *Error
				if errors.As(err, &e) && e.SQLState == CodeStatementTooComplex {
					t.Fatalf("%d levels: %v", n, err)
				}
			}
			e := analyzeError(t, a, build(n+1))
			if e.SQLState != CodeStatementTooComplex {
				t.Fatalf("%d levels: %v", n+1, e)
			}
		})
	}
}
