package regions_test

import (
	"testing"
	"time"

	"github.com/privata/privata/regions"
)

// prepare runs an insert into t_marks in a transaction prepared as gid on
// each region's database.
func (s *setup) prepare(t *testing.T, gid, mark string) {
	t.Helper()
	for _, r := range []string{"us", "eu"} {
		s.exec(t, r, `CREATE TABLE IF NOT EXISTS t_marks (mark text)`)
		tx, err := s.conns[r].Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO t_marks VALUES ($1)`, mark); err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, regions.PrepareSQL(gid, r)); err != nil {
			t.Fatal(err)
		}
		// The transaction is prepared: the session is free again.
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

func (s *setup) marks(t *testing.T, region, mark string) int {
	t.Helper()
	var n int
	if err := s.conns[region].QueryRow(ctx, `SELECT count(*) FROM t_marks WHERE mark = $1`, mark).
		Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestTwoPhaseDecisionsAndRecovery(t *testing.T) {
	s := newSetup(t, shared(t), "move")
	c := &regions.TwoPhase{Pools: s.pools}

	// The first decision wins.
	gid := regions.NewGID("us")
	if ok, err := c.Decide(ctx, gid); err != nil || !ok {
		t.Fatalf("decide: %v %v", ok, err)
	}
	if ok, err := c.Decide(ctx, gid); err != nil || !ok {
		t.Fatalf("decide again: %v %v", ok, err)
	}

	// A coordinator that died after deciding: recovery commits both parts.
	committed := regions.NewGID("eu")
	s.prepare(t, committed, "committed")
	if ok, err := c.Decide(ctx, committed); err != nil || !ok {
		t.Fatal(ok, err)
	}
	// One that died before: recovery rolls both parts back.
	abandoned := regions.NewGID("us")
	s.prepare(t, abandoned, "abandoned")
	// One still in progress (young): recovery leaves it alone.
	young := regions.NewGID("us")

	got, err := c.Recover(ctx, 0)
	if err != nil || got.Committed != 2 || got.RolledBack != 2 {
		t.Fatalf("recover: %+v %v; want 2 committed and 2 rolled back", got, err)
	}
	for _, r := range []string{"us", "eu"} {
		if s.marks(t, r, "committed") != 1 || s.marks(t, r, "abandoned") != 0 {
			t.Fatalf("%s: committed %d, abandoned %d", r, s.marks(t, r, "committed"), s.marks(t, r, "abandoned"))
		}
	}
	// The abandoned transaction's coordinator, back, finds it aborted.
	if ok, err := c.Decide(ctx, abandoned); err != nil || ok {
		t.Fatalf("decide after recovery aborted it: %v %v", ok, err)
	}

	s.prepare(t, young, "young")
	got, err = c.Recover(ctx, time.Hour)
	if err != nil || got.Committed+got.RolledBack != 0 {
		t.Fatalf("recover with a young transaction: %+v %v", got, err)
	}
	for _, r := range []string{"us", "eu"} {
		s.exec(t, r, regions.RollbackSQL(young, r))
	}
	if err := c.Forget(ctx, committed); err != nil {
		t.Fatal(err)
	}
}
