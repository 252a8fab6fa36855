package proxy

import (
	"context"
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"

	"github.com/privata/privata/audit"
	"github.com/privata/privata/cache"
)

// codeAuditUnavailable is the SQLSTATE of a statement refused because its
// read audit record could not be made durable (system_error).
const codeAuditUnavailable = "58000"

// partBytes bounds the responses held for one audit record: a larger
// result is audited in parts, each record naming the rows it releases.
const partBytes = 4 << 20

// readResult follows one Query's or Execute's results on the read path.
type readResult struct {
	plan *readPlan
	info *stmtInfo
	// fill is the cache fill of a read that missed, or nil.
	fill *fill
}

// fill is a cache miss whose answer is stored once it has been read.
type fill struct {
	ticket cache.Ticket
	plan   *cachePlan
	// desc is the RowDescription a Describe of the portal returned.
	desc []byte
	// msgs are the responses of the statement, as the client gets them.
	msgs []byte
	// dead is set when the answer cannot be stored (suspended, failed).
	dead bool
}

// readEntry attaches the read path to a statement entry (client side).
func (s *session) readEntry(e *entry, info *stmtInfo, f *fill) {
	if info == nil || info.read == nil {
		return
	}
	e.rd = &readResult{plan: info.read, info: info, fill: f}
}

// relayRead handles an upstream message of an entry on the read path; done
// is false when the ordinary relay is to handle it.
func (s *session) relayRead(e *entry, typ byte, n int) (done bool, err error) {
	if e.kind == kDescribe {
		return s.relayDescribe(e, typ, n)
	}
	rd := e.rd
	if rd == nil {
		return false, nil
	}
	idx := 0
	if e.kind == kQuery {
		idx = s.results
	}
	if idx >= len(rd.plan.stmts) || rd.plan.stmts[idx] == nil {
		return false, nil
	}
	sr := rd.plan.stmts[idx]
	rs := &s.rs
	audited := sr.rec != nil && rs.auditor != nil
	f := rd.fill
	if e.kind == kQuery && idx > 0 {
		f = nil
	}
	switch typ {
	case 'T', 'D', 'H', 'd', 'c':
		body, err := s.ur.body(n)
		if err != nil {
			return true, s.upstreamLost(err)
		}
		switch typ {
		case 'T':
			body = stripDescription(body, len(sr.hidden))
		case 'D':
			body = s.rowSubjects(body, sr)
			rs.result.rows++
		case 'd':
			rs.result.rows++
		}
		s.readOut(typ, body, audited, f)
		if audited && len(rs.held) > partBytes {
			rs.result.parts++
			if err := s.auditRead(rd, sr, fmt.Sprintf("part %d of a larger result",
				rs.result.parts)); err != nil {
				return true, err
			}
			s.release()
			parts := rs.result.parts
			rs.result.reset()
			rs.result.parts = parts
			if f != nil {
				f.dead = true
			}
		}
		return true, nil
	case 'N':
		if len(rs.held) == 0 {
			return false, nil
		}
		body, err := s.ur.body(n)
		if err != nil {
			return true, s.upstreamLost(err)
		}
		rs.held = appendMessage(rs.held, typ, body)
		return true, nil
	case 'C':
		body, err := s.ur.body(n)
		if err != nil {
			return true, s.upstreamLost(err)
		}
		s.complete(body)
		rs.pendingWrites = append(rs.pendingWrites, sr.writes...)
		// COPY TO's CopyData messages include a CSV header line and the
		// binary format's header and trailer: its tag has the rows.
		if n, ok := copiedRows(body); ok && rs.result.parts == 0 {
			rs.result.rows = n
		}
		if audited {
			note := ""
			if rs.result.parts > 0 {
				note = fmt.Sprintf("last part (%d) of a larger result", rs.result.parts+1)
			}
			if err := s.auditRead(rd, sr, note); err != nil {
				return true, err
			}
		}
		s.release()
		writeMessage(s.cw, typ, body)
		if f != nil && !f.dead {
			f.msgs = appendMessage(f.msgs, typ, body)
			s.store(f)
		}
		rs.result.reset()
		if e.kind == kExecute {
			s.pop()
		}
		return true, nil
	case 's':
		if audited {
			if err := s.auditRead(rd, sr, "portal suspended"); err != nil {
				return true, err
			}
		}
		s.release()
		rs.result.reset()
		if f != nil {
			f.dead = true
		}
		return false, nil
	case 'E':
		if audited {
			if err := s.auditRead(rd, sr, "the statement failed"); err != nil {
				return true, err
			}
		}
		s.release()
		rs.result.reset()
		if f != nil {
			f.dead = true
		}
		return false, nil
	}
	return false, nil
}

