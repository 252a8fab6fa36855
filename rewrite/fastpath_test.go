package rewrite

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	pg "github.com/pganalyze/pg_query_go/v5"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

func TestFastPathRefusesWhatTheLexerDoesNotModel(t *testing.T) {
	for _, sql := range []string{
		"SELECT $$a$$",
		"SELECT $tag$a$tag$",
		"SELECT E'a\\'b'",
		"SELECT e'a'",
		"SELECT U&'d\\0061t'",
		`SELECT U&"d\0061t" FROM t`,
		"SELECT B'101'",
		"SELECT X'1F'",
		"SELECT N'abc'",
		`SELECT 'a\b'`,
		"SELECT 1 /* outer /* inner */ */",
		"SELECT :foo",
		"SELECT :'foo'",
		`SELECT :"foo"`,
		"SELECT café FROM t",
		`SELECT "café" FROM t`,
		"SELECT 1 -- é",
		"SELECT\v1",
		"SELECT 0x1F",
		"SELECT 1_000",
		"SELECT 123abc",
		"SELECT $1abc",
		"SELECT a[1:n] FROM t",
		"SELECT 1 \\g",
		"SELECT 'unterminated",
		"SELECT 1 /* unterminated",
		`SELECT "" FROM t`,
		"SELECT a+/*c*/b",
	} {
		if key := shapeKey(lex(sql)); key != "" {
			t.Errorf("%q takes the fast path", sql)
		}
	}
}

func TestShapes(t *testing.T) {
	cases := []struct {
		name  string
		a, b  string
		alike bool
	}{
		{"integers", "SELECT a FROM t WHERE x = 1", "SELECT a FROM t WHERE x = 98765", true},
		{"strings", "SELECT a FROM t WHERE x = 'a'",
			"SELECT a FROM t WHERE x = 'it''s -- /* x */'", true},
		{"decimals", "SELECT 1.5", "SELECT 2e10", true},
		{"whitespace amounts", "SELECT  a\tFROM t", "SELECT a FROM   t", true},
		{"comments", "SELECT 1 /*actor='a'*/", "SELECT 1 /* anything */", true},
		{"unicode in a string", "SELECT 'a'", "SELECT 'åäö 🙂'", true},
		{"several statements", "SELECT 1; SELECT 'a'", "SELECT 22; SELECT 'bb'", true},

		{"integer and decimal", "SELECT 1", "SELECT 1.0", false},
		{"int4 and a larger integer", "SELECT 2147483647", "SELECT 2147483648", false},
		{"string and number", "SELECT 'a'", "SELECT 1", false},
		{"strings joined by a newline", "SELECT 'a'\n'b'", "SELECT 'a' 'b'", false},
		{"a comment between strings", "SELECT 'a'\n/*c*/'b'", "SELECT 'a'\n'b'", false},
		{"touching and spaced tokens", "SELECT 1-1", "SELECT 1 -1", false},
		{"identifier case", "SELECT a FROM t", "SELECT A FROM t", false},
		{"identifiers", "SELECT a FROM t", "SELECT b FROM t", false},
		{"parameters", "SELECT $1", "SELECT $2", false},
		{"a space inside an identifier", "SELECT a1b", "SELECT a b", false},
		{"a sign", "SELECT 1", "SELECT -1", false},
		{"keywords", "SELECT 1", "SELECT DISTINCT 1", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ka, kb := shapeKey(lex(c.a)), shapeKey(lex(c.b))
			if ka == "" || kb == "" {
				t.Fatalf("no fast path: %q, %q", ka, kb)
			}
			if (ka == kb) != c.alike {
				t.Fatalf("same shape: %v, want %v", ka == kb, c.alike)
			}
		})
	}
}

func TestFastPathAnswersLikeAFullParse(t *testing.T) {
	a := NewAnalyzer(100)
	first, err := a.Analyze("SELECT abalance FROM pgbench_accounts WHERE aid = 1; /*actor='a'*/")
	if err != nil {
		t.Fatal(err)
	}
	text := "SELECT abalance FROM pgbench_accounts WHERE aid = 12345678; /*actor='b'*/"
	fast, err := a.Analyze(text)
	if err != nil {
		t.Fatal(err)
	}
	if a.Stats().FastPathHits != 1 {
		t.Fatalf("stats %+v", a.Stats())
	}
	full, err := NewAnalyzer(0).Analyze(text)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(fast, full) || fast.Tags["actor"] != "b" {
		t.Fatalf("fast path %+v\nfull parse %+v", fast, full)
	}
	if first.Statements[0].Length == fast.Statements[0].Length {
		t.Fatal("the span was not recomputed")
	}
}

