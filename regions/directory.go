package regions

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/privata/privata/fdw"
	"github.com/privata/privata/policy"
	"github.com/privata/privata/storage"
)

// Pools are Privata's own connections to each cluster (its url in
// privata.yaml), for the directory's lookups and two-phase commit
// decisions. They connect on first use.
type Pools struct {
	topo  *fdw.Topology
	mu    sync.Mutex
	pools map[string]*pgxpool.Pool
}

// NewPools returns pools for the clusters of topo.
func NewPools(topo *fdw.Topology) *Pools {
	return &Pools{topo: topo, pools: map[string]*pgxpool.Pool{}}
}

// connectTimeout bounds how long a lookup waits for a cluster.
const connectTimeout = 5 * time.Second

// get returns the pool of the cluster named target.
func (p *Pools) get(target string) (*pgxpool.Pool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if pool := p.pools[target]; pool != nil {
		return pool, nil
	}
	peer := p.topo.Peer(target)
	if peer == nil {
		return nil, fmt.Errorf("no cluster %s", target)
	}
	cfg, err := pgxpool.ParseConfig(peer.Target.URL)
	if err != nil {
		return nil, fmt.Errorf("cluster %s: its url cannot be parsed", target)
	}
	cfg.MaxConns = 4
	cfg.ConnConfig.ConnectTimeout = connectTimeout
	cfg.ConnConfig.RuntimeParams["application_name"] = "privata_regions"
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		return nil, fmt.Errorf("cluster %s: %w", target, err)
	}
	p.pools[target] = pool
	return pool, nil
}

// Close closes every pool.
func (p *Pools) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, pool := range p.pools {
		pool.Close()
	}
	p.pools = map[string]*pgxpool.Pool{}
}

// exec runs sql with one parameter on a cluster and returns the first
// column of each row, as text.
func (p *Pools) exec(ctx context.Context, target, sql string, params ...value) ([]string, error) {
	pool, err := p.get(target)
	if err != nil {
		return nil, err
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Release()
	vals := make([][]byte, len(params))
	formats := make([]int16, len(params))
	for i, v := range params {
		switch {
		case v.param != nil:
			vals[i], formats[i] = v.param.Value, 1
		case !v.null:
			vals[i] = []byte(v.text)
		}
	}
	res := conn.Conn().PgConn().ExecParams(ctx, sql, vals, make([]uint32, len(params)), formats, nil).Read()
	if res.Err != nil {
		return nil, res.Err
	}
	out := make([]string, len(res.Rows))
	for i, r := range res.Rows {
		if len(r) > 0 {
			out[i] = string(r[0])
		}
	}
	return out, nil
}

// Directory knows which region holds a subject. It asks the clusters (in
// parallel, by the subject table's key, on its identity table) and keeps
// the answers for a while; inserts routed through Privata teach it too.
// It is per Privata instance: a subject moved by another instance is
// found where the cache says until the entry expires (see README).
type Directory struct {
	pools *Pools
	topo  *fdw.Topology
	max   int
	ttl   time.Duration

	mu      sync.Mutex
	entries map[string]*list.Element
	lru     *list.List

	hits, asked atomic.Uint64
}

// DirectoryStats counts how the directory found its answers.
type DirectoryStats struct {
	// Hits were answered from the cache; Asked asked the clusters.
	Hits, Asked uint64
}

// Stats returns the directory's counters.
func (d *Directory) Stats() DirectoryStats {
	return DirectoryStats{Hits: d.hits.Load(), Asked: d.asked.Load()}
}

type dirEntry struct {
	key     string
	region  string
	expires time.Time
}

// NewDirectory returns a directory caching up to entries subjects for ttl.
func NewDirectory(pools *Pools, topo *fdw.Topology, entries int, ttl time.Duration) *Directory {
	return &Directory{pools: pools, topo: topo, max: entries, ttl: ttl,
		entries: map[string]*list.Element{}, lru: list.New()}
}

func dirKey(t *policy.Table, v value) string { return t.QualifiedName() + "\x00" + v.key() }

// learn records that region holds the subject of table t with key v.
func (d *Directory) learn(t *policy.Table, v value, region string) {
	if d.max == 0 || !v.usable() || v.null {
		return
	}
	k := dirKey(t, v)
	d.mu.Lock()
	defer d.mu.Unlock()
	if el, ok := d.entries[k]; ok {
		e := el.Value.(*dirEntry)
		e.region, e.expires = region, time.Now().Add(d.ttl)
		d.lru.MoveToFront(el)
		return
	}
	d.entries[k] = d.lru.PushFront(&dirEntry{key: k, region: region, expires: time.Now().Add(d.ttl)})
	for d.lru.Len() > d.max {
		old := d.lru.Back()
		d.lru.Remove(old)
		delete(d.entries, old.Value.(*dirEntry).key)
	}
}

// forget drops what the directory knows of a subject.
func (d *Directory) forget(t *policy.Table, v value) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if el, ok := d.entries[dirKey(t, v)]; ok {
		d.lru.Remove(el)
		delete(d.entries, dirKey(t, v))
	}
}

