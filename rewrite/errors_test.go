package rewrite

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/privata/privata/internal/pgtest"
)

// errorCases are statements Analyze must refuse. secret is a constant of
// the statement that must appear nowhere in the error.
var errorCases = []struct {
	name   string
	sql    string
	code   string
	secret string
	// message is a substring of the expected message.
	message string
	// pg is set when PostgreSQL reports the same SQLSTATE and position.
	pg bool
}{
	{name: "a string constant where a keyword belongs",
		sql:  "SELECT * FROM patients WHERE ssn = '123-45-6789' 'John Smith'",
		code: CodeSyntaxError, secret: "John Smith", message: "at or near a string constant", pg: true},
	{name: "an unterminated string",
		sql:  "SELECT * FROM patients WHERE ssn = '123-45-6789",
		code: CodeSyntaxError, secret: "6789", message: "unterminated quoted string", pg: true},
	{name: "an unterminated dollar quote",
		sql: "SELECT $$John Smith", code: CodeSyntaxError, secret: "John",
		message: "at or near a dollar-quoted string", pg: true},
	{name: "an unterminated quoted identifier",
		sql: `SELECT "ssn FROM patients WHERE ssn = '123-45-6789'`, code: CodeSyntaxError,
		secret: "6789", message: "at or near a quoted identifier", pg: true},
	{name: "a numeric constant where a keyword belongs",
		sql: "SELECT * FROM patients WHERE id = 4242 4343", code: CodeSyntaxError,
		secret: "4343", message: "at or near a numeric constant", pg: true},
	{name: "trailing junk after a number",
		sql: "SELECT 123456789abc", code: CodeSyntaxError, secret: "123456789", pg: true},
	{name: "an escape string with a secret",
		sql: `SELECT E'John\'s secret' 'x'`, code: CodeSyntaxError, secret: "secret", pg: true},
	{name: "a keyword is quoted", sql: "SELECT * FORM patients", code: CodeSyntaxError,
		message: `syntax error at or near "FORM"`, pg: true},
	{name: "the end of the text", sql: "SELECT * FROM patients WHERE", code: CodeSyntaxError,
		message: "at end of input", pg: true},
	{name: "a syntax error in an SQL function body",
		sql: "CREATE FUNCTION f() RETURNS text LANGUAGE sql AS " +
			"$$SELECT 'John Smith' 'x'$$", code: CodeSyntaxError, secret: "John Smith"},
	{name: "invalid UTF-8", sql: "SELECT 'abc\xff\xfe'", code: CodeCharNotInRepertoire,
		message: `invalid byte sequence for encoding "UTF8"`},
	{name: "a NUL byte", sql: "SELECT 1\x00; DROP TABLE patients", code: CodeCharNotInRepertoire,
		message: "0x00"},
}

func TestErrorsNeverShowConstants(t *testing.T) {
	a := NewAnalyzer(0)
	for _, c := range errorCases {
		t.Run(c.name, func(t *testing.T) {
			e := analyzeError(t, a, c.sql)
			if e.SQLState != c.code || !strings.Contains(e.Message, c.message) {
				t.Fatalf("error %v; want SQLSTATE %s and a message with %q", e, c.code, c.message)
			}
			all := e.Message + e.Detail + e.Hint + e.Error()
			if c.secret != "" && strings.Contains(all, c.secret) {
				t.Fatalf("error shows %q: %+v", c.secret, e)
			}
		})
	}
}

