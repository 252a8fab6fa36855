package proxy

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// splitPolicy classifies patients and encounters of the test database;
// the same tables in schema plain stay plain, for comparison.
const splitPolicy = `version: 1
regions:
  main: {cluster: main}
subjects:
  patients: {key: id, identity: [ssn, first, last], clinical: [visits, note]}
children:
  encounters: {subject: {table: patients, column: patient}}
roles:
  clinician: {identity: full, clinical: full}
  analyst: {identity: none, clinical: full}
  reception: {identity: masked, clinical: none}
`

// splitTables are created in public (then split) and in plain.
const splitTables = `
CREATE TABLE patients (id int PRIMARY KEY, ssn text UNIQUE, first text, last text,
    visits int NOT NULL DEFAULT 0, note text);
CREATE TABLE encounters (id bigserial PRIMARY KEY, patient int REFERENCES patients,
    code text, cost numeric, at timestamptz, tags text[], data bytea);
INSERT INTO patients (id, ssn, first, last, visits, note) VALUES
    (1, '111-11-1111', 'Ann', 'Lee', 1, 'a "quoted", note'), (2, '222-22-2222', 'Bo', 'Kim', 2, NULL),
    (3, '333-33-3333', 'Cy', E'N\tg', 3, E'tab\there');
INSERT INTO encounters (patient, code, cost, at, tags, data) VALUES
    (1, 'E1', 10.5, '2024-01-02 03:04:05+00', '{a,b}', '\x00ff'),
    (2, 'E2', NULL, NULL, '{}', NULL), (1, 'E,3', 30, '2024-02-03 00:00:00+00', '{"x y"}', '\x01');
GRANT ALL ON patients, encounters TO clinician;
GRANT ALL ON SEQUENCE encounters_id_seq TO clinician;
`

// newSplitEnv starts Privata in front of a database whose public tables
// are split by splitPolicy, with plain twins in schema plain.
func newSplitEnv(t *testing.T) *env {
	t.Helper()
	e := newEnv(t, envOptions{policy: splitPolicy})
	admin := e.admin(t)
	ctx := context.Background()
	for _, schema := range []string{"plain", "public"} {
		sql := fmt.Sprintf("CREATE SCHEMA IF NOT EXISTS %s; SET search_path = %s;", schema, schema) +
			splitTables + "GRANT USAGE ON SCHEMA plain TO clinician, analyst, reception;"
		if _, err := admin.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := admin.Exec(ctx, "RESET search_path"); err != nil {
		t.Fatal(err)
	}
	e.applyPolicy(t, splitPolicy)
	return e
}

// rowsOf runs a query and returns its command tag and rows as text.
func rowsOf(t *testing.T, conn *pgx.Conn, sql string, args ...any) string {
	t.Helper()
	rows, err := conn.Query(context.Background(), sql, args...)
	if err != nil {
		return "ERROR " + sqlstate(err)
	}
	var b strings.Builder
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%v\n", vals)
	}
	if err := rows.Err(); err != nil {
		return "ERROR " + sqlstate(err)
	}
	return rows.CommandTag().String() + "\n" + b.String()
}

// twin returns sql on the plain tables.
func twin(sql string) string {
	r := strings.NewReplacer("INTO patients", "INTO plain.patients", "INTO encounters",
		"INTO plain.encounters", "FROM patients", "FROM plain.patients",
		"FROM encounters", "FROM plain.encounters", "COPY patients", "COPY plain.patients",
		"COPY encounters", "COPY plain.encounters", "TRUNCATE patients", "TRUNCATE plain.patients",
		", encounters", ", plain.encounters", "TRUNCATE encounters", "TRUNCATE plain.encounters")
	return r.Replace(sql)
}

