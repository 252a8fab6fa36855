package proxy

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/privata/privata/policy"
)

// Authentication request codes (the Authentication* messages).
const (
	authOK           = 0
	authSASL         = 10
	authSASLContinue = 11
	authSASLFinal    = 12
)

// authenticate runs the configured authentication method with the client,
// then maps the user to a policy role. On success the client has been sent
// AuthenticationOk.
func (srv *Server) authenticate(nc net.Conn, name string) (*policy.Role, error) {
	var role *policy.Role
	if u := srv.users[name]; u != nil {
		role = u.role
	}
	switch srv.cfg.Auth.Method {
	case "trust":
	case "scram":
		var v *Verifier
		if u := srv.users[name]; u != nil {
			v = u.verifier
		}
		if err := srv.scram(nc, name, v); err != nil {
			return nil, err
		}
	case "auth_query":
		v, err := srv.lookupVerifier(name)
		if err != nil {
			return nil, err
		}
		if err := srv.scram(nc, name, v); err != nil {
			return nil, err
		}
	default:
		return nil, fatalf(codeInvalidAuthSpec, "authentication method %q is not supported",
			srv.cfg.Auth.Method)
	}
	if role == nil {
		role = srv.pol.RoleForPG(name)
	}
	if role == nil {
		role = srv.defRole
	}
	if role == nil {
		return nil, fatalf(codeInvalidAuthSpec, "user %q has no policy role: add it to auth.users "+
			"or set auth.default_role", name)
	}
	if _, err := nc.Write(authMessage(authOK, nil)); err != nil {
		return nil, err
	}
	return role, nil
}

// scram runs a SCRAM-SHA-256 exchange. A nil verifier (unknown user) runs
// the exchange with a made-up one and fails at the end.
func (srv *Server) scram(nc net.Conn, name string, v *Verifier) error {
	s := &scramServer{v: v}
	if v == nil {
		s.v, s.fake = fakeVerifier(srv.fakeSecret, name), true
	}
	var mechs builder
	mechs.str("SCRAM-SHA-256")
	mechs.buf = append(mechs.buf, 0)
	if _, err := nc.Write(authMessage(authSASL, mechs.buf)); err != nil {
		return err
	}
	body, err := readAuthMessage(nc)
	if err != nil {
		return err
	}
	mech, rest, ok := cstring(body)
	if !ok || len(rest) < 4 {
		return fatalf(codeProtocolViolation, "malformed SASLInitialResponse message")
	}
	if string(mech) != "SCRAM-SHA-256" {
		return fatalf(codeProtocolViolation, "client selected an invalid SASL authentication mechanism")
	}
	n := int32(binary.BigEndian.Uint32(rest))
	if n < 0 || int(n) != len(rest)-4 {
		return fatalf(codeProtocolViolation, "malformed SASLInitialResponse message")
	}
	out, err := s.first(rest[4:])
	if err != nil {
		return scramError(name, err)
	}
	if _, err := nc.Write(authMessage(authSASLContinue, out)); err != nil {
		return err
	}
	body, err = readAuthMessage(nc)
	if err != nil {
		return err
	}
	out, err = s.final(body)
	if err != nil {
		return scramError(name, err)
	}
	_, err = nc.Write(authMessage(authSASLFinal, out))
	return err
}

func scramError(name string, err error) error {
	var se errSCRAM
	if errors.As(err, &se) {
		return fatalf(codeProtocolViolation, "%s", se.Error())
	}
	if errors.Is(err, errBadPassword) {
		return fatalf(codeInvalidPassword, "password authentication failed for user %q", name)
	}
	return err
}

// readAuthMessage reads a password-family ('p') message from the client.
func readAuthMessage(r io.Reader) ([]byte, error) {
	var h [5]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return nil, errClientGone
	}
	if h[0] != 'p' {
		return nil, fatalf(codeProtocolViolation, "expected SASL response, got message type %q", h[0])
	}
	n := int(binary.BigEndian.Uint32(h[1:]))
	if n < 4 || n > maxAuthBytes {
		return nil, fatalf(codeProtocolViolation, "invalid SASL response length")
	}
	body := make([]byte, n-4)
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, errClientGone
	}
	return body, nil
}

// errClientGone is a client that hung up during startup, as psql does when it
// learns that a password is needed.
var errClientGone = errors.New("client closed the connection during startup")

func authMessage(code int32, data []byte) []byte {
	var b builder
	b.begin('R')
	b.i32(code)
	b.bytes(data)
	b.finish()
	return b.buf
}

// lookupVerifier runs auth.query upstream for a user's verifier. A user
// without one, or with a non-SCRAM one, gets nil: authentication will fail.
func (srv *Server) lookupVerifier(name string) (*Verifier, error) {
	srv.authPoolOnce.Do(func() {
		cluster := srv.cfg.Auth.QueryCluster
		if cluster == "" {
			cluster = srv.cfg.ClusterNames()[0]
		}
		pc, err := pgxpool.ParseConfig(string(srv.cfg.Clusters[cluster].URL))
		if err != nil {
			srv.authPoolErr = fmt.Errorf("cluster %s: url does not parse", cluster)
			return
		}
		pc.MaxConns = 4
		srv.authPool, srv.authPoolErr = pgxpool.NewWithConfig(context.Background(), pc)
	})
	if srv.authPoolErr != nil {
		return nil, srv.authPoolErr
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var text *string
	err := srv.authPool.QueryRow(ctx, srv.cfg.Auth.Query, name).Scan(&text)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fatalf(codeConnectionFailure, "authentication lookup failed: %v", err)
	}
	if text == nil {
		return nil, nil
	}
	v, err := ParseVerifier(*text)
	if err != nil {
		return nil, nil
	}
	return v, nil
}

// encodeMessage encodes a pgproto3 message; ours never fail to encode.
func encodeMessage(m pgproto3.BackendMessage) []byte {
	b, err := m.Encode(nil)
	if err != nil {
		panic(err)
	}
	return b
}
