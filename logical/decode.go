package logical

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/privata/privata/audit"
)

// relation is what a pgoutput Relation message says about a table.
type relation struct {
	name    string // schema.name
	columns []string
	// pseudonym is the index of the privata_pseudonym column, or -1.
	pseudonym int
}

// session is the context a transaction's changes are attributed to: the
// last 'privata' logical message before them (see privata.emit_context).
type session struct {
	Actor       string `json:"actor"`
	Purpose     string `json:"purpose"`
	BreakGlass  bool   `json:"break_glass"`
	Role        string `json:"role"`
	Application string `json:"application"`
}

// txn is the transaction being decoded.
type txn struct {
	xid        uint32
	commitLSN  audit.LSN
	commitTime time.Time
	ordinal    int32 // of the next change
	session    session
	// skipThrough: changes with an ordinal up to it are in the store already
	// (-1: none); skipAll: the whole transaction is.
	skipThrough int32
	skipAll     bool
}

// decoder turns pgoutput messages into change records. It keeps the
// relations the stream described and the open transaction.
type decoder struct {
	rels     map[uint32]*relation
	tx       *txn
	progress audit.Progress // what the store has
}

// decoded is what one message contributed.
type decoded struct {
	changes []*audit.Change
	// commit is set by a Commit message: everything up to end may be
	// acknowledged once the transaction's records are durable.
	commit     bool
	end        audit.LSN
	commitTime time.Time
}

func newDecoder(p audit.Progress) *decoder {
	return &decoder{rels: map[uint32]*relation{}, progress: p}
}

// decode handles one pgoutput message.
func (d *decoder) decode(data []byte) (decoded, error) {
	msg, err := pglogrepl.Parse(data)
	if err != nil {
		return decoded{}, fmt.Errorf("decode pgoutput message %q: %w", data[0], err)
	}
	switch m := msg.(type) {
	case *pglogrepl.RelationMessage:
		rel := &relation{name: m.Namespace + "." + m.RelationName, pseudonym: -1}
		for i, c := range m.Columns {
			rel.columns = append(rel.columns, c.Name)
			if c.Name == "privata_pseudonym" {
				rel.pseudonym = i
			}
		}
		d.rels[m.RelationID] = rel
	case *pglogrepl.BeginMessage:
		d.begin(m)
	case *pglogrepl.LogicalDecodingMessage:
		if d.tx != nil && m.Transactional && m.Prefix == "privata" {
			var s session
			// An unreadable context leaves the changes attributed to none.
			if json.Unmarshal(m.Content, &s) == nil {
				d.tx.session = s
			} else {
				d.tx.session = session{}
			}
		}
	case *pglogrepl.InsertMessage:
		return d.row(audit.Insert, m.RelationID, nil, m.Tuple)
	case *pglogrepl.UpdateMessage:
		old := m.OldTuple
		if m.OldTupleType != pglogrepl.UpdateMessageTupleTypeOld {
			old = nil // a key alone cannot tell which columns changed
		}
		return d.row(audit.Update, m.RelationID, old, m.NewTuple)
	case *pglogrepl.DeleteMessage:
		return d.row(audit.Delete, m.RelationID, m.OldTuple, nil)
	case *pglogrepl.TruncateMessage:
		var out decoded
		for _, id := range m.RelationIDs {
			c, err := d.change(audit.Truncate, id)
			if err != nil {
				return decoded{}, err
			}
			if c != nil {
				out.changes = append(out.changes, c)
			}
		}
		return out, nil
	case *pglogrepl.CommitMessage:
		if d.tx == nil {
			return decoded{}, fmt.Errorf("commit at %s without a begin", audit.LSN(m.CommitLSN))
		}
		d.tx = nil
		return decoded{commit: true, end: audit.LSN(m.TransactionEndLSN),
			commitTime: m.CommitTime}, nil
	}
	// Type and Origin messages say nothing the audit needs.
	return decoded{}, nil
}

