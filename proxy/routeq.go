package proxy

import (
	"bytes"
	"encoding/binary"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/privata/privata/regions"
	"github.com/privata/privata/rewrite"
)

// trackTransaction follows the client's transaction block from command
// tags, between ReadyForQuery messages (which set it for good).
func (s *session) trackTransaction(tag []byte) {
	switch {
	case bytes.Equal(tag, []byte("BEGIN")) || bytes.Equal(tag, []byte("START TRANSACTION")):
		s.txStatus.Store('T')
	case bytes.Equal(tag, []byte("COMMIT")) || bytes.Equal(tag, []byte("ROLLBACK")) &&
		s.txStatus.Load() != 'T':
		s.txStatus.Store('I')
	}
}

// twoPhase reports whether transactions may write to several clusters.
func (s *session) twoPhase() bool {
	return s.srv.opts.Router.TwoPhase && s.srv.opts.TwoPhase != nil
}

// routeQuery routes a Query message. It returns handled when it answered
// the Query itself: on another region's cluster, or by refusing it; else
// the Query goes to the home connection, and homeWrite says whether it may
// write there.
// wire is what to send in place of text (rewrite.go).
func (s *session) routeQuery(text, wire string) (handled, homeWrite bool, err error) {
	an, aerr := s.srv.analyzer.Analyze(text)
	if aerr != nil || len(an.Statements) == 0 {
		return false, false, nil
	}
	r, e := s.route(text, an, nil)
	if e != nil {
		return true, false, s.refuseQuery(e)
	}
	s.recordSets(text, an)
	if r.control != "" && s.sideInTx() {
		return s.control(text)
	}
	if r.move != nil {
		status, err := s.drain()
		switch {
		case err != nil:
			return true, false, err
		case status == 'E':
			return false, false, nil // the home connection answers 25P02
		}
		return true, false, s.move(text, an, nil, r, status, nil)
	}
	if r.home(s) {
		if r.write && s.sideInTx() {
			if w := s.writers(s.srv.home); len(w) > 1 && !s.twoPhase() {
				return true, false, s.refuseQuery(s.twoRegionsError(w))
			}
		}
		s.reportTransfers(r, an.Tags)
		return false, r.write, nil
	}
	status, err := s.drain()
	if err != nil {
		return true, false, err
	}
	if status == 'E' {
		return false, false, nil // the home connection answers 25P02
	}
	if r.write && status == 'T' {
		if w := s.writers(r.target); len(w) > 1 && !s.twoPhase() {
			return true, false, s.refuseQuery(s.twoRegionsError(w))
		}
	}
	if len(an.Statements) > 1 {
		for _, st := range an.Statements {
			if st.Kind == rewrite.Transaction {
				return true, false, s.refuseQuery(&Error{Code: codeFeatureNotSupport,
					Message: "a message that controls transactions may not run in another " +
						"region's cluster", Hint: "Send BEGIN and COMMIT as messages of their own."})
			}
		}
	}
	s.unnamedStmt = nil
	delete(s.regions.parses, "")
	err = s.onSide(r.target, an.Tags, status, func(sd *side) error {
		delete(sd.stmts, "")
		s.reportTransfers(r, an.Tags)
		res, err := s.sideQuery(sd, wire, true)
		if err != nil {
			return err
		}
		if status == 'T' {
			if res.err != nil {
				return s.abortHome()
			}
			sd.wrote = sd.wrote || r.write
		}
		return nil
	})
	if err != nil {
		return true, false, s.sideFailed(err, true)
	}
	return true, false, nil
}

// sideFailed answers an error of a side connection (a lost connection is
// an *Error; anything else ends the session).
func (s *session) sideFailed(err error, ready bool) error {
	if err == errSideGone {
		err = &Error{Code: codeConnectionFailure, Message: "connection to another region's cluster lost",
			Hint: "Statements for other regions keep working."}
	}
	if e, ok := err.(*Error); ok {
		if s.txStatus.Load() == 'T' {
			if err := s.abortHome(); err != nil {
				return err
			}
			s.txStatus.Store('E')
		}
		return s.answer(e, ready)
	}
	return err
}

