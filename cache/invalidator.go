package cache

import (
	"context"
	"time"
)

// Op is the kind of a committed change.
type Op string

// The operations the change stream reports.
const (
	Insert   Op = "insert"
	Update   Op = "update"
	Delete   Op = "delete"
	Truncate Op = "truncate"
)

// Change is one committed change to a row (or, for a truncate, a table), as
// the change stream reports it. It carries no value.
type Change struct {
	// Table is the table under the name the proxy uses in Dep.Table; the
	// wiring maps the split base tables (privata_identity.T,
	// privata_clinical.T) to it.
	Table string
	// Subject is the row's pseudonym; empty when it is not known (a
	// truncate), which touches every subject's rows of the table.
	Subject string
	Op      Op
	// LSN is the commit's position in the write-ahead log.
	LSN uint64
	// Commit is the commit's time; the invalidator measures its delay from
	// it.
	Commit time.Time
}

// Stream is what the invalidator needs from the change stream: Subscribe
// calls fn with the changes of each committed transaction, in commit order,
// once they are durable, until ctx ends or fn fails.
type Stream interface {
	Subscribe(ctx context.Context, fn func(context.Context, []Change) error) error
}

// Invalidator applies the change stream to a cache: every committed change,
// whoever made it (through Privata or directly in PostgreSQL), makes stale
// the entries that depend on its table and subject.
type Invalidator struct {
	cache *Cache
	now   func() time.Time
}

// NewInvalidator returns an invalidator for c.
func NewInvalidator(c *Cache) *Invalidator {
	return &Invalidator{cache: c, now: time.Now}
}

// Apply invalidates what a transaction's changes replaced and records each
// change's delay from commit. The stream calls it in commit order.
//
// When it fails, the batch need not be delivered again: the cache serves
// nothing on this instance until a flush succeeds, and the flush, which
// Apply tries first next time (and Get tries on its own), makes stale every
// entry the lost batch could have made stale.
func (v *Invalidator) Apply(ctx context.Context, changes []Change) error {
	c := v.cache
	if c == nil {
		return nil
	}
	if err := c.Recover(ctx); err != nil {
		return err
	}
	if err := c.invalidate(ctx, changes, "stream"); err != nil {
		return err
	}
	now := v.now()
	for _, ch := range changes {
		if !ch.Commit.IsZero() {
			c.m.observeDelay(max(0, now.Sub(ch.Commit)).Seconds())
		}
	}
	return nil
}

// Run flushes the cache, since changes committed while no invalidator ran
// were not seen, then applies the stream's changes until ctx ends. A batch
// that fails is reported to onError (which may be nil) and not retried; see
// Apply. For a cache that is off (nil), Run returns at once.
func (v *Invalidator) Run(ctx context.Context, s Stream, onError func(error)) error {
	if v.cache == nil {
		return nil
	}
	v.cache.markDirty()
	if err := v.cache.Recover(ctx); err != nil && onError != nil {
		onError(err)
	}
	return s.Subscribe(ctx, func(ctx context.Context, changes []Change) error {
		if err := v.Apply(ctx, changes); err != nil && onError != nil {
			onError(err)
		}
		return nil
	})
}
