package storage_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// smallSchema covers what the Synthea schema does not: a serial key, a
// GENERATED ALWAYS identity, defaults, NOT NULL, UNIQUE and CHECK
// constraints, foreign keys with actions, a child without a primary key.
const smallSchema = `
CREATE TABLE people (
    id      serial PRIMARY KEY,
    ssn     text NOT NULL UNIQUE,
    name    text NOT NULL,
    born    date CHECK (born > '1900-01-01'),
    email   varchar(40) DEFAULT 'none@example.org',
    blood   text CHECK (blood IN ('A', 'B', 'AB', 'O')),
    note    text,
    created timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE people IS 'one row per person';
COMMENT ON COLUMN people.ssn IS 'social security number';
CREATE INDEX people_name ON people (lower(name));
CREATE TABLE visits (
    id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    person int NOT NULL REFERENCES people ON DELETE CASCADE,
    at     timestamptz NOT NULL DEFAULT now(),
    reason text NOT NULL,
    cost   numeric(10,2) CHECK (cost >= 0)
);
CREATE TABLE findings (
    person int REFERENCES people ON DELETE RESTRICT,
    visit  bigint REFERENCES visits ON DELETE CASCADE,
    code   text NOT NULL,
    value  text
);
CREATE INDEX findings_person ON findings (person);
INSERT INTO people (ssn, name, born, blood, note) VALUES
    ('999-00-0001', 'Ann Lee', '1980-02-03', 'A', 'first'),
    ('999-00-0002', 'Bo Ek', '1975-12-31', 'O', NULL),
    ('999-00-0003', 'Cy Tan', NULL, NULL, 'no visits');
INSERT INTO visits (person, reason, cost) VALUES (1, 'checkup', 10.50), (1, 'flu', 0), (2, 'x-ray', 99.99);
INSERT INTO findings VALUES (1, 1, 'bp', '120/80'), (1, 1, 'bp', '120/80'), (2, 3, 'fracture', NULL),
    (1, NULL, 'allergy', 'latex');
`

const smallPolicy = `
version: 1
regions: {us: {cluster: us}}
subjects:
  people:
    key: id
    identity: [ssn, name, born, email]
    clinical: [blood, note]
    other: [created]
    masks: {ssn: last4}
children:
  visits: {subject: {table: people, column: person}, other: [id, at]}
  findings: {subject: {table: people, column: person}}
roles:
  doctor: {identity: full, clinical: full}
  nurse: {identity: masked, clinical: full}
  clerk: {identity: full, clinical: none}
`

// smallPair returns a database holding smallSchema as plain tables and one
// holding it split; on both, role doctor may do everything.
func smallPair(t *testing.T) (plain, split *testDB) {
	plain, split = newDB(t), newDB(t)
	split.exec(t, smallSchema)
	split.apply(t, parsePolicy(t, smallPolicy))
	plain.exec(t, smallSchema)
	plain.exec(t, `GRANT ALL ON ALL TABLES IN SCHEMA public TO doctor;
		GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO doctor`)
	return plain, split
}

// outcome runs sql as role and describes what happened: the rows
// returned, or the SQLSTATE of the error.
func outcome(t *testing.T, d *testDB, role, sql string) string {
	t.Helper()
	conn := d.Connect(t)
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "SET ROLE "+pgx.Identifier{role}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	if strings.HasPrefix(sql, "COPY") {
		head, data, _ := strings.Cut(sql, "\n")
		tag, err := conn.PgConn().CopyFrom(ctx, strings.NewReader(data), head)
		if err != nil {
			return "ERROR " + sqlstate(err)
		}
		return tag.String()
	}
	rows, err := conn.Query(ctx, sql)
	if err != nil {
		return "ERROR " + sqlstate(err)
	}
	var out []string
	for rows.Next() {
		vals, _ := rows.Values()
		parts := make([]string, len(vals))
		for i, v := range vals {
			parts[i] = fmt.Sprint(v)
		}
		out = append(out, strings.Join(parts, " "))
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return "ERROR " + sqlstate(err)
	}
	return rows.CommandTag().String() + " " + strings.Join(out, "; ")
}

