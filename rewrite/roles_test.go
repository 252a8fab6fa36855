package rewrite

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/privata/privata/internal/pgtest"
)

// roleCase is a statement and whether Analyze must report it as a role
// change. TestRoleChangesAreRealInPostgreSQL runs each one (after setup,
// and followed by probe, which runs what the statement created) and checks
// that the role really changes exactly when a reason is expected.
type roleCase struct {
	name   string
	sql    string
	reason string // substring of RoleChange; "" for statements that must pass
	setup  string
	probe  string
	// noRun says why the case is not run against PostgreSQL.
	noRun string
}

const roleFunc = "CREATE FUNCTION whoami() RETURNS text LANGUAGE sql AS 'SELECT current_user::text'"

var roleCases = []roleCase{
	{name: "SET ROLE", sql: "SET ROLE privata_other", reason: "SET ROLE"},
	{name: "SET LOCAL ROLE", sql: "SET LOCAL ROLE privata_other", reason: "SET ROLE",
		noRun: "lasts only inside a transaction block"},
	{name: "SET role = 'name'", sql: "SET role = 'privata_other'", reason: "SET ROLE"},
	{name: "SET with a quoted, mixed-case name", sql: `SET "Role" TO privata_other`,
		reason: "SET ROLE"},
	{name: "SET ROLE NONE", sql: "SET ROLE NONE", setup: "SET ROLE privata_other",
		reason: "SET ROLE"},
	{name: "RESET ROLE", sql: "RESET ROLE", setup: "SET ROLE privata_other",
		reason: "RESET ROLE"},
	{name: "SET role TO DEFAULT", sql: "SET role TO DEFAULT", setup: "SET ROLE privata_other",
		reason: "RESET ROLE"},
	{name: "SET SESSION AUTHORIZATION", sql: "SET SESSION AUTHORIZATION privata_other",
		reason: "SET SESSION AUTHORIZATION"},
	{name: "SET SESSION AUTHORIZATION DEFAULT", sql: "SET SESSION AUTHORIZATION DEFAULT",
		setup: "SET ROLE privata_other", reason: "SESSION AUTHORIZATION"},
	{name: "RESET SESSION AUTHORIZATION", sql: "RESET SESSION AUTHORIZATION",
		setup: "SET ROLE privata_other", reason: "RESET SESSION AUTHORIZATION"},
	{name: "set_config role", sql: "SELECT set_config('role', 'privata_other', false)",
		reason: "set_config('role', ...)"},
	{name: "set_config with an upper-case name",
		sql:    "SELECT set_config('ROLE', 'privata_other', false)",
		reason: "set_config('role', ...)"},
	{name: "set_config session_authorization",
		sql:    "SELECT pg_catalog.set_config('session_authorization', 'privata_other', false)",
		reason: "set_config('session_authorization', ...)"},
	{name: "set_config with named arguments", sql: "SELECT set_config(setting_name => 'role', " +
		"new_value => 'privata_other', is_local => false)", reason: "set_config('role', ...)",
		noRun: "PostgreSQL 15's set_config has no argument names"},
	{name: "set_config with a cast name",
		sql:    "SELECT set_config('role'::text, 'privata_other', false)",
		reason: "set_config('role', ...)"},
	{name: "set_config in FROM", sql: "SELECT * FROM set_config('role', 'privata_other', false)",
		reason: "set_config('role', ...)"},
	{name: "set_config with a parameter as name", sql: "SELECT set_config($1, 'x', false)",
		reason: "not a constant", noRun: "needs a parameter"},
	{name: "set_config with a computed name",
		sql:    "SELECT set_config(lower('RO') || 'le', 'privata_other', false)",
		reason: "not a constant"},
	{name: "a DO block that sets the role", sql: "DO $$BEGIN SET ROLE privata_other; END$$",
		reason: "the DO block runs SET ROLE"},
	{name: "a DO block that calls set_config",
		sql:    "DO $$BEGIN PERFORM set_config('role', 'privata_other', false); END$$",
		reason: "the DO block runs set_config('role', ...)"},
	{name: "a DO block that assigns set_config's result",
		sql:    "DO $$DECLARE x text; BEGIN x := set_config('role', 'privata_other', false); END$$",
		reason: "set_config('role', ...)"},
	{name: "a DO block that calls set_config in a condition",
		sql: "DO $$BEGIN IF set_config('role', 'privata_other', false) IS NOT NULL THEN " +
			"NULL; END IF; END$$", reason: "set_config('role', ...)"},
	{name: "a DO block that runs dynamic SQL",
		sql:    "DO $$DECLARE r text := 'privata_other'; BEGIN EXECUTE 'SET ROLE ' || r; END$$",
		reason: "dynamic SQL"},
	{name: "a DO block that loops over dynamic SQL",
		sql:    "DO $$DECLARE x record; BEGIN FOR x IN EXECUTE 'SELECT 1' LOOP END LOOP; END$$",
		reason: "dynamic SQL", noRun: "refused because it could, not because it does"},
	{name: "a DO block inside a DO block",
		sql:    "DO $$BEGIN DO $i$BEGIN SET ROLE privata_other; END$i$; END$$",
		reason: "SET ROLE"},
	{name: "a DO block in another language", sql: "DO LANGUAGE plperl $$ 1; $$",
		reason: "language other than PL/pgSQL", noRun: "plperl is not installed"},
	{name: "a PL/pgSQL function that sets the role",
		sql: "CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS " +
			"$$BEGIN SET ROLE privata_other; END$$",
		probe:  "SELECT f()",
		reason: "the function body runs SET ROLE"},
	{name: "an SQL function that calls set_config",
		sql: "CREATE FUNCTION f() RETURNS text LANGUAGE sql AS " +
			"$$SELECT set_config('role', 'privata_other', false)$$",
		probe: "SELECT f()", reason: "the function body runs set_config('role', ...)"},
	{name: "an SQL function with a standard body",
		sql: "CREATE FUNCTION f() RETURNS text LANGUAGE sql BEGIN ATOMIC " +
			"SELECT set_config('role', 'privata_other', false); END",
		probe: "SELECT f()", reason: "set_config('role', ...)"},
	{name: "a procedure that runs dynamic SQL",
		sql: "CREATE PROCEDURE p() LANGUAGE plpgsql AS " +
			"$$BEGIN EXECUTE 'SET ROLE privata_other'; END$$",
		probe: "CALL p()", reason: "dynamic SQL"},
	{name: "a function with a SET role clause",
		sql: "CREATE FUNCTION f() RETURNS text LANGUAGE sql SET role = privata_other " +
			"AS 'SELECT current_user::text'",
		probe: "SELECT f()", reason: "a function SET clause for role"},
	{name: "ALTER FUNCTION ... SET role", sql: "ALTER FUNCTION whoami() SET role = privata_other",
		setup: roleFunc, probe: "SELECT whoami()", reason: "a function SET clause for role"},
	{name: "a function body in another language",
		sql:    "CREATE FUNCTION f() RETURNS int LANGUAGE plperl AS '1'",
		reason: "language other than SQL or PL/pgSQL", noRun: "plperl is not installed"},
	{name: "an aggregate whose state function is set_config",
		sql: "CREATE AGGREGATE setrole(text, boolean) " +
			"(SFUNC = set_config, STYPE = text, INITCOND = 'role')",
		probe: "SELECT setrole('privata_other', false)", reason: "sfunc is set_config()"},
	{name: "a column default that calls set_config",
		sql:   "CREATE TABLE stamped (a text DEFAULT set_config('role', 'privata_other', false))",
		probe: "INSERT INTO stamped DEFAULT VALUES", reason: "set_config('role', ...)"},
	{name: "a view that calls set_config",
		sql:   "CREATE VIEW v AS SELECT set_config('role', 'privata_other', false)",
		probe: "SELECT * FROM v", reason: "set_config('role', ...)"},
	{name: "a row-level security policy that calls set_config",
		sql: "CREATE POLICY p ON patients USING " +
			"(set_config('role', 'privata_other', false) IS NOT NULL)",
		reason: "set_config('role', ...)", noRun: "superusers bypass row-level security"},
	{name: "a rule that calls set_config",
		sql: "CREATE RULE r AS ON INSERT TO staging DO ALSO " +
			"SELECT set_config('role', 'privata_other', false)",
		probe: "INSERT INTO staging (id) VALUES (1)", reason: "set_config('role', ...)"},
	{name: "a prepared statement that calls set_config",
		sql:    "PREPARE q AS SELECT set_config('role', $1, false)",
		probe:  "EXECUTE q('privata_other')",
		reason: "set_config('role', ...)"},
	{name: "ALTER ROLE ... SET role", sql: "ALTER ROLE privata_other SET role = privata_other",
		reason: "ALTER ROLE ... SET role", noRun: "takes effect at the next login"},
	{name: "ALTER DATABASE ... SET role", sql: "ALTER DATABASE d SET role = privata_other",
		reason: "ALTER DATABASE ... SET role", noRun: "takes effect at the next login"},
	{name: "query_to_xml running set_config",
		sql: "SELECT query_to_xml('SELECT set_config(''role'', ''privata_other'', false)', " +
			"true, false, '')", reason: "query_to_xml() runs set_config('role', ...)"},
	{name: "query_to_xml running a query it cannot see",
		sql:    "SELECT query_to_xml(code, true, false, '') FROM encounters",
		reason: "query_to_xml() with SQL text that is not a constant",
		noRun:  "refused because it could, not because it does"},

	{name: "SET privata.actor is allowed", sql: "SET privata.actor = 'dr who'"},
	{name: "SET search_path is allowed", sql: "SET search_path TO public"},
	{name: "set_config application_name is allowed",
		sql: "SELECT set_config('application_name', 'x', false)"},
	{name: "set_config privata.purpose is allowed",
		sql: "SELECT set_config('privata.purpose', 'treatment', true)"},
	{name: "RESET ALL keeps the role", sql: "RESET ALL", setup: "SET ROLE privata_other"},
	{name: "current_setting is allowed", sql: "SELECT current_setting('role')"},
	{name: "SHOW role is allowed", sql: "SHOW role"},
	{name: "SET ROLE inside a string is allowed", sql: "SELECT 'SET ROLE privata_other'"},
	{name: "a DO block that only mentions SET ROLE",
		sql: "DO $$BEGIN RAISE NOTICE 'SET ROLE privata_other'; END$$"},
	{name: "a DO block that sets application_name",
		sql: "DO $$BEGIN PERFORM set_config('application_name', 'x', false); END$$"},
	{name: "a trigger function that stamps rows",
		sql: "CREATE FUNCTION stamp() RETURNS trigger LANGUAGE plpgsql AS $$\n" +
			"BEGIN\n  NEW.state := upper(NEW.state);\n  IF NEW.id < 0 THEN\n" +
			"    RAISE EXCEPTION 'bad id %', NEW.id;\n  END IF;\n  RETURN NEW;\nEND\n$$"},
	{name: "a function with a SET search_path clause",
		sql: "CREATE FUNCTION f() RETURNS int LANGUAGE sql SET search_path = public AS 'SELECT 1'"},
	{name: "ALTER ROLE ... SET search_path",
		sql: "ALTER ROLE privata_other SET search_path = public"},
	{name: "a Drizzle migration's DO block",
		sql: `DO $$ BEGIN
 ALTER TABLE "encounters" ADD CONSTRAINT "encounters_patient_fk" FOREIGN KEY ("patient")
   REFERENCES "patients"("id") ON DELETE cascade ON UPDATE no action;
EXCEPTION
 WHEN duplicate_object THEN null;
END $$;`},
	{name: "a Sequelize enum DO block",
		sql: "DO 'BEGIN CREATE TYPE \"public\".\"enum_patients_state\" AS ENUM(''a'', ''b''); " +
			"EXCEPTION WHEN duplicate_object THEN null; END';"},
	{name: "a PL/pgSQL function with loops, cursors and diagnostics",
		sql: `CREATE FUNCTION tally(p int) RETURNS SETOF int LANGUAGE plpgsql AS $$
DECLARE
  r record;
  n int := 0;
  c CURSOR FOR SELECT id FROM patients WHERE id > p;
BEGIN
  FOR r IN SELECT * FROM encounters WHERE patient = p LOOP
    n := n + 1;
  END LOOP;
  FOREACH n IN ARRAY ARRAY[1, 2] LOOP
    CONTINUE WHEN n > 1;
  END LOOP;
  OPEN c;
  CLOSE c;
  UPDATE staging SET deleted = true WHERE id = p;
  GET DIAGNOSTICS n = ROW_COUNT;
  RETURN QUERY SELECT id FROM patients;
  RETURN NEXT n;
EXCEPTION WHEN others THEN
  RAISE WARNING 'failed: %', SQLERRM;
END $$`},
	{name: "PL/pgSQL pg_query cannot parse that sets the role",
		sql: "DO $$DECLARE c CURSOR FOR SELECT 1; BEGIN OPEN c; CLOSE c; " +
			"SET ROLE privata_other; END$$",
		reason: "mentions role"},
	{name: "granting a role is not changing it", sql: "GRANT privata_other TO CURRENT_USER"},
	{name: "an ordinary aggregate",
		sql:   "CREATE AGGREGATE mysum(int) (SFUNC = int4pl, STYPE = int, INITCOND = '0')",
		probe: "SELECT mysum(x) FROM generate_series(1, 3) x"},
}

