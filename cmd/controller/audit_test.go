package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/privata/privata/audit"
	"github.com/privata/privata/config"
	"github.com/privata/privata/internal/audittest"
	"github.com/privata/privata/internal/pgtest"
	"github.com/privata/privata/logical"
)

// clinic is a database with the split layout, and a configuration for it
// with a sink and a slot of its own.
type clinic struct {
	db   *pgtest.DB
	dir  string
	file string
	slot string
	sink string
}

func newClinic(t *testing.T) *clinic {
	t.Helper()
	db := pgtest.NewDB(t, pgtest.Shared(t))
	audittest.Layout(t, db)
	c := &clinic{db: db, dir: t.TempDir(), slot: "privata_audit_" + db.Name}
	c.sink = filepath.Join(c.dir, "audit.jsonl")
	c.file = filepath.Join(c.dir, "privata.yaml")
	t.Cleanup(func() { dropSlot(db, c.slot) })
	conf := fmt.Sprintf(`clusters:
  us: {url: '%s'}
policies: [policy.yaml]
audit:
  sink: audit.jsonl
  slot: %s
`, db.URL(), c.slot)
	for name, body := range map[string]string{"policy.yaml": audittest.Policy,
		"privata.yaml": conf} {
		if err := os.WriteFile(filepath.Join(c.dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

func dropSlot(db *pgtest.DB, slot string) {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, db.URL())
	if err != nil {
		return
	}
	defer conn.Close(ctx)
	for range 100 {
		_, err := conn.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name)
			FROM pg_replication_slots WHERE slot_name = $1`, slot)
		if err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// cli runs `privata audit args...` in-process.
func cli(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := auditCommand()
	var out bytes.Buffer
	cmd.SetArgs(args)
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SilenceUsage = true
	err := cmd.ExecuteContext(context.Background())
	return out.String(), err
}

// syncBuffer is a log destination safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestAuditTrailEndToEnd(t *testing.T) {
	c := newClinic(t)
	ctx := context.Background()
	logs := &syncBuffer{}
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	defer slog.SetDefault(prev)

	// The change consumers, as `privata audit consume` runs them.
	consumeCtx, stopConsume := context.WithCancel(ctx)
	consumed := make(chan error, 1)
	go func() { _, err := cliCtx(consumeCtx, "consume", "-c", c.file); consumed <- err }()
	conn := c.db.Connect(t)
	waitFor(t, "the consumer's slot", func() bool {
		st, err := logical.ReadSlot(ctx, conn, c.slot)
		return err == nil && st.Active
	})

	// Changes: the Synthea sample loaded, then edited.
	patients, encounters := audittest.Load(t, c.db)
	p0, p1 := patients[0], patients[1]
	for _, q := range []string{
		"UPDATE public.patients SET address = '1 New Street', city = 'Newton' WHERE id = $1",
		"UPDATE public.patients SET marital = 'M' WHERE id = $1",
		"DELETE FROM public.encounters WHERE id = (SELECT id FROM public.encounters " +
			"WHERE patient = $1 LIMIT 1)",
	} {
		if _, err := conn.Exec(ctx, q, p0.ID); err != nil {
			t.Fatal(err)
		}
	}

	// Reads, as the proxy writes them.
	store, err := audit.Open(ctx, "us", c.db.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	sink, err := audit.OpenSink(c.sink)
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	w, err := audit.OpenWriter(ctx, store, audit.WriterOptions{Dir: t.TempDir(), Sink: sink})
	if err != nil {
		t.Fatal(err)
	}
	pseudo := func(p *audittest.Patient) audit.Pseudonym {
		ps, err := audit.ParsePseudonym(p.Pseudonym)
		if err != nil {
			t.Fatal(err)
		}
		return ps
	}
	reads := []*audit.Read{
		{Actor: "dr.jones", Role: "clinician", Purpose: "treatment", Decision: audit.Allowed,
			Subjects: []audit.Pseudonym{pseudo(p0), pseudo(p1)}},
		{Actor: "desk-2", Role: "reception", Purpose: "scheduling", Decision: audit.Masked,
			Subjects: []audit.Pseudonym{pseudo(p1)}},
		{Actor: "desk-2", Role: "reception", Purpose: "scheduling", Decision: audit.Refused,
			Reason: "42501: reception may not read clinical columns"},
		{Actor: "dr.er", Role: "clinician", Purpose: "emergency", BreakGlass: true,
			Decision: audit.Allowed, Subjects: []audit.Pseudonym{pseudo(p0)}},
	}
	for i, r := range reads {
		r.Statement, r.Fingerprint = "SELECT * FROM patients WHERE id = $1", fmt.Sprint("fp", i)
		r.Tables, r.Columns = []string{"public.patients"}, []string{"public.patients.ssn"}
		r.Rows, r.Application, r.ClientAddr = int64(len(r.Subjects)), "ehr-web", "10.1.2.3:5555"
		if err := w.Append(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}

	// Wait until the consumer has everything committed so far.
	var target string
	if err := conn.QueryRow(ctx, "SELECT pg_current_wal_insert_lsn()::text").Scan(&target); err != nil {
		t.Fatal(err)
	}
	var want audit.LSN
	want.UnmarshalText([]byte(target))
	waitFor(t, "the consumer to catch up", func() bool {
		st, err := logical.ReadSlot(ctx, conn, c.slot)
		return err == nil && st.ConfirmedFlush >= want
	})

	out, err := cli(t, "verify", "-c", c.file)
	if err != nil || !strings.Contains(out, "all 2 chains verified") {
		t.Fatalf("verify: %v\n%s", err, out)
	}

	out, err = cli(t, "subject", "-c", c.file, p0.ID)
	if err != nil {
		t.Fatalf("subject: %v\n%s", err, out)
	}
	var changesOfP0 int
	err = conn.QueryRow(ctx, "SELECT count(*) FROM privata_audit.change_log WHERE subject = $1",
		p0.Pseudonym).Scan(&changesOfP0)
	if err != nil || changesOfP0 < 4 {
		t.Fatalf("%d change records of the patient (%v)", changesOfP0, err)
	}
	header := fmt.Sprintf("2 reads returned this subject's data; %d changes were made to it.",
		changesOfP0)
	readLines := 0
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "  read  ") {
			readLines++
		}
	}
	if !strings.Contains(out, header) || readLines != 2 || !strings.Contains(out, "dr.er") ||
		!strings.Contains(out, "break-glass") || strings.Contains(out, "desk-2") {
		t.Fatalf("subject output does not list exactly the two reads that returned the "+
			"patient (want %q):\n%s", header, out)
	}

	// No value of the patients' data anywhere the trail reaches.
	var stored string
	err = conn.QueryRow(ctx, `SELECT concat_ws(' ',
		(SELECT string_agg(r::text, ' ') FROM privata_audit.read_log r),
		(SELECT string_agg(c::text, ' ') FROM privata_audit.change_log c),
		(SELECT string_agg(h::text, ' ') FROM privata_audit.chains h))`).Scan(&stored)
	if err != nil {
		t.Fatal(err)
	}
	sinkLines, err := os.ReadFile(c.sink)
	if err != nil {
		t.Fatal(err)
	}
	stopConsume()
	if err := <-consumed; err != nil {
		t.Fatalf("consume: %v", err)
	}
	places := map[string]string{"the audit store": stored, "the sink": string(sinkLines),
		"the log": logs.String(), "the subject output": out}
	values := []string{"1 New Street", "Newton"}
	for _, p := range patients {
		values = append(values, p.Values()...)
	}
	for _, e := range encounters {
		values = append(values, e.Description)
	}
	for where, text := range places {
		for _, v := range values {
			if strings.Contains(text, v) {
				t.Errorf("%s holds the value %q", where, v)
			}
		}
	}
	if n := strings.Count(string(sinkLines), "\n"); n < len(reads)+len(encounters) {
		t.Errorf("the sink has %d lines, fewer than the records", n)
	}
	if !strings.Contains(logs.String(), "change consumers started") {
		t.Errorf("the log does not say the consumers started:\n%s", logs.String())
	}

	// A superuser alters a record behind the trigger's back.
	_, err = conn.Exec(ctx, `
		ALTER TABLE privata_audit.read_log DISABLE TRIGGER append_only;
		UPDATE privata_audit.read_log SET actor = 'someone else' WHERE seq = 2;
		ALTER TABLE privata_audit.read_log ENABLE ALWAYS TRIGGER append_only`)
	if err != nil {
		t.Fatal(err)
	}
	out, err = cli(t, "verify", "-c", c.file)
	var code exitCode
	if !errors.As(err, &code) || code != 1 || !strings.Contains(out, "FAIL  store us, chain read/") ||
		!strings.Contains(out, "changed at seq 2: record seq 2 was changed") {
		t.Fatalf("verify after tampering: %v\n%s", err, out)
	}
}

func cliCtx(ctx context.Context, args ...string) (string, error) {
	cmd := auditCommand()
	var out bytes.Buffer
	cmd.SetArgs(args)
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	err := cmd.ExecuteContext(ctx)
	return out.String(), err
}

func waitFor(t testing.TB, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestAuditSubjectErrorsSayWhatToDo(t *testing.T) {
	c := newClinic(t)
	out, err := cli(t, "install", "-c", c.file)
	if err != nil || !strings.Contains(out, "us: already installed") ||
		!strings.Contains(out, "us: replication slot "+c.slot+" created") {
		t.Fatalf("install: %v\n%s", err, out)
	}
	if out, err = cli(t, "install", "-c", c.file); err != nil ||
		!strings.Contains(out, "replication slot "+c.slot+" exists") {
		t.Fatalf("install again: %v\n%s", err, out)
	}
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"subject", "-c", c.file, "3edac2e3-d223-6fae-d515-daf96ef6bc76"},
			"no subject of public.patients has that key on cluster(s) us"},
		{[]string{"subject", "-c", c.file, "not-a-uuid-Mosciski958"},
			"the key is not a valid value of public.patients.id (SQLSTATE 22P02)"},
		{[]string{"subject", "-c", c.file, "--table", "visits", "x"},
			"visits is not a subject table of the policy"},
		{[]string{"subject", "-c", c.file, "--pseudonym", "nope"}, "pseudonym is not a UUID"},
	}
	for _, tc := range cases {
		out, err := cli(t, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v\n%s\nwant an error saying %q", tc.args, err, out, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "Mosciski958") {
			t.Errorf("the error echoes the key: %v", err)
		}
	}
	out, err = cli(t, "subject", "-c", c.file, "--pseudonym",
		"0b7e1f2a-9c4d-4e5f-8a6b-1c2d3e4f5a6b")
	if err != nil || !strings.Contains(out, "0 reads returned this subject's data; 0 changes") {
		t.Fatalf("subject by pseudonym: %v\n%s", err, out)
	}
}

func TestReadAuditFailOpenSaysSoLoudly(t *testing.T) {
	c := newClinic(t)
	conf, err := os.ReadFile(c.file)
	if err != nil {
		t.Fatal(err)
	}
	conf = append(conf, "  fail_open: true\n  spool_dir: spool\n"...)
	if err := os.WriteFile(c.file, conf, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(c.file)
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	ctx := context.Background()
	ra, err := openReadAudit(ctx, cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "AUDIT FAIL-OPEN") {
		t.Fatalf("no loud warning for fail_open:\n%s", logs.String())
	}
	w := ra.For("us")
	if w == nil {
		t.Fatal("no writer for cluster us")
	}
	r := &audit.Read{Role: "clinician", Statement: "SELECT 1", Decision: audit.Allowed}
	if err := w.Append(ctx, r); err != nil {
		t.Fatal(err)
	}
	if err := ra.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(c.dir, "spool", "us", "chain.json")); err != nil {
		t.Fatalf("the spool is not where audit.spool_dir says: %v", err)
	}
	var n int
	conn := c.db.Connect(t)
	err = conn.QueryRow(ctx, "SELECT count(*) FROM privata_audit.read_log").Scan(&n)
	if err != nil || n != 1 {
		t.Fatalf("%d records shipped (%v), want 1", n, err)
	}
}
