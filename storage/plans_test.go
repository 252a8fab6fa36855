package storage_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// planSchema is a subject with two children, the second referring to the
// first (observations.encounter), with enough rows that a plan that cannot
// use an index scans.
const planSchema = `
CREATE TABLE patients (id bigint PRIMARY KEY, ssn text NOT NULL UNIQUE, first text, last text,
    birthdate date, gender text, income numeric);
CREATE TABLE encounters (id bigint PRIMARY KEY, patient bigint NOT NULL REFERENCES patients,
    start timestamptz NOT NULL, code text);
CREATE TABLE observations (id bigint PRIMARY KEY, patient bigint NOT NULL REFERENCES patients,
    encounter bigint REFERENCES encounters, code text, value numeric);
CREATE INDEX observations_encounter ON observations (encounter);
INSERT INTO patients SELECT g, 'ssn-' || g, 'First' || g, 'Last' || g, date '1950-01-01' + g %% 20000,
    CASE WHEN g %% 2 = 0 THEN 'F' ELSE 'M' END, g FROM generate_series(1, %[1]d) g;
INSERT INTO encounters SELECT g, g %% %[1]d + 1, timestamptz '2020-01-01' + g * interval '1 minute',
    'code-' || g %% 300 FROM generate_series(1, 2 * %[1]d) g;
INSERT INTO observations SELECT g, g %% %[1]d + 1, g %% (2 * %[1]d) + 1, 'obs-' || g %% 50, g %% 200
    FROM generate_series(1, 3 * %[1]d) g;
`

const planPolicy = `
version: 1
regions: {us: {cluster: us}}
subjects:
  patients: {key: id, identity: [ssn, first, last, birthdate], clinical: [gender], other: [income]}
children:
  encounters: {subject: {table: patients, column: patient}}
  observations: {subject: {table: patients, column: patient}}
roles:
  plan_clinician: {identity: full, clinical: full}
  plan_analyst: {identity: none, clinical: full}
  plan_reception: {identity: masked, clinical: none}
`

// The application's queries that must use the base tables' indexes: a
// child's id and its reference to another child are clinical columns,
// which the access views show through a CASE on the reader's access.
// A role that reads a column masked filters on the masked values, which no
// index holds: masked names the role whose plan may scan.
var indexedQueries = []struct{ name, sql, masked string }{
	{"subject by key", `SELECT * FROM patients WHERE id = 4242`, ""},
	{"subject by a unique identity column", `SELECT id, first FROM patients WHERE ssn = 'ssn-4242'`,
		"plan_reception"},
	{"child by its id", `SELECT * FROM encounters WHERE id = 4242`, ""},
	{"child rows by subject key", `SELECT * FROM encounters WHERE patient = 4242`, ""},
	{"child rows by subject keys (an ORM's include query)",
		`SELECT * FROM observations WHERE patient IN (4242, 4243, 4244)`, ""},
	{"child rows by another child's id", `SELECT * FROM observations WHERE encounter = 4242`, ""},
	{"include join of a subject and a child", `SELECT p.id, p.first, e.id, e.start
		FROM patients p LEFT JOIN encounters e ON e.patient = p.id WHERE p.id = 4242`, ""},
	{"join of two children on their ids", `SELECT e.code, o.code, o.value
		FROM encounters e JOIN observations o ON o.encounter = e.id WHERE e.id = 4242`, ""},
}

