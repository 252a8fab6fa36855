package logical

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/privata/privata/audit"
	"github.com/privata/privata/internal/pgtest"
)

const (
	patientID = "3edac2e3-d223-6fae-d515-daf96ef6bc76"
	pseudonym = "0b7e1f2a-9c4d-4e5f-8a6b-1c2d3e4f5a6b"
)

func TestChangesAreRecordedWithColumnsAndContextNeverValues(t *testing.T) {
	f := newFixture(t)
	f.ensureSlot(t)
	conn := f.db.Connect(t)
	// The application writes its views; their triggers write the base
	// tables.
	execTx(t, conn,
		"SET LOCAL ROLE clinician",
		"SET LOCAL privata.actor = 'dr.jones'",
		"SET LOCAL privata.purpose = 'treatment'",
		"SET LOCAL application_name = 'ehr-web'",
		`INSERT INTO public.patients (id, ssn, first, last, marital, gender)
		 VALUES ('`+patientID+`', '999-17-5017', 'Maynard46', 'Mosciski958', 'S', 'M')`)
	execTx(t, conn,
		"SET LOCAL ROLE clinician",
		"SET LOCAL privata.actor = 'dr.who'",
		"SET LOCAL privata.purpose = 'billing'",
		"SET LOCAL privata.break_glass = 'on'",
		"SET LOCAL application_name = 'ehr-web'",
		"UPDATE public.patients SET last = 'Smith', first = 'Maynard46' WHERE id = '"+
			patientID+"'",
		// Straight to the base table, an update that changes nothing.
		"UPDATE privata_identity.patients SET last = 'Smith' WHERE id = '"+patientID+"'",
		"DELETE FROM public.patients WHERE id = '"+patientID+"'")
	target := currentLSN(t, conn)
	var pseudonym string
	err := conn.QueryRow(context.Background(), `SELECT privata_pseudonym::text
		FROM privata_identity.patients WHERE id = $1`, patientID).Scan(&pseudonym)
	if !errors.Is(err, pgx.ErrNoRows) {
		t.Fatalf("the patient is still there after the delete (%v)", err)
	}

	c, _ := run(t, f.options())
	waitCaughtUp(t, c, target)

	got := changes(t, f.store)
	const jones = `actor="dr.jones" purpose="treatment" role="clinician"`
	const who = `actor="dr.who" purpose="billing" role="clinician"`
	want := []string{
		"insert privata_identity.patients [id privata_pseudonym privata_region ssn first last] " +
			jones,
		"insert privata_clinical.patients [privata_pseudonym marital gender] " + jones,
		"update privata_identity.patients [last] " + who,
		"update privata_identity.patients [] " + who,
		"delete privata_identity.patients [id privata_pseudonym privata_region ssn first last] " +
			who,
		"delete privata_clinical.patients [privata_pseudonym marital gender] " + who,
	}
	var desc []string
	for _, c := range got {
		desc = append(desc, describe(c))
	}
	if !slices.Equal(desc, want) {
		t.Fatalf("change records:\n%s\nwant:\n%s", strings.Join(desc, "\n"), strings.Join(want, "\n"))
	}
	// The row is gone; its records name it by the pseudonym it had.
	pseudonym = got[0].Subject.String()
	for i, c := range got {
		if c.Subject.IsZero() || c.Subject.String() != pseudonym {
			t.Errorf("record %d names subject %s, want the row's pseudonym", i, c.Subject)
		}
		if c.Application != "ehr-web" || c.BreakGlass != (i >= 2) {
			t.Errorf("record %d: application %q break_glass %v", i, c.Application, c.BreakGlass)
		}
	}
	if got[0].XID != got[1].XID || got[0].LSN != got[1].LSN || got[2].XID == got[0].XID ||
		got[2].LSN <= got[0].LSN || got[3].Ordinal != 1 || got[5].Ordinal != 3 {
		t.Errorf("transaction ids and LSNs do not follow the transactions: %+v", got)
	}
	var text string
	err = f.store.Pool().QueryRow(context.Background(),
		`SELECT string_agg(c::text, ' ') FROM privata_audit.change_log c`).Scan(&text)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"999-17-5017", "Maynard46", "Mosciski958", "Smith"} {
		if strings.Contains(text, v) {
			t.Errorf("the change log holds the value %q", v)
		}
	}
	verify(t, f.store)
}

