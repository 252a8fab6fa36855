package rewrite

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// describeRelations renders relations as "name[ alias] access", with "()"
// after a function's name.
func describeRelations(st *Statement) []string {
	out := make([]string, 0, len(st.Relations))
	for _, r := range st.Relations {
		s := r.QualifiedName()
		if r.Function {
			s += "()"
		}
		if r.Alias != "" {
			s += " " + r.Alias
		}
		out = append(out, s+" "+accessCode(r.Access))
	}
	return out
}

// describeColumns renders columns as "owner.column access", sorted and
// without repeats. The owner is the relation's alias or name, or
// "?{a,b}" listing the candidates of an unresolved column.
func describeColumns(st *Statement) []string {
	owner := func(i int) string {
		r := st.Relations[i]
		if r.Alias != "" {
			return r.Alias
		}
		return r.QualifiedName()
	}
	var out []string
	for _, c := range st.Columns {
		who := ""
		if c.Relation >= 0 {
			who = owner(c.Relation)
		} else {
			names := make([]string, 0, len(c.Candidates))
			for _, i := range c.Candidates {
				names = append(names, owner(i))
			}
			who = "?{" + strings.Join(names, ",") + "}"
		}
		name := c.Name
		if c.Star {
			name = "*"
		}
		s := fmt.Sprintf("%s.%s %s", who, name, accessCode(c.Access))
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	slices.Sort(out)
	return out
}

func accessCode(a Access) string {
	return map[Access]string{Read: "r", Write: "w", Read | Write: "rw"}[a]
}

func TestRelationsAndColumns(t *testing.T) {
	cases := []struct {
		name      string
		sql       string
		relations []string
		columns   []string
	}{
		{
			name:      "an unqualified column belongs to the only table in FROM",
			sql:       "SELECT ssn FROM patients p WHERE p.id = $1",
			relations: []string{"patients p r"},
			columns:   []string{"p.id r", "p.ssn r"},
		},
		{
			name:      "a join resolves qualified columns and leaves the others open",
			sql:       "SELECT p.ssn, code FROM patients p JOIN encounters e ON e.patient = p.id",
			relations: []string{"patients p r", "encounters e r"},
			columns:   []string{"?{p,e}.code r", "e.patient r", "p.id r", "p.ssn r"},
		},
		{
			name: "a subquery's unqualified columns may be its own or correlated",
			sql: "SELECT id FROM patients WHERE id IN " +
				"(SELECT patient FROM encounters WHERE code = 'x')",
			relations: []string{"patients r", "encounters r"},
			columns: []string{"?{encounters,patients}.code r",
				"?{encounters,patients}.patient r", "patients.id r"},
		},
		{
			name:      "a derived table's columns come from inside it",
			sql:       "SELECT x FROM (SELECT ssn AS x FROM patients) s",
			relations: []string{"patients r"},
			columns:   []string{"patients.ssn r"},
		},
		{
			name: "a WITH query's name is not a relation",
			sql: "WITH recent AS (SELECT * FROM encounters WHERE code > 'a') " +
				"SELECT r.code FROM recent r",
			relations: []string{"encounters r"},
			columns:   []string{"encounters.* r", "encounters.code r"},
		},
		{
			name: "a WITH query's body sees the table its name shadows",
			sql: "WITH patients AS (SELECT * FROM patients WHERE state = 'x') " +
				"SELECT ssn FROM patients",
			relations: []string{"patients r"},
			columns:   []string{"patients.* r", "patients.state r"},
		},
		{
			name: "a recursive WITH query refers to itself",
			sql: "WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM t WHERE n < 10) " +
				"SELECT n FROM t",
		},
		{
			name:      "INSERT ... SELECT writes the listed columns and reads the source",
			sql:       "INSERT INTO patients (id, ssn) SELECT id, ssn FROM staging",
			relations: []string{"patients w", "staging r"},
			columns:   []string{"patients.id w", "patients.ssn w", "staging.id r", "staging.ssn r"},
		},
		{
			name:      "INSERT without a column list writes every column",
			sql:       "INSERT INTO public.patients VALUES ($1, $2)",
			relations: []string{"public.patients w"},
			columns:   []string{"public.patients.* w"},
		},
		{
			name: "ON CONFLICT reads the conflict target and EXCLUDED, RETURNING reads",
			sql: "INSERT INTO patients AS t (id, ssn) VALUES (1, 'x') ON CONFLICT (id) " +
				"DO UPDATE SET ssn = excluded.ssn WHERE t.state IS NULL RETURNING id",
			relations: []string{"patients t rw"},
			columns:   []string{"t.id r", "t.id w", "t.ssn r", "t.ssn w", "t.state r"},
		},
		{
			name: "UPDATE ... FROM writes the target and reads both",
			sql: "UPDATE patients p SET ssn = s.ssn FROM staging s WHERE s.id = p.id " +
				"RETURNING p.first",
			relations: []string{"patients p rw", "staging s r"},
			columns:   []string{"p.first r", "p.id r", "p.ssn w", "s.id r", "s.ssn r"},
		},
		{
			name: "UPDATE of several columns from one subquery",
			sql: "UPDATE patients SET (first, last) = " +
				"(SELECT s.first, s.last FROM staging s WHERE s.id = patients.id)",
			relations: []string{"patients rw", "staging s r"},
			columns: []string{"patients.first w", "patients.id r", "patients.last w",
				"s.first r", "s.id r", "s.last r"},
		},
		{
			name: "DELETE ... USING writes every column of the target",
			sql: "DELETE FROM patients USING encounters e WHERE e.patient = patients.id " +
				"RETURNING patients.ssn",
			relations: []string{"patients rw", "encounters e r"},
			columns:   []string{"e.patient r", "patients.* w", "patients.id r", "patients.ssn r"},
		},
		{
			name:      "COPY (query) TO reads what the query reads",
			sql:       "COPY (SELECT ssn FROM patients) TO STDOUT",
			relations: []string{"patients r"},
			columns:   []string{"patients.ssn r"},
		},
		{
			name:      "COPY table (columns) FROM writes those columns",
			sql:       "COPY patients (id, ssn) FROM STDIN WITH (FORMAT csv)",
			relations: []string{"patients w"},
			columns:   []string{"patients.id w", "patients.ssn w"},
		},
		{
			name:      "COPY table TO reads every column",
			sql:       "COPY public.patients TO STDOUT",
			relations: []string{"public.patients r"},
			columns:   []string{"public.patients.* r"},
		},
		{
			name:      "a star covers every item in FROM",
			sql:       "SELECT * FROM patients p, encounters e",
			relations: []string{"patients p r", "encounters e r"},
			columns:   []string{"e.* r", "p.* r"},
		},
		{
			name:      "a qualified star covers one item, USING columns stay open",
			sql:       "SELECT e.* FROM patients p JOIN encounters e USING (id)",
			relations: []string{"patients p r", "encounters e r"},
			columns:   []string{"?{p,e}.id r", "e.* r"},
		},
		{
			name:      "a table used as a value is a whole-row reference",
			sql:       "SELECT row_to_json(p) FROM patients p",
			relations: []string{"patients p r"},
			columns:   []string{"p.* r"},
		},
		{
			name:      "a function in FROM is a relation",
			sql:       "SELECT g.x FROM generate_series(1, 10) AS g(x)",
			relations: []string{"generate_series() g r"},
			columns:   []string{"g.x r"},
		},
		{
			name:      "schema-qualified column references",
			sql:       "SELECT public.patients.ssn FROM public.patients",
			relations: []string{"public.patients r"},
			columns:   []string{"public.patients.ssn r"},
		},
		{
			name:      "each side of a UNION has its own scope",
			sql:       "SELECT ssn FROM patients UNION SELECT code FROM encounters ORDER BY 1",
			relations: []string{"patients r", "encounters r"},
			columns:   []string{"encounters.code r", "patients.ssn r"},
		},
		{
			name:      "ORDER BY an output alias is not a column",
			sql:       "SELECT ssn AS s FROM patients ORDER BY s",
			relations: []string{"patients r"},
			columns:   []string{"patients.ssn r"},
		},
		{
			name: "a LATERAL subquery sees the items before it",
			sql: "SELECT p.id, x.code FROM patients p, " +
				"LATERAL (SELECT e.code FROM encounters e WHERE e.patient = p.id) x",
			relations: []string{"patients p r", "encounters e r"},
			columns:   []string{"e.code r", "e.patient r", "p.id r"},
		},
		{
			name: "MERGE writes the target and reads the source",
			sql: "MERGE INTO patients t USING staging s ON t.id = s.id " +
				"WHEN MATCHED AND s.deleted THEN DELETE " +
				"WHEN MATCHED THEN UPDATE SET ssn = s.ssn " +
				"WHEN NOT MATCHED THEN INSERT (id, ssn) VALUES (s.id, s.ssn)",
			relations: []string{"patients t rw", "staging s r"},
			columns: []string{"s.deleted r", "s.id r", "s.ssn r", "t.* w", "t.id r",
				"t.id w", "t.ssn w"},
		},
		{
			name: "a DELETE inside WITH writes",
			sql: "WITH gone AS (DELETE FROM patients WHERE id = 1 RETURNING *) " +
				"SELECT count(*) FROM gone",
			relations: []string{"patients rw"},
			columns:   []string{"patients.* r", "patients.* w", "patients.id r"},
		},
		{
			name:      "SELECT INTO writes the new table",
			sql:       "SELECT ssn INTO backup FROM patients",
			relations: []string{"patients r", "backup w"},
			columns:   []string{"patients.ssn r"},
		},
		{
			name:      "EXPLAIN ANALYZE is analysed as its statement",
			sql:       "EXPLAIN ANALYZE UPDATE patients SET ssn = NULL",
			relations: []string{"patients w"},
			columns:   []string{"patients.ssn w"},
		},
		{
			name:      "PREPARE is analysed as its statement",
			sql:       "PREPARE q(int) AS SELECT ssn FROM patients WHERE id = $1",
			relations: []string{"patients r"},
			columns:   []string{"patients.id r", "patients.ssn r"},
		},
		{
			name:      "CREATE VIEW writes the view and reads its query",
			sql:       "CREATE VIEW v AS SELECT ssn FROM patients",
			relations: []string{"v w", "patients r"},
			columns:   []string{"patients.ssn r"},
		},
		{
			name:      "DROP TABLE writes the tables it names",
			sql:       "DROP TABLE patients, public.encounters",
			relations: []string{"patients w", "public.encounters w"},
		},
		{
			name:      "CREATE INDEX writes its table",
			sql:       "CREATE INDEX ON patients (ssn)",
			relations: []string{"patients w"},
		},
		{
			name:      "ALTER TABLE writes its table and the one it references",
			sql:       "ALTER TABLE encounters ADD FOREIGN KEY (patient) REFERENCES patients (id)",
			relations: []string{"encounters w", "patients w"},
		},
		{
			name:      "TRUNCATE and GRANT write their tables",
			sql:       "TRUNCATE patients",
			relations: []string{"patients w"},
		},
		{
			name:      "GRANT writes the table",
			sql:       "GRANT SELECT ON patients TO analyst",
			relations: []string{"patients w"},
		},
		{
			name:      "COMMENT ON COLUMN writes its table",
			sql:       "COMMENT ON COLUMN public.patients.ssn IS 'x'",
			relations: []string{"public.patients w"},
		},
		{
			name: "a subquery in the target list",
			sql: "SELECT (SELECT max(e.code) FROM encounters e WHERE e.patient = p.id) " +
				"FROM patients p",
			relations: []string{"patients p r", "encounters e r"},
			columns:   []string{"e.code r", "e.patient r", "p.id r"},
		},
		{
			name:      "a join alias hides the names inside it",
			sql:       "SELECT j.ssn FROM (patients p JOIN encounters e ON e.patient = p.id) AS j",
			relations: []string{"patients p r", "encounters e r"},
			columns:   []string{"?{p,e}.ssn r", "e.patient r", "p.id r"},
		},
		{
			name:      "a DO block's statements are the statement's",
			sql:       "DO $$BEGIN UPDATE patients SET ssn = NULL WHERE id = 1; END$$",
			relations: []string{"patients rw"},
			columns:   []string{"patients.id r", "patients.ssn w"},
		},
		{
			// A call does not show what the body reads: the definition does.
			name:      "a function body's reads are the definition's",
			sql:       "CREATE FUNCTION f() RETURNS SETOF text LANGUAGE sql AS 'SELECT ssn FROM patients'",
			relations: []string{"patients r"},
		},
		{
			name:      "a function body's writes are not",
			sql:       "CREATE FUNCTION f() RETURNS void LANGUAGE sql AS 'INSERT INTO log VALUES (1)'",
			relations: nil,
		},
		{
			name:      "table_to_xml reads the table its constant names",
			sql:       `SELECT table_to_xml('Public."Patients"', true, false, '')`,
			relations: []string{"public.Patients r"},
			columns:   []string{"public.Patients.* r"},
		},
		{
			name:      "query_to_xml's constant query is read",
			sql:       "SELECT query_to_xml('SELECT ssn FROM patients', true, false, '')",
			relations: []string{"patients r"},
			columns:   []string{"patients.ssn r"},
		},
	}
	a := NewAnalyzer(0)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st := analyzeOne(t, a, c.sql)
			if st.Opaque != "" {
				t.Errorf("Opaque = %q", st.Opaque)
			}
			if got := describeRelations(st); !slices.Equal(got, c.relations) {
				t.Errorf("relations:\n got %q\nwant %q", got, c.relations)
			}
			if got := describeColumns(st); !slices.Equal(got, c.columns) {
				t.Errorf("columns:\n got %q\nwant %q", got, c.columns)
			}
		})
	}
}

