package audit

import (
	"context"
	"flag"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

var appendRate = flag.Int("audit.append-rate", 10000,
	"BenchmarkAppendCost: read records appended per second")

// BenchmarkAppend measures Append's latency (ns/op) and throughput from
// concurrent callers, as proxy sessions make them, under each fsync policy;
// the shipper runs meanwhile. The default policy is interval.
func BenchmarkAppend(b *testing.B) {
	for _, policy := range []FsyncPolicy{FsyncInterval, FsyncAlways, FsyncNever} {
		b.Run(string(policy), func(b *testing.B) {
			_, s := newStore(b)
			w, err := OpenWriter(context.Background(), s, WriterOptions{
				Dir: b.TempDir(), Fsync: policy})
			if err != nil {
				b.Fatal(err)
			}
			subjects := []Pseudonym{randomPseudonym()}
			ctx := context.Background()
			b.SetParallelism(8)
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for i := 0; pb.Next(); i++ {
					if err := w.Append(ctx, sampleRead(i, subjects...)); err != nil {
						b.Error(err)
						return
					}
				}
			})
			elapsed := time.Since(start)
			b.StopTimer()
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "records/s")
			flushCtx, cancel := context.WithTimeout(ctx, 5*time.Minute)
			defer cancel()
			if err := w.Close(flushCtx); err != nil {
				b.Fatal(err)
			}
		})
	}
}

// BenchmarkAppendCost appends -audit.append-rate records per second for
// five seconds, as a busy proxy would, with the default durability, and
// reports what each record costs: CPU of this process (Append and
// shipping), CPU of the store's backends (the inserts), and Append's
// latency. CPU time, unlike the wall clock, hardly depends on what else
// the machine runs. Run it with -benchtime=1x.
func BenchmarkAppendCost(b *testing.B) {
	for range b.N {
		_, s := newStore(b)
		w, err := OpenWriter(context.Background(), s, WriterOptions{Dir: b.TempDir()})
		if err != nil {
			b.Fatal(err)
		}
		ctx := context.Background()
		// The same paced loop without Append is the baseline: what pacing
		// itself costs is not the audit's.
		base0 := cpuTime()
		paced(b, func(int, int) error { return nil })
		base := cpuTime() - base0

		cpu0, pg0 := cpuTime(), backendCPU(b, s)
		start := time.Now()
		lat := paced(b, func(g, i int) error {
			subjects := []Pseudonym{randomPseudonym(), randomPseudonym()}
			return w.Append(ctx, sampleRead(g*1e7+i, subjects...))
		})
		flushCtx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		if err := w.Flush(flushCtx); err != nil {
			b.Fatal(err)
		}
		cancel()
		cpu, pg := cpuTime()-cpu0-base, backendCPU(b, s)-pg0
		n := float64(len(lat))
		b.ReportMetric(n/time.Since(start).Seconds(), "records/s")
		b.ReportMetric(float64(cpu.Microseconds())/n, "privata-cpu-µs/record")
		b.ReportMetric(float64(pg.Microseconds())/n, "store-cpu-µs/record")
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "append-p50-µs")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "append-p99-µs")
		w.Close(ctx)
	}
}

// paced calls f -audit.append-rate times a second for five seconds from
// eight goroutines and returns the latencies of the calls, sorted.
func paced(b *testing.B, f func(g, i int) error) []time.Duration {
	const workers, d = 8, 5 * time.Second
	period := time.Duration(float64(time.Second) * workers / float64(*appendRate))
	var mu sync.Mutex
	var lat []time.Duration
	var wg sync.WaitGroup
	start := time.Now()
	for g := range workers {
		wg.Go(func() {
			var mine []time.Duration
			for i := 0; ; i++ {
				at := start.Add(time.Duration(i) * period)
				if at.Sub(start) >= d {
					break
				}
				time.Sleep(time.Until(at))
				t0 := time.Now()
				if err := f(g, i); err != nil {
					b.Error(err)
					return
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		})
	}
	wg.Wait()
	slices.Sort(lat)
	return lat
}

// cpuTime is the user and system CPU time the process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// backendCPU is the CPU time of the server processes serving the store's
// database (from /proc, in clock ticks of 10 ms).
func backendCPU(b *testing.B, s *Store) time.Duration {
	rows, err := s.pool.Query(context.Background(),
		"SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
	if err != nil {
		b.Fatal(err)
	}
	defer rows.Close()
	var total time.Duration
	for rows.Next() {
		var pid int
		if err := rows.Scan(&pid); err != nil {
			b.Fatal(err)
		}
		stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			continue
		}
		// Fields after the command name: state is field 3, utime 14, stime 15.
		f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+2:]))
		ut, _ := strconv.Atoi(f[11])
		st, _ := strconv.Atoi(f[12])
		total += time.Duration(ut+st) * 10 * time.Millisecond
	}
	return total
}

