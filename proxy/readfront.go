package proxy

import (
	"context"
	"encoding/binary"
	"errors"
	"strconv"

	"github.com/privata/privata/audit"
	"github.com/privata/privata/cache"
	"github.com/privata/privata/policy"
)

// checkAudit refuses, before it runs, a statement whose read audit record
// could not be written now (client side).
func (s *session) checkAudit(info *stmtInfo) *Error {
	if info == nil || info.read == nil || s.rs.auditor == nil {
		return nil
	}
	for _, sr := range info.read.stmts {
		if sr != nil && sr.rec != nil {
			return auditRefusal(s.rs.auditor.Check())
		}
	}
	return nil
}

func auditRefusal(err error) *Error {
	if err == nil {
		return nil
	}
	return &Error{Code: codeAuditUnavailable,
		Message: "statement refused: its read audit record cannot be written now (" +
			err.Error() + ")",
		Hint: "Statements that read classified columns run only while their audit " +
			"records can be made durable. Ask an operator to check the audit store and spool."}
}

// answerCached sends a response Privata gives itself (a cache hit): at once when
// nothing forwarded awaits its responses, otherwise through the queue,
// when the entries before it have completed (client side).
func (s *session) answerCached(k kind, msg []byte) error {
	e := entry{kind: k, answer: msg}
	for {
		s.cwMu.Lock()
		if !s.q.pending() {
			s.rs.pushed(&e)
			s.cw.Write(msg)
			var err error
			if !s.cr.ready() {
				err = s.cw.Flush()
			}
			s.cwMu.Unlock()
			if err != nil {
				return errUpstreamWrite
			}
			return nil
		}
		s.rs.pushed(&e)
		ok, full := s.q.push(e, false)
		s.cwMu.Unlock()
		if ok {
			return nil
		}
		if !full {
			return errUpstreamWrite
		}
		if err := s.uw.Flush(); err != nil {
			return errUpstreamWrite
		}
		s.q.waitRoom()
	}
}

// waitRoom waits until the queue has room or is closed.
func (q *queue) waitRoom() {
	q.mu.Lock()
	defer q.mu.Unlock()
	for q.n >= maxPending && !q.closed {
		q.room.Wait()
	}
}

// mayCache reports whether the cache may answer or fill a statement now:
// nothing forwarded is running, the session is not in a transaction
// block, it follows its output settings, and the read is no break-glass
// read.
func (s *session) mayCache(info *stmtInfo) bool {
	rp := s.srv.read
	if rp == nil || rp.cache == nil || info == nil || info.read == nil ||
		info.read.cache == nil || s.rs.noCache || !s.rs.clean() {
		return false
	}
	return !s.breakGlassFor(info)
}

func (s *session) breakGlassFor(info *stmtInfo) bool {
	if v, ok := info.want["privata.break_glass"]; ok {
		return isOn(v)
	}
	return s.breakGlass || isOn(s.ctx.value("privata.break_glass"))
}

// cacheRequest is the cache key of a statement: everything that changes
// its answer.
func (s *session) cacheRequest(info *stmtInfo, b *bindMessage) *cache.Request {
	rp := s.srv.read
	purpose, ok := info.want["privata.purpose"]
	if !ok {
		purpose = s.ctx.value("privata.purpose")
	}
	req := &cache.Request{
		Role: s.role.PGRole,
		Profile: rp.profile + "/" + string(s.role.AccessTo(policy.Identity)) + "/" +
			string(s.role.AccessTo(policy.Clinical)),
		Purpose:  purpose,
		Database: s.srv.upstreamCluster + "/" + s.srv.database,
		SQL:      info.read.src,
		Settings: s.settings(),
	}
	if b != nil {
		req.Params, req.ParamFormats, req.ResultFormats = b.params, b.paramFormats, b.resultFormats
		if req.Params == nil {
			req.Params = [][]byte{}
		}
	} else {
		req.Settings["privata.protocol"] = "simple"
	}
	return req
}

