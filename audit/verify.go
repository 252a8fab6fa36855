package audit

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/jackc/pgx/v5"
)

// Problem is the first thing wrong with a chain.
type Problem struct {
	// Seq is the position in the chain where the problem shows.
	Seq  int64
	Kind ProblemKind
	// Detail says what was found, naming records by chain and seq.
	Detail string
}

// ProblemKind classifies a Problem.
type ProblemKind string

// What Verify can find.
const (
	// Changed: a record's content no longer matches its hash.
	Changed ProblemKind = "changed"
	// Removed: records are missing before this position.
	Removed ProblemKind = "removed"
	// Reordered: the record was written after another record than the one
	// now before it.
	Reordered ProblemKind = "reordered"
	// Duplicated: a sequence number appears twice.
	Duplicated ProblemKind = "duplicated"
	// WrongKey: the chain was hashed with a key other than the one given.
	WrongKey ProblemKind = "wrong key"
	// Unregistered: records of a chain privata_audit.chains does not know.
	Unregistered ProblemKind = "unregistered"
)

// ChainReport is the result of verifying one chain.
type ChainReport struct {
	Chain  string
	Kind   string // read or change
	Source string // the proxy instance or the consumer's cluster
	KeyID  string
	// Records is the number of records verified before the first problem
	// (all of them when there is none).
	Records int64
	Problem *Problem
}

// OK reports whether the chain verified.
func (r *ChainReport) OK() bool { return r.Problem == nil }

func (r *ChainReport) String() string {
	if r.Problem == nil {
		return fmt.Sprintf("chain %s: ok, %d records", r.Chain, r.Records)
	}
	return fmt.Sprintf("chain %s: %s at seq %d: %s", r.Chain, r.Problem.Kind, r.Problem.Seq,
		r.Problem.Detail)
}

// Verify recomputes every chain in the store with key (nil: chains hashed
// with plain SHA-256) and reports, per chain, the first record that was
// changed, removed or reordered. Its error is for failures to read the
// store, not for problems found.
//
// A chain cannot show that its newest records were removed: compare with
// the JSON-lines sink for that.
func (s *Store) Verify(ctx context.Context, key []byte) ([]*ChainReport, error) {
	chains, err := s.allChains(ctx)
	if err != nil {
		return nil, fmt.Errorf("audit store %s: %w", s.Name, err)
	}
	var out []*ChainReport
	for _, c := range chains {
		rep, err := s.verifyChain(ctx, c, key)
		if err != nil {
			return nil, fmt.Errorf("audit store %s: verify chain %s: %w", s.Name, c.Name, err)
		}
		out = append(out, rep)
	}
	return out, nil
}