// TestPlansUseIndexes shows the plans of point reads and joins through
// the split tables, for each policy role, and checks that none scans a
// base table.
func TestPlansUseIndexes(t *testing.T) {
	d := newDB(t)
	d.exec(t, fmt.Sprintf(planSchema, 20000))
	d.apply(t, parsePolicy(t, planPolicy), "us")
	d.exec(t, `ANALYZE`)
	for _, role := range []string{"plan_clinician", "plan_analyst", "plan_reception"} {
		for _, q := range indexedQueries {
			t.Run(role+"/"+q.name, func(t *testing.T) {
				d.as(t, role, func(tx pgx.Tx) {
					plan := strings.Join(column(t, tx, `EXPLAIN (COSTS OFF) `+q.sql), "\n")
					t.Logf("%s\n%s", q.sql, plan)
					if q.masked == role {
						return
					}
					if strings.Contains(plan, "Seq Scan") {
						t.Errorf("the plan scans a table")
					}
					if !strings.Contains(plan, "Index") && !strings.Contains(plan, "One-Time Filter: false") {
						t.Errorf("the plan uses no index")
					}
				})
			})
		}
	}

	// The values each role reads through those plans.
	d.as(t, "plan_clinician", func(tx pgx.Tx) {
		if got := column(t, tx, `SELECT first FROM patients WHERE ssn = 'ssn-4242'`); len(got) != 1 ||
			got[0] != "First4242" {
			t.Errorf("clinician reads %v", got)
		}
		if got := column(t, tx, `SELECT count(*) FROM observations o JOIN encounters e
			ON o.encounter = e.id WHERE e.id = 4242`); got[0] == "0" {
			t.Errorf("clinician joins no observations to encounter 4242")
		}
	})
	d.as(t, "plan_reception", func(tx pgx.Tx) {
		if got := column(t, tx, `SELECT first FROM patients WHERE id = 4242`); got[0] != "F*******2" {
			t.Errorf("reception reads %v, want the masked first name", got)
		}
		if got := column(t, tx, `SELECT count(*) FROM patients WHERE ssn = 'ssn-4242'`); got[0] != "0" {
			t.Errorf("reception finds a patient by the SSN it may not read")
		}
		if got := column(t, tx, `SELECT count(*) FROM encounters WHERE id = 4242`); got[0] != "0" {
			t.Errorf("reception finds an encounter by the id it may not read")
		}
	})
}

// TestCachedPlansFollowTheReader checks that a plan made for one reader
// is not used for another: the access views' columns are resolved when a
// statement is planned (privata.has_access is immutable), so PostgreSQL
// must plan again when the user changes or the user's memberships do.
func TestCachedPlansFollowTheReader(t *testing.T) {
	d := newDB(t)
	d.exec(t, fmt.Sprintf(planSchema, 100))
	d.apply(t, parsePolicy(t, planPolicy), "us")
	const q = `SELECT ssn FROM patients WHERE id = $1`

	// One session, a generic plan made for one role and run as others.
	d.exec(t, `SET plan_cache_mode = force_generic_plan`)
	d.exec(t, `PREPARE q(bigint) AS `+q)
	for _, c := range []struct{ role, want string }{
		{"plan_clinician", "ssn-42"}, {"plan_reception", "s****2"},
		{"plan_analyst", "<null>"}, {"plan_clinician", "ssn-42"},
	} {
		d.as(t, c.role, func(tx pgx.Tx) {
			for range 3 {
				if got := column(t, tx, `EXECUTE q(42)`); got[0] != c.want {
					t.Fatalf("%s reads %q through a plan made earlier, want %q", c.role, got[0], c.want)
				}
			}
		})
	}

	// A login whose membership changes while its session keeps a plan.
	login := "plan_member"
	d.exec(t, `DROP ROLE IF EXISTS `+login)
	d.exec(t, `CREATE ROLE `+login+` LOGIN; GRANT plan_reception TO `+login)
	t.Cleanup(func() { d.conn.Exec(ctx, `DROP OWNED BY `+login+`; DROP ROLE `+login) })
	conn := pgtestConnectAs(t, d, login)
	if _, err := conn.Exec(ctx, `SET plan_cache_mode = force_generic_plan`); err != nil {
		t.Fatal(err)
	}
	read := func() string { return column(t, conn, q, 42)[0] }
	if got := read(); got != "s****2" {
		t.Fatalf("a masked reader reads %q", got)
	}
	d.exec(t, `GRANT privata_identity_full TO `+login)
	if got := read(); got != "ssn-42" {
		t.Errorf("after GRANT privata_identity_full the session reads %q", got)
	}
	d.exec(t, `REVOKE privata_identity_full FROM `+login)
	if got := read(); got != "s****2" {
		t.Errorf("after the REVOKE the session reads %q", got)
	}
}
