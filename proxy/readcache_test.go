package proxy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/privata/privata/cache"
	"github.com/privata/privata/internal/cachetest"
)

// testCache is a read cache over a backend of kind, with its metrics.
type testCache struct {
	*cache.Cache
	reg *prometheus.Registry
	srv *cachetest.Server // nil for memory
}

func newTestCache(t testing.TB, kind string) *testCache {
	t.Helper()
	tc := &testCache{reg: prometheus.NewRegistry()}
	var b cache.Backend
	var err error
	switch kind {
	case "memory":
		b = cache.NewMemory(64 << 20)
	case "redis":
		tc.srv = cachetest.Start(t, kind)
		b, err = cache.NewRedis(cache.RedisOptions{Address: tc.srv.Addr, Prefix: "privata:",
			Timeout: 500 * time.Millisecond, MarkTTL: time.Hour})
	case "memcached":
		tc.srv = cachetest.Start(t, kind)
		b, err = cache.NewMemcached([]string{tc.srv.Addr}, "privata:", 500*time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	secret := sha256.Sum256([]byte("proxy test key"))
	keys, err := cache.NewKeyring(cache.Key{ID: "k1", Secret: secret[:]})
	if err != nil {
		t.Fatal(err)
	}
	hash := sha256.Sum256([]byte("proxy test hash key"))
	tc.Cache, err = cache.New(cache.Options{Backend: b, Keys: keys, HashKey: hash[:],
		Prefix: "privata:", TTL: time.Minute, Timeout: 500 * time.Millisecond,
		Metrics: cache.NewMetrics(tc.reg)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tc.Close() })
	return tc
}

// count sums a cache counter over its label sets whose labels include
// every one given (name=value).
func (tc *testCache) count(t testing.TB, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := tc.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			for _, want := range labels {
				k, v, _ := strings.Cut(want, "=")
				found := false
				for _, lp := range m.GetLabel() {
					found = found || lp.GetName() == k && lp.GetValue() == v
				}
				if !found {
					continue metric
				}
			}
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}

func (tc *testCache) hits(t testing.TB) float64 {
	return tc.count(t, "privata_cache_hits_total")
}

// pointReader reads a patient's SSN and last name through conn.
func pointReader(t testing.TB, conn *pgx.Conn) func(id string) string {
	return func(id string) string {
		t.Helper()
		var ssn, last string
		err := conn.QueryRow(context.Background(), "SELECT ssn, last FROM patients WHERE id = $1",
			id).Scan(&ssn, &last)
		if err != nil {
			t.Fatalf("read %s: %v", id, err)
		}
		return ssn + "|" + last
	}
}

// TestCacheAnswersPointReads runs point reads through Privata with the
// cache on each backend, in both protocols: repeated reads are answered
// from the cache with what PostgreSQL answered, audited as served from
// cache; a write through Privata is read back at once; roles never share
// an entry; break-glass reads and reads in a transaction block never come
// from the cache.
func TestCacheAnswersPointReads(t *testing.T) {
	for _, kind := range []string{"memory", "redis", "memcached"} {
		t.Run(kind, func(t *testing.T) {
			tc := newTestCache(t, kind)
			re := newReadEnv(t, readOptions{cache: tc.Cache})
			P := re.patients
			ctx := context.Background()
			for _, mode := range modes {
				conn := connectMode(t, re.env, "clinician", mode)
				read := pointReader(t, conn)
				start := len(re.records(t))
				h0 := tc.hits(t)
				want := P[0].SSN + "|" + P[0].Last
				eventually(t, "a repeated read is answered from the cache", func() error {
					if got := read(P[0].ID); got != want {
						t.Fatalf("%s: read %q, want %q", mode, got, want)
					}
					if tc.hits(t) == h0 {
						return fmt.Errorf("no hit yet")
					}
					return nil
				})
				hits := tc.hits(t) - h0
				recs := re.records(t)[start:]
				cached := 0
				for _, r := range recs {
					if strings.Contains(r.Reason, "served from cache") {
						cached++
						if r.Rows != 1 || len(r.Subjects) != 1 ||
							r.Subjects[0] != P[0].Pseudonym.String() {
							t.Errorf("%s: a cache hit's record: %+v", mode, r)
						}
					}
				}
				if float64(cached) != hits || len(recs) < int(hits)+1 {
					t.Fatalf("%s: %v hits, %d records of them, %d records", mode, hits, cached,
						len(recs))
				}

				// Read your writes: an update through Privata is seen at once.
				newLast := fmt.Sprintf("Renamed%d", len(recs))
				if _, err := conn.Exec(ctx, "UPDATE patients SET last = $2 WHERE id = $1",
					P[0].ID, newLast); err != nil {
					t.Fatal(err)
				}
				if got := read(P[0].ID); got != P[0].SSN+"|"+newLast {
					t.Fatalf("%s: after an update through Privata, read %q", mode, got)
				}
				P[0].Last = newLast

				// Break-glass reads and reads in a transaction block bypass it.
				h1 := tc.hits(t)
				tx, err := conn.Begin(ctx)
				if err != nil {
					t.Fatal(err)
				}
				for range 3 {
					var ssn string
					if err := tx.QueryRow(ctx, "SELECT ssn, last FROM patients WHERE id = $1",
						P[0].ID).Scan(&ssn, new(string)); err != nil {
						t.Fatal(err)
					}
				}
				tx.Commit(ctx)
				glass := connectMode(t, re.env, "clinician", mode)
				if _, err := glass.Exec(ctx, "SET privata.break_glass = on"); err != nil {
					t.Fatal(err)
				}
				for range 3 {
					pointReader(t, glass)(P[0].ID)
				}
				if tc.hits(t) != h1 {
					t.Fatalf("%s: a read in a transaction block or a break-glass read came "+
						"from the cache", mode)
				}
			}

			// Two roles never share an entry: reception, reading what
			// clinician read, gets its own masked answer.
			for range 3 {
				got := pointReader(t, re.connect(t, "reception"))(P[0].ID)
				if strings.Contains(got, P[0].SSN) {
					t.Fatalf("reception read %q: clinician's cached answer", got)
				}
			}
			if tc.srv != nil {
				assertNothingInTheClear(t, tc.srv, P)
			}
		})
	}
}

// assertNothingInTheClear scans every key and value the backend holds for
// the patients' values.
func assertNothingInTheClear(t *testing.T, srv *cachetest.Server, P []*testPatient) {
	t.Helper()
	dump := srv.Dump(t)
	if len(dump) < 5 {
		t.Fatalf("the backend holds %d keys: the scan would prove little", len(dump))
	}
	for k, v := range dump {
		for _, p := range P {
			for _, s := range append([]string{p.ID, p.SSN, p.First, p.Last, p.Notes,
				p.Pseudonym.String()}, p.Diagnoses...) {
				if strings.Contains(k, s) || bytes.Contains(v, []byte(s)) {
					t.Errorf("%s holds %q in the clear (key %s)", srv.Kind, s, k)
				}
			}
		}
	}
}

// TestCacheAnswersEveryExtendedProtocolShape answers from the cache a
// statement whose cycle also parses (Parse, Bind, Describe portal,
// Execute, Sync), a portal fetched in parts and a child table read by
// subject, and checks each answer against PostgreSQL's.
func TestCacheAnswersEveryExtendedProtocolShape(t *testing.T) {
	tc := newTestCache(t, "memory")
	re := newReadEnv(t, readOptions{cache: tc.Cache})
	P := re.patients
	pc := re.connect(t, "clinician").PgConn()
	ctx := context.Background()
	run := func(sql string, arg string) string {
		res := pc.ExecParams(ctx, sql, [][]byte{[]byte(arg)}, nil, nil, nil).Read()
		if res.Err != nil {
			t.Fatal(res.Err)
		}
		var b strings.Builder
		for _, f := range res.FieldDescriptions {
			b.WriteString(f.Name + ";")
		}
		for _, r := range res.Rows {
			fmt.Fprintf(&b, "%q;", r)
		}
		return b.String() + res.CommandTag.String()
	}
	for _, q := range []struct{ sql, arg string }{
		{"SELECT notes, first FROM patients WHERE id = $1", P[1].ID},
		{"SELECT description, start FROM encounters WHERE patient = $1 ORDER BY start", P[2].ID},
	} {
		first := run(q.sql, q.arg)
		h0 := tc.hits(t)
		eventually(t, "a hit", func() error {
			if got := run(q.sql, q.arg); got != first {
				t.Fatalf("answer %s, want %s", got, first)
			}
			if tc.hits(t) == h0 {
				return fmt.Errorf("no hit")
			}
			return nil
		})
	}
	w := re.wire(t, "clinician")
	query := "SELECT description FROM encounters WHERE patient = $1 ORDER BY start"
	bind := &pgproto3.Bind{DestinationPortal: "p", PreparedStatement: "e",
		Parameters: [][]byte{[]byte(P[2].ID)}}
	closeBoth := []pgproto3.FrontendMessage{&pgproto3.Close{ObjectType: 'P', Name: "p"},
		&pgproto3.Close{ObjectType: 'S', Name: "e"}, &pgproto3.Sync{}}
	fills := tc.count(t, "privata_cache_fills_total", "result=stored")
	w.send(append([]pgproto3.FrontendMessage{&pgproto3.Parse{Name: "e", Query: query}, bind,
		&pgproto3.Execute{Portal: "p"}}, closeBoth...)...)
	expect(t, w.recv("ReadyForQuery"), "ParseComplete", "BindComplete",
		"DataRow:"+P[2].Diagnoses[0], "DataRow:"+P[2].Diagnoses[1],
		"DataRow:"+P[2].Diagnoses[2], "CommandComplete:SELECT 3", "CloseComplete",
		"CloseComplete", "ReadyForQuery:I")
	eventually(t, "the fill", func() error {
		if tc.count(t, "privata_cache_fills_total", "result=stored") == fills {
			return fmt.Errorf("not stored yet")
		}
		return nil
	})
	h0 := tc.hits(t)
	for range 2 {
		w.send(append([]pgproto3.FrontendMessage{&pgproto3.Parse{Name: "e", Query: query}, bind,
			&pgproto3.Execute{Portal: "p", MaxRows: 2}, &pgproto3.Execute{Portal: "p", MaxRows: 2}},
			closeBoth...)...)
		expect(t, w.recv("ReadyForQuery"), "ParseComplete", "BindComplete",
			"DataRow:"+P[2].Diagnoses[0], "DataRow:"+P[2].Diagnoses[1], "PortalSuspended",
			"DataRow:"+P[2].Diagnoses[2], "CommandComplete:SELECT 1", "CloseComplete",
			"CloseComplete", "ReadyForQuery:I")
	}
	if tc.hits(t) != h0+2 {
		t.Errorf("%v hits for the portal fetched in parts, want 2", tc.hits(t)-h0)
	}

	// A write of the same pipeline, between the read's Bind and its
	// Execute: the read sees it, as in PostgreSQL, and is not answered from
	// the cache.
	read := &pgproto3.Parse{Name: "r", Query: "SELECT last FROM patients WHERE id = $1"}
	w.send(read, &pgproto3.Sync{})
	w.recv("ReadyForQuery")
	fills = tc.count(t, "privata_cache_fills_total", "result=stored")
	w.send(&pgproto3.Bind{PreparedStatement: "r", Parameters: [][]byte{[]byte(P[4].ID)}},
		&pgproto3.Execute{}, &pgproto3.Sync{})
	expect(t, w.recv("ReadyForQuery"), "BindComplete", "DataRow:"+P[4].Last,
		"CommandComplete:SELECT 1", "ReadyForQuery:I")
	eventually(t, "the fill", func() error {
		if tc.count(t, "privata_cache_fills_total", "result=stored") == fills {
			return fmt.Errorf("not stored yet")
		}
		return nil
	})
	h1 := tc.hits(t)
	w.send(&pgproto3.Parse{Name: "u", Query: "UPDATE patients SET last = 'Pipelined' " +
		"WHERE id = $1"},
		&pgproto3.Bind{DestinationPortal: "a", PreparedStatement: "r",
			Parameters: [][]byte{[]byte(P[4].ID)}},
		&pgproto3.Bind{DestinationPortal: "b", PreparedStatement: "u",
			Parameters: [][]byte{[]byte(P[4].ID)}},
		&pgproto3.Execute{Portal: "b"}, &pgproto3.Execute{Portal: "a"}, &pgproto3.Sync{})
	expect(t, w.recv("ReadyForQuery"), "ParseComplete", "BindComplete", "BindComplete",
		"CommandComplete:UPDATE 1", "DataRow:Pipelined", "CommandComplete:SELECT 1",
		"ReadyForQuery:I")
	if tc.hits(t) != h1+1 {
		t.Errorf("%v hits: want the Bind's lookup only", tc.hits(t)-h1)
	}
}

// TestCacheBackendKilledMidWorkload kills the backend while clients read
// through Privata: every read still gets PostgreSQL's answer, and once the
// backend is back the cache answers again.
func TestCacheBackendKilledMidWorkload(t *testing.T) {
	for _, kind := range []string{"redis", "memcached"} {
		t.Run(kind, func(t *testing.T) {
			tc := newTestCache(t, kind)
			re := newReadEnv(t, readOptions{cache: tc.Cache})
			P := re.patients
			var reads, wrong atomic.Int64
			stop := make(chan struct{})
			var wg sync.WaitGroup
			for c := range 3 {
				conn := re.connect(t, "clinician")
				wg.Go(func() {
					for i := c; ; i++ {
						select {
						case <-stop:
							return
						default:
						}
						p := P[i%len(P)]
						var ssn, last string
						err := conn.QueryRow(context.Background(), "SELECT ssn, last FROM "+
							"patients WHERE id = $1", p.ID).Scan(&ssn, &last)
						if err != nil || ssn != p.SSN || last != p.Last {
							wrong.Add(1)
						}
						reads.Add(1)
					}
				})
			}
			waitReads := func(n int64) {
				target := reads.Load() + n
				eventually(t, "reads", func() error {
					if reads.Load() < target {
						return fmt.Errorf("%d reads", reads.Load())
					}
					return nil
				})
			}
			waitReads(200)
			tc.srv.Kill()
			waitReads(200)
			tc.srv.Restart(t)
			h0 := tc.hits(t)
			eventually(t, "hits once the backend is back", func() error {
				if tc.hits(t) <= h0 {
					return fmt.Errorf("no hit yet")
				}
				return nil
			})
			close(stop)
			wg.Wait()
			if wrong.Load() > 0 {
				t.Fatalf("%d of %d reads failed or were wrong", wrong.Load(), reads.Load())
			}
			if tc.count(t, "privata_cache_errors_total") == 0 {
				t.Error("no backend error was counted while it was down")
			}
		})
	}
}

// A session cannot make the cache answer other sessions from its own
// temporary tables: a temporary relation named like a split table, or
// renamed to such a name, is refused; a session that creates any
// temporary relation neither fills nor reads the cache; and one made where
// the analysis cannot see does not change what the cache holds.
func TestCacheIgnoresSessionsWithTemporaryTables(t *testing.T) {
	tc := newTestCache(t, "memory")
	re := newReadEnv(t, readOptions{cache: tc.Cache})
	P := re.patients
	ctx := context.Background()
	a := connectMode(t, re.env, "clinician", pgx.QueryExecModeExec)
	if _, err := a.Exec(ctx, "CREATE TEMP TABLE patients (id uuid PRIMARY KEY, ssn text, last text)"); sqlstate(err) != codeFeatureNotSupport {
		t.Fatalf("a temporary patients table: %v, want 0A000", err)
	}
	if _, err := a.Exec(ctx, "CREATE TEMP TABLE scratch (id uuid PRIMARY KEY, ssn text, last text)"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Exec(ctx, "INSERT INTO scratch VALUES ($1, '000-00-0000', 'POISONED')", P[0].ID); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Exec(ctx, "ALTER TABLE scratch RENAME TO patients"); sqlstate(err) != codeFeatureNotSupport {
		t.Fatalf("renaming a temporary table to patients: %v, want 0A000", err)
	}
	// Session a made a temporary relation: it neither fills nor reads
	// the cache.
	readA := pointReader(t, a)
	want := P[0].SSN + "|" + P[0].Last
	h0 := tc.hits(t)
	for range 3 {
		if got := readA(P[0].ID); got != want {
			t.Fatalf("session a reads %q, want %q", got, want)
		}
	}
	if tc.hits(t) != h0 {
		t.Fatal("a session with a temporary relation was answered from the cache")
	}
	b := connectMode(t, re.env, "clinician", pgx.QueryExecModeExec)
	readB := pointReader(t, b)
	for range 3 {
		if got := readB(P[0].ID); got != want {
			t.Fatalf("session b reads %q, want %q", got, want)
		}
	}
	if tc.hits(t) == h0 {
		t.Fatal("session b's repeated reads were never answered from the cache")
	}
	h1 := tc.hits(t)
	for range 3 {
		if got := readA(P[0].ID); got != want {
			t.Fatalf("session a, after b filled the cache: %q", got)
		}
	}
	if tc.hits(t) != h1 {
		t.Fatal("a session with a temporary relation was answered from the cache")
	}

	// A temporary table made where the analysis cannot see: EXECUTE in a
	// DO block is refused, but a function created on the cluster directly
	// may run it. The point read the cache may answer then runs on the
	// table Privata resolved (public.patients), for every session.
	c := connectMode(t, re.env, "clinician", pgx.QueryExecModeExec)
	mk := `EXECUTE 'CREATE TEMP TABLE pat' || 'ients (id uuid PRIMARY KEY, ssn text, last text)'`
	if _, err := c.Exec(ctx, `DO $$BEGIN `+mk+`; END$$`); sqlstate(err) != codeInsufficientPriv {
		t.Fatalf("dynamic SQL in a DO block: %v, want 42501", err)
	}
	if _, err := re.env.admin(t).Exec(ctx, `CREATE FUNCTION public.make_scratch() RETURNS void
		LANGUAGE plpgsql AS $$BEGIN `+mk+`; END$$`); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, "SELECT public.make_scratch()"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, "INSERT INTO pg_temp.patients VALUES ($1, '000-00-0000', 'POISONED')", P[1].ID); err != nil {
		t.Fatal(err)
	}
	readC := pointReader(t, c)
	want1 := P[1].SSN + "|" + P[1].Last
	for range 3 {
		if got := readC(P[1].ID); got != want1 {
			t.Fatalf("session c's point read: %q, want the table's %q", got, want1)
		}
	}
	for range 3 {
		if got := readB(P[1].ID); got != want1 {
			t.Fatalf("session b after session c: %q, want %q", got, want1)
		}
	}
}
