package rewrite

import (
	"strings"
	"testing"
)

// kindCases decide at least one statement of every kind on the clinic
// policy's classified tables (patients, encounters). A new statement kind
// fails TestEveryKindIsDecided until it has a case here. DDL that creates,
// alters and drops classified tables is decided by the DDL engine and
// tested with it; the DDL cases here read classified tables.
var kindCases = []struct {
	kind    Kind
	sql     string
	action  Action
	message string // for refusals: a part of the message
}{
	{Utility, `VACUUM patients`, Allow, ""}, // PostgreSQL skips a view with a warning
	{Utility, `ANALYZE encounters`, Allow, ""},
	{Utility, `CLUSTER patients`, Refuse, "CLUSTER is not supported on table public.patients"},
	{Utility, `REINDEX TABLE encounters`, Refuse, "REINDEX is not supported on table public.encounters"},
	{Select, `SELECT * FROM patients p JOIN encounters e ON e.patient = p.id`, Allow, ""},
	{Insert, `INSERT INTO patients (id, ssn) VALUES (1, '1')`, Allow, ""},
	{Insert, `INSERT INTO patients (id) VALUES (1) ON CONFLICT (id) DO NOTHING`, Rewrite, ""},
	{Insert, `INSERT INTO encounters (id) VALUES ('e') ON CONFLICT (id) DO UPDATE SET code = 'x'`, Rewrite, ""},
	{Insert, `INSERT INTO audit_log SELECT id FROM patients ON CONFLICT DO NOTHING`, Allow, ""},
	{Update, `UPDATE patients SET first = 'x' WHERE id = 1`, Allow, ""},
	{Update, `UPDATE patients SET first = 'x' WHERE CURRENT OF c`, Refuse,
		"WHERE CURRENT OF is not supported on table public.patients"},
	{Delete, `DELETE FROM encounters WHERE patient = 1 RETURNING id`, Allow, ""},
	{Delete, `DELETE FROM encounters WHERE CURRENT OF c`, Refuse, "on table public.encounters"},
	{Merge, `MERGE INTO patients p USING other o ON p.id = o.id WHEN MATCHED THEN DELETE`, Refuse,
		"MERGE is not supported on table public.patients"},
	{Merge, `MERGE INTO other o USING patients p ON p.id = o.id WHEN MATCHED THEN DELETE`, Allow, ""},
	{CopyFrom, `COPY patients FROM STDIN (FORMAT binary)`, Allow, ""},
	{CopyTo, `COPY patients TO STDOUT`, Rewrite, ""},
	{CopyTo, `COPY encounters (id, code) TO STDOUT (FORMAT csv, HEADER)`, Rewrite, ""},
	{CopyTo, `COPY (SELECT id FROM patients) TO STDOUT`, Allow, ""},
	{DDL, `CREATE VIEW v AS SELECT id FROM patients`, Refuse,
		"CREATE VIEW is not supported on table public.patients"},
	{DDL, `CREATE MATERIALIZED VIEW v AS SELECT id FROM encounters`, Refuse,
		"CREATE MATERIALIZED VIEW is not supported on table public.encounters"},
	// A copy of a split table's values is a plain table that the policy
	// no longer reaches: refused like a materialized view.
	{DDL, `CREATE TABLE copy AS SELECT id, ssn FROM patients`, Refuse,
		"CREATE TABLE AS or SELECT INTO is not supported on table public.patients"},
	{DDL, `CREATE TEMP TABLE copy AS SELECT * FROM encounters`, Refuse, "on table public.encounters"},
	{DDL, `SELECT first, ssn INTO copy FROM patients`, Refuse,
		"CREATE TABLE AS or SELECT INTO is not supported on table public.patients"},
	{DDL, `SELECT 1 INTO copy UNION SELECT code FROM encounters`, Refuse, "on table public.encounters"},
	{DDL, `CREATE TABLE copy AS SELECT * FROM other`, Allow, ""},
	{DDL, `CREATE TABLE eu_copy AS SELECT * FROM privata_global.patients`, Refuse,
		"CREATE TABLE AS or SELECT INTO is not supported on privata_global.patients, which shows the data of table public.patients"},
	{DDL, `CREATE VIEW v AS SELECT * FROM privata_region_eu.encounters`, Refuse,
		"CREATE VIEW is not supported on privata_region_eu.encounters"},
	{Select, `SELECT count(*) FROM privata_global.encounters`, Allow, ""},
	// A temporary relation that would hide a split table from the
	// session's unqualified names (and from what Privata reads them as).
	{DDL, `CREATE TEMP TABLE patients (id uuid, ssn text)`, Refuse,
		"another relation named patients is not supported through Privata: it would hide table public.patients"},
	{DDL, `ALTER TABLE scratch RENAME TO patients`, Refuse, "would hide table public.patients"},
	{DDL, `ALTER VIEW v RENAME TO encounters`, Refuse, "would hide table public.encounters"},
	{DDL, `ALTER TABLE scratch RENAME TO scratch2`, Allow, ""},
	{DDL, `CREATE FUNCTION mk() RETURNS void LANGUAGE plpgsql AS $$BEGIN CREATE TEMP TABLE patients (id int); END$$`,
		Refuse, "would hide table public.patients"},
	{DDL, `CREATE FUNCTION mk() RETURNS void LANGUAGE sql AS $$ALTER FUNCTION leak() SECURITY DEFINER$$`,
		Refuse, "SECURITY DEFINER functions and procedures are not supported"},
	{Do, `DO $$BEGIN CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'; END$$`, Allow, ""},
	// DDL on a classified table is split only when sent as a statement:
	// in a body it would make a plain table or fail on the view.
	{Do, `DO $$BEGIN CREATE TABLE encounters (patient int, note text); END$$`, Refuse,
		"DDL in a DO block or a function body is not supported on table public.encounters"},
	{Do, `DO $$ BEGIN ALTER TABLE "encounters" ADD CONSTRAINT "fk" FOREIGN KEY ("patient") REFERENCES ` +
		`"public"."patients"("id"); EXCEPTION WHEN duplicate_object THEN null; END $$`, Refuse,
		"DDL in a DO block or a function body is not supported on table public.encounters"},
	{Do, `DO $$BEGIN DROP TABLE IF EXISTS public.patients; END$$`, Refuse,
		"DDL in a DO block or a function body is not supported on table public.patients"},
	{Do, `DO $$BEGIN CREATE INDEX ON patients (note); COMMENT ON COLUMN patients.ssn IS 'x'; END$$`, Refuse,
		"DDL in a DO block or a function body is not supported on table public.patients"},
	{DDL, `CREATE FUNCTION mk() RETURNS void LANGUAGE sql AS 'CREATE TABLE encounters (patient int)'`, Refuse,
		"DDL in a DO block or a function body is not supported on table public.encounters"},
	{Do, `DO $$BEGIN CREATE TABLE scratch (id int); CREATE INDEX ON scratch (id); END$$`, Allow, ""},
	// Row locks cannot reach through a split table's outer join.
	{Select, `SELECT first FROM patients WHERE id = 1 FOR UPDATE`, Refuse,
		"SELECT ... FOR UPDATE or FOR SHARE is not supported on table public.patients"},
	{Select, `SELECT * FROM scratch s JOIN encounters e ON e.id = s.id FOR SHARE OF e`, Refuse,
		"FOR SHARE is not supported on table public.encounters"},
	{Select, `SELECT * FROM scratch s JOIN encounters e ON e.id = s.id FOR UPDATE OF s`, Allow, ""},
	{Select, `SELECT * FROM scratch FOR UPDATE`, Allow, ""},
	// What a function reads is not audited when it is called.
	{DDL, `CREATE FUNCTION f_p(uuid) RETURNS SETOF text LANGUAGE sql AS $$SELECT first || ssn FROM patients WHERE id = $1$$`,
		Refuse, "a function or procedure that reads it is not supported on table public.patients"},
	{DDL, `CREATE PROCEDURE p() LANGUAGE plpgsql AS $$DECLARE n int; BEGIN SELECT count(*) INTO n FROM encounters; END$$`,
		Refuse, "a function or procedure that reads it is not supported on table public.encounters"},
	{DDL, `CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN NEW.at := now(); RETURN NEW; END$$`,
		Allow, ""},
	{DDL, `CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT count(*) FROM scratch'`, Allow, ""},
	// SQL-level EXECUTE of a prepared read would not be audited.
	{Prepare, `PREPARE r AS SELECT ssn FROM patients WHERE id = $1`, Refuse,
		"PREPARE is not supported on table public.patients"},
	{DDL, `CREATE TABLE pg_temp.encounters (id int)`, Refuse, "would hide table public.encounters"},
	{DDL, `CREATE TEMP VIEW patients AS SELECT 1 AS id`, Refuse, "would hide table public.patients"},
	{DDL, `CREATE TEMPORARY SEQUENCE encounters`, Refuse, "would hide table public.encounters"},
	{DDL, `CREATE TEMP TABLE scratch (id int)`, Allow, ""},
	// A SECURITY DEFINER function would read with its owner's access for
	// every caller.
	{DDL, `CREATE FUNCTION leak() RETURNS SETOF text SECURITY DEFINER LANGUAGE sql AS 'SELECT ssn FROM patients'`,
		Refuse, "SECURITY DEFINER functions and procedures are not supported through Privata"},
	{DDL, `ALTER FUNCTION leak() SECURITY DEFINER`, Refuse, "SECURITY DEFINER"},
	{DDL, `CREATE PROCEDURE p() LANGUAGE sql SECURITY INVOKER AS 'SELECT 1'`, Allow, ""},
	{DDL, `ALTER FUNCTION leak() SECURITY INVOKER`, Allow, ""},
	{DDL, `CREATE PUBLICATION p FOR TABLE encounters`, Refuse,
		"a publication is not supported on table public.encounters"},
	{DDL, `CREATE PUBLICATION p FOR ALL TABLES`, Refuse, "a publication is not supported through Privata"},
	{DDL, `CREATE PUBLICATION p FOR TABLES IN SCHEMA privata_identity`, Refuse, "a publication"},
	{DDL, `CREATE PUBLICATION p FOR TABLES IN SCHEMA sales`, Allow, ""},
	{DDL, `ALTER PUBLICATION p ADD TABLE patients`, Refuse, "on table public.patients"},
	{DDL, `CREATE SUBSCRIPTION s CONNECTION 'dbname=x' PUBLICATION p`, Refuse,
		"a subscription is not supported through Privata"},
	{Truncate, `TRUNCATE patients, encounters RESTART IDENTITY`, Rewrite, ""},
	{Truncate, `TRUNCATE other`, Allow, ""},
	{Grant, `GRANT SELECT ON patients TO analyst`, Refuse,
		"GRANT or REVOKE is not supported on table public.patients"},
	{Grant, `REVOKE ALL ON TABLE encounters FROM reception`, Refuse, "on table public.encounters"},
	{Grant, `GRANT SELECT ON other TO analyst`, Allow, ""},
	{Transaction, `BEGIN ISOLATION LEVEL SERIALIZABLE`, Allow, ""},
	{Set, `SET search_path = public`, Allow, ""},
	{Reset, `RESET search_path`, Allow, ""},
	{Discard, `DISCARD ALL`, Allow, ""},
	{Show, `SHOW search_path`, Allow, ""},
	{Listen, `LISTEN patients`, Allow, ""},
	{Unlisten, `UNLISTEN patients`, Allow, ""},
	{Notify, `NOTIFY patients, 'changed'`, Allow, ""},
	// A procedure's body runs with its own or its owner's rights through
	// the views; an upsert in it fails as PostgreSQL fails it on a view.
	{Call, `CALL refresh_patients()`, Allow, ""},
	{Do, `DO $$BEGIN PERFORM count(*) FROM patients; END$$`, Allow, ""},
	{Do, `DO $$BEGIN INSERT INTO patients (id) VALUES (1) ON CONFLICT DO NOTHING; END$$`, Refuse,
		"INSERT ... ON CONFLICT on table public.patients inside a DO block"},
	{Do, `DO $$BEGIN TRUNCATE encounters; END$$`, Refuse, "TRUNCATE on table public.encounters inside"},
	{Explain, `EXPLAIN SELECT * FROM patients WHERE id = 1`, Allow, ""},
	{Explain, `EXPLAIN ANALYZE INSERT INTO patients (id) VALUES (1) ON CONFLICT (id) DO NOTHING`, Rewrite, ""},
	{Prepare, `PREPARE q AS INSERT INTO patients (id) VALUES ($1) ON CONFLICT (id) DO NOTHING`, Rewrite, ""},
	{Prepare, `PREPARE q AS SELECT * FROM other WHERE id = $1`, Allow, ""},
	{Execute, `EXECUTE q(1)`, Allow, ""},
	{Deallocate, `DEALLOCATE q`, Allow, ""},
	{Declare, `DECLARE c CURSOR FOR SELECT * FROM patients`, Allow, ""},
	{Fetch, `FETCH 10 FROM c`, Allow, ""},
	{Close, `CLOSE c`, Allow, ""},
	{Lock, `LOCK TABLE patients IN ACCESS SHARE MODE`, Allow, ""},
	{Lock, `LOCK TABLE patients`, Refuse, "LOCK TABLE is not supported on table public.patients"},
	{Lock, `LOCK encounters IN ROW EXCLUSIVE MODE`, Refuse, "on table public.encounters"},
}

