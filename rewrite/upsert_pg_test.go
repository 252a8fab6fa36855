package rewrite

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/privata/privata/internal/pgtest"
	"github.com/privata/privata/policy"
	"github.com/privata/privata/storage"
)

// splitSchema is a subject with an identity-side unique column, a
// clinical-side partial unique index and defaults; a child with a serial
// key and a unique column; a child without a primary key; children whose
// primary key and unique constraint include their reference.
const splitSchema = `
CREATE TABLE patients (id int PRIMARY KEY, ssn text UNIQUE, first text, last text,
    visits int NOT NULL DEFAULT 0, gender text DEFAULT 'u', mrn text, note text);
CREATE UNIQUE INDEX patients_mrn ON patients (mrn) WHERE note IS NULL;
CREATE TABLE encounters (id bigserial PRIMARY KEY, patient int REFERENCES patients,
    code text, cost numeric);
CREATE UNIQUE INDEX encounters_code ON encounters (code); -- as Prisma makes them
CREATE TABLE notes (patient int REFERENCES patients, tag text UNIQUE, body text);
CREATE TABLE profiles (patient int PRIMARY KEY REFERENCES patients, bio text);
CREATE TABLE stays (patient int REFERENCES patients, day int, ward text, PRIMARY KEY (patient, day),
    UNIQUE (patient, ward));
INSERT INTO patients (id, ssn, first, last, visits, mrn) VALUES
    (1, '111-11-1111', 'Ann', 'Lee', 1, 'M1'), (2, '222-22-2222', 'Bo', 'Kim', 2, 'M2'),
    (3, '333-33-3333', 'Cy', 'Ng', 3, NULL);
INSERT INTO encounters (patient, code, cost) VALUES (1, 'E1', 10), (2, 'E2', 20);
INSERT INTO notes VALUES (1, 'n1', 'first note');
INSERT INTO profiles VALUES (1, 'hello');
INSERT INTO stays VALUES (1, 1, 'A'), (2, 1, 'A');
`

const splitPolicy = `
version: 1
regions: {us: {cluster: us}}
subjects:
  patients: {key: id, identity: [ssn, first, last], clinical: [visits, gender, mrn, note]}
children:
  encounters: {subject: {table: patients, column: patient}}
  notes: {subject: {table: patients, column: patient}}
  profiles: {subject: {table: patients, column: patient}}
  stays: {subject: {table: patients, column: patient}}
roles:
  up_clinician: {identity: full, clinical: full}
  up_nurse: {identity: masked, clinical: full}
`

