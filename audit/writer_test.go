package audit

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/privata/privata/internal/audittest"
	"github.com/privata/privata/internal/pgtest"
)

func TestWriterShipsEveryRecordOnceAcrossRestarts(t *testing.T) {
	_, s := newStore(t)
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "spool")
	w, err := OpenWriter(ctx, s, WriterOptions{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 300 {
		if err := w.Append(ctx, sampleRead(i, randomPseudonym())); err != nil {
			t.Fatal(err)
		}
	}
	// Close without waiting for the shipper: what it did not ship stays in
	// the spool.
	done, cancel := context.WithCancel(ctx)
	cancel()
	w.Close(done)
	instance := w.Instance()

	w = newWriter(t, s, WriterOptions{Dir: dir})
	if w.Instance() != instance {
		t.Fatalf("instance after restart %s, want %s", w.Instance(), instance)
	}
	for i := 300; i < 400; i++ {
		if err := w.Append(ctx, sampleRead(i, randomPseudonym())); err != nil {
			t.Fatal(err)
		}
	}
	mustFlush(t, w)
	if n := count(t, s, "SELECT count(DISTINCT fingerprint) FROM privata_audit.read_log"); n != 400 {
		t.Errorf("%d distinct records in the store, want 400", n)
	}
	if n := count(t, s, "SELECT count(*) FROM privata_audit.read_log"); n != 400 {
		t.Errorf("%d records in the store, want 400 (each once)", n)
	}
	if reps := verifyAll(t, s, nil); len(reps) != 1 || reps[0].Records != 400 {
		t.Errorf("verify: %v, want one chain of 400 records", reps)
	}
}

func TestWriterKeepsRecordsWhileTheStoreIsDown(t *testing.T) {
	// A committed transaction must survive the kill below.
	c := pgtest.Start(t, "audit-store", map[string]string{"synchronous_commit": "on"})
	db := pgtest.NewDB(t, c)
	audittest.Install(t, db)
	ctx := context.Background()
	s, err := Open(ctx, "down", db.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	var shipErrs atomic.Int64
	w := newWriter(t, s, WriterOptions{MaxBytes: 64 << 10,
		OnShipError: func(error) { shipErrs.Add(1) }})
	// Few records in memory: the shipper must fall back to reading the
	// spool, then take records from memory again once it has caught up.
	w.mu.Lock()
	w.memLimit = 20
	w.mu.Unlock()

	if err := c.Local.Kill(); err != nil {
		t.Fatal(err)
	}
	appended := 0
	var full error
	for i := 0; full == nil; i++ {
		if i > 10000 {
			t.Fatal("Append never refused although the spool passed MaxBytes")
		}
		full = w.Append(ctx, sampleRead(i, randomPseudonym()))
		if full == nil {
			appended++
		}
	}
	if !errors.Is(full, ErrUnavailable) || !strings.Contains(full.Error(), "store is unreachable") {
		t.Fatalf("Append with a full spool and the store down: %v, want ErrUnavailable saying why",
			full)
	}
	if appended < 50 {
		t.Fatalf("only %d records were accepted while the store was down", appended)
	}
	if err := w.Check(); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Check with a full spool: %v, want ErrUnavailable", err)
	}

	if err := c.Local.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	mustFlush(t, w)
	if err := w.Check(); err != nil {
		t.Fatalf("Check after the store came back: %v", err)
	}
	for i := range 5 {
		if err := w.Append(ctx, sampleRead(appended+i, randomPseudonym())); err != nil {
			t.Fatalf("Append after the store came back: %v", err)
		}
	}
	mustFlush(t, w)
	w.mu.Lock()
	lost := w.lost
	w.mu.Unlock()
	if lost {
		t.Error("the writer did not go back to handing records over in memory")
	}
	if n := count(t, s, "SELECT count(*) FROM privata_audit.read_log"); n != int64(appended+5) {
		t.Errorf("%d records in the store, want the %d appended", n, appended+5)
	}
	verifyAll(t, s, nil)
	if shipErrs.Load() == 0 {
		t.Error("the shipper reported no error while the store was down")
	}
}

// breakSpool makes the spool's file refuse writes, as a full disk would.
func breakSpool(t *testing.T, w *Writer) (restore func()) {
	t.Helper()
	full, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	w.mu.Lock()
	good := w.file
	w.file = full
	w.mu.Unlock()
	return func() {
		w.mu.Lock()
		w.file = good
		w.mu.Unlock()
		full.Close()
	}
}

func TestAppendFailsClosedWhenTheSpoolCannotBeWritten(t *testing.T) {
	_, s := newStore(t)
	ctx := context.Background()
	w := newWriter(t, s, WriterOptions{Fsync: FsyncNever})
	if err := w.Append(ctx, sampleRead(0, randomPseudonym())); err != nil {
		t.Fatal(err)
	}
	restore := breakSpool(t, w)
	secret := "SELECT first FROM patients WHERE last = $1"
	r := sampleRead(1, randomPseudonym())
	r.Statement = secret
	err := w.Append(ctx, r)
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Append on a full disk: %v, want ErrUnavailable", err)
	}
	if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), "dr.jones") {
		t.Fatalf("the error shows the record: %v", err)
	}
	restore()
	for i := 2; i < 5; i++ {
		if err := w.Append(ctx, sampleRead(i, randomPseudonym())); err != nil {
			t.Fatal(err)
		}
	}
	mustFlush(t, w)
	// The refused record took no place in the chain: no gap.
	if reps := verifyAll(t, s, nil); len(reps) != 1 || reps[0].Records != 4 {
		t.Fatalf("verify: %v, want one chain of 4 records", reps)
	}
}

