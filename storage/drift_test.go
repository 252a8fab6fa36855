package storage_test

import (
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

func TestPlanRepairsDrift(t *testing.T) {
	d := newDB(t)
	d.exec(t, smallSchema)
	p := parsePolicy(t, smallPolicy)
	d.apply(t, p)
	contents := d.contents(t, "people", "visits", "findings")
	for _, c := range []struct{ name, sql string }{
		{"a dropped trigger", `DROP TRIGGER privata_insert ON people`},
		{"a grant on a base table", `GRANT SELECT ON privata_identity.people TO nurse`},
		{"a revoked grant on the view", `REVOKE INSERT ON people FROM doctor`},
		{"a replaced access view", `CREATE OR REPLACE VIEW privata_access.people_identity AS
			SELECT id, privata_pseudonym, privata_region, ssn, name, born, email FROM privata_identity.people`},
		{"a dropped view", `DROP VIEW findings`},
		{"a dropped upsert view", `DROP VIEW privata_access.people_upsert`},
		{"a replaced upsert trigger function", `CREATE OR REPLACE FUNCTION privata_access.visits_apply()
			RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NEW; END'`},
		{"disabled row-level security", `ALTER TABLE privata_clinical.visits NO FORCE ROW LEVEL SECURITY`},
		{"a trigger added to a base table", `CREATE FUNCTION public.noop() RETURNS trigger LANGUAGE plpgsql
			AS 'BEGIN RETURN NEW; END'; CREATE TRIGGER sneaky BEFORE INSERT ON privata_clinical.findings
			FOR EACH ROW EXECUTE FUNCTION public.noop()`},
	} {
		t.Run(c.name, func(t *testing.T) {
			d.exec(t, c.sql)
			pl := d.preview(t, p)
			if pl.Empty() || !strings.Contains(pl.SQL(), "drift") {
				t.Fatalf("plan does not see the drift:\n%s", pl.SQL())
			}
			d.apply(t, p)
			if again := d.preview(t, p); !again.Empty() {
				t.Fatalf("not repaired:\n%s", again.SQL())
			}
		})
	}
	if got := d.contents(t, "people", "visits", "findings"); !equalContents(got, contents) {
		t.Fatalf("repairs changed values")
	}
	d.as(t, "nurse", func(tx pgx.Tx) { mustDeny(t, tx, `SELECT ssn FROM privata_identity.people`) })
	if got := outcome(t, d, "doctor", `INSERT INTO people (ssn, name) VALUES ('999-00-0100', 'Z') RETURNING name`); got != "INSERT 0 1 Z" {
		t.Fatalf("insert after repairs: %s", got)
	}
	if n := column(t, d.conn, `SELECT count(*) FROM pg_trigger WHERE tgname = 'sneaky'`); n[0] != "0" {
		t.Fatalf("the trigger added to a base table is still there")
	}
}

func equalContents(a, b map[string][]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if strings.Join(v, "\n") != strings.Join(b[k], "\n") {
			return false
		}
	}
	return true
}

// The change-context triggers wait for privata.emit_context(), which the
// audit's SQL defines; once it exists, apply adds them.
func TestContextTriggersFollowEmitContext(t *testing.T) {
	d := newDB(t)
	d.exec(t, smallSchema)
	p := parsePolicy(t, smallPolicy)
	d.apply(t, p)
	count := func() string {
		return column(t, d.conn, `SELECT count(*) FROM pg_trigger g JOIN pg_class c ON c.oid = g.tgrelid
			JOIN pg_namespace n ON n.oid = c.relnamespace
			WHERE g.tgname = 'privata_context' AND n.nspname IN ('privata_identity', 'privata_clinical')`)[0]
	}
	// Privata's SQL defines the function: the first apply adds the triggers.
	if n := count(); n != "4" {
		t.Fatalf("%s context triggers after the first apply, want 4", n)
	}
	// Without the function, apply leaves the triggers out.
	d.exec(t, `DROP FUNCTION privata.emit_context() CASCADE`)
	d.apply(t, p)
	if n := count(); n != "0" {
		t.Fatalf("%s context triggers before privata.emit_context() exists", n)
	}
	d.exec(t, `CREATE FUNCTION privata.emit_context() RETURNS trigger LANGUAGE plpgsql
		AS 'BEGIN RETURN NULL; END'`)
	pl := d.apply(t, p)
	if !strings.Contains(pl.SQL(), "EXECUTE FUNCTION privata.emit_context()") {
		t.Fatalf("apply did not add the context triggers:\n%s", pl.SQL())
	}
	if n := count(); n != "4" {
		t.Fatalf("%s context triggers, want one on each of the 4 base tables", n)
	}
	if again := d.apply(t, p); !again.Empty() {
		t.Fatalf("apply after adding the triggers was not empty:\n%s", again.SQL())
	}
	if got := outcome(t, d, "doctor", `UPDATE visits SET cost = 1 WHERE id = 1 RETURNING reason`); got != "UPDATE 1 checkup" {
		t.Fatalf("update with context triggers: %s", got)
	}
}
