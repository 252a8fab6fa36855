package cache

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Dep is something a cached answer depends on.
type Dep struct {
	// Table is the table as the proxy names it (the application's
	// schema-qualified name, e.g. public.patients). Changes reported by the
	// change stream must use the same names.
	Table string
	// Subject is the pseudonym of a subject whose rows of Table the answer
	// holds. An empty Subject means the answer depends on Table as a whole
	// (it returned no row of it, or rows whose subjects are unknown): any
	// change to Table makes it stale.
	Subject string
}

// MaxDeps is the most dependencies an entry may have; answers with more
// are not cached (they are not the point reads a cache is for).
const MaxDeps = 256

// Options configure a Cache.
type Options struct {
	// Backend stores the entries and marks.
	Backend Backend
	// Keys seal values. Nil means a random key that lives as long as the
	// process, which only suits the memory backend.
	Keys *Keyring
	// HashKey names entries and marks (HMAC-SHA-256), at least 32 bytes.
	// Nil means a random one, which only suits the memory backend.
	HashKey []byte
	// Prefix starts every key; it must be the backend's prefix.
	Prefix string
	// TTL is the longest an entry lives.
	TTL time.Duration
	// Timeout bounds each call to the backend.
	Timeout time.Duration
	// Metrics, when set, counts what the cache does.
	Metrics *Metrics
}

// Cache is the read cache. It is safe for concurrent use. A nil *Cache is
// a cache that is off: every Get misses without a ticket and the other
// methods do nothing.
type Cache struct {
	backend Backend
	keys    *Keyring
	names   *namer
	ttl     time.Duration
	timeout time.Duration
	m       *backendMetrics

	// failures counts invalidations that could not be written; covered is
	// the count a later successful flush covers. While they differ, this
	// instance serves nothing from the cache.
	failures  atomic.Uint64
	covered   atomic.Uint64
	recoverMu sync.Mutex
	lastTry   atomic.Int64 // unix nanoseconds of the last recovery attempt
}

// recoverEvery spaces the recovery attempts that Get makes on its own.
const recoverEvery = 200 * time.Millisecond

// New returns a cache over o.Backend.
func New(o Options) (*Cache, error) {
	if o.Backend == nil {
		return nil, errors.New("cache: no backend")
	}
	shared := o.Backend.Name() != "memory"
	if o.Keys == nil {
		if shared {
			return nil, errors.New("cache: a shared backend needs configured encryption keys")
		}
		o.Keys = RandomKeyring()
	}
	if o.HashKey == nil {
		if shared {
			return nil, errors.New("cache: a shared backend needs a configured hash key")
		}
		o.HashKey = make([]byte, 32)
		if _, err := rand.Read(o.HashKey); err != nil {
			return nil, fmt.Errorf("cache: hash key: %w", err)
		}
	}
	if len(o.HashKey) < 32 {
		return nil, errors.New("cache: hash key shorter than 32 bytes")
	}
	if o.TTL < time.Second || o.Timeout <= 0 {
		return nil, fmt.Errorf("cache: ttl %s (want at least 1s) or timeout %s (want more than 0)",
			o.TTL, o.Timeout)
	}
	return &Cache{
		backend: o.Backend,
		keys:    o.Keys,
		names:   newNamer(o.Prefix, o.HashKey),
		ttl:     o.TTL,
		timeout: o.Timeout,
		m:       o.Metrics.forBackend(o.Backend.Name()),
	}, nil
}

// Backend returns the cache's backend.
func (c *Cache) Backend() Backend { return c.backend }

// Close closes the backend.
func (c *Cache) Close() error {
	if c == nil {
		return nil
	}
	return c.backend.Close()
}

// Result is the outcome of Get.
type Result struct {
	// Hit reports that Value is a fresh answer.
	Hit bool
	// Value is the cached answer, as Put stored it.
	Value []byte
	// Deps are the answer's dependencies, as Put stored them: the caller
	// audits a hit with the subjects they name.
	Deps []Dep
	// Ticket, on a miss, lets the caller Put the answer it reads from
	// PostgreSQL. It is not valid when the request may not be cached or
	// the backend failed.
	Ticket Ticket
}

