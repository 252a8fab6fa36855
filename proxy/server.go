package proxy

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/privata/privata/cache"
	"github.com/privata/privata/config"
	"github.com/privata/privata/policy"
	"github.com/privata/privata/regions"
	"github.com/privata/privata/rewrite"
	"github.com/privata/privata/storage"
)

// authTimeout bounds the time from accept to a finished startup, as
// PostgreSQL's authentication_timeout does.
const authTimeout = time.Minute

// Options are the parts of a Server that its caller wires in.
type Options struct {
	// Registerer receives the server's metrics; nil leaves them unregistered.
	Registerer prometheus.Registerer
	// OnSessionEnd, when set, is called as each client connection ends, with
	// the reason (nil for an orderly Terminate). The server logs through it.
	OnSessionEnd func(SessionInfo, error)
	// Router routes statements between the regions' clusters (package
	// regions); nil when the configuration has one cluster. TwoPhase keeps
	// the decisions of transactions that write to several clusters.
	Router   *regions.Router
	TwoPhase *regions.TwoPhase
	// OnTransfer, when set, is called for every statement that reads
	// another region's data under a transfer of the policy, before it runs:
	// the server audits it as a transfer.
	OnTransfer func(Transfer)
	// Audit, when set, returns the writer of the read audit records of the
	// statements run on a cluster (see readpath.go); nil for a cluster
	// whose reads are not audited.
	Audit func(cluster string) ReadAuditor
	// Cache, when set, answers cacheable reads and is invalidated by the
	// writes sessions make through the server.
	Cache *cache.Cache
	// Targets are the clusters' split storages (storage.Targets); nil
	// has the server work them out from its configuration.
	Targets []storage.Target
}

// SessionInfo describes a client connection for logs. It holds no SQL and
// no data.
type SessionInfo struct {
	Remote   string
	User     string
	Role     string // policy role
	Database string
	Cluster  string
	PID      uint32 // upstream backend
	Duration time.Duration
}

// Server accepts client connections and runs a session for each.
type Server struct {
	cfg      *config.Config
	pol      *policy.Policy
	opts     Options
	tls      *tls.Config
	users    map[string]*user
	defRole  *policy.Role
	database string
	metrics  *metrics

	analyzer  *rewrite.Analyzer
	rewriter  *rewrite.Rewriter
	decisions map[rewrite.Kind][2]prometheus.Counter // allow, refuse

	upstreamCluster string
	upstream        *pgconn.Config
	// storage is the split storage of the sessions' cluster, which DDL
	// through Privata changes (ddl.go); nil when it is not known.
	storage *storage.Target

	// Regions: the sessions' region, the cluster (storage target) that
	// stores it, and every cluster's session connection.
	region    string
	home      string
	upstreams map[string]*pgconn.Config
	rmetrics  *regionMetrics

	fakeSecret []byte

	// observe, when set, attaches an observer to each client statement's
	// entry (Query and Execute).
	observe func(*stmtInfo) observer
	// read is the audit of reads and the cache; nil when neither is on.
	read *readPath
	// splitSeen is set once a session found split tables upstream or ran
	// DDL on a classified table: catalog queries are emulated from then on
	// (catalog.go).
	splitSeen atomic.Bool

	mu       sync.Mutex
	sessions map[*session]struct{}
	conns    map[net.Conn]struct{} // accepted connections, until their goroutine ends
	cancels  map[cancelKey]*session
	closed   bool
	wg       sync.WaitGroup

	authPool     *pgxpool.Pool
	authPoolOnce sync.Once
	authPoolErr  error
}

// user is a client user from the configuration.
type user struct {
	verifier *Verifier
	role     *policy.Role
}

