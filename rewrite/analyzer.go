package rewrite

import (
	"sync"
	"sync/atomic"
)

// Defaults of the Analyzer's limits.
const (
	// DefaultMaxTextBytes is the longest text Analyze accepts. Parsing
	// costs about 50 times the text's size in memory: a 4 MiB INSERT of
	// 80,000 rows takes about 1 s and 200 MB.
	DefaultMaxTextBytes = 4 << 20
	// DefaultMaxDepth bounds how deep a statement's parse tree may be, in
	// the units of nestingDepth (brackets, chained operators, UNIONs,
	// JOINs). It keeps pg_query's trees well under the depth at which its
	// C code or Go's protobuf decoder fail.
	DefaultMaxDepth = 1000
	// maxTextLimit caps MaxTextBytes: PostgreSQL itself refuses queries
	// of 1 GiB.
	maxTextLimit = 1 << 30
	// maxCachedText is the longest text the caches hold.
	maxCachedText = 64 << 10
	// DefaultCacheBytes bounds the texts (and shapes) each cache holds, in
	// bytes of their keys; the analyses add about as much again.
	DefaultCacheBytes = 32 << 20
	// bigText is the size past which texts are analysed one at a time, so
	// that concurrent clients cannot hold many large parse trees at once.
	bigText = 256 << 10
)

// bigMu serialises the analysis of big texts.
var bigMu sync.Mutex

// Option changes an Analyzer's limits.
type Option func(*options)

type options struct {
	maxBytes   int
	maxDepth   int
	cacheBytes int
}

// MaxTextBytes sets the longest text Analyze accepts; longer ones get a
// 54000 error.
func MaxTextBytes(n int) Option { return func(o *options) { o.maxBytes = n } }

// CacheBytes bounds the bytes of text each of the Analyzer's two caches
// holds.
func CacheBytes(n int) Option { return func(o *options) { o.cacheBytes = n } }

// MaxDepth sets how deeply nested a statement may be; deeper ones get a
// 54001 error.
func MaxDepth(n int) Option { return func(o *options) { o.maxDepth = n } }

// Analyzer parses and analyses statement texts. It keeps the analyses of
// the most recently used texts (by exact text) and of the most recently
// used shapes (texts that differ only in constants, see fastpath.go), each
// in an LRU of cacheEntries entries and CacheBytes bytes of text; texts
// over 64 KiB are not cached. It is safe for concurrent use.
type Analyzer struct {
	opt    options
	exact  *lru[*Analysis]
	shapes *lru[*shapeEntry]

	hits, fast, misses atomic.Uint64
}

// CacheStats counts how Analyze found its answers.
type CacheStats struct {
	Hits         uint64 // the exact text was cached
	FastPathHits uint64 // a text of the same shape was cached
	Misses       uint64 // the text was parsed
	Entries      int    // texts cached
	Shapes       int    // shapes cached
}

// NewAnalyzer returns an Analyzer whose caches hold cacheEntries entries
// each (0 disables them).
func NewAnalyzer(cacheEntries int, opts ...Option) *Analyzer {
	a := &Analyzer{opt: options{
		maxBytes:   DefaultMaxTextBytes,
		maxDepth:   DefaultMaxDepth,
		cacheBytes: DefaultCacheBytes,
	}}
	for _, o := range opts {
		o(&a.opt)
	}
	a.opt.maxBytes = min(a.opt.maxBytes, maxTextLimit)
	a.exact = newLRU[*Analysis](cacheEntries, a.opt.cacheBytes)
	a.shapes = newLRU[*shapeEntry](cacheEntries, a.opt.cacheBytes)
	return a
}

// Stats returns the cache counters.
func (a *Analyzer) Stats() CacheStats {
	return CacheStats{
		Hits:         a.hits.Load(),
		FastPathHits: a.fast.Load(),
		Misses:       a.misses.Load(),
		Entries:      a.exact.len(),
		Shapes:       a.shapes.len(),
	}
}

// Analyze returns the analysis of a statement text (one or more
// statements, as in a simple-protocol Query message or a Parse message).
// Its error is always an *Error. The result may be shared with other
// callers: do not modify it.
func (a *Analyzer) Analyze(sql string) (*Analysis, error) {
	if an, ok := a.exact.get(sql); ok {
		a.hits.Add(1)
		return an, nil
	}
	l, err := guard(sql, &a.opt)
	if err != nil {
		return nil, err
	}

	key := ""
	if len(sql) <= maxCachedText {
		key = shapeKey(l)
	}
	if key != "" {
		if e, ok := a.shapes.get(key); ok {
			if an := e.apply(l); an != nil {
				a.fast.Add(1)
				return an, nil
			}
		}
	}

	a.misses.Add(1)
	if len(sql) > bigText {
		bigMu.Lock()
		defer bigMu.Unlock()
	}
	an, err := analyzeText(sql, l, &a.opt)
	if err != nil {
		return nil, err
	}
	if len(sql) <= maxCachedText {
		a.exact.put(sql, an)
		if key != "" && an.shareable {
			if e := newShapeEntry(an, l); e != nil {
				a.shapes.put(key, e)
			}
		}
	}
	return an, nil
}

// analyzeText parses a guarded text and analyses each statement.
func analyzeText(text string, l *lexer, opt *options) (*Analysis, *Error) {
	tree, perr := parse(text)
	if perr != nil {
		return nil, parserError(perr)
	}
	an := &Analysis{Tags: commentTags(l)}
	for _, raw := range tree.Stmts {
		loc, length := span(raw, len(text))
		st := &Statement{Location: loc, Length: length}
		st.Kind, st.Tag = kindAndTag(raw.Stmt)
		w := &walker{st: st, text: text[loc : loc+length], an: an, opt: opt}
		w.statement(raw.Stmt, nil)
		if w.err != nil {
			return nil, w.err
		}
		fp, ferr := fingerprint(w.text)
		if ferr != nil {
			return nil, parserError(ferr)
		}
		st.Fingerprint = fp
		an.Statements = append(an.Statements, st)
	}
	an.shareable = l.simple && !an.literal && len(text) <= maxCachedText &&
		constantsCovered(tree, l)
	return an, nil
}
