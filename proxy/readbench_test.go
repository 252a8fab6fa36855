package proxy

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/privata/privata/audit"
	"github.com/privata/privata/config"
	"github.com/privata/privata/internal/pgtest"
	"github.com/privata/privata/policy"
	"github.com/privata/privata/storage"
)

var (
	benchSeconds = flag.Int("readpath.seconds", 8, "read-path benchmarks: seconds per pgbench run")
	benchScale   = flag.Int("readpath.scale", 1, "read-path benchmarks: pgbench scale")
	benchClients = flag.Int("readpath.clients", 8, "read-path benchmarks: pgbench clients")
	benchRounds  = flag.Int("readpath.rounds", 2, "read-path benchmarks: runs of each variant, "+
		"interleaved")
)

// bankPolicy classifies pgbench's accounts as a subject table: abalance is
// clinical data, filler identity data; teller sees both.
const bankPolicy = `version: 1
regions:
  main: {cluster: main}
subjects:
  pgbench_accounts:
    key: aid
    identity: [filler]
    clinical: [abalance]
    other: [bid]
roles:
  teller: {identity: full, clinical: full}
`

// bank is a pgbench database whose accounts are split by bankPolicy.
type bank struct {
	db  *pgtest.DB
	cfg *config.Config
	pol *policy.Policy
}

func newBank(b *testing.B) *bank {
	b.Helper()
	c := pgtest.Shared(b)
	setupRoles(b, c)
	db := pgtest.NewDB(b, c)
	admin := pgtest.Connect(b, c.URL("postgres"))
	ctx := context.Background()
	if _, err := admin.Exec(ctx, `DO $$ BEGIN
		IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'teller') THEN
			CREATE ROLE teller NOLOGIN;
		END IF; END $$; GRANT teller TO privata_session`); err != nil {
		b.Fatal(err)
	}
	out, err := exec.Command(pgBin(b, "pgbench"), "-i", "-q", "-s", strconv.Itoa(*benchScale),
		db.URL()).CombinedOutput()
	if err != nil {
		b.Fatalf("pgbench -i: %v\n%s", err, out)
	}
	dir := b.TempDir()
	file := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(file, []byte(bankPolicy), 0o644); err != nil {
		b.Fatal(err)
	}
	pol, err := policy.Load(file)
	if err != nil {
		b.Fatal(err)
	}
	target := storage.Target{Name: "main", URL: db.URL(), Regions: []string{"main"}}
	if _, err := storage.Apply(ctx, db.Connect(b), pol, target); err != nil {
		b.Fatalf("apply: %v", err)
	}
	db.Exec(b, "GRANT SELECT ON pgbench_branches, pgbench_tellers TO teller; ANALYZE")
	cfg := config.Default()
	cfg.Clusters = map[string]*config.Cluster{"main": {URL: config.Env(db.URL()),
		SessionURL: config.Env(fmt.Sprintf("postgres://privata_session@127.0.0.1:%d/%s"+
			"?sslmode=disable", c.Port(), db.Name))}}
	cfg.Policies = []string{file}
	cfg.Auth.Method = "trust"
	return &bank{db: db, cfg: cfg, pol: pol}
}

// serve starts a server on the bank with opts and returns its address.
func (k *bank) serve(b *testing.B, opts Options) string {
	b.Helper()
	srv, err := New(k.cfg, k.pol, opts)
	if err != nil {
		b.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, l) }()
	b.Cleanup(func() {
		cancel()
		<-done
	})
	return l.Addr().String()
}

// writer opens a read-audit writer on the bank's own audit store, with
// the default durability (spool fsync every second).
func (k *bank) writer(b *testing.B) *audit.Writer {
	b.Helper()
	_, w := openWriter(b, k.db.URL(), audit.WriterOptions{Fsync: audit.FsyncInterval})
	return w
}

var tpsLine = regexp.MustCompile(`(?m)^tps = ([0-9.]+)`)

// pgbench runs pgbench against addr for the configured time and returns
// its TPS. args are the script options (-b select-only, -f file, ...).
func (k *bank) pgbench(b *testing.B, addr string, args ...string) float64 {
	b.Helper()
	host, port, _ := net.SplitHostPort(addr)
	all := append([]string{"-n", "-h", host, "-p", port, "-U", "teller", "-c",
		strconv.Itoa(*benchClients), "-j", "2", "-T", strconv.Itoa(*benchSeconds)}, args...)
	all = append(all, k.db.Name)
	out, err := exec.Command(pgBin(b, "pgbench"), all...).CombinedOutput()
	if err != nil {
		b.Fatalf("pgbench %v: %v\n%s", all, err, out)
	}
	m := tpsLine.FindSubmatch(out)
	if m == nil {
		b.Fatalf("pgbench printed no tps:\n%s", out)
	}
	tps, _ := strconv.ParseFloat(string(m[1]), 64)
	return tps
}

