package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/privata/privata/policy"
)

// connectTimeout bounds connecting upstream and taking on the role.
const connectTimeout = 30 * time.Second

// session is one client connection and its upstream connection.
type session struct {
	srv    *Server
	client net.Conn
	up     net.Conn
	// upReader reads upstream: pgconn's reader over up (see connect).
	upReader io.Reader
	cr, ur   *reader
	cw, uw   *bufio.Writer

	role      *policy.Role
	setRole   string // SET ROLE statement for the role, identifier quoted
	superuser bool   // whether the role is a superuser (is_superuser=on allowed)
	// escalated: the backend reported is_superuser=on for a role that is
	// not one, after DISCARD ALL; Privata's SET ROLE must clear it before
	// the next ReadyForQuery (back.go, watch). Upstream side only.
	escalated bool
	pid       uint32
	key       cancelKey // what the client was told
	realKey   []byte
	upTLS     *tls.Config
	upConfig  *pgconn.Config

	q           *queue
	ctx         *upstreamContext
	startupTail []byte // ParameterStatus messages for greet

	// Client side only:
	// searchPath resolves unqualified names: the session's search path,
	// then any schema an earlier one had (widenSearchPath); startupPath is
	// the path the session started with.
	searchPath, startupPath []string
	// catalogInstalled is set when the database has the catalog
	// emulations (catalog.go).
	catalogInstalled bool
	breakGlass       bool // declared with privata.break_glass
	// The context settings (client side): ctxStartup are the startup
	// values, ctxBase the session's own (startup, then SET), and ctxTagged
	// those that a sqlcommenter tag set for the previous statement, which
	// the next statement without that tag puts back to ctxBase.
	ctxStartup, ctxBase map[string]string
	ctxTagged           map[string]bool
	// ctxSnap is ctxBase when the transaction block began, for ROLLBACK.
	ctxSnap       map[string]string
	stmts         map[string]*stmtInfo
	portals       map[string]*stmtInfo
	unnamedStmt   *stmtInfo
	unnamedPortal *stmtInfo

	// copyWindow (client side): a Query or Execute was forwarded and no
	// CopyDone or CopyFail since; a Sync now may fall in a COPY FROM
	// STDIN, where the backend ignores it (entry.inCopy).
	copyWindow bool

	// Upstream side only:
	cur     entry // copy of the queue's head
	haveCur bool
	// copyIn is set at a CopyInResponse: the backend ignores Syncs until
	// the COPY ends, and dropIgnoredSyncs drops their entries then.
	copyIn  bool
	results int // statements of the current Query completed so far
	ctxDone int // context-changing entries popped in the current cycle

	sawFatal bool // a FATAL error came from upstream

	// Regions (route.go). cwMu orders the two sides' writes to the client;
	// txStatus is the upstream transaction status as the relay last saw it
	// ('I', 'T' or 'E'); homeWrote says the current transaction wrote in
	// the session's cluster; cycleError that the current cycle failed
	// there; own collects the answer of a statement Privata runs itself.
	cwMu       sync.Mutex
	txStatus   atomic.Uint32
	homeWrote  atomic.Bool
	cycleError atomic.Bool
	own        hiddenResult
	ownAnswer  []byte // the answer of a query of ownConn so far (ddl.go)
	regions    *regionState
	backExit   chan struct{} // closed when the upstream side ends
	rs         readState     // the read path's state (readstate.go)

	clientDone    atomic.Bool // the client side ended the session
	upstreamEnded atomic.Bool // the upstream side ended it
	killOnce      sync.Once
}

