package cache

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// workload reads and writes subjects through a cache, with its own
// bookkeeping of what was committed, and checks every hit: a hit must hold
// a version at least as new as every version whose invalidation had
// completed before the read began.
type workload struct {
	c        *Cache
	subjects int

	mu       sync.Mutex
	version  []int // committed version per subject
	seen     []int // newest version whose invalidation completed
	stale    atomic.Int64
	hits     atomic.Int64
	errs     atomic.Int64
	lateHits atomic.Int64 // hits of reads that began while the backend was dead

	dead atomic.Bool // the backend is dead: reads that begin now must miss
}

func newWorkload(c *Cache, subjects int) *workload {
	return &workload{c: c, subjects: subjects, version: make([]int, subjects),
		seen: make([]int, subjects)}
}

func (w *workload) subject(s int) string { return fmt.Sprintf("subject-%04d", s) }

func (w *workload) request(s int) *Request { return pointRead("clinician", strconv.Itoa(s)) }

// op runs one read (nine times in ten) or write of a random subject.
func (w *workload) op(ctx context.Context, rng *rand.Rand) {
	s := rng.IntN(w.subjects)
	if rng.IntN(10) == 0 {
		w.mu.Lock()
		w.version[s]++
		v := w.version[s]
		w.mu.Unlock()
		// The change is committed; now the stream sees it.
		err := w.c.Invalidate(ctx, Change{Table: "public.patients", Subject: w.subject(s), Op: Update})
		if err != nil {
			w.errs.Add(1)
			return
		}
		w.mu.Lock()
		w.seen[s] = max(w.seen[s], v)
		w.mu.Unlock()
		return
	}

	w.mu.Lock()
	floor := w.seen[s]
	w.mu.Unlock()
	dead := w.dead.Load()
	res, err := w.c.Get(ctx, w.request(s))
	if err != nil {
		w.errs.Add(1)
	}
	if res.Hit {
		w.hits.Add(1)
		if dead {
			w.lateHits.Add(1)
		}
		if v, _ := strconv.Atoi(strings.TrimPrefix(string(res.Value), "v")); v < floor {
			w.stale.Add(1)
		}
		return
	}
	if !res.Ticket.Valid() {
		return
	}
	// The read from PostgreSQL, after the lookup.
	w.mu.Lock()
	v := w.version[s]
	w.mu.Unlock()
	err = w.c.Put(ctx, res.Ticket, []byte(fmt.Sprintf("v%d", v)),
		[]Dep{{"public.patients", w.subject(s)}})
	if err != nil {
		w.errs.Add(1)
	}
}

// run runs n operations on each of workers goroutines.
func (w *workload) run(workers, n int) {
	var wg sync.WaitGroup
	for i := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(i), uint64(time.Now().UnixNano())))
			for range n {
				w.op(context.Background(), rng)
			}
		}()
	}
	wg.Wait()
}

// TestBackendKilledMidWorkload kills the backend server (kill -9) while a
// workload runs, checks that reads meanwhile miss with errors and never
// serve stale data, then starts the server again and checks that the cache
// recovers.
func TestBackendKilledMidWorkload(t *testing.T) {
	for _, kind := range []string{"redis", "memcached"} {
		t.Run(kind, func(t *testing.T) {
			srv := ownServer(t, kind)
			f := newFixture(t, kind, srv)
			c := f.newCache(t, testKeys(t, "k1"), 300*time.Millisecond)
			w := newWorkload(c, 50)

			w.run(4, 500)
			if w.hits.Load() == 0 || w.errs.Load() != 0 {
				t.Fatalf("warm-up: %d hits, %d errors", w.hits.Load(), w.errs.Load())
			}

			// Kill the server while the workload runs.
			done := make(chan struct{})
			go func() { defer close(done); w.run(4, 1000) }()
			target := w.hits.Load() + 300
			for w.hits.Load() < target {
				select {
				case <-done:
					t.Fatal("the workload ended before the kill")
				default:
					time.Sleep(time.Millisecond)
				}
			}
			srv.kill()
			w.dead.Store(true)
			<-done
			w.run(2, 50)
			if w.errs.Load() == 0 {
				t.Fatal("no errors while the backend was dead")
			}
			if n := w.lateHits.Load(); n != 0 {
				t.Fatalf("%d hits from a dead backend", n)
			}

			// Start it again (empty): the cache recovers.
			if err := srv.start(); err != nil {
				t.Fatal(err)
			}
			w.dead.Store(false)
			// A client may wait a little before it dials again (go-redis
			// does, after failed dials): retry until the flush goes through.
			deadline := time.Now().Add(30 * time.Second)
			for err := c.Recover(context.Background()); err != nil; err = c.Recover(context.Background()) {
				if time.Now().After(deadline) {
					t.Fatalf("recover: %v", err)
				}
				time.Sleep(50 * time.Millisecond)
			}
			before := w.hits.Load()
			w.run(4, 500)
			if w.hits.Load() == before {
				t.Fatal("no hits after the backend came back")
			}
			if n := w.stale.Load(); n != 0 {
				t.Fatalf("%d stale hits", n)
			}
			t.Logf("%d hits, %d errors, 0 stale", w.hits.Load(), w.errs.Load())
		})
	}
}