func TestUpsertsThroughPrivata(t *testing.T) {
	e := newSplitEnv(t)
	cases := []struct {
		sql  string
		args []any
	}{
		{`INSERT INTO patients (id, ssn, first) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING
			RETURNING id, first`, []any{4, "444", "Di"}},
		{`INSERT INTO patients (id, ssn, first) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING`,
			[]any{1, "x", "X"}},
		{`INSERT INTO patients AS p (id, ssn, visits) VALUES ($1, $2, $3), (5, '555', 1)
			ON CONFLICT (ssn) DO UPDATE SET visits = p.visits + excluded.visits
			WHERE p.visits < 100 RETURNING *`, []any{7, "222-22-2222", 10}},
		{`INSERT INTO patients (id, first) SELECT $1::int, $2 ON CONFLICT (id)
			DO UPDATE SET first = excluded.first, note = 'upserted' RETURNING id, first, note`,
			[]any{3, "Cyrus"}},
		{`INSERT INTO encounters (id, patient, code, cost) VALUES ($1, $2, $3, $4)
			ON CONFLICT (id) DO UPDATE SET cost = excluded.cost RETURNING id, patient, code, cost`,
			[]any{1, 1, "E1", 99.5}},
		{`INSERT INTO patients (id) VALUES ($1) ON CONFLICT (first) DO NOTHING`, []any{9}},
	}
	for _, mode := range modes {
		conn := connectMode(t, e, "clinician", mode)
		for i, c := range cases {
			got := rowsOf(t, conn, c.sql, c.args...)
			want := rowsOf(t, conn, twin(c.sql), c.args...)
			if got != want {
				t.Errorf("%v case %d:\nsplit:\n%s\nplain:\n%s", mode, i, got, want)
			}
		}
	}
	admin := e.admin(t)
	for _, q := range []string{`SELECT p::text FROM %spatients p ORDER BY id`,
		`SELECT e::text FROM %sencounters e ORDER BY id`} {
		if a, b := rowsOf(t, admin, fmt.Sprintf(q, "")), rowsOf(t, admin, fmt.Sprintf(q, "plain.")); a != b {
			t.Errorf("contents differ:\nsplit:\n%s\nplain:\n%s", a, b)
		}
	}
}

// A prepared upsert describes its parameters and rows as on a plain table.
func TestUpsertDescribedAsOnAPlainTable(t *testing.T) {
	e := newSplitEnv(t)
	conn := e.connect(t, "clinician")
	ctx := context.Background()
	for i, sql := range []string{
		`INSERT INTO patients (id, first) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET last = $3`,
		`INSERT INTO patients (id, first) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING RETURNING id, first, visits`,
		`INSERT INTO encounters (patient, cost) SELECT $1, $2 ON CONFLICT (id) DO UPDATE SET cost = $2 RETURNING *`,
	} {
		split, err := conn.Prepare(ctx, fmt.Sprintf("s%d", i), sql)
		if err != nil {
			t.Fatalf("prepare: %v", err)
		}
		plain, err := conn.Prepare(ctx, fmt.Sprintf("p%d", i), twin(sql))
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(split.ParamOIDs) != fmt.Sprint(plain.ParamOIDs) {
			t.Errorf("%s: parameters %v, on a plain table %v", sql, split.ParamOIDs, plain.ParamOIDs)
		}
		if a, b := describeFields(split.Fields), describeFields(plain.Fields); a != b {
			t.Errorf("%s: rows %s, on a plain table %s", sql, a, b)
		}
	}
}

// describeFields renders a row description without the table each column
// comes from (the view, not the plain table).
func describeFields(fs []pgconn.FieldDescription) string {
	var b strings.Builder
	for _, f := range fs {
		fmt.Fprintf(&b, "%s:%d:%d:%d ", f.Name, f.DataTypeOID, f.TypeModifier, f.DataTypeSize)
	}
	return b.String()
}

