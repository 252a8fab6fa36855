package proxy

import (
	"context"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/privata/privata/policy"
	"github.com/privata/privata/storage"
)

// benchRows is how many patients the split-table benchmark loads, with two
// encounters each.
const benchRows = 20000

const benchSplitSchema = `
CREATE TABLE patients (id int PRIMARY KEY, ssn text UNIQUE, first text, last text,
    visits int NOT NULL DEFAULT 0, note text);
CREATE TABLE encounters (id bigserial PRIMARY KEY, patient int REFERENCES patients,
    code text, cost numeric, at timestamptz, tags text[], data bytea);
CREATE INDEX ON encounters (patient);
INSERT INTO patients SELECT g, 'ssn-' || g, 'First' || g, 'Last' || g, g %% 10, 'note ' || g
    FROM generate_series(1, %[1]d) g;
INSERT INTO encounters (patient, code, cost, at) SELECT g %% %[1]d + 1, 'c' || g %% 300, g %% 1000,
    timestamptz '2024-01-01' + g * interval '1 minute' FROM generate_series(1, 2 * %[1]d) g;
GRANT ALL ON patients, encounters TO clinician;
GRANT ALL ON SEQUENCE encounters_id_seq TO clinician;
ANALYZE;
`

// BenchmarkSplitTables compares a point read, a child read by the
// subject's key and an insert on a split table with the same on a plain
// table, directly on PostgreSQL (as the policy role) and through Privata,
// in both protocols, one client per configuration. The four
// configurations take turns, a batch of 100 statements each, so that the
// load of a shared machine weighs on all alike; each one's figure is its
// median batch. It reports microseconds per statement (us_*) and the
// ratios split/plain (x_plain, directly and through Privata; the goal for
// the point read is at most 1.5) and Privata/direct (x_direct). It prints;
// it asserts nothing.
func BenchmarkSplitTables(b *testing.B) {
	e := newEnv(b, envOptions{policy: splitPolicy})
	ctx := context.Background()
	admin := e.admin(b)
	for _, schema := range []string{"plain", "public"} {
		sql := fmt.Sprintf("CREATE SCHEMA IF NOT EXISTS %s; SET search_path = %s;", schema, schema) +
			fmt.Sprintf(benchSplitSchema, benchRows) + "GRANT USAGE ON SCHEMA plain TO clinician;"
		if _, err := admin.Exec(ctx, sql); err != nil {
			b.Fatal(err)
		}
	}
	pol, err := policy.Parse("policy.yaml", []byte(splitPolicy))
	if err != nil {
		b.Fatal(err)
	}
	if _, err := storage.Apply(ctx, e.db.Connect(b), pol, storage.Target{Name: "main",
		URL: e.db.URL(), Regions: []string{"main"}}); err != nil {
		b.Fatal(err)
	}
	if _, err := admin.Exec(ctx, "ANALYZE"); err != nil {
		b.Fatal(err)
	}

	const batch = 100
	rounds := max(b.N/batch, 30)
	ops := []struct {
		name, sql string
		args      func(i int) []any
	}{
		{"point_read", `SELECT * FROM %spatients WHERE id = $1`,
			func(i int) []any { return []any{i%benchRows + 1} }},
		{"child_read", `SELECT id, code, cost FROM %sencounters WHERE patient = $1`,
			func(i int) []any { return []any{i%benchRows + 1} }},
		{"insert", `INSERT INTO %spatients (id, ssn, first, last, visits) VALUES ($1, $2, 'F', 'L', 1)`,
			func(i int) []any { return []any{benchRows + 1 + i, fmt.Sprintf("new-%d", i)} }},
	}
	configs := []struct{ name, via, schema string }{
		{"direct_plain", "direct", "plain."}, {"direct_split", "direct", ""},
		{"privata_plain", "privata", "plain."}, {"privata_split", "privata", ""},
	}
	connect := func(via string, mode pgx.QueryExecMode) *pgx.Conn {
		url := e.url("clinician")
		if via == "direct" {
			url = e.db.URL()
		}
		cfg, err := pgx.ParseConfig(url)
		if err != nil {
			b.Fatal(err)
		}
		cfg.DefaultQueryExecMode = mode
		c, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			b.Fatal(err)
		}
		if via == "direct" {
			if _, err := c.Exec(ctx, "SET ROLE clinician"); err != nil {
				b.Fatal(err)
			}
		}
		return c
	}
	b.ResetTimer()
	next := 0 // insert keys, never reused
	for _, mode := range modes {
		name := map[pgx.QueryExecMode]string{pgx.QueryExecModeCacheStatement: "prepared",
			pgx.QueryExecModeSimpleProtocol: "simple"}[mode]
		for _, op := range ops {
			conns := make([]*pgx.Conn, len(configs))
			times := make([][]float64, len(configs))
			for k, cfg := range configs {
				conns[k] = connect(cfg.via, mode)
				if op.name != "insert" {
					for i := 0; i < batch; i++ { // caches and plans
						runBench(b, conns[k], fmt.Sprintf(op.sql, cfg.schema), op.args(i))
					}
				}
			}
			for r := 0; r < rounds; r++ {
				for k, cfg := range configs {
					sql := fmt.Sprintf(op.sql, cfg.schema)
					start := time.Now()
					for i := 0; i < batch; i++ {
						runBench(b, conns[k], sql, op.args(next))
						next++
					}
					times[k] = append(times[k], float64(time.Since(start).Microseconds())/batch)
				}
			}
			per := map[string]float64{}
			for k, cfg := range configs {
				conns[k].Close(ctx)
				sort.Float64s(times[k])
				per[cfg.name] = times[k][len(times[k])/2]
				b.ReportMetric(per[cfg.name], fmt.Sprintf("us_%s_%s_%s", name, op.name, cfg.name))
			}
			b.ReportMetric(per["direct_split"]/per["direct_plain"],
				fmt.Sprintf("x_plain_%s_%s_direct", name, op.name))
			b.ReportMetric(per["privata_split"]/per["privata_plain"],
				fmt.Sprintf("x_plain_%s_%s_privata", name, op.name))
			b.ReportMetric(per["privata_split"]/per["direct_split"],
				fmt.Sprintf("x_direct_%s_%s_split", name, op.name))
		}
	}
}

func runBench(b *testing.B, c *pgx.Conn, sql string, args []any) {
	rows, err := c.Query(context.Background(), sql, args...)
	if err != nil {
		b.Fatal(err)
	}
	for rows.Next() {
	}
	if err := rows.Err(); err != nil {
		b.Fatalf("%s: %v", sql, err)
	}
}
