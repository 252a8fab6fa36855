package cache

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis is the backend for instances that share a cache. Each operation is
// one Lua script, so it is one round trip and atomic: a lookup reads the
// entry and all its marks in one step, and an invalidation advances the
// counter and raises its marks in one step.
//
// Scripts read the marks an entry names, keys not passed to them as KEYS,
// so Redis Cluster is not supported; a single server or a primary with
// replicas is.
//
// Marks must not go back in time. Run Redis without persistence, or flush
// the cache (restart the invalidator) after restoring a snapshot or
// failing over to a replica that may lag: either can bring back old marks
// next to entries they no longer make stale.
type Redis struct {
	client  *redis.Client
	counter string
	markTTL time.Duration
}

// RedisOptions configure a Redis backend.
type RedisOptions struct {
	// Address is host:port or a redis:// or rediss:// URL.
	Address string
	// Prefix starts the counter's key; the cache names everything else.
	Prefix string
	// Timeout bounds dialing, reading and writing; callers also bound each
	// call with their context.
	Timeout time.Duration
	// MarkTTL is how long a mark or an index lives after it was last set
	// or used. It must be longer than any entry's TTL.
	MarkTTL time.Duration
}

// quiet silences go-redis's own logger, which would print connection
// errors to stderr: the cache returns its errors and counts them, and the
// server decides what to log.
var quiet sync.Once

type discard struct{}

func (discard) Printf(context.Context, string, ...any) {}

// NewRedis returns a Redis backend. It does not connect until first used.
func NewRedis(o RedisOptions) (*Redis, error) {
	quiet.Do(func() { redis.SetLogger(discard{}) })
	var opt *redis.Options
	if strings.Contains(o.Address, "://") {
		var err error
		if opt, err = redis.ParseURL(o.Address); err != nil {
			// The URL may hold a password: do not repeat it.
			return nil, errors.New("cache: redis address is not a valid redis:// URL")
		}
	} else {
		opt = &redis.Options{Addr: o.Address}
	}
	opt.Protocol = 2
	opt.DialTimeout = o.Timeout
	opt.ReadTimeout = o.Timeout
	opt.WriteTimeout = o.Timeout
	opt.PoolTimeout = o.Timeout
	opt.ContextTimeoutEnabled = true
	opt.MaxRetries = -1
	opt.DialerRetries = 1
	opt.DisableIdentity = true
	return &Redis{client: redis.NewClient(opt), counter: o.Prefix + "counter", markTTL: o.MarkTTL}, nil
}

// Name implements Backend.
func (r *Redis) Name() string { return "redis" }

// Close implements Backend.
func (r *Redis) Close() error { return r.client.Close() }

// counterLua defines counter(key, start): the counter's value, created at
// start when missing.
const counterLua = `
local function counter(key, start)
  local c = redis.call('GET', key)
  if not c then
    redis.call('SET', key, start)
    c = start
  end
  return c
end
`

// lookupScript: KEYS[1] entry, KEYS[2] counter; ARGV[1] counter start.
// Returns {1, counter, mark, marks, sealed} for a fresh entry, else
// {0, counter}, or {2, counter} for a stale one, which it deletes.
var lookupScript = redis.NewScript(counterLua + `
local e = redis.call('HMGET', KEYS[1], 'm', 'd', 'v')
if not e[1] then
  return {0, counter(KEYS[2], ARGV[1])}
end
local mark = tonumber(e[1])
local keys = {}
for k in string.gmatch(e[2], '%S+') do keys[#keys + 1] = k end
if #keys > 0 then
  local vals = redis.call('MGET', unpack(keys))
  for i = 1, #keys do
    if not vals[i] or tonumber(vals[i]) > mark then
      redis.call('DEL', KEYS[1])
      return {2, counter(KEYS[2], ARGV[1])}
    end
  end
end
return {1, counter(KEYS[2], ARGV[1]), e[1], e[2], e[3]}
`)

