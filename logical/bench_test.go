package logical

import (
	"context"
	"flag"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

var (
	loadSeconds = flag.Int("logical.load-seconds", 30,
		"BenchmarkConsumerLag: how long the fixed load runs")
	loadRate = flag.Int("logical.load-rate", 20000,
		"BenchmarkConsumerLag: changes per second of the fixed load")
)

// benchTable is a split-shaped table for the load: REPLICA IDENTITY FULL and
// the context trigger, as storage makes every base table.
const benchTable = `
CREATE TABLE privata_clinical.bench_events (
    n bigint PRIMARY KEY, privata_pseudonym uuid NOT NULL, kind text, v integer);
ALTER TABLE privata_clinical.bench_events REPLICA IDENTITY FULL;
CREATE TRIGGER privata_context BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON privata_clinical.bench_events FOR EACH STATEMENT EXECUTE FUNCTION privata.emit_context();`

// BenchmarkConsumerBacklog measures the consumer's sustained rate: b.N
// changes are committed while no consumer runs, then one drains them.
func BenchmarkConsumerBacklog(b *testing.B) {
	f := newFixture(b)
	f.db.Exec(b, benchTable)
	f.ensureSlot(b)
	conn := f.db.Connect(b)
	ctx := context.Background()
	for done := 0; done < b.N; done += 1000 {
		n := min(1000, b.N-done)
		_, err := conn.Exec(ctx, `INSERT INTO privata_clinical.bench_events
			SELECT i, gen_random_uuid(), 'backlog', 0 FROM generate_series($1::bigint, $2) i`,
			done, done+n-1)
		if err != nil {
			b.Fatal(err)
		}
	}
	target := currentLSN(b, conn)
	b.ResetTimer()
	start := time.Now()
	c, stop := run(b, f.options())
	waitCaughtUp(b, c, target)
	elapsed := time.Since(start)
	b.StopTimer()
	stop()
	if n := count(b, f.store); n != int64(b.N) {
		b.Fatalf("%d records, want %d", n, b.N)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "changes/s")
}

// BenchmarkConsumerLag runs a fixed load (-logical.load-rate changes per
// second, inserts and updates in transactions of 100 rows, for
// -logical.load-seconds) and reports the consumer's rate and the lag from
// each transaction's commit to its records being durable, in percentiles.
// Run it with -benchtime=1x.
func BenchmarkConsumerLag(b *testing.B) {
	for range b.N {
		f := newFixture(b)
		f.db.Exec(b, benchTable)
		c, _ := run(b, f.options())
		for c.Acked() == 0 {
			time.Sleep(10 * time.Millisecond)
		}
		var lags []time.Duration
		var received atomic.Int64
		ctx, cancel := context.WithCancel(context.Background())
		collected := make(chan struct{})
		go func() {
			defer close(collected)
			c.Subscribe(ctx, func(_ context.Context, evs []Event) error {
				now := time.Now()
				for _, e := range evs {
					lags = append(lags, now.Sub(e.CommitTime))
				}
				received.Add(int64(len(evs)))
				return nil
			})
		}()
		waitSubscribed(b, c, 1)
		produced, elapsed := load(b, f.db.URL(), *loadRate, time.Duration(*loadSeconds)*time.Second)
		deadline := time.Now().Add(2 * time.Minute)
		for received.Load() < produced && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		cancel()
		<-collected
		if received.Load() != produced {
			b.Fatalf("received %d changes, produced %d", received.Load(), produced)
		}
		slices.Sort(lags)
		pct := func(p float64) float64 {
			return float64(lags[int(p*float64(len(lags)-1))]) / float64(time.Millisecond)
		}
		b.ReportMetric(float64(produced)/elapsed.Seconds(), "load-changes/s")
		b.ReportMetric(pct(0.50), "lag-p50-ms")
		b.ReportMetric(pct(0.95), "lag-p95-ms")
		b.ReportMetric(pct(0.99), "lag-p99-ms")
		b.ReportMetric(pct(1), "lag-max-ms")
		b.Logf("%d changes in %s (%.0f/s); lag p50 %.0f ms, p95 %.0f ms, p99 %.0f ms, max %.0f ms",
			produced, elapsed.Round(time.Millisecond), float64(produced)/elapsed.Seconds(),
			pct(0.5), pct(0.95), pct(0.99), pct(1))
	}
}

// load commits rate changes per second for d: transactions of 100 rows,
// alternately inserted and updated, from four connections. It returns the
// changes committed and the time taken.
func load(b *testing.B, url string, rate int, d time.Duration) (int64, time.Duration) {
	const rows, workers = 100, 4
	txPerSecond := float64(rate) / rows / workers
	period := time.Duration(float64(time.Second) / txPerSecond)
	var produced atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			ctx := context.Background()
			conn, err := pgx.Connect(ctx, url)
			if err != nil {
				errs <- err
				return
			}
			defer conn.Close(ctx)
			base := int64(w) * 1e9
			inserted := int64(0)
			for i := 0; ; i++ {
				at := start.Add(time.Duration(i) * period)
				if at.Sub(start) >= d {
					return
				}
				time.Sleep(time.Until(at))
				var tag, sql string
				var args []any
				if i%2 == 0 || inserted == 0 {
					sql = `INSERT INTO privata_clinical.bench_events
						SELECT i, gen_random_uuid(), 'load', 0 FROM generate_series($1::bigint, $2) i`
					args = []any{base + inserted, base + inserted + rows - 1}
					inserted += rows
					tag = "insert"
				} else {
					lo := base + (int64(i)*rows)%inserted
					sql = `UPDATE privata_clinical.bench_events SET v = v + 1
						WHERE n BETWEEN $1 AND $2`
					args = []any{lo, lo + rows - 1}
					tag = "update"
				}
				ct, err := conn.Exec(ctx, sql, args...)
				if err != nil {
					errs <- fmt.Errorf("%s: %w", tag, err)
					return
				}
				produced.Add(ct.RowsAffected())
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	return produced.Load(), elapsed
}
