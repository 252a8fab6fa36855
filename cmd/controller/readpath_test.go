package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/privata/privata/internal/audittest"
	"github.com/privata/privata/internal/cachetest"
	"github.com/privata/privata/internal/localpg"
)

// served is a clinic database behind a `privata serve` subprocess, with
// its read audit, sink and slot of its own.
type served struct {
	*clinic
	patients   []*audittest.Patient
	encounters []*audittest.Encounter
	listen     int
	metrics    int
	proc       *serveProc
}

// newServed configures a clinic for serve; extra is appended to
// privata.yaml (a cache: section, say).
func newServed(t *testing.T, extra string) *served {
	t.Helper()
	c := newClinic(t)
	s := &served{clinic: c}
	s.patients, s.encounters = audittest.Load(t, c.db)
	var err error
	if s.listen, err = localpg.FreePort(); err != nil {
		t.Fatal(err)
	}
	if s.metrics, err = localpg.FreePort(); err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf(`clusters:
  us: {url: '%s'}
policies: [policy.yaml]
server: {listen: '127.0.0.1:%d', metrics_listen: '127.0.0.1:%d'}
auth: {method: trust, default_role: clinician}
audit:
  sink: audit.jsonl
  slot: %s
  spool_dir: spool
%s`, c.db.URL(), s.listen, s.metrics, c.slot, extra)
	if err := os.WriteFile(c.file, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	return s
}

// serveProc is a running `privata serve`.
type serveProc struct {
	cmd  *exec.Cmd
	logs *syncBuffer
	done chan error
}

// start starts privata serve and waits until it accepts connections.
func (s *served) start(t *testing.T) {
	t.Helper()
	p := &serveProc{logs: &syncBuffer{}, done: make(chan error, 1)}
	p.cmd = exec.Command(privata(t), "serve", "-c", s.file)
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
		p.done <- nil
	})
	s.proc = p
	deadline := time.Now().Add(time.Minute)
	for {
		conn, err := pgx.Connect(context.Background(), s.url("probe"))
		if err == nil {
			conn.Close(context.Background())
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("privata serve never accepted a connection: %v\n%s", err, p.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kill ends privata serve with SIGKILL.
func (s *served) kill(t *testing.T) {
	t.Helper()
	s.proc.cmd.Process.Kill()
	<-s.proc.done
	s.proc.done <- nil
}

// stop ends privata serve with SIGTERM and waits for it to exit.
func (s *served) stop(t *testing.T) {
	t.Helper()
	s.proc.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-s.proc.done:
		s.proc.done <- nil
		if err != nil {
			t.Fatalf("privata serve exited with %v\n%s", err, s.proc.logs.String())
		}
	case <-time.After(time.Minute):
		t.Fatalf("privata serve still running a minute after SIGTERM")
	}
}

func (s *served) url(user string) string {
	return fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s?sslmode=disable", user, s.listen,
		s.db.Name)
}

// pointRead reads one patient through Privata, tagged with actor, and
// reports whether the patient's row came back.
func pointRead(ctx context.Context, conn *pgx.Conn, actor string, p *audittest.Patient) (bool,
	error) {
	rows, err := conn.Query(ctx, "/*actor='"+actor+"',purpose='treatment'*/ "+
		"SELECT id, ssn, last FROM patients WHERE id = $1", p.ID)
	if err != nil {
		return false, err
	}
	got := false
	for rows.Next() {
		var id, ssn, last string
		if err := rows.Scan(&id, &ssn, &last); err != nil {
			rows.Close()
			return false, err
		}
		got = id == p.ID
	}
	return got, rows.Err()
}

// TestAuditSubjectListsExactlyTheReadsThatReturnedThePatient runs a
// workload through privata serve, then asks `privata audit subject` about
// each patient: it lists exactly the reads whose results held the
// patient's row, as the clients saw them.
func TestAuditSubjectListsExactlyTheReadsThatReturnedThePatient(t *testing.T) {
	s := newServed(t, "cache: {backend: off}\n")
	s.start(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, s.url("app"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	returned := map[string]int{} // patient id -> reads whose results held their row
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 60 {
		p := s.patients[rng.IntN(len(s.patients))]
		switch i % 3 {
		case 0:
			got, err := pointRead(ctx, conn, fmt.Sprint("reader-", i), p)
			if err != nil {
				t.Fatal(err)
			}
			if got {
				returned[p.ID]++
			}
		case 1:
			rows, err := conn.Query(ctx, "SELECT patient, description FROM encounters "+
				"WHERE patient = $1", p.ID)
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for rows.Next() {
				n++
			}
			if rows.Err() != nil {
				t.Fatal(rows.Err())
			}
			if n > 0 {
				returned[p.ID]++
			}
		case 2:
			// A read that returns no patient's row, and one that is not
			// attributable to subjects.
			var n int
			if err := conn.QueryRow(ctx, "SELECT count(*) FROM patients WHERE last = $1",
				p.Last).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if _, err := pointRead(ctx, conn, "nobody", &audittest.Patient{
				ID: "00000000-0000-4000-8000-000000000000"}); err != nil {
				t.Fatal(err)
			}
		}
	}
	conn.Close(ctx)
	s.stop(t)

	for _, p := range s.patients[:8] {
		out, err := cli(t, "subject", "-c", s.file, p.ID)
		if err != nil {
			t.Fatalf("subject: %v\n%s", err, out)
		}
		want := fmt.Sprintf("%d reads returned this subject's data", returned[p.ID])
		if !strings.Contains(out, want) {
			t.Errorf("patient %s: want %q:\n%s", p.ID, want, out)
		}
	}
	out, err := cli(t, "verify", "-c", s.file)
	if err != nil {
		t.Fatalf("verify: %v\n%s", err, out)
	}
}

// TestKillServeUnderLoadLosesNothing kills privata serve (and with it the
// change consumer) with SIGKILL at random points while clients read and
// write through it, restarts it each time, and then compares what the
// clients received and committed with the audit trail: every read whose
// rows a client received is there once, every committed change is there
// once, nothing is there twice, and every chain verifies.
func TestKillServeUnderLoadLosesNothing(t *testing.T) {
	s := newServed(t, "cache: {backend: off}\n")
	s.start(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	var mu sync.Mutex
	received := map[string]bool{}  // actors of reads whose rows reached the client
	attempted := map[string]bool{} // actors of every read sent
	committed := map[string]bool{} // actors of updates whose commit the client saw
	written := map[string]bool{}   // actors of every update sent
	var wg sync.WaitGroup
	for c := range 4 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(c), 7))
			var conn *pgx.Conn
			for i := 0; ctx.Err() == nil; i++ {
				if conn == nil {
					var err error
					if conn, err = pgx.Connect(ctx, s.url("app")); err != nil {
						time.Sleep(20 * time.Millisecond)
						continue
					}
				}
				p := s.patients[rng.IntN(len(s.patients))]
				actor := fmt.Sprintf("c%d-%d", c, i)
				var err error
				if i%4 == 3 {
					mu.Lock()
					written[actor] = true
					mu.Unlock()
					// Every update changes the row: a new value each time.
					_, err = conn.Exec(ctx, "/*actor='"+actor+"'*/ UPDATE patients SET marital = "+
						"$2 WHERE id = $1", p.ID, actor)
					if err == nil {
						mu.Lock()
						committed[actor] = true
						mu.Unlock()
					}
				} else {
					mu.Lock()
					attempted[actor] = true
					mu.Unlock()
					var got bool
					got, err = pointRead(ctx, conn, actor, p)
					if err == nil && got {
						mu.Lock()
						received[actor] = true
						mu.Unlock()
					}
				}
				if err != nil {
					conn.Close(context.Background())
					conn = nil
				}
			}
			if conn != nil {
				conn.Close(context.Background())
			}
		})
	}
	rng := rand.New(rand.NewPCG(42, 42))
	for range 4 {
		time.Sleep(time.Duration(300+rng.IntN(1200)) * time.Millisecond)
		s.kill(t)
		time.Sleep(time.Duration(rng.IntN(300)) * time.Millisecond)
		s.start(t)
	}
	time.Sleep(500 * time.Millisecond)
	cancel()
	wg.Wait()

	// Let the consumer catch up with everything committed, then stop.
	conn := s.db.Connect(t)
	bg := context.Background()
	var lsn string
	if err := conn.QueryRow(bg, "SELECT pg_current_wal_insert_lsn()::text").Scan(&lsn); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the consumer to catch up", func() bool {
		var ok bool
		err := conn.QueryRow(bg, `SELECT confirmed_flush_lsn >= $1::pg_lsn
			FROM pg_replication_slots WHERE slot_name = $2`, lsn, s.slot).Scan(&ok)
		return err == nil && ok
	})
	s.stop(t)

	count := func(table string) map[string]int {
		rows, err := conn.Query(bg, "SELECT actor, count(*) FROM privata_audit."+table+
			" WHERE actor LIKE 'c%' GROUP BY actor")
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]int{}
		for rows.Next() {
			var a string
			var n int
			if err := rows.Scan(&a, &n); err != nil {
				t.Fatal(err)
			}
			out[a] = n
		}
		return out
	}
	reads, changes := count("read_log"), count("change_log")
	if len(received) < 50 || len(committed) < 10 {
		t.Fatalf("too little work got through: %d reads, %d commits", len(received),
			len(committed))
	}
	for a := range received {
		if reads[a] != 1 {
			t.Errorf("read %s reached its client; the audit log has %d records of it", a,
				reads[a])
		}
	}
	for a, n := range reads {
		if !attempted[a] || n != 1 {
			t.Errorf("the audit log has %d records of read %s (sent: %v)", n, a, attempted[a])
		}
	}
	for a := range committed {
		if changes[a] != 1 {
			t.Errorf("update %s committed; the audit log has %d change records of it", a,
				changes[a])
		}
	}
	for a, n := range changes {
		if !written[a] || n != 1 {
			t.Errorf("the audit log has %d change records of update %s (sent: %v)", n, a,
				written[a])
		}
	}
	out, err := cli(t, "verify", "-c", s.file)
	if err != nil {
		t.Fatalf("verify after the kills: %v\n%s", err, out)
	}
	t.Logf("%d reads received (%d sent, %d audited), %d updates committed (%d sent, %d "+
		"audited); %s", len(received), len(attempted), len(reads), len(committed), len(written),
		len(changes), strings.TrimSpace(out[strings.LastIndex(strings.TrimSpace(out), "\n")+1:]))

	// The trail holds no value of the patients' data, and a record altered
	// by a superuser is named by verify.
	var stored string
	if err := conn.QueryRow(bg, `SELECT concat_ws(' ',
		(SELECT string_agg(r::text, ' ') FROM privata_audit.read_log r),
		(SELECT string_agg(c::text, ' ') FROM privata_audit.change_log c))`).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	sink, err := os.ReadFile(filepath.Join(s.dir, "audit.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	for where, text := range map[string]string{"the store": stored, "the sink": string(sink),
		"the log": s.proc.logs.String()} {
		for _, p := range s.patients {
			for _, v := range append(p.Values(), p.ID) {
				if strings.Contains(text, v) {
					t.Errorf("%s holds %q", where, v)
				}
			}
		}
	}
	var seq int64
	var chain string
	if err := conn.QueryRow(bg, `SELECT chain, seq FROM privata_audit.read_log
		ORDER BY chain, seq OFFSET 5 LIMIT 1`).Scan(&chain, &seq); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		"ALTER TABLE privata_audit.read_log DISABLE TRIGGER append_only",
		"UPDATE privata_audit.read_log SET rows = rows + 1 WHERE chain = $1 AND seq = $2",
		"ALTER TABLE privata_audit.read_log ENABLE ALWAYS TRIGGER append_only",
	} {
		args := []any{chain, seq}
		if !strings.Contains(q, "$1") {
			args = nil
		}
		if _, err := conn.Exec(bg, q, args...); err != nil {
			t.Fatal(err)
		}
	}
	out, err = cli(t, "verify", "-c", s.file)
	var code exitCode
	if !errors.As(err, &code) || code != 1 || !strings.Contains(out,
		fmt.Sprintf("chain %s: changed at seq %d", chain, seq)) {
		t.Fatalf("verify after a superuser altered record %s/%d: %v\n%s", chain, seq, err, out)
	}
}

