package proxy

import (
	"encoding/binary"
	"strconv"
	"strings"
	"time"
)

// standIn is the statement forwarded in place of a refused one: it fails
// in PostgreSQL's parser, before anything runs, so that upstream and client
// agree that the statement failed (and, in a transaction, that it is
// aborted). The relay replaces its syntax error with Privata's refusal. It
// appears in the server log as the failing statement.
const standIn = "PRIVATA REFUSED STATEMENT"

// Names of the statement and portal Privata injects its own messages on.
// They are never the unnamed ones, which must survive across Syncs.
const (
	ownStmt   = "privata\x1fown"
	ownPortal = "privata\x1fown"
)

// front reads the client's messages and forwards them upstream, recording
// in the queue what each will produce. Writes are buffered and flushed when
// the next client message is not already buffered.
func (s *session) front() error {
	for {
		if !s.cr.ready() {
			if err := s.uw.Flush(); err != nil {
				return errUpstreamWrite
			}
		}
		typ, n, err := s.cr.next()
		if err != nil {
			return describeReadError(err)
		}
		switch typ {
		case 'Q':
			s.copyWindow = true
			err = s.query(n)
		case 'P':
			err = s.parse(n)
		case 'B':
			err = s.bind(n)
		case 'E':
			s.copyWindow = true
			err = s.execute(n)
		case 'D':
			err = s.describe(n)
		case 'C':
			err = s.closeMessage(n)
		case 'S':
			if s.regions != nil {
				if err = s.routeSync(); err != nil {
					break
				}
			}
			err = s.sync(n)
		case 'H':
			if err = s.cr.copyTo(s.uw, typ, n); err == nil && s.uw.Flush() != nil {
				err = errUpstreamWrite
			}
		case 'F':
			err = s.functionCall(n)
		case 'd', 'c', 'f':
			// COPY data flows through as it arrives. Outside COPY IN the
			// backend ignores these, as the protocol says.
			s.copyWindow = s.copyWindow && typ == 'd'
			err = s.cr.copyTo(s.uw, typ, n)
		case 'X':
			return nil
		default:
			return protocolError("invalid frontend message type %d", typ)
		}
		if err != nil {
			return readError(err)
		}
	}
}

func readError(err error) error {
	if _, ok := err.(*Error); ok || err == errUpstreamWrite {
		return err
	}
	return describeReadError(err)
}

// push records an entry before its message is written upstream.
// When the queue is full, what was written upstream is flushed before
// waiting for room, so that responses keep coming.
func (s *session) push(e entry) error {
	s.rs.pushed(&e)
	if e.ctx {
		s.ctx.begin()
	}
	ok, full := s.q.push(e, false)
	if full {
		if err := s.uw.Flush(); err != nil {
			return errUpstreamWrite
		}
		ok, _ = s.q.push(e, true)
	}
	if !ok {
		return errUpstreamWrite
	}
	return nil
}

// forward passes a message on unchanged, with entry e for its response.
func (s *session) forward(e entry, typ byte, n int) error {
	if err := s.push(e); err != nil {
		return err
	}
	return s.cr.copyTo(s.uw, typ, n)
}

// query handles a simple-protocol Query.
func (s *session) query(n int) error {
	body, err := s.cr.body(n)
	if err != nil {
		return err
	}
	text, rest, ok := cstring(body)
	if !ok || len(rest) != 0 {
		return protocolError("invalid string in Query message")
	}
	info, refusal := s.analyze(text)
	info = s.withContext(info)
	if refusal == nil {
		refusal = s.checkAudit(info)
	}
	if refusal != nil {
		if err := s.push(entry{kind: kQuery, refusal: refusal.encode()}); err != nil {
			return err
		}
		s.writeQuery(standIn)
		return nil
	}
	if info.ddl != nil {
		if handled, err := s.ownDDL(info.ddl); handled || err != nil {
			return err
		}
	}
	homeWrite := false
	if s.regions != nil {
		handled, write, err := s.routeQuery(string(text), info.wireText(text))
		if handled || err != nil {
			return err
		}
		homeWrite = write
	}
	answered, f, err := s.cacheQuery(info)
	if answered || err != nil {
		return err
	}
	// A Query drops the unnamed prepared statement.
	s.unnamedStmt = nil
	if len(info.want) > 0 {
		if sets := s.ctx.needs(info.want); len(sets) > 0 {
			if err := s.inject(sets, true); err != nil {
				return err
			}
		}
	}
	e := entry{kind: kQuery, st: info, ctx: info.ctx, sent: time.Now(), homeWrite: homeWrite}
	if s.srv.observe != nil {
		e.obs = s.srv.observe(info)
	}
	s.readEntry(&e, info, f)
	if err := s.push(e); err != nil {
		return err
	}
	switch {
	case info.wire != "":
		s.writeQuery(info.wire)
	case info.read != nil && info.read.text != "":
		s.writeQuery(info.read.text)
	default:
		writeMessage(s.uw, 'Q', body)
	}
	if info.resets {
		return s.reassume(true)
	}
	return nil
}

