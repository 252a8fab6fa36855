// Package cache is Privata's read cache: answers to reads of personal data,
// kept per role and context, encrypted, and never served once a committed
// change has replaced them and the change stream has seen it.
//
// # Flow
//
// The proxy asks before it forwards a cacheable read, and fills after a
// miss:
//
//	res, err := c.Get(ctx, &cache.Request{Role: ..., SQL: ..., Params: ...})
//	if res.Hit {
//		// answer from res.Value; audit as served from cache, naming the
//		// subjects in res.Deps
//	}
//	// otherwise read from PostgreSQL (after Get returned), then
//	c.Put(ctx, res.Ticket, answer, deps) // deps from the rows' pseudonyms
//
// A write through Privata calls Invalidate after its commit and before the
// client hears of it (read-your-writes); the Invalidator applies every
// committed change from the WAL, whoever made it; Erase removes a subject's
// entries on erasure or restriction.
//
// # Keys
//
// An entry's name is an HMAC-SHA-256, under a configured hash key, of
// everything that changes the answer (see Request): role, masking profile,
// purpose, consent context, database, the exact statement text, parameter
// values and formats, result formats and output settings. Two roles never
// share an entry; a name reveals nothing of an SSN in a parameter. Marks
// and subject indexes are named the same way.
//
// # Values
//
// A value (the answer and its dependencies) is sealed with AES-256-GCM
// under the newest configured key (see Keyring); the key's ID is stored
// with it. An entry under an older key that is still configured opens; one
// under a key no longer configured is a miss. The entry's name, its mark
// and its list of marks are authenticated with it, so that a value moved
// to another entry, or an entry whose marks were altered, does not open.
//
// # Freshness
//
// A backend keeps a counter and marks. Invalidating a change advances the
// counter and sets the marks the change touches to the new value: the mark
// of the subject's rows of the table and the table's "any row" mark (for a
// change without subject, the table's "every subject" mark instead). Erase
// sets the subject's mark; Flush sets the mark every entry depends on.
//
// Get reads the counter when it misses; that value goes into the ticket,
// so it is read before the caller reads PostgreSQL. Put stores it with the
// entry as the entry's mark, with the marks of its dependencies: for a
// subject's rows of a table, the rows' mark, the table's "every subject"
// mark and the subject's mark; for a table as a whole, its "any row" mark.
// A lookup serves an entry only if every one of its marks exists and none
// is after the entry's mark.
//
// Why a fill that overlaps a change cannot leave a stale entry that looks
// fresh: the change committed before the stream saw it, and the stream
// advanced the counter to some value v when it did. If the fill read the
// counter before v, its mark is below v and the entry is stale from the
// moment the change is seen, whenever it was stored. If it read the
// counter at or after v, it read PostgreSQL after the change committed,
// and its answer includes the change. A missing mark (expired, evicted)
// proves nothing and makes its entries stale; Put recreates it at the
// counter's current value. So evicting anything, anywhere, is safe.
//
// When an invalidation cannot be written (the backend is down or slow),
// this instance serves nothing from the cache until a flush succeeds;
// Get, Recover and the Invalidator's next batch try one. Instances that
// share the backend and can reach it keep serving: an entry the lost
// invalidation should have made stale is served until the flush, so the
// change stream's lag, as the cache sees it, includes the outage.
//
// # Backends
//
// Memory (in-process, bounded by a byte budget, least recently used out
// first) is the default and serves one process. Redis runs each operation
// as one Lua script: one round trip, atomic. Memcached takes several round
// trips per operation, ordered so that the argument above holds under any
// interleaving. A backend call that fails or passes the timeout is a miss
// and an error, counted in privata_cache_errors_total.
//
// # What the caller guarantees
//
// The cache trusts the proxy for three things. Only reads that take their
// snapshot after Get returned are filled: a statement alone in its
// implicit transaction, not one inside an explicit transaction (whose
// snapshot may be older, or which may hold uncommitted writes of its own).
// Deps name every subject whose rows are in the answer, and a table as a
// whole when the answer holds no row of it or rows of unknown subjects.
// Break-glass reads set Request.BreakGlass. Table names in Deps and in
// Changes agree.
package cache