func TestSyntaxErrorPositionsMatchPostgreSQL(t *testing.T) {
	conn := pgtest.NewDB(t, pgtest.Shared(t)).Connect(t)
	a := NewAnalyzer(0)
	for _, c := range errorCases {
		if !c.pg {
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			e := analyzeError(t, a, c.sql)
			_, err := conn.PgConn().Exec(context.Background(), c.sql).ReadAll()
			var pe *pgconn.PgError
			if !errors.As(err, &pe) {
				t.Fatalf("PostgreSQL: %v", err)
			}
			if pe.Code != e.SQLState || int(pe.Position) != e.Position {
				t.Fatalf("PostgreSQL: %s at %d; Analyze: %s at %d", pe.Code, pe.Position,
					e.SQLState, e.Position)
			}
		})
	}
	// Positions count characters, not bytes.
	e := analyzeError(t, a, "SELECT 'åäö' 'x'")
	if e.Position != 14 {
		t.Errorf("position %d, want 14", e.Position)
	}
}

// analyzeError analyses a text that must fail, and returns the *Error.
func analyzeError(t *testing.T, a *Analyzer, sql string) *Error {
	t.Helper()
	an, err := a.Analyze(sql)
	if err == nil {
		t.Fatalf("Analyze(%.60q) = %+v; want an error", sql, an)
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %T %v is not an *Error", err, err)
	}
	return e
}

func TestHostileInputsGetErrorsNotCrashes(t *testing.T) {
	const n = 100_000
	deep := func(open, middle, close string) string {
		return strings.Repeat(open, n) + middle + strings.Repeat(close, n)
	}
	cases := []struct {
		name string
		sql  string
		code string
	}{
		{"nested parentheses", deep("SELECT "+"(", "1", ")"), CodeStatementTooComplex},
		{"nested subselects", deep("SELECT * FROM (", "SELECT 1", ") s"), CodeStatementTooComplex},
		{"nested scalar subqueries", deep("SELECT (", "1", ")"), CodeStatementTooComplex},
		{"a chain of additions", "SELECT 1" + strings.Repeat("+1", n), CodeStatementTooComplex},
		{"a chain of concatenations", "SELECT 'a'" + strings.Repeat("||'a'", n), CodeStatementTooComplex},
		{"a chain of casts", "SELECT 1" + strings.Repeat("::int", n), CodeStatementTooComplex},
		{"a chain of UNIONs", "SELECT 1" + strings.Repeat(" UNION SELECT 1", n), CodeStatementTooComplex},
		{"a chain of JOINs", "SELECT 1 FROM t" + strings.Repeat(" JOIN t ON true", n),
			CodeStatementTooComplex},
		{"a chain of NOTs", "SELECT " + strings.Repeat("NOT ", n) + "true", CodeStatementTooComplex},
		{"a chain of minus signs", "SELECT " + strings.Repeat("- ", n) + "a", CodeStatementTooComplex},
		{"nested CASE", deep("SELECT "+"CASE WHEN a THEN ", "1", " END"), CodeStatementTooComplex},
		{"nested ARRAY", deep("SELECT "+"ARRAY[", "1", "]"), CodeStatementTooComplex},
		{"nested function calls", deep("SELECT "+"f(", "1", ")"), CodeStatementTooComplex},
		{"a deep DO block", "DO $$BEGIN PERFORM 1" + strings.Repeat("+1", n) + "; END$$",
			CodeStatementTooComplex},
		{"deep PL/pgSQL blocks", "DO $$" + strings.Repeat("BEGIN IF true THEN ", n/10) +
			strings.Repeat("END IF; END; ", n/10) + "$$", CodeStatementTooComplex},
		{"a deep SQL function body", "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1" +
			strings.Repeat("+1", n) + "'", CodeStatementTooComplex},
		{"a 64 MiB text", "SELECT '" + strings.Repeat("x", 64<<20) + "'", CodeProgramLimit},
	}
	a := NewAnalyzer(10)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := analyzeError(t, a, c.sql)
			if e.SQLState != c.code {
				t.Fatalf("error %v; want SQLSTATE %s", e, c.code)
			}
		})
	}
}

