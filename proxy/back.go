package proxy

import (
	"bytes"
	"errors"
	"fmt"
	"time"
)

// observer sees the results of one statement as they are relayed: the
// row description, each row before it is released to the client, and the
// command tag. Bodies are valid only during the call. Later issues (audit
// of reads, result caching) attach one per statement; with none attached,
// rows are copied through without being decoded.
type observer interface {
	columns(desc []byte)
	row(data []byte)
	done(tag []byte)
}

// back reads upstream's messages and relays them to the client in order,
// matching each against the head of the queue.
func (s *session) back() error {
	for {
		typ, n, err := s.ur.next()
		// The client side writes to the client too, when it answers a
		// statement from another region's cluster or from the cache: cwMu
		// orders the two.
		s.cwMu.Lock()
		if err != nil {
			err = s.upstreamLost(err)
			s.cwMu.Unlock()
			return err
		}
		err = s.relay(typ, n)
		if err == nil {
			s.emitAnswers()
			if !s.ur.ready() {
				if ferr := s.cw.Flush(); ferr != nil {
					err = s.clientLost(ferr)
				}
			}
		}
		s.cwMu.Unlock()
		if err != nil {
			return err
		}
	}
}

// head returns the entry awaiting responses, or nil.
func (s *session) head() *entry {
	if !s.haveCur {
		s.haveCur = s.q.peek(&s.cur)
	}
	if s.haveCur {
		return &s.cur
	}
	return nil
}

// pop completes the head entry.
func (s *session) pop() {
	if s.head() == nil {
		return
	}
	if s.cur.ctx {
		s.ctxDone++
	}
	if !s.cur.sent.IsZero() {
		s.srv.metrics.upstream.Observe(time.Since(s.cur.sent).Seconds())
	}
	s.rs.popped(&s.cur)
	s.q.pop()
	s.haveCur = false
}

func (s *session) hidden() bool {
	e := s.head()
	return e != nil && e.hidden
}

// pass relays the current message unless it belongs to a hidden entry.
func (s *session) pass(typ byte, n int) error {
	if s.hidden() {
		return s.ur.discard(n)
	}
	return s.ur.copyTo(s.cw, typ, n)
}

// relay handles one upstream message.
func (s *session) relay(typ byte, n int) error {
	if e := s.head(); e != nil && e.own != nil {
		return s.relayOwn(e, typ, n)
	}
	if e := s.head(); e != nil && !e.hidden && (e.rd != nil || e.strip > 0 || e.fill != nil) {
		if done, err := s.relayRead(e, typ, n); done {
			return err
		}
	}
	switch typ {
	case 'D', 'T':
		e := s.head()
		if e != nil && e.result != nil && typ == 'D' {
			body, err := s.ur.body(n)
			if err != nil {
				return s.upstreamLost(err)
			}
			s.own.rows = append(s.own.rows, firstColumn(body))
			return nil
		}
		if e != nil && e.obs != nil && !e.hidden {
			body, err := s.ur.body(n)
			if err != nil {
				return s.upstreamLost(err)
			}
			if typ == 'D' {
				e.obs.row(body)
			} else {
				e.obs.columns(body)
			}
			writeMessage(s.cw, typ, body)
		} else if err := s.pass(typ, n); err != nil {
			return s.upstreamLost(err)
		}
		if typ == 'T' && e != nil && e.kind == kDescribe {
			s.pop()
		}
	case 'C':
		body, err := s.ur.body(n)
		if err != nil {
			return s.upstreamLost(err)
		}
		s.complete(body)
		if !s.hidden() {
			writeMessage(s.cw, typ, body)
		}
		if e := s.head(); e != nil && e.kind == kExecute {
			s.pop()
			s.dropIgnoredSyncs()
		}
	case 'G':
		// CopyInResponse: the backend ignores Syncs until the COPY ends.
		if e := s.head(); e != nil && (e.kind == kQuery || e.kind == kExecute) {
			s.copyIn = true
		}
		if err := s.pass(typ, n); err != nil {
			return s.upstreamLost(err)
		}
	case 'I', 's', '1', '2', '3', 'n':
		if err := s.pass(typ, n); err != nil {
			return s.upstreamLost(err)
		}
		if e := s.head(); e != nil && e.kind != kQuery && e.kind != kFunc {
			s.pop()
		}
	case 'Z':
		body, err := s.ur.body(n)
		if err != nil || len(body) != 1 {
			return s.upstreamLost(errors.New("malformed ReadyForQuery"))
		}
		// Entries still queued before the cycle's end were skipped by the
		// backend after an error.
		for e := s.head(); e != nil && !e.kind.endsCycle(); e = s.head() {
			s.pop()
		}
		hidden := s.hidden()
		if s.escalated {
			if e := s.head(); e == nil || e.st == nil || !e.st.resets {
				return s.end(s.escalation())
			}
		}
		if e := s.head(); e != nil && e.result != nil {
			e.result <- s.own
			s.own = hiddenResult{}
		}
		s.pop()
		s.dropIgnoredSyncs()
		s.readReady(body[0])
		s.txStatus.Store(uint32(body[0]))
		if body[0] == 'I' {
			s.homeWrote.Store(false)
		}
		s.cycleError.Store(false)
		s.ctx.ready(body[0], s.ctxDone)
		s.ctxDone, s.results = 0, 0
		if !hidden {
			writeMessage(s.cw, typ, body)
		}
	case 'E':
		s.rs.cycleFailed = true
		return s.relayError(n)
	case 'S':
		body, err := s.ur.body(n)
		if err != nil {
			return s.upstreamLost(err)
		}
		if err := s.watch(body); err != nil {
			return s.end(err)
		}
		s.rs.param(body)
		writeMessage(s.cw, typ, body)
	case 'N', 'A':
		if err := s.ur.copyTo(s.cw, typ, n); err != nil {
			return s.upstreamLost(err)
		}
	default:
		if err := s.pass(typ, n); err != nil {
			return s.upstreamLost(err)
		}
	}
	return nil
}

