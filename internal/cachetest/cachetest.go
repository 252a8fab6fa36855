// Package cachetest runs real redis-server and memcached processes for the
// tests of the read cache outside package cache: each on a free port with a
// directory of its own, killed when the test ends (or the test binary
// dies). A missing binary fails the test with what to install.
package cachetest

import (
	"bufio"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/redis/go-redis/v9"
)

// Server is a redis-server or memcached process of a test.
type Server struct {
	Kind string // redis or memcached
	Addr string // 127.0.0.1:port
	dir  string

	mu  sync.Mutex
	cmd *exec.Cmd
}

// Start starts a server of kind (redis or memcached), removed when the test
// ends.
func Start(t testing.TB, kind string) *Server {
	t.Helper()
	bin := map[string]string{"redis": "redis-server", "memcached": "memcached"}[kind]
	if _, err := exec.LookPath(bin); err != nil {
		t.Fatalf("%s not found: the cache tests run a real %s (Debian: apt-get install "+
			"redis-server memcached; .ci/run installs them)", bin, kind)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Kind: kind, Addr: l.Addr().String(), dir: t.TempDir()}
	l.Close()
	if err := s.start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Kill)
	return s
}

// Restart starts a killed server again on the same port, empty.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	if err := s.start(); err != nil {
		t.Fatal(err)
	}
}

func (s *Server) start() error {
	_, port, _ := net.SplitHostPort(s.Addr)
	var cmd *exec.Cmd
	switch s.Kind {
	case "redis":
		cmd = exec.Command("redis-server", "--port", port, "--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no", "--dir", s.dir, "--daemonize", "no")
	case "memcached":
		// Without the LRU maintainer items stay put while metadump walks them.
		cmd = exec.Command("memcached", "-p", port, "-l", "127.0.0.1", "-U", "0", "-m", "64",
			"-o", "no_lru_maintainer")
		if os.Geteuid() == 0 {
			cmd.Args = append(cmd.Args, "-u", "nobody")
		}
	default:
		return fmt.Errorf("cachetest: unknown server kind %q", s.Kind)
	}
	log, err := os.Create(s.dir + "/server.log")
	if err != nil {
		return err
	}
	defer log.Close()
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", s.Kind, err)
	}
	s.mu.Lock()
	s.cmd = cmd
	s.mu.Unlock()
	deadline := time.Now().Add(30 * time.Second)
	for s.ping() != nil {
		if time.Now().After(deadline) {
			out, _ := os.ReadFile(s.dir + "/server.log")
			s.Kill()
			return fmt.Errorf("%s on %s never answered: %s", s.Kind, s.Addr, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

func (s *Server) ping() error {
	conn, err := net.DialTimeout("tcp", s.Addr, time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(time.Second))
	req, want := "PING\r\n", "+PONG"
	if s.Kind == "memcached" {
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
		return fmt.Errorf("%s answered %q", s.Kind, line)
	}
	return nil
}

// Kill ends the server with SIGKILL; it loses everything it held.
func (s *Server) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Kill()
	s.cmd.Wait()
	s.cmd = nil
}

// Dump returns every key the server holds and its value.
func (s *Server) Dump(t testing.TB) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	if s.Kind == "redis" {
		c := redis.NewClient(&redis.Options{Addr: s.Addr})
		defer c.Close()
		ctx := t.Context()
		iter := c.Scan(ctx, 0, "*", 1000).Iterator()
		for iter.Next(ctx) {
			k := iter.Val()
			var v []byte
			switch typ, _ := c.Type(ctx, k).Result(); typ {
			case "string":
				v, _ = c.Get(ctx, k).Bytes()
			case "hash":
				for f, x := range c.HGetAll(ctx, k).Val() {
					v = append(append(v, f...), x...)
				}
			case "set":
				for _, x := range c.SMembers(ctx, k).Val() {
					v = append(v, x...)
				}
			case "list":
				for _, x := range c.LRange(ctx, k, 0, -1).Val() {
					v = append(v, x...)
				}
			case "zset":
				for _, x := range c.ZRange(ctx, k, 0, -1).Val() {
					v = append(v, x...)
				}
			}
			out[k] = v
		}
		if err := iter.Err(); err != nil {
			t.Fatal(err)
		}
		return out
	}
	mc := memcache.New(s.Addr)
	for _, k := range s.memcachedKeys(t) {
		it, err := mc.Get(k)
		if err == nil {
			out[k] = it.Value
		}
	}
	return out
}

// memcachedKeys lists the keys memcached holds (lru_crawler metadump).
func (s *Server) memcachedKeys(t testing.TB) []string {
	t.Helper()
	conn, err := net.DialTimeout("tcp", s.Addr, 5*time.Second)
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
