package storage_test

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/privata/privata/internal/synthea"
)

// splitSynthea loads both Synthea sets and applies the example policy:
// clinician (identity full, clinical full), reception (identity masked,
// clinical none), analyst (identity none, clinical full).
func splitSynthea(t *testing.T) *testDB {
	t.Helper()
	d := newDB(t)
	loadSynthea(t, d, synthea.Sets...)
	d.apply(t, examplePolicy(t), "us", "eu")
	// Tests run as the policy roles with SET ROLE; the test's own scratch
	// schema lets them create functions.
	d.exec(t, `CREATE SCHEMA scratch; GRANT USAGE, CREATE ON SCHEMA scratch TO analyst, reception`)
	d.exec(t, `ANALYZE`)
	return d
}

// column returns one column of a query as text (NULL as "<null>").
func column(t *testing.T, q querier, sql string, args ...any) []string {
	t.Helper()
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	vals, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (string, error) {
		var s *string
		err := r.Scan(&s)
		if s == nil {
			return "<null>", err
		}
		return *s, err
	})
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return vals
}

type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// copyOut runs COPY ... TO STDOUT and returns what it wrote.
func copyOut(tx pgx.Tx, sql string) (string, error) {
	var buf bytes.Buffer
	_, err := tx.Conn().PgConn().CopyTo(ctx, &buf, sql)
	return buf.String(), err
}

// mustDeny asserts that sql fails with 42501 (insufficient privilege),
// inside a savepoint so that the transaction goes on.
func mustDeny(t *testing.T, tx pgx.Tx, sql string) {
	t.Helper()
	sp, err := tx.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Rollback(ctx)
	var out string
	if strings.HasPrefix(sql, "COPY") {
		out, err = copyOut(sp, sql)
	} else {
		var rows pgx.Rows
		if rows, err = sp.Query(ctx, sql); err == nil {
			for rows.Next() {
				out += "row "
			}
			rows.Close()
			err = rows.Err()
		}
	}
	if sqlstate(err) != "42501" {
		t.Errorf("%s: got %q, error %v; want SQLSTATE 42501", sql, out, err)
	}
}

func TestIdentityNoneReadsNoSSNByAnyPath(t *testing.T) {
	d := splitSynthea(t)
	ssns := column(t, d.conn, `SELECT ssn FROM patients WHERE ssn IS NOT NULL`)
	if len(ssns) < 40 {
		t.Fatalf("superuser reads %d SSNs, want all 40", len(ssns))
	}
	leaks := func(what, out string) {
		t.Helper()
		for _, s := range ssns {
			if strings.Contains(out, s) || strings.Contains(out, strings.ReplaceAll(s, "-", "")) {
				t.Errorf("%s shows an SSN to analyst", what)
				return
			}
		}
	}
	d.as(t, "analyst", func(tx pgx.Tx) {
		// The view: every row, no SSN.
		got := column(t, tx, `SELECT ssn FROM patients`)
		if len(got) != 40 || slices.IndexFunc(got, func(s string) bool { return s != "<null>" }) >= 0 {
			t.Errorf("view: analyst reads %d rows, SSNs %v; want 40 NULLs", len(got), got[:3])
		}
		if n := column(t, tx, `SELECT count(*) FROM patients WHERE ssn = $1`, ssns[0]); n[0] != "0" {
			t.Errorf("a filter on the SSN matches %s rows for analyst", n[0])
		}
		// Clinical values are there: the role's clinical access is full.
		if m := column(t, tx, `SELECT count(*) FROM conditions WHERE description IS NOT NULL`); m[0] == "0" {
			t.Errorf("analyst reads no clinical values")
		}
		leaks("the access view", strings.Join(column(t, tx,
			`SELECT ssn FROM privata_access.patients_identity`), " "))

		// The base tables, by SELECT and COPY.
		mustDeny(t, tx, `SELECT ssn FROM privata_identity.patients`)
		mustDeny(t, tx, `SELECT * FROM privata_identity.patients`)
		mustDeny(t, tx, `SELECT t FROM privata_identity.patients t`)
		mustDeny(t, tx, `COPY privata_identity.patients TO STDOUT`)
		mustDeny(t, tx, `COPY privata_identity.patients (ssn) TO STDOUT`)
		mustDeny(t, tx, `COPY (SELECT ssn FROM privata_identity.patients) TO STDOUT`)
		mustDeny(t, tx, `SELECT ctid FROM privata_identity.patients`)
		mustDeny(t, tx, `SELECT * FROM privata.secrets`)

		// COPY of a query over the view.
		out, err := copyOut(tx, `COPY (SELECT id, ssn FROM patients) TO STDOUT`)
		if err != nil || strings.Count(out, "\n") != 40 {
			t.Errorf("COPY (SELECT ... FROM patients): %d lines, %v", strings.Count(out, "\n"), err)
		}
		leaks("COPY of the view", out)

		// A cursor.
		if _, err := tx.Exec(ctx, `DECLARE c CURSOR FOR SELECT ssn || first FROM patients`); err != nil {
			t.Fatal(err)
		}
		leaks("a cursor", strings.Join(column(t, tx, `FETCH ALL FROM c`), " "))

		// Functions it creates, with its own rights or as definer.
		for _, def := range []string{
			`CREATE FUNCTION scratch.f1() RETURNS SETOF text LANGUAGE sql AS 'SELECT ssn FROM patients'`,
			`CREATE FUNCTION scratch.f2() RETURNS SETOF text LANGUAGE sql SECURITY DEFINER
				AS 'SELECT ssn FROM patients'`,
			`CREATE FUNCTION scratch.f3() RETURNS SETOF text LANGUAGE plpgsql AS
				$$ BEGIN RETURN QUERY EXECUTE 'SELECT ssn FROM privata_access.patients_identity'; END $$`,
		} {
			if _, err := tx.Exec(ctx, def); err != nil {
				t.Fatal(err)
			}
		}
		leaks("a function over the view", strings.Join(column(t, tx, `SELECT scratch.f1()`), " "))
		leaks("a definer function", strings.Join(column(t, tx, `SELECT scratch.f2()`), " "))
		leaks("dynamic SQL", strings.Join(column(t, tx, `SELECT scratch.f3()`), " "))
		if _, err := tx.Exec(ctx, `CREATE FUNCTION scratch.f4() RETURNS SETOF text LANGUAGE sql
			AS 'SELECT ssn FROM privata_identity.patients'`); err != nil {
			t.Fatal(err)
		}
		mustDeny(t, tx, `SELECT scratch.f4()`)

		// Statistics.
		stats := column(t, tx, `SELECT attname || ' ' || COALESCE(most_common_vals::text, '') || ' ' ||
			COALESCE(histogram_bounds::text, '') FROM pg_stats WHERE tablename = 'patients'`)
		for _, s := range stats {
			if strings.HasPrefix(s, "ssn ") {
				t.Errorf("pg_stats shows analyst the statistics of ssn")
			}
		}
		leaks("pg_stats", strings.Join(stats, " "))
	})
	// The statistics exist: a role with the privilege would see them.
	if n := column(t, d.conn, `SELECT count(*) FROM pg_stats WHERE schemaname = 'privata_identity'
		AND tablename = 'patients' AND attname = 'ssn'`); n[0] != "1" {
		t.Fatalf("no statistics on privata_identity.patients.ssn after ANALYZE")
	}
}