// New checks the configuration against the policy and returns a server.
func New(cfg *config.Config, pol *policy.Policy, opts Options) (*Server, error) {
	srv := &Server{
		cfg: cfg, pol: pol, opts: opts,
		users:    map[string]*user{},
		sessions: map[*session]struct{}{},
		conns:    map[net.Conn]struct{}{},
		cancels:  map[cancelKey]*session{},
	}
	srv.fakeSecret = make([]byte, 32)
	if _, err := rand.Read(srv.fakeSecret); err != nil {
		return nil, err
	}
	if cfg.Server.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.Server.TLSCert, cfg.Server.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("server tls: %w", err)
		}
		srv.tls = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	for name, u := range cfg.Auth.Users {
		v, err := ParseVerifier(string(u.Password))
		if err != nil {
			return nil, fmt.Errorf("auth: user %s: %w", name, err)
		}
		r := pol.Role(u.Role)
		if r == nil {
			return nil, fmt.Errorf("auth: user %s: role %q is not a policy role", name, u.Role)
		}
		srv.users[name] = &user{verifier: v, role: r}
	}
	if cfg.Auth.DefaultRole != "" {
		if srv.defRole = pol.Role(cfg.Auth.DefaultRole); srv.defRole == nil {
			return nil, fmt.Errorf("auth: default_role %q is not a policy role", cfg.Auth.DefaultRole)
		}
	}
	srv.upstreamCluster = srv.sessionCluster()
	if pol.Region(srv.region) == nil {
		return nil, fmt.Errorf("server: region %q is not a region of the policy", srv.region)
	}
	if _, ok := cfg.Clusters[srv.upstreamCluster]; !ok {
		return nil, fmt.Errorf("policy region %s: cluster %q is not in the configuration",
			srv.region, srv.upstreamCluster)
	}
	up, err := pgconn.ParseConfig(cfg.SessionURL(srv.upstreamCluster))
	if err != nil {
		// The URL may hold a password: name the cluster, not the URL.
		return nil, fmt.Errorf("cluster %s: session url does not parse", srv.upstreamCluster)
	}
	srv.upstream = up
	srv.database = up.Database
	if err := srv.initRegions(); err != nil {
		return nil, err
	}
	srv.initStorage()
	srv.metrics = newMetrics(opts.Registerer)
	srv.initAnalysis()
	if srv.read, err = newReadPath(srv); err != nil {
		return nil, err
	}
	return srv, nil
}

// initStorage finds the storage target of the sessions' cluster.
func (srv *Server) initStorage() {
	targets := srv.opts.Targets
	if targets == nil {
		targets, _ = storage.Targets(srv.cfg, srv.pol)
	}
	for i, t := range targets {
		if slices.Contains(strings.Split(t.Name, "+"), srv.upstreamCluster) {
			srv.storage = &targets[i]
		}
	}
}

// sessionCluster names the cluster sessions connect to: that of the
// instance's region (server.region, by default the policy's default
// region). Package regions routes statements elsewhere.
func (srv *Server) sessionCluster() string {
	srv.region = srv.cfg.Server.Region
	if srv.region == "" {
		srv.region = srv.pol.DefaultRegion()
	}
	r := srv.pol.Region(srv.region)
	if r == nil {
		return ""
	}
	return r.ClusterFor(policy.Other)
}

// Serve accepts connections on l until ctx is done or Close is called, then
// closes every session and returns.
func (srv *Server) Serve(ctx context.Context, l net.Listener) error {
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()
	defer srv.Close()
	for {
		nc, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil || srv.isClosed() {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			return fmt.Errorf("accept: %w", err)
		}
		if !srv.track(nc) {
			nc.Close()
			return nil
		}
		go func() {
			defer srv.wg.Done()
			srv.serveConn(nc)
		}()
	}
}

// track counts a new connection's goroutine and remembers the connection
// until that goroutine ends, so that Close can end it even mid-startup.
func (srv *Server) track(nc net.Conn) bool {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if srv.closed {
		return false
	}
	srv.wg.Add(1)
	srv.conns[nc] = struct{}{}
	return true
}

func (srv *Server) untrack(nc net.Conn) {
	srv.mu.Lock()
	delete(srv.conns, nc)
	srv.mu.Unlock()
}

func (srv *Server) isClosed() bool {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	return srv.closed
}