// parse handles a Parse message: the statement is analysed before it is
// forwarded; a refused one is replaced by the stand-in.
func (s *session) parse(n int) error {
	body, err := s.cr.body(n)
	if err != nil {
		return err
	}
	name, rest, ok1 := cstring(body)
	text, _, ok2 := cstring(rest)
	if !ok1 || !ok2 {
		return protocolError("invalid string in Parse message")
	}
	if s.regions != nil && s.regions.failed {
		return nil // an error on another region's cluster: skip to Sync
	}
	info, refusal := s.analyze(text)
	if refusal == nil && info.ddl != nil && info.ddl.tables() {
		refusal = ddlRefusal(info.ddl.first(), "by the extended query protocol")
	}
	if s.regions != nil {
		delete(s.regions.parses, string(name))
		delete(s.regions.wire, string(name))
		if refusal == nil {
			s.regions.parses[string(name)] = append([]byte(nil), body...)
		}
	}
	if refusal == nil && info.sideWire != "" && s.regions != nil {
		s.regions.wire[string(name)] = parseWith(body, info.sideWire)
	}
	if refusal != nil {
		s.setStmt(name, nil)
		if err := s.push(entry{kind: kParse, refusal: refusal.encode()}); err != nil {
			return err
		}
		var b builder
		b.begin('P')
		b.str(string(name))
		b.str(standIn)
		b.i16(0)
		b.finish()
		s.uw.Write(b.buf)
		return nil
	}
	s.setStmt(name, info)
	if err := s.push(entry{kind: kParse}); err != nil {
		return err
	}
	switch {
	case info.wire != "":
		s.writeParse(name, info.wire, rest[len(text)+1:])
	case info.read != nil && info.read.text != "":
		s.writeParse(name, info.read.text, rest[len(text)+1:])
	default:
		writeMessage(s.uw, 'P', body)
	}
	return nil
}

func (s *session) setStmt(name []byte, info *stmtInfo) {
	switch {
	case len(name) == 0:
		s.unnamedStmt = info
	case info == nil:
		delete(s.stmts, string(name))
	default:
		s.stmts[string(name)] = info
	}
}

func (s *session) stmt(name []byte) *stmtInfo {
	if len(name) == 0 {
		return s.unnamedStmt
	}
	return s.stmts[string(name)]
}

func (s *session) portal(name []byte) *stmtInfo {
	if len(name) == 0 {
		return s.unnamedPortal
	}
	return s.portals[string(name)]
}

// bind records which statement a portal runs.
func (s *session) bind(n int) error {
	body, err := s.cr.body(n)
	if err != nil {
		return err
	}
	portal, rest, ok1 := cstring(body)
	stmt, _, ok2 := cstring(rest)
	if !ok1 || !ok2 {
		return protocolError("invalid string in Bind message")
	}
	info := s.withContext(s.stmt(stmt))
	if s.regions != nil {
		handled, write, err := s.routeBind(body, string(portal), string(stmt))
		if handled || err != nil {
			return err
		}
		s.regions.writes[string(portal)] = write
	}
	if len(portal) == 0 {
		s.unnamedPortal = info
	} else if info != nil {
		s.portals[string(portal)] = info
	} else {
		delete(s.portals, string(portal))
	}
	s.rs.dropPortal(portal)
	if info != nil && info.read != nil {
		return s.bindRead(body, portal, info)
	}
	if err := s.push(entry{kind: kBind}); err != nil {
		return err
	}
	writeMessage(s.uw, 'B', body)
	return nil
}

