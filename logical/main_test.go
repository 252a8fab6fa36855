package logical

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/privata/privata/audit"
	"github.com/privata/privata/internal/audittest"
	"github.com/privata/privata/internal/pgtest"
)

// consumeChild makes the test binary the consumer process of the kill
// test (see kill_test.go).
var consumeChild = flag.String("logical.consume-child", "",
	"internal: run as the consumer child of TestConsumerSurvivesKill9 (JSON options)")

func TestMain(m *testing.M) {
	flag.Parse()
	if *consumeChild != "" {
		os.Exit(runConsumeChild(*consumeChild))
	}
	os.Exit(pgtest.Main(m))
}

// fixture is a database with the split layout, its audit store, and a
// replication slot of its own (dropped when the test ends).
type fixture struct {
	db    *pgtest.DB
	store *audit.Store
	slot  string
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	db := pgtest.NewDB(t, pgtest.Shared(t))
	audittest.Layout(t, db)
	f := &fixture{db: db, slot: "privata_audit_" + db.Name}
	t.Cleanup(func() { dropSlot(t, db, f.slot) })
	s, err := audit.Open(context.Background(), "us", db.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	f.store = s
	return f
}

// dropSlot removes the test's slot once its consumer has let go of it:
// slots survive their database otherwise and hold WAL back.
func dropSlot(t testing.TB, db *pgtest.DB, slot string) {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, db.URL())
	if err != nil {
		return
	}
	defer conn.Close(ctx)
	for range 100 {
		_, err := conn.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name)
			FROM pg_replication_slots WHERE slot_name = $1`, slot)
		var pgErr *pgconn.PgError
		if err == nil || !(errors.As(err, &pgErr) && pgErr.Code == "55006") {
			if err != nil {
				t.Logf("drop slot %s: %v", slot, err)
			}
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (f *fixture) options() Options {
	return Options{Cluster: "us", URL: f.db.URL(), Store: f.store, Slot: f.slot}
}

// run starts a consumer in the background; the returned function stops it
// and returns Run's error.
func run(t testing.TB, opts Options) (*Consumer, func() error) {
	t.Helper()
	c, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	var once bool
	var result error
	stop := func() error {
		if !once {
			once = true
			cancel()
			result = <-done
		}
		return result
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("consumer: %v", err)
		}
	})
	return c, stop
}

// ensureSlot creates the fixture's slot now, so that changes made before the
// consumer first runs are streamed.
func (f *fixture) ensureSlot(t testing.TB) {
	t.Helper()
	f.db.Exec(t, "SELECT pg_create_logical_replication_slot($1, 'pgoutput')", f.slot)
}

// currentLSN is the end of the WAL written so far (test clusters commit
// asynchronously: the insert position, not the flushed one).
func currentLSN(t testing.TB, conn *pgx.Conn) audit.LSN {
	t.Helper()
	var s string
	err := conn.QueryRow(context.Background(), "SELECT pg_current_wal_insert_lsn()::text").Scan(&s)
	if err != nil {
		t.Fatal(err)
	}
	var l audit.LSN
	if err := l.UnmarshalText([]byte(s)); err != nil {
		t.Fatal(err)
	}
	return l
}

// waitCaughtUp waits until the consumer has made durable everything
// committed before target.
func waitCaughtUp(t testing.TB, c *Consumer, target audit.LSN) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for c.Acked() < target {
		if time.Now().After(deadline) {
			t.Fatalf("consumer stuck at %s, want %s", c.Acked(), target)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// changes reads the store's change records in chain order.
func changes(t testing.TB, s *audit.Store) []*audit.Change {
	t.Helper()
	rows, err := s.Pool().Query(context.Background(), `SELECT lsn::text, ordinal, xid,
			operation, relation, coalesce(subject::text, ''), columns, coalesce(actor, ''),
			coalesce(purpose, ''), coalesce(role, ''), coalesce(application, ''), break_glass
		FROM privata_audit.change_log ORDER BY chain, seq`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []*audit.Change
	for rows.Next() {
		var c audit.Change
		var lsn, subject string
		var xid int64
		err := rows.Scan(&lsn, &c.Ordinal, &xid, &c.Op, &c.Table, &subject, &c.Columns,
			&c.Actor, &c.Purpose, &c.Role, &c.Application, &c.BreakGlass)
		if err != nil {
			t.Fatal(err)
		}
		c.XID = uint32(xid)
		if err := c.LSN.UnmarshalText([]byte(lsn)); err != nil {
			t.Fatal(err)
		}
		if subject != "" {
			if c.Subject, err = audit.ParsePseudonym(subject); err != nil {
				t.Fatal(err)
			}
		}
		out = append(out, &c)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func describe(c *audit.Change) string {
	return fmt.Sprintf("%s %s %v actor=%q purpose=%q role=%q", c.Op, c.Table, c.Columns, c.Actor,
		c.Purpose, c.Role)
}

// execTx runs statements in one transaction on conn.
func execTx(t testing.TB, conn *pgx.Conn, stmts ...string) {
	t.Helper()
	ctx := context.Background()
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	for _, s := range stmts {
		if _, err := tx.Exec(ctx, s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
}

// waitSubscribed waits until c has n subscribers.
func waitSubscribed(t testing.TB, c *Consumer, n int) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		c.subMu.Lock()
		got := len(c.subs)
		c.subMu.Unlock()
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the subscription did not start")
		}
		time.Sleep(time.Millisecond)
	}
}
