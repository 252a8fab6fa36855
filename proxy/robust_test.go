package proxy

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"runtime/pprof"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/privata/privata/internal/pgtest"
)

// rawError sends bytes on a fresh connection and returns the SQLSTATE of
// the ErrorResponse Privata answers with, after checking that it then
// closes the connection.
func rawError(t *testing.T, e *env, data []byte) string {
	t.Helper()
	c, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Minute))
	if _, err := c.Write(data); err != nil {
		t.Fatal(err)
	}
	reply, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read reply: %v", err)
	}
	if len(reply) < 5 || reply[0] != 'E' {
		t.Fatalf("reply %q is not an ErrorResponse", reply)
	}
	var er pgproto3.ErrorResponse
	if err := er.Decode(reply[5:]); err != nil {
		t.Fatal(err)
	}
	return er.Code
}

func startupPacket(version uint32, params ...string) []byte {
	var b builder
	b.i32(0)
	b.i32(int32(version))
	for _, p := range params {
		b.str(p)
	}
	b.buf = append(b.buf, 0)
	binary.BigEndian.PutUint32(b.buf, uint32(len(b.buf)))
	return b.buf
}

func TestBadStartupIsAnswered08P01(t *testing.T) {
	e := newEnv(t, envOptions{})
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"http request", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")},
		{"protocol 2.0", startupPacket(2<<16, "user", "clinician")},
		{"protocol 4.0", startupPacket(4<<16, "user", "clinician")},
		{"length below 8", []byte{0, 0, 0, 4}},
		{"no terminator", startupPacket(protocol30, "user", "clinician")[:20]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := tc.data
			if tc.name == "no terminator" {
				binary.BigEndian.PutUint32(data, uint32(len(data)))
			}
			if code := rawError(t, e, data); code != codeProtocolViolation {
				t.Fatalf("SQLSTATE %s, want 08P01", code)
			}
		})
	}
	// A truncated startup packet: the client goes away; nothing hangs.
	c, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte{0, 0, 0, 100, 0, 3})
	c.Close()
	waitSessions(t, e, 0)
}

// afterStartup opens a session through Privata and returns its raw
// connection, positioned after ReadyForQuery.
func afterStartup(t *testing.T, e *env) (net.Conn, uint32) {
	w := e.wire(t, "clinician")
	return w.conn, w.pid
}

func TestBadMessagesAfterStartup(t *testing.T) {
	e := newEnv(t, envOptions{maxMessage: 1 << 20})
	admin := e.admin(t)
	for _, tc := range []struct {
		name string
		data []byte
	}{
		// Only the header of a 512 MiB Query: it is refused from its length,
		// without waiting for (or allocating) its body.
		{"oversized", []byte{'Q', 0x20, 0, 0, 0}},
		{"length below 4", []byte{'Q', 0, 0, 0, 2}},
		{"unknown type", []byte{'z', 0, 0, 0, 4}},
		{"query without terminator", []byte{'Q', 0, 0, 0, 7, 'a', 'b', 'c'}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, pid := afterStartup(t, e)
			c.SetDeadline(time.Now().Add(time.Minute))
			c.Write(tc.data)
			reply, _ := io.ReadAll(c)
			if len(reply) < 5 || reply[0] != 'E' {
				t.Fatalf("reply %q is not an ErrorResponse", reply)
			}
			var er pgproto3.ErrorResponse
			if err := er.Decode(reply[5:]); err != nil || er.Code != codeProtocolViolation {
				t.Fatalf("error %+v %v, want 08P01", er, err)
			}
			backendGone(t, admin, pid)
		})
	}
}