// readOut sends a response of a statement on the read path: it is held
// until the statement's audit record is durable when the statement is
// audited, and kept for the cache when it fills it.
func (s *session) readOut(typ byte, body []byte, audited bool, f *fill) {
	if audited {
		s.rs.held = appendMessage(s.rs.held, typ, body)
	} else {
		writeMessage(s.cw, typ, body)
	}
	if f != nil && !f.dead {
		if typ == 'T' {
			f.desc = appendMessage(f.desc[:0], typ, body)
		} else {
			f.msgs = appendMessage(f.msgs, typ, body)
		}
		if len(f.msgs) > maxAnswerBytes {
			f.dead, f.msgs = true, nil
		}
	}
}

// maxAnswerBytes bounds the answers the cache keeps: a larger one is not
// stored.
const maxAnswerBytes = 1 << 20

// release sends the held responses to the client.
func (s *session) release() {
	rs := &s.rs
	if len(rs.held) > 0 {
		s.cw.Write(rs.held)
	}
	rs.held = rs.held[:0]
	if cap(rs.held) > 1<<20 {
		rs.held = nil
	}
}

// relayDescribe strips the hidden columns from a Describe's RowDescription
// and keeps it for a fill.
func (s *session) relayDescribe(e *entry, typ byte, n int) (bool, error) {
	if typ != 'T' {
		return false, nil
	}
	body, err := s.ur.body(n)
	if err != nil {
		return true, s.upstreamLost(err)
	}
	body = stripDescription(body, e.strip)
	writeMessage(s.cw, typ, body)
	if e.fill != nil {
		e.fill.desc = appendMessage(e.fill.desc[:0], typ, body)
	}
	s.pop()
	return true, nil
}

// auditRead appends the record of the rows held so far. A record that
// cannot be made durable ends the session: its rows are never released,
// and closing the upstream connection rolls back its transaction. (The
// client side refuses statements while the writer says it would fail;
// this is the rare case of a failure in between.)
func (s *session) auditRead(rd *readResult, sr *stmtRead, note string) error {
	rs := &s.rs
	r := s.readRecord(rd.info, sr, rs.result.rows, rs.result.subjects, note)
	if err := rs.auditor.Append(context.Background(), r); err != nil {
		return s.end(fatalf(codeAuditUnavailable, "the read audit record of a statement could "+
			"not be made durable; its rows were not sent and Privata ended the session: %v", err))
	}
	return nil
}

// readRecord builds a statement's audit record from its template.
func (s *session) readRecord(info *stmtInfo, sr *stmtRead, rows int64,
	subjects []audit.Pseudonym, note string) *audit.Read {
	r := *sr.rec
	r.Rows = rows
	r.Subjects = subjects
	if r.Subjects == nil {
		r.Subjects = []audit.Pseudonym{}
	}
	var why []string
	if r.Reason != "" {
		why = append(why, r.Reason)
	}
	why = append(why, sr.notes...)
	if note != "" {
		why = append(why, note)
	}
	r.Reason = strings.Join(why, "; ")
	s.fillContext(&r, info)
	return &r
}