func TestEveryKindIsDecided(t *testing.T) {
	covered := map[Kind]bool{}
	for _, c := range kindCases {
		covered[c.kind] = true
	}
	for k := Kind(0); k.String() != "unknown"; k++ {
		if !covered[k] {
			t.Errorf("statement kind %s has no case in kindCases", k)
		}
	}
}

// Privata's storage schemas are not for clients: the application's
// table is the one way to a split table's data.
func TestStorageSchemasAreRefused(t *testing.T) {
	p := clinicPolicy(t)
	a := NewAnalyzer(0)
	sess := Session{Role: p.Role("clinician")}
	for _, sql := range []string{
		`SELECT id, ssn FROM privata_identity.patients`,
		`SELECT * FROM public.encounters e JOIN privata_clinical.encounters c USING (id)`,
		`SELECT first, ssn FROM privata_access.patients_identity`,
		`UPDATE privata_identity.patients SET ssn = '1'`,
		`COPY privata_clinical.encounters TO STDOUT`,
	} {
		st := analyzeOne(t, a, sql)
		d := Decide(st, Classify(st, p, nil), sess)
		if d.Action != Refuse || d.SQLState != CodeInsufficientPriv ||
			!strings.Contains(d.Message, "is Privata's split storage") {
			t.Errorf("%s: %+v, want a 42501 refusal", sql, d)
		}
	}
	// A string that names them is not a reference.
	st := analyzeOne(t, a, `SELECT 'privata_identity.patients'::text, to_regclass('privata_identity.patients')`)
	if d := Decide(st, Classify(st, p, nil), sess); d.Action != Allow {
		t.Errorf("a name in a constant: %+v", d)
	}
	// Nor through the search path: a session that starts with them on it
	// reaches them by unqualified names; one may not put them there, or
	// set a path Privata cannot read.
	st = analyzeOne(t, a, `SELECT id, privata_pseudonym FROM patients`)
	if d := Decide(st, Classify(st, p, []string{"privata_identity", "public"}), sess); d.Action != Refuse ||
		!strings.Contains(d.Message, "relation privata_identity.patients is Privata's split storage") {
		t.Errorf("an unqualified name with privata_identity on the search path: %+v", d)
	}
	for _, c := range []struct{ sql, want string }{
		{`SET search_path = privata_identity, public`, "a search_path with Privata's storage schemas"},
		{`SET search_path TO "$user", "privata_clinical"`, "a search_path with Privata's storage schemas"},
		{`SELECT set_config('search_path', 'public,privata_access', false)`,
			"a search_path with Privata's storage schemas with set_config()"},
		{`SELECT set_config('search_path', $1, false)`, "setting search_path to a value that is not a constant"},
		{`CREATE FUNCTION f() RETURNS int LANGUAGE sql SET search_path = privata_export AS 'SELECT 1'`,
			"a search_path with Privata's storage schemas in a function SET clause"},
	} {
		st := analyzeOne(t, a, c.sql)
		if d := Decide(st, Classify(st, p, nil), sess); d.Action != Refuse || !strings.Contains(d.Message, c.want) {
			t.Errorf("%s: %+v, want a refusal: %s", c.sql, d, c.want)
		}
	}
	for _, sql := range []string{`SET search_path = app, public`, `SET search_path = DEFAULT`, `RESET search_path`,
		`SELECT set_config('search_path', '', false)`} {
		st := analyzeOne(t, a, sql)
		if d := Decide(st, Classify(st, p, nil), sess); d.Action != Allow {
			t.Errorf("%s: %+v", sql, d)
		}
	}
}

