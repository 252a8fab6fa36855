// Package pgtest gives tests real PostgreSQL clusters and a fresh database
// per test.
//
// A package's tests share the clusters they ask for; each test gets its own
// database, dropped when the test ends. Clusters are created from the local
// binaries (see internal/localpg) under one temporary directory and removed
// when the test binary exits:
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
//
//	func TestSomething(t *testing.T) {
//		db := pgtest.NewDB(t, pgtest.Shared(t))
//		conn := db.Connect(t)
//		...
//	}
//
// Several clusters stand for several regions: pgtest.Start(t, name) starts
// another one, owned by the test. With PRIVATA_TEST_DOCKER=1 clusters run in
// Docker containers (postgres:15) instead of from local binaries.
//
// When PostgreSQL's binaries are missing, tests fail with instructions; they
// never skip.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/privata/privata/internal/localpg"
)

// Cluster is a running PostgreSQL server for tests.
type Cluster struct {
	Name string
	// Local is the local cluster; nil when it runs in Docker.
	Local *localpg.Cluster

	host     string
	port     int
	password string
	stop     func() error
}

// Port is the TCP port the server listens on.
func (c *Cluster) Port() int { return c.port }

// URL is a superuser connection URL for database db.
func (c *Cluster) URL(db string) string {
	if c.Local != nil {
		return c.Local.URL(db)
	}
	return fmt.Sprintf("postgres://postgres:%s@%s:%d/%s?sslmode=disable", c.password, c.host, c.port, db)
}

// Options describe a cluster to start.
type Options struct {
	// Settings are extra postgresql.conf lines.
	Settings map[string]string
	// Password, when set, is the superuser's password, and TCP
	// connections must authenticate with SCRAM-SHA-256: postgres_fdw lets
	// ordinary roles connect only with a password.
	Password string
}

var (
	mu       sync.Mutex
	shared   *Cluster
	named    = map[string]*Cluster{}
	started  []*Cluster
	rootDir  string
	sequence int
)

// Main runs the tests and then removes every cluster they started.
func Main(m *testing.M) int {
	code := m.Run()
	mu.Lock()
	defer mu.Unlock()
	for _, c := range started {
		if err := c.stop(); err != nil {
			fmt.Fprintf(os.Stderr, "pgtest: %v\n", err)
		}
	}
	started = nil
	named = map[string]*Cluster{}
	if rootDir != "" {
		os.RemoveAll(rootDir)
	}
	return code
}

// Shared returns the package's shared cluster, starting it on first use.
func Shared(t testing.TB) *Cluster {
	t.Helper()
	mu.Lock()
	defer mu.Unlock()
	if shared == nil {
		c, err := start("shared", Options{})
		if err != nil {
			t.Fatal(err)
		}
		shared = c
	}
	return shared
}

// SharedWith returns the package's shared cluster called name, starting it
// with opts on first use: tests that need several clusters (regions) share
// one of each name.
func SharedWith(t testing.TB, name string, opts Options) *Cluster {
	t.Helper()
	mu.Lock()
	defer mu.Unlock()
	if named[name] == nil {
		c, err := start(name, opts)
		if err != nil {
			t.Fatal(err)
		}
		named[name] = c
	}
	return named[name]
}

// Start starts a cluster of the test's own, stopped and removed when the test
// ends. Settings are extra postgresql.conf lines.
func Start(t testing.TB, name string, settings map[string]string) *Cluster {
	t.Helper()
	return StartWith(t, name, Options{Settings: settings})
}

// StartWith is Start with more options.
func StartWith(t testing.TB, name string, opts Options) *Cluster {
	t.Helper()
	mu.Lock()
	c, err := start(name, opts)
	mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.stop(); err != nil {
			t.Logf("pgtest: %v", err)
		}
		mu.Lock()
		defer mu.Unlock()
		for i, s := range started {
			if s == c {
				started = append(started[:i], started[i+1:]...)
				break
			}
		}
	})
	return c
}