// backendGone waits until the backend pid has left pg_stat_activity and
// returns how long that took (logged, never asserted).
func backendGone(t testing.TB, admin *pgx.Conn, pid uint32) time.Duration {
	t.Helper()
	d := eventually(t, fmt.Sprintf("backend %d gone", pid), func() error {
		var n int
		err := admin.QueryRow(context.Background(),
			"SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid).Scan(&n)
		if err == nil && n != 0 {
			err = errors.New("still there")
		}
		return err
	})
	t.Logf("backend %d gone %v after the client", pid, d.Round(time.Millisecond))
	return d
}

func waitSessions(t testing.TB, e *env, n int) {
	t.Helper()
	eventually(t, "sessions closed", func() error {
		e.srv.mu.Lock()
		got := len(e.srv.sessions)
		e.srv.mu.Unlock()
		if got != n {
			return fmt.Errorf("%d sessions", got)
		}
		return nil
	})
}

func TestClientVanishingReleasesItsBackend(t *testing.T) {
	e := newEnv(t, envOptions{})
	admin := e.admin(t)
	ctx := context.Background()
	if _, err := admin.Exec(ctx, "CREATE TABLE v (n int); GRANT ALL ON v TO clinician"); err != nil {
		t.Fatal(err)
	}
	cases := map[string][]pgproto3.FrontendMessage{
		"mid-transaction": {&pgproto3.Query{String: "BEGIN; INSERT INTO v VALUES (1); LOCK v"}},
		"mid-pipeline": {&pgproto3.Parse{Query: "INSERT INTO v VALUES ($1)"},
			&pgproto3.Bind{Parameters: [][]byte{[]byte("2")}}, &pgproto3.Execute{},
			&pgproto3.Bind{Parameters: [][]byte{[]byte("3")}}, &pgproto3.Execute{},
			&pgproto3.Parse{Name: "slow", Query: "SELECT pg_sleep(30)"},
			&pgproto3.Bind{PreparedStatement: "slow"}, &pgproto3.Execute{}, &pgproto3.Flush{}},
		"mid-copy": {&pgproto3.Query{String: "COPY v FROM STDIN"},
			&pgproto3.CopyData{Data: []byte("4\n5\n")}},
	}
	for name, msgs := range cases {
		t.Run(name, func(t *testing.T) {
			w := e.wire(t, "clinician")
			w.send(msgs...)
			// Wait until the backend has started on it, then vanish.
			eventually(t, "backend busy", func() error {
				var state string
				err := admin.QueryRow(ctx, "SELECT state FROM pg_stat_activity WHERE pid = $1",
					w.pid).Scan(&state)
				if err == nil && state == "idle" {
					err = errors.New("idle")
				}
				return err
			})
			w.conn.Close()
			backendGone(t, admin, w.pid)
		})
	}
	var n int
	if err := admin.QueryRow(ctx, "SELECT count(*) FROM v").Scan(&n); err != nil || n != 0 {
		t.Fatalf("rows left by vanished clients: %d, %v", n, err)
	}
	// The LOCK was released: this would wait forever otherwise.
	if _, err := admin.Exec(ctx, "BEGIN; LOCK v NOWAIT; COMMIT"); err != nil {
		t.Fatalf("lock still held: %v", err)
	}
	waitSessions(t, e, 0)
}

func TestUpstreamBackendTerminatedMidQuery(t *testing.T) {
	e := newEnv(t, envOptions{})
	ctx := context.Background()
	admin := e.admin(t)
	victim := e.connect(t, "clinician")
	bystander := e.connect(t, "clinician")
	done := make(chan error, 1)
	go func() {
		_, err := victim.Exec(ctx, "SELECT pg_sleep(600)")
		done <- err
	}()
	pid := victim.PgConn().PID()
	eventually(t, "query running", func() error {
		var ok bool
		err := admin.QueryRow(ctx, "SELECT pg_terminate_backend($1)", pid).Scan(&ok)
		if err == nil && !ok {
			err = errors.New("not terminated")
		}
		return err
	})
	err := <-done
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != codeAdminShutdown {
		t.Fatalf("victim got %v, want 57P01", err)
	}
	if err := bystander.Ping(ctx); err != nil {
		t.Fatalf("bystander affected: %v", err)
	}
	if _, err := e.connect(t, "clinician").Exec(ctx, "SELECT 1"); err != nil {
		t.Fatalf("new sessions affected: %v", err)
	}
}

func TestSuperuserWatchdogEndsEscalatedSession(t *testing.T) {
	e := newEnv(t, envOptions{})
	ctx := context.Background()
	// A function created outside Privata that changes the role with dynamic
	// SQL: the analysis cannot see into it; the watchdog sees the result.
	if _, err := e.admin(t).Exec(ctx, `CREATE FUNCTION sneaky() RETURNS void LANGUAGE plpgsql
		AS $$ BEGIN EXECUTE 'SET ROLE escalated'; END $$;
		GRANT EXECUTE ON FUNCTION sneaky() TO clinician`); err != nil {
		t.Fatal(err)
	}
	conn := e.connect(t, "clinician")
	_, err := conn.Exec(ctx, "SELECT sneaky()")
	if err == nil {
		_, err = conn.Exec(ctx, "SELECT 1")
	}
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != codeInsufficientPriv || pe.Severity != "FATAL" {
		t.Fatalf("escalated session: err = %v, want FATAL 42501", err)
	}
	waitSessions(t, e, 0)
}

func TestThousandConnectionsAtOnceLeakNothing(t *testing.T) {
	c := pgtest.Start(t, "many", map[string]string{"max_connections": "1100"})
	var endMu sync.Mutex
	ends := map[string]int{}
	e := newEnv(t, envOptions{cluster: c, onEnd: func(_ SessionInfo, err error) {
		endMu.Lock()
		ends[fmt.Sprint(err)]++
		endMu.Unlock()
	}})
	admin := e.admin(t)
	ctx := context.Background()
	// Warm up once so that lazily started goroutines are in the baseline.
	if _, err := e.connect(t, "clinician").Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	waitSessions(t, e, 1)
	goroutines, fds := runtime.NumGoroutine(), openFDs(t)

	const n = 1000
	var wg sync.WaitGroup
	errs := make(chan error, n)
	start := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			cctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
			defer cancel()
			conn, err := pgconn.Connect(cctx, e.url("clinician"))
			if err != nil {
				errs <- err
				return
			}
			_, err = conn.Exec(cctx, "SELECT current_user").ReadAll()
			conn.Close(cctx)
			if err != nil {
				errs <- err
			}
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	failed := 0
	for err := range errs {
		if failed++; failed <= 3 {
			t.Errorf("connection failed: %v", err)
		}
	}
	if failed > 0 {
		pprof.Lookup("goroutine").WriteTo(os.Stderr, 1)
		endMu.Lock()
		t.Logf("session ends: %v", ends)
		endMu.Unlock()
		t.Logf("accepted %v refused %v", counterValue(t, e, "privata_client_connections_total", "accepted"),
			counterValue(t, e, "privata_client_connections_total", "refused"))
		t.Fatalf("%d of %d connections failed", failed, n)
	}
	if got := counterValue(t, e, "privata_client_connections_total", "accepted"); got != n+1 {
		t.Fatalf("accepted connections = %v, want %d", got, n+1)
	}
	waitSessions(t, e, 1)
	eventually(t, "upstream connections closed", func() error {
		var k int
		err := admin.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE usename = "+
			"'privata_session'").Scan(&k)
		if err == nil && k != 1 {
			err = fmt.Errorf("%d upstream connections", k)
		}
		return err
	})
	eventually(t, "goroutines back to baseline", func() error {
		if g := runtime.NumGoroutine(); g > goroutines {
			return fmt.Errorf("%d goroutines, baseline %d", g, goroutines)
		}
		return nil
	})
	eventually(t, "file descriptors back to baseline", func() error {
		if f := openFDs(t); f > fds {
			return fmt.Errorf("%d open fds, baseline %d", f, fds)
		}
		return nil
	})
}

func openFDs(t testing.TB) int {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}