func (d *Directory) cached(t *policy.Table, v value) (string, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	el, ok := d.entries[dirKey(t, v)]
	if !ok {
		return "", false
	}
	e := el.Value.(*dirEntry)
	if time.Now().After(e.expires) {
		d.lru.Remove(el)
		delete(d.entries, e.key)
		return "", false
	}
	d.lru.MoveToFront(el)
	return e.region, true
}

// lookup returns the home region of the subject of subject table t whose
// key is v; "" when no cluster holds it. A cluster that cannot be reached
// is an error naming its region, unless another cluster holds the subject.
func (d *Directory) lookup(ctx context.Context, t *policy.Table, v value) (string, bool, error) {
	if r, ok := d.cached(t, v); ok {
		d.hits.Add(1)
		return r, true, nil
	}
	d.asked.Add(1)
	sql := fmt.Sprintf("SELECT %s FROM %s WHERE %s = $1 LIMIT 1",
		pgx.Identifier{storage.RegionColumn}.Sanitize(),
		pgx.Identifier{storage.IdentitySchema, t.Name}.Sanitize(), pgx.Identifier{t.Key}.Sanitize())
	type answer struct {
		peer   *fdw.Peer
		region string
		err    error
	}
	ctx, cancel := context.WithTimeout(ctx, 2*connectTimeout)
	defer cancel()
	answers := make(chan answer, len(d.topo.Peers))
	for _, peer := range d.topo.Peers {
		go func() {
			rows, err := d.pools.exec(ctx, peer.Target.Name, sql, v)
			a := answer{peer: peer, err: err}
			if len(rows) > 0 {
				a.region = rows[0]
			}
			answers <- a
		}()
	}
	var down *fdw.Peer
	var downErr error
	for range d.topo.Peers {
		a := <-answers
		switch {
		case a.err != nil && isConnection(a.err):
			down, downErr = a.peer, a.err
		case a.err != nil:
			return "", false, fmt.Errorf("look up a subject of %s in cluster %s: %w", t.Name,
				a.peer.Target.Name, a.err)
		case a.region != "":
			d.learn(t, v, a.region)
			return a.region, false, nil
		}
	}
	if down != nil {
		return "", false, Unreachable(down.Server, down.Target.Name, innermost(downErr))
	}
	return "", false, nil
}

// isConnection reports whether err is a failure to reach a cluster rather
// than an error of the query.
func isConnection(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return len(pe.Code) >= 2 && pe.Code[:2] == "08" || pe.Code == "57P01" || pe.Code == "57P03"
	}
	return !errors.Is(err, context.Canceled)
}

// innermost is the cause of an error without the connection string
// pgconn puts in front of it.
func innermost(err error) error {
	for {
		u := errors.Unwrap(err)
		if u == nil {
			return err
		}
		err = u
	}
}
