package cache

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/privata/privata/config"
)

// Open builds the cache the configuration describes; nil (a cache that is
// off) for backend off. It does not connect: a backend that is down gives
// misses, not an error here.
func Open(cfg *config.Cache, m *Metrics) (*Cache, error) {
	o := Options{
		Prefix:  cfg.Prefix,
		TTL:     cfg.TTL.D(),
		Timeout: cfg.Timeout.D(),
		Metrics: m,
	}
	var err error
	if o.HashKey, err = cfg.HashKeyBytes(); err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	if len(cfg.Keys) > 0 {
		keys := make([]Key, len(cfg.Keys))
		for i, k := range cfg.Keys {
			if keys[i].Secret, err = k.Bytes(); err != nil {
				return nil, fmt.Errorf("cache: %w", err)
			}
			keys[i].ID = k.ID
		}
		if o.Keys, err = NewKeyring(keys...); err != nil {
			return nil, err
		}
	}

	switch cfg.Backend {
	case "off":
		return nil, nil
	case "memory":
		mem := NewMemory(cfg.MaxBytes)
		m.watchMemory(mem)
		o.Backend = mem
	case "redis":
		o.Backend, err = NewRedis(RedisOptions{
			Address: string(cfg.Address),
			Prefix:  cfg.Prefix,
			Timeout: o.Timeout,
			MarkTTL: MarkTTL(o.TTL),
		})
	case "memcached":
		var servers []string
		for _, s := range strings.Split(string(cfg.Address), ",") {
			if s = strings.TrimSpace(s); s != "" {
				servers = append(servers, s)
			}
		}
		o.Backend, err = NewMemcached(servers, cfg.Prefix, o.Timeout)
	default:
		err = errors.New("cache: backend must be memory, redis, memcached or off")
	}
	if err != nil {
		return nil, err
	}
	return New(o)
}

// MarkTTL is how long marks live in Redis for entries that live ttl: well
// beyond the entries, so that a live entry's marks are there to check.
func MarkTTL(ttl time.Duration) time.Duration { return 2*ttl + time.Minute }