// metric returns the sum of a counter's values whose label sets hold
// every label given (name="value"), from privata serve's /metrics.
func (s *served) metric(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", s.metrics))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, line := range strings.Split(string(body), "\n") {
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(line, l)
		}
		if !ok {
			continue
		}
		var v float64
		fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &v)
		sum += v
	}
	return sum
}

// TestCacheThroughServeFollowsDirectChanges caches point reads in Redis
// through privata serve, then changes and erases the patient directly in
// PostgreSQL: once the change stream has seen each change, the read
// through Privata returns the new answer. Every hit is in the audit log,
// and Redis holds no SSN, name or diagnosis in the clear.
func TestCacheThroughServeFollowsDirectChanges(t *testing.T) {
	redisSrv := cachetest.Start(t, "redis")
	key := func(s string) string {
		sum := sha256.Sum256([]byte(s))
		return base64.StdEncoding.EncodeToString(sum[:])
	}
	s := newServed(t, fmt.Sprintf(`cache:
  backend: redis
  address: %s
  hash_key: %s
  keys: [{id: k1, secret: %s}]
`, redisSrv.Addr, key("hash"), key("k1")))
	s.start(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, s.url("app"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	p := s.patients[3]
	read := func() string {
		var last string
		err := conn.QueryRow(ctx, "SELECT last FROM patients WHERE id = $1", p.ID).Scan(&last)
		if errors.Is(err, pgx.ErrNoRows) {
			return "(no row)"
		}
		if err != nil {
			t.Fatal(err)
		}
		return last
	}
	hitsUntil := func(want string) {
		t.Helper()
		h0 := s.metric(t, "privata_cache_hits_total")
		waitFor(t, "a cached answer "+want, func() bool {
			return read() == want && s.metric(t, "privata_cache_hits_total") > h0
		})
	}
	hitsUntil(p.Last)
	for i := range 10 {
		// Encounters too, by subject.
		rows, err := conn.Query(ctx, "SELECT description FROM encounters WHERE patient = $1",
			s.patients[i].ID)
		if err != nil {
			t.Fatal(err)
		}
		rows.Close()
	}

	direct := s.db.Connect(t)
	if _, err := direct.Exec(ctx, "UPDATE public.patients SET last = 'Directly' WHERE id = $1",
		p.ID); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the read to return the directly changed value", func() bool {
		return read() == "Directly"
	})
	hitsUntil("Directly")

	_, err = direct.Exec(ctx, "DELETE FROM public.encounters WHERE patient = $1", p.ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := direct.Exec(ctx, "DELETE FROM public.patients WHERE id = $1", p.ID); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the erased patient's read to find no row", func() bool {
		return read() == "(no row)"
	})

	hits := s.metric(t, "privata_cache_hits_total")
	for k, v := range redisSrv.Dump(t) {
		for _, q := range s.patients {
			for _, x := range append(q.Values(), q.ID, q.Pseudonym) {
				if strings.Contains(k, x) || bytes.Contains(v, []byte(x)) {
					t.Errorf("Redis holds %q in the clear (key %s)", x, k)
				}
			}
		}
		for _, e := range s.encounters {
			if bytes.Contains(v, []byte(e.Description)) {
				t.Errorf("Redis holds the diagnosis %q in the clear", e.Description)
			}
		}
	}
	conn.Close(ctx)
	s.stop(t)
	var cached int
	if err := direct.QueryRow(ctx, `SELECT count(*) FROM privata_audit.read_log
		WHERE reason LIKE '%served from cache%'`).Scan(&cached); err != nil {
		t.Fatal(err)
	}
	if float64(cached) != hits || hits < 2 {
		t.Fatalf("%v cache hits, %d audit records of hits", hits, cached)
	}
}