// open authenticates a client, connects upstream, takes on the client's
// role and sends the client the rest of its startup sequence.
func (srv *Server) open(nc net.Conn, st *startup) (*session, error) {
	if st.minor > 0 || len(st.unsupported) > 0 {
		msg := &pgproto3.NegotiateProtocolVersion{NewestMinorProtocol: 0,
			UnrecognizedOptions: st.unsupported}
		if _, err := nc.Write(encodeMessage(msg)); err != nil {
			return nil, err
		}
	}
	settings := st.settings()
	if err := checkSettings(settings); err != nil {
		return nil, err
	}
	if st.database != srv.database {
		return nil, fatalf(codeInvalidCatalog, "database %q does not exist", st.database)
	}
	role, err := srv.authenticate(nc, st.user)
	if err != nil {
		return nil, err
	}
	s := &session{srv: srv, client: nc, role: role, q: newQueue(),
		stmts: map[string]*stmtInfo{}, portals: map[string]*stmtInfo{}}
	s.setRole = "SET ROLE " + pgx.Identifier{role.PGRole}.Sanitize()
	if err := s.connect(st); err != nil {
		return nil, err
	}
	// The upstream connection starts outside a transaction block; the
	// relay learns its status from each ReadyForQuery.
	s.txStatus.Store('I')
	s.ctx = newUpstreamContext(settings)
	s.regions = srv.newRegionState(st)
	s.rs.init(s, settings)
	s.startupPath = parseSearchPath(`"$user", public`, role.PGRole)
	if v, ok := settings["search_path"]; ok {
		s.startupPath = parseSearchPath(v, role.PGRole)
	}
	s.searchPath = s.startupPath
	s.breakGlass = isOn(settings["privata.break_glass"])
	s.ctxStartup = map[string]string{}
	for _, g := range contextGUCs {
		s.ctxStartup[g] = settings[g]
	}
	s.ctxBase = maps.Clone(s.ctxStartup)
	if !srv.register(s) {
		s.up.Close()
		return nil, fatalf(codeAdminShutdown, "Privata is shutting down")
	}
	nc.SetDeadline(time.Time{})
	return s, nil
}

// connect opens the upstream connection with the client's parameters, takes
// on the role and relays the startup's ParameterStatus and BackendKeyData.
func (s *session) connect(st *startup) error {
	cfg := s.srv.upstream.Copy()
	params := make(map[string]string, len(cfg.RuntimeParams)+len(st.params))
	for k, v := range cfg.RuntimeParams {
		params[k] = v
	}
	for k, v := range st.params {
		params[k] = v
	}
	cfg.RuntimeParams = params
	// pgconn may have started its background reader during a slow write;
	// stopped, it can still be blocked in a read that will take the first
	// bytes upstream sends. Reading through it after the hijack returns
	// those bytes in order, then reads the connection directly.
	var upReader io.Reader
	build := cfg.BuildFrontend
	cfg.BuildFrontend = func(r io.Reader, w io.Writer) *pgproto3.Frontend {
		upReader = r
		return build(r, w)
	}
	ctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
	defer cancel()
	pc, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return upstreamError(s.srv.upstreamCluster, err)
	}
	if _, err := pc.Exec(ctx, s.setRole).ReadAll(); err != nil {
		pc.Close(context.Background())
		e := fatalf(codeInvalidAuthSpec, "cannot take on role %q for this session", s.role.PGRole)
		var pe *pgconn.PgError
		if errors.As(err, &pe) {
			e.Detail = pe.Message
		}
		return e
	}
	s.superuser = pc.ParameterStatus("is_superuser") == "on"
	if err := s.checkCatalog(ctx, pc); err != nil {
		pc.Close(context.Background())
		return upstreamError(s.srv.upstreamCluster, err)
	}
	if pc.ParameterStatus("standard_conforming_strings") != "on" {
		pc.Close(context.Background())
		return fatalf(codeFeatureNotSupport, "standard_conforming_strings must be on through Privata")
	}
	if enc := pc.ParameterStatus("client_encoding"); !readableEncoding(enc) {
		pc.Close(context.Background())
		e := fatalf(codeFeatureNotSupport, "client encoding %s is not supported through Privata", enc)
		e.Hint = "connect with client_encoding UTF8"
		return e
	}
	hc, err := pc.Hijack()
	if err != nil {
		pc.Close(context.Background())
		return upstreamError(s.srv.upstreamCluster, err)
	}
	s.up, s.pid, s.realKey = hc.Conn, hc.PID, hc.SecretKey
	s.upTLS, s.upConfig = hc.TLSConfig, hc.Config
	s.upReader = upReader
	s.up.SetDeadline(time.Time{})
	if tc, ok := s.up.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}

	var out []byte
	names := make([]string, 0, len(hc.ParameterStatuses))
	for k := range hc.ParameterStatuses {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		out = append(out, encodeMessage(&pgproto3.ParameterStatus{Name: k,
			Value: hc.ParameterStatuses[k]})...)
	}
	s.startupTail = out
	return nil
}

