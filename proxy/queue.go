package proxy

import (
	"sync"
	"time"
)

// kind says what a forwarded message will produce upstream, and so which
// response completes it.
type kind uint8

const (
	kQuery    kind = iota // Query: everything up to ReadyForQuery
	kFunc                 // FunctionCall: FunctionCallResponse, then ReadyForQuery
	kSync                 // Sync: ReadyForQuery
	kParse                // ParseComplete
	kBind                 // BindComplete
	kDescribe             // [ParameterDescription] RowDescription or NoData
	kExecute              // DataRow*, then CommandComplete, EmptyQueryResponse or PortalSuspended
	kClose                // CloseComplete
)

// endsCycle reports whether the entry is completed by ReadyForQuery.
func (k kind) endsCycle() bool { return k <= kSync }

// entry is one forwarded message in the relay's FIFO: what it will produce
// and what to do with that.
//
// An entry Privata answers itself (a later cache) would carry its
// synthesised response and be emitted when it reaches the head, unless the
// cycle it is in has failed; the relay keeps order through this FIFO.
type entry struct {
	kind kind
	// hidden entries are messages Privata injected: their responses are not
	// relayed. An error of a hidden entry is relayed, since it takes the
	// place of the client's next message, which the backend now skips;
	// unless quiet: the injected group has a Sync of its own.
	hidden bool
	quiet  bool
	// vital hidden entries (SET ROLE) end the session when they fail.
	vital bool
	// inCopy marks a Sync the client sent after a Query or Execute and
	// before ending a COPY FROM STDIN with CopyDone or CopyFail: the
	// backend ignores it if that statement did start a COPY FROM STDIN,
	// and then no ReadyForQuery answers it.
	inCopy bool
	// refusal replaces the error that the failing stand-in message,
	// forwarded in place of a refused one, provokes upstream.
	refusal []byte
	// ctx marks entries that may change privata.* settings upstream.
	ctx bool
	// sets are the privata.* settings the entry assigns (injected
	// set_config, or a client's SET with constants).
	sets []ctxSet
	st   *stmtInfo
	obs  observer
	sent time.Time
	// homeWrite marks a statement that may write in the session's own
	// cluster (for transactions that span regions).
	homeWrite bool
	// result, for a statement Privata runs for itself on the session's
	// connection (two-phase commit, moves), receives its error or the
	// first column of its rows at ReadyForQuery.
	result chan hiddenResult
	// own, for a query of Privata's own connection (ddl.go), receives
	// its whole answer at ReadyForQuery.
	own chan []byte
	// The read path (readrelay.go): rd follows a statement's results, strip
	// is the number of hidden columns a Describe's RowDescription loses,
	// answer is a response Privata gives itself (a cache hit), emitted
	// when the entry reaches the head, and seq numbers the statements the
	// client side forwarded.
	rd     *readResult
	strip  int
	fill   *fill
	answer []byte
	seq    uint64
}

// queue is the FIFO of forwarded messages awaiting their responses. The
// client side pushes, the upstream side pops. It grows as a ring; past
// maxPending entries the pusher waits (after flushing upstream).
type queue struct {
	mu      sync.Mutex
	room    *sync.Cond
	idle    *sync.Cond
	ring    []entry
	head, n int
	closed  bool
}

const maxPending = 1 << 16

func newQueue() *queue {
	q := &queue{ring: make([]entry, 64)}
	q.room = sync.NewCond(&q.mu)
	q.idle = sync.NewCond(&q.mu)
	return q
}

// push appends an entry. When the queue is full it returns without
// waiting if wait is false (full is then true), else it waits for room.
// ok is false when the queue was closed.
func (q *queue) push(e entry, wait bool) (ok, full bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for q.n >= maxPending && !q.closed {
		if !wait {
			return false, true
		}
		q.room.Wait()
	}
	if q.closed {
		return false, false
	}
	if q.n == len(q.ring) {
		ring := make([]entry, 2*len(q.ring))
		for i := 0; i < q.n; i++ {
			ring[i] = q.ring[(q.head+i)%len(q.ring)]
		}
		q.ring, q.head = ring, 0
	}
	q.ring[(q.head+q.n)%len(q.ring)] = e
	q.n++
	return true, false
}

// pending reports whether any entry awaits responses.
func (q *queue) pending() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.n > 0
}

// peek copies the head entry into e; false when the queue is empty.
func (q *queue) peek(e *entry) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.n == 0 {
		return false
	}
	*e = q.ring[q.head]
	return true
}

// pop removes the head entry.
func (q *queue) pop() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.n == 0 {
		return
	}
	q.ring[q.head] = entry{}
	q.head = (q.head + 1) % len(q.ring)
	q.n--
	if q.n == maxPending/2 {
		q.room.Broadcast()
	}
	if q.n == 0 {
		q.idle.Broadcast()
	}
}

// waitIdle waits until no entry awaits responses; false when the queue
// was closed.
func (q *queue) waitIdle() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	for q.n > 0 && !q.closed {
		q.idle.Wait()
	}
	return !q.closed
}

// close wakes a waiting pusher for good.
func (q *queue) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	q.room.Broadcast()
	q.idle.Broadcast()
}