// upsertCases run on a plain database and, rewritten, on a split one; the
// results and the tables' contents afterwards must be the same. Each runs
// on fresh copies of splitSchema. want, when set, is the SQLSTATE both must
// fail with; split, when set, is the one the split database fails with
// where it differs on purpose.
var upsertCases = []struct {
	name, sql   string
	args        []string
	want, split string
}{
	{name: "new row, do nothing",
		sql: `INSERT INTO patients (id, ssn, first) VALUES (4, '444', 'Di') ON CONFLICT (id) DO NOTHING`},
	{name: "conflict on the key, do nothing",
		sql: `INSERT INTO patients (id, ssn, first) VALUES (1, '999', 'X') ON CONFLICT (id) DO NOTHING RETURNING *`},
	{name: "conflict on an identity column without a target",
		sql: `INSERT INTO patients (id, ssn) VALUES (9, '111-11-1111') ON CONFLICT DO NOTHING`},
	{name: "conflict outside the target fails",
		sql:  `INSERT INTO patients (id, ssn) VALUES (9, '111-11-1111') ON CONFLICT (id) DO NOTHING`,
		want: "23505"},
	{name: "update by key with RETURNING *",
		sql: `INSERT INTO patients (id, first, visits) VALUES (1, 'Anne', 5)
			ON CONFLICT (id) DO UPDATE SET first = excluded.first, visits = excluded.visits RETURNING *`},
	{name: "update that its WHERE skips",
		sql: `INSERT INTO patients AS p (id, first) VALUES (1, 'Zed') ON CONFLICT (id)
			DO UPDATE SET first = excluded.first WHERE p.visits > 10 RETURNING id`},
	{name: "update by an identity unique column, reading the old row",
		sql: `INSERT INTO patients AS p (id, ssn, visits) VALUES (7, '222-22-2222', 1)
			ON CONFLICT (ssn) DO UPDATE SET visits = p.visits + excluded.visits RETURNING id, visits, first`},
	{name: "update by a partial unique index with a WHERE on the target",
		sql: `INSERT INTO patients (id, mrn, note) VALUES (8, 'M1', NULL)
			ON CONFLICT (mrn) WHERE note IS NULL DO UPDATE SET note = 'merged' RETURNING id, note`},
	{name: "a partial index is no target without the WHERE",
		sql:  `INSERT INTO patients (id, mrn) VALUES (8, 'M1') ON CONFLICT (mrn) DO NOTHING`,
		want: "42P10"},
	{name: "several rows, inserted and updated, in order",
		sql: `INSERT INTO patients (id, ssn, first) VALUES (5, '555', 'E'), (2, '222-22-2222', 'Bob'),
			(6, '666', 'F'), (1, '111-11-1111', 'Annie')
			ON CONFLICT (id) DO UPDATE SET first = excluded.first RETURNING id, first`},
	{name: "one row twice, do update",
		sql:  `INSERT INTO patients (id, first) VALUES (1, 'A'), (1, 'B') ON CONFLICT (id) DO UPDATE SET first = excluded.first`,
		want: "21000"},
	{name: "a new row twice, do update",
		sql:  `INSERT INTO patients (id, ssn) VALUES (10, 'a'), (10, 'b') ON CONFLICT (id) DO UPDATE SET ssn = excluded.ssn`,
		want: "21000"},
	{name: "a new row twice, do nothing",
		sql: `INSERT INTO patients (id, ssn) VALUES (10, 'a'), (10, 'b') ON CONFLICT (id) DO NOTHING RETURNING ssn`},
	{name: "insert from a query",
		sql: `INSERT INTO patients (id, ssn, visits) SELECT g, 's' || g, g FROM generate_series(2, 5) g
			ORDER BY 1 DESC ON CONFLICT (id) DO UPDATE SET visits = patients.visits + 100 RETURNING id, visits`},
	{name: "insert from a set operation",
		sql: `INSERT INTO patients (id) SELECT 3 UNION SELECT 11 ORDER BY 1 ON CONFLICT (id) DO NOTHING RETURNING id`},
	{name: "a WITH query of the client's",
		sql: `WITH v (id, f) AS (VALUES (1, 'W'), (12, 'V'))
			INSERT INTO patients (id, first) SELECT id, f FROM v ON CONFLICT (id) DO UPDATE SET first = excluded.first`},
	{name: "ON CONSTRAINT",
		sql: `INSERT INTO patients (id, last) VALUES (2, 'K.') ON CONFLICT ON CONSTRAINT patients_pkey
			DO UPDATE SET last = excluded.last RETURNING last`},
	{name: "multiple assignment",
		sql: `INSERT INTO patients (id, first, last) VALUES (3, 'C', 'N') ON CONFLICT (id)
			DO UPDATE SET (first, last) = (excluded.last, excluded.first) RETURNING first, last`},
	{name: "a schema-qualified reference to the target",
		sql: `INSERT INTO public.patients (id, first) VALUES (1, 'x') ON CONFLICT (id)
			DO UPDATE SET first = public.patients.first || excluded.first RETURNING public.patients.first`},
	{name: "changing the key",
		sql: `INSERT INTO patients (id) VALUES (3) ON CONFLICT (id) DO UPDATE SET id = excluded.id + 100 RETURNING id`},
	{name: "no column list",
		sql: `INSERT INTO patients VALUES (13, '1313', 'M', 'N') ON CONFLICT DO NOTHING RETURNING visits, gender`},
	{name: "defaults in VALUES",
		sql: `INSERT INTO patients (id, visits, gender) VALUES (14, DEFAULT, DEFAULT), (1, 7, DEFAULT)
			ON CONFLICT (id) DO UPDATE SET gender = excluded.gender RETURNING id, visits, gender`},
	{name: "DEFAULT VALUES",
		sql: `INSERT INTO patients DEFAULT VALUES ON CONFLICT DO NOTHING`, want: "23502"},
	{name: "bound parameters",
		sql:  `INSERT INTO patients (id, first) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET first = $3 RETURNING first`,
		args: []string{"2", "B", "Bee"}},
	{name: "bound parameters in a query",
		sql:  `INSERT INTO patients (id, visits) SELECT $1, $2 ON CONFLICT (id) DO UPDATE SET visits = excluded.visits + $2`,
		args: []string{"1", "40"}},
	{name: "a child by its key",
		sql: `INSERT INTO encounters (id, patient, code, cost) VALUES (1, 2, 'E1', 99)
			ON CONFLICT (id) DO UPDATE SET cost = excluded.cost, patient = excluded.patient RETURNING patient, cost`},
	{name: "a child by a unique column, its key from a sequence",
		sql: `INSERT INTO encounters (patient, code) VALUES (3, 'E2'), (3, 'E3') ON CONFLICT (code) DO NOTHING RETURNING id, code`},
	{name: "a child by a unique index, do update",
		sql: `INSERT INTO encounters (patient, code, cost) VALUES (3, 'E2', 5) ON CONFLICT (code)
			DO UPDATE SET cost = encounters.cost + excluded.cost RETURNING id, patient, cost`},
	{name: "a child naming no subject",
		sql:  `INSERT INTO encounters (id, patient, code) VALUES (50, 99, 'E9') ON CONFLICT (id) DO NOTHING`,
		want: "23503"},
	{name: "a child without a primary key, do nothing",
		sql: `INSERT INTO notes VALUES (2, 'n1', 'x'), (2, 'n2', 'y') ON CONFLICT (tag) DO NOTHING RETURNING tag`},
	{name: "a child without a primary key, do update",
		sql:   `INSERT INTO notes VALUES (2, 'n1', 'x') ON CONFLICT (tag) DO UPDATE SET body = excluded.body`,
		split: "0A000"},
	{name: "a child whose key is its reference, do update",
		sql: `INSERT INTO profiles VALUES (1, 'again'), (2, 'new') ON CONFLICT (patient)
			DO UPDATE SET bio = profiles.bio || ' ' || excluded.bio RETURNING patient, bio`},
	{name: "a child whose key is its reference, ON CONSTRAINT",
		sql: `INSERT INTO profiles VALUES (1, 'x') ON CONFLICT ON CONSTRAINT profiles_pkey
			DO UPDATE SET bio = excluded.bio RETURNING bio`},
	{name: "a child whose key includes its reference, do update",
		sql: `INSERT INTO stays VALUES (1, 1, 'B'), (1, 2, 'C') ON CONFLICT (patient, day)
			DO UPDATE SET ward = excluded.ward RETURNING patient, day, ward`},
	{name: "a child's unique constraint with its reference, do update moving the row",
		sql: `INSERT INTO stays VALUES (2, 5, 'A') ON CONFLICT (ward, patient)
			DO UPDATE SET patient = 3 RETURNING patient, day, ward`},
	{name: "a child's unique constraint with its reference, do nothing",
		sql: `INSERT INTO stays VALUES (1, 9, 'A'), (3, 9, 'A') ON CONFLICT (patient, ward) DO NOTHING RETURNING patient`},
	{name: "do update without a target",
		sql: `INSERT INTO patients (id) VALUES (1) ON CONFLICT DO UPDATE SET first = 'x'`, want: "42601"},
	{name: "a target without a unique index",
		sql: `INSERT INTO patients (id, first) VALUES (1, 'x') ON CONFLICT (first) DO NOTHING`, want: "42P10"},
}

