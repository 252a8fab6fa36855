package storage_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// columnsOf lists the columns of a relation.
func columnsOf(t *testing.T, d *testDB, rel string) []string {
	t.Helper()
	return column(t, d.conn, `SELECT attname FROM pg_attribute
		WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum`, rel)
}

// applyChange applies policy p and checks that every value of every table
// reads back as before (plus what expect adds), and that a second apply
// has nothing to do.
func applyChange(t *testing.T, d *testDB, p string, tables ...string) {
	t.Helper()
	before := d.contents(t, tables...)
	pl := d.apply(t, parsePolicy(t, p))
	if pl.Empty() {
		t.Fatalf("the policy change planned nothing")
	}
	after := d.contents(t, tables...)
	for _, tab := range tables {
		if !slices.Equal(before[tab], after[tab]) {
			t.Errorf("%s changed:\n%s", tab, diff(strings.Join(before[tab], "\n"),
				strings.Join(after[tab], "\n")))
		}
	}
	if again := d.apply(t, parsePolicy(t, p)); !again.Empty() {
		t.Fatalf("apply after the change was not empty:\n%s", again.SQL())
	}
}

func TestPolicyChangesKeepEveryValue(t *testing.T) {
	d := newDB(t)
	d.exec(t, smallSchema)
	d.apply(t, parsePolicy(t, smallPolicy))
	tables := []string{"people", "visits", "findings"}
	// cur is the policy as the previous subtest left it.
	cur := smallPolicy

	t.Run("a column moves from identity to clinical", func(t *testing.T) {
		p := strings.Replace(cur, "identity: [ssn, name, born, email]", "identity: [ssn, name, email]", 1)
		p = strings.Replace(p, "clinical: [blood, note]", "clinical: [blood, note, born]", 1)
		applyChange(t, d, p, tables...)
		if !slices.Contains(columnsOf(t, d, "privata_clinical.people"), "born") ||
			slices.Contains(columnsOf(t, d, "privata_identity.people"), "born") {
			t.Fatalf("born did not move to the clinical base table")
		}
		// Its CHECK constraint moved with it.
		if _, err := d.conn.Exec(ctx, `UPDATE people SET born = '1800-01-01' WHERE id = 1`); sqlstate(err) != "23514" {
			t.Fatalf("CHECK on born after the move: %v, want 23514", err)
		}
		cur = p
	})
	t.Run("a column moves from clinical to identity", func(t *testing.T) {
		p := strings.Replace(cur, "clinical: [blood, note, born]", "clinical: [note, born]", 1)
		p = strings.Replace(p, "identity: [ssn, name, email]", "identity: [ssn, name, email, blood]", 1)
		applyChange(t, d, p, tables...)
		if !slices.Contains(columnsOf(t, d, "privata_identity.people"), "blood") {
			t.Fatalf("blood did not move to the identity base table")
		}
		cur = p
	})
	t.Run("a column added to a base table joins the view", func(t *testing.T) {
		d.exec(t, `ALTER TABLE privata_clinical.people ADD COLUMN allergy text DEFAULT 'none'`)
		p := strings.Replace(cur, "clinical: [note, born]", "clinical: [note, born, allergy]", 1)
		d.apply(t, parsePolicy(t, p))
		if got := columnsOf(t, d, "public.people"); got[len(got)-1] != "allergy" {
			t.Fatalf("view columns %v, want allergy last", got)
		}
		if v := column(t, d.conn, `SELECT DISTINCT allergy FROM people`); !slices.Equal(v, []string{"none"}) {
			t.Fatalf("allergy reads %v through the view", v)
		}
		// and can move like any other.
		p = strings.Replace(p, "clinical: [note, born, allergy]", "clinical: [note, born]", 1)
		p = strings.Replace(p, "identity: [ssn, name, email, blood]", "identity: [ssn, name, email, blood, allergy]", 1)
		applyChange(t, d, p, tables...)
		cur = p
	})
	t.Run("a new classified table is converted", func(t *testing.T) {
		d.exec(t, `CREATE TABLE prescriptions (person int NOT NULL, drug text, dose numeric);
			INSERT INTO prescriptions VALUES (1, 'aspirin', 0.5), (2, 'ibuprofen', 1), (1, 'aspirin', 0.5)`)
		before := d.contents(t, "prescriptions")
		p := strings.Replace(cur, "roles:", "  prescriptions: {subject: {table: people, column: person}}\nroles:", 1)
		applyChange(t, d, p, tables...)
		if after := d.contents(t, "prescriptions"); !slices.Equal(before["prescriptions"], after["prescriptions"]) {
			t.Fatalf("prescriptions changed: %v -> %v", before, after)
		}
		cur = p
	})
	t.Run("a role's access changes", func(t *testing.T) {
		read := func() []string {
			var out []string
			d.as(t, "nurse", func(tx pgx.Tx) { out = column(t, tx, `SELECT ssn FROM people ORDER BY id`) })
			return out
		}
		if got := read(); !strings.HasPrefix(got[0], "*******") {
			t.Fatalf("nurse reads %v before the change, want masked SSNs", got)
		}
		p := strings.Replace(cur, "nurse: {identity: masked", "nurse: {identity: none", 1)
		pl := d.apply(t, parsePolicy(t, p))
		if !strings.Contains(pl.SQL(), `REVOKE "privata_identity_masked" FROM "nurse"`) {
			t.Errorf("plan does not revoke the masked group:\n%s", pl.SQL())
		}
		if got := read(); got[0] != "<null>" {
			t.Fatalf("nurse reads %v after identity: none", got)
		}
		if again := d.apply(t, parsePolicy(t, p)); !again.Empty() {
			t.Fatalf("second apply not empty:\n%s", again.SQL())
		}
		cur = p
	})
	t.Run("a mask changes", func(t *testing.T) {
		p := strings.Replace(cur, "nurse: {identity: none", "nurse: {identity: masked", 1)
		p = strings.Replace(p, "masks: {ssn: last4}", "masks: {ssn: hash, name: redact}", 1)
		applyChange(t, d, p, tables...)
		d.as(t, "nurse", func(tx pgx.Tx) {
			got := column(t, tx, `SELECT coalesce(name, '-') || ' ' || ssn FROM people ORDER BY id`)
			if len(got) == 0 || len(got[0]) != 2+64 || !strings.HasPrefix(got[0], "- ") {
				t.Fatalf("nurse reads %v, want no name and a 64-digit hash", got)
			}
		})
	})
	t.Run("a role is added and gets its grants", func(t *testing.T) {
		p := strings.Replace(cur, "roles:", "roles:\n  auditor: {identity: none, clinical: masked}", 1)
		p = strings.Replace(p, "masks: {ssn: last4}", "masks: {ssn: hash, name: redact}", 1)
		applyChange(t, d, p, tables...)
		d.as(t, "auditor", func(tx pgx.Tx) {
			if got := column(t, tx, `SELECT count(*) FROM visits WHERE reason IS NOT NULL`); got[0] == "0" {
				t.Fatalf("auditor reads no masked reason")
			}
		})
	})
}