func (d *decoder) begin(m *pglogrepl.BeginMessage) {
	tx := &txn{xid: m.Xid, commitLSN: audit.LSN(m.FinalLSN), commitTime: m.CommitTime,
		skipThrough: -1}
	switch p := d.progress; {
	case p == audit.Progress{}:
	case tx.commitLSN < p.LSN:
		tx.skipAll = true
	case tx.commitLSN == p.LSN:
		tx.skipThrough = p.Ordinal
	}
	d.tx = tx
}

// change makes the record of the transaction's next change, or nil when the
// store has it already.
func (d *decoder) change(op audit.Op, relID uint32) (*audit.Change, error) {
	tx := d.tx
	if tx == nil {
		return nil, fmt.Errorf("%s outside a transaction", op)
	}
	rel := d.rels[relID]
	if rel == nil {
		return nil, fmt.Errorf("%s of relation %d before its Relation message", op, relID)
	}
	ord := tx.ordinal
	tx.ordinal++
	if tx.skipAll || ord <= tx.skipThrough {
		return nil, nil
	}
	s := tx.session
	return &audit.Change{CommitTime: tx.commitTime, XID: tx.xid, LSN: tx.commitLSN,
		Ordinal: ord, Op: op, Table: rel.name, Actor: s.Actor, Purpose: s.Purpose,
		Role: s.Role, Application: s.Application, BreakGlass: s.BreakGlass,
		Columns: []string{}}, nil
}

// row makes the record of an insert (before nil), update or delete (after
// nil).
func (d *decoder) row(op audit.Op, relID uint32, before, after *pglogrepl.TupleData) (decoded,
	error) {
	c, err := d.change(op, relID)
	if err != nil || c == nil {
		return decoded{}, err
	}
	rel := d.rels[relID]
	switch op {
	case audit.Insert:
		c.Columns = present(rel, after)
	case audit.Delete:
		c.Columns = present(rel, before)
	case audit.Update:
		c.Columns = changed(rel, before, after)
	}
	c.Subject = pseudonymOf(rel, after, before)
	return decoded{changes: []*audit.Change{c}}, nil
}

// present names the columns of t that hold a value.
func present(rel *relation, t *pglogrepl.TupleData) []string {
	out := []string{}
	if t == nil {
		return out
	}
	for i, col := range t.Columns {
		if i < len(rel.columns) && col.DataType != pglogrepl.TupleDataTypeNull {
			out = append(out, rel.columns[i])
		}
	}
	return out
}

// changed names the columns an update changed. A TOASTed value the update
// did not touch arrives as 'u' (unchanged) and is not named. Without the
// old row (a table without REPLICA IDENTITY FULL) every column the new row
// carries is named: which of them changed cannot be known.
func changed(rel *relation, before, after *pglogrepl.TupleData) []string {
	out := []string{}
	for i, n := range after.Columns {
		if i >= len(rel.columns) || n.DataType == pglogrepl.TupleDataTypeToast {
			continue
		}
		if before != nil && i < len(before.Columns) {
			o := before.Columns[i]
			if o.DataType == n.DataType && bytes.Equal(o.Data, n.Data) {
				continue
			}
			if o.DataType == pglogrepl.TupleDataTypeToast {
				continue // never sent for REPLICA IDENTITY FULL; be safe
			}
		}
		out = append(out, rel.columns[i])
	}
	return out
}

// pseudonymOf reads the row's privata_pseudonym from the new row, or from
// the old one when the new one does not carry it.
func pseudonymOf(rel *relation, after, before *pglogrepl.TupleData) audit.Pseudonym {
	if rel.pseudonym < 0 {
		return audit.Pseudonym{}
	}
	for _, tup := range []*pglogrepl.TupleData{after, before} {
		if tup == nil || rel.pseudonym >= len(tup.Columns) {
			continue
		}
		col := tup.Columns[rel.pseudonym]
		if col.DataType != pglogrepl.TupleDataTypeText {
			continue
		}
		if p, err := audit.ParsePseudonym(string(col.Data)); err == nil {
			return p
		}
	}
	return audit.Pseudonym{}
}