func TestSeveralStatementsInOneText(t *testing.T) {
	text := "BEGIN; UPDATE patients SET ssn = NULL;;\n SELECT 1 ; COMMIT"
	an, err := NewAnalyzer(0).Analyze(text)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		kind Kind
		text string
	}{
		{Transaction, "BEGIN"}, {Update, " UPDATE patients SET ssn = NULL"},
		{Select, "\n SELECT 1 "}, {Transaction, " COMMIT"},
	}
	if len(an.Statements) != len(want) {
		t.Fatalf("%d statements, want %d", len(an.Statements), len(want))
	}
	for i, w := range want {
		st := an.Statements[i]
		got := text[st.Location : st.Location+st.Length]
		if st.Kind != w.kind || got != w.text {
			t.Errorf("statement %d: %v %q, want %v %q", i, st.Kind, got, w.kind, w.text)
		}
	}
}

func TestEmptyQueriesHaveNoStatements(t *testing.T) {
	for _, text := range []string{"", "   ", ";", " ; ;", "-- nothing\n", "/* nothing */"} {
		an, err := NewAnalyzer(0).Analyze(text)
		if err != nil || len(an.Statements) != 0 {
			t.Errorf("Analyze(%q) = %v, %v; want no statements", text, an, err)
		}
	}
}