// Many clients upserting one key at once, over both protocols, leave one
// row, apply every update once, and see no error: as on a plain table.
func TestConcurrentUpsertsOfOneKey(t *testing.T) {
	e := newSplitEnv(t)
	const clients, rounds = 16, 20
	conns := make([]*pgx.Conn, clients)
	for i := range conns {
		conns[i] = connectMode(t, e, "clinician", modes[i%len(modes)])
	}
	ctx := context.Background()
	// Each round, every client upserts the round's key at once. affected
	// is the n of INSERT 0 n a round adds up to; visits what the row holds
	// at the end.
	statements := []struct {
		name, sql, prefix string
		args              func(round, client int) []any
		affected, visits  int
	}{
		{"update by key", `INSERT INTO patients (id, ssn, visits) VALUES ($1, $2, 1)
			ON CONFLICT (id) DO UPDATE SET visits = patients.visits + 1`, "k-",
			func(r, c int) []any { return []any{1000 + r, fmt.Sprintf("k-%d", r)} }, clients, clients},
		{"update by an identity column", `INSERT INTO patients (id, ssn, visits) VALUES ($1, $2, 1)
			ON CONFLICT (ssn) DO UPDATE SET visits = patients.visits + 1`, "s-",
			func(r, c int) []any { return []any{2000 + r*clients + c, fmt.Sprintf("s-%d", r)} },
			clients, clients},
		{"do nothing", `INSERT INTO patients (id, ssn, visits) VALUES ($1, $2, 1)
			ON CONFLICT DO NOTHING`, "n-",
			func(r, c int) []any { return []any{90000 + r, fmt.Sprintf("n-%d", r)} }, 1, 1},
	}
	for _, st := range statements {
		t.Run(st.name, func(t *testing.T) {
			for r := 0; r < rounds; r++ {
				start := make(chan struct{})
				type result struct {
					n   int64
					err error
				}
				results := make(chan result, clients)
				for c, conn := range conns {
					go func() {
						<-start
						tag, err := conn.Exec(ctx, st.sql, st.args(r, c)...)
						results <- result{tag.RowsAffected(), err}
					}()
				}
				close(start)
				affected := 0
				for range conns {
					res := <-results
					if res.err != nil {
						t.Fatalf("round %d: %v", r, res.err)
					}
					affected += int(res.n)
				}
				if affected != st.affected {
					t.Errorf("round %d: INSERT 0 n adds up to %d, want %d", r, affected, st.affected)
				}
			}
			got := rowsOf(t, e.admin(t), `SELECT count(*), count(DISTINCT ssn), min(visits), max(visits)
				FROM patients WHERE ssn LIKE $1`, st.prefix+"%")
			want := fmt.Sprintf("SELECT 1\n[%d %d %d %d]\n", rounds, rounds, st.visits, st.visits)
			if got != want {
				t.Errorf("rows left: %q, want %q", got, want)
			}
		})
	}
}

// copyOut runs COPY ... TO STDOUT and returns what it wrote, or the error.
func copyOut(t *testing.T, conn *pgx.Conn, sql string) string {
	t.Helper()
	var b strings.Builder
	tag, err := conn.PgConn().CopyTo(context.Background(), &b, sql)
	if err != nil {
		return "ERROR " + sqlstate(err)
	}
	return tag.String() + "\n" + b.String()
}

func TestCopyThroughPrivata(t *testing.T) {
	e := newSplitEnv(t)
	conn := e.connect(t, "clinician")
	ctx := context.Background()
	outs := []string{
		`COPY patients TO STDOUT`,
		`COPY patients (last, id, note) TO STDOUT`,
		`COPY patients TO STDOUT WITH (FORMAT csv, HEADER, FORCE_QUOTE (first))`,
		`COPY encounters TO STDOUT CSV HEADER DELIMITER ';' NULL 'none'`,
		`COPY encounters (id, tags, data, at) TO STDOUT (FORMAT text, NULL '\N', ENCODING 'UTF8')`,
		`COPY encounters TO STDOUT WITH (FORMAT binary)`,
		`COPY patients (id, ssn) TO STDOUT (FORMAT binary)`,
	}
	for _, sql := range outs {
		got, want := copyOut(t, conn, sql), copyOut(t, conn, twin(sql))
		if got != want || strings.HasPrefix(got, "ERROR") {
			t.Errorf("%s:\nsplit:\n%q\nplain:\n%q", sql, got, want)
		}
	}

	// COPY FROM in each format, with what COPY TO of the plain tables gave.
	ins := []struct{ out, in string }{
		{`COPY (SELECT id + 100, 'n' || ssn, first, last, visits, note FROM plain.patients) TO STDOUT`,
			`COPY patients FROM STDIN`},
		{`COPY (SELECT id + 200, 'c' || ssn, first, note FROM plain.patients) TO STDOUT (FORMAT csv, HEADER)`,
			`COPY patients (id, ssn, first, note) FROM STDIN (FORMAT csv, HEADER)`},
		{`COPY (SELECT id + 300, 'b' || ssn, first, last, visits, note FROM plain.patients) TO STDOUT (FORMAT binary)`,
			`COPY patients FROM STDIN (FORMAT binary)`},
		{`COPY (SELECT patient, code, cost, at, tags, data FROM plain.encounters) TO STDOUT (FORMAT binary)`,
			`COPY encounters (patient, code, cost, at, tags, data) FROM STDIN (FORMAT binary)`},
	}
	data := make([]string, len(ins))
	for i, c := range ins {
		out := copyOut(t, conn, c.out)
		data[i] = out[strings.IndexByte(out, '\n')+1:]
	}
	for i, c := range ins {
		for _, target := range []string{c.in, twin(c.in)} {
			if _, err := conn.PgConn().CopyFrom(ctx, strings.NewReader(data[i]), target); err != nil {
				t.Fatalf("%s: %v", target, err)
			}
		}
	}
	admin := e.admin(t)
	for _, q := range []string{`SELECT p::text FROM %spatients p ORDER BY id`,
		`SELECT e::text FROM %sencounters e ORDER BY id`} {
		if a, b := rowsOf(t, admin, fmt.Sprintf(q, "")), rowsOf(t, admin, fmt.Sprintf(q, "plain.")); a != b {
			t.Errorf("after COPY FROM:\nsplit:\n%s\nplain:\n%s", a, b)
		}
	}

	// A role that reads identity values masked gets them masked by COPY too.
	rec := e.connect(t, "reception")
	out := copyOut(t, rec, `COPY patients TO STDOUT (FORMAT csv)`)
	if strings.Contains(out, "111-11-1111") || !strings.Contains(out, "\n1,1*********1,A*n,L*e,,\n") {
		t.Errorf("reception's COPY: %q", out)
	}
	if want := copyOut(t, rec, `COPY (SELECT * FROM patients) TO STDOUT (FORMAT csv)`); out != want {
		t.Errorf("reception's COPY of the table %q differs from its COPY of SELECT * %q", out, want)
	}
}