func TestLargeOrdinaryStatementsAreAccepted(t *testing.T) {
	rows := make([]string, 10_000)
	for i := range rows {
		rows[i] = "(1, 'John', 'Smith', '123-45-6789', -1.5, now() - interval '1 day')"
	}
	ors := make([]string, 5_000)
	for i := range ors {
		ors[i] = "id = 1"
	}
	whens := make([]string, 2_000)
	for i := range whens {
		whens[i] = "WHEN id = 1 THEN 'a' || 'b'"
	}
	texts := map[string]string{
		"a 10,000-row INSERT": "INSERT INTO patients VALUES " + strings.Join(rows, ", "),
		"5,000 ORs":           "SELECT 1 FROM patients WHERE " + strings.Join(ors, " OR "),
		"a 2,000-branch CASE": "SELECT CASE " + strings.Join(whens, " ") + " END FROM patients",
		"500 nested brackets": "SELECT " + strings.Repeat("(", 500) + "1" + strings.Repeat(")", 500),
		"200 nested subselects": strings.Repeat("SELECT * FROM (", 200) + "SELECT 1" +
			strings.Repeat(") s", 200),
		"a 50-way UNION": "SELECT 1" + strings.Repeat(" UNION ALL SELECT 1", 50),
	}
	a := NewAnalyzer(0)
	for name, sql := range texts {
		t.Run(name, func(t *testing.T) {
			if _, err := a.Analyze(sql); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestWideStatementsStayLinear analyses statements with many thousands of
// FROM items and columns. Lookups and candidate lists that grew with
// items times columns would take minutes and gigabytes here.
func TestWideStatementsStayLinear(t *testing.T) {
	const n = 20_000
	cols := make([]string, n)
	items := make([]string, n)
	for i := range n {
		cols[i] = "ssn"
		items[i] = fmt.Sprintf("patients p%d", i)
	}
	sql := "SELECT " + strings.Join(cols, ", ") + " FROM " + strings.Join(items, ", ") +
		" ORDER BY " + strings.Join(cols, ", ")
	st := analyzeOne(t, NewAnalyzer(0), sql)
	if len(st.Relations) != n || len(st.Columns) != 2*n {
		t.Fatalf("%d relations, %d columns", len(st.Relations), len(st.Columns))
	}
	first := &st.Columns[0].Candidates[0]
	for _, c := range st.Columns {
		if len(c.Candidates) != n || &c.Candidates[0] != first {
			t.Fatal("columns of one scope do not share their candidates")
		}
	}
	c := Classify(st, clinicPolicy(t), nil)
	if len(c.Tables) != 1 || len(c.Columns) != 1 || !c.AllColumns {
		t.Fatalf("classification %+v", c)
	}
}

// TestUnparsablePLpgSQLIsReadTokenByToken: code pg_query's PL/pgSQL parser
// refuses (wrong, or valid but beyond its catalog-free checks) passes on
// to PostgreSQL, which judges it, unless it mentions what could change the
// role; what it touches is unknown (Opaque).
func TestUnparsablePLpgSQLIsReadTokenByToken(t *testing.T) {
	a := NewAnalyzer(0)
	for sql, roleChange := range map[string]string{
		"DO $$BEGIN SELECT 'John Smith' 'x'; END$$":                             "",
		"DO $$DECLARE c CURSOR FOR SELECT 1; BEGIN OPEN c; CLOSE c; END$$":      "",
		"DO $$BEGIN SELECT 'a' 'b'; EXECUTE 'x'; END$$":                         "dynamic SQL",
		"DO $$BEGIN SELECT 'a' 'b'; PERFORM set_config('x', 'y', false); END$$": "set_config",
	} {
		st := analyzeOne(t, a, sql)
		if st.Opaque == "" || (roleChange == "") != (st.RoleChange == "") ||
			!strings.Contains(st.RoleChange, roleChange) {
			t.Errorf("%s: Opaque %q, RoleChange %q; want RoleChange with %q", sql, st.Opaque,
				st.RoleChange, roleChange)
		}
	}
}
