package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// FsyncPolicy says when the spool is flushed to disk. Under every policy a
// record is written to the spool file before Append returns, so a kill -9
// of Privata loses nothing; the policy bounds what a crash of the operating
// system or the machine may lose.
type FsyncPolicy string

// The fsync policies.
const (
	// FsyncAlways syncs before Append returns (concurrent Appends share one
	// fsync).
	FsyncAlways FsyncPolicy = "always"
	// FsyncInterval syncs every WriterOptions.FsyncInterval: a machine crash
	// loses at most that much. The default.
	FsyncInterval FsyncPolicy = "interval"
	// FsyncNever leaves it to the operating system.
	FsyncNever FsyncPolicy = "never"
)

// ErrUnavailable is matched (errors.Is) by the error Append returns when the
// record cannot be made durable: the proxy must refuse the statement.
var ErrUnavailable = errors.New("audit unavailable")

// ErrClosed is returned by Append after Close.
var ErrClosed = errors.New("audit writer is closed")

// UnavailableError says why a record could not be made durable. It names
// the store and the cause, never a value of the record.
type UnavailableError struct {
	Store string
	Err   error
}

func (e *UnavailableError) Error() string {
	return fmt.Sprintf("audit store %s unavailable: %v", e.Store, e.Err)
}

func (e *UnavailableError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrUnavailable) true.
func (e *UnavailableError) Is(target error) bool { return target == ErrUnavailable }

// WriterOptions configure a Writer.
type WriterOptions struct {
	// Dir is the spool directory, one per store; it is created if missing.
	Dir string
	// Instance names the proxy instance whose chain this is. Default: a
	// random name, kept in the spool so that a restart resumes the chain.
	Instance string
	// Key, when set, makes the chain HMAC-SHA256 instead of SHA-256.
	Key []byte
	// Fsync is the spool's fsync policy; default FsyncInterval.
	Fsync         FsyncPolicy
	FsyncInterval time.Duration // default 1s
	// MaxBytes bounds the records waiting in the spool; past it Append
	// fails (the store has been unreachable too long). Default 1 GiB.
	MaxBytes int64
	// SegmentBytes is the size at which a new spool file is started.
	// Default 64 MiB.
	SegmentBytes int64
	// BatchRecords bounds a shipping transaction. Default 2000.
	BatchRecords int
	// ShipDelay is how long the shipper lets records gather after a batch
	// that was not full. Default 20ms.
	ShipDelay time.Duration
	// Sink, when set, receives every record before the store commits it.
	Sink *Sink
	// FailOpen makes Append return nil when a record cannot be made
	// durable: the record is lost and OnDrop is told. Development only.
	FailOpen bool
	OnDrop   func(error)
	// OnShipError is told when shipping to the store fails; the shipper
	// retries with backoff.
	OnShipError func(error)
}

// spooled is a record in the spool and where its line starts and ends.
type spooled struct {
	rec        *Read
	start, end pos
}

// memLimit bounds Writer.recent by default.
const memLimit = 100000

// pos is a position in the spool.
type pos struct {
	seg int
	off int64
}

func (p pos) before(q pos) bool { return p.seg < q.seg || p.seg == q.seg && p.off < q.off }

// Writer is the read-audit write path of one proxy instance into one store.
// Append makes a record durable in a local spool and returns; a background
// shipper copies the spool to the store, each record exactly once, also
// across restarts. It is safe for concurrent use.
type Writer struct {
	opts  WriterOptions
	store *Store
	lock  *os.File
	state *spoolState
	keyID string

	mu     sync.Mutex // guards what follows
	hasher *hasher
	chain  chainState
	file   *os.File
	seg    int
	size   int64
	broken error
	closed bool
	// recent holds the records appended since the shipper last took them,
	// so that it need not read back and decode what was just written. It
	// is dropped (nil, lost set) when it grows past memLimit, and the
	// shipper reads the spool file instead.
	recent   []spooled
	lost     bool
	memLimit int
	line     []byte // the line being written

	syncMu sync.Mutex // held while syncing; guards synced
	synced pos

	unshipped atomic.Int64
	notify    chan struct{}
	stop      chan struct{}
	wg        sync.WaitGroup

	shipMu   sync.Mutex // guards shipped and progress
	shipped  pos
	progress chan struct{} // closed and replaced when shipped moves
}