// splitPair is a plain database and a split one with the same rows.
type splitPair struct {
	plain, split *pgx.Conn
}

func newSplitPair(t *testing.T, p *policy.Policy) splitPair {
	t.Helper()
	c := pgtest.Shared(t)
	plainDB, splitDB := pgtest.NewDB(t, c), pgtest.NewDB(t, c)
	plain, split := plainDB.Connect(t), splitDB.Connect(t)
	mustExec(t, plain, splitSchema)
	mustExec(t, split, splitSchema)
	if _, err := storage.Apply(context.Background(), splitDB.Connect(t), p,
		storage.Target{Name: "test", URL: splitDB.URL(), Regions: []string{"us"}}); err != nil {
		t.Fatalf("apply: %v", err)
	}
	return splitPair{plain: plain, split: split}
}

// outcome runs a statement and describes what the client sees: the
// command tag and rows as text, or the error's SQLSTATE.
func outcome(conn *pgx.Conn, sql string, args []string) string {
	ctx := context.Background()
	var res []*pgconn.Result
	var err error
	if args == nil {
		res, err = conn.PgConn().Exec(ctx, sql).ReadAll()
	} else {
		vals := make([][]byte, len(args))
		for i, a := range args {
			vals[i] = []byte(a)
		}
		r := conn.PgConn().ExecParams(ctx, sql, vals, nil, nil, nil).Read()
		res, err = []*pgconn.Result{r}, r.Err
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return "ERROR " + pe.Code
	}
	if err != nil {
		return "ERROR " + err.Error()
	}
	var b strings.Builder
	for _, r := range res {
		b.WriteString(r.CommandTag.String())
		for _, row := range r.Rows {
			b.WriteString("\n ")
			for i, v := range row {
				if i > 0 {
					b.WriteString("|")
				}
				if v == nil {
					b.WriteString("<null>")
				}
				b.Write(v)
			}
		}
	}
	return b.String()
}