func TestRoleChanges(t *testing.T) {
	a := NewAnalyzer(0)
	for _, c := range roleCases {
		t.Run(c.name, func(t *testing.T) {
			st := analyzeOne(t, a, c.sql)
			switch {
			case c.reason == "" && st.RoleChange != "":
				t.Fatalf("RoleChange = %q; want none", st.RoleChange)
			case !strings.Contains(st.RoleChange, c.reason):
				t.Fatalf("RoleChange = %q; want it to say %q", st.RoleChange, c.reason)
			}
		})
	}
}

func TestRoleChangesAreRealInPostgreSQL(t *testing.T) {
	db := pgtest.NewDB(t, pgtest.Shared(t))
	mustExec(t, db.Connect(t), roleSetup)
	ran := 0
	for i, c := range roleCases {
		if c.noRun != "" {
			continue
		}
		ran++
		t.Run(c.name, func(t *testing.T) {
			conn := caseConn(t, db, 1000+i)
			mustExec(t, conn, "GRANT USAGE, CREATE ON SCHEMA "+
				pgx.Identifier{"case_" + strconv.Itoa(1000+i)}.Sanitize()+" TO privata_other")
			if c.setup != "" {
				mustExec(t, conn, c.setup)
			}
			// The role changes if current_user does, or if the probe (a
			// function that reports current_user while it runs) says so.
			before := currentRole(t, conn)
			mustExec(t, conn, c.sql)
			roles := []string{currentRole(t, conn)}
			probed := ""
			if c.probe != "" {
				probed = queryText(t, conn, c.probe)
				roles = append(roles, currentRole(t, conn))
			}
			changed := probed == "privata_other" ||
				slices.ContainsFunc(roles, func(r string) bool { return r != before })
			if changed != (c.reason != "") {
				t.Fatalf("role before %q, after %q, probe %q; the case expects a change: %v",
					before, roles, probed, c.reason != "")
			}
		})
	}
	if ran < len(roleCases)*2/3 {
		t.Fatalf("only %d of %d cases ran against PostgreSQL", ran, len(roleCases))
	}
}

func TestDiscardAllAndResetAllResetTheSession(t *testing.T) {
	a := NewAnalyzer(0)
	for _, sql := range []string{"DISCARD ALL", "RESET ALL"} {
		st := analyzeOne(t, a, sql)
		if st.RoleChange != "" || !st.ResetsSession {
			t.Errorf("%s: RoleChange %q, ResetsSession %v; want none, true",
				sql, st.RoleChange, st.ResetsSession)
		}
	}
	for _, sql := range []string{"DISCARD PLANS", "RESET search_path", "RESET privata.actor"} {
		if st := analyzeOne(t, a, sql); st.ResetsSession {
			t.Errorf("%s resets the session", sql)
		}
	}
}

func currentRole(t *testing.T, conn *pgx.Conn) string {
	t.Helper()
	return queryText(t, conn, "SELECT current_user::text")
}

// queryText runs sql and returns the first value of its first row as text,
// or "" when there is none.
func queryText(t *testing.T, conn *pgx.Conn, sql string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	results, err := conn.PgConn().Exec(ctx, sql).ReadAll()
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	if len(results) == 0 || len(results[0].Rows) == 0 || len(results[0].Rows[0]) == 0 {
		return ""
	}
	return string(results[0].Rows[0][0])
}