// OpenWriter opens (or creates) the spool in opts.Dir, resumes its chain,
// and starts shipping to store.
func OpenWriter(ctx context.Context, store *Store, opts WriterOptions) (*Writer, error) {
	if opts.Dir == "" {
		return nil, errors.New("audit writer: no spool directory")
	}
	if opts.Fsync == "" {
		opts.Fsync = FsyncInterval
	}
	switch opts.Fsync {
	case FsyncAlways, FsyncInterval, FsyncNever:
	default:
		return nil, fmt.Errorf("audit writer: fsync %q: want always, interval or never", opts.Fsync)
	}
	if opts.FsyncInterval <= 0 {
		opts.FsyncInterval = time.Second
	}
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = 1 << 30
	}
	if opts.SegmentBytes <= 0 {
		opts.SegmentBytes = 64 << 20
	}
	if opts.BatchRecords <= 0 {
		opts.BatchRecords = 2000
	}
	if opts.ShipDelay <= 0 {
		opts.ShipDelay = 20 * time.Millisecond
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("audit spool: %w", err)
	}
	lock, err := lockDir(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("audit spool: %w", err)
	}
	w := &Writer{opts: opts, store: store, lock: lock, keyID: KeyID(opts.Key),
		hasher: newHasher(opts.Key), notify: make(chan struct{}, 1), stop: make(chan struct{}),
		progress: make(chan struct{}), memLimit: memLimit}
	if err := w.recover(); err != nil {
		lock.Close()
		return nil, fmt.Errorf("audit spool %s: %w", opts.Dir, err)
	}
	w.wg.Add(1)
	go w.shipLoop()
	if opts.Fsync == FsyncInterval {
		w.wg.Add(1)
		go w.syncLoop()
	}
	return w, nil
}

// recover reads the spool's state and its last segment, and opens that
// segment for appending.
func (w *Writer) recover() error {
	dir := w.opts.Dir
	st, err := readState(dir)
	if err != nil {
		return err
	}
	if st == nil {
		inst := w.opts.Instance
		if inst == "" {
			inst = randomInstance()
		}
		cur := chainName("read", inst, 1)
		st = &spoolState{Instance: inst, Current: cur, Keys: map[string]string{cur: w.keyID}}
		if err := writeState(dir, st); err != nil {
			return err
		}
	}
	if w.opts.Instance != "" && w.opts.Instance != st.Instance {
		return fmt.Errorf("the spool belongs to instance %q, not %q: give each instance its "+
			"own spool directory", st.Instance, w.opts.Instance)
	}
	w.state = st
	segs, err := segments(dir)
	if err != nil {
		return err
	}
	var last Link
	if len(segs) == 0 {
		w.chain = chainState{name: st.Current, head: w.hasher.genesis(st.Current)}
		if err := w.startSegment(1); err != nil {
			return err
		}
	} else {
		var total int64
		for _, s := range segs[:len(segs)-1] {
			if fi, err := os.Stat(s.path); err == nil {
				total += fi.Size()
			}
		}
		lastSeg := segs[len(segs)-1]
		size, l, err := recoverSegment(lastSeg.path)
		if err != nil {
			return err
		}
		last = l
		w.unshipped.Store(total + size)
		w.chain = chainState{name: st.Current, seq: last.Seq, head: last.Hash}
		if last.Chain != st.Current {
			// The current chain was started but has no record yet.
			w.chain = chainState{name: st.Current, head: w.hasher.genesis(st.Current)}
		}
		f, err := os.OpenFile(lastSeg.path, os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return err
		}
		w.file, w.seg, w.size = f, lastSeg.no, size
		w.shipped = pos{seg: segs[0].no}
	}
	if st.Keys[st.Current] != w.keyID {
		// The key changed: records from now on go to a new chain.
		n := chainInfo{Name: st.Current}.number() + 1
		st.Current = chainName("read", st.Instance, n)
		st.Keys[st.Current] = w.keyID
		if err := writeState(dir, st); err != nil {
			return err
		}
		w.chain = chainState{name: st.Current, head: w.hasher.genesis(st.Current)}
	}
	w.synced = pos{w.seg, w.size}
	spoolBytes.WithLabelValues(w.store.Name).Set(float64(w.unshipped.Load()))
	return nil
}