// complete records what a CommandComplete means for the session context.
func (s *session) complete(tag []byte) {
	e := s.head()
	if bytes.HasPrefix(tag, []byte("ROLLBACK")) {
		s.ctx.rollback()
	}
	s.trackTransaction(tag)
	if e != nil && e.homeWrite {
		s.homeWrote.Store(true)
	}
	if e == nil {
		return
	}
	if e.sets != nil {
		s.ctx.set(e.sets)
	}
	if e.st != nil {
		i := 0
		if e.kind == kQuery {
			i = s.results
			s.results++
		}
		if f := e.st.at(i); f != nil {
			if f.sets != nil {
				s.ctx.set(f.sets)
			}
			if f.resets || f.forget {
				s.ctx.forget()
			}
		}
	}
	if e.obs != nil && !e.hidden {
		e.obs.done(tag)
	}
}

// relayError handles an ErrorResponse: a refusal's stand-in error is
// replaced by the refusal, an injected message's error is relayed (or
// swallowed when quiet), and a failed SET ROLE ends the session.
func (s *session) relayError(n int) error {
	body, err := s.ur.body(n)
	if err != nil {
		return s.upstreamLost(err)
	}
	s.ctx.fail()
	fatal := isFatal(body)
	e := s.head()
	if e != nil && e.result != nil {
		// A statement Privata runs for itself: the error is its answer.
		s.own.err = append([]byte(nil), body...)
		if !e.kind.endsCycle() {
			s.pop()
		}
		return nil
	}
	s.cycleError.Store(true)
	if s.txStatus.Load() == 'T' {
		s.txStatus.Store('E')
	}
	switch {
	case fatal || e == nil:
		writeMessage(s.cw, 'E', body)
		if fatal {
			s.sawFatal = true
		}
	case e.refusal != nil:
		s.cw.Write(e.refusal)
	case e.vital && errorCode(body) == codeInFailedTransaction:
		// The reset ran in (or caused) an aborted transaction: it did not
		// take effect, and the role is as it was.
	case e.vital:
		return s.end(fatalf(codeInsufficientPriv, "could not take on role %q again after the "+
			"session was reset; the session is ended", s.role.PGRole))
	case e.quiet:
		s.ctx.forget()
	default:
		if e.hidden {
			s.ctx.forget()
		}
		writeMessage(s.cw, 'E', body)
	}
	if e != nil && !e.kind.endsCycle() {
		s.pop()
		s.dropIgnoredSyncs()
	}
	return nil
}

