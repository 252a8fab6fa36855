package proxy

import (
	"encoding/json"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/privata/privata/policy"
	"github.com/privata/privata/regions"
	"github.com/privata/privata/rewrite"
)

// move carries out an UPDATE that moves a subject to a region another
// cluster stores, as the policy's on_region_change: move asks: its rows
// (the subject's and its child tables') are read at the old home through
// the application's views, inserted at the new home with the update's
// values, and deleted at the old home, all in one transaction committed
// on both clusters with two-phase commit (within the client's transaction
// block, at its COMMIT). The values pass through Privata's memory on their
// way to the subject's new home, never through a third cluster.
//
// A move by the extended protocol runs at its Bind (portal names it, and
// its Execute answers with the result); in the client's implicit
// transaction it commits there, so it may not share its cycle with writes
// to other clusters.
func (s *session) move(text string, an *rewrite.Analysis, params []regions.Param, r *routed,
	status byte, portal *string) error {
	m := &mover{s: s, implicit: status == 'I', portal: portal}
	hints, err := rewrite.RouteHints(text)
	if err != nil || len(hints) != 1 || len(an.Statements) != 1 {
		return m.refuse(&Error{Code: codeFeatureNotSupport,
			Message: "a message that moves a subject between regions must hold that one UPDATE"})
	}
	spec, err := s.srv.opts.Router.PlanMove(r.move, hints[0], params)
	if err != nil {
		return m.refuse(routeError(err))
	}
	if s.role.AccessTo(policy.Identity) != policy.Full || s.role.AccessTo(policy.Clinical) != policy.Full {
		return m.refuse(&Error{Code: codeInsufficientPriv, Message: fmt.Sprintf("moving a subject "+
			"copies all of its data: role %s needs full access to identity and clinical data",
			s.role.Name)})
	}
	router := s.srv.opts.Router
	from, to := router.Home(spec.From), router.Home(spec.To)
	if m.implicit && portal != nil && len(s.writers("")) > 0 {
		return m.refuse(s.twoRegionsError(append(s.writers(""), from, to)))
	}
	implicit := m.implicit
	for _, target := range []string{from, to} {
		if err := m.begin(target); err != nil {
			return m.fail(err)
		}
	}
	key := []byte(spec.Key)
	t := spec.Table
	row, err := m.run(from, fmt.Sprintf("SELECT pg_catalog.row_to_json(p)::text FROM %s p WHERE p.%s = $1",
		qualified(t), pgx.Identifier{t.Key}.Sanitize()), key)
	if err != nil {
		return m.fail(err)
	}
	if len(row) == 0 {
		m.rollback()
		return m.answer("UPDATE 0", status)
	}
	newRow, err := withValues(row[0], spec.Set)
	if err != nil {
		return m.fail(err)
	}
	children := make([][]byte, len(spec.Children))
	for i, c := range spec.Children {
		rows, err := m.run(from, fmt.Sprintf("SELECT COALESCE(pg_catalog.json_agg(pg_catalog.row_to_json(c)), "+
			"'[]')::text FROM %s c WHERE c.%s = $1", qualified(c), pgx.Identifier{c.Reference}.Sanitize()), key)
		if err != nil {
			return m.fail(err)
		}
		children[i] = rows[0]
	}
	steps := []struct {
		target, sql string
		arg         []byte
	}{{to, fmt.Sprintf("INSERT INTO %[1]s SELECT * FROM pg_catalog.json_populate_record(NULL::%[1]s, $1::json)",
		qualified(t)), newRow}}
	for i, c := range spec.Children {
		if string(children[i]) != "[]" {
			steps = append(steps, struct {
				target, sql string
				arg         []byte
			}{to, fmt.Sprintf("INSERT INTO %[1]s SELECT * FROM "+
				"pg_catalog.json_populate_recordset(NULL::%[1]s, $1::json)", qualified(c)), children[i]})
		}
	}
	for _, c := range spec.DeleteOrder() {
		steps = append(steps, struct {
			target, sql string
			arg         []byte
		}{from, fmt.Sprintf("DELETE FROM %s WHERE %s = $1", qualified(c),
			pgx.Identifier{c.Reference}.Sanitize()), key})
	}
	steps = append(steps, struct {
		target, sql string
		arg         []byte
	}{from, fmt.Sprintf("DELETE FROM %s WHERE %s = $1", qualified(t), pgx.Identifier{t.Key}.Sanitize()), key})
	for _, st := range steps {
		if _, err := m.run(st.target, st.sql, st.arg); err != nil {
			return m.fail(err)
		}
	}
	router.Dir.Remember(t, spec.Key, spec.To)
	if !implicit {
		// The client's COMMIT commits both with two-phase commit.
		return m.answer("UPDATE 1", 'T')
	}
	e, err := s.commitAll([]string{from, to})
	switch {
	case err != nil:
		return err
	case e != nil:
		m.begun = nil
		return m.fail(e)
	}
	return m.answer("UPDATE 1", 'I')
}

