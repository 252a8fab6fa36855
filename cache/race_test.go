package cache

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/privata/privata/internal/pgtest"
)

// patientsDB is a test database with a patients table shaped like the
// split layout's view: an application key, a pseudonym, a value.
type patientsDB struct {
	db   *pgtest.DB
	conn *pgx.Conn
}

func newPatientsDB(t *testing.T) *patientsDB {
	t.Helper()
	db := pgtest.NewDB(t, pgtest.Shared(t))
	db.Exec(t, `CREATE TABLE patients (
		id int PRIMARY KEY,
		privata_pseudonym uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
		name text NOT NULL)`)
	return &patientsDB{db: db, conn: db.Connect(t)}
}

// insert adds a patient and returns its pseudonym.
func (p *patientsDB) insert(t testing.TB, id int, name string) string {
	t.Helper()
	var pseudonym string
	err := p.conn.QueryRow(context.Background(),
		"INSERT INTO patients (id, name) VALUES ($1, $2) RETURNING privata_pseudonym::text",
		id, name).Scan(&pseudonym)
	if err != nil {
		t.Fatal(err)
	}
	return pseudonym
}

// read is the proxy's read from PostgreSQL: one statement, its own
// implicit transaction.
func (p *patientsDB) read(t testing.TB, id int) string {
	t.Helper()
	var name string
	err := p.conn.QueryRow(context.Background(), "SELECT name FROM patients WHERE id = $1", id).
		Scan(&name)
	if err != nil {
		t.Fatal(err)
	}
	return name
}

// update changes a patient directly in PostgreSQL, bypassing Privata.
func (p *patientsDB) update(t testing.TB, id int, name string) {
	t.Helper()
	_, err := p.conn.Exec(context.Background(), "UPDATE patients SET name = $2 WHERE id = $1",
		id, name)
	if err != nil {
		t.Fatal(err)
	}
}

// interleavings returns every order of steps a[0..] and b[0..] that keeps
// each list's own order.
func interleavings(a, b []string) [][]string {
	if len(a) == 0 {
		return [][]string{append([]string(nil), b...)}
	}
	if len(b) == 0 {
		return [][]string{append([]string(nil), a...)}
	}
	var out [][]string
	for _, rest := range interleavings(a[1:], b) {
		out = append(out, append([]string{a[0]}, rest...))
	}
	for _, rest := range interleavings(a, b[1:]) {
		out = append(out, append([]string{b[0]}, rest...))
	}
	return out
}

// TestFillOverlappingAChangeNeverLooksFresh runs a fill (lookup, read from
// PostgreSQL, put) and a change (commit in PostgreSQL, invalidation by the
// change stream) in every possible order, against real PostgreSQL and each
// backend. After both, the entry is either a miss or holds the committed
// value; and when the change was seen before the fill began, it is a hit.
func TestFillOverlappingAChangeNeverLooksFresh(t *testing.T) {
	orders := interleavings([]string{"lookup", "read", "put"}, []string{"commit", "invalidate"})
	if len(orders) != 10 {
		t.Fatalf("%d interleavings, want 10", len(orders))
	}
	pg := newPatientsDB(t)
	id := 0
	eachBackend(t, func(t *testing.T, f *fixture) {
		ctx := context.Background()
		inv := NewInvalidator(f.cache)
		for _, order := range orders {
			t.Run(strings.Join(order, ","), func(t *testing.T) {
				id++
				pseudonym := pg.insert(t, id, "before")
				req := pointRead("clinician", fmt.Sprint(id))
				var ticket Ticket
				var read string
				var committed time.Time
				for _, step := range order {
					switch step {
					case "lookup":
						ticket = wantMiss(t, f.cache, req).Ticket
					case "read":
						read = pg.read(t, id)
					case "put":
						err := f.cache.Put(ctx, ticket, []byte(read), []Dep{{"public.patients", pseudonym}})
						if err != nil {
							t.Fatal(err)
						}
					case "commit":
						pg.update(t, id, "after")
						committed = time.Now()
					case "invalidate":
						err := inv.Apply(ctx, []Change{{Table: "public.patients", Subject: pseudonym,
							Op: Update, Commit: committed}})
						if err != nil {
							t.Fatal(err)
						}
					}
				}

				res := get(t, f.cache, req)
				switch {
				case res.Hit && string(res.Value) != "after":
					t.Fatalf("served %q after the change to %q was seen", res.Value, "after")
				case order[1] == "invalidate" && !res.Hit:
					t.Fatal("a fill that began after the change was seen was not served")
				}
				if strings.Index(strings.Join(order, ","), "read") <
					strings.Index(strings.Join(order, ","), "commit") && res.Hit {
					t.Fatal("a read from before the commit was served")
				}
			})
		}
	})
}