var overheadSeconds = flag.Int("audit.overhead-seconds", 5,
	"BenchmarkReadAuditOverhead: length of each of the four phases")

// BenchmarkReadAuditOverhead runs a select-only workload (pgbench's
// statement on a pgbench_accounts table of 100,000 rows, eight clients)
// with read audit off and on, alternately (off, on, off, on), and reports
// the throughput of each, the CPU each statement costs (this process and
// every server process of the database: the clients' backends and the
// store's), and the cost of audit as ratios. With audit on every statement
// is followed by an Append naming one subject, as the proxy would do; the
// store is in the same cluster, the default. There is no proxy in between,
// so the baseline is cheaper than through Privata and the ratios overstate
// the cost. CPU per statement hardly depends on what else the machine
// runs; throughput does. Run it with -benchtime=1x.
func BenchmarkReadAuditOverhead(b *testing.B) {
	for range b.N {
		db, s := newStore(b)
		db.Exec(b, `CREATE TABLE pgbench_accounts (aid integer PRIMARY KEY, bid integer,
				abalance integer, filler character(84));
			INSERT INTO pgbench_accounts SELECT i, 1, 0, '' FROM generate_series(1, 100000) i`)
		db.Exec(b, "VACUUM ANALYZE pgbench_accounts")
		w, err := OpenWriter(context.Background(), s, WriterOptions{Dir: b.TempDir()})
		if err != nil {
			b.Fatal(err)
		}
		d := time.Duration(*overheadSeconds) * time.Second
		var tps, cpu [2]float64 // [off, on]
		var stmts [2]int64
		for phase := range 4 {
			audit := phase % 2
			var cpu0 time.Duration
			n, elapsed := selectOnly(b, db.URL(), d,
				func() { cpu0 = cpuTime() + backendCPU(b, s) },
				func() { cpu[audit] += float64((cpuTime() + backendCPU(b, s) - cpu0).Microseconds()) },
				func(ctx context.Context, aid int32) error {
					if audit == 0 {
						return nil
					}
					return w.Append(ctx, &Read{Role: "clinician", Actor: "bench",
						Statement:   "SELECT abalance FROM pgbench_accounts WHERE aid = $1",
						Fingerprint: "pgbench-select", Tables: []string{"public.pgbench_accounts"},
						Columns:  []string{"public.pgbench_accounts.abalance"},
						Decision: Allowed, Rows: 1, Subjects: []Pseudonym{{byte(aid), 1}}})
				})
			tps[audit] += float64(n) / elapsed.Seconds() / 2
			stmts[audit] += n
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		if err := w.Close(ctx); err != nil {
			b.Fatal(err)
		}
		cancel()
		off, on := cpu[0]/float64(stmts[0]), cpu[1]/float64(stmts[1])
		b.ReportMetric(tps[0], "tps-audit-off")
		b.ReportMetric(tps[1], "tps-audit-on")
		b.ReportMetric(100*(1-tps[1]/tps[0]), "tps-cost-%")
		b.ReportMetric(off, "cpu-µs/stmt-off")
		b.ReportMetric(on, "cpu-µs/stmt-on")
		b.ReportMetric(100*(on/off-1), "cpu-cost-%")
	}
}

// selectOnly runs pgbench's select-only statement from eight connections
// for d, calling after each. It calls started once every client is
// connected and done before any disconnects, and returns the statements
// run and the time taken.
func selectOnly(b *testing.B, url string, d time.Duration, started, done func(),
	after func(context.Context, int32) error) (int64, time.Duration) {
	const clients = 8
	var total atomic.Int64
	var ready, finished sync.WaitGroup
	ready.Add(clients)
	finished.Add(clients)
	gate, release := make(chan struct{}), make(chan struct{})
	ctx := context.Background()
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			conn, err := pgx.Connect(ctx, url)
			if err != nil {
				b.Error(err)
				ready.Done()
				finished.Done()
				return
			}
			defer conn.Close(ctx)
			ready.Done()
			<-gate
			rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
			var n int64
			for end := time.Now().Add(d); time.Now().Before(end); n++ {
				aid := int32(1 + rng.IntN(100000))
				var balance int32
				err := conn.QueryRow(ctx, "SELECT abalance FROM pgbench_accounts WHERE aid = $1",
					aid).Scan(&balance)
				if err == nil {
					err = after(ctx, aid)
				}
				if err != nil {
					b.Error(err)
					break
				}
			}
			total.Add(n)
			finished.Done()
			<-release
		})
	}
	ready.Wait()
	started()
	start := time.Now()
	close(gate)
	finished.Wait()
	elapsed := time.Since(start)
	done()
	close(release)
	wg.Wait()
	return total.Load(), elapsed
}