// qualified is a table's quoted schema-qualified name.
func qualified(t *policy.Table) string { return pgx.Identifier{t.Schema, t.Name}.Sanitize() }

// withValues sets columns of a row (JSON object) to text values.
func withValues(row []byte, set map[string]*string) ([]byte, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(row, &obj); err != nil {
		return nil, fmt.Errorf("read the subject's row: %w", err)
	}
	for col, v := range set {
		if _, ok := obj[col]; !ok {
			return nil, &Error{Code: "42703", Message: fmt.Sprintf("column %q does not exist", col)}
		}
		b, _ := json.Marshal(v)
		obj[col] = b
	}
	return json.Marshal(obj)
}

// done answers a statement Privata carried out itself with its command tag.
func (s *session) done(tag string, status byte) error {
	out := encodeMessage(&pgproto3.CommandComplete{CommandTag: []byte(tag)})
	out = append(out, encodeMessage(&pgproto3.ReadyForQuery{TxStatus: status})...)
	return s.toClient(out)
}

// mover runs the statements of a move on its two clusters.
type mover struct {
	s        *session
	implicit bool
	begun    []string // clusters where the move began a transaction
	portal   *string  // the portal of a move by the extended protocol
}

// answer answers the move with its command tag: a simple Query's at once,
// with ReadyForQuery; an extended-protocol move's Bind with BindComplete,
// its Execute later.
func (m *mover) answer(tag string, status byte) error {
	if m.portal == nil {
		return m.s.done(tag, status)
	}
	m.s.regions.moved[*m.portal] = tag
	return m.s.toClient(encodeMessage(&pgproto3.BindComplete{}))
}

// refuse refuses the move before anything ran.
func (m *mover) refuse(e *Error) error {
	if m.portal == nil {
		return m.s.refuseQuery(e)
	}
	return m.s.refuseBind(e)
}

// begin makes sure a transaction block is open on the cluster.
func (m *mover) begin(target string) error {
	s := m.s
	if target == s.srv.home {
		if !m.implicit {
			return nil
		}
		res, err := s.runOwnParams("BEGIN")
		if err != nil {
			return err
		}
		if res.err != nil {
			return errorFromBody(res.err)
		}
		m.begun = append(m.begun, target)
		return nil
	}
	sd, e := s.sideFor(target)
	if e != nil {
		return e
	}
	wasInTx := sd.inTx
	if err := s.prepareSide(sd, nil, 'T'); err != nil {
		return err
	}
	if !wasInTx {
		m.begun = append(m.begun, target)
	}
	return nil
}

// run runs one statement with one parameter and returns the first column
// of its rows; a statement that failed is an *Error.
func (m *mover) run(target, sql string, arg []byte) ([][]byte, error) {
	s := m.s
	var res hiddenResult
	var err error
	if target == s.srv.home {
		res, err = s.runOwnParams(sql, arg)
	} else if sd := s.regions.sides[target]; sd == nil {
		err = errSideGone
	} else {
		res, err = s.sideParams(sd, sql, arg)
		sd.wrote = true
	}
	if err != nil {
		return nil, err
	}
	if res.err != nil {
		e := errorFromBody(res.err)
		e.Message = "moving the subject to its new region failed in region " + s.regionOf(target) +
			": " + e.Message
		return nil, e
	}
	return res.rows, nil
}