// greet sends the client its BackendKeyData (the real PID, Privata's own
// secret) and ReadyForQuery.
func (s *session) greet() error {
	var kb [4]byte
	binary.BigEndian.PutUint32(kb[:], s.key.secret)
	out := append(s.startupTail, encodeMessage(&pgproto3.BackendKeyData{ProcessID: s.pid,
		SecretKey: kb[:]})...)
	out = append(out, encodeMessage(&pgproto3.ReadyForQuery{TxStatus: 'I'})...)
	s.startupTail = nil
	_, err := s.client.Write(out)
	return err
}

// run relays until either side ends; it returns why the session ended (nil
// for a client's Terminate).
func (s *session) run() error {
	if err := s.greet(); err != nil {
		s.up.Close()
		s.client.Close()
		return err
	}
	s.cr = newReader(s.client, s.srv.cfg.Server.MaxMessageBytes)
	s.cw = bufio.NewWriterSize(s.client, bufSize)
	s.ur = newReader(s.upReader, 0)
	s.uw = bufio.NewWriterSize(s.up, bufSize)

	backDone := make(chan error, 1)
	s.backExit = make(chan struct{})
	go func() {
		err := s.back()
		close(s.backExit)
		backDone <- err
	}()
	err := s.front()
	if !errors.Is(err, errUpstreamWrite) && !s.upstreamEnded.Load() {
		s.clientDone.Store(true)
	}
	// The upstream connection is closed at once: a backend whose client is
	// gone rolls back and exits. One that is still running a statement
	// would notice only when it next writes, so that statement is cancelled.
	if s.q.pending() && !s.upstreamEnded.Load() {
		s.cancelUpstream()
	}
	s.up.Close()
	s.closeSides()
	s.q.close()
	backErr := <-backDone
	var pe *Error
	if errors.As(err, &pe) && !s.upstreamEnded.Load() {
		s.client.SetWriteDeadline(time.Now().Add(5 * time.Second))
		s.cw.Reset(s.client)
		s.cw.Write(pe.encode())
		s.cw.Flush()
		lingeringClose(s.client)
	}
	s.client.Close()
	if s.upstreamEnded.Load() || errors.Is(err, errUpstreamWrite) {
		return backErr
	}
	return err
}

// kill ends the session from outside (server shutdown).
func (s *session) kill() {
	s.killOnce.Do(func() {
		s.clientDone.Store(true)
		s.client.Close()
		if s.up != nil {
			s.up.Close()
		}
	})
}

// cancelUpstream sends a CancelRequest with the real key to the session's
// backend over a new connection, encrypted when the session's is.
func (s *session) cancelUpstream() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	addr := s.up.RemoteAddr()
	network, address := addr.Network(), addr.String()
	if network == "unix" {
		network, address = pgconn.NetworkAddress(s.upConfig.Host, s.upConfig.Port)
	}
	conn, err := s.upConfig.DialFunc(ctx, network, address)
	if err != nil {
		return
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if s.upTLS != nil {
		if _, err := conn.Write([]byte{0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f}); err != nil {
			return
		}
		var resp [1]byte
		if _, err := io.ReadFull(conn, resp[:]); err != nil || resp[0] != 'S' {
			return
		}
		tc := tls.Client(conn, s.upTLS.Clone())
		conn = tc
	}
	var b builder
	b.i32(int32(12 + len(s.realKey)))
	b.i32(codeCancel)
	b.i32(int32(s.pid))
	b.bytes(s.realKey)
	if _, err := conn.Write(b.buf); err != nil {
		return
	}
	// The server closes the connection when it has read the request.
	io.Copy(io.Discard, conn)
}

var errUpstreamWrite = errors.New("upstream connection lost")

func protocolError(format string, args ...any) *Error {
	return fatalf(codeProtocolViolation, format, args...)
}

func describeReadError(err error) error {
	var tl *errTooLong
	switch {
	case errors.As(err, &tl):
		return protocolError("%s", tl.Error())
	case errors.Is(err, errBadLength):
		return protocolError("invalid message length")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("client connection lost mid-message: %w", err)
	case errors.Is(err, io.EOF):
		return errors.New("client closed the connection without Terminate")
	}
	return fmt.Errorf("client connection: %w", err)
}