// execute forwards an Execute, first injecting the context settings its
// statement's tags ask for.
func (s *session) execute(n int) error {
	body, err := s.cr.body(n)
	if err != nil {
		return err
	}
	portal, _, ok := cstring(body)
	if !ok {
		return protocolError("invalid string in Execute message")
	}
	homeWrite := false
	if s.regions != nil {
		if handled, err := s.routeExecute(body, string(portal)); handled || err != nil {
			return err
		}
		homeWrite = s.regions.writes[string(portal)]
	}
	if p := s.rs.answered(portal); p != nil {
		// A statement forwarded since the Bind (a write of the same
		// pipeline, say) could change the answer: PostgreSQL answers then.
		if s.rs.clean() {
			return s.executeAnswer(p, body[len(portal)+1:])
		}
		if err := s.materialize(portal, p); err != nil {
			return err
		}
	}
	info := s.portal(portal)
	if info != nil && len(info.want) > 0 {
		if sets := s.ctx.needs(info.want); len(sets) > 0 {
			if err := s.inject(sets, false); err != nil {
				return err
			}
		}
	}
	e := entry{kind: kExecute, st: info, sent: time.Now(), homeWrite: homeWrite}
	e.ctx = info != nil && info.ctx
	if s.srv.observe != nil {
		e.obs = s.srv.observe(info)
	}
	s.readEntry(&e, info, s.rs.takeFill(portal, s.rs.clean()))
	if err := s.push(e); err != nil {
		return err
	}
	writeMessage(s.uw, 'E', body)
	if info != nil && info.resets {
		return s.reassume(false)
	}
	return nil
}

// describe forwards a Describe, unless it describes a portal bound on
// another region's cluster or answered from the cache.
func (s *session) describe(n int) error {
	body, err := s.cr.body(n)
	if err != nil {
		return err
	}
	if s.regions != nil {
		if handled, err := s.routeDescribe(body); handled || err != nil {
			return err
		}
	}
	e := entry{kind: kDescribe}
	if handled, err := s.describeRead(body, &e); handled || err != nil {
		return err
	}
	if err := s.push(e); err != nil {
		return err
	}
	writeMessage(s.uw, 'D', body)
	return nil
}

// closeMessage forgets a closed statement or portal.
func (s *session) closeMessage(n int) error {
	body, err := s.cr.body(n)
	if err != nil {
		return err
	}
	if len(body) < 2 {
		return protocolError("invalid Close message")
	}
	name, _, ok := cstring(body[1:])
	if !ok {
		return protocolError("invalid string in Close message")
	}
	if s.regions != nil {
		if handled, err := s.routeClose(body); handled || err != nil {
			return err
		}
	}
	switch body[0] {
	case 'S':
		s.setStmt(name, nil)
	case 'P':
		if s.rs.answered(name) != nil {
			return s.closeAnswer(name)
		}
		s.rs.dropPortal(name)
		if len(name) == 0 {
			s.unnamedPortal = nil
		} else {
			delete(s.portals, string(name))
		}
	}
	if err := s.push(entry{kind: kClose}); err != nil {
		return err
	}
	writeMessage(s.uw, 'C', body)
	return nil
}

// Large-object functions a FunctionCall message may call: libpq's lo_*
// and JDBC's LargeObjectManager use them. Built-in function OIDs are fixed
// across PostgreSQL versions. Any other function is refused: call it with
// SELECT, where its statement is analysed.
var fastpathFunctions = map[uint32]string{
	715: "lo_create", 764: "lo_import", 767: "lo_import", 765: "lo_export",
	952: "lo_open", 953: "lo_close", 954: "loread", 955: "lowrite", 956: "lo_lseek",
	957: "lo_creat", 958: "lo_tell", 964: "lo_unlink", 1004: "lo_truncate",
	3170: "lo_lseek64", 3171: "lo_tell64", 3172: "lo_truncate64",
}

