package storage_test

import (
	"flag"
	"os"
	"path/filepath"
	"testing"

	privatasql "github.com/privata/privata/sql"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// The plan for smallSchema, on a database where Privata's SQL is installed
// and its roles exist, is compared with a committed file. Regenerate it
// with: go test ./storage -run TestPlanGolden -update
func TestPlanGolden(t *testing.T) {
	d := newDB(t)
	d.exec(t, smallSchema)
	// The roles are the cluster's: make them exist, with no members, so
	// that the plan is the same whatever ran before.
	d.exec(t, `DO $$
		DECLARE r text;
		BEGIN
			FOREACH r IN ARRAY ARRAY['privata_owner', 'privata_identity_full', 'privata_identity_masked',
				'privata_clinical_full', 'privata_clinical_masked', 'doctor', 'nurse', 'clerk'] LOOP
				IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = r) THEN
					EXECUTE format('CREATE ROLE %I NOLOGIN', r);
				END IF;
			END LOOP;
			FOR r IN SELECT format('REVOKE %I FROM %I', g.rolname, m.rolname) FROM pg_auth_members a
				JOIN pg_roles g ON g.oid = a.roleid JOIN pg_roles m ON m.oid = a.member
				WHERE g.rolname LIKE 'privata\_%' LOOP
				EXECUTE r;
			END LOOP;
		END $$`)
	tx, err := d.conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := privatasql.Install(ctx, tx); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	got := d.preview(t, parsePolicy(t, smallPolicy)).SQL()
	golden(t, "small.plan.sql", got)

	// The plan is what apply runs.
	applied := d.apply(t, parsePolicy(t, smallPolicy)).SQL()
	if applied != got {
		t.Fatalf("apply ran another plan than plan printed:\n%s", diff(got, applied))
	}
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	file := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(file, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if string(want) != got {
		t.Fatalf("plan differs from %s (run with -update if the change is intended):\n%s", file,
			diff(string(want), got))
	}
}
