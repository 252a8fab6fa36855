package rewrite

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/privata/privata/internal/pgtest"
)

func shapeOf(t *testing.T, s *Shaper, sql string) (*Analysis, *ReadShape) {
	t.Helper()
	an, err := NewAnalyzer(0).Analyze(sql)
	if err != nil {
		t.Fatalf("analyze %q: %v", sql, err)
	}
	sh, err := s.Shape(sql, an.Statements[0])
	if err != nil {
		t.Fatalf("shape %q: %v", sql, err)
	}
	return an, sh
}

func TestReadShapes(t *testing.T) {
	cases := []struct {
		name, sql string
		not       string
		from      []FromRef
		point     string
	}{
		{"point read by key", "SELECT ssn FROM patients WHERE id = $1", "",
			[]FromRef{{Name: "patients"}}, "id"},
		{"point read with a cast constant and more conditions",
			"SELECT * FROM public.patients p WHERE p.id = '7'::uuid AND p.last IS NOT NULL", "",
			[]FromRef{{Schema: "public", Name: "patients", Ref: "p"}}, "id"},
		{"a function makes it no point read", "SELECT now(), ssn FROM patients WHERE id = 1", "",
			[]FromRef{{Name: "patients"}}, ""},
		{"a range is no point read", "SELECT ssn FROM patients WHERE id > 1", "",
			[]FromRef{{Name: "patients"}}, ""},
		{"locking is no point read", "SELECT ssn FROM patients WHERE id = 1 FOR UPDATE", "",
			[]FromRef{{Name: "patients"}}, ""},
		{"join without alias", "SELECT p.ssn, e.cost FROM patients p JOIN encounters e ON " +
			"e.patient = p.id", "", []FromRef{{Name: "patients", Ref: "p"},
			{Name: "encounters", Ref: "e"}}, ""},
		{"aliased join hides its relations", "SELECT j.ssn FROM (patients JOIN encounters " +
			"ON patient = id) AS j, visits v", "", []FromRef{{Name: "visits", Ref: "v"}}, ""},
		{"subquery in FROM is not named", "SELECT s.ssn FROM (SELECT ssn FROM patients) s", "",
			nil, ""},
		{"renamed columns are not named", "SELECT a FROM patients AS p (a, b)", "", nil, ""},
		{"window functions keep rows", "SELECT ssn, row_number() OVER () FROM patients", "",
			[]FromRef{{Name: "patients"}}, ""},
		{"IS DISTINCT FROM in the select list", "SELECT ssn IS DISTINCT FROM 'x' FROM patients",
			"", []FromRef{{Name: "patients"}}, ""},
		{"aggregate", "SELECT count(*) FROM patients", "aggregate", nil, ""},
		{"aggregate in ORDER BY", "SELECT 1 FROM patients ORDER BY max(ssn)", "aggregate", nil, ""},
		{"DISTINCT", "SELECT DISTINCT last FROM patients", "DISTINCT", nil, ""},
		{"DISTINCT ON", "SELECT DISTINCT ON (last) last FROM patients", "DISTINCT", nil, ""},
		{"GROUP BY", "SELECT last FROM patients GROUP BY last", "GROUP BY", nil, ""},
		{"set operation", "SELECT ssn FROM patients UNION SELECT ssn FROM patients",
			"set operation", nil, ""},
		{"TABLE command", "TABLE patients", "TABLE command", nil, ""},
		{"no FROM", "SELECT 1", "no FROM list", nil, ""},
		{"VALUES", "VALUES (1)", "VALUES", nil, ""},
		{"not a SELECT", "UPDATE patients SET ssn = 'x'", "not a SELECT", nil, ""},
	}
	s := NewShaper(100)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, sh := shapeOf(t, s, c.sql)
			if sh.NotAttributable != c.not {
				t.Fatalf("NotAttributable = %q, want %q", sh.NotAttributable, c.not)
			}
			if c.not != "" {
				return
			}
			if !reflect.DeepEqual(sh.From, c.from) {
				t.Errorf("From = %+v, want %+v", sh.From, c.from)
			}
			if sh.Point != (c.point != "") || sh.PointColumn != c.point {
				t.Errorf("Point = %v %q, want %q", sh.Point, sh.PointColumn, c.point)
			}
			if sh.Point && !sh.Pure {
				t.Errorf("a point read that is not pure")
			}
		})
	}
}

func TestReadShapeCalls(t *testing.T) {
	_, sh := shapeOf(t, NewShaper(10),
		"SELECT lower(last), my_agg(ssn), (SELECT max(x) FROM y) FROM patients ORDER BY f(1)")
	if want := []string{"lower", "my_agg", "f"}; !reflect.DeepEqual(sh.Calls, want) {
		t.Fatalf("Calls = %v, want %v", sh.Calls, want)
	}
}

func TestReadShapesAreSharedByTextsThatDifferInConstants(t *testing.T) {
	s := NewShaper(10)
	_, a := shapeOf(t, s, "SELECT ssn FROM patients WHERE id = 1")
	_, b := shapeOf(t, s, "SELECT ssn FROM patients WHERE id = 123456")
	_, c := shapeOf(t, s, "SELECT ssn FROM patients p WHERE id = 1")
	if a != b {
		t.Error("texts that differ in a constant did not share their shape")
	}
	if a == c {
		t.Error("texts that differ in an alias shared their shape")
	}
}