func TestTruncateThroughPrivata(t *testing.T) {
	e := newSplitEnv(t)
	conn := e.connect(t, "clinician")
	ctx := context.Background()
	for _, sql := range []string{
		`TRUNCATE patients`,
		`TRUNCATE encounters RESTART IDENTITY`,
		`TRUNCATE patients CASCADE`,
	} {
		var got, want string
		for i, q := range []string{sql, twin(sql)} {
			tag, err := conn.Exec(ctx, q)
			out := tag.String()
			if err != nil {
				out = "ERROR " + sqlstate(err)
			}
			if i == 0 {
				got = out
			} else {
				want = out
			}
		}
		if got != want {
			t.Errorf("%s: split %s, plain %s", sql, got, want)
		}
	}
	// RESTART IDENTITY restarted the serial sequence of encounters' base table.
	for _, schema := range []string{"", "plain."} {
		if _, err := conn.Exec(ctx, `INSERT INTO `+schema+`patients (id) VALUES (1);
			INSERT INTO `+schema+`encounters (patient) VALUES (1)`); err != nil {
			t.Fatal(err)
		}
	}
	admin := e.admin(t)
	if a, b := rowsOf(t, admin, `SELECT id FROM encounters`), rowsOf(t, admin, `SELECT id FROM plain.encounters`); a != b {
		t.Errorf("after TRUNCATE ... RESTART IDENTITY: %s, on plain tables %s", a, b)
	}
	// Truncating needs the privilege to truncate the table.
	_, err := e.connect(t, "analyst").Exec(ctx, `TRUNCATE encounters`)
	if sqlstate(err) != codeInsufficientPriv {
		t.Errorf("analyst's TRUNCATE: %v", err)
	}
}

// Statements on split tables that Privata does not carry out are refused
// with 0A000, naming the table and what is not supported, in both
// protocols; the session goes on.
func TestRefusedOnSplitTables(t *testing.T) {
	e := newSplitEnv(t)
	ctx := context.Background()
	refused := []struct{ sql, what string }{
		{`MERGE INTO patients p USING (SELECT 1 AS id) s ON p.id = s.id
			WHEN MATCHED THEN UPDATE SET visits = 0`, "MERGE is not supported on table public.patients"},
		{`LOCK TABLE patients IN EXCLUSIVE MODE`, "LOCK TABLE is not supported on table public.patients"},
		{`CLUSTER encounters`, "CLUSTER is not supported on table public.encounters"},
		{`GRANT SELECT ON patients TO analyst`, "GRANT or REVOKE is not supported on table public.patients"},
		{`CREATE VIEW v AS SELECT id FROM patients`, "CREATE VIEW is not supported on table public.patients"},
		{`CREATE PUBLICATION p FOR TABLE encounters`, "a publication is not supported on table public.encounters"},
		{`DO $$BEGIN INSERT INTO patients (id) VALUES (1) ON CONFLICT DO NOTHING; END$$`,
			"INSERT ... ON CONFLICT on table public.patients inside a DO block"},
		{`WITH x AS (INSERT INTO patients (id) VALUES (1) ON CONFLICT DO NOTHING RETURNING id) SELECT * FROM x`,
			"supported only as a statement of its own"},
		{`INSERT INTO patients (id) VALUES (1) ON CONFLICT ((id + 1)) DO NOTHING`,
			"a conflict target other than columns or a constraint"},
	}
	for _, mode := range modes {
		conn := connectMode(t, e, "clinician", mode)
		for _, c := range refused {
			_, err := conn.Exec(ctx, c.sql)
			var pe *pgconn.PgError
			if !errors.As(err, &pe) || pe.Code != codeFeatureNotSupport || !strings.Contains(pe.Message, c.what) ||
				pe.Hint == "" {
				t.Errorf("%v %s: %v", mode, c.sql, err)
			}
		}
		// UPDATE ... WHERE CURRENT OF, in a transaction with a cursor.
		tx, err := conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, `DECLARE c CURSOR FOR SELECT id FROM patients`); err != nil {
			t.Fatal(err)
		}
		_, err = tx.Exec(ctx, `UPDATE patients SET visits = 0 WHERE CURRENT OF c`)
		if sqlstate(err) != codeFeatureNotSupport {
			t.Errorf("%v WHERE CURRENT OF: %v", mode, err)
		}
		tx.Rollback(ctx)
		// The session is fine; a shared lock is allowed.
		tx, err = conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, `LOCK TABLE patients IN ACCESS SHARE MODE`); err != nil {
			t.Errorf("%v LOCK ... IN ACCESS SHARE MODE: %v", mode, err)
		}
		tx.Rollback(ctx)
	}
	if n := counterValue(t, e, "privata_refused_statements_total", codeFeatureNotSupport); n < 20 {
		t.Errorf("privata_refused_statements_total{sqlstate=0A000} = %v", n)
	}
}

