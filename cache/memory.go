package cache

import (
	"container/list"
	"context"
	"sync"
	"time"
)

// Memory is the in-process backend: records, marks and indexes in one
// least-recently-used list bounded by a byte budget. It is the default,
// needs no server, and suits one Privata process; instances that share a
// cache need Redis or Memcached.
type Memory struct {
	mu      sync.Mutex
	max     int64
	used    int64
	items   map[string]*list.Element
	lru     list.List // front: most recently used
	counter uint64
	evicted uint64
	now     func() time.Time
}

// itemOverhead approximates what an item costs beyond its key and value:
// the map slot, the list element and the item struct.
const itemOverhead = 160

// memberOverhead approximates what an index member costs beyond its key.
const memberOverhead = 48

type memItem struct {
	key     string
	rec     *Record             // an entry
	mark    uint64              // a mark, when isMark
	isMark  bool                // a mark
	members map[string]struct{} // an index
	expires time.Time           // zero: no expiry
	size    int64
}

// NewMemory returns an in-process backend that holds at most maxBytes of
// keys and values (with a fixed overhead per item), evicting the least
// recently used items to stay within it. An entry larger than a quarter of
// maxBytes is not stored.
func NewMemory(maxBytes int64) *Memory {
	return &Memory{max: maxBytes, items: map[string]*list.Element{}, now: time.Now}
}

// Name implements Backend.
func (m *Memory) Name() string { return "memory" }

// Bytes is the size of what the backend holds, as it counts it.
func (m *Memory) Bytes() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.used
}

// MaxBytes is the backend's byte budget.
func (m *Memory) MaxBytes() int64 { return m.max }

// Evictions is the number of items evicted to stay within the budget.
func (m *Memory) Evictions() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.evicted
}

// Lookup implements Backend.
func (m *Memory) Lookup(_ context.Context, key string) (Probe, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	it := m.get(key)
	if it == nil || it.rec == nil {
		return Probe{Counter: m.current()}, nil
	}
	rec := it.rec
	values := make([]uint64, len(rec.Marks))
	found := make([]bool, len(rec.Marks))
	for i, k := range rec.Marks {
		if mk := m.get(k); mk != nil && mk.isMark {
			values[i], found[i] = mk.mark, true
		}
	}
	if !isFresh(rec, values, found) {
		m.remove(m.items[key])
		return Probe{Stale: true, Counter: m.current()}, nil
	}
	return Probe{Record: rec, Counter: m.current()}, nil
}

// Store implements Backend.
func (m *Memory) Store(_ context.Context, key string, rec *Record, indexes []string,
	ttl time.Duration) (bool, error) {
	size := int64(itemOverhead + len(key) + 8 + len(rec.Sealed))
	for _, k := range rec.Marks {
		size += int64(len(k) + 16)
	}
	if size > m.max/4 {
		return false, nil
	}

	m.mu.Lock()
	defer m.mu.Unlock()
	defer m.evict()
	q := m.current()
	for _, k := range rec.Marks {
		mk := m.get(k)
		if mk == nil || !mk.isMark {
			m.setMark(k, q)
			mk = m.get(k)
		}
		if mk.mark > rec.Mark {
			return false, nil
		}
	}
	m.put(&memItem{key: key, rec: rec, expires: m.now().Add(ttl), size: size})
	for _, k := range indexes {
		ix := m.get(k)
		if ix == nil || ix.members == nil {
			ix = &memItem{key: k, members: map[string]struct{}{}, size: int64(itemOverhead + len(k))}
			m.put(ix)
		}
		if _, ok := ix.members[key]; !ok {
			ix.members[key] = struct{}{}
			ix.size += int64(len(key) + memberOverhead)
			m.used += int64(len(key) + memberOverhead)
		}
	}
	return true, nil
}

// Bump implements Backend.
func (m *Memory) Bump(_ context.Context, marks []string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.counter = m.current() + 1
	for _, k := range marks {
		m.setMark(k, m.counter)
	}
	m.evict()
	return nil
}

// Drop implements Backend.
func (m *Memory) Drop(_ context.Context, indexes []string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, k := range indexes {
		el, ok := m.items[k]
		if !ok {
			continue
		}
		for member := range el.Value.(*memItem).members {
			if e, ok := m.items[member]; ok {
				m.remove(e)
			}
		}
		m.remove(el)
	}
	return nil
}

// Close implements Backend.
func (m *Memory) Close() error { return nil }

func (m *Memory) current() uint64 {
	if m.counter == 0 {
		m.counter = initialCounter()
	}
	return m.counter
}

// get returns the live item under key, marking it recently used; an
// expired item is removed.
func (m *Memory) get(key string) *memItem {
	el, ok := m.items[key]
	if !ok {
		return nil
	}
	it := el.Value.(*memItem)
	if !it.expires.IsZero() && !m.now().Before(it.expires) {
		m.remove(el)
		return nil
	}
	m.lru.MoveToFront(el)
	return it
}

func (m *Memory) setMark(key string, v uint64) {
	if el, ok := m.items[key]; ok {
		if it := el.Value.(*memItem); it.isMark {
			it.mark = max(it.mark, v)
			m.lru.MoveToFront(el)
			return
		}
	}
	m.put(&memItem{key: key, mark: v, isMark: true, size: int64(itemOverhead + len(key) + 8)})
}

// put adds or replaces an item at the front of the list.
func (m *Memory) put(it *memItem) {
	if el, ok := m.items[it.key]; ok {
		m.remove(el)
	}
	m.items[it.key] = m.lru.PushFront(it)
	m.used += it.size
}

func (m *Memory) remove(el *list.Element) {
	it := el.Value.(*memItem)
	m.lru.Remove(el)
	delete(m.items, it.key)
	m.used -= it.size
}

// evict removes least recently used items until the budget holds.
func (m *Memory) evict() {
	for m.used > m.max {
		back := m.lru.Back()
		if back == nil {
			return
		}
		m.remove(back)
		m.evicted++
	}
}