// TestAppendedTargetsRunInPostgreSQL appends each FROM relation's id to
// the select list and checks, in PostgreSQL, that the statement returns
// the same rows as before, each with its relations' ids appended.
func TestAppendedTargetsRunInPostgreSQL(t *testing.T) {
	db := pgtest.NewDB(t, pgtest.Shared(t))
	conn := db.Connect(t)
	mustExec(t, conn, `CREATE TABLE patients (id int PRIMARY KEY, ssn text, last text);
		CREATE TABLE encounters (id int PRIMARY KEY, patient int, cost int);
		INSERT INTO patients VALUES (1, '111', 'Ek'), (2, '222', 'Al'), (3, NULL, 'Ek');
		INSERT INTO encounters VALUES (10, 1, 5), (11, 1, 7), (12, 2, 9);`)
	queries := []string{
		"SELECT ssn FROM patients WHERE id = 2",
		"SELECT * FROM public.patients ORDER BY 1",
		"SELECT FROM patients",
		"select p.last, e.cost from patients p left join encounters e on e.patient = p.id " +
			"order by p.id, e.id",
		"SELECT ssn IS DISTINCT FROM 'x', extract(year FROM now()) > 0 /* FROM */ FROM " +
			"patients ORDER BY id LIMIT 2",
		"WITH x AS (SELECT id FROM patients) SELECT e.cost FROM encounters e, x " +
			"WHERE x.id = e.patient ORDER BY e.id",
		"SELECT p.ssn FROM patients p WHERE p.id = 1 FOR UPDATE",
		"SELECT row_number() OVER (ORDER BY id), last FROM patients",
		"SELECT generate_series(1, 2), ssn FROM patients ORDER BY id",
	}
	s := NewShaper(100)
	ctx := context.Background()
	for _, q := range queries {
		an, sh := shapeOf(t, s, q)
		if sh.NotAttributable != "" || len(sh.From) == 0 {
			t.Fatalf("%q: not attributable (%q)", q, sh.NotAttributable)
		}
		var exprs, aliases []string
		for i, f := range sh.From {
			exprs = append(exprs, f.QualifiedColumn("id"))
			aliases = append(aliases, fmt.Sprintf("privata_hidden_%d", i))
		}
		text, err := sh.AppendTargets(q, an.Statements[0], exprs, aliases)
		if err != nil {
			t.Fatalf("%q: %v", q, err)
		}
		before, err := conn.PgConn().Exec(ctx, q).ReadAll()
		if err != nil {
			t.Fatalf("%q: %v", q, err)
		}
		after, err := conn.PgConn().Exec(ctx, text).ReadAll()
		if err != nil {
			t.Fatalf("rewritten %q: %v", text, err)
		}
		b, a := before[0], after[0]
		if len(a.Rows) != len(b.Rows) || len(a.FieldDescriptions) != len(b.FieldDescriptions)+
			len(exprs) {
			t.Fatalf("%q: %d rows of %d columns, rewritten %d rows of %d", q, len(b.Rows),
				len(b.FieldDescriptions), len(a.Rows), len(a.FieldDescriptions))
		}
		for i := range b.Rows {
			if !reflect.DeepEqual(b.Rows[i], a.Rows[i][:len(b.Rows[i])]) {
				t.Errorf("%q row %d: %q, rewritten %q", q, i, b.Rows[i], a.Rows[i])
			}
		}
	}
}

func TestNormalizeHoldsNoValue(t *testing.T) {
	cases := []struct{ sql, want string }{
		{"SELECT ssn FROM patients WHERE ssn = '123-45-6789' AND id = $1",
			"SELECT ssn FROM patients WHERE ssn = $2 AND id = $1"},
		{"select *\n  from p /* ssn 999-11-2222 */ where n = 4242 -- 555\n",
			"select * from p where n = $1"},
		{"SELECT E'O\\'Brien', $$Smith$$, x'1F', 1.5e3, -17 FROM t",
			"SELECT $1, $2, $3, $4, -$5 FROM t"},
	}
	for _, c := range cases {
		sql, want := c.sql, c.want
		an, err := NewAnalyzer(0).Analyze(sql)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Normalize(sql, an.Statements[0])
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("Normalize(%q) = %q, want %q", sql, got, want)
		}
		for _, v := range []string{"123-45-6789", "999", "4242", "555", "Brien", "Smith", "17"} {
			if strings.Contains(got, v) {
				t.Errorf("Normalize(%q) = %q holds %q", sql, got, v)
			}
		}
	}
}

// AppendTargetsIn names the schema of a single FROM item the text leaves
// unqualified, and leaves a qualified one as it is.
func TestAppendTargetsQualifiesTheTable(t *testing.T) {
	s := NewShaper(100)
	for _, c := range []struct{ sql, want string }{
		{`SELECT ssn FROM patients WHERE id = $1`,
			`SELECT ssn , "patients"."id" AS "h" FROM "public".patients WHERE id = $1`},
		{`select ssn from /* c */ ONLY "patients" p where p.id = $1`,
			`select ssn , "p"."id" AS "h" from /* c */ ONLY "public"."patients" p where p.id = $1`},
		{`SELECT ssn FROM public.patients WHERE id = $1`,
			`SELECT ssn , "public"."patients"."id" AS "h" FROM public.patients WHERE id = $1`},
	} {
		an, sh := shapeOf(t, s, c.sql)
		got, err := sh.AppendTargetsIn(c.sql, an.Statements[0], []string{sh.From[0].QualifiedColumn("id")},
			[]string{"h"}, "public")
		if err != nil || got != c.want {
			t.Errorf("%s:\n got %s (%v)\nwant %s", c.sql, got, err, c.want)
		}
	}
	an, sh := shapeOf(t, s, `SELECT 1 FROM patients p, encounters e`)
	if _, err := sh.AppendTargetsIn(`SELECT 1 FROM patients p, encounters e`, an.Statements[0],
		[]string{"1", "2"}, []string{"a", "b"}, "public"); err == nil {
		t.Error("two FROM items were qualified")
	}
}