func TestIdentityMaskedReadsMaskedValuesByEveryPath(t *testing.T) {
	d := splitSynthea(t)
	const cols = `id, ssn, first, last, birthdate, drivers, lat, marital`
	want := column(t, d.conn, `SELECT concat_ws('|', id, privata.mask_last4(ssn),
			privata.mask_initial(first), privata.mask_initial(last), date_trunc('year', birthdate)::date,
			NULL, NULL, NULL) FROM patients ORDER BY id`)
	row := `SELECT concat_ws('|', ` + cols + `) FROM patients ORDER BY id`
	d.as(t, "reception", func(tx pgx.Tx) {
		got := column(t, tx, row)
		if !slices.Equal(got, want) {
			t.Fatalf("view: reception reads\n%v\nwant\n%v", got[:2], want[:2])
		}
		if ssn := strings.Split(got[0], "|")[1]; !strings.HasPrefix(ssn, "*******") || len(ssn) != 11 {
			t.Errorf("SSN %q is not masked with last4", ssn)
		}
		out, err := copyOut(tx, `COPY (`+row+`) TO STDOUT`)
		if err != nil || out != strings.Join(want, "\n")+"\n" {
			t.Errorf("COPY (SELECT ... FROM patients): masked values differ (%v)", err)
		}
		if _, err := tx.Exec(ctx, `DECLARE c CURSOR FOR `+row); err != nil {
			t.Fatal(err)
		}
		if got := column(t, tx, `FETCH ALL FROM c`); !slices.Equal(got, want) {
			t.Errorf("cursor: masked values differ")
		}
		if _, err := tx.Exec(ctx, `CREATE FUNCTION scratch.f() RETURNS SETOF text LANGUAGE sql AS $$`+
			row+`$$`); err != nil {
			t.Fatal(err)
		}
		if got := column(t, tx, `SELECT scratch.f()`); !slices.Equal(got, want) {
			t.Errorf("function: masked values differ")
		}
		mustDeny(t, tx, `SELECT ssn FROM privata_identity.patients`)
		mustDeny(t, tx, `COPY privata_identity.patients TO STDOUT`)
		mustDeny(t, tx, `SELECT marital FROM privata_clinical.patients`)
		// Clinical access none: clinical values of every table are NULL.
		if n := column(t, tx, `SELECT count(description) FROM conditions`); n[0] != "0" {
			t.Errorf("reception reads %s condition descriptions, want none", n[0])
		}
		// Keys and references stay visible to every policy role.
		if n := column(t, tx, `SELECT count(patient) FROM conditions`); n[0] == "0" {
			t.Errorf("reception reads no condition's patient")
		}
	})
}
