package cache

import (
	"context"
	"time"
)

// Backend stores records and the marks that prove them fresh. It sees only
// HMAC-named keys, sealed values and counter values; it needs no key
// material.
//
// A backend keeps a counter. A mark is a counter value stored under a key:
// when the thing it names (a subject's rows of a table, say) last changed.
// A record is fresh when every mark it lists exists and is not after the
// record's Mark. A missing mark (never set, expired or evicted) proves
// nothing, so the record is stale: eviction of anything is always safe.
type Backend interface {
	// Name is the backend's kind for metrics: memory, redis or memcached.
	Name() string
	// Lookup finds the record under key and returns it when it is fresh;
	// otherwise Probe says whether a record was there. Either way it reads
	// the counter.
	Lookup(ctx context.Context, key string) (Probe, error)
	// Store saves rec under key for ttl and adds key to every index,
	// unless a mark rec lists is already after rec.Mark; a missing mark is
	// first created at the counter's current value. It reports whether it
	// stored rec.
	Store(ctx context.Context, key string, rec *Record, indexes []string,
		ttl time.Duration) (bool, error)
	// Bump advances the counter and raises every mark listed to its new
	// value.
	Bump(ctx context.Context, marks []string) error
	// Drop deletes the records listed in the indexes, and the indexes.
	Drop(ctx context.Context, indexes []string) error
	// Close releases the backend's connections.
	Close() error
}

// Probe is what a lookup found.
type Probe struct {
	// Record is the entry, when it is fresh.
	Record *Record
	// Stale reports a record that is there but not provably fresh.
	Stale bool
	// Counter is the counter's value, read during the lookup.
	Counter uint64
}

// initialCounter is where a counter starts when it does not exist: the
// wall clock in microseconds. A counter advances by one per invalidation,
// far slower than the clock, so a counter recreated after it was lost
// (evicted, or its server restarted empty) starts above every value the
// lost one handed out.
func initialCounter() uint64 { return uint64(time.Now().UnixMicro()) }

// isFresh reports whether a record is fresh given its marks' values, in
// the order of rec.Marks; found[i] false means mark i is missing.
func isFresh(rec *Record, values []uint64, found []bool) bool {
	for i := range rec.Marks {
		if !found[i] || values[i] > rec.Mark {
			return false
		}
	}
	return true
}