// refuseQuery answers a Query with an error through the home connection,
// as analyze's refusals are: a stand-in fails there (aborting a
// transaction block) and its error is replaced.
func (s *session) refuseQuery(e *Error) error {
	if err := s.push(entry{kind: kQuery, refusal: e.encode()}); err != nil {
		return err
	}
	s.writeQuery(standIn)
	return nil
}

// recordSets keeps the client's SET statements, to run them on side
// connections; a session reset closes those (they reopen clean).
func (s *session) recordSets(text string, an *rewrite.Analysis) {
	for _, st := range an.Statements {
		if st.ResetsSession && !s.sideInTx() {
			s.closeSides()
			s.regions.sides = map[string]*side{}
			s.regions.portals = map[string]*side{}
			s.regions.pending = map[*side]struct{}{}
			s.regions.sets = nil
			continue
		}
		if st.Kind != rewrite.Set && st.Kind != rewrite.Reset {
			continue
		}
		for _, set := range st.Settings {
			if !set.Local && set.Name != "role" && set.Name != "session_authorization" {
				s.regions.sets = append(s.regions.sets, text[st.Location:st.Location+st.Length])
				break
			}
		}
	}
}

// bindParams reads the parameters of a Bind body, with the types the
// statement's Parse body declared.
func bindParams(bind, parse []byte) ([]regions.Param, bool) {
	_, rest, ok1 := cstring(bind)
	_, rest, ok2 := cstring(rest)
	if !ok1 || !ok2 || len(rest) < 2 {
		return nil, false
	}
	nf := int(binary.BigEndian.Uint16(rest))
	rest = rest[2:]
	if len(rest) < 2*nf+2 {
		return nil, false
	}
	formats := make([]int16, nf)
	for i := range formats {
		formats[i] = int16(binary.BigEndian.Uint16(rest[2*i:]))
	}
	rest = rest[2*nf:]
	np := int(binary.BigEndian.Uint16(rest))
	rest = rest[2:]
	oids := parseOIDs(parse)
	params := make([]regions.Param, np)
	for i := range params {
		if len(rest) < 4 {
			return nil, false
		}
		n := int32(binary.BigEndian.Uint32(rest))
		rest = rest[4:]
		p := &params[i]
		switch {
		case nf == 1:
			p.Binary = formats[0] == 1
		case i < nf:
			p.Binary = formats[i] == 1
		}
		if i < len(oids) {
			p.OID = oids[i]
		}
		if n < 0 {
			p.Null = true
			continue
		}
		if int(n) > len(rest) {
			return nil, false
		}
		p.Value, rest = rest[:n], rest[n:]
	}
	return params, true
}

// parseOIDs reads the parameter types a Parse body declares.
func parseOIDs(parse []byte) []uint32 {
	_, rest, ok1 := cstring(parse)
	_, rest, ok2 := cstring(rest)
	if !ok1 || !ok2 || len(rest) < 2 {
		return nil
	}
	n := int(binary.BigEndian.Uint16(rest))
	rest = rest[2:]
	if len(rest) < 4*n {
		return nil
	}
	out := make([]uint32, n)
	for i := range out {
		out[i] = binary.BigEndian.Uint32(rest[4*i:])
	}
	return out
}

// parseText returns a Parse body's statement text.
func parseText(parse []byte) string {
	_, rest, _ := cstring(parse)
	text, _, _ := cstring(rest)
	return string(text)
}

