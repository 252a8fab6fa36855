package proxy

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/privata/privata/cache"
	"github.com/privata/privata/config"
	"github.com/privata/privata/internal/pgtest"
	"github.com/privata/privata/policy"
	"github.com/privata/privata/storage"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// testPolicy maps three PostgreSQL roles; their names are the policy's.
const testPolicy = `version: 1
regions:
  main: {cluster: main}
roles:
  clinician: {identity: full, clinical: full}
  analyst: {identity: none, clinical: full}
  reception: {identity: masked, clinical: none}
`

// The upstream login of sessions, and the roles it may take on. escalated is
// a superuser role the login is (wrongly) a member of, so that tests can see
// the watchdog end a session that became superuser.
var rolesOnce sync.Map // *pgtest.Cluster -> *sync.Once

func setupRoles(t testing.TB, c *pgtest.Cluster) {
	t.Helper()
	once, _ := rolesOnce.LoadOrStore(c, &sync.Once{})
	once.(*sync.Once).Do(func() {
		conn := pgtest.Connect(t, c.URL("postgres"))
		_, err := conn.Exec(context.Background(), `
			CREATE ROLE privata_session LOGIN;
			CREATE ROLE clinician NOLOGIN;
			CREATE ROLE analyst NOLOGIN;
			CREATE ROLE reception NOLOGIN;
			CREATE ROLE escalated NOLOGIN SUPERUSER;
			GRANT clinician, analyst, reception, escalated TO privata_session;
			CREATE ROLE alice LOGIN PASSWORD 'alice-secret';
			CREATE ROLE clinician_md5 LOGIN;`)
		if err != nil {
			t.Fatalf("create roles: %v", err)
		}
	})
}

// env is a Privata server in front of a fresh test database.
type env struct {
	db   *pgtest.DB
	srv  *Server
	addr string
	reg  *prometheus.Registry
}

type envOptions struct {
	cluster     *pgtest.Cluster
	auth        config.Auth
	maxMessage  int
	tlsCert     string
	tlsKey      string
	sessionUser string
	// urlOnly leaves the cluster without a session_url: sessions connect
	// as the user of its url, which applies the policy.
	urlOnly bool
	onEnd   func(SessionInfo, error)
	observe func(*stmtInfo) observer
	// policy replaces testPolicy; setup runs on the database before the
	// server starts (readpath_test.go); audit and cache are the read path.
	policy string
	setup  func(db *pgtest.DB)
	audit  func(cluster string) ReadAuditor
	cache  *cache.Cache
}

func newEnv(t testing.TB, o envOptions) *env {
	t.Helper()
	c := o.cluster
	if c == nil {
		c = pgtest.Shared(t)
	}
	setupRoles(t, c)
	db := pgtest.NewDB(t, c)
	db.Exec(t, "GRANT ALL ON SCHEMA public TO clinician, analyst, reception")

	dir := t.TempDir()
	policyFile := filepath.Join(dir, "policy.yaml")
	text := testPolicy
	if o.policy != "" {
		text = o.policy
	}
	if err := os.WriteFile(policyFile, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	pol, err := policy.Load(policyFile)
	if err != nil {
		t.Fatal(err)
	}
	if o.setup != nil {
		o.setup(db)
	}
	user := o.sessionUser
	if user == "" {
		user = "privata_session"
	}
	cfg := config.Default()
	cfg.Clusters = map[string]*config.Cluster{"main": {
		URL: config.Env(db.URL()),
		SessionURL: config.Env(fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s?sslmode=disable",
			user, c.Port(), db.Name)),
	}}
	if o.urlOnly {
		cfg.Clusters["main"].SessionURL = ""
	}
	cfg.Policies = []string{policyFile}
	cfg.Auth = o.auth
	if cfg.Auth.Method == "" {
		cfg.Auth.Method = "trust"
	}
	if cfg.Auth.Query == "" {
		cfg.Auth.Query = config.Default().Auth.Query
	}
	if o.maxMessage > 0 {
		cfg.Server.MaxMessageBytes = o.maxMessage
	}
	cfg.Server.TLSCert, cfg.Server.TLSKey = o.tlsCert, o.tlsKey
	reg := prometheus.NewRegistry()
	srv, err := New(cfg, pol, Options{Registerer: reg, OnSessionEnd: o.onEnd, Audit: o.audit,
		Cache: o.cache})
	if err != nil {
		t.Fatal(err)
	}
	srv.observe = o.observe
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, l) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("serve: %v", err)
			}
		case <-time.After(time.Minute):
			t.Errorf("server did not stop within a minute")
		}
	})
	return &env{db: db, srv: srv, addr: l.Addr().String(), reg: reg}
}

// url is a client URL through Privata.
func (e *env) url(user string) string {
	return fmt.Sprintf("postgres://%s@%s/%s?sslmode=disable", user, e.addr, e.db.Name)
}

// connect opens a pgx connection through Privata as user.
func (e *env) connect(t testing.TB, user string) *pgx.Conn {
	t.Helper()
	return pgtest.Connect(t, e.url(user))
}

// admin is a superuser connection straight to the test database.
func (e *env) admin(t testing.TB) *pgx.Conn {
	t.Helper()
	return e.db.Connect(t)
}

// eventually polls check until it returns nil or a generous deadline
// passes; it never asserts on how long that took.
func eventually(t testing.TB, what string, check func() error) time.Duration {
	t.Helper()
	start := time.Now()
	var err error
	for time.Since(start) < 2*time.Minute {
		if err = check(); err == nil {
			return time.Since(start)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s: still not so after 2 minutes: %v", what, err)
	return 0
}

// counterValue reads a counter (or gauge) of the env's registry, the one
// whose only label has value label ("" for an unlabelled metric).
func counterValue(t testing.TB, e *env, name, label string) float64 {
	t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			match := label == ""
			for _, lp := range m.GetLabel() {
				if lp.GetValue() == label {
					match = true
				}
			}
			if !match {
				continue
			}
			if m.Counter != nil {
				return m.Counter.GetValue()
			}
			return m.Gauge.GetValue()
		}
	}
	return 0
}

// applyPolicy applies a policy, given as its text, to the environment's
// database directly (as privata apply does).
func (e *env) applyPolicy(t testing.TB, text string) *policy.Policy {
	t.Helper()
	p, err := policy.Parse("policy.yaml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := storage.Apply(context.Background(), e.db.Connect(t), p, storage.Target{Name: "main",
		URL: e.db.URL(), Regions: []string{"main"}}); err != nil {
		t.Fatalf("apply: %v", err)
	}
	return p
}
