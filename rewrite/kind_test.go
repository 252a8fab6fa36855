package rewrite

import (
	"os"
	"testing"

	"github.com/privata/privata/internal/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// tagCase is a statement with its kind and command tag. TestTagsMatch-
// PostgreSQL runs each one (after setup) and compares the tag PostgreSQL
// reports; noRun marks the few that cannot run in a test database.
type tagCase struct {
	name  string
	sql   string
	kind  Kind
	tag   string
	setup string
	noRun string // why the statement is not run against PostgreSQL
	// reported is the tag PostgreSQL reports when it differs from the
	// statement's own (EXECUTE reports the prepared statement's).
	reported string
}

// baseSchema is created before each tag case runs.
const baseSchema = `
CREATE TABLE patients (id int PRIMARY KEY, ssn text, first text, last text, state text);
CREATE TABLE encounters (id int, patient int, code text);
CREATE TABLE staging (id int, ssn text, deleted bool);
CREATE ROLE privata_other;
`

var tagCases = []tagCase{
	{name: "select", sql: "SELECT ssn FROM patients", kind: Select, tag: "SELECT"},
	{name: "values", sql: "VALUES (1), (2)", kind: Select, tag: "SELECT"},
	{name: "select for update", sql: "SELECT * FROM patients FOR UPDATE", kind: Select, tag: "SELECT"},
	{name: "insert", sql: "INSERT INTO patients (id) VALUES (1)", kind: Insert, tag: "INSERT"},
	{name: "update", sql: "UPDATE patients SET ssn = NULL", kind: Update, tag: "UPDATE"},
	{name: "delete", sql: "DELETE FROM patients", kind: Delete, tag: "DELETE"},
	{name: "merge", sql: "MERGE INTO patients p USING staging s ON p.id = s.id " +
		"WHEN NOT MATCHED THEN INSERT (id) VALUES (s.id)", kind: Merge, tag: "MERGE"},
	{name: "copy from", sql: "COPY patients FROM STDIN", kind: CopyFrom, tag: "COPY",
		noRun: "needs COPY data"},
	{name: "copy to", sql: "COPY patients TO STDOUT", kind: CopyTo, tag: "COPY"},
	{name: "copy query to", sql: "COPY (SELECT 1) TO STDOUT", kind: CopyTo, tag: "COPY"},
	{name: "select into", sql: "SELECT * INTO backup FROM patients", kind: DDL, tag: "SELECT"},
	{name: "create table as", sql: "CREATE TABLE backup AS SELECT * FROM patients",
		kind: DDL, tag: "SELECT"},
	{name: "create table as with no data", sql: "CREATE TABLE backup AS SELECT * FROM " +
		"patients WITH NO DATA", kind: DDL, tag: "CREATE TABLE AS"},
	{name: "create materialized view", sql: "CREATE MATERIALIZED VIEW mv AS SELECT 1",
		kind: DDL, tag: "SELECT"},
	{name: "create materialized view with no data", sql: "CREATE MATERIALIZED VIEW mv AS " +
		"SELECT 1 WITH NO DATA", kind: DDL, tag: "CREATE MATERIALIZED VIEW"},
	{name: "refresh materialized view", sql: "REFRESH MATERIALIZED VIEW mv",
		setup: "CREATE MATERIALIZED VIEW mv AS SELECT 1", kind: Utility,
		tag: "REFRESH MATERIALIZED VIEW"},
	{name: "create table", sql: "CREATE TABLE t (a int)", kind: DDL, tag: "CREATE TABLE"},
	{name: "create view", sql: "CREATE VIEW v AS SELECT ssn FROM patients", kind: DDL,
		tag: "CREATE VIEW"},
	{name: "create index", sql: "CREATE INDEX ON patients (ssn)", kind: DDL, tag: "CREATE INDEX"},
	{name: "create sequence", sql: "CREATE SEQUENCE s", kind: DDL, tag: "CREATE SEQUENCE"},
	{name: "alter sequence", sql: "ALTER SEQUENCE s RESTART", setup: "CREATE SEQUENCE s",
		kind: DDL, tag: "ALTER SEQUENCE"},
	{name: "create schema", sql: "CREATE SCHEMA s_create CREATE TABLE t (a int)", kind: DDL,
		tag: "CREATE SCHEMA"},
	{name: "create function", sql: "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
		kind: DDL, tag: "CREATE FUNCTION"},
	{name: "create procedure", sql: "CREATE PROCEDURE p() LANGUAGE sql AS 'SELECT 1'",
		kind: DDL, tag: "CREATE PROCEDURE"},
	{name: "alter function", sql: "ALTER FUNCTION f() STABLE",
		setup: "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'", kind: DDL,
		tag: "ALTER FUNCTION"},
	{name: "create trigger", sql: "CREATE TRIGGER tr BEFORE INSERT ON patients " +
		"FOR EACH ROW EXECUTE FUNCTION tf()", kind: DDL, tag: "CREATE TRIGGER",
		setup: "CREATE FUNCTION tf() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NEW; END$$"},
	{name: "create rule", sql: "CREATE RULE r AS ON DELETE TO patients DO INSTEAD NOTHING",
		kind: DDL, tag: "CREATE RULE"},
	{name: "create type", sql: "CREATE TYPE mood AS ENUM ('ok')", kind: DDL, tag: "CREATE TYPE"},
	{name: "create composite type", sql: "CREATE TYPE pair AS (a int, b int)", kind: DDL,
		tag: "CREATE TYPE"},
	{name: "alter type", sql: "ALTER TYPE mood ADD VALUE 'sad'",
		setup: "CREATE TYPE mood AS ENUM ('ok')", kind: DDL, tag: "ALTER TYPE"},
	{name: "create domain", sql: "CREATE DOMAIN posint AS int CHECK (VALUE > 0)", kind: DDL,
		tag: "CREATE DOMAIN"},
	{name: "create aggregate", sql: "CREATE AGGREGATE mysum (int) (sfunc = int4pl, stype = int)",
		kind: DDL, tag: "CREATE AGGREGATE"},
	{name: "create extension", sql: "CREATE EXTENSION IF NOT EXISTS hstore", kind: DDL,
		tag: "CREATE EXTENSION"},
	{name: "alter table", sql: "ALTER TABLE patients ADD COLUMN zip text", kind: DDL,
		tag: "ALTER TABLE"},
	{name: "alter table rename column", sql: "ALTER TABLE patients RENAME COLUMN ssn TO ssn2",
		kind: DDL, tag: "ALTER TABLE"},
	{name: "alter view rename column", sql: "ALTER VIEW v RENAME COLUMN ssn TO s",
		setup: "CREATE VIEW v AS SELECT ssn FROM patients", kind: DDL, tag: "ALTER VIEW"},
	{name: "alter table rename", sql: "ALTER TABLE staging RENAME TO staging2", kind: DDL,
		tag: "ALTER TABLE"},
	{name: "alter index", sql: "ALTER INDEX patients_pkey RENAME TO pk", kind: DDL,
		tag: "ALTER INDEX"},
	{name: "alter table set schema", sql: "ALTER TABLE staging SET SCHEMA s_move",
		setup: "CREATE SCHEMA s_move", kind: DDL, tag: "ALTER TABLE"},
	{name: "alter table owner", sql: "ALTER TABLE staging OWNER TO privata_other", kind: DDL,
		tag: "ALTER TABLE"},
	{name: "drop table", sql: "DROP TABLE staging", kind: DDL, tag: "DROP TABLE"},
	{name: "drop view", sql: "DROP VIEW v", setup: "CREATE VIEW v AS SELECT 1", kind: DDL,
		tag: "DROP VIEW"},
	{name: "drop materialized view", sql: "DROP MATERIALIZED VIEW mv",
		setup: "CREATE MATERIALIZED VIEW mv AS SELECT 1", kind: DDL,
		tag: "DROP MATERIALIZED VIEW"},
	{name: "drop index", sql: "DROP INDEX i", setup: "CREATE INDEX i ON patients (ssn)",
		kind: DDL, tag: "DROP INDEX"},
	{name: "drop function", sql: "DROP FUNCTION f()",
		setup: "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'", kind: DDL,
		tag: "DROP FUNCTION"},
	{name: "drop schema", sql: "DROP SCHEMA s_drop", setup: "CREATE SCHEMA s_drop", kind: DDL,
		tag: "DROP SCHEMA"},
	{name: "comment", sql: "COMMENT ON TABLE patients IS 'people'", kind: DDL, tag: "COMMENT"},
	{name: "create policy", sql: "CREATE POLICY p ON patients USING (true)", kind: DDL,
		tag: "CREATE POLICY"},
	{name: "create role", sql: "CREATE ROLE privata_r_create", kind: DDL, tag: "CREATE ROLE"},
	{name: "alter role", sql: "ALTER ROLE privata_other NOLOGIN", kind: DDL, tag: "ALTER ROLE"},
	{name: "drop role", sql: "DROP ROLE privata_r_drop", setup: "CREATE ROLE privata_r_drop",
		kind: DDL, tag: "DROP ROLE"},
	{name: "create database", sql: "CREATE DATABASE privata_tag_test", kind: DDL,
		tag: "CREATE DATABASE", noRun: "creates a database outside the test's own"},
	{name: "truncate", sql: "TRUNCATE staging", kind: Truncate, tag: "TRUNCATE TABLE"},
	{name: "grant", sql: "GRANT SELECT ON patients TO privata_other", kind: Grant, tag: "GRANT"},
	{name: "revoke", sql: "REVOKE SELECT ON patients FROM privata_other", kind: Grant,
		tag: "REVOKE"},
	{name: "grant role", sql: "GRANT privata_other TO CURRENT_USER", kind: Grant,
		tag: "GRANT ROLE"},
	{name: "alter default privileges", sql: "ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES " +
		"TO privata_other", kind: Grant, tag: "ALTER DEFAULT PRIVILEGES"},
	{name: "begin", sql: "BEGIN", kind: Transaction, tag: "BEGIN"},
	{name: "start transaction", sql: "START TRANSACTION ISOLATION LEVEL SERIALIZABLE",
		kind: Transaction, tag: "START TRANSACTION"},
	{name: "commit", sql: "COMMIT", kind: Transaction, tag: "COMMIT"},
	{name: "end", sql: "END", kind: Transaction, tag: "COMMIT"},
	{name: "rollback", sql: "ROLLBACK", kind: Transaction, tag: "ROLLBACK"},
	{name: "abort", sql: "ABORT", kind: Transaction, tag: "ROLLBACK"},
	{name: "savepoint", sql: "SAVEPOINT a", kind: Transaction, tag: "SAVEPOINT",
		noRun: "needs a transaction block"},
	{name: "release", sql: "RELEASE SAVEPOINT a", kind: Transaction, tag: "RELEASE",
		noRun: "needs a transaction block"},
	{name: "rollback to", sql: "ROLLBACK TO SAVEPOINT a", kind: Transaction, tag: "ROLLBACK",
		noRun: "needs a transaction block"},
	{name: "prepare transaction", sql: "PREPARE TRANSACTION 'x'", kind: Transaction,
		tag: "PREPARE TRANSACTION", noRun: "needs max_prepared_transactions"},
	{name: "set", sql: "SET search_path TO public", kind: Set, tag: "SET"},
	{name: "set local", sql: "SET LOCAL statement_timeout = 0", kind: Set, tag: "SET"},
	{name: "set time zone", sql: "SET TIME ZONE 'UTC'", kind: Set, tag: "SET"},
	{name: "set transaction", sql: "SET TRANSACTION READ ONLY", kind: Set, tag: "SET"},
	{name: "set constraints", sql: "SET CONSTRAINTS ALL DEFERRED", kind: Utility,
		tag: "SET CONSTRAINTS"},
	{name: "reset", sql: "RESET search_path", kind: Reset, tag: "RESET"},
	{name: "reset all", sql: "RESET ALL", kind: Reset, tag: "RESET"},
	{name: "show", sql: "SHOW search_path", kind: Show, tag: "SHOW"},
	{name: "discard all", sql: "DISCARD ALL", kind: Discard, tag: "DISCARD ALL"},
	{name: "discard plans", sql: "DISCARD PLANS", kind: Discard, tag: "DISCARD PLANS"},
	{name: "discard temp", sql: "DISCARD TEMP", kind: Discard, tag: "DISCARD TEMP"},
	{name: "discard sequences", sql: "DISCARD SEQUENCES", kind: Discard,
		tag: "DISCARD SEQUENCES"},
	{name: "listen", sql: "LISTEN ch", kind: Listen, tag: "LISTEN"},
	{name: "unlisten", sql: "UNLISTEN *", kind: Unlisten, tag: "UNLISTEN"},
	{name: "notify", sql: "NOTIFY ch, 'payload'", kind: Notify, tag: "NOTIFY"},
	{name: "call", sql: "CALL p()", setup: "CREATE PROCEDURE p() LANGUAGE sql AS 'SELECT 1'",
		kind: Call, tag: "CALL"},
	{name: "do", sql: "DO $$BEGIN NULL; END$$", kind: Do, tag: "DO"},
	{name: "explain", sql: "EXPLAIN SELECT 1", kind: Explain, tag: "EXPLAIN"},
	{name: "prepare", sql: "PREPARE q AS SELECT $1::int", kind: Prepare, tag: "PREPARE"},
	{name: "execute", sql: "EXECUTE q(1)", setup: "PREPARE q AS SELECT $1::int", kind: Execute,
		tag: "EXECUTE", reported: "SELECT"},
	{name: "deallocate", sql: "DEALLOCATE q", setup: "PREPARE q AS SELECT 1", kind: Deallocate,
		tag: "DEALLOCATE"},
	{name: "deallocate all", sql: "DEALLOCATE ALL", kind: Deallocate, tag: "DEALLOCATE ALL"},
	{name: "declare", sql: "DECLARE c CURSOR FOR SELECT 1", kind: Declare, tag: "DECLARE CURSOR",
		noRun: "needs a transaction block"},
	{name: "fetch", sql: "FETCH 10 FROM c", kind: Fetch, tag: "FETCH",
		noRun: "needs a transaction block"},
	{name: "move", sql: "MOVE 10 IN c", kind: Fetch, tag: "MOVE",
		noRun: "needs a transaction block"},
	{name: "close", sql: "CLOSE c", kind: Close, tag: "CLOSE CURSOR",
		noRun: "needs a transaction block"},
	{name: "close all", sql: "CLOSE ALL", kind: Close, tag: "CLOSE CURSOR ALL"},
	{name: "lock", sql: "LOCK TABLE patients", kind: Lock, tag: "LOCK TABLE",
		noRun: "needs a transaction block"},
	{name: "vacuum", sql: "VACUUM patients", kind: Utility, tag: "VACUUM"},
	{name: "analyze", sql: "ANALYZE patients", kind: Utility, tag: "ANALYZE"},
	{name: "cluster", sql: "CLUSTER patients USING patients_pkey", kind: Utility, tag: "CLUSTER"},
	{name: "reindex", sql: "REINDEX TABLE patients", kind: Utility, tag: "REINDEX"},
	{name: "checkpoint", sql: "CHECKPOINT", kind: Utility, tag: "CHECKPOINT"},
}

func TestKindsAndTags(t *testing.T) {
	a := NewAnalyzer(0)
	for _, c := range tagCases {
		t.Run(c.name, func(t *testing.T) {
			an := analyzeOne(t, a, c.sql)
			if an.Kind != c.kind || an.Tag != c.tag {
				t.Fatalf("kind, tag = %v, %q; want %v, %q", an.Kind, an.Tag, c.kind, c.tag)
			}
		})
	}
}

func TestEveryKindHasAName(t *testing.T) {
	seen := map[string]Kind{}
	for k := Utility; k <= Lock; k++ {
		name := k.String()
		if name == "" || name == "unknown" {
			t.Errorf("kind %d has no name", k)
		}
		if other, dup := seen[name]; dup {
			t.Errorf("kinds %d and %d are both %q", other, k, name)
		}
		seen[name] = k
	}
	if Kind(200).String() != "unknown" {
		t.Errorf("an out-of-range kind is %q", Kind(200).String())
	}
}

// analyzeOne analyses a text that must hold exactly one statement.
func analyzeOne(t *testing.T, a *Analyzer, sql string) *Statement {
	t.Helper()
	an, err := a.Analyze(sql)
	if err != nil {
		t.Fatalf("Analyze(%q): %v", sql, err)
	}
	if len(an.Statements) != 1 {
		t.Fatalf("Analyze(%q): %d statements, want 1", sql, len(an.Statements))
	}
	return an.Statements[0]
}