// allChains lists the registered chains and any chain that has records
// without being registered (Kind "" until a record says which).
func (s *Store) allChains(ctx context.Context) ([]chainInfo, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT c.chain, c.kind, c.source, coalesce(c.key_id, '') FROM privata_audit.chains c
		UNION ALL
		SELECT DISTINCT r.chain, 'read', '', '' FROM privata_audit.read_log r
		WHERE NOT EXISTS (SELECT FROM privata_audit.chains c WHERE c.chain = r.chain)
		UNION ALL
		SELECT DISTINCT x.chain, 'change', '', '' FROM privata_audit.change_log x
		WHERE NOT EXISTS (SELECT FROM privata_audit.chains c WHERE c.chain = x.chain)`)
	if err != nil {
		return nil, fmt.Errorf("list chains: %w", err)
	}
	list, err := pgx.CollectRows(rows, pgx.RowToStructByPos[chainInfo])
	if err != nil {
		return nil, fmt.Errorf("list chains: %w", err)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].Name < list[j].Name })
	return list, nil
}

// record is a row of either log, as verification needs it.
type record interface {
	link() *Link
	canonical(b []byte) []byte
}

func (r *Read) link() *Link   { return &r.Link }
func (c *Change) link() *Link { return &c.Link }

func (s *Store) verifyChain(ctx context.Context, c chainInfo, key []byte) (*ChainReport, error) {
	rep := &ChainReport{Chain: c.Name, Kind: c.Kind, Source: c.Source, KeyID: c.KeyID}
	if c.Source == "" {
		rep.Problem = &Problem{Seq: 1, Kind: Unregistered,
			Detail: "the chain has records but no row in privata_audit.chains"}
		return rep, nil
	}
	if KeyID(key) != c.KeyID {
		detail := fmt.Sprintf("the chain is keyed with key id %s; the given key's id is %s",
			c.KeyID, KeyID(key))
		if c.KeyID == "" {
			detail = "the chain is hashed without a key; verify it without audit.hmac_key"
		} else if len(key) == 0 {
			detail = fmt.Sprintf("the chain is keyed (key id %s): give its key (audit.hmac_key)",
				c.KeyID)
		}
		rep.Problem = &Problem{Seq: 1, Kind: WrongKey, Detail: detail}
		return rep, nil
	}
	v := &verifier{h: newHasher(key), rep: rep}
	v.prev = v.h.genesis(c.Name)
	var err error
	if c.Kind == "read" {
		err = s.scanReads(ctx, c.Name, v)
	} else {
		err = s.scanChanges(ctx, c.Name, v)
	}
	if err != nil && !errors.Is(err, errStop) {
		return nil, err
	}
	if v.rep.Problem != nil && v.rep.Problem.Kind == Reordered {
		s.placeReordered(ctx, c, v)
	}
	return rep, nil
}

// errStop ends a scan at the first problem.
var errStop = errors.New("stop")

type verifier struct {
	h     *hasher
	rep   *ChainReport
	prev  Digest
	seq   int64 // last seq seen
	canon []byte
	// lost is the hash a reordered record says came before it.
	lost Digest
}

// check takes the chain's next record in seq order.
func (v *verifier) check(r record) error {
	l := r.link()
	switch {
	case l.Seq == v.seq:
		v.rep.Problem = &Problem{Seq: l.Seq, Kind: Duplicated,
			Detail: fmt.Sprintf("seq %d appears more than once", l.Seq)}
		return errStop
	case l.Seq > v.seq+1:
		detail := fmt.Sprintf("record seq %d is missing", v.seq+1)
		if l.Seq > v.seq+2 {
			detail = fmt.Sprintf("records seq %d to %d are missing", v.seq+1, l.Seq-1)
		}
		v.rep.Problem = &Problem{Seq: v.seq + 1, Kind: Removed,
			Detail: detail + fmt.Sprintf(" (seq %d follows seq %d)", l.Seq, v.seq)}
		return errStop
	}
	v.canon = r.canonical(v.canon[:0])
	if v.h.sum(l.Prev, v.canon) != l.Hash {
		v.rep.Problem = &Problem{Seq: l.Seq, Kind: Changed,
			Detail: fmt.Sprintf("record seq %d was changed: its content no longer matches "+
				"its hash", l.Seq)}
		return errStop
	}
	if l.Prev != v.prev {
		v.lost = l.Prev
		v.rep.Problem = &Problem{Seq: l.Seq, Kind: Reordered,
			Detail: fmt.Sprintf("record seq %d was not written after record seq %d", l.Seq,
				v.seq)}
		return errStop
	}
	v.prev, v.seq = l.Hash, l.Seq
	v.rep.Records++
	return nil
}

// placeReordered says where a record that is out of place belongs: after
// the record whose hash it names, or after one that was removed.
func (s *Store) placeReordered(ctx context.Context, c chainInfo, v *verifier) {
	var seq int64
	err := s.pool.QueryRow(ctx, `SELECT seq FROM `+logTable(c.Kind)+`
		WHERE chain = $1 AND hash = $2 LIMIT 1`, c.Name, v.lost[:]).Scan(&seq)
	p := v.rep.Problem
	switch {
	case err == nil:
		p.Detail = fmt.Sprintf("record seq %d was reordered: it was written right after the "+
			"record now at seq %d", p.Seq, seq)
	case errors.Is(err, pgx.ErrNoRows):
		p.Kind = Removed
		p.Detail = fmt.Sprintf("the record written right before seq %d was removed "+
			"(or changed along with its hash)", p.Seq)
	}
}

func (s *Store) scanReads(ctx context.Context, chain string, v *verifier) error {
	rows, err := s.pool.Query(ctx, `SELECT seq, at, coalesce(actor, ''), coalesce(role, ''),
			coalesce(client_addr, ''), coalesce(application, ''), coalesce(purpose, ''),
			break_glass, statement, fingerprint, tables, columns, decision,
			coalesce(reason, ''), rows, subjects, prev_hash, hash
		FROM privata_audit.read_log WHERE chain = $1 ORDER BY seq`, chain)
	if err != nil {
		return err
	}
	defer rows.Close()
	var r Read
	var prev, hash []byte
	for rows.Next() {
		err := rows.Scan(&r.Seq, &r.Time, &r.Actor, &r.Role, &r.ClientAddr, &r.Application,
			&r.Purpose, &r.BreakGlass, &r.Statement, &r.Fingerprint, &r.Tables, &r.Columns,
			&r.Decision, &r.Reason, &r.Rows, &r.Subjects, &prev, &hash)
		if err != nil {
			return err
		}
		r.Chain = chain
		copy(r.Prev[:], prev)
		copy(r.Hash[:], hash)
		if err := v.check(&r); err != nil {
			return err
		}
	}
	return rows.Err()
}

func (s *Store) scanChanges(ctx context.Context, chain string, v *verifier) error {
	rows, err := s.pool.Query(ctx, `SELECT seq, commit_time, xid, lsn, ordinal, operation,
			relation, subject, columns, coalesce(actor, ''), coalesce(purpose, ''),
			coalesce(role, ''), coalesce(application, ''), break_glass, prev_hash, hash
		FROM privata_audit.change_log WHERE chain = $1 ORDER BY seq`, chain)
	if err != nil {
		return err
	}
	defer rows.Close()
	var c Change
	var xid, lsn int64
	var prev, hash []byte
	for rows.Next() {
		err := rows.Scan(&c.Seq, &c.CommitTime, &xid, &lsn, &c.Ordinal, &c.Op, &c.Table,
			&c.Subject, &c.Columns, &c.Actor, &c.Purpose, &c.Role, &c.Application,
			&c.BreakGlass, &prev, &hash)
		if err != nil {
			return err
		}
		c.Chain, c.XID, c.LSN = chain, uint32(xid), LSN(lsn)
		copy(c.Prev[:], prev)
		copy(c.Hash[:], hash)
		if err := v.check(&c); err != nil {
			return err
		}
	}
	return rows.Err()
}