// cacheQuery answers a simple-protocol Query from the cache when it can;
// on a miss it returns the fill that stores the answer (client side).
func (s *session) cacheQuery(info *stmtInfo) (bool, *fill, error) {
	if !s.mayCache(info) || s.rs.cycleForwarded || s.rs.cycleAnswered {
		return false, nil, nil
	}
	rp := s.srv.read
	res, err := rp.cache.Get(context.Background(), s.cacheRequest(info, nil))
	if err != nil || !res.Hit {
		if res.Ticket.Valid() {
			return false, &fill{ticket: res.Ticket, plan: info.read.cache}, nil
		}
		return false, nil, nil
	}
	a, ok := decodeAnswer(res.Value)
	if !ok || a.desc == nil {
		return false, nil, nil
	}
	if err := s.auditAnswer(info, int64(len(a.rows)), res.Deps); err != nil {
		return true, nil, err
	}
	out := append([]byte(nil), a.desc...)
	for _, r := range a.rows {
		out = append(out, r...)
	}
	out = append(out, a.done...)
	out = append(out, 'Z', 0, 0, 0, 5, 'I')
	return true, nil, s.answerCached(kQuery, out)
}

// auditAnswer appends the record of a read answered from the cache, as the
// same read from PostgreSQL would have it, marked as served from cache.
func (s *session) auditAnswer(info *stmtInfo, rows int64, deps []cache.Dep) error {
	sr := info.read.stmts[0]
	if s.rs.auditor == nil || sr == nil || sr.rec == nil {
		return nil
	}
	var subjects []audit.Pseudonym
	for _, d := range deps {
		if d.Subject == "" {
			continue
		}
		p, err := audit.ParsePseudonym(d.Subject)
		if err == nil && !containsPseudonym(subjects, p) {
			subjects = append(subjects, p)
		}
	}
	if rows == 0 {
		subjects = nil
	}
	r := s.readRecord(info, sr, rows, subjects, "served from cache")
	if err := s.rs.auditor.Append(context.Background(), r); err != nil {
		return fatalf(codeAuditUnavailable, "the read audit record of a statement could not be "+
			"made durable; its rows were not sent and Privata ended the session: %v", err)
	}
	return nil
}

func containsPseudonym(list []audit.Pseudonym, p audit.Pseudonym) bool {
	for _, q := range list {
		if q == p {
			return true
		}
	}
	return false
}

// store offers a filled answer to the cache, in the background, with the
// dependencies its rows showed (upstream side).
func (s *session) store(f *fill) {
	rp := s.srv.read
	var deps []cache.Dep
	if len(f.plan.whole) > 0 {
		for _, t := range f.plan.whole {
			deps = append(deps, cache.Dep{Table: t})
		}
	} else {
		for _, d := range s.rs.result.deps {
			if d.Table == f.plan.table {
				deps = append(deps, d)
			}
		}
		if len(deps) == 0 {
			deps = []cache.Dep{{Table: f.plan.table}}
		}
	}
	value := encodeAnswer(f.desc, f.msgs)
	select {
	case rp.fills <- struct{}{}:
	default:
		return
	}
	go func() {
		defer func() { <-rp.fills }()
		rp.cache.Put(context.Background(), f.ticket, value, deps)
	}()
}

// answerPortal is a portal whose Bind the cache answered: it exists only
// here, until it is closed, bound again or the cycle ends at Sync.
type answerPortal struct {
	info *stmtInfo
	ans  *cachedAnswer
	deps []cache.Dep
	pos  int
	// bind is the Bind message to send upstream should the portal be used
	// in a way the answer does not cover.
	bind []byte
}

// bindRead handles a Bind of a statement on the read path: the audit
// check, the cache lookup, and the result formats of hidden columns.
func (s *session) bindRead(body, portal []byte, info *stmtInfo) error {
	b, ok := parseBind(body)
	if !ok {
		return protocolError("invalid Bind message")
	}
	var sr *stmtRead
	if len(info.read.stmts) > 0 {
		sr = info.read.stmts[0]
	}
	if sr != nil && sr.rec != nil && s.rs.auditor != nil {
		if refusal := auditRefusal(s.rs.auditor.Check()); refusal != nil {
			if err := s.push(entry{kind: kBind, refusal: refusal.encode()}); err != nil {
				return err
			}
			var m builder
			m.begin('B')
			m.str(string(portal))
			m.str(standInStmt)
			m.i16(0)
			m.i16(0)
			m.i16(0)
			m.finish()
			s.uw.Write(m.buf)
			return nil
		}
	}
	msg := appendMessage(nil, 'B', body)
	if sr != nil && len(sr.hidden) > 0 && len(b.resultFormats) > 1 {
		msg = appendMessage(nil, 'B', b.withHidden(len(sr.hidden)))
	}
	if s.mayCache(info) {
		res, err := s.srv.read.cache.Get(context.Background(), s.cacheRequest(info, b))
		if err == nil && res.Hit {
			if a, ok := decodeAnswer(res.Value); ok {
				if s.rs.answers == nil {
					s.rs.answers = map[string]*answerPortal{}
				}
				s.rs.answers[string(portal)] = &answerPortal{info: info, ans: a, deps: res.Deps,
					bind: msg}
				return s.answerCached(kBind, []byte{'2', 0, 0, 0, 4})
			}
		}
		if res.Ticket.Valid() {
			if s.rs.fills == nil {
				s.rs.fills = map[string]*fill{}
			}
			s.rs.fills[string(portal)] = &fill{ticket: res.Ticket, plan: info.read.cache}
		}
	}
	if err := s.push(entry{kind: kBind}); err != nil {
		return err
	}
	s.uw.Write(msg)
	return nil
}