// routeBind routes a Bind. It returns handled when the portal is bound on
// another region's cluster (or the message was skipped or refused).
func (s *session) routeBind(body []byte, portal, stmt string) (handled, homeWrite bool, err error) {
	rs := s.regions
	if rs.failed {
		return true, false, nil
	}
	delete(rs.portals, portal)
	delete(rs.moved, portal)
	pbody := rs.parses[stmt]
	if pbody == nil {
		return false, false, nil
	}
	text := parseText(pbody)
	an, aerr := s.srv.analyzer.Analyze(text)
	if aerr != nil || len(an.Statements) == 0 {
		return false, false, nil
	}
	params, ok := bindParams(body, pbody)
	if !ok {
		return false, false, nil // the backend answers the malformed Bind
	}
	r, e := s.route(text, an, params)
	if e != nil {
		return true, false, s.refuseBind(e)
	}
	if r.control != "" && s.sideInTx() {
		return true, false, s.refuseBind(&Error{Code: codeFeatureNotSupport,
			Message: "a transaction that spans regions ends with COMMIT or ROLLBACK sent as a " +
				"simple query", Hint: "Send COMMIT or ROLLBACK with the simple query protocol."})
	}
	if r.move != nil {
		status, err := s.drain()
		switch {
		case err != nil:
			return true, false, err
		case status == 'E' || s.cycleError.Load():
			return false, false, nil // the home connection skips it, as it should
		}
		return true, false, s.move(text, an, params, r, status, &portal)
	}
	if r.home(s) {
		if r.write && (s.sideInTx() || len(rs.pending) > 0) {
			if w := s.writers(s.srv.home); len(w) > 1 && !(s.twoPhase() && s.sideInTx()) {
				return true, false, s.refuseBind(s.twoRegionsError(w))
			}
		}
		s.reportTransfers(r, an.Tags)
		return false, r.write, nil
	}
	status, err := s.drain()
	if err != nil {
		return true, false, err
	}
	if status == 'E' || s.cycleError.Load() {
		return false, false, nil // the home connection skips it, as it should
	}
	if r.write {
		if w := s.writers(r.target); len(w) > 1 && !(s.twoPhase() && status == 'T') {
			return true, false, s.refuseBind(s.twoRegionsError(w))
		}
	}
	err = s.onSide(r.target, an.Tags, status, func(sd *side) error {
		var msgs []byte
		if prev, ok := sd.stmts[stmt]; !ok || prev != string(pbody) {
			if ok && stmt != "" {
				msgs = appendMessage(msgs, 'C', append([]byte{'S'}, append([]byte(stmt), 0)...))
			}
			if w := rs.wire[stmt]; w != nil {
				msgs = appendMessage(msgs, 'P', w)
			} else {
				msgs = appendMessage(msgs, 'P', pbody)
			}
			sd.stmts[stmt] = string(pbody)
		}
		msgs = appendMessage(msgs, 'B', body)
		s.reportTransfers(r, an.Tags)
		rs.pending[sd] = struct{}{}
		failed, err := s.sideExtended(sd, msgs, func(typ byte) bool { return typ == '2' }, "1", "3")
		switch {
		case err != nil:
			return err
		case failed:
			rs.failed = true
			delete(sd.stmts, stmt)
		default:
			rs.portals[portal] = sd
			sd.wrote = sd.wrote || r.write
		}
		return nil
	})
	if err != nil {
		rs.failed = true
		return true, false, s.sideFailed(err, false)
	}
	return true, false, nil
}

// refuseBind answers a Bind with an error, and has the home connection
// skip the rest of the cycle as PostgreSQL would: a Bind of a statement
// that does not exist fails there, and its error is replaced.
func (s *session) refuseBind(e *Error) error {
	if err := s.push(entry{kind: kBind, refusal: e.encode()}); err != nil {
		return err
	}
	var b builder
	b.begin('B')
	b.str("")
	b.str(ownStmt + "\x1fnone")
	b.i16(0)
	b.i16(0)
	b.i16(0)
	b.finish()
	s.uw.Write(b.buf)
	return nil
}

func appendMessage(b []byte, typ byte, body []byte) []byte {
	b = append(b, typ)
	b = binary.BigEndian.AppendUint32(b, uint32(len(body)+4))
	return append(b, body...)
}

// sideExtended sends extended-protocol messages and a Flush to a side
// connection and relays its answers until done says the last one came or
// an error did (failed). Answers of the types in swallow (to messages
// Privata added) are not relayed.
func (s *session) sideExtended(sd *side, msgs []byte, done func(byte) bool,
	swallow ...string) (failed bool, err error) {
	sd.w.Write(msgs)
	sd.w.Write([]byte{'H', 0, 0, 0, 4})
	if err := sd.w.Flush(); err != nil {
		s.lost(sd)
		return false, errSideGone
	}
	s.cwMu.Lock()
	defer s.cwMu.Unlock()
	for first := true; ; first = false {
		typ, body, err := s.sideMessage(sd, first)
		if err != nil {
			return false, err
		}
		skip := typ == 'S'
		for _, sw := range swallow {
			skip = skip || typ == sw[0]
		}
		if !skip {
			writeMessage(s.cw, typ, body)
		}
		if typ == 'E' || done(typ) {
			if err := s.cw.Flush(); err != nil {
				return false, s.clientLost(err)
			}
			return typ == 'E', nil
		}
	}
}