func TestWritesThroughViewsBehaveAsOnPlainTables(t *testing.T) {
	plain, split := smallPair(t)
	statements := []string{
		`INSERT INTO people (ssn, name, born, blood) VALUES ('999-00-0004', 'Di Ho', '1990-05-06', 'AB')
			RETURNING id, ssn, name, born, email, blood, note, created IS NOT NULL`,
		`INSERT INTO people (ssn, name) VALUES ('999-00-0005', 'Ed'), ('999-00-0006', 'Flo')
			RETURNING id, name, email`,
		`INSERT INTO people (ssn) VALUES ('999-00-0007')`,
		`INSERT INTO people (ssn, name) VALUES ('999-00-0001', 'Dup')`,
		`INSERT INTO people (ssn, name, born) VALUES ('999-00-0008', 'Old', '1800-01-01')`,
		`INSERT INTO people (ssn, name, blood) VALUES ('999-00-0009', 'Odd', 'X')`,
		`INSERT INTO visits (person, reason, cost) VALUES (4, 'checkup', 12.345) RETURNING id, person, reason, cost`,
		`INSERT INTO visits (person, reason) VALUES (999, 'nobody')`,
		`INSERT INTO visits (id, person, reason) VALUES (77, 1, 'explicit id')`,
		`INSERT INTO visits (person, reason, cost) VALUES (1, 'refund', -1)`,
		`INSERT INTO visits (person) VALUES (1)`,
		`INSERT INTO findings VALUES (4, 4, 'hr', '70'), (NULL, NULL, 'orphan', 'none') RETURNING *`,
		`INSERT INTO findings VALUES (999, NULL, 'x', 'y')`,
		`INSERT INTO findings VALUES (1, 999, 'x', 'y')`,
		"COPY people (ssn, name, born, blood) FROM STDIN\n999-00-0010\tGus\t2001-01-01\tB\n999-00-0011\tHal\t\\N\t\\N\n",
		"COPY people (ssn, name, note) FROM STDIN WITH (FORMAT csv)\n999-00-0012,\"Ida, Jr.\",\"said \"\"hi\"\"\"\n",
		"COPY visits (person, reason, cost) FROM STDIN WITH (FORMAT csv)\n2,walk-in,5\n4,walk-in,\n",
		"COPY people (ssn, name) FROM STDIN WITH (FORMAT csv)\n999-00-0001,Dup\n",
		`UPDATE people SET note = 'updated' WHERE id = 1 RETURNING id, ssn, name, note`,
		`UPDATE people SET name = 'Bo Ek-Berg', blood = 'B' WHERE id = 2 RETURNING id, name, email, blood`,
		`UPDATE people SET ssn = '999-00-0002' WHERE id = 1`,
		`UPDATE people SET born = '1850-01-01' WHERE id = 3`,
		`UPDATE people SET id = 100 WHERE id = 1`,
		`UPDATE people SET id = 300 WHERE id = 3 RETURNING id, name`,
		`UPDATE people SET name = NULL WHERE id = 2`,
		`UPDATE visits SET cost = cost + 1 WHERE person = 1 RETURNING id, person, cost`,
		`UPDATE visits SET cost = -5 WHERE id = 1`,
		`UPDATE visits SET id = 55 WHERE id = 1`,
		`UPDATE visits SET person = 999 WHERE id = 1`,
		`UPDATE visits SET person = 2 WHERE id = 2 RETURNING id, person, reason`,
		`UPDATE findings SET value = '130/85' WHERE code = 'bp' RETURNING *`,
		`UPDATE findings SET person = 2 WHERE code = 'allergy' RETURNING person, code`,
		`UPDATE findings SET person = 999 WHERE code = 'hr'`,
		`UPDATE findings SET code = NULL WHERE code = 'hr'`,
		`DELETE FROM findings WHERE code = 'orphan' RETURNING *`,
		`DELETE FROM people WHERE id = 1`,
		`DELETE FROM findings WHERE person = 1 RETURNING code`,
		`DELETE FROM people WHERE id = 1 RETURNING id, ssn, name`,
		`DELETE FROM visits WHERE reason = 'walk-in' RETURNING person, reason`,
		`SELECT count(*) FROM visits`,
		`SELECT id, ssn, name, born, email, blood, note FROM people ORDER BY id`,
		`SELECT id, person, reason, cost FROM visits ORDER BY id`,
		`SELECT person, visit, code, value FROM findings ORDER BY code, person, value`,
	}
	for _, sql := range statements {
		want := outcome(t, plain, "doctor", sql)
		got := outcome(t, split, "doctor", sql)
		if got != want {
			t.Errorf("%s\n  plain table: %s\n  split view:  %s", sql, want, got)
		}
	}
}

func TestWritesFollowTheRolesAccess(t *testing.T) {
	_, d := smallPair(t)
	ssns := func() string {
		return strings.Join(column(t, d.conn, `SELECT ssn || ' ' || name FROM people ORDER BY id`), ", ")
	}
	before := ssns()
	for _, c := range []struct {
		role, sql, want string
	}{
		// nurse reads masked identity values; updating a clinical column
		// must not write them back.
		{"nurse", `UPDATE people SET note = 'seen by nurse' WHERE id = 1 RETURNING ssn`, "UPDATE 1 *******0001"},
		{"nurse", `UPDATE people SET name = 'X' WHERE id = 1`, "ERROR 42501"},
		{"nurse", `INSERT INTO people (ssn, name) VALUES ('1', 'N')`, "ERROR 42501"},
		{"nurse", `INSERT INTO visits (person, reason) VALUES (2, 'triage') RETURNING person, reason`,
			"INSERT 0 1 2 triage"},
		{"nurse", `DELETE FROM people WHERE id = 3`, "ERROR 42501"},
		// clerk has no clinical access: identity only.
		{"clerk", `UPDATE people SET name = 'Cy Tan-Lo' WHERE id = 3 RETURNING name, note`,
			"UPDATE 1 Cy Tan-Lo <nil>"},
		{"clerk", `UPDATE people SET note = 'x' WHERE id = 3`, "ERROR 42501"},
		{"clerk", `INSERT INTO visits (person, reason) VALUES (3, 'x')`, "ERROR 42501"},
		{"clerk", `DELETE FROM people WHERE id = 3`, "ERROR 42501"},
		{"clerk", `DELETE FROM findings`, "ERROR 42501"},
		// A role outside the policy gets nothing.
		{"pg_monitor", `SELECT * FROM people`, "ERROR 42501"},
	} {
		if got := outcome(t, d, c.role, c.sql); got != c.want {
			t.Errorf("%s: %s\n  got  %s\n  want %s", c.role, c.sql, got, c.want)
		}
	}
	after := ssns()
	want := strings.Replace(before, "Cy Tan", "Cy Tan-Lo", 1)
	if after != want {
		t.Errorf("identity values changed:\n  before %s\n  after  %s", before, after)
	}
	if n := column(t, d.conn, `SELECT note FROM people WHERE id = 1`); n[0] != "seen by nurse" {
		t.Errorf("nurse's clinical update was not written: note = %s", n[0])
	}
}