// tables returns every row of the test tables as text, in order.
func tables(t *testing.T, conn *pgx.Conn) string {
	t.Helper()
	var b strings.Builder
	for _, q := range []string{`SELECT p::text FROM patients p ORDER BY id`,
		`SELECT e::text FROM encounters e ORDER BY id`, `SELECT n::text FROM notes n ORDER BY tag`,
		`SELECT p::text FROM profiles p ORDER BY patient`, `SELECT s::text FROM stays s ORDER BY patient, day`} {
		rows, err := conn.Query(context.Background(), q)
		if err != nil {
			t.Fatal(err)
		}
		vals, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		b.WriteString(strings.Join(vals, "\n") + "\n--\n")
	}
	return b.String()
}

// viaPrivata analyses, decides and rewrites a statement as the proxy
// does, and runs the result.
func viaPrivata(t *testing.T, p *policy.Policy, conn *pgx.Conn, sql string, args []string) (string, string) {
	t.Helper()
	an, err := NewAnalyzer(0).Analyze(sql)
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range an.Statements {
		d := Decide(st, Classify(st, p, nil), Session{Role: p.Role("up_clinician")})
		if d.Action == Refuse {
			return "ERROR " + d.SQLState, ""
		}
	}
	out, err := NewRewriter(p, 0).Rewrite(sql, an, nil)
	var re *Error
	if errors.As(err, &re) {
		return "ERROR " + re.SQLState, ""
	}
	return outcome(conn, out, args), out
}

func TestUpsertsDoWhatTheyDoOnPlainTables(t *testing.T) {
	p, err := policy.Parse("policy.yaml", []byte(splitPolicy))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range upsertCases {
		t.Run(c.name, func(t *testing.T) {
			pair := newSplitPair(t, p)
			mustExec(t, pair.split, "SET ROLE up_clinician")
			want := outcome(pair.plain, c.sql, c.args)
			if c.want != "" && want != "ERROR "+c.want {
				t.Fatalf("on a plain table: %s, the case says %s", want, c.want)
			}
			if c.split != "" {
				want = "ERROR " + c.split
			}
			got, rewritten := viaPrivata(t, p, pair.split, c.sql, c.args)
			if got != want {
				t.Fatalf("split table:\n%s\nplain table:\n%s\nrewritten: %s", got, want, rewritten)
			}
			mustExec(t, pair.split, "RESET ROLE")
			if c.split != "" {
				return // refused on the split table, done on the plain one
			}
			if a, b := tables(t, pair.plain), tables(t, pair.split); a != b {
				t.Fatalf("contents differ:\nplain:\n%s\nsplit:\n%s", a, b)
			}
		})
	}
}

// A role that reads identity values masked may not upsert into the
// subject table: the rewrite looks existing rows up by their values.
func TestUpsertNeedsFullAccess(t *testing.T) {
	p, err := policy.Parse("policy.yaml", []byte(splitPolicy))
	if err != nil {
		t.Fatal(err)
	}
	pair := newSplitPair(t, p)
	mustExec(t, pair.split, "SET ROLE up_nurse")
	got, _ := viaPrivata(t, p, pair.split, `INSERT INTO patients (id, ssn) VALUES (1, '*******1111')
		ON CONFLICT (ssn) DO UPDATE SET visits = 0`, nil)
	if got != "ERROR 42501" {
		t.Fatalf("a nurse's upsert: %s", got)
	}
	// The nurse may upsert a child, whose data is clinical.
	got, _ = viaPrivata(t, p, pair.split, `INSERT INTO encounters (id, patient, code) VALUES (1, 1, 'E1')
		ON CONFLICT (id) DO UPDATE SET cost = 1 RETURNING cost`, nil)
	if got != "INSERT 0 1\n 1" {
		t.Fatalf("a nurse's upsert of a child: %s", fmt.Sprint(got))
	}
}