func TestFailOpenDropsTheRecordAndSaysSo(t *testing.T) {
	_, s := newStore(t)
	ctx := context.Background()
	var drops []error
	w := newWriter(t, s, WriterOptions{Fsync: FsyncNever, FailOpen: true,
		OnDrop: func(err error) { drops = append(drops, err) }})
	restore := breakSpool(t, w)
	if err := w.Append(ctx, sampleRead(0, randomPseudonym())); err != nil {
		t.Fatalf("fail-open Append: %v, want nil", err)
	}
	restore()
	if len(drops) != 1 || !errors.Is(drops[0], ErrUnavailable) {
		t.Fatalf("OnDrop got %v, want one ErrUnavailable", drops)
	}
}

func TestSpoolRecoversFromATornLastLine(t *testing.T) {
	_, s := newStore(t)
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "spool")
	w, err := OpenWriter(ctx, s, WriterOptions{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if err := w.Append(ctx, sampleRead(i, randomPseudonym())); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	// A write the crash interrupted: never acknowledged, so never shipped.
	segs, err := segments(dir)
	if err != nil || len(segs) == 0 {
		t.Fatalf("segments: %v %v", segs, err)
	}
	f, err := os.OpenFile(segs[len(segs)-1].path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"chain":"read/x/1","seq":6,"prev":"00`)
	f.Close()

	w = newWriter(t, s, WriterOptions{Dir: dir})
	for i := 5; i < 8; i++ {
		if err := w.Append(ctx, sampleRead(i, randomPseudonym())); err != nil {
			t.Fatal(err)
		}
	}
	mustFlush(t, w)
	if reps := verifyAll(t, s, nil); len(reps) != 1 || reps[0].Records != 8 {
		t.Fatalf("verify: %v, want one chain of 8 records", reps)
	}
}

func TestSpoolRotatesAndRemovesShippedSegments(t *testing.T) {
	_, s := newStore(t)
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "spool")
	opts := WriterOptions{Dir: dir, SegmentBytes: 4 << 10, Fsync: FsyncAlways}
	w, err := OpenWriter(ctx, s, opts)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 200 {
		if err := w.Append(ctx, sampleRead(i, randomPseudonym())); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	segs, err := segments(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(segs) != 1 || segs[0].no < 10 {
		t.Fatalf("segments after shipping: %v, want only the newest of many", segs)
	}
	// The chain resumes from the newest segment's head line alone.
	w = newWriter(t, s, opts)
	if err := w.Append(ctx, sampleRead(200, randomPseudonym())); err != nil {
		t.Fatal(err)
	}
	mustFlush(t, w)
	if reps := verifyAll(t, s, nil); len(reps) != 1 || reps[0].Records != 201 {
		t.Fatalf("verify: %v, want one chain of 201 records", reps)
	}
}

func TestAppendRefusesInvalidRecordsWithoutQuotingThem(t *testing.T) {
	_, s := newStore(t)
	w := newWriter(t, s, WriterOptions{})
	const secret = "Mosciski958"
	cases := map[string]func(r *Read){
		"no decision":      func(r *Read) { r.Decision = ""; r.Reason = secret },
		"NUL in the actor": func(r *Read) { r.Actor = secret + "\x00" },
		"invalid UTF-8":    func(r *Read) { r.Purpose = secret + "\xff" },
		"zero subject":     func(r *Read) { r.Subjects = []Pseudonym{{}}; r.Actor = secret },
		"negative rows":    func(r *Read) { r.Rows = -1; r.Actor = secret },
		"empty statement":  func(r *Read) { r.Statement = ""; r.Actor = secret },
		"empty column":     func(r *Read) { r.Columns = []string{""}; r.Actor = secret },
	}
	for name, spoil := range cases {
		t.Run(name, func(t *testing.T) {
			r := sampleRead(0, randomPseudonym())
			spoil(r)
			err := w.Append(context.Background(), r)
			if err == nil || errors.Is(err, ErrUnavailable) {
				t.Fatalf("Append: %v, want a refusal of the record", err)
			}
			if strings.Contains(err.Error(), secret) {
				t.Fatalf("the error quotes the record: %v", err)
			}
		})
	}
	mustFlush(t, w)
	if n := count(t, s, "SELECT count(*) FROM privata_audit.read_log"); n != 0 {
		t.Fatalf("%d refused records reached the store", n)
	}
}

func TestSinkCarriesTheStoredRecords(t *testing.T) {
	_, s := newStore(t)
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	sink, err := OpenSink(path)
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	w := newWriter(t, s, WriterOptions{Sink: sink})
	p := randomPseudonym()
	for i := range 20 {
		if err := w.Append(ctx, sampleRead(i, p)); err != nil {
			t.Fatal(err)
		}
	}
	mustFlush(t, w)
	ch, _, err := s.OpenChangeChain(ctx, ChainOptions{Source: "us", Sink: sink})
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.Write(ctx, sampleChanges(0x7000, 5, p)); err != nil {
		t.Fatal(err)
	}

	stored := map[string]string{} // chain/seq -> hash
	rows, err := s.pool.Query(ctx, `SELECT chain || '/' || seq, encode(hash, 'hex')
		FROM privata_audit.read_log UNION ALL
		SELECT chain || '/' || seq, encode(hash, 'hex') FROM privata_audit.change_log`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var k, h string
		if err := rows.Scan(&k, &h); err != nil {
			t.Fatal(err)
		}
		stored[k] = h
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	lines := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var l struct {
			Kind, Chain, Hash string
			Seq               int64
			Subject           string
			Subjects          []string
		}
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("sink line %d: %v", lines+1, err)
		}
		lines++
		k := l.Chain + "/" + strconv.FormatInt(l.Seq, 10)
		if stored[k] != l.Hash {
			t.Errorf("sink line %d (%s %s) has hash %s, the store %q", lines, l.Kind, k, l.Hash,
				stored[k])
		}
		if l.Kind == "read" && (len(l.Subjects) != 1 || l.Subjects[0] != p.String()) ||
			l.Kind == "change" && l.Subject != p.String() {
			t.Errorf("sink line %d does not name the subject: %s", lines, sc.Text())
		}
	}
	if lines != len(stored) || lines != 25 {
		t.Fatalf("%d sink lines, %d stored records, want 25 of each", lines, len(stored))
	}
}

func TestDisclosuresListReadsAndChangesOfTheSubject(t *testing.T) {
	_, s := newStore(t)
	ctx := context.Background()
	w := newWriter(t, s, WriterOptions{})
	alice, bob := randomPseudonym(), randomPseudonym()
	reads := []*Read{sampleRead(0, alice, bob), sampleRead(1, bob), sampleRead(2, alice)}
	reads[2].Decision, reads[2].Actor, reads[2].Purpose = Masked, "desk-1", "billing"
	refused := sampleRead(3)
	refused.Decision, refused.Reason = Refused, "42501: role reception may not read ssn"
	reads = append(reads, refused)
	for i, r := range reads {
		r.Time = time.Date(2025, 3, 1, 10, i, 0, 0, time.UTC)
		if err := w.Append(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	mustFlush(t, w)
	ch, _, err := s.OpenChangeChain(ctx, ChainOptions{Source: "us"})
	if err != nil {
		t.Fatal(err)
	}
	changes := sampleChanges(0x9000, 1, alice)
	changes[0].CommitTime = time.Date(2025, 3, 1, 10, 1, 30, 0, time.UTC)
	if err := ch.Write(ctx, changes); err != nil {
		t.Fatal(err)
	}

	got, err := s.Disclosures(ctx, alice)
	if err != nil {
		t.Fatal(err)
	}
	var summary []string
	for _, d := range got {
		summary = append(summary, d.At.UTC().Format("15:04:05")+" "+d.Kind+" "+d.Action+" "+
			d.Actor+" "+d.Purpose)
	}
	want := []string{
		"10:00:00 read allowed dr.jones treatment",
		"10:01:30 change update dr.jones treatment",
		"10:02:00 read masked desk-1 billing",
	}
	if strings.Join(summary, "\n") != strings.Join(want, "\n") {
		t.Fatalf("disclosures of alice:\n%s\nwant:\n%s", strings.Join(summary, "\n"),
			strings.Join(want, "\n"))
	}
}
