package storage_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/privata/privata/storage"
)

// With AllowMissing, tables not created yet are pending: the rest of the
// policy is applied, and a table created afterwards is split by the next
// apply. Without it, a missing table is an error.
func TestAllowMissingAppliesWhatExists(t *testing.T) {
	d := newDB(t)
	p := parsePolicy(t, smallPolicy)
	if _, err := d.tryApply(t, p); err == nil ||
		!strings.Contains(err.Error(), "table public.people does not exist in the database") {
		t.Fatalf("apply of a policy naming missing tables: %v", err)
	}

	conn := d.Connect(t)
	defer conn.Close(ctx)
	pl, err := storage.Apply(ctx, conn, p, d.target(), storage.AllowMissing())
	if err != nil {
		t.Fatalf("apply with missing tables allowed: %v", err)
	}
	want := []string{"public.people", "public.visits", "public.findings"}
	if !slices.Equal(pl.Pending, want) {
		t.Errorf("pending = %v, want %v", pl.Pending, want)
	}
	if !strings.Contains(pl.SQL(), "-- Pending: public.people does not exist yet; it will be split "+
		"when created through Privata.") {
		t.Errorf("plan does not name the pending table:\n%s", pl.SQL())
	}
	var roles, schemas int
	d.conn.QueryRow(ctx, `SELECT count(*) FROM pg_roles WHERE rolname IN
		('doctor', 'nurse', 'clerk', 'privata_owner')`).Scan(&roles)
	// privata and privata_audit come with the installed SQL; the split
	// storage's three schemas come from the plan.
	d.conn.QueryRow(ctx, `SELECT count(*) FROM pg_namespace WHERE nspname IN
		('privata', 'privata_audit', 'privata_identity', 'privata_clinical', 'privata_access')`).Scan(&schemas)
	if roles != 4 || schemas != 5 {
		t.Errorf("roles and schemas were not applied: %d roles, %d schemas", roles, schemas)
	}

	// The subject exists, without one of its classified columns; its
	// children do not.
	d.exec(t, `CREATE TABLE people (id serial PRIMARY KEY, ssn text, name text, blood text)`)
	pl, err = storage.Apply(ctx, conn, p, d.target(), storage.AllowMissing())
	if err != nil {
		t.Fatalf("apply after creating people: %v", err)
	}
	if want := []string{"public.visits", "public.findings"}; !slices.Equal(pl.Pending, want) {
		t.Errorf("pending = %v, want %v", pl.Pending, want)
	}
	var where []string
	rows, _ := d.conn.Query(ctx, `SELECT table_schema || '.' || column_name FROM information_schema.columns
		WHERE table_name = 'people' AND table_schema LIKE 'privata_%' AND column_name NOT LIKE 'privata_%'
		ORDER BY 1`)
	for rows.Next() {
		var s string
		rows.Scan(&s)
		where = append(where, s)
	}
	if want := []string{"privata_clinical.blood", "privata_identity.id", "privata_identity.name",
		"privata_identity.ssn"}; !slices.Equal(where, want) {
		t.Errorf("people's columns are in %v, want %v", where, want)
	}
	d.exec(t, `INSERT INTO people (ssn, name, blood) VALUES ('1', 'Ann', 'A')`)
	var name string
	if err := d.conn.QueryRow(ctx, `SELECT name FROM people WHERE blood = 'A'`).Scan(&name); err != nil ||
		name != "Ann" {
		t.Errorf("read through the view: %q, %v", name, err)
	}
}
