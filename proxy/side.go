package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/privata/privata/regions"
)

// Side connections: a session's connections to other regions' clusters
// than its own, opened on first use and kept up to date with the
// session's settings, role and transaction block.

// side is a session's connection to another region's cluster.
type side struct {
	target string
	conn   net.Conn
	r      *reader
	w      *bufio.Writer
	pid    uint32
	key    []byte
	tls    *tls.Config
	cfg    *pgconn.Config
	// stmts are the statements prepared on it: name to Parse body.
	stmts map[string]string
	inTx  bool // a transaction block of the client is open on it
	wrote bool // it wrote in that transaction
	sets  int  // how many of the session's SET statements it has run
	ctx   map[string]string
}

// regionOf names the region(s) a cluster stores, for messages.
func (s *session) regionOf(target string) string {
	if p := s.srv.opts.Router.Topo.Peer(target); p != nil {
		return p.Server
	}
	return target
}

// sideFor returns the session's connection to cluster target, opening it.
func (s *session) sideFor(target string) (*side, *Error) {
	if sd := s.regions.sides[target]; sd != nil {
		return sd, nil
	}
	cfg := s.srv.upstreams[target].Copy()
	params := make(map[string]string, len(cfg.RuntimeParams)+len(s.regions.params))
	for k, v := range cfg.RuntimeParams {
		params[k] = v
	}
	for k, v := range s.regions.params {
		params[k] = v
	}
	cfg.RuntimeParams = params
	var upReader io.Reader
	build := cfg.BuildFrontend
	cfg.BuildFrontend = func(r io.Reader, w io.Writer) *pgproto3.Frontend {
		upReader = r
		return build(r, w)
	}
	ctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
	defer cancel()
	region := s.regionOf(target)
	pc, err := pgconn.ConnectConfig(ctx, cfg)
	outcome := "opened"
	if err != nil {
		outcome = "failed"
	}
	s.srv.rmetrics.sides.WithLabelValues(region, outcome).Inc()
	if err != nil {
		var pe *pgconn.PgError
		if errors.As(err, &pe) {
			return nil, &Error{Code: pe.Code, Message: fmt.Sprintf("region %s: %s", region, pe.Message)}
		}
		return nil, routeError(regions.Unreachable(region, target, nil))
	}
	if _, err := pc.Exec(ctx, s.setRole).ReadAll(); err != nil {
		pc.Close(context.Background())
		return nil, &Error{Code: codeInvalidAuthSpec, Message: fmt.Sprintf("cannot take on role %q in "+
			"region %s", s.role.PGRole, region)}
	}
	if pc.ParameterStatus("standard_conforming_strings") != "on" {
		pc.Close(context.Background())
		return nil, &Error{Code: codeFeatureNotSupport, Message: "standard_conforming_strings must be " +
			"on in region " + region}
	}
	if enc := pc.ParameterStatus("client_encoding"); !readableEncoding(enc) {
		pc.Close(context.Background())
		return nil, &Error{Code: codeFeatureNotSupport, Message: "client encoding " + enc +
			" is not supported through Privata (region " + region + ")"}
	}
	hc, err := pc.Hijack()
	if err != nil {
		pc.Close(context.Background())
		return nil, routeError(regions.Unreachable(region, target, nil))
	}
	sd := &side{target: target, conn: hc.Conn, pid: hc.PID, key: hc.SecretKey, tls: hc.TLSConfig,
		cfg: hc.Config, stmts: map[string]string{}, ctx: map[string]string{}}
	sd.conn.SetDeadline(time.Time{})
	sd.r = newReader(upReader, 0)
	sd.w = bufio.NewWriterSize(sd.conn, bufSize)
	s.regions.sides[target] = sd
	return sd, nil
}

// closeSides closes every side connection (the session ends).
func (s *session) closeSides() {
	if s.regions == nil {
		return
	}
	for _, sd := range s.regions.sides {
		sd.conn.Close()
	}
}

// lost forgets a side connection that failed, and returns the client's
// error for it.
func (s *session) lost(sd *side) *Error {
	sd.conn.Close()
	delete(s.regions.sides, sd.target)
	delete(s.regions.pending, sd)
	for name, p := range s.regions.portals {
		if p == sd {
			delete(s.regions.portals, name)
		}
	}
	region := s.regionOf(sd.target)
	return &Error{Code: codeConnectionFailure, Message: fmt.Sprintf("connection to region %s "+
		"(cluster %s) lost", region, sd.target), Hint: "Statements for other regions keep working."}
}

