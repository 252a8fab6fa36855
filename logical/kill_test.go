package logical

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/privata/privata/audit"
)

// childOptions is what the kill test tells its consumer child.
type childOptions struct {
	URL          string
	Slot         string
	BatchRecords int
}

// runConsumeChild runs a consumer, restarting it after errors as the server
// does, until the process is killed.
func runConsumeChild(arg string) int {
	var o childOptions
	if err := json.Unmarshal([]byte(arg), &o); err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 2
	}
	ctx := context.Background()
	s, err := audit.Open(ctx, "us", o.URL)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 2
	}
	c, err := New(Options{Cluster: "us", URL: o.URL, Store: s, Slot: o.Slot,
		BatchRecords: o.BatchRecords})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 2
	}
	for {
		if err := c.Run(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// ledger is the workload's own account of what it committed: changes per
// table, subject and operation.
type ledger struct {
	mu     sync.Mutex
	counts map[string]int
	txns   int
}

func key(table, subject string, op audit.Op) string {
	return table + " " + subject + " " + string(op)
}

func (l *ledger) add(pending map[string]int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for k, n := range pending {
		l.counts[k] += n
	}
	l.txns++
}

// workload changes the split tables from one connection until ctx ends:
// new patients, updates, encounters added and deleted, a big transaction
// now and then, and transactions rolled back. Only what COMMIT confirmed is
// booked.
func workload(ctx context.Context, url string, id int, l *ledger) error {
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	var mine []string // pseudonyms of this worker's patients
	for n := 0; ctx.Err() == nil; n++ {
		pending := map[string]int{}
		tx, err := conn.Begin(context.Background())
		if err != nil {
			return err
		}
		step := func(sql string, args ...any) (int64, error) {
			tag, err := tx.Exec(context.Background(), sql, args...)
			return tag.RowsAffected(), err
		}
		_, err = step("SELECT set_config('privata.actor', $1, true)", fmt.Sprintf("worker-%d", id))
		var created string
		switch a := rand.IntN(10); {
		case err != nil:
		case len(mine) == 0 || a < 3:
			// Through the view, as the application writes: its trigger
			// inserts the identity row and the clinical row.
			var id string
			err = tx.QueryRow(context.Background(), `INSERT INTO public.patients (id, ssn, last)
				VALUES (gen_random_uuid(), '999-00-0000', 'Doe') RETURNING id::text`).Scan(&id)
			if err == nil {
				err = tx.QueryRow(context.Background(), `SELECT privata_pseudonym::text
					FROM privata_identity.patients WHERE id = $1`, id).Scan(&created)
				pending[key("privata_identity.patients", created, audit.Insert)]++
				pending[key("privata_clinical.patients", created, audit.Insert)]++
			}
		case a < 6:
			p := mine[rand.IntN(len(mine))]
			var rows int64
			rows, err = step(`UPDATE privata_identity.patients SET last = md5(random()::text)
				WHERE privata_pseudonym = $1`, p)
			pending[key("privata_identity.patients", p, audit.Update)] += int(rows)
			k := 1 + rand.IntN(20)
			if err == nil {
				rows, err = step(`INSERT INTO privata_clinical.encounters
					(id, privata_pseudonym, description)
					SELECT gen_random_uuid(), $1, 'visit' FROM generate_series(1, $2::int)`, p, k)
				pending[key("privata_clinical.encounters", p, audit.Insert)] += int(rows)
			}
		case a < 8:
			p := mine[rand.IntN(len(mine))]
			var rows int64
			rows, err = step(`DELETE FROM privata_clinical.encounters WHERE privata_pseudonym = $1`, p)
			pending[key("privata_clinical.encounters", p, audit.Delete)] += int(rows)
		case a == 8 && n%10 == 0:
			// A big transaction, written by the consumer in several batches.
			p := mine[rand.IntN(len(mine))]
			var rows int64
			rows, err = step(`INSERT INTO privata_clinical.encounters
					(id, privata_pseudonym, description)
				SELECT gen_random_uuid(), $1, 'bulk' FROM generate_series(1, 3000)`, p)
			pending[key("privata_clinical.encounters", p, audit.Insert)] += int(rows)
		default:
			// Changes rolled back leave no record.
			_, err = step(`UPDATE privata_identity.patients SET last = 'rolled back'
				WHERE privata_pseudonym = $1`, mine[rand.IntN(len(mine))])
			if err == nil {
				err = errRollback
			}
		}
		if err != nil {
			tx.Rollback(context.Background())
			if errors.Is(err, errRollback) {
				continue
			}
			return err
		}
		if err := tx.Commit(context.Background()); err != nil {
			return err
		}
		l.add(pending)
		if created != "" {
			mine = append(mine, created)
		}
	}
	return nil
}

var errRollback = errors.New("roll back")

func TestConsumerSurvivesKill9(t *testing.T) {
	f := newFixture(t)
	f.ensureSlot(t)
	ctx, stopLoad := context.WithCancel(context.Background())
	l := &ledger{counts: map[string]int{}}
	var wg sync.WaitGroup
	loadErr := make(chan error, 3)
	for id := range 3 {
		wg.Go(func() {
			if err := workload(ctx, f.db.URL(), id, l); err != nil {
				loadErr <- err
			}
		})
	}

	arg, _ := json.Marshal(childOptions{URL: f.db.URL(), Slot: f.slot, BatchRecords: 500})
	for run := range 10 {
		cmd := exec.Command(os.Args[0], "-test.run=^$", "-logical.consume-child="+string(arg))
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(300+rand.IntN(1200)) * time.Millisecond)
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		cmd.Wait()
		t.Logf("run %d: killed with %d records in the store; stderr: %q", run,
			count(t, f.store), stderr.String())
	}
	// The children must have done part of the work, or the kills prove
	// nothing.
	if count(t, f.store) == 0 {
		t.Fatal("the killed consumers wrote no record")
	}
	stopLoad()
	wg.Wait()
	close(loadErr)
	for err := range loadErr {
		t.Fatalf("workload: %v", err)
	}
	conn := f.db.Connect(t)
	target := currentLSN(t, conn)

	c, stop := run(t, f.options())
	waitCaughtUp(t, c, target)
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	got := map[string]int{}
	total := 0
	for _, ch := range changes(t, f.store) {
		got[key(ch.Table, ch.Subject.String(), ch.Op)]++
		total++
	}
	missing, extra := 0, 0
	for k, n := range l.counts {
		if n == 0 {
			continue
		}
		switch {
		case got[k] < n:
			missing += n - got[k]
			t.Errorf("%s: %d records, %d committed", k, got[k], n)
		case got[k] > n:
			extra += got[k] - n
			t.Errorf("%s: %d records, %d committed", k, got[k], n)
		}
		delete(got, k)
	}
	for k, n := range got {
		extra += n
		t.Errorf("%s: %d records of changes never committed", k, n)
	}
	if missing > 0 || extra > 0 || t.Failed() {
		t.Fatalf("%d changes missing, %d recorded more than once or never committed", missing, extra)
	}
	var distinct int
	err := f.store.Pool().QueryRow(context.Background(),
		"SELECT count(DISTINCT (lsn, ordinal)) FROM privata_audit.change_log").Scan(&distinct)
	if err != nil || distinct != total {
		t.Fatalf("%d distinct (lsn, ordinal) among %d records (%v)", distinct, total, err)
	}
	verify(t, f.store)
	t.Logf("%d transactions committed, %d change records, all accounted for", l.txns, total)
}
