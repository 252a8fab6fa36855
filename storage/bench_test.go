package storage_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/privata/privata/internal/pgtest"
	"github.com/privata/privata/policy"
	"github.com/privata/privata/storage"
)

// benchSchema generates n patients with 2n encounters and 3n observations
// (a child with a primary key and a child without one).
const benchSchema = `
CREATE TABLE patients (id bigint PRIMARY KEY, ssn text NOT NULL, first text, last text,
    birthdate date, state text, gender text, race text, income numeric);
CREATE TABLE encounters (id bigint PRIMARY KEY, patient bigint NOT NULL REFERENCES patients,
    start timestamptz NOT NULL, code text, cost numeric);
CREATE TABLE observations (patient bigint NOT NULL REFERENCES patients,
    encounter bigint REFERENCES encounters, code text, value numeric, at timestamptz);
INSERT INTO patients SELECT g, 'ssn-' || g, 'First' || g, 'Last' || g %% 1000,
    date '1950-01-01' + g %% 20000, CASE WHEN g %% 10 = 0 THEN 'Stockholm' ELSE 'Massachusetts' END,
    CASE WHEN g %% 2 = 0 THEN 'F' ELSE 'M' END, 'white', g %% 100000
    FROM generate_series(1, %[1]d) g;
INSERT INTO encounters SELECT g, g %% %[1]d + 1, timestamptz '2020-01-01' + g * interval '1 minute',
    'code-' || g %% 300, g %% 1000 / 7.0 FROM generate_series(1, 2 * %[1]d) g;
INSERT INTO observations SELECT g %% %[1]d + 1, g %% (2 * %[1]d) + 1, 'obs-' || g %% 50, g %% 200 / 3.0,
    timestamptz '2020-01-01' + g * interval '1 second' FROM generate_series(1, 3 * %[1]d) g;
ANALYZE;
`

const benchPolicy = `
version: 1
regions: {us: {cluster: us}, eu: {cluster: eu}}
residency: {table: patients, column: state, values: {Stockholm: eu}, default: us}
subjects:
  patients: {key: id, identity: [ssn, first, last, birthdate, state], clinical: [gender, race], other: [income]}
children:
  encounters: {subject: {table: patients, column: patient}}
  observations: {subject: {table: patients, column: patient}}
roles:
  b_clinician: {identity: full, clinical: full}
`

// baseline copies the same rows once into new tables with the same keys,
// in a transaction it rolls back: what any conversion must at least do.
const baseline = `
CREATE TABLE p2 AS SELECT * FROM patients;
ALTER TABLE p2 ADD PRIMARY KEY (id);
CREATE TABLE e2 AS SELECT * FROM encounters;
ALTER TABLE e2 ADD PRIMARY KEY (id);
CREATE TABLE o2 AS SELECT * FROM observations;
CREATE INDEX ON o2 (patient);
`

// BenchmarkAdopt converts generated patients with their child rows at
// several sizes. Run it once per size:
//
//	go test ./storage -run '^$' -bench Adopt -benchtime 1x
//
// ns/row is the time per converted row (patients, encounters and
// observations); x_copy compares with copying the same rows once (see
// baseline), measured on the same database just before.
func BenchmarkAdopt(b *testing.B) {
	p, err := parseBenchPolicy()
	if err != nil {
		b.Fatal(err)
	}
	for _, n := range []int{1000, 10000, 30000, 100000} {
		b.Run(fmt.Sprintf("patients=%d", n), func(b *testing.B) {
			rows := float64(6 * n)
			var adopt, copyTime time.Duration
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				db := pgtest.NewDB(b, pgtest.Shared(b))
				conn := db.Connect(b)
				if _, err := conn.Exec(ctx, fmt.Sprintf(benchSchema, n)); err != nil {
					b.Fatal(err)
				}
				start := time.Now()
				tx, err := conn.Begin(ctx)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := tx.Exec(ctx, baseline); err != nil {
					b.Fatal(err)
				}
				tx.Rollback(ctx)
				copyTime += time.Since(start)

				b.StartTimer()
				start = time.Now()
				if _, err := storage.Apply(ctx, conn, p, storage.Target{Name: "bench", Regions: []string{"eu", "us"}}); err != nil {
					b.Fatal(err)
				}
				adopt += time.Since(start)
			}
			b.ReportMetric(float64(adopt.Nanoseconds())/float64(b.N)/rows, "ns/row")
			b.ReportMetric(float64(adopt)/float64(copyTime), "x_copy")
			b.ReportMetric(adopt.Seconds()/float64(b.N), "s/op")
		})
	}
}

func parseBenchPolicy() (*policy.Policy, error) {
	return policy.Parse("bench.yaml", []byte(benchPolicy))
}
