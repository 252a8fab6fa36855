package cache

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/redis/go-redis/v9"
)

// The benchmarks print, never assert. Each backend's "hit" case also
// measures, in the same run, a plain read of a value of the same size from
// the same backend (no naming, no freshness check, no decryption) and
// reports the ratio as x-plain.
//
//	go test ./cache -run '^$' -bench . -benchtime 20000x

const (
	benchEntries = 10000
	benchValue   = 1024 // bytes: about one patient row with its encounters
)

type benchSetup struct {
	f        *fixture
	reqs     []*Request
	deps     [][]Dep
	value    []byte
	zipf     *rand.Zipf
	plain    func(i int) // reads a plain value i
	setRaw   func(i int) // writes a plain value i
	rawNames []string
}

func newBenchSetup(b *testing.B, kind string) *benchSetup {
	f := newFixture(b, kind, nil)
	s := &benchSetup{f: f, value: make([]byte, benchValue)}
	for i := range benchEntries {
		s.reqs = append(s.reqs, pointRead("clinician", fmt.Sprint(i)))
		s.deps = append(s.deps, []Dep{{"public.patients", fmt.Sprintf("subject-%d", i)}})
	}
	s.zipf = rand.NewZipf(rand.New(rand.NewPCG(1, 2)), 1.1, 1, benchEntries-1)
	for i := range benchEntries {
		s.rawNames = append(s.rawNames, fmt.Sprintf("%splain:%d", f.prefix, i))
	}
	ctx := context.Background()
	switch kind {
	case "memory":
		m := map[string][]byte{}
		mem := f.backend.(*Memory)
		s.setRaw = func(i int) { mem.mu.Lock(); m[s.rawNames[i]] = s.value; mem.mu.Unlock() }
		s.plain = func(i int) { mem.mu.Lock(); _ = m[s.rawNames[i]]; mem.mu.Unlock() }
	case "redis":
		rc := redis.NewClient(&redis.Options{Addr: f.srv.addr, Protocol: 2})
		b.Cleanup(func() { rc.Close() })
		s.setRaw = func(i int) { rc.Set(ctx, s.rawNames[i], s.value, 0) }
		s.plain = func(i int) {
			if _, err := rc.Get(ctx, s.rawNames[i]).Bytes(); err != nil {
				b.Fatal(err)
			}
		}
	case "memcached":
		mc := memcache.New(f.srv.addr)
		mc.MaxIdleConns = 64
		b.Cleanup(func() { mc.Close() })
		s.setRaw = func(i int) { mc.Set(&memcache.Item{Key: s.rawNames[i], Value: s.value}) }
		s.plain = func(i int) {
			if _, err := mc.Get(s.rawNames[i]); err != nil {
				b.Fatal(err)
			}
		}
	}
	return s
}

func (s *benchSetup) fillAll(b *testing.B) {
	ctx := context.Background()
	for i, req := range s.reqs {
		res, err := s.f.cache.Get(ctx, req)
		if err != nil {
			b.Fatal(err)
		}
		if !res.Hit {
			if err := s.f.cache.Put(ctx, res.Ticket, s.value, s.deps[i]); err != nil {
				b.Fatal(err)
			}
		}
		s.setRaw(i)
	}
}

// plainNs measures the plain read, Zipf-distributed, in ns per read.
func (s *benchSetup) plainNs() float64 {
	const n = 5000
	start := time.Now()
	for range n {
		s.plain(int(s.zipf.Uint64()))
	}
	return float64(time.Since(start).Nanoseconds()) / n
}

func BenchmarkCache(b *testing.B) {
	for _, kind := range backendKinds {
		b.Run(kind, func(b *testing.B) {
			s := newBenchSetup(b, kind)
			s.fillAll(b)
			ctx := context.Background()

			b.Run("hit", func(b *testing.B) {
				plain := s.plainNs()
				b.ResetTimer()
				for range b.N {
					res, err := s.f.cache.Get(ctx, s.reqs[s.zipf.Uint64()])
					if err != nil || !res.Hit {
						b.Fatalf("hit=%v err=%v", res.Hit, err)
					}
				}
				per := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
				b.ReportMetric(plain, "plain-ns/op")
				b.ReportMetric(per/plain, "x-plain")
			})

			b.Run("miss", func(b *testing.B) {
				for i := range b.N {
					req := pointRead("nobody", fmt.Sprint(i))
					if res, err := s.f.cache.Get(ctx, req); err != nil || res.Hit {
						b.Fatalf("hit=%v err=%v", res.Hit, err)
					}
				}
			})

			b.Run("put", func(b *testing.B) {
				tickets := make([]Ticket, b.N)
				for i := range b.N {
					res, err := s.f.cache.Get(ctx, pointRead("writer", fmt.Sprint(i)))
					if err != nil {
						b.Fatal(err)
					}
					tickets[i] = res.Ticket
				}
				b.ResetTimer()
				for i := range b.N {
					if err := s.f.cache.Put(ctx, tickets[i], s.value, s.deps[i%benchEntries]); err != nil {
						b.Fatal(err)
					}
				}
			})

			b.Run("invalidate", func(b *testing.B) {
				for range b.N {
					ch := Change{Table: "public.patients", Op: Update,
						Subject: s.deps[s.zipf.Uint64()][0].Subject}
					if err := s.f.cache.Invalidate(ctx, ch); err != nil {
						b.Fatal(err)
					}
				}
			})

			// Reads with 1 write in 100, Zipf over both: hits, refills
			// after misses, invalidations.
			b.Run("mixed", func(b *testing.B) {
				s.f.cache.Flush(ctx)
				s.fillAll(b)
				rng := rand.New(rand.NewPCG(3, 4))
				hits, reads := 0, 0
				b.ResetTimer()
				for range b.N {
					i := s.zipf.Uint64()
					if rng.IntN(100) == 0 {
						s.f.cache.Invalidate(ctx, Change{Table: "public.patients",
							Subject: s.deps[i][0].Subject, Op: Update})
						continue
					}
					reads++
					res, err := s.f.cache.Get(ctx, s.reqs[i])
					if err != nil {
						b.Fatal(err)
					}
					if res.Hit {
						hits++
						continue
					}
					s.f.cache.Put(ctx, res.Ticket, s.value, s.deps[i])
				}
				b.ReportMetric(float64(hits)/float64(max(reads, 1)), "hit-rate")
			})
		})
	}
}