// standInStmt names no prepared statement: a Bind to it fails upstream in
// place of a refused one.
const standInStmt = "privata\x1frefused"

// executeAnswer answers an Execute of a portal the cache answered.
func (s *session) executeAnswer(p *answerPortal, rest []byte) error {
	if len(rest) < 4 {
		return protocolError("invalid Execute message")
	}
	limit := int(int32(binary.BigEndian.Uint32(rest)))
	rows := p.ans.rows[p.pos:]
	suspended := limit > 0 && len(rows) > limit
	if suspended {
		rows = rows[:limit]
	}
	if err := s.auditAnswer(p.info, int64(len(rows)), p.deps); err != nil {
		return err
	}
	var out []byte
	for _, r := range rows {
		out = append(out, r...)
	}
	switch {
	case suspended:
		out = append(out, 's', 0, 0, 0, 4)
	case p.pos == 0:
		out = append(out, p.ans.done...)
	default:
		out = appendMessage(out, 'C', append([]byte("SELECT "+strconv.Itoa(len(rows))), 0))
	}
	p.pos += len(rows)
	return s.answerCached(kExecute, out)
}

// closeAnswer answers a Close of a portal the cache answered.
func (s *session) closeAnswer(name []byte) error {
	delete(s.rs.answers, string(name))
	return s.answerCached(kClose, []byte{'3', 0, 0, 0, 4})
}

// describeRead handles a Describe on the read path: a portal the cache
// answered is described from its answer; the RowDescription of a statement
// or portal with hidden columns loses them (e.strip), and that of a portal
// being filled is kept for the cache (e.fill).
func (s *session) describeRead(body []byte, e *entry) (bool, error) {
	if len(body) < 2 {
		return true, protocolError("invalid Describe message")
	}
	name, _, ok := cstring(body[1:])
	if !ok {
		return true, protocolError("invalid string in Describe message")
	}
	var info *stmtInfo
	if body[0] == 'P' {
		if p := s.rs.answered(name); p != nil {
			if p.ans.desc != nil {
				return true, s.answerCached(kDescribe, p.ans.desc)
			}
			if err := s.materialize(name, p); err != nil {
				return true, err
			}
		}
		info = s.portal(name)
		if s.rs.fills != nil {
			e.fill = s.rs.fills[string(name)]
		}
	} else {
		info = s.stmt(name)
	}
	if info != nil && info.read != nil && len(info.read.stmts) > 0 && info.read.stmts[0] != nil {
		e.strip = len(info.read.stmts[0].hidden)
	}
	return false, nil
}

// materialize binds upstream a portal the cache answered, for a use its
// answer does not cover; its BindComplete was already sent.
func (s *session) materialize(name []byte, p *answerPortal) error {
	delete(s.rs.answers, string(name))
	if err := s.push(entry{kind: kBind, hidden: true}); err != nil {
		return err
	}
	s.uw.Write(p.bind)
	return nil
}

// sync ends an extended-protocol cycle: answered by Privata when nothing
// of the cycle went upstream, forwarded otherwise.
func (s *session) sync(n int) error {
	answered := s.rs.cycleAnswered && !s.rs.cycleForwarded
	s.rs.answers, s.rs.fills = nil, nil
	if !answered {
		return s.forward(entry{kind: kSync, inCopy: s.copyWindow}, 'S', n)
	}
	if err := s.cr.discard(n); err != nil {
		return err
	}
	return s.answerCached(kSync, []byte{'Z', 0, 0, 0, 5, 'I'})
}

