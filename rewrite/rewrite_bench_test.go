package rewrite

import (
	"fmt"
	"testing"

	"github.com/privata/privata/policy"
)

// rewriteStatements are the statements Privata rewrites for split tables,
// as ORMs and tools send them. Each has one %d where a constant goes.
var rewriteStatements = []struct{ name, sql string }{
	{"upsert_do_nothing", `INSERT INTO "patients" ("id", "first") VALUES (%d, 'Ann') ON CONFLICT DO NOTHING`},
	{"upsert_do_update", `INSERT INTO "patients"("id", "first", "last") VALUES (%d, 'Ann', 'Lee') ` +
		`ON CONFLICT ("id") DO UPDATE SET "first" = EXCLUDED."first", "last" = EXCLUDED."last"`},
	{"upsert_10_rows_returning", `INSERT INTO encounters (id, patient, code) VALUES ` +
		`('e%d', 'p1', 'c'), ('e2', 'p1', 'c'), ('e3', 'p1', 'c'), ('e4', 'p1', 'c'), ('e5', 'p1', 'c'), ` +
		`('e6', 'p2', 'c'), ('e7', 'p2', 'c'), ('e8', 'p2', 'c'), ('e9', 'p2', 'c'), ('e10', 'p2', 'c') ` +
		`ON CONFLICT (id) DO UPDATE SET code = excluded.code WHERE encounters.code <> excluded.code RETURNING *`},
	{"copy_to", `COPY patients (id, first, last) TO STDOUT WITH (FORMAT csv, HEADER, NULL '%d')`},
	{"truncate", `TRUNCATE patients, encounters RESTART IDENTITY CASCADE; SELECT %d`},
}

// BenchmarkRewrite measures what a statement Privata rewrites costs: its
// analysis (parse and walk, the baseline every statement pays), then the
// rewrite itself (parse, rewrite, deparse), uncached: each client text
// with a new constant is a new text. x_analyze is the rewrite's cost as a
// multiple of the analysis, measured in the same run; cached is a text
// sent again (a prepared statement, or the same text).
func BenchmarkRewrite(b *testing.B) {
	p, err := policy.Load("../examples/clinic/policy.yaml")
	if err != nil {
		b.Fatal(err)
	}
	for _, s := range rewriteStatements {
		texts := make([]string, 1024)
		for i := range texts {
			texts[i] = fmt.Sprintf(s.sql, 100000+i*7919)
		}
		analyses := make([]*Analysis, len(texts))
		var baseline float64
		perOp := func(b *testing.B) float64 { return float64(b.Elapsed().Nanoseconds()) / float64(b.N) }
		b.Run(s.name+"/analyze", func(b *testing.B) {
			a := NewAnalyzer(0)
			for i := 0; b.Loop(); i++ {
				an, err := a.Analyze(texts[i%len(texts)])
				if err != nil {
					b.Fatal(err)
				}
				analyses[i%len(texts)] = an
			}
			baseline = perOp(b)
		})
		for i, t := range texts {
			if analyses[i] == nil {
				an, err := NewAnalyzer(0).Analyze(t)
				if err != nil {
					b.Fatal(err)
				}
				analyses[i] = an
			}
		}
		b.Run(s.name+"/rewrite", func(b *testing.B) {
			r := NewRewriter(p, 0)
			for i := 0; b.Loop(); i++ {
				k := i % len(texts)
				if _, err := r.Rewrite(texts[k], analyses[k], nil); err != nil {
					b.Fatal(err)
				}
			}
			if baseline > 0 {
				b.ReportMetric(perOp(b)/baseline, "x_analyze")
			}
		})
		b.Run(s.name+"/cached", func(b *testing.B) {
			r := NewRewriter(p, 100)
			for b.Loop() {
				if _, err := r.Rewrite(texts[0], analyses[0], nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
