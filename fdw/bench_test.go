package fdw_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// benchRows generates, as plain tables that apply then converts, 10,000
// patients of a region and 100,000 conditions (50 codes).
const benchRows = `
INSERT INTO patients (id, ssn, first, last, state, birthdate, marital, income)
SELECT md5(%[1]s || g)::uuid, 'ssn-' || g, 'First' || g, 'Last' || g %% 1000, %[2]s,
       date '1950-01-01' + g %% 20000, CASE WHEN g %% 2 = 0 THEN 'M' ELSE 'S' END, g %% 1000
  FROM generate_series(1, 10000) g;
INSERT INTO conditions (patient, code, description, start)
SELECT md5(%[1]s || (g %% 10000 + 1))::uuid, 'code-' || g %% 50, 'diagnosis ' || g %% 50,
       date '2020-01-01' + g %% 1000
  FROM generate_series(1, 100000) g;
ANALYZE;
`

// BenchmarkCrossRegionAggregate counts conditions per code, as a US
// analyst for research:
//
//	local    over the US's own 100,000 rows (the application's view)
//	foreign  over the EU's 100,000 rows, through its foreign table
//	global   over both regions' rows, through privata_global
//
// It prints each one's median time and its ratio to local, and whether
// PostgreSQL pushed the aggregate down to the EU cluster (EXPLAIN VERBOSE
// shows GROUP BY in the remote SQL). Run it with:
//
//	go test ./fdw -run '^$' -bench CrossRegion -benchtime 1x
func BenchmarkCrossRegionAggregate(b *testing.B) {
	w := newBenchWorld(b)
	us := w.regions["us"]
	queries := []struct{ name, sql string }{
		{"local", `SELECT code, count(*) FROM conditions GROUP BY code`},
		{"foreign", `SELECT code, count(*) FROM privata_region_eu.conditions GROUP BY code`},
		{"global", `SELECT code, count(*) FROM privata_global.conditions GROUP BY code`},
	}
	const runs = 15
	median := map[string]time.Duration{}
	for i := 0; i < b.N; i++ {
		for _, q := range queries {
			var times []time.Duration
			for r := 0; r < runs; r++ {
				start := time.Now()
				err := benchAs(b, us.conn, func(tx pgx.Tx) error {
					rows, err := tx.Query(ctx, q.sql)
					if err != nil {
						return err
					}
					n := 0
					for rows.Next() {
						n++
					}
					if rows.Err() == nil && n != 50 {
						return fmt.Errorf("%s: %d codes, want 50", q.name, n)
					}
					return rows.Err()
				})
				if err != nil {
					b.Fatal(err)
				}
				times = append(times, time.Since(start))
			}
			slices.Sort(times)
			median[q.name] = times[runs/2]
		}
	}
	local := median["local"]
	for _, q := range queries {
		var plan []string
		err := benchAs(b, us.conn, func(tx pgx.Tx) error {
			rows, err := tx.Query(ctx, "EXPLAIN VERBOSE "+q.sql)
			if err != nil {
				return err
			}
			plan, err = pgx.CollectRows(rows, pgx.RowTo[string])
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
		remote, pushed := "", false
		for _, l := range plan {
			if s, ok := strings.CutPrefix(strings.TrimSpace(l), "Remote SQL: "); ok {
				remote = s
				pushed = pushed || strings.Contains(s, "GROUP BY")
			}
		}
		b.Logf("%-8s median %8.2f ms  x%.2f of local  aggregate pushed down: %-5v remote SQL: %s",
			q.name, ms(median[q.name]), float64(median[q.name])/float64(local), pushed, remote)
		b.ReportMetric(ms(median[q.name]), q.name+"_ms")
		if q.name != "local" {
			b.ReportMetric(float64(median[q.name])/float64(local), q.name+"_x_local")
		}
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// newBenchWorld is basePolicy over 100,000 conditions per region.
func newBenchWorld(b *testing.B) *world {
	b.Helper()
	states := map[string]string{"us": "Massachusetts", "eu": "Stockholm"}
	w := newWorld(b, sharedClusters(b, "us", "eu"), basePolicy, func(region string) string {
		return fmt.Sprintf(benchRows, literalSQL(region), literalSQL(states[region]))
	})
	if _, err := w.tryApply(b); err != nil {
		b.Fatal(err)
	}
	for _, r := range w.regions {
		if _, err := r.conn.Exec(ctx, "ANALYZE"); err != nil {
			b.Fatal(err)
		}
	}
	return w
}

func literalSQL(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// benchAs runs fn as the US analyst, for research, and rolls back.
func benchAs(b *testing.B, conn *pgx.Conn, fn func(pgx.Tx) error) error {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "SET LOCAL ROLE analyst; SET LOCAL privata.purpose = 'research'"); err != nil {
		return err
	}
	return fn(tx)
}