// rowSubjects reads the pseudonyms in a DataRow's hidden columns and
// returns the row without them.
func (s *session) rowSubjects(body []byte, sr *stmtRead) []byte {
	h := len(sr.hidden)
	if h == 0 || len(body) < 2 {
		return body
	}
	n := int(int16(binary.BigEndian.Uint16(body)))
	if n < h {
		return body
	}
	off, cut := 2, 0
	for i := 0; i < n; i++ {
		if i == n-h {
			cut = off
		}
		if off+4 > len(body) {
			return body
		}
		l := int(int32(binary.BigEndian.Uint32(body[off:])))
		off += 4
		var v []byte
		if l > 0 {
			if off+l > len(body) {
				return body
			}
			v = body[off : off+l]
			off += l
		}
		if i >= n-h && v != nil {
			if p, ok := parsePseudonym(v); ok {
				s.rs.result.addSubject(sr.hidden[i-(n-h)], p)
			}
		}
	}
	binary.BigEndian.PutUint16(body, uint16(n-h))
	return body[:cut]
}

// parsePseudonym reads a uuid in binary (16 bytes) or text form.
func parsePseudonym(v []byte) (audit.Pseudonym, bool) {
	var p audit.Pseudonym
	switch len(v) {
	case 16:
		copy(p[:], v)
		return p, !p.IsZero()
	case 36:
		q, err := audit.ParsePseudonym(string(v))
		return q, err == nil && !q.IsZero()
	}
	return p, false
}

// stripDescription returns a RowDescription without its last h fields.
func stripDescription(body []byte, h int) []byte {
	if h == 0 || len(body) < 2 {
		return body
	}
	n := int(int16(binary.BigEndian.Uint16(body)))
	if n < h {
		return body
	}
	off := 2
	for i := 0; i < n-h; i++ {
		_, rest, ok := cstring(body[off:])
		if !ok || len(rest) < 18 {
			return body
		}
		off = len(body) - len(rest) + 18
	}
	binary.BigEndian.PutUint16(body, uint16(n-h))
	return body[:off]
}

// readReady follows a ReadyForQuery (upstream side): a session that is
// idle again has committed its writes, which invalidate the cache before
// the client learns of the commit.
func (s *session) readReady(tx byte) {
	rs := &s.rs
	rs.cycleFailed = false
	if tx != 'I' {
		return
	}
	if len(rs.pendingWrites) > 0 {
		if rp := s.srv.read; rp != nil && rp.cache != nil {
			changes := make([]cache.Change, 0, len(rs.pendingWrites))
			for _, t := range rs.pendingWrites {
				changes = append(changes, cache.Change{Table: t, Op: cache.Update})
			}
			// A failure leaves the cache serving nothing on this instance
			// until a flush succeeds; the cache counts it.
			rp.cache.Invalidate(context.Background(), changes...)
		}
		rs.pendingWrites = rs.pendingWrites[:0]
	}
	rs.idleSeq.Store(rs.lastDone)
}

// emitAnswers writes the answers at the head of the queue (upstream side,
// under cwMu). After an error the backend skips the rest of the cycle, and
// so do the cycle's answers.
func (s *session) emitAnswers() {
	for {
		e := s.head()
		if e == nil || e.answer == nil {
			return
		}
		if !s.rs.cycleFailed || e.kind.endsCycle() {
			s.cw.Write(e.answer)
		}
		if e.kind.endsCycle() {
			s.rs.cycleFailed = false
		}
		s.pop()
	}
}

// copiedRows returns the row count of a COPY command tag ("COPY 28\x00").
func copiedRows(tag []byte) (int64, bool) {
	t := strings.TrimSuffix(string(tag), "\x00")
	n, err := strconv.ParseInt(strings.TrimPrefix(t, "COPY "), 10, 64)
	return n, err == nil && strings.HasPrefix(t, "COPY ")
}