// A text that both the read path (hidden columns on a SELECT, for the
// audit) and the split-table rewrite (an upsert) change reaches upstream
// with both changes: the SELECT returns its own columns, the upsert its
// own rows, and the audit names the subject the SELECT returned.
func TestUpsertBesideAuditedSelect(t *testing.T) {
	re := newReadEnv(t, readOptions{})
	p := re.patients[0]
	conn := re.connect(t, "clinician")
	ctx := context.Background()
	results, err := conn.PgConn().Exec(ctx, `SELECT id, first FROM patients WHERE id = '`+p.ID+`';
		INSERT INTO patients (id, ssn, first) VALUES ('`+p.ID+`', 'x', 'Y')
		ON CONFLICT (id) DO UPDATE SET first = excluded.first RETURNING first`).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != 2 || len(results[0].FieldDescriptions) != 2 || len(results[0].Rows) != 1 ||
		string(results[0].Rows[0][1]) != p.First || results[1].CommandTag.String() != "INSERT 0 1" ||
		string(results[1].Rows[0][0]) != "Y" {
		t.Fatalf("results: %+v", results)
	}
	found := false
	for _, r := range re.records(t) {
		if strings.HasPrefix(r.Statement, "SELECT") && slices.Contains(r.Subjects, p.Pseudonym.String()) {
			found = true
		}
	}
	if !found {
		t.Errorf("no read record names the patient the SELECT returned")
	}
}

// Privata's storage schemas stay out of reach through the search path:
// a session may not put them on it, and one that starts with them there
// reaches nothing by unqualified names.
func TestStorageSchemasOffTheSearchPath(t *testing.T) {
	e := newSplitEnv(t)
	ctx := context.Background()
	conn := e.connect(t, "analyst")
	for _, sql := range []string{
		`SET search_path = privata_identity, public`,
		`SELECT set_config('search_path', 'privata_clinical', false)`,
	} {
		if _, err := conn.Exec(ctx, sql); sqlstate(err) != "0A000" {
			t.Errorf("%s: %v, want 0A000", sql, err)
		}
	}
	if _, err := conn.Exec(ctx, `SELECT set_config('search_path', $1, false)`, "privata_identity"); sqlstate(err) != "0A000" {
		t.Errorf("a search_path bound as a parameter: %v, want 0A000", err)
	}
	started, err := pgx.Connect(ctx, e.url("analyst")+"&search_path=privata_identity,public")
	if err != nil {
		t.Fatal(err)
	}
	defer started.Close(ctx)
	if _, err := started.Exec(ctx, `SELECT id, privata_pseudonym FROM patients`); sqlstate(err) != "42501" {
		t.Errorf("an unqualified name with privata_identity on the startup search path: %v, want 42501", err)
	}
	// An ordinary path still works, and the tables read as before.
	if _, err := conn.Exec(ctx, `SET search_path = plain, public`); err != nil {
		t.Fatal(err)
	}
	if got := rowsOf(t, conn, `SELECT count(*) FROM public.patients`); got != "SELECT 1\n[3]\n" {
		t.Errorf("after SET search_path: %s", got)
	}
}