// storeScript: KEYS[1] entry, KEYS[2] counter, KEYS[3..] indexes;
// ARGV: counter start, mark, marks (space-separated), sealed, ttl ms,
// mark ttl ms. Returns 1 when stored, 0 when a mark is after the entry.
var storeScript = redis.NewScript(counterLua + `
local q = counter(KEYS[2], ARGV[1])
local mark = tonumber(ARGV[2])
local keys = {}
for k in string.gmatch(ARGV[3], '%S+') do keys[#keys + 1] = k end
for _, k in ipairs(keys) do
  local v = redis.call('GET', k)
  if not v then
    redis.call('SET', k, q, 'PX', ARGV[6])
    v = q
  else
    redis.call('PEXPIRE', k, ARGV[6])
  end
  if tonumber(v) > mark then return 0 end
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'm', ARGV[2], 'd', ARGV[3], 'v', ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
for i = 3, #KEYS do
  redis.call('SADD', KEYS[i], KEYS[1])
  redis.call('PEXPIRE', KEYS[i], ARGV[6])
end
return 1
`)

// bumpScript: KEYS[1] counter, KEYS[2..] marks; ARGV: counter start, mark
// ttl ms. The new counter value is above every mark, so it is set as is.
var bumpScript = redis.NewScript(counterLua + `
counter(KEYS[1], ARGV[1])
local c = redis.call('INCR', KEYS[1])
for i = 2, #KEYS do
  redis.call('SET', KEYS[i], c, 'PX', ARGV[2])
end
return c
`)

// dropScript: KEYS are indexes; deletes their members and them.
var dropScript = redis.NewScript(`
local n = 0
for _, ix in ipairs(KEYS) do
  local members = redis.call('SMEMBERS', ix)
  for i = 1, #members, 500 do
    n = n + redis.call('DEL', unpack(members, i, math.min(i + 499, #members)))
  end
  redis.call('DEL', ix)
end
return n
`)

// Lookup implements Backend.
func (r *Redis) Lookup(ctx context.Context, key string) (Probe, error) {
	res, err := lookupScript.Run(ctx, r.client, []string{key, r.counter}, initialCounter()).Slice()
	if err != nil {
		return Probe{}, fmt.Errorf("redis lookup: %w", err)
	}
	if len(res) == 0 {
		return Probe{}, fmt.Errorf("redis lookup: empty reply")
	}
	c, err := uintOf(res, 1)
	if err != nil {
		return Probe{}, err
	}
	if res[0] != int64(1) {
		return Probe{Stale: res[0] == int64(2), Counter: c}, nil
	}
	if len(res) != 5 {
		return Probe{}, fmt.Errorf("redis lookup: reply of %d items", len(res))
	}
	mark, err := uintOf(res, 2)
	if err != nil {
		return Probe{}, err
	}
	marks, _ := res[3].(string)
	sealed, _ := res[4].(string)
	rec := &Record{Mark: mark, Marks: strings.Fields(marks), Sealed: []byte(sealed)}
	return Probe{Record: rec, Counter: c}, nil
}

// Store implements Backend.
func (r *Redis) Store(ctx context.Context, key string, rec *Record, indexes []string,
	ttl time.Duration) (bool, error) {
	keys := append([]string{key, r.counter}, indexes...)
	n, err := storeScript.Run(ctx, r.client, keys, initialCounter(), rec.Mark,
		strings.Join(rec.Marks, " "), rec.Sealed, ttl.Milliseconds(), r.markTTL.Milliseconds()).Int()
	if err != nil {
		return false, fmt.Errorf("redis store: %w", err)
	}
	return n == 1, nil
}

// Bump implements Backend.
func (r *Redis) Bump(ctx context.Context, marks []string) error {
	keys := append([]string{r.counter}, marks...)
	err := bumpScript.Run(ctx, r.client, keys, initialCounter(), r.markTTL.Milliseconds()).Err()
	if err != nil {
		return fmt.Errorf("redis bump: %w", err)
	}
	return nil
}

// Drop implements Backend.
func (r *Redis) Drop(ctx context.Context, indexes []string) error {
	if len(indexes) == 0 {
		return nil
	}
	if err := dropScript.Run(ctx, r.client, indexes).Err(); err != nil {
		return fmt.Errorf("redis drop: %w", err)
	}
	return nil
}

// uintOf reads item i of a script's reply as an unsigned counter value.
func uintOf(res []any, i int) (uint64, error) {
	if i >= len(res) {
		return 0, fmt.Errorf("redis: reply of %d items", len(res))
	}
	switch v := res[i].(type) {
	case int64:
		return uint64(v), nil
	case string:
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("redis: counter value is not a number")
		}
		return n, nil
	}
	return 0, fmt.Errorf("redis: unexpected reply item %T", res[i])
}
