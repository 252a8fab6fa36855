package audit

import (
	"context"
	"crypto/rand"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/privata/privata/internal/audittest"
	"github.com/privata/privata/internal/pgtest"
)

// appendChild makes the test binary the child process of the kill test:
// it appends records until killed (see kill_test.go).
var appendChild = flag.String("audit.append-child", "",
	"internal: run as the appending child of TestWriterSurvivesKill9 (url|spool|run)")

func TestMain(m *testing.M) {
	flag.Parse()
	if *appendChild != "" {
		os.Exit(runAppendChild(*appendChild))
	}
	os.Exit(pgtest.Main(m))
}

// newStore gives the test a database with Privata's SQL and opens its
// audit store.
func newStore(t testing.TB) (*pgtest.DB, *Store) {
	t.Helper()
	db := pgtest.NewDB(t, pgtest.Shared(t))
	audittest.Install(t, db)
	s, err := Open(context.Background(), "test", db.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return db, s
}

// newWriter opens a Writer on a fresh spool, closed when the test ends.
func newWriter(t *testing.T, s *Store, opts WriterOptions) *Writer {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = filepath.Join(t.TempDir(), "spool")
	}
	w, err := OpenWriter(context.Background(), s, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		w.Close(ctx)
	})
	return w
}

func randomPseudonym() Pseudonym {
	var p Pseudonym
	rand.Read(p[:])
	p[6] = p[6]&0x0f | 0x40
	p[8] = p[8]&0x3f | 0x80
	return p
}

// sampleRead is a read record as the proxy would make it; i makes its
// fingerprint unique.
func sampleRead(i int, subjects ...Pseudonym) *Read {
	return &Read{
		Actor: "dr.jones", Role: "clinician", ClientAddr: "10.0.0.7:51234",
		Application: "ehr-web", Purpose: "treatment",
		Statement:   "SELECT first, last FROM patients WHERE id = $1",
		Fingerprint: fmt.Sprintf("fp-%d", i),
		Tables:      []string{"public.patients"},
		Columns:     []string{"public.patients.first", "public.patients.last"},
		Decision:    Allowed, Rows: int64(len(subjects)), Subjects: subjects,
	}
}

// sampleChanges are change records as the consumer would make them.
func sampleChanges(lsn LSN, n int, subject Pseudonym) []*Change {
	out := make([]*Change, n)
	for i := range out {
		out[i] = &Change{CommitTime: time.Now(), XID: 777, LSN: lsn, Ordinal: int32(i),
			Op: Update, Table: "privata_identity.patients", Subject: subject,
			Columns: []string{"last"}, Actor: "dr.jones", Purpose: "treatment",
			Role: "clinician", Application: "ehr-web"}
	}
	return out
}

func mustFlush(t *testing.T, w *Writer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
}

// verifyAll fails the test unless every chain in the store verifies.
func verifyAll(t *testing.T, s *Store, key []byte) []*ChainReport {
	t.Helper()
	reps, err := s.Verify(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range reps {
		if !r.OK() {
			t.Errorf("verify: %s", r)
		}
	}
	return reps
}

func count(t *testing.T, s *Store, query string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := s.pool.QueryRow(context.Background(), query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}
