package cache

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
)

// Memcached is a backend for instances that share a cache, on one or more
// memcached servers. Memcached has no scripts, so operations take several
// round trips; they are ordered so that no interleaving with another
// instance's operations makes a stale entry look fresh:
//
//   - a lookup reads the entry, then its marks;
//   - a store reads the counter, creates missing marks at that value, checks
//     the marks, then writes the entry;
//   - a bump increments the counter, then raises each mark to the new value
//     with compare-and-swap (a mark never goes down).
//
// Marks and indexes have no expiry: memcached evicts the least recently used
// items when it is full, and a missing mark makes its entries stale.
type Memcached struct {
	client  *memcache.Client
	counter string
	// hook, when set by tests, is called at named points of an operation.
	hook func(point string)
}

// NewMemcached returns a backend on the given servers (host:port). Timeout
// bounds each network operation.
func NewMemcached(servers []string, prefix string, timeout time.Duration) (*Memcached, error) {
	if len(servers) == 0 {
		return nil, errors.New("cache: memcached needs at least one server")
	}
	var sl memcache.ServerList
	if err := sl.SetServers(servers...); err != nil {
		return nil, fmt.Errorf("cache: memcached servers: %w", err)
	}
	c := memcache.NewFromSelector(&sl)
	c.Timeout = timeout
	c.MaxIdleConns = 64
	return &Memcached{client: c, counter: prefix + "counter"}, nil
}

// Name implements Backend.
func (m *Memcached) Name() string { return "memcached" }

// Close implements Backend.
func (m *Memcached) Close() error { return m.client.Close() }

func (m *Memcached) at(point string) {
	if m.hook != nil {
		m.hook(point)
	}
}

// Lookup implements Backend.
func (m *Memcached) Lookup(ctx context.Context, key string) (Probe, error) {
	return within(ctx, func() (Probe, error) { return m.lookup(ctx, key) })
}

// Store implements Backend.
func (m *Memcached) Store(ctx context.Context, key string, rec *Record, indexes []string,
	ttl time.Duration) (bool, error) {
	return within(ctx, func() (bool, error) { return m.store(ctx, key, rec, indexes, ttl) })
}

// Bump implements Backend.
func (m *Memcached) Bump(ctx context.Context, marks []string) error {
	_, err := within(ctx, func() (struct{}, error) { return struct{}{}, m.bump(ctx, marks) })
	return err
}

// Drop implements Backend.
func (m *Memcached) Drop(ctx context.Context, indexes []string) error {
	_, err := within(ctx, func() (struct{}, error) { return struct{}{}, m.drop(ctx, indexes) })
	return err
}

// within runs fn, an operation of several round trips, and gives up on it
// when ctx ends: the client has no contexts, only a timeout per round trip.
// An operation given up on may still complete; each one is safe to
// complete late (a late store is checked at lookup, a late bump only makes
// entries stale).
func within[T any](ctx context.Context, fn func() (T, error)) (T, error) {
	type result struct {
		v   T
		err error
	}
	done := make(chan result, 1)
	go func() {
		v, err := fn()
		done <- result{v, err}
	}()
	select {
	case r := <-done:
		return r.v, r.err
	case <-ctx.Done():
		var zero T
		return zero, fmt.Errorf("memcached: %w", ctx.Err())
	}
}

func (m *Memcached) lookup(ctx context.Context, key string) (Probe, error) {
	if err := ctx.Err(); err != nil {
		return Probe{}, err
	}
	items, err := m.client.GetMulti([]string{key, m.counter})
	if err != nil {
		return Probe{}, fmt.Errorf("memcached lookup: %w", err)
	}
	q, err := m.counterFrom(items)
	if err != nil {
		return Probe{}, err
	}
	it := items[key]
	if it == nil {
		return Probe{Counter: q}, nil
	}
	rec, err := decodeRecord(it.Value)
	if err != nil {
		return Probe{Stale: true, Counter: q}, nil
	}
	m.at("lookup:entry-read")

	values, found, err := m.marks(ctx, rec.Marks)
	if err != nil {
		return Probe{}, err
	}
	if !isFresh(rec, values, found) {
		return Probe{Stale: true, Counter: q}, nil
	}
	return Probe{Record: rec, Counter: q}, nil
}

func (m *Memcached) store(ctx context.Context, key string, rec *Record, indexes []string,
	ttl time.Duration) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	items, err := m.client.GetMulti([]string{m.counter})
	if err != nil {
		return false, fmt.Errorf("memcached store: %w", err)
	}
	q, err := m.counterFrom(items)
	if err != nil {
		return false, err
	}
	m.at("store:counter-read")

	values, found, err := m.marks(ctx, rec.Marks)
	if err != nil {
		return false, err
	}
	for i, k := range rec.Marks {
		if !found[i] {
			if values[i], err = m.createMark(k, q); err != nil {
				return false, err
			}
		}
		if values[i] > rec.Mark {
			return false, nil
		}
	}
	m.at("store:marks-checked")

	item := &memcache.Item{Key: key, Value: encodeRecord(rec), Expiration: seconds(ttl)}
	if err := m.client.Set(item); err != nil {
		return false, fmt.Errorf("memcached store: %w", err)
	}
	for _, ix := range indexes {
		if err := m.addToIndex(ix, key); err != nil {
			return true, err
		}
	}
	return true, nil
}