// startSegment creates segment no, headed by the chain's position, and
// makes it the one appended to. It is called with mu held (or before the
// Writer is shared).
func (w *Writer) startSegment(no int) error {
	path := segmentPath(w.opts.Dir, no)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	head, err := json.Marshal(spoolLine{Head: &Link{Chain: w.chain.name, Seq: w.chain.seq,
		Hash: w.chain.head}})
	if err != nil {
		f.Close()
		return err
	}
	head = append(head, '\n')
	if _, err := f.Write(head); err == nil && w.opts.Fsync != FsyncNever {
		err = f.Sync()
		if err == nil {
			err = syncDir(w.opts.Dir)
		}
	}
	if err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	if w.file != nil {
		w.file.Close()
	}
	w.file, w.seg, w.size = f, no, int64(len(head))
	w.unshipped.Add(int64(len(head)))
	return nil
}

// Instance is the name of the proxy instance the chain belongs to.
func (w *Writer) Instance() string { return w.state.Instance }

// Append makes r durable in the spool, linked into the instance's chain, and
// returns. It fills r.Link, and r.Time when it is zero; r and its slices
// must not be changed after the call. It fails with an
// error matching ErrUnavailable when the record cannot be made durable (the
// spool cannot be written, or is full because the store has been
// unreachable), unless FailOpen is set. An invalid record is refused.
func (w *Writer) Append(ctx context.Context, r *Read) error {
	began := time.Now()
	if err := ctx.Err(); err != nil {
		return err
	}
	if r.Time.IsZero() {
		r.Time = began
	}
	r.Time = micro(r.Time)
	if err := r.check(); err != nil {
		return fmt.Errorf("read record: %w", err)
	}
	canon := r.canonical(make([]byte, 0, 256))

	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return ErrClosed
	}
	if w.broken != nil {
		err := w.broken
		w.mu.Unlock()
		return w.unavailable(err)
	}
	if n := w.unshipped.Load(); n > w.opts.MaxBytes {
		w.mu.Unlock()
		return w.unavailable(fmt.Errorf("the spool holds %d MiB not yet shipped (limit %d MiB): "+
			"the store is unreachable or too slow", n>>20, w.opts.MaxBytes>>20))
	}
	saved := w.chain
	r.Link = w.chain.link(w.hasher, canon)
	w.line = append(appendReadJSON(w.line[:0], "", r), '\n')
	line := w.line
	if w.size+int64(len(line)) > w.opts.SegmentBytes && w.size > 0 {
		if err := w.rotate(saved); err != nil {
			w.chain = saved
			w.mu.Unlock()
			return w.unavailable(err)
		}
	}
	if n, err := w.file.Write(line); err != nil {
		w.chain = saved
		// Cut off what part of the line was written; if that fails too, the
		// spool's end is unknown and no record may follow.
		if n > 0 {
			if terr := w.file.Truncate(w.size); terr != nil {
				w.broken = fmt.Errorf("spool write failed and could not be undone: %w", terr)
			}
		}
		w.mu.Unlock()
		return w.unavailable(fmt.Errorf("spool write: %w", err))
	}
	start := pos{w.seg, w.size}
	w.size += int64(len(line))
	end := pos{w.seg, w.size}
	if !w.lost {
		if len(w.recent) < w.memLimit {
			w.recent = append(w.recent, spooled{rec: r, start: start, end: end})
		} else {
			w.recent, w.lost = nil, true
		}
	}
	w.mu.Unlock()
	w.unshipped.Add(int64(len(line)))

	if w.opts.Fsync == FsyncAlways {
		if err := w.syncTo(end); err != nil {
			return w.unavailable(err)
		}
	}
	select {
	case w.notify <- struct{}{}:
	default:
	}
	writeSeconds.WithLabelValues(w.store.Name, "append").Observe(time.Since(began).Seconds())
	return nil
}

