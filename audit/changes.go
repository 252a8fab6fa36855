package audit

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// ChainOptions describe a writer's chain.
type ChainOptions struct {
	// Source names the writer: the cluster a change consumer reads.
	Source string
	// Key, when set, makes the chain HMAC-SHA256 instead of SHA-256.
	Key []byte
	// Sink, when set, receives every record before it is committed.
	Sink *Sink
}

// Progress is how far a change consumer's records reach: the commit LSN of
// the last transaction it wrote records of, and the ordinal of the last
// record of that transaction. The zero Progress means nothing was written.
type Progress struct {
	LSN     LSN
	Ordinal int32
}

// ChangeChain writes the change records of one consumer to a store, linked
// into the consumer's chain. It is not safe for concurrent use.
type ChangeChain struct {
	store  *Store
	info   chainInfo
	hasher *hasher
	state  chainState
	sink   *Sink
	canon  []byte
}

// OpenChangeChain resumes the newest change chain of opts.Source in the
// store, or starts one (also when the newest was hashed with another key),
// and returns the consumer's progress across all its chains.
func (s *Store) OpenChangeChain(ctx context.Context, opts ChainOptions) (*ChangeChain,
	Progress, error) {
	if opts.Source == "" {
		return nil, Progress{}, errors.New("open change chain: no source")
	}
	chains, err := s.chainsOf(ctx, "change", opts.Source)
	if err != nil {
		return nil, Progress{}, fmt.Errorf("audit store %s: %w", s.Name, err)
	}
	c := &ChangeChain{store: s, hasher: newHasher(opts.Key), sink: opts.Sink}
	keyID := KeyID(opts.Key)
	if len(chains) > 0 && chains[0].KeyID == keyID {
		c.info = chains[0]
		c.state.name = c.info.Name
		c.state.seq, c.state.head, err = s.tail(ctx, s.pool, "change", c.info.Name)
		if err != nil {
			return nil, Progress{}, fmt.Errorf("audit store %s: %w", s.Name, err)
		}
		if c.state.seq == 0 {
			c.state.head = c.hasher.genesis(c.info.Name)
		}
	} else {
		n := 1
		if len(chains) > 0 {
			n = chains[0].number() + 1
		}
		c.info = chainInfo{Name: chainName("change", opts.Source, n), Kind: "change",
			Source: opts.Source, KeyID: keyID}
		err := s.inTx(ctx, func(tx pgx.Tx) error { return register(ctx, tx, c.info) })
		if err != nil {
			return nil, Progress{}, fmt.Errorf("audit store %s: %w", s.Name, err)
		}
		c.state = chainState{name: c.info.Name, head: c.hasher.genesis(c.info.Name)}
	}
	p, err := s.progress(ctx, chains)
	if err != nil {
		return nil, Progress{}, fmt.Errorf("audit store %s: %w", s.Name, err)
	}
	return c, p, nil
}

// progress reads the last record of the newest chain that has one.
func (s *Store) progress(ctx context.Context, chains []chainInfo) (Progress, error) {
	for _, ch := range chains {
		var lsn int64
		var p Progress
		err := s.pool.QueryRow(ctx, `SELECT lsn, ordinal FROM privata_audit.change_log
			WHERE chain = $1 ORDER BY seq DESC LIMIT 1`, ch.Name).Scan(&lsn, &p.Ordinal)
		if errors.Is(err, pgx.ErrNoRows) {
			continue
		}
		if err != nil {
			return Progress{}, fmt.Errorf("read progress of chain %s: %w", ch.Name, err)
		}
		p.LSN = LSN(lsn)
		return p, nil
	}
	return Progress{}, nil
}

// Name is the chain's name.
func (c *ChangeChain) Name() string { return c.info.Name }

// Write links recs into the chain and commits them to the store in one
// transaction, and returns only after the commit. On error nothing was written and the chain is as
// before, so the same records may be written again.
func (c *ChangeChain) Write(ctx context.Context, recs []*Change) error {
	if len(recs) == 0 {
		return nil
	}
	start := time.Now()
	st := c.state
	for _, r := range recs {
		if err := r.check(); err != nil {
			return fmt.Errorf("change record %s #%d: %w", r.LSN, r.Ordinal, err)
		}
		r.CommitTime = micro(r.CommitTime)
		c.canon = r.canonical(c.canon[:0])
		r.Link = st.link(c.hasher, c.canon)
	}
	if err := c.sink.WriteChanges(recs); err != nil {
		return err
	}
	err := c.store.inTx(ctx, func(tx pgx.Tx) error { return insertChanges(ctx, tx, recs) })
	if err != nil {
		return fmt.Errorf("audit store %s: %w", c.store.Name, err)
	}
	c.state = st
	recordsWritten.WithLabelValues(c.store.Name, "change").Add(float64(len(recs)))
	writeSeconds.WithLabelValues(c.store.Name, "change").Observe(time.Since(start).Seconds())
	return nil
}
