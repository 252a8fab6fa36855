package cache

import (
	"context"
	"crypto/sha256"
	"strings"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

var testHashKey = []byte("0123456789abcdef0123456789abcdef")

// testKeys returns a ring over keys with the given IDs, newest first; a
// key's secret is derived from its ID, so rings built apart agree.
func testKeys(t testing.TB, ids ...string) *Keyring {
	t.Helper()
	keys := make([]Key, len(ids))
	for i, id := range ids {
		sum := sha256.Sum256([]byte("test key " + id))
		keys[i] = Key{ID: id, Secret: sum[:]}
	}
	r, err := NewKeyring(keys...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// fixture is a cache over one backend, with what a test needs to look
// inside it.
type fixture struct {
	kind    string
	prefix  string
	srv     *server // nil for memory
	backend Backend
	cache   *Cache
	reg     *prometheus.Registry
}

var backendKinds = []string{"memory", "redis", "memcached"}

// eachBackend runs fn once per backend, each with a cache of its own.
func eachBackend(t *testing.T, fn func(t *testing.T, f *fixture)) {
	for _, kind := range backendKinds {
		t.Run(kind, func(t *testing.T) {
			fn(t, newFixture(t, kind, nil))
		})
	}
}

// newFixture builds a cache of a kind on srv (the shared server when nil).
func newFixture(t testing.TB, kind string, srv *server) *fixture {
	t.Helper()
	f := &fixture{kind: kind, prefix: testPrefix(), srv: srv}
	if kind != "memory" && f.srv == nil {
		f.srv = sharedServer(t, kind)
	}
	f.backend = f.newBackend(t)
	f.cache = f.newCache(t, testKeys(t, "k1"), 2*time.Second)
	return f
}

func (f *fixture) newBackend(t testing.TB) Backend {
	t.Helper()
	var b Backend
	var err error
	switch f.kind {
	case "memory":
		b = NewMemory(64 << 20)
	case "redis":
		b, err = NewRedis(RedisOptions{Address: f.srv.addr, Prefix: f.prefix,
			Timeout: 2 * time.Second, MarkTTL: time.Hour})
	case "memcached":
		b, err = NewMemcached([]string{f.srv.addr}, f.prefix, 2*time.Second)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// newCache returns another cache over the fixture's backend, as another
// Privata instance (or a restarted one) would have.
func (f *fixture) newCache(t testing.TB, keys *Keyring, timeout time.Duration) *Cache {
	t.Helper()
	f.reg = prometheus.NewRegistry()
	c, err := New(Options{Backend: f.backend, Keys: keys, HashKey: testHashKey, Prefix: f.prefix,
		TTL: time.Minute, Timeout: timeout, Metrics: NewMetrics(f.reg)})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// dump returns every key and value the backend holds for the fixture.
func (f *fixture) dump(t testing.TB) (keys []string, values [][]byte) {
	t.Helper()
	ctx := context.Background()
	switch f.kind {
	case "memory":
		m := f.backend.(*Memory)
		m.mu.Lock()
		defer m.mu.Unlock()
		for el := m.lru.Front(); el != nil; el = el.Next() {
			it := el.Value.(*memItem)
			keys = append(keys, it.key)
			switch {
			case it.rec != nil:
				values = append(values, encodeRecord(it.rec))
			case it.members != nil:
				for k := range it.members {
					values = append(values, []byte(k))
				}
			}
		}
	case "redis":
		rc := redis.NewClient(&redis.Options{Addr: f.srv.addr})
		defer rc.Close()
		iter := rc.Scan(ctx, 0, f.prefix+"*", 1000).Iterator()
		for iter.Next(ctx) {
			k := iter.Val()
			keys = append(keys, k)
			switch typ := rc.Type(ctx, k).Val(); typ {
			case "string":
				values = append(values, []byte(rc.Get(ctx, k).Val()))
			case "hash":
				for field, v := range rc.HGetAll(ctx, k).Val() {
					values = append(values, []byte(field), []byte(v))
				}
			case "set":
				for _, v := range rc.SMembers(ctx, k).Val() {
					values = append(values, []byte(v))
				}
			default:
				t.Fatalf("redis key of unexpected type %s", typ)
			}
		}
		if err := iter.Err(); err != nil {
			t.Fatal(err)
		}
	case "memcached":
		mc := memcache.New(f.srv.addr)
		defer mc.Close()
		for _, k := range memcachedKeys(t, f.srv.addr) {
			if !strings.HasPrefix(k, f.prefix) {
				continue
			}
			keys = append(keys, k)
			it, err := mc.Get(k)
			if err == memcache.ErrCacheMiss {
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			values = append(values, it.Value)
		}
	}
	return keys, values
}

// entryKeys returns the names of the entries the backend holds.
func (f *fixture) entryKeys(t testing.TB) []string {
	t.Helper()
	keys, _ := f.dump(t)
	var out []string
	for _, k := range keys {
		if strings.HasPrefix(k, f.prefix+string(kindEntry)+":") {
			out = append(out, k)
		}
	}
	return out
}

// get looks req up and fails the test on error.
func get(t testing.TB, c *Cache, req *Request) Result {
	t.Helper()
	res, err := c.Get(context.Background(), req)
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	return res
}

// fill looks req up, expects a miss, and puts value.
func fill(t testing.TB, c *Cache, req *Request, value string, deps ...Dep) {
	t.Helper()
	res := get(t, c, req)
	if res.Hit {
		t.Fatalf("fill: %q is already cached", req.SQL)
	}
	if err := c.Put(context.Background(), res.Ticket, []byte(value), deps); err != nil {
		t.Fatalf("put: %v", err)
	}
}

// wantHit fails unless req hits with value.
func wantHit(t testing.TB, c *Cache, req *Request, value string) Result {
	t.Helper()
	res := get(t, c, req)
	if !res.Hit || string(res.Value) != value {
		t.Fatalf("get %q as %s: hit=%v value=%q, want hit %q", req.SQL, req.Role, res.Hit,
			res.Value, value)
	}
	return res
}

// wantMiss fails unless req misses.
func wantMiss(t testing.TB, c *Cache, req *Request) Result {
	t.Helper()
	res := get(t, c, req)
	if res.Hit {
		t.Fatalf("get %q as %s: hit %q, want a miss", req.SQL, req.Role, res.Value)
	}
	return res
}

// pointRead is a request for one patient by key, as the proxy would build
// it for an extended-protocol Execute.
func pointRead(role, key string) *Request {
	return &Request{
		Role:          role,
		Profile:       "default",
		Purpose:       "treatment",
		Database:      "us/clinic",
		SQL:           "SELECT * FROM patients WHERE id = $1",
		Params:        [][]byte{[]byte(key)},
		ParamFormats:  []int16{0},
		ResultFormats: []int16{0},
	}
}
