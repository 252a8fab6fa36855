package proxy

import (
	"context"
	"fmt"
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
// in both protocols, one client, all in the same run. It reports each
// statement's time per operation (us_*) and the ratios split/plain
// (x_plain, directly and through Privata; the goal for the point read is
// at most 1.5) and Privata/direct (x_direct). It prints; it asserts
// nothing.
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

	n := max(b.N, 3000)
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
	connect := func(url string, mode pgx.QueryExecMode) *pgx.Conn {
		cfg, err := pgx.ParseConfig(url)
		if err != nil {
			b.Fatal(err)
		}
		cfg.DefaultQueryExecMode = mode
		c, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			b.Fatal(err)
		}
		return c
	}
	b.ResetTimer()
	for _, mode := range modes {
		name := map[pgx.QueryExecMode]string{pgx.QueryExecModeCacheStatement: "prepared",
			pgx.QueryExecModeSimpleProtocol: "simple"}[mode]
		// Each insert runs once per configuration on keys of its own.
		base := map[string]int{"prepared": 0, "simple": 4 * n}[name]
		for _, op := range ops {
			per := map[string]float64{}
			for k, cfg := range []struct{ via, schema string }{
				{"direct", "plain."}, {"direct", ""}, {"privata", "plain."}, {"privata", ""},
			} {
				url := e.url("clinician")
				if cfg.via == "direct" {
					url = e.db.URL()
				}
				c := connect(url, mode)
				if cfg.via == "direct" {
					if _, err := c.Exec(ctx, "SET ROLE clinician"); err != nil {
						b.Fatal(err)
					}
				}
				sql := fmt.Sprintf(op.sql, cfg.schema)
				offset := base + k*n
				for i := 0; i < 200; i++ { // warm up: caches, plans
					if op.name != "insert" {
						runBench(b, c, sql, op.args(i))
					}
				}
				start := time.Now()
				for i := 0; i < n; i++ {
					runBench(b, c, sql, op.args(offset+i))
				}
				table := "split"
				if cfg.schema != "" {
					table = "plain"
				}
				per[cfg.via+"_"+table] = float64(time.Since(start).Microseconds()) / float64(n)
				c.Close(ctx)
			}
			b.ReportMetric(per["direct_plain"], fmt.Sprintf("us_%s_%s_direct_plain", name, op.name))
			b.ReportMetric(per["direct_split"], fmt.Sprintf("us_%s_%s_direct_split", name, op.name))
			b.ReportMetric(per["privata_plain"], fmt.Sprintf("us_%s_%s_privata_plain", name, op.name))
			b.ReportMetric(per["privata_split"], fmt.Sprintf("us_%s_%s_privata_split", name, op.name))
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