// Close ends every session and waits for their goroutines.
func (srv *Server) Close() error {
	srv.mu.Lock()
	srv.closed = true
	for s := range srv.sessions {
		s.kill()
	}
	for nc := range srv.conns {
		nc.Close()
	}
	srv.mu.Unlock()
	srv.wg.Wait()
	if srv.authPool != nil {
		srv.authPool.Close()
	}
	return nil
}

// serveConn runs one client connection from its first byte to its end.
func (srv *Server) serveConn(nc net.Conn) {
	defer srv.untrack(nc)
	if tc, ok := nc.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	start := time.Now()
	nc.SetDeadline(start.Add(authTimeout))
	nc, st, ck, err := srv.handshake(nc)
	if ck != nil {
		srv.cancel(*ck)
		nc.Close()
		return
	}
	info := SessionInfo{Remote: nc.RemoteAddr().String()}
	if err != nil {
		srv.metrics.connectionsTotal.WithLabelValues("refused").Inc()
		srv.refuse(nc, err)
		srv.ended(info, start, err)
		return
	}
	info.User, info.Database = st.user, st.database
	s, err := srv.open(nc, st)
	if err != nil {
		srv.metrics.connectionsTotal.WithLabelValues("refused").Inc()
		srv.refuse(nc, err)
		srv.ended(info, start, err)
		return
	}
	srv.metrics.connectionsTotal.WithLabelValues("accepted").Inc()
	srv.metrics.connections.Inc()
	info.Role, info.Cluster, info.PID = s.role.Name, srv.upstreamCluster, s.pid
	err = s.run()
	srv.metrics.connections.Dec()
	srv.forget(s)
	srv.ended(info, start, err)
}

func (srv *Server) ended(info SessionInfo, start time.Time, err error) {
	if srv.opts.OnSessionEnd != nil {
		info.Duration = time.Since(start)
		srv.opts.OnSessionEnd(info, err)
	}
}

// refuse sends a startup failure to the client when it is one the client
// can be told, then closes the connection.
func (srv *Server) refuse(nc net.Conn, err error) {
	var pe *Error
	if errors.As(err, &pe) {
		nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
		e := *pe
		e.Severity = "FATAL"
		nc.Write(e.encode())
	}
	lingeringClose(nc)
}

// lingeringClose closes a connection after its last write without
// discarding that write: closing with unread input would reset the
// connection, and the client could lose the error sent just before.
func lingeringClose(nc net.Conn) {
	type closeWriter interface{ CloseWrite() error }
	if cw, ok := nc.(closeWriter); ok {
		cw.CloseWrite()
		nc.SetReadDeadline(time.Now().Add(2 * time.Second))
		io.Copy(io.Discard, io.LimitReader(nc, 1<<20))
	}
	nc.Close()
}

// register makes a session known for cancel requests and Close; it fails
// when the server is closing.
func (srv *Server) register(s *session) bool {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if srv.closed {
		return false
	}
	for {
		var b [4]byte
		rand.Read(b[:])
		s.key = cancelKey{pid: s.pid, secret: binary.BigEndian.Uint32(b[:])}
		if _, taken := srv.cancels[s.key]; !taken {
			break
		}
	}
	srv.cancels[s.key] = s
	srv.sessions[s] = struct{}{}
	return true
}

func (srv *Server) forget(s *session) {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	delete(srv.sessions, s)
	if srv.cancels[s.key] == s {
		delete(srv.cancels, s.key)
	}
}

// cancel forwards a client's CancelRequest to the backend of the session it
// names, with that backend's real key. A key that matches no session is
// ignored, as PostgreSQL does.
func (srv *Server) cancel(k cancelKey) {
	srv.mu.Lock()
	s := srv.cancels[k]
	srv.mu.Unlock()
	if s == nil {
		srv.metrics.cancels.WithLabelValues("unknown").Inc()
		return
	}
	srv.metrics.cancels.WithLabelValues("forwarded").Inc()
	s.cancelUpstream()
}