// writeParse forwards a Parse with another statement text.
func (s *session) writeParse(name []byte, text string, types []byte) {
	var b builder
	b.begin('P')
	b.str(string(name))
	b.str(text)
	b.bytes(types)
	b.finish()
	s.uw.Write(b.buf)
}

// bindMessage is a parsed Bind.
type bindMessage struct {
	body          []byte
	params        [][]byte
	paramFormats  []int16
	resultFormats []int16
	resultAt      int // offset of the result format count
}

func parseBind(body []byte) (*bindMessage, bool) {
	b := &bindMessage{body: body}
	_, rest, ok := cstring(body)
	if !ok {
		return nil, false
	}
	_, rest, ok = cstring(rest)
	if !ok {
		return nil, false
	}
	formats := func() ([]int16, bool) {
		if len(rest) < 2 {
			return nil, false
		}
		n := int(int16(binary.BigEndian.Uint16(rest)))
		rest = rest[2:]
		if n < 0 || len(rest) < 2*n {
			return nil, false
		}
		out := make([]int16, n)
		for i := range out {
			out[i] = int16(binary.BigEndian.Uint16(rest[2*i:]))
		}
		rest = rest[2*n:]
		return out, true
	}
	if b.paramFormats, ok = formats(); !ok || len(rest) < 2 {
		return nil, false
	}
	n := int(int16(binary.BigEndian.Uint16(rest)))
	rest = rest[2:]
	if n < 0 {
		return nil, false
	}
	b.params = make([][]byte, n)
	for i := range b.params {
		if len(rest) < 4 {
			return nil, false
		}
		l := int(int32(binary.BigEndian.Uint32(rest)))
		rest = rest[4:]
		if l < 0 {
			continue
		}
		if len(rest) < l {
			return nil, false
		}
		b.params[i] = rest[:l]
		rest = rest[l:]
	}
	b.resultAt = len(body) - len(rest)
	if b.resultFormats, ok = formats(); !ok || len(rest) != 0 {
		return nil, false
	}
	return b, true
}

// withHidden returns the Bind's body with a text format code for each of
// h hidden columns appended to its per-column result formats.
func (b *bindMessage) withHidden(h int) []byte {
	out := append([]byte(nil), b.body[:b.resultAt]...)
	out = binary.BigEndian.AppendUint16(out, uint16(len(b.resultFormats)+h))
	for _, f := range b.resultFormats {
		out = binary.BigEndian.AppendUint16(out, uint16(f))
	}
	for range h {
		out = binary.BigEndian.AppendUint16(out, 0)
	}
	return out
}

// cachedAnswer is a statement's answer as the cache keeps it: the
// responses the client got, hidden columns already stripped.
type cachedAnswer struct {
	desc []byte   // RowDescription, or nil when the fill did not see one
	rows [][]byte // DataRow messages
	done []byte   // CommandComplete
}

// encodeAnswer is the cache value of an answer: a flag byte (1 when a
// RowDescription leads), then the messages.
func encodeAnswer(desc, msgs []byte) []byte {
	out := make([]byte, 0, 1+len(desc)+len(msgs))
	if desc != nil {
		out = append(append(out, 1), desc...)
	} else {
		out = append(out, 0)
	}
	return append(out, msgs...)
}

var errBadAnswer = errors.New("malformed cached answer")

func decodeAnswer(v []byte) (*cachedAnswer, bool) {
	a, err := splitAnswer(v)
	return a, err == nil
}

func splitAnswer(v []byte) (*cachedAnswer, error) {
	if len(v) < 1 {
		return nil, errBadAnswer
	}
	hasDesc := v[0] == 1
	v = v[1:]
	a := &cachedAnswer{}
	for len(v) > 0 {
		if len(v) < 5 {
			return nil, errBadAnswer
		}
		l := int(binary.BigEndian.Uint32(v[1:]))
		if l < 4 || 1+l > len(v) {
			return nil, errBadAnswer
		}
		m := v[:1+l]
		v = v[1+l:]
		switch {
		case m[0] == 'T' && hasDesc && a.desc == nil && a.rows == nil:
			a.desc = m
		case m[0] == 'D' && a.done == nil:
			a.rows = append(a.rows, m)
		case m[0] == 'C' && a.done == nil:
			a.done = m
		default:
			return nil, errBadAnswer
		}
	}
	if a.done == nil || hasDesc && a.desc == nil {
		return nil, errBadAnswer
	}
	return a, nil
}