func (m *Memcached) bump(ctx context.Context, marks []string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c, err := m.client.Increment(m.counter, 1)
	if errors.Is(err, memcache.ErrCacheMiss) {
		if _, err = m.createCounter(); err == nil {
			c, err = m.client.Increment(m.counter, 1)
		}
	}
	if err != nil {
		return fmt.Errorf("memcached bump: %w", err)
	}
	m.at("bump:counter-incremented")
	for _, k := range marks {
		if err := m.raise(k, c); err != nil {
			return err
		}
	}
	return nil
}

func (m *Memcached) drop(ctx context.Context, indexes []string) error {
	for _, ix := range indexes {
		if err := ctx.Err(); err != nil {
			return err
		}
		it, err := m.client.Get(ix)
		if errors.Is(err, memcache.ErrCacheMiss) {
			continue
		}
		if err != nil {
			return fmt.Errorf("memcached drop: %w", err)
		}
		for _, k := range strings.Fields(string(it.Value)) {
			if err := m.client.Delete(k); err != nil && !errors.Is(err, memcache.ErrCacheMiss) {
				return fmt.Errorf("memcached drop: %w", err)
			}
		}
		if err := m.client.Delete(ix); err != nil && !errors.Is(err, memcache.ErrCacheMiss) {
			return fmt.Errorf("memcached drop: %w", err)
		}
	}
	return nil
}

// counterFrom reads the counter from a GetMulti result, creating it when
// it is missing.
func (m *Memcached) counterFrom(items map[string]*memcache.Item) (uint64, error) {
	if it := items[m.counter]; it != nil {
		return parseCount(it.Value)
	}
	return m.createCounter()
}

func (m *Memcached) createCounter() (uint64, error) {
	item := &memcache.Item{Key: m.counter, Value: strconv.AppendUint(nil, initialCounter(), 10)}
	err := m.client.Add(item)
	if err != nil && !errors.Is(err, memcache.ErrNotStored) {
		return 0, fmt.Errorf("memcached counter: %w", err)
	}
	it, err := m.client.Get(m.counter)
	if err != nil {
		return 0, fmt.Errorf("memcached counter: %w", err)
	}
	return parseCount(it.Value)
}

// marks reads mark values; found[i] is false for a missing mark.
func (m *Memcached) marks(ctx context.Context, keys []string) ([]uint64, []bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	values := make([]uint64, len(keys))
	found := make([]bool, len(keys))
	if len(keys) == 0 {
		return values, found, nil
	}
	items, err := m.client.GetMulti(keys)
	if err != nil {
		return nil, nil, fmt.Errorf("memcached marks: %w", err)
	}
	for i, k := range keys {
		if it := items[k]; it != nil {
			if values[i], err = parseCount(it.Value); err != nil {
				return nil, nil, err
			}
			found[i] = true
		}
	}
	return values, found, nil
}

// createMark sets a missing mark to v and returns the mark's value, which
// is another's if someone created it first.
func (m *Memcached) createMark(key string, v uint64) (uint64, error) {
	err := m.client.Add(&memcache.Item{Key: key, Value: strconv.AppendUint(nil, v, 10)})
	if err == nil {
		return v, nil
	}
	if !errors.Is(err, memcache.ErrNotStored) {
		return 0, fmt.Errorf("memcached mark: %w", err)
	}
	it, err := m.client.Get(key)
	if err != nil {
		// Gone again already: report it as after any entry.
		if errors.Is(err, memcache.ErrCacheMiss) {
			return ^uint64(0), nil
		}
		return 0, fmt.Errorf("memcached mark: %w", err)
	}
	return parseCount(it.Value)
}

// raise sets a mark to at least v.
func (m *Memcached) raise(key string, v uint64) error {
	value := strconv.AppendUint(nil, v, 10)
	for {
		it, err := m.client.Get(key)
		if errors.Is(err, memcache.ErrCacheMiss) {
			err = m.client.Add(&memcache.Item{Key: key, Value: value})
			if errors.Is(err, memcache.ErrNotStored) {
				continue
			}
			if err != nil {
				return fmt.Errorf("memcached bump: %w", err)
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("memcached bump: %w", err)
		}
		cur, err := parseCount(it.Value)
		if err != nil {
			return err
		}
		if cur >= v {
			return nil
		}
		it.Value = value
		err = m.client.CompareAndSwap(it)
		if errors.Is(err, memcache.ErrCASConflict) || errors.Is(err, memcache.ErrNotStored) {
			continue
		}
		if err != nil {
			return fmt.Errorf("memcached bump: %w", err)
		}
		return nil
	}
}

// addToIndex appends key to a subject's index, creating it when missing.
// When the server refuses to append (the index reached memcached's item
// size limit), the index restarts with this key: the entries it forgets
// are still stale after an erasure, which raises the subject's mark, only
// not deleted at once.
func (m *Memcached) addToIndex(ix, key string) error {
	line := []byte(key + " ")
	err := m.client.Append(&memcache.Item{Key: ix, Value: line})
	if errors.Is(err, memcache.ErrNotStored) {
		err = m.client.Add(&memcache.Item{Key: ix, Value: line})
		if errors.Is(err, memcache.ErrNotStored) {
			err = m.client.Append(&memcache.Item{Key: ix, Value: line})
		}
	}
	if err != nil && !errors.Is(err, memcache.ErrNotStored) {
		err = m.client.Set(&memcache.Item{Key: ix, Value: line})
	}
	if err != nil {
		return fmt.Errorf("memcached index: %w", err)
	}
	return nil
}

func parseCount(b []byte) (uint64, error) {
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, errors.New("memcached: counter value is not a number")
	}
	return n, nil
}

// seconds is a TTL in memcached's terms: whole seconds, at least one.
func seconds(d time.Duration) int32 {
	return int32(max(1, (d+time.Second-1)/time.Second))
}