func verify(t testing.TB, s *audit.Store) {
	t.Helper()
	reps, err := s.Verify(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range reps {
		if !r.OK() {
			t.Errorf("verify: %s", r)
		}
	}
}

func TestUnchangedToastedColumnsAreNotNamed(t *testing.T) {
	f := newFixture(t)
	f.ensureSlot(t)
	conn := f.db.Connect(t)
	// Random text does not compress: it is stored out of line (TOAST).
	b := make([]byte, 20000)
	rand.Read(b)
	big := hex.EncodeToString(b)
	ctx := context.Background()
	_, err := conn.Exec(ctx, `INSERT INTO privata_clinical.patients (privata_pseudonym, notes)
		VALUES ($1, $2)`, pseudonym, big)
	if err != nil {
		t.Fatal(err)
	}
	execTx(t, conn, "UPDATE privata_clinical.patients SET marital = 'M'")
	execTx(t, conn, "UPDATE privata_clinical.patients SET notes = notes || 'x'")
	target := currentLSN(t, conn)

	c, _ := run(t, f.options())
	waitCaughtUp(t, c, target)
	got := changes(t, f.store)
	if len(got) != 3 || !slices.Equal(got[1].Columns, []string{"marital"}) ||
		!slices.Equal(got[2].Columns, []string{"notes"}) {
		var desc []string
		for _, c := range got {
			desc = append(desc, describe(c))
		}
		t.Fatalf("records:\n%s\nwant the insert, an update of [marital], an update of [notes]",
			strings.Join(desc, "\n"))
	}
}

func TestTruncateWritesARecordPerTable(t *testing.T) {
	f := newFixture(t)
	f.ensureSlot(t)
	conn := f.db.Connect(t)
	execTx(t, conn, `INSERT INTO privata_clinical.patients (privata_pseudonym) VALUES ('`+pseudonym+`')`,
		`INSERT INTO privata_clinical.encounters (id, privata_pseudonym)
		 VALUES (gen_random_uuid(), '`+pseudonym+`')`)
	execTx(t, conn, "SET LOCAL privata.actor = 'dba'",
		"TRUNCATE privata_clinical.encounters, privata_clinical.patients")
	target := currentLSN(t, conn)
	c, _ := run(t, f.options())
	waitCaughtUp(t, c, target)
	got := changes(t, f.store)
	var truncated []string
	for _, c := range got {
		if c.Op == audit.Truncate {
			truncated = append(truncated, c.Table)
			if !c.Subject.IsZero() || len(c.Columns) != 0 || c.Actor != "dba" {
				t.Errorf("truncate record %s", describe(c))
			}
		}
	}
	slices.Sort(truncated)
	if !slices.Equal(truncated, []string{"privata_clinical.encounters", "privata_clinical.patients"}) {
		t.Fatalf("truncated tables %v, want both", truncated)
	}
}

func TestChangesBypassingPrivataAreRecordedWithTheRole(t *testing.T) {
	f := newFixture(t)
	f.ensureSlot(t)
	conn := f.db.Connect(t)
	// A client connected straight to PostgreSQL sets no actor or purpose.
	execTx(t, conn, "SET LOCAL ROLE clinician",
		`INSERT INTO privata_clinical.patients (privata_pseudonym) VALUES ('`+pseudonym+`')`)
	// A forged context for a role the session cannot take on is refused.
	f.db.Exec(t, `DO $$ BEGIN
		IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'logical_test_intruder') THEN
			CREATE ROLE logical_test_intruder LOGIN;
		END IF; END $$`)
	intruder := pgtest.Connect(t, strings.Replace(f.db.URL(), "postgres@", "logical_test_intruder@", 1))
	_, err := intruder.Exec(context.Background(),
		`SELECT privata.emit_context_message('{"role": "clinician", "actor": "dr.jones"}')`)
	if err == nil || !strings.Contains(err.Error(), "42501") {
		t.Fatalf("a forged context was accepted: %v", err)
	}
	_, err = intruder.Exec(context.Background(),
		`SELECT pg_logical_emit_message(true, 'privata', '{"role": "clinician"}')`)
	if err == nil || !strings.Contains(err.Error(), "42501") {
		t.Fatalf("pg_logical_emit_message is open to every role: %v", err)
	}
	target := currentLSN(t, conn)
	c, _ := run(t, f.options())
	waitCaughtUp(t, c, target)
	got := changes(t, f.store)
	if len(got) != 1 || got[0].Role != "clinician" || got[0].Actor != "" || got[0].Purpose != "" {
		t.Fatalf("records %v, want one insert by role clinician without actor or purpose", got)
	}
}

func TestABigTransactionIsWrittenInPiecesExactlyOnce(t *testing.T) {
	f := newFixture(t)
	f.ensureSlot(t)
	conn := f.db.Connect(t)
	execTx(t, conn, `INSERT INTO privata_clinical.patients (privata_pseudonym) VALUES ('`+pseudonym+`')`)
	execTx(t, conn, `INSERT INTO privata_clinical.encounters (id, privata_pseudonym, description)
		SELECT gen_random_uuid(), '`+pseudonym+`', 'visit ' || i FROM generate_series(1, 20000) i`)
	target := currentLSN(t, conn)

	opts := f.options()
	opts.BatchRecords = 700
	// Stop the consumer in the middle of the big transaction, twice.
	for range 2 {
		c, stop := run(t, opts)
		deadline := time.Now().Add(time.Minute)
		start := count(t, f.store)
		for count(t, f.store) < start+3000 {
			if time.Now().After(deadline) {
				t.Fatal("the consumer made no progress")
			}
			time.Sleep(5 * time.Millisecond)
		}
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		if c.Acked() >= target {
			t.Fatalf("the consumer finished before it was stopped: the test proves nothing")
		}
	}
	c, _ := run(t, opts)
	waitCaughtUp(t, c, target)
	if n := count(t, f.store); n != 20001 {
		t.Fatalf("%d records, want 20001 (each change once)", n)
	}
	var distinct int64
	err := f.store.Pool().QueryRow(context.Background(),
		"SELECT count(DISTINCT (lsn, ordinal)) FROM privata_audit.change_log").Scan(&distinct)
	if err != nil || distinct != 20001 {
		t.Fatalf("%d distinct changes (%v), want 20001", distinct, err)
	}
	verify(t, f.store)
}

func count(t testing.TB, s *audit.Store) int64 {
	t.Helper()
	var n int64
	err := s.Pool().QueryRow(context.Background(),
		"SELECT count(*) FROM privata_audit.change_log").Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestASlotBehindTheStoreReplaysNothingTwice(t *testing.T) {
	f := newFixture(t)
	f.ensureSlot(t)
	// A second slot at the same position stands for an acknowledgement
	// that was lost when the consumer died right after its commit.
	lagging := f.slot + "_b"
	f.db.Exec(t, "SELECT pg_create_logical_replication_slot($1, 'pgoutput')", lagging)
	t.Cleanup(func() { dropSlot(t, f.db, lagging) })
	conn := f.db.Connect(t)
	for range 5 {
		execTx(t, conn, `INSERT INTO privata_clinical.encounters (id, description)
			SELECT gen_random_uuid(), 'e' FROM generate_series(1, 10)`)
	}
	target := currentLSN(t, conn)
	c, stop := run(t, f.options())
	waitCaughtUp(t, c, target)
	stop()
	if n := count(t, f.store); n != 50 {
		t.Fatalf("%d records, want 50", n)
	}

	opts := f.options()
	opts.Slot = lagging
	c, stop = run(t, opts)
	waitCaughtUp(t, c, target)
	stop()
	if n := count(t, f.store); n != 50 {
		t.Fatalf("after replaying from the lagging slot: %d records, want still 50", n)
	}
	verify(t, f.store)
}

func TestSubscribersGetDurableChangesInCommitOrder(t *testing.T) {
	f := newFixture(t)
	conn := f.db.Connect(t)
	c, _ := run(t, f.options())
	events := make(chan []Event, 16)
	ctx, cancel := context.WithCancel(context.Background())
	subscribed := make(chan error, 1)
	go func() {
		subscribed <- c.Subscribe(ctx, func(_ context.Context, evs []Event) error {
			events <- evs
			return nil
		})
	}()
	// The consumer creates its slot when it starts; wait for it.
	deadline := time.Now().Add(time.Minute)
	for c.Acked() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the consumer did not start")
		}
		time.Sleep(10 * time.Millisecond)
	}
	waitSubscribed(t, c, 1)
	execTx(t, conn, `INSERT INTO privata_clinical.patients (privata_pseudonym) VALUES ('`+pseudonym+`')`)
	execTx(t, conn, `UPDATE privata_clinical.patients SET race = 'x'`)
	execTx(t, conn, `DELETE FROM privata_clinical.patients`)
	var got []Event
	for len(got) < 3 {
		select {
		case evs := <-events:
			got = append(got, evs...)
		case <-time.After(time.Minute):
			t.Fatalf("got %d events, want 3", len(got))
		}
	}
	cancel()
	if err := <-subscribed; err != nil {
		t.Fatalf("Subscribe after its context ended: %v, want nil", err)
	}
	ops := []audit.Op{got[0].Op, got[1].Op, got[2].Op}
	if !slices.Equal(ops, []audit.Op{audit.Insert, audit.Update, audit.Delete}) ||
		got[0].Table != "privata_clinical.patients" || got[2].Subject.String() != pseudonym ||
		!(got[0].LSN < got[1].LSN && got[1].LSN < got[2].LSN) {
		t.Fatalf("events %+v, want insert, update, delete of the patient in commit order", got)
	}
	// Durable before it was sent.
	if n := count(t, f.store); n < 3 {
		t.Fatalf("an event was sent before its record was in the store (%d records)", n)
	}
}