// Check returns the error Append would return now for want of a durable
// spool (closed, broken, or full because the store has been unreachable),
// without appending anything; nil under FailOpen. The proxy asks before it
// forwards a statement, so that a statement whose record could not be
// written is refused before it runs.
func (w *Writer) Check() error {
	w.mu.Lock()
	closed, broken := w.closed, w.broken
	w.mu.Unlock()
	switch {
	case closed:
		return ErrClosed
	case w.opts.FailOpen:
		return nil
	case broken != nil:
		return &UnavailableError{Store: w.store.Name, Err: broken}
	}
	if n := w.unshipped.Load(); n > w.opts.MaxBytes {
		return &UnavailableError{Store: w.store.Name, Err: fmt.Errorf("the spool holds %d MiB "+
			"not yet shipped (limit %d MiB): the store is unreachable or too slow", n>>20,
			w.opts.MaxBytes>>20)}
	}
	return nil
}

// rotate starts the next segment; before is the chain's position before
// the record being appended. Called with mu held.
func (w *Writer) rotate(before chainState) error {
	if w.opts.Fsync != FsyncNever {
		if err := w.file.Sync(); err != nil {
			w.broken = fmt.Errorf("spool fsync: %w", err)
			return w.broken
		}
	}
	cur := w.chain
	w.chain = before
	err := w.startSegment(w.seg + 1)
	w.chain = cur
	if err != nil {
		return fmt.Errorf("start spool segment: %w", err)
	}
	return nil
}

func (w *Writer) unavailable(err error) error {
	e := &UnavailableError{Store: w.store.Name, Err: err}
	if w.opts.FailOpen {
		dropped.WithLabelValues(w.store.Name).Inc()
		if w.opts.OnDrop != nil {
			w.opts.OnDrop(e)
		}
		return nil
	}
	return e
}

// syncTo makes the spool durable up to p. Concurrent callers share one
// fsync: whoever syncs covers everything written before it started.
func (w *Writer) syncTo(p pos) error {
	w.syncMu.Lock()
	defer w.syncMu.Unlock()
	if !w.synced.before(p) {
		return nil
	}
	w.mu.Lock()
	f, cur, broken := w.file, pos{w.seg, w.size}, w.broken
	w.mu.Unlock()
	if broken != nil {
		return broken
	}
	if cur.seg > p.seg {
		return nil // rotation synced p's segment before closing it
	}
	if err := f.Sync(); err != nil {
		if errors.Is(err, os.ErrClosed) {
			return nil // rotated meanwhile, and synced then
		}
		// After a failed fsync the file's contents are unknown: stop.
		w.mu.Lock()
		w.broken = fmt.Errorf("spool fsync: %w", err)
		w.mu.Unlock()
		return w.broken
	}
	w.synced = cur
	return nil
}

func (w *Writer) syncLoop() {
	defer w.wg.Done()
	t := time.NewTicker(w.opts.FsyncInterval)
	defer t.Stop()
	for {
		select {
		case <-w.stop:
			return
		case <-t.C:
			w.mu.Lock()
			p := pos{w.seg, w.size}
			w.mu.Unlock()
			w.syncTo(p)
		}
	}
}

// Pending returns the bytes of records in the spool not yet shipped.
func (w *Writer) Pending() int64 { return w.unshipped.Load() }

// Flush waits until every record appended before it was called is in the
// store, or ctx ends.
func (w *Writer) Flush(ctx context.Context) error {
	w.mu.Lock()
	target := pos{w.seg, w.size}
	w.mu.Unlock()
	select {
	case w.notify <- struct{}{}:
	default:
	}
	for {
		w.shipMu.Lock()
		done, ch := !w.shipped.before(target), w.progress
		w.shipMu.Unlock()
		if done {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("audit flush: %d bytes not yet shipped: %w", w.Pending(), ctx.Err())
		}
	}
}

// Close stops Appends, waits (within ctx) for the spool to be shipped, and
// stops the shipper. What it could not ship stays in the spool for the
// next start.
func (w *Writer) Close(ctx context.Context) error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	w.closed = true
	w.mu.Unlock()
	err := w.Flush(ctx)
	close(w.stop)
	w.wg.Wait()
	w.mu.Lock()
	if w.opts.Fsync != FsyncNever && w.broken == nil {
		if serr := w.file.Sync(); serr != nil && err == nil {
			err = fmt.Errorf("spool fsync: %w", serr)
		}
	}
	w.file.Close()
	w.mu.Unlock()
	w.lock.Close()
	return err
}
