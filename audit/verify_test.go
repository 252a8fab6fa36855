package audit

import (
	"context"
	"strings"
	"testing"
)

// tamper runs SQL as a superuser with the append-only trigger disabled, as
// an attacker with full control of the database would.
func tamper(t *testing.T, s *Store, table, sql string) {
	t.Helper()
	ctx := context.Background()
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	for _, q := range []string{
		"ALTER TABLE privata_audit." + table + " DISABLE TRIGGER append_only",
		sql,
		"ALTER TABLE privata_audit." + table + " ENABLE ALWAYS TRIGGER append_only",
	} {
		if _, err := tx.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestVerifyNamesTheFirstTamperedRecord(t *testing.T) {
	cases := []struct {
		name   string
		table  string
		sql    string
		seq    int64
		kind   ProblemKind
		detail string
	}{
		{"a read's actor changed", "read_log",
			"UPDATE privata_audit.read_log SET actor = 'nobody' WHERE seq = 4",
			4, Changed, "record seq 4 was changed"},
		{"a read's subjects emptied", "read_log",
			"UPDATE privata_audit.read_log SET subjects = '{}', rows = 0 WHERE seq = 2",
			2, Changed, "record seq 2 was changed"},
		{"a read's time moved by a microsecond", "read_log",
			"UPDATE privata_audit.read_log SET at = at + interval '1 microsecond' WHERE seq = 6",
			6, Changed, "record seq 6 was changed"},
		{"a read removed", "read_log",
			"DELETE FROM privata_audit.read_log WHERE seq = 3",
			3, Removed, "record seq 3 is missing"},
		{"reads removed and the rest renumbered", "read_log",
			`DELETE FROM privata_audit.read_log WHERE seq IN (3, 4);
			 UPDATE privata_audit.read_log SET seq = seq - 2 WHERE seq > 4`,
			3, Removed, "the record written right before seq 3 was removed"},
		{"two reads swapped", "read_log",
			`UPDATE privata_audit.read_log SET seq = seq + 1000 WHERE seq IN (3, 5);
			 UPDATE privata_audit.read_log SET seq = CASE seq WHEN 1003 THEN 5 ELSE 3 END
			 WHERE seq IN (1003, 1005)`,
			3, Reordered, "record seq 3 was reordered: " +
				"it was written right after the record now at seq 4"},
		{"a change's columns changed", "change_log",
			"UPDATE privata_audit.change_log SET columns = '{first}' WHERE seq = 5",
			5, Changed, "record seq 5 was changed"},
		{"a change's operation changed", "change_log",
			"UPDATE privata_audit.change_log SET operation = 'insert' WHERE seq = 1",
			1, Changed, "record seq 1 was changed"},
		{"the first change removed", "change_log",
			"DELETE FROM privata_audit.change_log WHERE seq = 1",
			1, Removed, "record seq 1 is missing"},
		{"a change's hash recomputed without the key", "change_log",
			`UPDATE privata_audit.change_log SET role = 'other',
			   hash = sha256(prev_hash || 'forged'::bytea) WHERE seq = 2`,
			2, Changed, "record seq 2 was changed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, s := newStore(t)
			ctx := context.Background()
			key := []byte("a key the attacker does not have")
			w := newWriter(t, s, WriterOptions{Key: key})
			for i := range 8 {
				if err := w.Append(ctx, sampleRead(i, randomPseudonym())); err != nil {
					t.Fatal(err)
				}
			}
			mustFlush(t, w)
			ch, _, err := s.OpenChangeChain(ctx, ChainOptions{Source: "us", Key: key})
			if err != nil {
				t.Fatal(err)
			}
			if err := ch.Write(ctx, sampleChanges(0x3000, 8, randomPseudonym())); err != nil {
				t.Fatal(err)
			}
			verifyAll(t, s, key)

			tamper(t, s, tc.table, tc.sql)
			reps, err := s.Verify(ctx, key)
			if err != nil {
				t.Fatal(err)
			}
			var bad []*ChainReport
			for _, r := range reps {
				if !r.OK() {
					bad = append(bad, r)
				}
			}
			if len(bad) != 1 {
				t.Fatalf("reports %v: want exactly one chain failing", reps)
			}
			wantKind := "read"
			if tc.table == "change_log" {
				wantKind = "change"
			}
			p := bad[0].Problem
			if bad[0].Kind != wantKind || p.Seq != tc.seq || p.Kind != tc.kind ||
				!strings.Contains(p.Detail, tc.detail) {
				t.Fatalf("report %q (kind %s, problem %+v), want a %s chain with %s at seq %d: %q",
					bad[0], bad[0].Kind, *p, wantKind, tc.kind, tc.seq, tc.detail)
			}
		})
	}
}

func TestVerifyPassesUntouchedChainsOfBothKinds(t *testing.T) {
	_, s := newStore(t)
	ctx := context.Background()
	w := newWriter(t, s, WriterOptions{})
	for i := range 50 {
		if err := w.Append(ctx, sampleRead(i, randomPseudonym(), randomPseudonym())); err != nil {
			t.Fatal(err)
		}
	}
	mustFlush(t, w)
	ch, _, err := s.OpenChangeChain(ctx, ChainOptions{Source: "eu"})
	if err != nil {
		t.Fatal(err)
	}
	for b := range 5 {
		if err := ch.Write(ctx, sampleChanges(LSN(0x100*(b+1)), 10, randomPseudonym())); err != nil {
			t.Fatal(err)
		}
	}
	reps := verifyAll(t, s, nil)
	if len(reps) != 2 || reps[0].Records != 10*5 || reps[1].Records != 50 {
		t.Fatalf("reports %v: want change/eu/1 with 50 records and the read chain with 50", reps)
	}
}