func TestFastPathIsNotTakenWhenConstantsMatter(t *testing.T) {
	a := NewAnalyzer(100)
	for _, sql := range []string{
		"SELECT set_config('application_name', 'x', false)",
		"SELECT set_config('role', 'x', false)",
		"SET search_path = 'a'",
		"SET search_path = 'b'",
	} {
		if _, err := a.Analyze(sql); err != nil {
			t.Fatal(err)
		}
	}
	if s := a.Stats(); s.FastPathHits != 0 || s.Shapes != 0 {
		t.Fatalf("stats %+v", s)
	}
}

// corpus holds statements of the kinds ORMs and tools send, with constants.
// Those with own set may share their analysis with texts of their shape;
// the others hold constants outside A_Const nodes.
var corpus = []struct {
	sql   string
	share bool
}{
	{"SELECT abalance FROM pgbench_accounts WHERE aid = 48213", true},
	{"UPDATE pgbench_accounts SET abalance = abalance + -3417 WHERE aid = 88121", true},
	{"INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) " +
		"VALUES (7, 1, 55, 2841, CURRENT_TIMESTAMP)", true},
	{`SELECT "Patient"."id", "Patient"."first" FROM "public"."patients" AS "Patient" ` +
		`WHERE "Patient"."state" = 'Stockholm' AND "Patient"."income" > 10000.50 ` +
		`LIMIT 10 OFFSET 20`, true},
	{"SELECT p.id, count(e.*) FROM patients p LEFT JOIN encounters e ON e.patient = p.id " +
		"WHERE p.birthdate > '1980-01-01'::date GROUP BY p.id HAVING count(*) > 3 " +
		"ORDER BY 2 DESC", true},
	{"INSERT INTO patients (id, first, last, ssn) VALUES ('a1', 'John', 'Smith', " +
		"'123-45-6789'), ('a2', 'Jane', 'O''Brien', '987-65-4321') ON CONFLICT (id) " +
		"DO UPDATE SET first = excluded.first", true},
	{"UPDATE patients SET income = 52000, state = 'Uppsala' WHERE id = 'x' " +
		"RETURNING id, state", true},
	{"DELETE FROM encounters WHERE start < now() - interval '30 days' " +
		"AND code IN (1, 2, 3)", true},
	{"SELECT * FROM observations WHERE value BETWEEN 1.5e3 AND 2E-3 AND units = 'mg'", true},
	{"WITH r AS (SELECT id FROM patients WHERE zip LIKE '12%') SELECT count(*) FROM r", true},
	{"SELECT 1; SELECT 'two'; UPDATE t SET a = 3 WHERE b = 'four'", true},
	{"SELECT * FROM t WHERE a = 2147483647 OR b = 2147483648 OR c = 00001 OR d = .5", true},
	{"SELECT x::numeric(10, 2), y::varchar(255) FROM t LIMIT 5", true},
	{"SELECT * FROM t /*actor='dr%20who',purpose='treatment'*/", true},
	{"SELECT ARRAY[1, 2, 3] || ARRAY['a'], (1, 'b'), COALESCE(NULL, 7)", true},
	{"SELECT a FROM t WHERE b = $1 AND c = 5 -- trailing comment 'x'", true},
	{"SELECT 'a'\n'b' AS joined, 'c' /* not joined */ AS other", false},
	{"COPY (SELECT * FROM t WHERE a = 'x') TO STDOUT WITH (FORMAT 'csv', DELIMITER ';')", false},
	{"FETCH 10 FROM c", false},
	{"NOTIFY ch, 'payload'", false},
}

// TestFastPathSharesOnlyIdenticalTrees is the fast path's property: texts
// that share a shape parse to the same tree, up to constant values and
// locations, and the fast path answers for them exactly what a full parse
// does.
func TestFastPathSharesOnlyIdenticalTrees(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, c := range corpus {
		base := c.sql
		baseKey := shapeKey(lex(base))
		if baseKey == "" {
			t.Fatalf("corpus text %q has no shape", base)
		}
		a := NewAnalyzer(10)
		if _, err := a.Analyze(base); err != nil {
			t.Fatalf("%q: %v", base, err)
		}
		if shares := a.Stats().Shapes == 1; shares != c.share {
			t.Fatalf("%q: shares its analysis: %v, want %v", base, shares, c.share)
		}
		alike := 0
		for range 300 {
			v := mutateConstants(rng, base)
			if shapeKey(lex(v)) == baseKey {
				alike++
				checkSameTree(t, base, v)
			}
			checkFastPath(t, a, v)
		}
		if alike < 30 {
			t.Fatalf("%q: only %d of 300 variants have its shape", base, alike)
		}
		if c.share && a.Stats().FastPathHits < uint64(alike) {
			t.Fatalf("%q: %d variants of its shape, %d fast-path hits", base, alike,
				a.Stats().FastPathHits)
		}
	}
}

