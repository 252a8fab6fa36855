package multiregion

import (
	"testing"

	"github.com/jackc/pgx/v5"
)

// Upserts, which Privata rewrites for split tables, go to the subject's
// home region as inserts do: routing reads the client's statement, the
// region's cluster runs the rewritten one.
func TestUpsertsReachTheSubjectsRegion(t *testing.T) {
	w := newWorld(t, shared(t, "us", "eu"), clinicPolicy)
	w.start(t)
	c := w.client(t, "clinician", "treatment")
	const upsert = `INSERT INTO patients (id, birthdate, ssn, first, last, address, state, marital, gender)
		VALUES ($1, '1980-05-17', $2, $3, $4, $5, $6, 'M', 'M')
		ON CONFLICT (id) DO UPDATE SET first = excluded.first RETURNING first`
	for i, mode := range []pgx.QueryExecMode{pgx.QueryExecModeCacheStatement, pgx.QueryExecModeSimpleProtocol} {
		for _, first := range []string{"Sven", "Svante"} {
			var got string
			args := append([]any{mode}, sven...)
			args[3] = first
			if i == 1 {
				args[3] = first + "!"
			}
			if err := c.QueryRow(ctx, upsert, args...).Scan(&got); err != nil {
				t.Fatalf("%v upsert: %v", mode, err)
			}
			if got != args[3] {
				t.Fatalf("%v upsert returned %q, want %q", mode, got, args[3])
			}
		}
	}
	if us, eu := w.inEach(t, svenID); us != 0 || eu != 1 {
		t.Fatalf("Sven: %d in us, %d in eu; want only in eu", us, eu)
	}
	if n := w.regions["eu"].count(t, `SELECT count(*) FROM patients WHERE id = $1 AND first = 'Svante!'`,
		svenID); n != 1 {
		t.Fatalf("eu holds Sven's row %d times with the last upsert's name", n)
	}
}