// routeDescribe handles a Describe of a portal bound on a side connection.
func (s *session) routeDescribe(body []byte) (bool, error) {
	rs := s.regions
	if rs.failed {
		return true, nil
	}
	if len(body) < 2 || body[0] != 'P' {
		return false, nil
	}
	name, _, _ := cstring(body[1:])
	if _, ok := rs.moved[string(name)]; ok {
		return true, s.toClient(encodeMessage(&pgproto3.NoData{}))
	}
	sd := rs.portals[string(name)]
	if sd == nil {
		return false, nil
	}
	failed, err := s.sideExtended(sd, appendMessage(nil, 'D', body),
		func(typ byte) bool { return typ == 'T' || typ == 'n' })
	if err != nil {
		rs.failed = true
		return true, s.sideFailed(err, false)
	}
	rs.failed = failed
	return true, nil
}

// routeExecute handles an Execute of a portal bound on a side connection.
func (s *session) routeExecute(body []byte, portal string) (bool, error) {
	rs := s.regions
	if rs.failed {
		return true, nil
	}
	if tag, ok := rs.moved[portal]; ok {
		delete(rs.moved, portal)
		return true, s.toClient(encodeMessage(&pgproto3.CommandComplete{CommandTag: []byte(tag)}))
	}
	sd := rs.portals[portal]
	if sd == nil {
		return false, nil
	}
	failed, err := s.sideExtended(sd, appendMessage(nil, 'E', body),
		func(typ byte) bool { return typ == 'C' || typ == 'I' || typ == 's' })
	if err != nil {
		rs.failed = true
		return true, s.sideFailed(err, false)
	}
	rs.failed = failed
	return true, nil
}

// routeClose handles a Close of a portal bound on a side connection.
func (s *session) routeClose(body []byte) (bool, error) {
	rs := s.regions
	if rs.failed {
		return true, nil
	}
	if len(body) < 2 || body[0] != 'P' {
		return false, nil
	}
	name, _, _ := cstring(body[1:])
	if _, ok := rs.moved[string(name)]; ok {
		delete(rs.moved, string(name))
		return true, s.toClient(encodeMessage(&pgproto3.CloseComplete{}))
	}
	sd := rs.portals[string(name)]
	if sd == nil {
		return false, nil
	}
	delete(rs.portals, string(name))
	failed, err := s.sideExtended(sd, appendMessage(nil, 'C', body), func(typ byte) bool { return typ == '3' })
	if err != nil {
		rs.failed = true
		return true, s.sideFailed(err, false)
	}
	rs.failed = failed
	return true, nil
}

// routeSync ends the extended-protocol cycle on the side connections that
// took part in it, before the home connection's Sync ends it there.
func (s *session) routeSync() error {
	rs := s.regions
	defer func() { rs.failed = false }()
	clear(rs.moved)
	if len(rs.pending) == 0 {
		return nil
	}
	if _, err := s.drain(); err != nil {
		return err
	}
	for sd := range rs.pending {
		delete(rs.pending, sd)
		sd.w.Write([]byte{'S', 0, 0, 0, 4})
		if err := sd.w.Flush(); err != nil {
			return s.answer(s.lost(sd), false)
		}
		for {
			typ, body, err := s.sideMessage(sd, false)
			if err != nil {
				return s.answer(err.(*Error), false)
			}
			if typ == 'E' && !rs.failed {
				// The implicit commit failed (a deferred constraint).
				if err := s.toClient(appendMessage(nil, 'E', body)); err != nil {
					return err
				}
			}
			if typ == 'Z' {
				if body[0] == 'I' {
					sd.inTx, sd.wrote = false, false
				}
				break
			}
		}
		for name, p := range rs.portals {
			if p == sd && !sd.inTx {
				delete(rs.portals, name)
			}
		}
	}
	return nil
}
