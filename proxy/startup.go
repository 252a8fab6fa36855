package proxy

import (
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"strings"
)

// Request codes of the untyped packets a client may open with.
const (
	codeCancel   = 80877102
	codeSSL      = 80877103
	codeGSSENC   = 80877104
	protocol30   = 3 << 16
	maxStartup   = 10000 // PostgreSQL's MAX_STARTUP_PACKET_LENGTH
	maxAuthBytes = 8192
)

// startup is what a client asked for in its StartupMessage.
type startup struct {
	user     string
	database string
	// params are the other parameters, passed upstream as they were sent.
	params map[string]string
	// unsupported lists protocol options (_pq_.*) Privata does not know;
	// minor is the protocol minor version asked for.
	unsupported []string
	minor       int
	tls         bool
}

// cancelRequest is a CancelRequest's key.
type cancelKey struct {
	pid    uint32
	secret uint32
}

// handshake reads the packets a client opens with until its StartupMessage,
// answering SSLRequest and GSSENCRequest. A CancelRequest is returned as a
// key with a nil startup. Reads are unbuffered so that nothing sent before a
// TLS handshake is read as if it came after it.
func (srv *Server) handshake(nc net.Conn) (net.Conn, *startup, *cancelKey, error) {
	isTLS := false
	for attempt := 0; attempt < 3; attempt++ {
		body, err := readStartupPacket(nc)
		if err != nil {
			return nc, nil, nil, err
		}
		code := binary.BigEndian.Uint32(body)
		switch {
		case code == codeSSL && len(body) == 4 && !isTLS:
			if srv.tls == nil {
				if _, err := nc.Write([]byte{'N'}); err != nil {
					return nc, nil, nil, err
				}
				continue
			}
			if _, err := nc.Write([]byte{'S'}); err != nil {
				return nc, nil, nil, err
			}
			tc := tls.Server(nc, srv.tls)
			if err := tc.Handshake(); err != nil {
				return nc, nil, nil, fmt.Errorf("tls handshake: %w", err)
			}
			nc, isTLS = tc, true
		case code == codeGSSENC && len(body) == 4 && !isTLS:
			if _, err := nc.Write([]byte{'N'}); err != nil {
				return nc, nil, nil, err
			}
		case code == codeCancel && len(body) == 12:
			return nc, nil, &cancelKey{pid: binary.BigEndian.Uint32(body[4:]),
				secret: binary.BigEndian.Uint32(body[8:])}, nil
		case code>>16 == 3:
			st, err := parseStartup(body[4:])
			if err != nil {
				return nc, nil, nil, err
			}
			st.minor = int(code & 0xffff)
			st.tls = isTLS
			return nc, st, nil, nil
		case code == codeSSL || code == codeGSSENC || code == codeCancel:
			return nc, nil, nil, fatalf(codeProtocolViolation, "unexpected request code %d", code)
		default:
			return nc, nil, nil, fatalf(codeProtocolViolation,
				"unsupported frontend protocol %d.%d: Privata supports 3.0", code>>16, code&0xffff)
		}
	}
	return nc, nil, nil, fatalf(codeProtocolViolation, "too many negotiation requests")
}

// readStartupPacket reads one length-prefixed packet without a type byte.
func readStartupPacket(r io.Reader) ([]byte, error) {
	var h [4]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fatalf(codeProtocolViolation, "incomplete startup packet")
		}
		return nil, err
	}
	n := int(binary.BigEndian.Uint32(h[:]))
	if n < 8 || n > maxStartup {
		return nil, fatalf(codeProtocolViolation, "invalid length of startup packet")
	}
	body := make([]byte, n-4)
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, fatalf(codeProtocolViolation, "incomplete startup packet")
	}
	return body, nil
}

// parseStartup reads the name/value pairs of a StartupMessage.
func parseStartup(b []byte) (*startup, error) {
	st := &startup{params: map[string]string{}}
	bad := fatalf(codeProtocolViolation, "invalid startup packet layout: expected terminator as "+
		"last byte")
	for {
		name, rest, ok := cstring(b)
		if !ok {
			return nil, bad
		}
		if len(name) == 0 {
			if len(rest) != 0 {
				return nil, bad
			}
			break
		}
		value, rest2, ok := cstring(rest)
		if !ok {
			return nil, bad
		}
		b = rest2
		n, v := string(name), string(value)
		switch {
		case n == "user":
			st.user = v
		case n == "database":
			st.database = v
		case n == "replication":
			return nil, fatalf(codeFeatureNotSupport,
				"replication connections are not supported through Privata")
		case strings.HasPrefix(n, "_pq_."):
			st.unsupported = append(st.unsupported, n)
		default:
			st.params[n] = v
		}
	}
	if st.user == "" {
		return nil, fatalf(codeInvalidAuthSpec, "no PostgreSQL user name specified in startup packet")
	}
	if st.database == "" {
		st.database = st.user
	}
	sort.Strings(st.unsupported)
	return st, nil
}

// settings returns the -c name=value settings of the startup parameters:
// the options parameter's and the parameters given directly. Names are
// lower-cased with dashes as underscores, as PostgreSQL reads them.
func (st *startup) settings() map[string]string {
	out := map[string]string{}
	for k, v := range st.params {
		if k != "options" {
			out[gucName(k)] = v
		}
	}
	args := splitOptions(st.params["options"])
	for i := 0; i < len(args); i++ {
		a := args[i]
		var kv string
		switch {
		case a == "-c" && i+1 < len(args):
			i++
			kv = args[i]
		case strings.HasPrefix(a, "-c"):
			kv = a[2:]
		case strings.HasPrefix(a, "--"):
			kv = a[2:]
		default:
			continue
		}
		if k, v, ok := strings.Cut(kv, "="); ok {
			out[gucName(k)] = v
		}
	}
	return out
}

func gucName(s string) string { return strings.ReplaceAll(strings.ToLower(s), "-", "_") }

// splitOptions splits the options startup parameter as PostgreSQL's
// pg_split_opts does: on whitespace, with backslash escaping the next byte.
func splitOptions(s string) []string {
	var out []string
	var cur strings.Builder
	in := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v':
			if in {
				out = append(out, cur.String())
				cur.Reset()
				in = false
			}
		case c == '\\' && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
			in = true
		default:
			cur.WriteByte(c)
			in = true
		}
	}
	if in {
		out = append(out, cur.String())
	}
	return out
}

// checkSettings refuses startup settings that would change the session's
// role or break Privata's reading of statements.
func checkSettings(set map[string]string) *Error {
	for _, name := range []string{"role", "session_authorization"} {
		if _, ok := set[name]; ok {
			return fatalf(codeInsufficientPriv, "setting %s at startup is not allowed through Privata: "+
				"the session takes on the role the policy maps its user to", name)
		}
	}
	if v, ok := set["standard_conforming_strings"]; ok && !isOn(v) {
		return fatalf(codeFeatureNotSupport,
			"standard_conforming_strings must stay on through Privata")
	}
	return nil
}

func isOn(v string) bool {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "on", "true", "yes", "1", "t", "y", "tru", "tr", "ye":
		return true
	}
	return false
}
