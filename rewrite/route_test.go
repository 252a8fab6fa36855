package rewrite

import (
	"fmt"
	"sort"
	"strings"
	"testing"
)

// describe renders hints compactly for comparison.
func describeHints(h *Hints) string {
	var b strings.Builder
	b.WriteString(h.Command)
	if h.Target != nil {
		b.WriteString(" " + h.Target.QualifiedName())
	}
	for _, r := range h.From {
		fmt.Fprintf(&b, " from:%s", r.QualifiedName())
	}
	if h.Columns != nil {
		fmt.Fprintf(&b, " cols:%s", strings.Join(h.Columns, ","))
	}
	for _, row := range h.Rows {
		b.WriteString(" row:")
		for i, v := range row {
			if i > 0 {
				b.WriteString(",")
			}
			b.WriteString(describeValue(v))
		}
	}
	if h.FromQuery {
		b.WriteString(" query")
	}
	for _, e := range h.Equal {
		rel := "?"
		if e.Relation != nil {
			rel = e.Relation.Name
		}
		var vs []string
		for _, v := range e.Values {
			vs = append(vs, describeValue(v))
		}
		fmt.Fprintf(&b, " %s.%s=%s", rel, e.Column, strings.Join(vs, "|"))
	}
	var set []string
	for k, v := range h.Set {
		set = append(set, k+":="+describeValue(v))
	}
	sort.Strings(set)
	for _, s := range set {
		b.WriteString(" " + s)
	}
	if h.Returning {
		b.WriteString(" returning")
	}
	if h.OnlyEqual {
		b.WriteString(" only")
	}
	var opts []string
	for k, v := range h.CopyOptions {
		opts = append(opts, k+"="+v)
	}
	sort.Strings(opts)
	if len(opts) > 0 {
		b.WriteString(" with:" + strings.Join(opts, ","))
	}
	return b.String()
}

func describeValue(v Value) string {
	switch {
	case v.Param > 0:
		return fmt.Sprintf("$%d", v.Param)
	case v.Null:
		return "NULL"
	case v.Default:
		return "DEFAULT"
	case v.Unknown:
		return "?"
	}
	return "'" + v.Const + "'"
}

func TestRouteHintsReadValuesAndConditions(t *testing.T) {
	cases := []struct{ name, sql, want string }{
		{"insert with literals", `INSERT INTO patients (id, state) VALUES ('a1', 'Stockholm'), ('a2', NULL)`,
			"INSERT patients cols:id,state row:'a1','Stockholm' row:'a2',NULL"},
		{"insert with parameters and casts", `INSERT INTO public.patients (id, state, n)
			VALUES ($1::uuid, $2, DEFAULT) RETURNING id`,
			"INSERT public.patients cols:id,state,n row:$1,$2,DEFAULT returning"},
		{"insert without a column list", `INSERT INTO conditions VALUES (1, 'p', 2.5, now())`,
			"INSERT conditions row:'1','p','2.5',?"},
		{"insert from a query", `INSERT INTO patients SELECT * FROM staging`, "INSERT patients query"},
		{"insert default values", `INSERT INTO patients DEFAULT VALUES`, "INSERT patients query"},
		{"update by key", `UPDATE patients SET state = 'Uppsala', last = $2 WHERE id = $1`,
			"UPDATE patients patients.id=$1 last:=$2 state:='Uppsala' only"},
		{"update with an expression", `UPDATE patients p SET state = upper(state) WHERE p.id = 'x' AND true`,
			"UPDATE patients patients.id='x' state:=?"},
		{"delete with IN", `DELETE FROM conditions WHERE patient IN ($1, $2) RETURNING *`,
			"DELETE conditions conditions.patient=$1|$2 returning only"},
		{"or is not a condition", `DELETE FROM patients WHERE id = 'a' OR id = 'b'`, "DELETE patients"},
		{"select by key, reversed", `SELECT * FROM patients WHERE 'k' = id`,
			"SELECT from:patients patients.id='k' only"},
		{"select through a join", `SELECT c.code FROM conditions c JOIN patients p ON p.id = c.patient
			WHERE p.id = $1 AND c.code = 'x'`,
			"SELECT from:conditions from:patients patients.id=$1 conditions.code='x' only"},
		{"unqualified column, two relations", `SELECT 1 FROM a, b WHERE x = 1`,
			"SELECT from:a from:b ?.x='1' only"},
		{"a union has no hints", `SELECT * FROM a WHERE id = 1 UNION SELECT * FROM b`, "SELECT"},
		{"copy from", `COPY patients (id, state) FROM STDIN WITH (FORMAT csv, HEADER true, DELIMITER ';')`,
			"COPY FROM patients cols:id,state with:delimiter=;,format=csv,header=true"},
		{"copy to", `COPY conditions TO STDOUT`, "COPY TO conditions"},
		{"other", `CREATE TABLE t (a int)`, ""},
		{"rollback to a savepoint", `ROLLBACK TO SAVEPOINT s1`, "ROLLBACK TO"},
		{"start transaction", `START TRANSACTION ISOLATION LEVEL SERIALIZABLE`, "BEGIN"},
	}
	for _, c := range cases {
		hs, err := RouteHints(c.sql)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got := describeHints(hs[0]); got != c.want {
			t.Errorf("%s:\n got %s\nwant %s", c.name, got, c.want)
		}
	}
}

func TestRouteHintsRefuseWhatAnalyzeRefuses(t *testing.T) {
	if _, err := RouteHints("SELECT (((1"); err == nil || err.(*Error).SQLState != CodeSyntaxError {
		t.Fatalf("syntax error: %v", err)
	}
	deep := "SELECT " + strings.Repeat("(", 5000) + "1" + strings.Repeat(")", 5000)
	if _, err := RouteHints(deep); err == nil || err.(*Error).SQLState != CodeStatementTooComplex {
		t.Fatalf("deep nesting: %v", err)
	}
	hs, err := RouteHints("INSERT INTO a VALUES (1); DELETE FROM b WHERE k = 2")
	if err != nil || len(hs) != 2 || hs[1].Command != "DELETE" {
		t.Fatalf("two statements: %v %v", hs, err)
	}
}
