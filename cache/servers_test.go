package cache

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/privata/privata/internal/pgtest"
)

func TestMain(m *testing.M) {
	code := pgtest.Main(m)
	stopServers()
	os.Exit(code)
}

// server is a redis-server or memcached process a test started. Tests kill
// it (kill -9), stop it (SIGSTOP) and start it again on the same port.
type server struct {
	kind string // redis or memcached
	addr string
	dir  string

	mu  sync.Mutex
	cmd *exec.Cmd
}

var (
	serversMu sync.Mutex
	servers   []*server
	shared    = map[string]*server{}
)

// sharedServer returns the package's server of a kind, started on first
// use. Tests keep apart with a key prefix of their own.
func sharedServer(t testing.TB, kind string) *server {
	t.Helper()
	serversMu.Lock()
	defer serversMu.Unlock()
	if s := shared[kind]; s != nil {
		return s
	}
	s, err := launch(kind)
	if err != nil {
		t.Fatal(err)
	}
	shared[kind] = s
	return s
}

// ownServer starts a server for one test, removed when the test ends.
func ownServer(t testing.TB, kind string) *server {
	t.Helper()
	serversMu.Lock()
	s, err := launch(kind)
	serversMu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.kill() })
	return s
}

func launch(kind string) (*server, error) {
	bin := map[string]string{"redis": "redis-server", "memcached": "memcached"}[kind]
	if _, err := exec.LookPath(bin); err != nil {
		return nil, fmt.Errorf("%s not found: the cache tests run a real %s "+
			"(Debian: apt-get install redis-server memcached; .ci/run installs them)", bin, kind)
	}
	dir, err := os.MkdirTemp("", "privata-cache-"+kind+"-")
	if err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := l.Addr().String()
	l.Close()
	s := &server{kind: kind, addr: addr, dir: dir}
	if err := s.start(); err != nil {
		return nil, err
	}
	servers = append(servers, s)
	return s, nil
}

// start runs the server process and waits until it answers.
func (s *server) start() error {
	_, port, _ := net.SplitHostPort(s.addr)
	var cmd *exec.Cmd
	switch s.kind {
	case "redis":
		cmd = exec.Command("redis-server", "--port", port, "--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no", "--dir", s.dir, "--daemonize", "no")
	case "memcached":
		// Without the LRU maintainer, items stay put while metadump walks
		// them, so a dump lists every item.
		cmd = exec.Command("memcached", "-p", port, "-l", "127.0.0.1", "-U", "0", "-m", "64",
			"-o", "no_lru_maintainer")
		if os.Geteuid() == 0 {
			cmd.Args = append(cmd.Args, "-u", "nobody")
		}
	}
	log, err := os.Create(s.dir + "/server.log")
	if err != nil {
		return err
	}
	defer log.Close()
	cmd.Stdout, cmd.Stderr = log, log
	// The server dies with the test binary, however that ends.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", s.kind, err)
	}
	s.mu.Lock()
	s.cmd = cmd
	s.mu.Unlock()

	deadline := time.Now().Add(30 * time.Second)
	for {
		if err := s.ping(); err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			out, _ := os.ReadFile(s.dir + "/server.log")
			s.kill()
			return fmt.Errorf("%s on %s never answered: %s", s.kind, s.addr, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ping sends the server its protocol's no-op.
func (s *server) ping() error {
	conn, err := net.DialTimeout("tcp", s.addr, time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(time.Second))
	req, want := "PING\r\n", "+PONG"
	if s.kind == "memcached" {
		req, want = "version\r\n", "VERSION"
	}
	if _, err := conn.Write([]byte(req)); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, want) {
		return fmt.Errorf("%s answered %q", s.kind, line)
	}
	return nil
}

// kill ends the server with SIGKILL: it loses everything it held.
func (s *server) kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGCONT)
	s.cmd.Process.Kill()
	s.cmd.Wait()
	s.cmd = nil
}

// signal sends sig (SIGSTOP, SIGCONT) to the server. For SIGSTOP it waits
// until every thread of the server has stopped: a thread that is running
// when the signal is sent may otherwise answer one more request.
func (s *server) signal(t testing.TB, sig syscall.Signal) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %s: %v", s.kind, err)
	}
	if sig != syscall.SIGSTOP {
		return
	}
	deadline := time.Now().Add(30 * time.Second)
	for !allStopped(t, s.cmd.Process.Pid) {
		if time.Now().After(deadline) {
			t.Fatalf("%s did not stop", s.kind)
		}
		time.Sleep(time.Millisecond)
	}
}

// allStopped reports whether every thread of process pid is stopped.
func allStopped(t testing.TB, pid int) bool {
	t.Helper()
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stat", pid))
	if err != nil || len(tasks) == 0 {
		t.Fatalf("threads of %d: %v", pid, err)
	}
	for _, task := range tasks {
		stat, err := os.ReadFile(task)
		if err != nil {
			return false
		}
		// The state follows the command name, which is in parentheses.
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 || i+2 >= len(stat) || stat[i+2] != 'T' {
			return false
		}
	}
	return true
}

func stopServers() {
	serversMu.Lock()
	defer serversMu.Unlock()
	for _, s := range servers {
		s.kill()
		os.RemoveAll(s.dir)
	}
	servers = nil
}

// memcachedKeys lists the keys memcached holds (lru_crawler metadump).
func memcachedKeys(t testing.TB, addr string) []string {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := conn.Write([]byte("lru_crawler metadump all\r\n")); err != nil {
		t.Fatal(err)
	}
	var keys []string
	sc := bufio.NewScanner(conn)
	for sc.Scan() {
		line := sc.Text()
		if line == "END" {
			return keys
		}
		if strings.HasPrefix(line, "ERROR") || strings.HasPrefix(line, "BUSY") {
			t.Fatalf("memcached metadump: %s", line)
		}
		for _, field := range strings.Fields(line) {
			if k, ok := strings.CutPrefix(field, "key="); ok {
				k, err := url.QueryUnescape(k)
				if err != nil {
					t.Fatal(err)
				}
				keys = append(keys, k)
			}
		}
	}
	t.Fatalf("memcached metadump: %v", sc.Err())
	return nil
}

// testPrefix is a key prefix of the test's own.
func testPrefix() string {
	b := make([]byte, 4)
	rand.Read(b)
	return "t" + hex.EncodeToString(b) + ":"
}