// mutateConstants replaces the content of a text's constants, the amounts
// of its whitespace and the content of its comments with random ones.
func mutateConstants(rng *rand.Rand, text string) string {
	l := lex(text)
	var b strings.Builder
	prev := 0
	for _, tok := range l.toks {
		b.WriteString(mutateGap(rng, text[prev:int(tok.start)]))
		switch tok.kind {
		case tString:
			b.WriteString("'" + randomString(rng) + "'")
		case tInt, tNum:
			b.WriteString(randomNumber(rng, tok.kind))
		case tComment:
			b.WriteString("/*" + strings.ReplaceAll(randomString(rng), "*/", "") + "*/")
		default:
			b.WriteString(l.tokText(tok))
		}
		prev = int(tok.end)
	}
	b.WriteString(text[prev:])
	return b.String()
}

func mutateGap(rng *rand.Rand, gap string) string {
	if gap == "" || strings.Contains(gap, "--") {
		return gap
	}
	if strings.ContainsAny(gap, "\n\r") {
		return strings.Repeat(" ", rng.IntN(3)) + "\n" + strings.Repeat("\t", rng.IntN(3))
	}
	return strings.Repeat(" ", 1+rng.IntN(3))
}

var stringPieces = []string{"a", "Z", "0", " ", "''", "--", "/*", "*/", ";", "$$", "$1", "é",
	"🙂", "\n", "%", "_", "\\", "E'", ":x", "\t", "SELECT", ")", "("}

func randomString(rng *rand.Rand) string {
	var b strings.Builder
	for range rng.IntN(6) {
		b.WriteString(stringPieces[rng.IntN(len(stringPieces))])
	}
	return b.String()
}

// randomNumber returns a numeric constant, most often of the class kind
// (an int4 integer or another number).
func randomNumber(rng *rand.Rand, kind tokKind) string {
	pick := rng.IntN(6)
	if rng.IntN(10) < 8 {
		pick = []int{0, 5}[rng.IntN(2)]
		if kind == tNum {
			pick = []int{2, 3, 4}[rng.IntN(3)]
		}
	}
	switch pick {
	case 0:
		return fmt.Sprint(rng.IntN(10))
	case 1:
		return fmt.Sprint(2147483640 + rng.IntN(20))
	case 2:
		return fmt.Sprint(rng.Uint64())
	case 3:
		return fmt.Sprintf("%d.%d", rng.IntN(1000), rng.IntN(1000))
	case 4:
		return fmt.Sprintf("%de%d", rng.IntN(10), rng.IntN(30))
	}
	return "00" + fmt.Sprint(rng.IntN(100000))
}

// checkSameTree fails unless a and b parse to the same tree up to constant
// values and locations.
func checkSameTree(t *testing.T, a, b string) {
	t.Helper()
	ta, errA := parse(a)
	tb, errB := parse(b)
	if (errA == nil) != (errB == nil) {
		t.Fatalf("same shape, one parses and one does not:\n%q: %v\n%q: %v", a, errA, b, errB)
	}
	if errA != nil {
		return
	}
	normalizeTree(ta.ProtoReflect())
	normalizeTree(tb.ProtoReflect())
	if !proto.Equal(ta, tb) {
		t.Fatalf("same shape, different trees:\n%q\n%q", a, b)
	}
}

// checkFastPath fails unless analyzer a (which has seen other texts)
// answers for text what a fresh analyzer does.
func checkFastPath(t *testing.T, a *Analyzer, text string) {
	t.Helper()
	got, errGot := a.Analyze(text)
	want, errWant := NewAnalyzer(0).Analyze(text)
	if !reflect.DeepEqual(errGot, errWant) || !reflect.DeepEqual(got, want) {
		t.Fatalf("%q:\ncached %+v, %v\nfresh  %+v, %v", text, got, errGot, want, errWant)
	}
}

// literalFields are the fields of parse-tree messages that hold the value
// of a constant from the text.
var literalFields = map[protoreflect.Name]bool{
	"location": true, "stmt_location": true, "stmt_len": true,
	"ival": true, "fval": true, "bsval": true, "payload": true, "comment": true,
	"filename": true, "gid": true, "how_many": true, "label": true,
}

// normalizeTree clears locations and constant values throughout a tree.
// A constant's type stays: an Integer and a Float constant still differ.
// Strings inside constants and option values (DefElem) are cleared too.
func normalizeTree(m protoreflect.Message) { normalize(m, false) }

func normalize(m protoreflect.Message, clearStrings bool) {
	switch v := m.Interface().(type) {
	case *pg.A_Const, *pg.DefElem:
		clearStrings = true
	case *pg.String:
		if clearStrings {
			v.Sval = ""
		}
		return
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.Kind() == protoreflect.MessageKind && fd.IsList():
			for i := 0; i < v.List().Len(); i++ {
				normalize(v.List().Get(i).Message(), clearStrings)
			}
		case fd.Kind() == protoreflect.MessageKind && !fd.IsMap():
			normalize(v.Message(), clearStrings)
		case literalFields[fd.Name()]:
			m.Clear(fd)
		}
		return true
	})
}
