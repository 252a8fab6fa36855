package logical

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/privata/privata/audit"
)

// Options configure a Consumer.
type Options struct {
	// Cluster names the cluster: the source of the change chain, and the
	// label of metrics. Never a URL.
	Cluster string
	// URL is Privata's connection to the cluster's database; its role needs
	// the REPLICATION attribute (or superuser).
	URL string
	// Store receives the change records.
	Store *audit.Store
	// Key, when set, makes the chain HMAC-SHA256.
	Key []byte
	// Sink, when set, receives every record before the store commits it.
	Sink *audit.Sink
	// Slot is the replication slot; default "privata_audit". Lower-case
	// letters, digits and underscores.
	Slot string
	// Publication is the publication streamed; default "privata_changes".
	Publication string
	// BatchRecords bounds the records of one store transaction; a larger
	// source transaction is written in several. Default 5000.
	BatchRecords int
	// FlushInterval is how long records may wait for more before they are
	// written. Default 20ms.
	FlushInterval time.Duration
	// StatusInterval is how often the consumer acknowledges to the server
	// and reads its slot's state. Default 1s.
	StatusInterval time.Duration
	// SlotWarnBytes: when the slot retains more WAL than this, OnSlotWarning
	// is called (at most once a minute). Default 1 GiB; negative: never.
	SlotWarnBytes int64
	OnSlotWarning func(SlotStatus)
}

var slotName = regexp.MustCompile(`^[a-z0-9_]{1,63}$`)

// Event is a committed change, durable in the audit store, for another
// consumer such as a cache invalidator.
type Event struct {
	Table      string // schema.name of the base table
	Subject    audit.Pseudonym
	Op         audit.Op
	LSN        audit.LSN // commit LSN of the transaction
	CommitTime time.Time
}

// Consumer streams one cluster's committed changes of the split tables into
// change records. Run it with Run; restart Run after an error.
type Consumer struct {
	opts  Options
	acked atomic.Uint64

	subMu sync.Mutex
	subs  map[*subscriber]struct{}
}

type subscriber struct {
	ch   chan []Event
	done chan struct{}
}

// New checks opts and returns a Consumer.
func New(opts Options) (*Consumer, error) {
	if opts.Slot == "" {
		opts.Slot = "privata_audit"
	}
	if opts.Publication == "" {
		opts.Publication = "privata_changes"
	}
	if opts.BatchRecords <= 0 {
		opts.BatchRecords = 5000
	}
	if opts.FlushInterval <= 0 {
		opts.FlushInterval = 20 * time.Millisecond
	}
	if opts.StatusInterval <= 0 {
		opts.StatusInterval = time.Second
	}
	if opts.SlotWarnBytes == 0 {
		opts.SlotWarnBytes = 1 << 30
	}
	switch {
	case opts.Cluster == "":
		return nil, errors.New("change consumer: no cluster name")
	case opts.Store == nil:
		return nil, fmt.Errorf("change consumer %s: no audit store", opts.Cluster)
	case !slotName.MatchString(opts.Slot):
		return nil, fmt.Errorf("change consumer %s: slot name %q: use lower-case letters, "+
			"digits and underscores", opts.Cluster, opts.Slot)
	}
	return &Consumer{opts: opts, subs: map[*subscriber]struct{}{}}, nil
}

// Acked is the position acknowledged to the slot: every change committed
// before it is in the audit store.
func (c *Consumer) Acked() audit.LSN { return audit.LSN(c.acked.Load()) }

func (c *Consumer) raiseAcked(l audit.LSN) {
	for {
		cur := c.acked.Load()
		if uint64(l) <= cur || c.acked.CompareAndSwap(cur, uint64(l)) {
			return
		}
	}
}

// Subscribe calls fn with the events of every batch of changes once the
// batch is durable in the store, in commit order, until ctx ends (it then
// returns nil) or fn fails (it returns fn's error). A batch holds whole
// transactions, or a part of one too big for a single store transaction.
// fn runs on the caller's goroutine; the consumer runs ahead of it by a few
// batches at most, so a slow subscriber holds the consumer back. Events of
// changes a restarted consumer finds already in the store are not sent
// again. This is the stream the cache invalidator follows.
func (c *Consumer) Subscribe(ctx context.Context, fn func(context.Context, []Event) error) error {
	s := &subscriber{ch: make(chan []Event, 16), done: make(chan struct{})}
	c.subMu.Lock()
	c.subs[s] = struct{}{}
	c.subMu.Unlock()
	defer func() {
		c.subMu.Lock()
		delete(c.subs, s)
		c.subMu.Unlock()
		close(s.done)
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case events := <-s.ch:
			if err := fn(ctx, events); err != nil {
				return err
			}
		}
	}
}