// Ticket carries, from a miss to the Put that fills it, the entry's name
// and the counter's value read before the database read.
type Ticket struct {
	name string
	mark uint64
}

// Valid reports whether the ticket allows a Put.
func (t Ticket) Valid() bool { return t.name != "" }

// Get looks req up. A hit is an answer no change seen by the change stream
// (or by Invalidate) has replaced. On a miss, the caller reads from
// PostgreSQL, after Get returns, and may Put the answer with the ticket.
//
// A backend that fails or does not answer within the timeout gives a miss
// without a ticket and the error; the caller reads from PostgreSQL.
func (c *Cache) Get(ctx context.Context, req *Request) (Result, error) {
	if c == nil {
		return Result{}, nil
	}
	if req.BreakGlass {
		c.m.miss("bypass")
		return Result{}, nil
	}
	if !c.Healthy() && !c.tryRecover(ctx) {
		c.m.miss("unsafe")
		return Result{}, nil
	}
	name := c.names.entry(req)

	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	p, err := c.backend.Lookup(ctx, name)
	if err != nil {
		c.m.fail("lookup")
		c.m.miss("error")
		return Result{}, fmt.Errorf("cache: %w", err)
	}
	ticket := Ticket{name: name, mark: p.Counter}
	if p.Record == nil {
		c.m.miss(pick(p.Stale, "stale", "absent"))
		return Result{Ticket: ticket}, nil
	}

	plain, err := c.keys.open(name, p.Record.Sealed, p.Record.aad(name))
	if errors.Is(err, ErrUnknownKey) {
		c.m.miss("key_removed")
		return Result{Ticket: ticket}, nil
	}
	var deps []Dep
	var value []byte
	if err == nil {
		deps, value, err = decodePayload(plain)
	}
	if err != nil {
		c.m.fail("open")
		c.m.miss("error")
		return Result{Ticket: ticket}, err
	}
	c.m.hit()
	return Result{Hit: true, Value: value, Deps: deps}, nil
}

// Put stores value, the answer read after the miss that gave t, with the
// dependencies the rows showed. It stores nothing when a change already
// replaced what the answer depends on, or when there are more than MaxDeps
// dependencies. At least one dependency is required: an answer that
// returned no row of a table depends on the table as a whole.
func (c *Cache) Put(ctx context.Context, t Ticket, value []byte, deps []Dep) error {
	if c == nil || !t.Valid() {
		return nil
	}
	deps = normalize(deps)
	if len(deps) == 0 {
		return errors.New("cache: put without dependencies")
	}
	for _, d := range deps {
		if d.Table == "" {
			return errors.New("cache: dependency without a table")
		}
	}
	if len(deps) > MaxDeps {
		c.m.fill("skipped")
		return nil
	}
	marks, indexes := c.depKeys(deps)
	rec := &Record{Mark: t.mark, Marks: marks}
	sealed, err := c.keys.seal(t.name, encodePayload(deps, value), rec.aad(t.name))
	if err != nil {
		return err
	}
	rec.Sealed = sealed

	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	stored, err := c.backend.Store(ctx, t.name, rec, indexes, c.ttl)
	if err != nil {
		c.m.fail("store")
		c.m.fill("error")
		return fmt.Errorf("cache: %w", err)
	}
	c.m.fill(pick(stored, "stored", "stale"))
	return nil
}

// depKeys returns the marks an entry with deps depends on, sorted, and the
// indexes of its subjects.
func (c *Cache) depKeys(deps []Dep) (marks, indexes []string) {
	marks = append(marks, c.names.flush())
	for _, d := range deps {
		if d.Subject == "" {
			marks = append(marks, c.names.table(d.Table))
			continue
		}
		marks = append(marks, c.names.row(d.Table, d.Subject), c.names.tableAll(d.Table),
			c.names.subject(d.Subject))
		indexes = append(indexes, c.names.index(d.Subject))
	}
	slices.Sort(marks)
	slices.Sort(indexes)
	return slices.Compact(marks), slices.Compact(indexes)
}

func normalize(deps []Dep) []Dep {
	deps = slices.Clone(deps)
	slices.SortFunc(deps, func(a, b Dep) int {
		if c := strings.Compare(a.Table, b.Table); c != 0 {
			return c
		}
		return strings.Compare(a.Subject, b.Subject)
	})
	return slices.Compact(deps)
}