// errSideGone is a side connection found closed (or ending with a FATAL
// error) before it answered anything: the server went away while the
// connection was idle, and the statement did not run there.
var errSideGone = errors.New("side connection gone")

// sideMessage reads a side connection's next message. A failed read, or a
// FATAL error, loses the side: errSideGone when nothing was read before
// (first), else the client's error for a lost connection.
func (s *session) sideMessage(sd *side, first bool) (byte, []byte, error) {
	typ, n, err := sd.r.next()
	var body []byte
	if err == nil {
		body, err = sd.r.body(n)
	}
	if err == nil && !(typ == 'E' && isFatal(body)) {
		return typ, body, nil
	}
	lost := s.lost(sd)
	if first {
		return 0, nil, errSideGone
	}
	return 0, nil, lost
}

// sideQuery runs a simple-protocol statement on a side connection and
// relays its answers (its ReadyForQuery included) to the client, or, when
// relay is false, returns them: the error, and the first column of rows.
func (s *session) sideQuery(sd *side, sql string, relay bool) (hiddenResult, error) {
	var b builder
	b.begin('Q')
	b.str(sql)
	b.finish()
	sd.w.Write(b.buf)
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
		switch {
		case typ == 'E':
			out.err = append([]byte(nil), body...)
		case typ == 'D' && !relay:
			out.rows = append(out.rows, firstColumn(body))
		}
		if relay && typ != 'S' && typ != 'K' {
			s.cwMu.Lock()
			writeMessage(s.cw, typ, body)
			s.cwMu.Unlock()
		}
		if typ == 'Z' {
			if relay {
				s.cwMu.Lock()
				err := s.cw.Flush()
				s.cwMu.Unlock()
				if err != nil {
					return out, s.clientLost(err)
				}
			}
			return out, nil
		}
	}
}

// onSide runs fn on the session's connection to cluster target, brought
// up to date first (prepareSide). A connection found gone before it
// answered anything, outside a transaction block, is opened again once:
// the server restarted while it was idle.
func (s *session) onSide(target string, tags map[string]string, status byte,
	fn func(sd *side) error) error {
	for attempt := 0; ; attempt++ {
		sd, e := s.sideFor(target)
		if e != nil {
			return e
		}
		wasInTx := sd.inTx
		err := s.prepareSide(sd, tags, status)
		if err == nil {
			err = fn(sd)
		}
		switch {
		case err == errSideGone && !wasInTx && attempt == 0:
			continue
		case err == errSideGone:
			region := s.regionOf(target)
			return &Error{Code: codeConnectionFailure, Message: fmt.Sprintf("connection to region %s "+
				"(cluster %s) lost", region, target), Hint: "Statements for other regions keep working."}
		}
		return err
	}
}

// prepareSide brings a side connection up to date with the session before
// a statement runs there: the SET statements the client ran, Privata's
// context values, and a transaction block when the client is in one.
func (s *session) prepareSide(sd *side, tags map[string]string, status byte) error {
	for ; sd.sets < len(s.regions.sets); sd.sets++ {
		if _, err := s.sideQuery(sd, s.regions.sets[sd.sets], false); err != nil {
			return err
		}
	}
	want := map[string]string{}
	for g, v := range s.regions.declared {
		want[g] = v
	}
	for k, v := range tags {
		if g, ok := tagGUC[k]; ok {
			want[g] = v
		}
	}
	for _, g := range contextGUCs {
		v, ok := want[g]
		if !ok || sd.ctx[g] == v {
			continue
		}
		if _, err := s.sideParams(sd, "SELECT pg_catalog.set_config($1, $2, false)", []byte(g),
			[]byte(v)); err != nil {
			return err
		}
		sd.ctx[g] = v
	}
	if status == 'T' && !sd.inTx {
		begin := s.regions.begin
		if begin == "" {
			begin = "BEGIN"
		}
		r, err := s.sideQuery(sd, begin, false)
		if err != nil {
			return err
		}
		if r.err != nil {
			return &Error{Code: errorCode(r.err), Message: "could not begin the transaction in region " +
				s.regionOf(sd.target)}
		}
		sd.inTx = true
	}
	return nil
}