func (c *Consumer) publish(ctx context.Context, recs []*audit.Change) {
	c.subMu.Lock()
	subs := make([]*subscriber, 0, len(c.subs))
	for s := range c.subs {
		subs = append(subs, s)
	}
	c.subMu.Unlock()
	if len(subs) == 0 {
		return
	}
	events := make([]Event, len(recs))
	for i, r := range recs {
		events[i] = Event{Table: r.Table, Subject: r.Subject, Op: r.Op, LSN: r.LSN,
			CommitTime: r.CommitTime}
	}
	for _, s := range subs {
		select {
		case s.ch <- events:
		case <-s.done:
		case <-ctx.Done():
			return
		}
	}
}

// batch is the records of one store transaction.
type batch struct {
	recs []*audit.Change
	// ack is the end of the last transaction the batch completes: it may be
	// acknowledged once the batch is durable (0: none).
	ack        audit.LSN
	lastCommit time.Time
	started    time.Time
}

func (b *batch) empty() bool { return len(b.recs) == 0 && b.ack == 0 }

// Run consumes until ctx ends (it then returns nil) or something fails.
// Records and the acknowledgement follow each other strictly: a position is
// acknowledged only after the records before it are committed to the store,
// and changes the store already has are skipped, so that a restart (after
// an error or a kill -9) writes every change exactly once.
func (c *Consumer) Run(ctx context.Context) error {
	err := c.run(ctx)
	if ctx.Err() != nil {
		return nil
	}
	if err != nil {
		return fmt.Errorf("change consumer %s: %w", c.opts.Cluster, err)
	}
	return nil
}

func (c *Consumer) run(parent context.Context) error {
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	mon, err := pgx.Connect(ctx, c.opts.URL)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer mon.Close(context.Background())
	repl, err := c.startStream(ctx, mon)
	if err != nil {
		return err
	}
	defer repl.close()
	// Only now, holding the slot, is the store's view of the chain the
	// latest: another consumer of the same cluster that held the slot
	// before is gone.
	chain, progress, err := c.opts.Store.OpenChangeChain(ctx, audit.ChainOptions{
		Source: c.opts.Cluster, Key: c.opts.Key, Sink: c.opts.Sink})
	if err != nil {
		return err
	}

	batches := make(chan *batch, 4)
	var written atomic.Int64
	werr := make(chan error, 1)
	go func() {
		err := c.write(ctx, chain, batches, &written)
		if err != nil {
			cancel()
		}
		werr <- err
	}()
	rerr := c.receive(ctx, repl, mon, newDecoder(progress), batches, &written)
	cancel()
	if err := <-werr; err != nil {
		return err
	}
	return rerr
}

