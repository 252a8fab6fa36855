package main

import (
	"context"
	"crypto/sha256"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/privata/privata/audit"
	"github.com/privata/privata/cache"
	"github.com/privata/privata/internal/audittest"
	"github.com/privata/privata/internal/cachetest"
	"github.com/privata/privata/internal/pgtest"
	"github.com/privata/privata/logical"
	"github.com/privata/privata/policy"
)

var (
	invalidationRate = flag.Int("invalidation.rate", 5000,
		"BenchmarkInvalidationDelay: changes per second made directly in PostgreSQL")
	invalidationSeconds = flag.Int("invalidation.seconds", 20,
		"BenchmarkInvalidationDelay: how long the load runs")
)

// eventsTable is a split-shaped table for the load: REPLICA IDENTITY FULL
// and the context trigger, as storage makes every base table.
const eventsTable = `
CREATE TABLE privata_clinical.bench_events (
    n bigint PRIMARY KEY, privata_pseudonym uuid NOT NULL, v integer);
ALTER TABLE privata_clinical.bench_events REPLICA IDENTITY FULL;
CREATE TRIGGER privata_context BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON privata_clinical.bench_events FOR EACH STATEMENT EXECUTE FUNCTION privata.emit_context();
INSERT INTO privata_clinical.bench_events
    SELECT i, gen_random_uuid(), 0 FROM generate_series(1, 100000) i;`

// delays is a cache.Stream that measures, for every change, the time from
// its commit to the end of its invalidation.
type delays struct {
	inner cache.Stream
	mu    sync.Mutex
	d     []time.Duration
}

func (s *delays) Subscribe(ctx context.Context,
	fn func(context.Context, []cache.Change) error) error {
	return s.inner.Subscribe(ctx, func(ctx context.Context, changes []cache.Change) error {
		err := fn(ctx, changes)
		now := time.Now()
		s.mu.Lock()
		for _, ch := range changes {
			s.d = append(s.d, now.Sub(ch.Commit))
		}
		s.mu.Unlock()
		return err
	})
}

// BenchmarkInvalidationDelay commits -invalidation.rate single-row updates
// per second directly in PostgreSQL (pgbench -R) for -invalidation.seconds,
// while the change consumer streams them into the audit store and the
// cache invalidator (in-process and Redis) applies them as serve wires
// them, and prints the distribution of the delay from each commit to its
// invalidation. Run with -benchtime 1x.
func BenchmarkInvalidationDelay(b *testing.B) {
	for _, kind := range []string{"memory", "redis"} {
		b.Run(kind, func(b *testing.B) { invalidationDelay(b, kind) })
	}
}

func invalidationDelay(b *testing.B, kind string) {
	cluster := pgtest.Shared(b)
	db := pgtest.NewDB(b, cluster)
	audittest.Install(b, db)
	db.Exec(b, eventsTable)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	store, err := audit.Open(ctx, "bench", db.URL())
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	slot := "privata_audit_" + db.Name
	defer dropSlot(db, slot)
	consumer, err := logical.New(logical.Options{Cluster: "bench", URL: db.URL(), Store: store,
		Slot: slot})
	if err != nil {
		b.Fatal(err)
	}
	var backend cache.Backend = cache.NewMemory(64 << 20)
	if kind == "redis" {
		srv := cachetest.Start(b, "redis")
		if backend, err = cache.NewRedis(cache.RedisOptions{Address: srv.Addr,
			Prefix: "privata:", Timeout: time.Second, MarkTTL: time.Hour}); err != nil {
			b.Fatal(err)
		}
	}
	secret := sha256.Sum256([]byte("bench"))
	keys, _ := cache.NewKeyring(cache.Key{ID: "k1", Secret: secret[:]})
	c, err := cache.New(cache.Options{Backend: backend, Keys: keys, HashKey: secret[:],
		Prefix: "privata:", TTL: time.Minute, Timeout: time.Second})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	pol := &policy.Policy{Tables: []*policy.Table{{Schema: "public", Name: "bench_events",
		Kind: policy.Child}}}
	measured := &delays{inner: &changeStream{consumer: consumer, pol: pol, cache: c}}
	var wg sync.WaitGroup
	wg.Go(func() { consumer.Run(ctx) })
	wg.Go(func() { cache.NewInvalidator(c).Run(ctx, measured, nil) })
	conn := db.Connect(b)
	waitFor(b, "the consumer's slot", func() bool {
		st, err := logical.ReadSlot(ctx, conn, slot)
		return err == nil && st.Active
	})

	script := filepath.Join(b.TempDir(), "update.sql")
	os.WriteFile(script, []byte("\\set n random(1, 100000)\n"+
		"UPDATE privata_clinical.bench_events SET v = v + 1 WHERE n = :n;\n"), 0o644)
	b.ResetTimer()
	start := time.Now()
	out, err := exec.Command(cluster.Local.Bin("pgbench"), "-n", "-c", "4", "-j", "2",
		"-R", strconv.Itoa(*invalidationRate), "-T", strconv.Itoa(*invalidationSeconds),
		"-f", script, db.URL()).CombinedOutput()
	if err != nil {
		b.Fatalf("pgbench: %v\n%s", err, out)
	}
	loadTime := time.Since(start)
	var lsn string
	if err := conn.QueryRow(ctx, "SELECT pg_current_wal_insert_lsn()::text").Scan(&lsn); err != nil {
		b.Fatal(err)
	}
	var want audit.LSN
	want.UnmarshalText([]byte(lsn))
	waitFor(b, "the consumer to catch up", func() bool { return consumer.Acked() >= want })
	time.Sleep(200 * time.Millisecond)
	b.StopTimer()
	cancel()
	wg.Wait()

	measured.mu.Lock()
	d := slices.Clone(measured.d)
	measured.mu.Unlock()
	if len(d) == 0 {
		b.Fatal("no change was invalidated")
	}
	slices.Sort(d)
	pct := func(p float64) time.Duration { return d[min(len(d)-1, int(p*float64(len(d))))] }
	rate := float64(len(d)) / loadTime.Seconds()
	b.ReportMetric(rate, "changes/s")
	for _, p := range []struct {
		name string
		q    float64
	}{{"p50", 0.5}, {"p90", 0.9}, {"p99", 0.99}, {"max", 1}} {
		b.ReportMetric(float64(pct(p.q).Microseconds())/1000, "delay-"+p.name+"-ms")
	}
	fmt.Printf("commit-to-invalidation delay (%s backend), %d changes at %.0f/s over %s: "+
		"p50 %s, p90 %s, p99 %s, max %s\n", kind, len(d), rate, loadTime.Round(time.Second),
		pct(0.5).Round(time.Microsecond), pct(0.9).Round(time.Microsecond),
		pct(0.99).Round(time.Microsecond), pct(1).Round(time.Microsecond))
}
