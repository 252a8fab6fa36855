package rewrite

import (
	"container/list"
	"sync"
)

// lru is a bounded map from strings to values that forgets the least
// recently used entry first. It holds at most limit entries whose keys
// take at most maxBytes together. It is safe for concurrent use.
type lru[V any] struct {
	mu       sync.Mutex
	limit    int
	maxBytes int
	bytes    int
	order    *list.List // front: most recently used
	byKey    map[string]*list.Element
}

type lruEntry[V any] struct {
	key string
	val V
}

func newLRU[V any](limit, maxBytes int) *lru[V] {
	return &lru[V]{limit: limit, maxBytes: maxBytes, order: list.New(),
		byKey: make(map[string]*list.Element)}
}

func (c *lru[V]) get(key string) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.byKey[key]; ok {
		c.order.MoveToFront(e)
		return e.Value.(*lruEntry[V]).val, true
	}
	var zero V
	return zero, false
}

func (c *lru[V]) put(key string, val V) {
	if c.limit <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.byKey[key]; ok {
		e.Value.(*lruEntry[V]).val = val
		c.order.MoveToFront(e)
		return
	}
	c.byKey[key] = c.order.PushFront(&lruEntry[V]{key: key, val: val})
	c.bytes += len(key)
	for c.order.Len() > c.limit || c.bytes > c.maxBytes && c.order.Len() > 1 {
		last := c.order.Back()
		c.order.Remove(last)
		k := last.Value.(*lruEntry[V]).key
		delete(c.byKey, k)
		c.bytes -= len(k)
	}
}

func (c *lru[V]) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}