// Invalidate makes stale every entry that depends on what the changes
// touched. The proxy calls it for a write that went through Privata, after
// the transaction committed and before the client learns that it did, so
// that the session reads its own writes; the change stream's Invalidator
// calls it for every committed change. A change with no subject touches
// every subject's rows of its table.
//
// When the backend fails, this instance serves nothing from the cache until
// a flush succeeds (see Recover).
func (c *Cache) Invalidate(ctx context.Context, changes ...Change) error {
	return c.invalidate(ctx, changes, "write")
}

func (c *Cache) invalidate(ctx context.Context, changes []Change, source string) error {
	if c == nil || len(changes) == 0 {
		return nil
	}
	marks := make([]string, 0, 2*len(changes))
	for _, ch := range changes {
		if ch.Table == "" {
			return errors.New("cache: change without a table")
		}
		marks = append(marks, c.names.table(ch.Table))
		if ch.Subject == "" {
			marks = append(marks, c.names.tableAll(ch.Table))
		} else {
			marks = append(marks, c.names.row(ch.Table, ch.Subject))
		}
	}
	slices.Sort(marks)
	if err := c.bump(ctx, slices.Compact(marks), "bump"); err != nil {
		return err
	}
	c.m.invalidated(source, len(changes))
	return nil
}

// Erase removes every entry of a subject, for an erasure or a restriction:
// it makes them stale at once, then deletes them.
func (c *Cache) Erase(ctx context.Context, subject string) error {
	if c == nil {
		return nil
	}
	if subject == "" {
		return errors.New("cache: erase without a subject")
	}
	if err := c.bump(ctx, []string{c.names.subject(subject)}, "bump"); err != nil {
		return err
	}
	c.m.invalidated("erase", 1)

	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	if err := c.backend.Drop(ctx, []string{c.names.index(subject)}); err != nil {
		c.m.fail("drop")
		return fmt.Errorf("cache: %w", err)
	}
	return nil
}

// Flush makes every entry stale. It covers every invalidation that failed
// before it started: a failed invalidation's change committed before the
// attempt, so an entry read before the flush is stale for it and one read
// after is not.
func (c *Cache) Flush(ctx context.Context) error {
	if c == nil {
		return nil
	}
	failed := c.failures.Load()
	if err := c.bump(ctx, []string{c.names.flush()}, "flush"); err != nil {
		return err
	}
	for {
		cur := c.covered.Load()
		if cur >= failed || c.covered.CompareAndSwap(cur, failed) {
			break
		}
	}
	c.m.invalidated("flush", 1)
	return nil
}

// Recover flushes the cache if an invalidation failed since the last
// flush; until it succeeds, this instance serves nothing from the cache.
func (c *Cache) Recover(ctx context.Context) error {
	if c == nil || c.Healthy() {
		return nil
	}
	c.recoverMu.Lock()
	defer c.recoverMu.Unlock()
	if c.Healthy() {
		return nil
	}
	c.lastTry.Store(time.Now().UnixNano())
	return c.Flush(ctx)
}

// Healthy reports whether this instance may serve hits: every
// invalidation that failed is covered by a later flush.
func (c *Cache) Healthy() bool {
	return c != nil && c.covered.Load() == c.failures.Load()
}

// markDirty records an invalidation that may have been missed.
func (c *Cache) markDirty() { c.failures.Add(1) }

// tryRecover attempts a recovery unless one was tried very recently.
func (c *Cache) tryRecover(ctx context.Context) bool {
	if time.Since(time.Unix(0, c.lastTry.Load())) < recoverEvery {
		return false
	}
	return c.Recover(ctx) == nil
}

// bump raises marks; a failure leaves the cache dirty.
func (c *Cache) bump(ctx context.Context, marks []string, op string) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	if err := c.backend.Bump(ctx, marks); err != nil {
		c.markDirty()
		c.m.fail(op)
		return fmt.Errorf("cache: %w", err)
	}
	return nil
}

func pick(cond bool, yes, no string) string {
	if cond {
		return yes
	}
	return no
}
