package audit

import (
	"context"
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

// awkward is a record whose text holds everything the encoders escape.
func awkward() *Read {
	return &Read{
		Link:  Link{Chain: "read/x\ty/1", Seq: 42, Prev: Digest{1, 2}, Hash: Digest{0xff}},
		Time:  time.Date(2025, 7, 1, 12, 30, 0, 123456000, time.UTC),
		Actor: `dr "quote" \back\slash`, Role: "tab\there", ClientAddr: "[::1]:5432",
		Application: "new\nline\rcr", Purpose: "<html> & ünïcödé \u2028 \x01",
		BreakGlass: true, Statement: `SELECT "a,b" FROM {x} WHERE y = $1 -- \N`,
		Fingerprint: "0123abcd", Tables: []string{`public."odd,name"`, `s.{t}`},
		Columns: []string{`c "1"`, `back\slash`, "", "NULL"}, Decision: Masked,
		Reason: "42501: tab\tand\\", Rows: 3,
		Subjects: []Pseudonym{randomPseudonym(), randomPseudonym()},
	}
}

func TestSpoolLinesDecodeLikeEncodingJSON(t *testing.T) {
	for _, r := range []*Read{awkward(), sampleRead(1), {Statement: "s", Decision: Allowed}} {
		mine := appendReadJSON(nil, "", r)
		std, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if string(mine) != string(std) {
			t.Errorf("appendReadJSON:\n%s\nencoding/json:\n%s", mine, std)
		}
		var back Read
		if err := json.Unmarshal(mine, &back); err != nil {
			t.Fatal(err)
		}
		if back.Time.Equal(r.Time) {
			back.Time = r.Time // the same instant; only the location differs
		}
		if !reflect.DeepEqual(&back, r) {
			t.Errorf("round trip: %+v, want %+v", back, *r)
		}
	}
}

func TestAwkwardTextIsStoredExactly(t *testing.T) {
	_, s := newStore(t)
	ctx := context.Background()
	w := newWriter(t, s, WriterOptions{})
	r := awkward()
	r.Columns = r.Columns[:2] // names may not be empty
	want := *r
	if err := w.Append(ctx, r); err != nil {
		t.Fatal(err)
	}
	mustFlush(t, w)
	ch, _, err := s.OpenChangeChain(ctx, ChainOptions{Source: "us"})
	if err != nil {
		t.Fatal(err)
	}
	c := sampleChanges(0x10, 1, Pseudonym{})[0]
	c.Actor, c.Application, c.Columns = want.Actor, want.Application, want.Columns
	if err := ch.Write(ctx, []*Change{c}); err != nil {
		t.Fatal(err)
	}
	verifyAll(t, s, nil)

	var got Read
	err = s.pool.QueryRow(ctx, `SELECT actor, role, application, purpose, statement, tables,
			columns, reason FROM privata_audit.read_log`).Scan(&got.Actor, &got.Role,
		&got.Application, &got.Purpose, &got.Statement, &got.Tables, &got.Columns, &got.Reason)
	if err != nil {
		t.Fatal(err)
	}
	if got.Actor != want.Actor || got.Role != want.Role || got.Application != want.Application ||
		got.Purpose != want.Purpose || got.Statement != want.Statement ||
		!reflect.DeepEqual(got.Tables, want.Tables) ||
		!reflect.DeepEqual(got.Columns, want.Columns) || got.Reason != want.Reason {
		t.Fatalf("stored %+v, want %+v", got, want)
	}
	var subject *string
	err = s.pool.QueryRow(ctx, "SELECT subject::text FROM privata_audit.change_log").Scan(&subject)
	if err != nil || subject != nil {
		t.Fatalf("a change without subject stored subject %v (%v), want NULL", subject, err)
	}
}
