package storage_test

import (
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// Privata's session login (session_url) is granted the policy roles but,
// NOINHERIT, reads nothing until it sets one: pg_has_role(..., 'USAGE')
// follows inheritance, so the access views show it no value either.
func TestSessionLoginActsOnlyThroughPolicyRoles(t *testing.T) {
	d := newDB(t)
	d.exec(t, smallSchema)
	d.exec(t, `DO $$ BEGIN
		IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'privata_session') THEN
			CREATE ROLE privata_session LOGIN;
		END IF;
		IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'reporting') THEN
			CREATE ROLE reporting NOLOGIN;
		END IF; END $$`)
	d.exec(t, `ALTER ROLE privata_session INHERIT; GRANT SELECT ON people TO reporting`)
	target := d.target()
	target.Session = "privata_session"
	conn := d.Connect(t)
	pl, err := storageApply(conn, parsePolicy(t, smallPolicy), target)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(pl.SQL(), `ALTER ROLE "privata_session" NOINHERIT;`) ||
		!strings.Contains(pl.SQL(), `GRANT "clerk", "doctor", "nurse" TO "privata_session";`) {
		t.Fatalf("plan does not set up the session login:\n%s", pl.SQL())
	}
	session := pgtestConnectAs(t, d, "privata_session")
	if _, err := session.Exec(ctx, `SELECT ssn FROM people`); sqlstate(err) != "42501" {
		t.Fatalf("the session login reads people before SET ROLE: %v", err)
	}
	if _, err := session.Exec(ctx, `SET ROLE nurse`); err != nil {
		t.Fatal(err)
	}
	var ssn string
	if err := session.QueryRow(ctx, `SELECT ssn FROM people WHERE id = 1`).Scan(&ssn); err != nil {
		t.Fatal(err)
	}
	if ssn != "*******0001" {
		t.Fatalf("nurse (through the session login) reads %q", ssn)
	}

	// The original table's grant to a role outside the policy is kept:
	// it reads the view, with no identity or clinical value.
	d.as(t, "reporting", func(tx pgx.Tx) {
		got := column(t, tx, `SELECT id || ' ' || COALESCE(ssn, '-') || ' ' || COALESCE(note, '-') ||
			' ' || (created IS NOT NULL) FROM people ORDER BY id`)
		if len(got) != 3 || got[0] != "1 - - true" {
			t.Fatalf("reporting reads %v", got)
		}
		mustDeny(t, tx, `INSERT INTO people (ssn, name) VALUES ('x', 'y')`)
	})

	target.Session = "postgres"
	if _, err := storageApply(d.Connect(t), parsePolicy(t, smallPolicy), target); err == nil ||
		!strings.Contains(err.Error(), "the session_url user postgres is a superuser") {
		t.Fatalf("a superuser session login was accepted: %v", err)
	}
}
