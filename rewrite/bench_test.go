package rewrite

import (
	"fmt"
	"strings"
	"testing"
)

// benchStatements are typical of what pgbench and ORMs send. Each has one
// %d where a constant goes, so that the fast path sees new texts.
var benchStatements = []struct{ name, sql string }{
	{"pgbench_select", "SELECT abalance FROM pgbench_accounts WHERE aid = %d;"},
	{"pgbench_update", "UPDATE pgbench_accounts SET abalance = abalance + -42 WHERE aid = %d;"},
	{"prisma_find", `SELECT "public"."patients"."id", "public"."patients"."first", ` +
		`"public"."patients"."last" FROM "public"."patients" WHERE ` +
		`("public"."patients"."state" = 'Stockholm' AND "public"."patients"."income" > %d) ` +
		`ORDER BY "public"."patients"."id" ASC LIMIT 10 OFFSET 0`},
	{"sequelize_insert", `INSERT INTO "encounters" ("id","patient","code","start") VALUES ` +
		`(%d,'6b1c2e','185345009','2024-01-01 10:00:00.000 +00:00') ` +
		`RETURNING "id","patient","code","start";`},
	{"typeorm_upsert", `INSERT INTO "patients"("id", "first", "last") VALUES (%d, 'Ann', 'Lee') ` +
		`ON CONFLICT ("id") DO UPDATE SET "first" = EXCLUDED."first", "last" = EXCLUDED."last"`},
	{"join_subquery", "SELECT p.id, e.code, " +
		"(SELECT count(*) FROM conditions c WHERE c.patient = p.id) " +
		"FROM patients p JOIN encounters e ON e.patient = p.id WHERE p.id = %d AND e.code LIKE '18%%'"},
}

// BenchmarkAnalyze measures the cost of one statement: cold (parsed every
// time), cached (the same text again) and fast path (the same statement
// with a new constant each time). pg_query's parse alone is the baseline:
// each of the others reports its cost as a multiple of it (x_parse),
// measured in the same run.
func BenchmarkAnalyze(b *testing.B) {
	for _, s := range benchStatements {
		texts := make([]string, 4096)
		for i := range texts {
			texts[i] = fmt.Sprintf(s.sql, 100000+i*7919)
		}
		var baseline float64 // ns per pg_query parse
		perOp := func(b *testing.B) float64 {
			return float64(b.Elapsed().Nanoseconds()) / float64(b.N)
		}
		ratio := func(b *testing.B) {
			if baseline > 0 {
				b.ReportMetric(perOp(b)/baseline, "x_parse")
			}
		}
		b.Run(s.name+"/pg_query_parse", func(b *testing.B) {
			for i := 0; b.Loop(); i++ {
				if _, err := parse(texts[i%len(texts)]); err != nil {
					b.Fatal(err)
				}
			}
			baseline = perOp(b)
		})
		b.Run(s.name+"/cold", func(b *testing.B) {
			a := NewAnalyzer(0)
			for i := 0; b.Loop(); i++ {
				if _, err := a.Analyze(texts[i%len(texts)]); err != nil {
					b.Fatal(err)
				}
			}
			ratio(b)
		})
		b.Run(s.name+"/cached", func(b *testing.B) {
			a := NewAnalyzer(100)
			for b.Loop() {
				if _, err := a.Analyze(texts[0]); err != nil {
					b.Fatal(err)
				}
			}
			ratio(b)
		})
		b.Run(s.name+"/fast_path", func(b *testing.B) {
			a := NewAnalyzer(100)
			for i := 0; b.Loop(); i++ {
				if _, err := a.Analyze(texts[i%len(texts)]); err != nil {
					b.Fatal(err)
				}
			}
			if a.Stats().Misses > 1 {
				b.Fatalf("stats %+v: the fast path was not taken", a.Stats())
			}
			ratio(b)
		})
	}
}

// BenchmarkGuard measures the checks every uncached text goes through
// before it is parsed, on a 1 MiB bulk INSERT.
func BenchmarkGuard(b *testing.B) {
	rows := strings.Repeat("(1, 'John', 'Smith', '123-45-6789'), ", 1<<20/38)
	text := "INSERT INTO patients VALUES " + strings.TrimSuffix(rows, ", ")
	opt := &options{maxBytes: DefaultMaxTextBytes, maxDepth: DefaultMaxDepth}
	b.SetBytes(int64(len(text)))
	for b.Loop() {
		if _, err := guard(text, opt); err != nil {
			b.Fatal(err)
		}
	}
}