// interleave runs each variant rounds times, in turn, and returns each
// one's mean TPS.
func interleave(b *testing.B, variants []string, run func(variant string) float64) []float64 {
	sums := make([]float64, len(variants))
	for range *benchRounds {
		for i, v := range variants {
			sums[i] += run(v)
		}
	}
	for i := range sums {
		sums[i] /= float64(*benchRounds)
	}
	return sums
}

// BenchmarkReadAuditCost runs pgbench select-only (prepared, then simple)
// through Privata with read audit off and on, in the same run, on
// pgbench's accounts split by a policy, and prints the throughput of each
// and the cost of auditing (goal: at most 15%). Run with -benchtime 1x.
func BenchmarkReadAuditCost(b *testing.B) {
	k := newBank(b)
	off := k.serve(b, Options{})
	w := k.writer(b)
	on := k.serve(b, Options{Audit: func(string) ReadAuditor { return w }})
	for _, mode := range []string{"prepared", "simple"} {
		tps := interleave(b, []string{"off", "on"}, func(v string) float64 {
			addr := map[string]string{"off": off, "on": on}[v]
			return k.pgbench(b, addr, "-b", "select-only", "-M", mode)
		})
		b.ReportMetric(tps[0], mode+"_off_tps")
		b.ReportMetric(tps[1], mode+"_on_tps")
		b.ReportMetric(tps[1]/tps[0], mode+"_ratio")
		fmt.Printf("read audit, pgbench select-only -M %s, %d clients, scale %d, %d x %d s: "+
			"off %.0f tps, on %.0f tps, ratio %.3f (cost %.1f%%)\n", mode, *benchClients,
			*benchScale, *benchRounds, *benchSeconds, tps[0], tps[1], tps[1]/tps[0],
			100*(1-tps[1]/tps[0]))
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	w.Flush(ctx)
}

// BenchmarkCacheZipf runs point reads of pgbench's accounts with a Zipf
// access pattern (pgbench random_zipfian, s = 1.1) through Privata with the
// cache off and on (in-process and Redis), read audit on in both, in the
// same run, and prints the throughput of each, the ratio (goal: on at
// least 2x off) and the hit rate. Run with -benchtime 1x.
func BenchmarkCacheZipf(b *testing.B) {
	k := newBank(b)
	w := k.writer(b)
	audit := func(string) ReadAuditor { return w }
	addrs := map[string]string{"off": k.serve(b, Options{Audit: audit})}
	caches := map[string]*testCache{}
	for _, kind := range []string{"memory", "redis"} {
		tc := newTestCache(b, kind)
		caches[kind] = tc
		addrs[kind] = k.serve(b, Options{Audit: audit, Cache: tc.Cache})
	}
	script := filepath.Join(b.TempDir(), "zipf.sql")
	os.WriteFile(script, []byte(fmt.Sprintf("\\set aid random_zipfian(1, %d, 1.1)\n"+
		"SELECT abalance FROM pgbench_accounts WHERE aid = :aid;\n", 100000**benchScale)), 0o644)
	for _, mode := range []string{"prepared", "simple"} {
		before := map[string][2]float64{}
		for kind, tc := range caches {
			before[kind] = [2]float64{tc.hits(b), tc.count(b, "privata_cache_misses_total")}
		}
		variants := []string{"off", "memory", "redis"}
		tps := interleave(b, variants, func(v string) float64 {
			return k.pgbench(b, addrs[v], "-f", script, "-M", mode)
		})
		for i, v := range variants {
			b.ReportMetric(tps[i], mode+"_"+v+"_tps")
			line := fmt.Sprintf("cache, Zipf point reads -M %s, %d clients, %d accounts, %d x %d s: "+
				"%s %.0f tps", mode, *benchClients, 100000**benchScale, *benchRounds,
				*benchSeconds, v, tps[i])
			if tc := caches[v]; tc != nil {
				hits := tc.hits(b) - before[v][0]
				misses := tc.count(b, "privata_cache_misses_total") - before[v][1]
				rate := hits / max(1, hits+misses)
				b.ReportMetric(tps[i]/tps[0], mode+"_"+v+"_ratio")
				b.ReportMetric(rate, mode+"_"+v+"_hit_rate")
				line += fmt.Sprintf(", ratio to off %.2f, hit rate %.3f", tps[i]/tps[0], rate)
			}
			fmt.Println(line)
		}
	}
}