func TestDecisionsOnClassifiedTables(t *testing.T) {
	p := clinicPolicy(t)
	a := NewAnalyzer(0)
	sess := Session{Role: p.Role("clinician")}
	for _, c := range kindCases {
		t.Run(c.sql, func(t *testing.T) {
			st := analyzeOne(t, a, c.sql)
			if st.Kind != c.kind {
				t.Fatalf("kind %s, the case says %s", st.Kind, c.kind)
			}
			d := Decide(st, Classify(st, p, nil), sess)
			if d.Action != c.action {
				t.Fatalf("decision %+v, want %s", d, c.action)
			}
			if c.action != Refuse {
				return
			}
			if d.SQLState != CodeFeatureNotSupported || !strings.Contains(d.Message, c.message) ||
				d.Hint == "" {
				t.Fatalf("refusal %+v, want 0A000 saying %q with a hint", d, c.message)
			}
		})
	}
}

// A rewrite keeps the statements of a text that need none byte for byte,
// and the comments before the one it rewrites.
func TestRewriteKeepsTheRestOfTheText(t *testing.T) {
	p := clinicPolicy(t)
	text := "SELECT 1 /* a */;\n/*actor='x'*/ COPY patients (id) TO STDOUT;  SELECT 'COPY patients TO STDOUT'"
	an, err := NewAnalyzer(0).Analyze(text)
	if err != nil {
		t.Fatal(err)
	}
	out, err := NewRewriter(p, 0).Rewrite(text, an, nil)
	want := "SELECT 1 /* a */;\n/*actor='x'*/ COPY (SELECT id FROM patients) TO STDOUT;  " +
		"SELECT 'COPY patients TO STDOUT'"
	if err != nil || out != want {
		t.Fatalf("rewrote\n%s\nas\n%s (%v), want\n%s", text, out, err, want)
	}
}