// TestBackendStalledLosesNoInvalidation stops the backend (SIGSTOP) so
// that calls time out, commits a change whose invalidation therefore
// fails, and resumes the backend, which still holds the old entry: the
// entry is never served.
func TestBackendStalledLosesNoInvalidation(t *testing.T) {
	for _, kind := range []string{"redis", "memcached"} {
		t.Run(kind, func(t *testing.T) {
			ctx := context.Background()
			srv := ownServer(t, kind)
			f := newFixture(t, kind, srv)
			c := f.newCache(t, testKeys(t, "k1"), 200*time.Millisecond)
			req := pointRead("clinician", "1")
			dep := Dep{"public.patients", pseudoA}
			fill(t, c, req, "v0", dep)
			wantHit(t, c, req, "v0")

			srv.signal(t, syscall.SIGSTOP)
			res, err := c.Get(ctx, req)
			if err == nil || res.Hit || res.Ticket.Valid() {
				t.Fatalf("stalled backend: hit=%v ticket=%v err=%v, want a miss and an error",
					res.Hit, res.Ticket.Valid(), err)
			}
			// v1 commits; the change stream cannot write its invalidation.
			inv := NewInvalidator(c)
			lost := []Change{{Table: dep.Table, Subject: dep.Subject, Op: Update}}
			if err := inv.Apply(ctx, lost); err == nil {
				t.Fatal("invalidation against a stalled backend succeeded")
			}
			if c.Healthy() {
				t.Fatal("cache healthy after a lost invalidation")
			}
			srv.signal(t, syscall.SIGCONT)

			// The backend is back with the old entry and without the mark
			// the lost invalidation should have raised.
			for range 20 {
				if res := get(t, c, req); res.Hit {
					t.Fatalf("served %q after its invalidation was lost", res.Value)
				}
			}
			// The stream's next batch, about another subject, goes through:
			// it flushes first, and the lost batch is not needed again.
			next := []Change{{Table: dep.Table, Subject: pseudoB, Op: Update}}
			if err := inv.Apply(ctx, next); err != nil {
				t.Fatal(err)
			}
			if !c.Healthy() {
				t.Fatal("cache not healthy after a batch went through")
			}
			res = wantMiss(t, c, req)
			if err := c.Put(ctx, res.Ticket, []byte("v1"), []Dep{dep}); err != nil {
				t.Fatal(err)
			}
			wantHit(t, c, req, "v1")
		})
	}
}

// TestMemoryStaysWithinItsBudget fills a small in-process cache from
// several goroutines with values of many sizes, invalidations and
// erasures; it checks the byte count after every operation and that the
// count matches the items held.
func TestMemoryStaysWithinItsBudget(t *testing.T) {
	const budget = 1 << 20
	mem := NewMemory(budget)
	c, err := New(Options{Backend: mem, TTL: time.Minute, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var over atomic.Int64
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := context.Background()
			rng := rand.New(rand.NewPCG(uint64(g), 1))
			for i := range 3000 {
				s := fmt.Sprintf("subject-%d", rng.IntN(500))
				switch r := rng.IntN(100); {
				case r < 5:
					c.Invalidate(ctx, Change{Table: "public.patients", Subject: s})
				case r < 7:
					c.Erase(ctx, s)
				default:
					req := pointRead("clinician", fmt.Sprintf("%d-%d", g, i))
					res, _ := c.Get(ctx, req)
					value := make([]byte, rng.IntN(8<<10))
					c.Put(ctx, res.Ticket, value, []Dep{{"public.patients", s},
						{"public.encounters", s}})
				}
				if mem.Bytes() > budget {
					over.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if n := over.Load(); n != 0 {
		t.Fatalf("over budget after %d operations", n)
	}
	if mem.Evictions() == 0 {
		t.Fatal("nothing was evicted: the load did not test the budget")
	}

	mem.mu.Lock()
	var sum int64
	for el := mem.lru.Front(); el != nil; el = el.Next() {
		sum += el.Value.(*memItem).size
	}
	used, items := mem.used, len(mem.items)
	mem.mu.Unlock()
	if sum != used {
		t.Fatalf("items add up to %d bytes, the count says %d", sum, used)
	}
	if used < budget/2 {
		t.Fatalf("holds %d bytes of a %d budget: eviction is too eager", used, budget)
	}
	t.Logf("%d items, %d bytes, %d evictions", items, used, mem.Evictions())

	// What was filled last is there.
	req := pointRead("clinician", "last")
	fill(t, c, req, "last", Dep{"public.patients", "subject-1"})
	wantHit(t, c, req, "last")
}