// startStream creates the slot if needed and starts streaming from it. A
// slot still held by a killed predecessor's walsender is waited for.
func (c *Consumer) startStream(ctx context.Context, mon *pgx.Conn) (*replication, error) {
	for attempt := 0; ; attempt++ {
		repl, err := dialReplication(ctx, c.opts.URL)
		if err != nil {
			return nil, err
		}
		if _, err := repl.ensureSlot(ctx, c.opts.Slot); err != nil {
			repl.close()
			return nil, err
		}
		st, err := ReadSlot(ctx, mon, c.opts.Slot)
		if err != nil {
			repl.close()
			return nil, err
		}
		c.raiseAcked(st.ConfirmedFlush)
		err = repl.start(ctx, c.opts.Slot, c.opts.Publication)
		if err == nil {
			return repl, nil
		}
		repl.close()
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "55006" || attempt >= 60 { // object_in_use
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// receive reads the stream, cuts it into batches for write, and
// acknowledges what write made durable.
func (c *Consumer) receive(ctx context.Context, repl *replication, mon *pgx.Conn, dec *decoder,
	out chan<- *batch, written *atomic.Int64) error {
	b := &batch{}
	var sent int64
	var walEnd audit.LSN
	var warned time.Time
	nextStatus := time.Now()
	send := func() error {
		select {
		case out <- b:
		case <-ctx.Done():
			return ctx.Err()
		}
		sent++
		b = &batch{}
		return nil
	}
	for {
		now := time.Now()
		if !now.Before(nextStatus) {
			idle := dec.tx == nil && b.empty() && written.Load() == sent
			if idle {
				// Everything the server sent is handled: its position may go.
				c.raiseAcked(walEnd)
				lagSeconds.WithLabelValues(c.opts.Cluster).Set(0)
			}
			if err := repl.ack(ctx, c.Acked()); err != nil {
				return err
			}
			c.checkSlot(ctx, mon, &warned)
			nextStatus = now.Add(c.opts.StatusInterval)
		}
		if !b.empty() && now.Sub(b.started) >= c.opts.FlushInterval {
			if err := send(); err != nil {
				return err
			}
		}
		deadline := nextStatus
		if tick := now.Add(c.opts.FlushInterval); tick.Before(deadline) {
			deadline = tick
		}
		rctx, rcancel := context.WithDeadline(ctx, deadline)
		err := c.drain(rctx, repl, dec, &b, &walEnd, &nextStatus, send)
		rcancel()
		if err != nil {
			return err
		}
	}
}

// drain handles frames until the deadline of ctx, or until a batch is due.
func (c *Consumer) drain(ctx context.Context, repl *replication, dec *decoder, b **batch,
	walEnd *audit.LSN, nextStatus *time.Time, send func() error) error {
	for {
		f, ok, err := repl.receive(ctx)
		if err != nil || !ok {
			return err
		}
		if f.keepalive {
			*walEnd = max(*walEnd, f.walEnd)
			if f.replyRequested {
				*nextStatus = time.Now()
				return nil
			}
			continue
		}
		d, err := dec.decode(f.data)
		if err != nil {
			return err
		}
		cur := *b
		if len(d.changes) > 0 || d.commit {
			if cur.empty() {
				cur.started = time.Now()
			}
			cur.recs = append(cur.recs, d.changes...)
			if d.commit {
				cur.ack, cur.lastCommit = d.end, d.commitTime
			}
		}
		if len(cur.recs) >= c.opts.BatchRecords {
			return send()
		}
		if !cur.empty() && time.Since(cur.started) >= c.opts.FlushInterval {
			return send()
		}
	}
}

// write commits batches to the store in order, then tells subscribers and
// raises the acknowledged position.
func (c *Consumer) write(ctx context.Context, chain *audit.ChangeChain, in <-chan *batch,
	written *atomic.Int64) error {
	for {
		var b *batch
		select {
		case <-ctx.Done():
			return nil
		case b = <-in:
		}
		if len(b.recs) > 0 {
			if err := chain.Write(ctx, b.recs); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
			changesWritten.WithLabelValues(c.opts.Cluster).Add(float64(len(b.recs)))
			c.publish(ctx, b.recs)
		}
		if b.ack > 0 {
			c.raiseAcked(b.ack)
		}
		if !b.lastCommit.IsZero() {
			lag := time.Since(b.lastCommit).Seconds()
			lagSeconds.WithLabelValues(c.opts.Cluster).Set(lag)
			commitToAudit.WithLabelValues(c.opts.Cluster).Observe(lag)
		}
		written.Add(1)
	}
}

// checkSlot reads the slot's state into the metrics and warns when it
// retains too much WAL.
func (c *Consumer) checkSlot(ctx context.Context, mon *pgx.Conn, warned *time.Time) {
	st, err := ReadSlot(ctx, mon, c.opts.Slot)
	if err != nil {
		return // the stream notices a lost cluster
	}
	st.Cluster = c.opts.Cluster
	retainedBytes.WithLabelValues(c.opts.Cluster, c.opts.Slot).Set(float64(st.Retained))
	if acked := c.Acked(); st.Current > acked {
		lagBytes.WithLabelValues(c.opts.Cluster).Set(float64(st.Current - acked))
	} else {
		lagBytes.WithLabelValues(c.opts.Cluster).Set(0)
	}
	if c.opts.SlotWarnBytes > 0 && st.Retained > c.opts.SlotWarnBytes &&
		c.opts.OnSlotWarning != nil && time.Since(*warned) >= time.Minute {
		*warned = time.Now()
		st.Limit = c.opts.SlotWarnBytes
		c.opts.OnSlotWarning(*st)
	}
}