func TestFingerprintIgnoresConstants(t *testing.T) {
	a := NewAnalyzer(0)
	one := analyzeOne(t, a, "SELECT ssn FROM patients WHERE id = 1")
	two := analyzeOne(t, a, "select ssn from patients where id = $1 /* c */")
	other := analyzeOne(t, a, "SELECT ssn FROM patients WHERE state = 'x'")
	if one.Fingerprint == "" || one.Fingerprint != two.Fingerprint {
		t.Errorf("fingerprints %q and %q differ", one.Fingerprint, two.Fingerprint)
	}
	if one.Fingerprint == other.Fingerprint {
		t.Errorf("different statements share fingerprint %q", one.Fingerprint)
	}
}

func TestStatementsThatReadTablesTheyDoNotName(t *testing.T) {
	a := NewAnalyzer(0)
	for sql, want := range map[string]string{
		"SELECT schema_to_xml('public', true, false, '')":             "schema_to_xml()",
		"SELECT database_to_xml(true, false, '')":                     "database_to_xml()",
		"SELECT table_to_xml(c.oid, true, false, '') FROM pg_class c": "table_to_xml()",
		"SELECT table_to_xml('not a name', true, false, '')":          "table_to_xml()",
	} {
		if st := analyzeOne(t, a, sql); !strings.Contains(st.Opaque, want) {
			t.Errorf("%s: Opaque = %q, want it to name %s", sql, st.Opaque, want)
		}
	}
}
