package cache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// notifyStream is a change stream for tests: a trigger on patients sends
// every committed change with NOTIFY, which PostgreSQL delivers at commit,
// in commit order. It stands in for the WAL consumer's subscription (package
// logical), which carries the same facts.
type notifyStream struct {
	url string
	// applied receives each batch's changes after fn handled them.
	applied chan []Change
}

const notifyTrigger = `
CREATE FUNCTION notify_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('cache_test_changes', json_build_object(
    'subject', CASE WHEN TG_OP = 'DELETE' THEN OLD.privata_pseudonym
                    ELSE NEW.privata_pseudonym END,
    'op', lower(TG_OP),
    'at', extract(epoch FROM clock_timestamp()))::text);
  RETURN NULL;
END $$;
CREATE TRIGGER notify_change AFTER INSERT OR UPDATE OR DELETE ON patients
  FOR EACH ROW EXECUTE FUNCTION notify_change();
`

func (s *notifyStream) Subscribe(ctx context.Context,
	fn func(context.Context, []Change) error) error {
	conn, err := pgx.Connect(ctx, s.url)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "LISTEN cache_test_changes"); err != nil {
		return err
	}
	s.applied <- nil // listening
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		var msg struct {
			Subject string
			Op      string
			At      float64
		}
		if err := json.Unmarshal([]byte(n.Payload), &msg); err != nil {
			return err
		}
		ch := Change{Table: "public.patients", Subject: msg.Subject, Op: Op(msg.Op),
			Commit: time.UnixMicro(int64(msg.At * 1e6))}
		if err := fn(ctx, []Change{ch}); err != nil {
			return err
		}
		select {
		case s.applied <- []Change{ch}:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// TestDirectChangeInPostgresInvalidates changes a patient with a client
// connected to PostgreSQL directly, bypassing Privata: once the change
// stream has seen the change, the cached read misses, and the refill
// returns the new value.
func TestDirectChangeInPostgresInvalidates(t *testing.T) {
	pg := newPatientsDB(t)
	pg.db.Exec(t, notifyTrigger)
	next := 0
	eachBackend(t, func(t *testing.T, f *fixture) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		next++
		id := next
		pseudonym := pg.insert(t, id, "Maynard46")
		req := pointRead("clinician", fmt.Sprint(id))
		fill(t, f.cache, req, pg.read(t, id), Dep{"public.patients", pseudonym})
		wantHit(t, f.cache, req, "Maynard46")

		stream := &notifyStream{url: pg.db.URL(), applied: make(chan []Change, 1)}
		done := make(chan error, 1)
		go func() { done <- NewInvalidator(f.cache).Run(ctx, stream, nil) }()
		<-stream.applied
		// Run flushed the cache: changes made while no invalidator ran were
		// not seen.
		res := wantMiss(t, f.cache, req)
		f.cache.Put(ctx, res.Ticket, []byte(pg.read(t, id)), []Dep{{"public.patients", pseudonym}})
		wantHit(t, f.cache, req, "Maynard46")

		pg.update(t, id, "Maynard47")
		seen := <-stream.applied
		if len(seen) != 1 || seen[0].Subject != pseudonym || seen[0].Op != Update {
			t.Fatalf("stream delivered %+v", seen)
		}
		res = wantMiss(t, f.cache, req)
		f.cache.Put(ctx, res.Ticket, []byte(pg.read(t, id)), []Dep{{"public.patients", pseudonym}})
		wantHit(t, f.cache, req, "Maynard47")

		if got := sampleCount(t, f); got != 1 {
			t.Fatalf("commit-to-invalidation delay recorded %d times, want 1", got)
		}
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("run ended with %v", err)
		}
	})
}

// sampleCount is how many delays the fixture's histogram holds.
func sampleCount(t *testing.T, f *fixture) uint64 {
	t.Helper()
	families, err := f.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, fam := range families {
		if fam.GetName() == "privata_cache_invalidation_delay_seconds" {
			return fam.GetMetric()[0].GetHistogram().GetSampleCount()
		}
	}
	return 0
}