func start(name string, opts Options) (*Cluster, error) {
	settings := opts.Settings
	if os.Getenv("PRIVATA_TEST_DOCKER") != "" {
		c, err := startDocker(name, opts)
		if err == nil {
			started = append(started, c)
		}
		return c, err
	}
	if rootDir == "" {
		base := filepath.Join(os.TempDir(), "privata-pgtest")
		if err := os.MkdirAll(base, 0o755); err != nil {
			return nil, err
		}
		os.Chmod(base, 0o1777)
		reapStale(base)
		dir, err := os.MkdirTemp(base, strconv.Itoa(os.Getpid())+"-")
		if err != nil {
			return nil, err
		}
		os.Chmod(dir, 0o755)
		rootDir = dir
	}
	sequence++
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	lc, err := localpg.Start(ctx, localpg.Options{
		Dir:      filepath.Join(rootDir, fmt.Sprintf("%s-%d", name, sequence)),
		Settings: withTestDefaults(settings),
		Password: opts.Password,
	})
	if err != nil {
		return nil, fmt.Errorf("pgtest: start cluster %q: %w", name, err)
	}
	c := &Cluster{Name: name, Local: lc, host: "127.0.0.1", port: lc.Port, password: opts.Password,
		stop: lc.Remove}
	started = append(started, c)
	return c, nil
}

// withTestDefaults trades durability for speed: test clusters are thrown away.
func withTestDefaults(settings map[string]string) map[string]string {
	out := map[string]string{
		"fsync":              "off",
		"synchronous_commit": "off",
		"full_page_writes":   "off",
	}
	for k, v := range settings {
		out[k] = v
	}
	return out
}

// reapStale stops and removes clusters left behind by test binaries that died
// before they could clean up (a kill -9, a timeout).
func reapStale(base string) {
	entries, _ := os.ReadDir(base)
	for _, e := range entries {
		pidText, _, ok := strings.Cut(e.Name(), "-")
		pid, err := strconv.Atoi(pidText)
		if !ok || err != nil || processAlive(pid) {
			continue
		}
		dirs, _ := filepath.Glob(filepath.Join(base, e.Name(), "*"))
		for _, d := range dirs {
			if st, err := os.Stat(filepath.Join(d, "PG_VERSION")); err == nil && !st.IsDir() {
				if c, err := localpg.Attach(d); err == nil {
					c.Kill()
				}
			}
		}
		os.RemoveAll(filepath.Join(base, e.Name()))
	}
}

func processAlive(pid int) bool {
	return syscall.Kill(pid, 0) == nil
}

// DB is a database created for one test.
type DB struct {
	Cluster *Cluster
	Name    string
}

// URL is a superuser connection URL for the database.
func (d *DB) URL() string { return d.Cluster.URL(d.Name) }

// Connect opens a superuser connection, closed when the test ends.
func (d *DB) Connect(t testing.TB) *pgx.Conn {
	t.Helper()
	return Connect(t, d.URL())
}

// Exec runs SQL as the superuser and fails the test on error.
func (d *DB) Exec(t testing.TB, sql string, args ...any) {
	t.Helper()
	conn := d.Connect(t)
	if _, err := conn.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("exec %.80q: %v", sql, err)
	}
}

// NewDB creates an empty database on c, dropped when the test ends.
func NewDB(t testing.TB, c *Cluster) *DB {
	t.Helper()
	name := "t_" + randomHex(6)
	admin := Connect(t, c.URL("postgres"))
	ctx := context.Background()
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("create database: %v", err)
	}
	t.Cleanup(func() {
		conn, err := pgx.Connect(ctx, c.URL("postgres"))
		if err != nil {
			return // the cluster is gone with the test
		}
		defer conn.Close(ctx)
		conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
	})
	return &DB{Cluster: c, Name: name}
}

// Connect opens a connection to url, closed when the test ends.
func Connect(t testing.TB, url string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}
