package audit

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/jackc/pgx/v5"
)

// The shipper copies the spool to the store: records Append just wrote it
// takes from memory (Writer.recent), anything else (a backlog after a
// restart or a long outage) it reads back from the spool files. The store's
// newest seq of each chain says which records it has, so that every record
// is written once however often shipping is interrupted.

// shipLoop copies the spool to the store until stopped.
func (w *Writer) shipLoop() {
	defer w.wg.Done()
	sr := &spoolReader{dir: w.opts.Dir, seg: w.shipped.seg}
	if sr.seg == 0 {
		sr.seg = 1
	}
	defer sr.close()
	sh := &shipper{w: w, heads: map[string]int64{}, registered: map[string]bool{}}
	var backoff time.Duration
	for {
		moved, err := sh.shipSome(sr)
		if err != nil {
			if w.opts.OnShipError != nil {
				w.opts.OnShipError(fmt.Errorf("ship read records to audit store %s: %w",
					w.store.Name, err))
			}
			clear(sh.heads) // the commit's outcome is unknown: ask the store again
			backoff = min(2*backoff+100*time.Millisecond, 5*time.Second)
			select {
			case <-w.stop:
				return
			case <-time.After(backoff):
			}
			continue
		}
		backoff = 0
		if moved && !sh.small {
			continue
		}
		if moved {
			// A small batch: let records gather for a moment rather than
			// pay a transaction for each one.
			select {
			case <-w.stop:
				return
			case <-time.After(w.opts.ShipDelay):
			}
			continue
		}
		select {
		case <-w.stop:
			return
		case <-w.notify:
		case <-time.After(time.Second):
		}
	}
}

type shipper struct {
	w          *Writer
	small      bool             // the last batch shipped was not full
	heads      map[string]int64 // chain -> last seq in the store
	registered map[string]bool
}

// shipSome ships one batch, or moves past a finished segment; it reports
// whether the position moved.
func (sh *shipper) shipSome(sr *spoolReader) (bool, error) {
	w := sh.w
	here := pos{sr.seg, sr.off}
	w.mu.Lock()
	limit := pos{w.seg, w.size}
	for len(w.recent) > 0 && w.recent[0].start.before(here) {
		w.recent = w.recent[1:] // shipped from the file already
	}
	if w.lost && len(w.recent) == 0 && !here.before(limit) {
		w.lost = false // caught up: remember records again
	}
	var mem []spooled
	if !w.lost && len(w.recent) > 0 && w.recent[0].start == here {
		n := 0
		for n < len(w.recent) && n < w.opts.BatchRecords && w.recent[n].start.seg == sr.seg {
			n++
		}
		mem = w.recent[:n:n]
	}
	w.mu.Unlock()
	if len(mem) > 0 {
		sh.small = len(mem) < w.opts.BatchRecords
		recs := make([]*Read, len(mem))
		for i, m := range mem {
			recs[i] = m.rec
		}
		if err := sh.ship(recs); err != nil {
			return false, err
		}
		end := mem[len(mem)-1].end.off
		w.consumed(end - sr.off)
		sr.off = end
		w.setShipped(pos{sr.seg, sr.off})
		return true, nil
	}
	before := sr.off
	recs, offs, err := sr.read(w.opts.BatchRecords, limit.seg, limit.off)
	if err != nil {
		return false, err
	}
	stepped := sr.off != before // over a head line
	if stepped {
		w.consumed(sr.off - before)
		w.setShipped(pos{sr.seg, sr.off})
	}
	if len(recs) == 0 {
		if sr.seg >= limit.seg {
			return stepped, nil
		}
		done := sr.next()
		if err := os.Remove(done); err != nil {
			return false, fmt.Errorf("remove shipped spool segment: %w", err)
		}
		w.setShipped(pos{sr.seg, 0})
		return true, nil
	}
	sh.small = len(recs) < w.opts.BatchRecords
	if err := sh.ship(recs); err != nil {
		return false, err
	}
	end := offs[len(offs)-1]
	w.consumed(end - sr.off)
	sr.off = end
	w.mu.Lock()
	if w.lost && sr.seg == w.seg && sr.off == w.size {
		w.lost = false // caught up: remember records again
	}
	w.mu.Unlock()
	w.setShipped(pos{sr.seg, sr.off})
	return true, nil
}

func (w *Writer) consumed(n int64) {
	if n != 0 {
		spoolBytes.WithLabelValues(w.store.Name).Set(float64(w.unshipped.Add(-n)))
	}
}

func (w *Writer) setShipped(p pos) {
	w.shipMu.Lock()
	w.shipped = p
	close(w.progress)
	w.progress = make(chan struct{})
	w.shipMu.Unlock()
}

// ship commits the records the store does not have yet, in one transaction.
func (sh *shipper) ship(recs []*Read) error {
	w := sh.w
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, r := range recs {
		if _, ok := sh.heads[r.Chain]; ok {
			continue
		}
		seq, _, err := w.store.tail(ctx, w.store.pool, "read", r.Chain)
		if err != nil {
			return err
		}
		sh.heads[r.Chain] = seq
	}
	keep := make([]*Read, 0, len(recs))
	for _, r := range recs {
		if r.Seq > sh.heads[r.Chain] {
			keep = append(keep, r)
		}
	}
	if len(keep) == 0 {
		return nil
	}
	if err := w.opts.Sink.WriteReads(keep); err != nil {
		return err
	}
	err := w.store.inTx(ctx, func(tx pgx.Tx) error {
		for _, r := range keep {
			if sh.registered[r.Chain] {
				continue
			}
			err := register(ctx, tx, chainInfo{Name: r.Chain, Kind: "read",
				Source: w.state.Instance, KeyID: w.state.Keys[r.Chain]})
			if err != nil {
				return err
			}
			sh.registered[r.Chain] = true
		}
		return insertReads(ctx, tx, keep)
	})
	if err != nil {
		clear(sh.registered)
		return err
	}
	for _, r := range keep {
		sh.heads[r.Chain] = r.Seq
	}
	recordsWritten.WithLabelValues(w.store.Name, "read").Add(float64(len(keep)))
	writeSeconds.WithLabelValues(w.store.Name, "ship").Observe(time.Since(start).Seconds())
	return nil
}