// TestMemcachedStepsInterleaved stops memcached operations, which take
// several round trips, between their steps and runs another instance's
// operation there.
func TestMemcachedStepsInterleaved(t *testing.T) {
	ctx := context.Background()
	dep := Dep{"public.patients", pseudoA}
	change := Change{Table: "public.patients", Subject: pseudoA, Op: Update}

	t.Run("invalidation between a put's check and its write", func(t *testing.T) {
		f := newFixture(t, "memcached", nil)
		other := f.newCache(t, testKeys(t, "k1"), 2*time.Second)
		req := pointRead("clinician", "1")
		ticket := wantMiss(t, f.cache, req).Ticket
		f.backend.(*Memcached).hook = func(point string) {
			if point == "store:marks-checked" {
				if err := other.Invalidate(ctx, change); err != nil {
					t.Error(err)
				}
			}
		}
		if err := f.cache.Put(ctx, ticket, []byte("before"), []Dep{dep}); err != nil {
			t.Fatal(err)
		}
		f.backend.(*Memcached).hook = nil
		if len(f.entryKeys(t)) != 1 {
			t.Fatal("the put did not write: the hook did not run where intended")
		}
		wantMiss(t, f.cache, req)
	})

	t.Run("invalidation between a lookup's entry read and its mark read", func(t *testing.T) {
		f := newFixture(t, "memcached", nil)
		other := f.newCache(t, testKeys(t, "k1"), 2*time.Second)
		req := pointRead("clinician", "1")
		fill(t, f.cache, req, "before", dep)
		ran := false
		f.backend.(*Memcached).hook = func(point string) {
			if point == "lookup:entry-read" && !ran {
				ran = true
				if err := other.Invalidate(ctx, change); err != nil {
					t.Error(err)
				}
			}
		}
		wantMiss(t, f.cache, req)
		if !ran {
			t.Fatal("the hook did not run")
		}
	})

	t.Run("fill between a bump's counter and its marks", func(t *testing.T) {
		f := newFixture(t, "memcached", nil)
		other := f.newCache(t, testKeys(t, "k1"), 2*time.Second)
		req := pointRead("clinician", "1")
		fill(t, f.cache, req, "before", dep)
		// The change committed ("after"); the bump has advanced the counter
		// but not yet raised the marks when another instance misses, reads
		// and fills.
		f.backend.(*Memcached).hook = func(point string) {
			if point != "bump:counter-incremented" {
				return
			}
			f.backend.(*Memcached).hook = nil
			// Hooks run off the test's goroutine: report, do not stop.
			if err := other.Flush(ctx); err != nil {
				t.Error(err)
			}
			res, err := other.Get(ctx, req)
			if err != nil || res.Hit {
				t.Errorf("after a flush: hit=%v err=%v, want a miss", res.Hit, err)
				return
			}
			if err := other.Put(ctx, res.Ticket, []byte("after"), []Dep{dep}); err != nil {
				t.Error(err)
			}
		}
		if err := f.cache.Invalidate(ctx, change); err != nil {
			t.Fatal(err)
		}
		wantHit(t, f.cache, req, "after")
	})

	t.Run("concurrent creations of a missing mark", func(t *testing.T) {
		f := newFixture(t, "memcached", nil)
		other := f.newCache(t, testKeys(t, "k1"), 2*time.Second)
		req := pointRead("clinician", "1")
		ticket := wantMiss(t, f.cache, req).Ticket
		// The invalidation creates the subject's marks while the put is
		// between reading the counter and creating them.
		ran := false
		mc := f.backend.(*Memcached)
		mc.hook = func(point string) {
			if point == "store:counter-read" && !ran {
				ran = true
				if err := other.Invalidate(ctx, change); err != nil {
					t.Error(err)
				}
			}
		}
		if err := f.cache.Put(ctx, ticket, []byte("before"), []Dep{dep}); err != nil {
			t.Fatal(err)
		}
		mc.hook = nil
		if !ran {
			t.Fatal("the hook did not run")
		}
		wantMiss(t, f.cache, req)
	})
}

// TestSessionReadsItsOwnWrite writes through "Privata" (the write commits,
// then Invalidate runs before the client hears of the commit) and reads
// back at once, before any change stream has seen the write.
func TestSessionReadsItsOwnWrite(t *testing.T) {
	pg := newPatientsDB(t)
	id := 0
	eachBackend(t, func(t *testing.T, f *fixture) {
		ctx := context.Background()
		id++
		pseudonym := pg.insert(t, id, "Curt84")
		dep := Dep{"public.patients", pseudonym}
		req := pointRead("clinician", fmt.Sprint(id))
		fill(t, f.cache, req, pg.read(t, id), dep)
		wantHit(t, f.cache, req, "Curt84")

		pg.update(t, id, "Curt85")
		if err := f.cache.Invalidate(ctx, Change{Table: dep.Table, Subject: pseudonym,
			Op: Update}); err != nil {
			t.Fatal(err)
		}
		res := wantMiss(t, f.cache, req)
		if err := f.cache.Put(ctx, res.Ticket, []byte(pg.read(t, id)), []Dep{dep}); err != nil {
			t.Fatal(err)
		}
		wantHit(t, f.cache, req, "Curt85")
	})
}