// dropIgnoredSyncs completes, once the statement that started a COPY FROM
// STDIN is done, the entries of the Syncs the client sent during the COPY:
// the backend ignored them, so no ReadyForQuery will answer them, and the
// next one answers the Sync after the COPY.
func (s *session) dropIgnoredSyncs() {
	if !s.copyIn {
		return
	}
	s.copyIn = false
	for e := s.head(); e != nil && e.kind == kSync && e.inCopy; e = s.head() {
		s.pop()
	}
}

// errorCode returns the SQLSTATE of an ErrorResponse body.
func errorCode(body []byte) string {
	for len(body) > 1 && body[0] != 0 {
		f := body[0]
		v, rest, ok := cstring(body[1:])
		if !ok {
			return ""
		}
		if f == 'C' {
			return string(v)
		}
		body = rest
	}
	return ""
}

// isFatal reports whether an ErrorResponse body has severity FATAL or PANIC.
func isFatal(body []byte) bool {
	for len(body) > 1 && body[0] != 0 {
		f := body[0]
		v, rest, ok := cstring(body[1:])
		if !ok {
			return false
		}
		if f == 'V' || f == 'S' {
			return string(v) == "FATAL" || string(v) == "PANIC"
		}
		body = rest
	}
	return false
}

// watch is the ParameterStatus watchdog: a belt to the analysis' braces.
// If the backend reports that the session became a superuser its role is
// not, that standard_conforming_strings went off, or that the client
// encoding became one Privata does not read statements in, the session
// ends. DISCARD ALL returns a session that logs in upstream as a superuser
// to it until Privata's SET ROLE, queued right behind it, has run: the
// escalation it reports is let through, and must be gone by the next
// ReadyForQuery (escalated, checked in relay).
func (s *session) watch(body []byte) *Error {
	name, rest, ok := cstring(body)
	value, _, ok2 := cstring(rest)
	if !ok || !ok2 {
		return nil
	}
	switch string(name) {
	case "is_superuser":
		s.escalated = string(value) == "on" && !s.superuser
		if s.escalated {
			if e := s.head(); e != nil && e.st != nil && e.st.resets {
				return nil
			}
			return s.escalation()
		}
	case "standard_conforming_strings":
		if string(value) != "on" {
			return fatalf(codeFeatureNotSupport, "standard_conforming_strings went off; Privata "+
				"ended the session")
		}
	case "client_encoding":
		if !readableEncoding(string(value)) {
			return fatalf(codeFeatureNotSupport, "the client encoding became %s; Privata reads "+
				"statements as UTF8 and ended the session", value)
		}
	}
	return nil
}

// escalation is the error that ends a session that became a superuser.
func (s *session) escalation() *Error {
	return fatalf(codeInsufficientPriv, "the session became a superuser, which role %q is not; "+
		"Privata ended it", s.role.PGRole)
}

// readableEncoding reports whether Privata reads statements in client
// encoding name (as PostgreSQL reports it) as PostgreSQL does: UTF8, or
// SQL_ASCII, whose bytes PostgreSQL takes as they are (checking them
// against a UTF8 database's encoding). In other encodings a character's
// second byte may be a quote or a backslash.
func readableEncoding(name string) bool {
	return name == "UTF8" || name == "SQL_ASCII"
}

// end sends a final error to the client and ends the session.
func (s *session) end(e *Error) error {
	s.upstreamEnded.Store(true)
	s.cw.Write(e.encode())
	s.cw.Flush()
	s.client.Close()
	s.up.Close()
	return e
}

// upstreamLost ends the session after the upstream connection failed. The
// client gets PostgreSQL's own FATAL error when one came (a terminated
// backend sends 57P01), else 08006.
func (s *session) upstreamLost(err error) error {
	if s.clientDone.Load() {
		return nil
	}
	if !s.sawFatal {
		return s.end(fatalf(codeConnectionFailure, "connection to cluster %s lost",
			s.srv.upstreamCluster))
	}
	s.upstreamEnded.Store(true)
	s.cw.Flush()
	s.client.Close()
	return fmt.Errorf("upstream closed the connection: %w", err)
}

func (s *session) clientLost(err error) error {
	s.client.Close()
	return fmt.Errorf("write to client: %w", err)
}