func TestSlotStatusSaysHowToRecover(t *testing.T) {
	f := newFixture(t)
	f.ensureSlot(t)
	conn := f.db.Connect(t)
	execTx(t, conn, `INSERT INTO privata_clinical.encounters (id, description)
		SELECT gen_random_uuid(), repeat('x', 500) FROM generate_series(1, 5000)`)
	st, err := ReadSlot(context.Background(), conn, f.slot)
	if err != nil {
		t.Fatal(err)
	}
	if st.Retained < 1<<20 || st.Active {
		t.Fatalf("slot status %+v: want more than 1 MiB retained by an inactive slot", st)
	}
	st.Cluster, st.Limit = "us", 1<<20
	advice := st.Advice()
	for _, want := range []string{f.slot, "cluster us", "pg_drop_replication_slot('" + f.slot + "')",
		"missing from the change audit", "privata audit consume"} {
		if !strings.Contains(advice, want) {
			t.Errorf("advice %q does not say %q", advice, want)
		}
	}
	// A running consumer reports the same through its warning.
	warnings := make(chan SlotStatus, 1)
	opts := f.options()
	opts.SlotWarnBytes = 1 << 10
	opts.StatusInterval = 50 * time.Millisecond
	opts.OnSlotWarning = func(s SlotStatus) {
		select {
		case warnings <- s:
		default:
		}
	}
	// Its first look at the slot comes before it has acknowledged anything.
	run(t, opts)
	select {
	case w := <-warnings:
		if w.Cluster != "us" || w.Slot != f.slot || w.Limit != 1<<10 {
			t.Fatalf("warning %+v", w)
		}
	case <-time.After(time.Minute):
		t.Fatal("no warning although the slot retains more than the limit")
	}
	if _, err := ReadSlot(context.Background(), conn, "no_such_slot"); !errors.Is(err, ErrNoSlot) {
		t.Fatalf("ReadSlot of a missing slot: %v, want ErrNoSlot", err)
	}
}