// functionCall handles the FunctionCall message.
func (s *session) functionCall(n int) error {
	body, err := s.cr.body(n)
	if err != nil {
		return err
	}
	if len(body) < 4 {
		return protocolError("invalid FunctionCall message")
	}
	oid := binary.BigEndian.Uint32(body)
	if _, ok := fastpathFunctions[oid]; !ok {
		s.srv.metrics.refused.WithLabelValues(codeInsufficientPriv).Inc()
		e := &Error{Code: codeInsufficientPriv, Message: "function call message for function " +
			strconv.FormatUint(uint64(oid), 10) + " refused: only large-object functions may be " +
			"called this way through Privata", Hint: "Call the function with SELECT."}
		if err := s.push(entry{kind: kFunc, refusal: e.encode()}); err != nil {
			return err
		}
		s.writeQuery(standIn)
		return nil
	}
	if err := s.push(entry{kind: kFunc}); err != nil {
		return err
	}
	writeMessage(s.uw, 'F', body)
	return nil
}

func (s *session) writeQuery(text string) {
	var b builder
	b.begin('Q')
	b.str(text)
	b.finish()
	s.uw.Write(b.buf)
}

// inject sends set_config for the given context settings on Privata's own
// statement and portal, with bound values. With quiet (before a Query) the
// group ends with a Sync of its own and its errors are not relayed;
// otherwise (before an Execute) an error takes the place of the client's
// next response.
func (s *session) inject(sets []ctxSet, quiet bool) error {
	var sql strings.Builder
	sql.WriteString("SELECT ")
	for i := range sets {
		if i > 0 {
			sql.WriteString(", ")
		}
		sql.WriteString("pg_catalog.set_config($" + strconv.Itoa(2*i+1) + ", $" +
			strconv.Itoa(2*i+2) + ", false)")
	}
	var b builder
	b.begin('P')
	b.str(ownStmt)
	b.str(sql.String())
	b.i16(0)
	b.finish()
	b.begin('B')
	b.str(ownPortal)
	b.str(ownStmt)
	b.i16(0)
	b.i16(int16(2 * len(sets)))
	for _, set := range sets {
		for _, v := range []string{set.name, set.value} {
			b.i32(int32(len(v)))
			b.bytes([]byte(v))
		}
	}
	b.i16(0)
	b.finish()
	return s.injectGroup(&b, quiet, false, sets)
}

// reassume re-issues SET ROLE after a statement that resets the session
// (DISCARD ALL, RESET ALL). If it fails, the session ends.
func (s *session) reassume(simple bool) error {
	if simple {
		if err := s.push(entry{kind: kQuery, hidden: true, vital: true}); err != nil {
			return err
		}
		s.writeQuery(s.setRole)
		return nil
	}
	var b builder
	b.begin('P')
	b.str(ownStmt)
	b.str(s.setRole)
	b.i16(0)
	b.finish()
	b.begin('B')
	b.str(ownPortal)
	b.str(ownStmt)
	b.i16(0)
	b.i16(0)
	b.i16(0)
	b.finish()
	return s.injectGroup(&b, false, true, nil)
}

// injectGroup completes an injected Parse+Bind in b with Execute and the
// Closes (and a Sync when quiet), pushes their hidden entries and writes
// them.
func (s *session) injectGroup(b *builder, quiet, vital bool, sets []ctxSet) error {
	b.begin('E')
	b.str(ownPortal)
	b.i32(0)
	b.finish()
	b.begin('C')
	b.buf = append(b.buf, 'P')
	b.str(ownPortal)
	b.finish()
	b.begin('C')
	b.buf = append(b.buf, 'S')
	b.str(ownStmt)
	b.finish()
	kinds := []kind{kParse, kBind, kExecute, kClose, kClose}
	if quiet {
		b.begin('S')
		b.finish()
		kinds = append(kinds, kSync)
	}
	for _, k := range kinds {
		e := entry{kind: k, hidden: true, quiet: quiet, vital: vital}
		if k == kExecute && sets != nil {
			e.ctx, e.sets = true, sets
		}
		if err := s.push(e); err != nil {
			return err
		}
	}
	s.uw.Write(b.buf)
	return nil
}
