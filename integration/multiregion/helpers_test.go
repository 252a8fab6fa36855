package multiregion

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/privata/privata/internal/localpg"
	"github.com/privata/privata/internal/pgtest"
	"github.com/privata/privata/internal/synthea"
)

var binDir string

func TestMain(m *testing.M) {
	code := pgtest.Main(m)
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

var ctx = context.Background()

// Test clusters ask for a password over TCP: postgres_fdw connects
// ordinary roles only with one.
const (
	superPassword = "pg-super-pw"
	fdwPassword   = "fdw-pw-0123"
)

var (
	buildOnce sync.Once
	bin       string
	buildErr  error
)

// privata builds the binary once per test run.
func privata(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		if binDir, buildErr = os.MkdirTemp("", "privata-bin-"); buildErr != nil {
			return
		}
		bin = filepath.Join(binDir, "privata")
		cmd := exec.Command("go", "build", "-o", bin, "./cmd/controller")
		cmd.Dir = filepath.Join("..", "..")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return bin
}

// region is one region's cluster and the test's database on it.
type region struct {
	name    string
	cluster *pgtest.Cluster
	db      *pgtest.DB
	conn    *pgx.Conn // superuser, straight to the database
}

// world is a test's regions, the policy and the configuration.
type world struct {
	regions map[string]*region
	order   []string
	dir     string
	policy  string // file
	extra   string // more server settings in privata.yaml
	region  string // the serving instance's region
	serve   *server
}

// shared gives each region its package-wide cluster.
func shared(t *testing.T, names ...string) map[string]*pgtest.Cluster {
	out := map[string]*pgtest.Cluster{}
	for _, n := range names {
		out[n] = pgtest.SharedWith(t, n, pgtest.Options{Password: superPassword})
	}
	return out
}

// own starts clusters of the test's own, with extra settings.
func own(t *testing.T, settings map[string]map[string]string, names ...string) map[string]*pgtest.Cluster {
	out := map[string]*pgtest.Cluster{}
	for _, n := range names {
		out[n] = pgtest.StartWith(t, n, pgtest.Options{Password: superPassword, Settings: settings[n]})
	}
	return out
}

// newWorld creates the Synthea schema, as plain empty tables, in a new
// database on each cluster, and applies the policy to them.
func newWorld(t *testing.T, clusters map[string]*pgtest.Cluster, policyFile string) *world {
	t.Helper()
	w := &world{regions: map[string]*region{}, dir: t.TempDir(), region: "us"}
	var err error
	if w.policy, err = filepath.Abs(policyFile); err != nil {
		t.Fatal(err)
	}
	for name, c := range clusters {
		db := pgtest.NewDB(t, c)
		r := &region{name: name, cluster: c, db: db, conn: db.Connect(t)}
		if err := synthea.Create(ctx, r.conn); err != nil {
			t.Fatal(err)
		}
		w.regions[name] = r
		w.order = append(w.order, name)
	}
	slices.Sort(w.order)
	out, errOut, err := w.run(t, "apply")
	if err != nil {
		t.Fatalf("privata apply: %v\n%s%s", err, out, errOut)
	}
	// The tables the policy leaves alone are the application's: its roles
	// may use them.
	for _, r := range w.regions {
		if _, err := r.conn.Exec(ctx, `GRANT SELECT, INSERT, UPDATE, DELETE
			ON organizations, providers, payers TO clinician, analyst, reception`); err != nil {
			t.Fatal(err)
		}
	}
	return w
}

// config writes privata.yaml and returns its path.
func (w *world) config(t *testing.T, listen string, metrics ...string) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("clusters:\n")
	for _, name := range w.order {
		fmt.Fprintf(&b, "  %s:\n    url: '%s'\n    fdw: {password: %s}\n", name, w.regions[name].db.URL(),
			fdwPassword)
	}
	fmt.Fprintf(&b, "policies: ['%s']\n", w.policy)
	ml := "''"
	if len(metrics) > 0 {
		ml = metrics[0]
	}
	fmt.Fprintf(&b, "server:\n  listen: %s\n  metrics_listen: %s\n  region: %s\n%s", listen, ml, w.region,
		w.extra)
	b.WriteString("auth: {method: trust}\n")
	file := filepath.Join(w.dir, "privata.yaml")
	if err := os.WriteFile(file, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

// run runs a privata verb on the world's configuration.
func (w *world) run(t *testing.T, verb string) (string, string, error) {
	t.Helper()
	cmd := exec.Command(privata(t), verb, "-c", w.config(t, "127.0.0.1:0"))
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	return o.String(), e.String(), err
}

// server is a running `privata serve`.
type server struct {
	cmd     *exec.Cmd
	addr    string
	metrics string // address of /metrics
	mu      sync.Mutex
	log     bytes.Buffer
	done    chan error
}

func (s *server) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log.Write(p)
}

// logs returns what the server logged so far.
func (s *server) logs() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log.String()
}

// start starts `privata serve` for the world's region and waits until it
// accepts connections. It is stopped when the test ends.
func (w *world) start(t *testing.T) *server {
	t.Helper()
	port, err := localpg.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	mport, err := localpg.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	s := &server{addr: fmt.Sprintf("127.0.0.1:%d", port), metrics: fmt.Sprintf("127.0.0.1:%d", mport),
		done: make(chan error, 1)}
	s.cmd = exec.Command(privata(t), "serve", "-c", w.config(t, s.addr, s.metrics))
	s.cmd.Stdout, s.cmd.Stderr = s, s
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.done <- s.cmd.Wait() }()
	t.Cleanup(func() { s.stop(t) })
	for {
		select {
		case err := <-s.done:
			t.Fatalf("privata serve exited: %v\n%s", err, s.logs())
		case <-time.After(50 * time.Millisecond):
		}
		if c, err := net.Dial("tcp", s.addr); err == nil {
			c.Close()
			break
		}
	}
	w.serve = s
	return s
}

// scrape returns the server's metrics.
func (s *server) scrape(t *testing.T) string {
	t.Helper()
	resp, err := http.Get("http://" + s.metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// stop stops the server (SIGTERM) and waits for it.
func (s *server) stop(t *testing.T) {
	if s.cmd.ProcessState != nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(time.Minute):
		s.cmd.Process.Kill()
		<-s.done
	}
	s.cmd.ProcessState = &os.ProcessState{}
}

// client connects through Privata as user (a policy role's name), for
// purpose ("" for none).
func (w *world) client(t *testing.T, user, purpose string) *pgx.Conn {
	t.Helper()
	url := fmt.Sprintf("postgres://%s@%s/%s?sslmode=disable", user, w.serve.addr,
		w.regions[w.region].db.Name)
	if purpose != "" {
		url += "&options=-c%20privata.purpose%3D" + purpose
	}
	return pgtest.Connect(t, url)
}

// sqlstate returns the SQLSTATE of a PostgreSQL error, or "".
func sqlstate(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// count counts rows on a region's cluster, directly, as the superuser.
func (r *region) count(t *testing.T, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := r.conn.QueryRow(ctx, sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", r.name, err)
	}
	return n
}