// rollback ends the transactions the move began.
func (m *mover) rollback() {
	s := m.s
	for _, t := range m.begun {
		if t == s.srv.home {
			s.runOwnParams("ROLLBACK")
		} else if sd := s.regions.sides[t]; sd != nil {
			s.endSide(sd, "ROLLBACK")
		}
	}
}

// fail answers the move's error: a move the client's transaction block
// holds aborts it; one of its own rolls back.
func (m *mover) fail(err error) error {
	s := m.s
	if err == errSideGone {
		err = &Error{Code: codeConnectionFailure, Message: "the move was rolled back: a region's " +
			"connection was lost"}
	}
	e, ok := err.(*Error)
	if !ok {
		return err
	}
	if m.portal != nil {
		// The client's cycle goes on failing until its Sync: Privata skips
		// its messages, and the home connection fails its transaction block.
		m.rollback()
		s.regions.failed = true
		if !m.implicit {
			if err := s.abortHomeExtended(); err != nil {
				return err
			}
		}
		return s.toClient(e.encode())
	}
	if m.implicit {
		m.rollback()
	} else if err := s.abortHome(); err != nil {
		return err
	}
	status := byte('I')
	if !m.implicit {
		status = 'E'
	}
	b := append(e.encode(), encodeMessage(&pgproto3.ReadyForQuery{TxStatus: status})...)
	return s.toClient(b)
}

// abortHomeExtended fails the client's transaction block on the home
// connection in the middle of an extended-protocol cycle: a Bind of a
// statement that does not exist fails there, and the backend skips the
// rest of the cycle, as the client expects.
func (s *session) abortHomeExtended() error {
	if err := s.push(entry{kind: kBind, hidden: true, quiet: true}); err != nil {
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

// runOwnParams runs a statement with bound parameters on the home
// connection, in the extended protocol on Privata's own statement, ending
// with a Sync of its own, and returns its answer.
func (s *session) runOwnParams(sql string, args ...[]byte) (hiddenResult, error) {
	ch := make(chan hiddenResult, 1)
	b := ownExtended(sql, args...)
	for _, k := range []kind{kParse, kBind, kExecute, kClose, kClose, kSync} {
		e := entry{kind: k, hidden: true, quiet: true, result: ch, homeWrite: k == kExecute}
		if err := s.push(e); err != nil {
			return hiddenResult{}, err
		}
	}
	s.uw.Write(b)
	if err := s.uw.Flush(); err != nil {
		return hiddenResult{}, errUpstreamWrite
	}
	select {
	case r := <-ch:
		return r, nil
	case <-s.backExit:
		return hiddenResult{}, errUpstreamWrite
	}
}

// sideParams runs a statement with bound parameters on a side connection
// and returns its answer.
func (s *session) sideParams(sd *side, sql string, args ...[]byte) (hiddenResult, error) {
	sd.w.Write(ownExtended(sql, args...))
	if err := sd.w.Flush(); err != nil {
		s.lost(sd)
		return hiddenResult{}, errSideGone
	}
	var out hiddenResult
	for first := true; ; first = false {
		typ, body, err := s.sideMessage(sd, first)
		if err != nil {
			return out, err
		}
		switch typ {
		case 'E':
			out.err = append([]byte(nil), body...)
		case 'D':
			out.rows = append(out.rows, firstColumn(body))
		case 'Z':
			return out, nil
		}
	}
}

// ownExtended is Parse, Bind, Execute, Close and Sync of a statement with
// text parameters, on Privata's own statement and portal.
func ownExtended(sql string, args ...[]byte) []byte {
	var b builder
	b.begin('P')
	b.str(ownStmt)
	b.str(sql)
	b.i16(0)
	b.finish()
	b.begin('B')
	b.str(ownPortal)
	b.str(ownStmt)
	b.i16(0)
	b.i16(int16(len(args)))
	for _, a := range args {
		b.i32(int32(len(a)))
		b.bytes(a)
	}
	b.i16(0)
	b.finish()
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
	b.begin('S')
	b.finish()
	return b.buf
}
