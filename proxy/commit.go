package proxy

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/privata/privata/regions"
	"github.com/privata/privata/rewrite"
)

// control handles a transaction control statement (a simple Query) while a
// transaction block of the client is open on a side connection. ROLLBACK
// rolls the sides back and goes home; COMMIT commits the sides that only
// read, then the one cluster that wrote, or all that wrote with two-phase
// commit. Savepoints and the client's own two-phase commands are refused:
// they would apply to one cluster only.
func (s *session) control(text string) (handled, homeWrite bool, err error) {
	hints, herr := rewrite.RouteHints(text)
	if herr != nil || len(hints) != 1 {
		return false, false, nil
	}
	status, err := s.drain()
	if err != nil {
		return true, false, err
	}
	switch hints[0].Command {
	case "BEGIN":
		return false, false, nil
	case "ROLLBACK":
		s.endSides("ROLLBACK")
		return false, false, nil
	case "COMMIT":
	default:
		return true, false, s.refuseQuery(&Error{Code: codeFeatureNotSupport,
			Message: hints[0].Command + " is not supported in a transaction that spans regions",
			Hint:    "Commit or roll back the transaction first."})
	}
	if status == 'E' {
		s.endSides("ROLLBACK")
		return false, false, nil // the home connection answers ROLLBACK
	}
	writers := s.writers("")
	// The sides that only read commit first: nothing of theirs can fail.
	for t, sd := range s.regions.sides {
		if sd.inTx && !slices.Contains(writers, t) {
			s.endSide(sd, "COMMIT")
		}
	}
	switch {
	case len(writers) == 0 || len(writers) == 1 && writers[0] == s.srv.home:
		return false, false, nil
	case len(writers) == 1:
		sd := s.regions.sides[writers[0]]
		res, err := s.sideQuery(sd, "COMMIT", false)
		sd.inTx, sd.wrote = false, false
		if err != nil || res.err != nil {
			// The one cluster that wrote did not commit: neither does home.
			if _, err := s.runOwn("ROLLBACK"); err != nil {
				return true, false, err
			}
			e := &Error{Code: codeConnectionFailure, Message: "the transaction was rolled back: its " +
				"commit failed in region " + s.regionOf(sd.target)}
			if res.err != nil {
				e = errorFromBody(res.err)
			}
			return true, false, s.answer(e, true)
		}
		return false, false, nil
	}
	e, err := s.commitAll(writers)
	switch {
	case err != nil:
		return true, false, err
	case e != nil:
		return true, false, s.answer(e, true)
	}
	return true, false, s.done("COMMIT", 'I')
}

// endSides ends the transaction block on every side connection.
func (s *session) endSides(sql string) {
	for _, sd := range s.regions.sides {
		if sd.inTx {
			s.endSide(sd, sql)
		}
	}
}

func (s *session) endSide(sd *side, sql string) {
	s.sideQuery(sd, sql, false)
	sd.inTx, sd.wrote = false, false
	for name, p := range s.regions.portals {
		if p == sd {
			delete(s.regions.portals, name)
		}
	}
}

// commitAll commits a transaction that wrote to several clusters: every
// part is prepared, the decision is recorded, every part is committed (see
// package regions). It returns the error to answer the client with, nil
// when the transaction committed: once the decision to commit is
// recorded, a cluster that fails to commit its prepared part commits it
// when recovery runs. Home's part runs after a Sync of Privata's own, so
// that it may run in the middle of the client's extended-protocol cycle.
func (s *session) commitAll(writers []string) (*Error, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	gid := regions.NewGID(s.srv.home)
	run := func(target, sql string) (hiddenResult, error) {
		if target == s.srv.home {
			return s.runOwnParams(sql)
		}
		sd := s.regions.sides[target]
		if sd == nil {
			return hiddenResult{}, errSideGone
		}
		return s.sideQuery(sd, sql, false)
	}
	var prepared []string
	fail := func(e *Error) (*Error, error) {
		s.srv.rmetrics.twoPhase.WithLabelValues("rolled_back").Inc()
		for _, t := range writers {
			if slices.Contains(prepared, t) {
				run(t, regions.RollbackSQL(gid, t))
			} else {
				run(t, "ROLLBACK")
			}
		}
		s.endSides("ROLLBACK")
		return e, nil
	}
	for _, t := range writers {
		res, err := run(t, regions.PrepareSQL(gid, t))
		if err == errSideGone {
			err = &Error{Code: codeConnectionFailure, Message: "the transaction was rolled back: " +
				"the connection to region " + s.regionOf(t) + " was lost"}
		}
		if err != nil {
			if e, ok := err.(*Error); ok {
				return fail(e)
			}
			return nil, err
		}
		if res.err != nil {
			e := errorFromBody(res.err)
			e.Message = fmt.Sprintf("the transaction was rolled back: region %s could not prepare "+
				"its part: %s", s.regionOf(t), e.Message)
			return fail(e)
		}
		prepared = append(prepared, t)
	}
	commit, err := s.srv.opts.TwoPhase.Decide(ctx, gid)
	for _, sd := range s.regions.sides {
		sd.inTx, sd.wrote = false, false
	}
	switch {
	case err != nil:
		s.srv.rmetrics.twoPhase.WithLabelValues("unknown").Inc()
		return &Error{Code: regions.CodeResolutionUnknown, Message: "the outcome of this " +
			"transaction is not known yet: its decision could not be recorded in region " +
			s.regionOf(s.srv.home) + "; every region will commit or roll it back alike when " +
			"Privata's recovery next runs"}, nil
	case !commit:
		s.srv.rmetrics.twoPhase.WithLabelValues("rolled_back").Inc()
		for _, t := range writers {
			run(t, regions.RollbackSQL(gid, t))
		}
		return &Error{Code: "40001", Message: "the transaction was rolled back: recovery " +
			"decided so while it was in doubt"}, nil
	}
	done := true
	for _, t := range writers {
		if res, err := run(t, regions.CommitSQL(gid, t)); err != nil || res.err != nil {
			done = false
		}
	}
	if done {
		s.srv.opts.TwoPhase.Forget(ctx, gid)
	}
	s.srv.rmetrics.twoPhase.WithLabelValues("committed").Inc()
	s.txStatus.Store('I')
	return nil, nil
}

// errorFromBody reads an ErrorResponse body into an Error.
func errorFromBody(body []byte) *Error {
	var er pgproto3.ErrorResponse
	if err := er.Decode(body); err != nil {
		return &Error{Code: "XX000", Message: "malformed error from a cluster"}
	}
	return &Error{Code: er.Code, Message: er.Message, Detail: er.Detail, Hint: er.Hint}
}
