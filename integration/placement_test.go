package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/privata/privata/internal/pgtest"
	"github.com/privata/privata/policy"
)

// The layout the storage issue specifies, built by hand: what the checks
// must accept, and the breaches they must find in it.
const splitLayout = `
CREATE SCHEMA privata_identity;
CREATE SCHEMA privata_clinical;
CREATE TABLE privata_identity.patients (
    id uuid PRIMARY KEY, privata_pseudonym uuid NOT NULL UNIQUE, privata_region text NOT NULL,
    ssn text NOT NULL, first_name text, last_name text, birthdate date, address text);
CREATE TABLE privata_clinical.patients (
    privata_pseudonym uuid PRIMARY KEY, marital text, gender text, created_at timestamptz);
CREATE TABLE privata_clinical.encounters (
    id bigint PRIMARY KEY, privata_pseudonym uuid NOT NULL, code text, description text,
    started_at timestamptz);
CREATE VIEW public.patients AS
    SELECT i.id, i.ssn, i.first_name, i.last_name, i.birthdate, i.address,
           c.marital, c.gender, c.created_at
      FROM privata_identity.patients i JOIN privata_clinical.patients c USING (privata_pseudonym);
CREATE VIEW public.patients_masked AS
    SELECT id, '***-**-' || right(ssn, 4) AS ssn, left(first_name, 1) AS first_name,
           left(last_name, 1) AS last_name, date_trunc('year', birthdate)::date AS birthdate
      FROM privata_identity.patients;
CREATE VIEW public.encounters AS
    SELECT e.id, i.id AS patient_id, e.code, e.description, e.started_at
      FROM privata_clinical.encounters e JOIN privata_identity.patients i USING (privata_pseudonym);
`

// fixture is one live patient with one encounter, and one patient whose
// values were replaced (not live).
type fixture struct {
	id, pseudonym, ssn, first, last, birth, address, marital, gender string
	code, description, started                                       string
	oldAddress                                                       string
}

var fx = fixture{
	id: "6f1c1a0e-8c55-4c55-9d51-0b6a4c1f7a01", pseudonym: "0d4f9a7e-2b7c-4bb4-8a1c-5e0f2c9d1b02",
	ssn: "512-34-0001", first: "First1_fx0001", last: "Last1_fx0001", birth: "1961-04-09",
	address: "1 Elm Street_fx0001", marital: "M", gender: "F",
	code: "K1_fx0001", description: "Visit 1_fx0001", started: "2024-01-01 01:00:00+00",
	oldAddress: "9 Old Road_fx0001",
}

func (f fixture) values() []Value {
	v := func(table, col, val string, live bool) Value { return Value{table, col, val, live} }
	return []Value{
		v("patients", "id", f.id, true),
		v("patients", "ssn", f.ssn, true),
		v("patients", "first_name", f.first, true),
		v("patients", "last_name", f.last, true),
		v("patients", "birthdate", f.birth, true),
		v("patients", "address", f.address, true),
		v("patients", "address", f.oldAddress, false),
		v("patients", "marital", f.marital, true),
		v("patients", "gender", f.gender, true),
		v("encounters", "patient_id", f.id, true),
		v("encounters", "code", f.code, true),
		v("encounters", "description", f.description, true),
		v("encounters", "started_at", f.started, true),
	}
}

// testPolicy is apps/policy.yaml with PostgreSQL roles of the test's own:
// roles belong to the cluster, which the package's tests share.
func testPolicy(t *testing.T, suffix string) *policy.Policy {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("apps", "policy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	for _, r := range []string{"clinician", "reception", "analyst"} {
		text = strings.ReplaceAll(text, "pg_role: "+r, "pg_role: "+r+"_"+suffix)
	}
	p, err := policy.Parse("policy.yaml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// splitDB builds the layout with the fixture in a new database, creates the
// policy's roles with the grants a split database gives them, and returns a
// connection and the policy.
func splitDB(t *testing.T, suffix string) (*pgx.Conn, *policy.Policy) {
	t.Helper()
	ctx := context.Background()
	db := pgtest.NewDB(t, pgtest.Shared(t))
	conn := db.Connect(t)
	p := testPolicy(t, suffix)
	if _, err := conn.Exec(ctx, splitLayout); err != nil {
		t.Fatal(err)
	}
	_, err := conn.Exec(ctx, `INSERT INTO privata_identity.patients
	    VALUES ($1, $2, 'local', $3, $4, $5, $6, $7)`,
		fx.id, fx.pseudonym, fx.ssn, fx.first, fx.last, fx.birth, fx.address)
	if err != nil {
		t.Fatal(err)
	}
	_, err = conn.Exec(ctx, `INSERT INTO privata_clinical.patients VALUES ($1, $2, $3, now())`,
		fx.pseudonym, fx.marital, fx.gender)
	if err != nil {
		t.Fatal(err)
	}
	_, err = conn.Exec(ctx, `INSERT INTO privata_clinical.encounters VALUES (1, $1, $2, $3, $4)`,
		fx.pseudonym, fx.code, fx.description, fx.started)
	if err != nil {
		t.Fatal(err)
	}

	role := func(name string) string { return pgx.Identifier{p.Role(name).PGRole}.Sanitize() }
	grants := []string{
		"CREATE ROLE " + role("clinician"), "CREATE ROLE " + role("reception"),
		"CREATE ROLE " + role("analyst"),
		"GRANT USAGE ON SCHEMA privata_identity, privata_clinical TO " + role("clinician") +
			", " + role("reception") + ", " + role("analyst"),
		"GRANT SELECT ON ALL TABLES IN SCHEMA public, privata_identity, privata_clinical TO " +
			role("clinician"),
		"GRANT SELECT ON public.patients_masked TO " + role("reception"),
		"GRANT SELECT ON ALL TABLES IN SCHEMA privata_clinical TO " + role("analyst"),
	}
	for _, g := range grants {
		if _, err := conn.Exec(ctx, g); err != nil {
			t.Fatalf("%s: %v", g, err)
		}
	}
	t.Cleanup(func() {
		for _, r := range p.Roles {
			id := pgx.Identifier{r.PGRole}.Sanitize()
			conn.Exec(ctx, "DROP OWNED BY "+id)
			conn.Exec(ctx, "DROP ROLE "+id)
		}
	})
	return conn, p
}

// describe turns findings into comparable lines.
func describe(fs []Finding) []string {
	var out []string
	for _, f := range fs {
		s := fmt.Sprintf("%s %s.%s at %s", f.Rule, f.Value.Table, f.Value.Column, f.Where)
		if f.Role != "" {
			s += " by " + strings.SplitN(f.Role, "_", 2)[0]
		}
		out = append(out, s)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func TestCheckSplitFindsBreaches(t *testing.T) {
	cases := []struct {
		name  string
		setup string
		want  []string
	}{
		{
			name: "split storage as specified passes",
		},
		{
			name:  "identity value copied into a clinical table",
			setup: `UPDATE privata_clinical.encounters SET description = 'ssn ' || '` + fx.ssn + `'`,
			want: []string{
				"misplaced patients.ssn at privata_clinical.encounters.description",
				"missing encounters.description at privata_clinical.encounters.description",
			},
		},
		{
			name: "value kept in another schema's table",
			setup: `CREATE SCHEMA privata;
			        CREATE TABLE privata.audit_log (detail text);
			        INSERT INTO privata.audit_log VALUES ('read ` + fx.last + `')`,
			want: []string{"misplaced patients.last_name at privata.audit_log.detail"},
		},
		{
			name: "subject key kept beside clinical data",
			setup: `ALTER TABLE privata_clinical.encounters ADD COLUMN patient_id uuid;
			        UPDATE privata_clinical.encounters SET patient_id = '` + fx.id + `'`,
			want: []string{
				"misplaced encounters.patient_id at privata_clinical.encounters.patient_id",
				"misplaced patients.id at privata_clinical.encounters.patient_id",
			},
		},
		{
			name: "short clinical code kept with the identity",
			setup: `ALTER TABLE privata_identity.patients ADD COLUMN gender text;
			        UPDATE privata_identity.patients SET gender = 'F'`,
			want: []string{"misplaced patients.gender at privata_identity.patients.gender"},
		},
		{
			name:  "replaced value left in a clinical table",
			setup: `UPDATE privata_clinical.encounters SET code = '` + fx.oldAddress + `'`,
			want: []string{
				"misplaced patients.address at privata_clinical.encounters.code",
				"missing encounters.code at privata_clinical.encounters.code",
			},
		},
		{
			name:  "table left unsplit",
			setup: `CREATE TABLE public.patients_copy AS SELECT * FROM public.patients`,
			want: []string{
				"misplaced encounters.patient_id at public.patients_copy.id",
				"misplaced patients.address at public.patients_copy.address",
				"misplaced patients.birthdate at public.patients_copy.birthdate",
				"misplaced patients.first_name at public.patients_copy.first_name",
				"misplaced patients.gender at public.patients_copy.gender",
				"misplaced patients.id at public.patients_copy.id",
				"misplaced patients.last_name at public.patients_copy.last_name",
				"misplaced patients.marital at public.patients_copy.marital",
				"misplaced patients.ssn at public.patients_copy.ssn",
			},
		},
		{
			name:  "live values lost",
			setup: `DELETE FROM privata_clinical.encounters`,
			want: []string{
				"missing encounters.code at privata_clinical.encounters.code",
				"missing encounters.description at privata_clinical.encounters.description",
				"missing encounters.started_at at privata_clinical.encounters.started_at",
			},
		},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			conn, p := splitDB(t, fmt.Sprintf("split%d", i))
			if c.setup != "" {
				if _, err := conn.Exec(context.Background(), c.setup); err != nil {
					t.Fatal(err)
				}
			}
			got, err := CheckSplit(context.Background(), conn, p, fx.values())
			if err != nil {
				t.Fatal(err)
			}
			if g := describe(got); !slices.Equal(g, c.want) {
				t.Errorf("findings:\n got %q\nwant %q", g, c.want)
			}
		})
	}
}

func TestCheckRolesFindsExposure(t *testing.T) {
	cases := []struct {
		name  string
		grant string // %s is the role's quoted name
		role  string
		want  []string
	}{
		{
			name: "grants as the policy says pass",
		},
		{
			name:  "masked role granted the identity table",
			grant: "GRANT SELECT ON privata_identity.patients TO %s",
			role:  "reception",
			want: []string{
				"exposed patients.address at privata_identity.patients.address by reception",
				"exposed patients.birthdate at privata_identity.patients.birthdate by reception",
				"exposed patients.first_name at privata_identity.patients.first_name by reception",
				"exposed patients.last_name at privata_identity.patients.last_name by reception",
				"exposed patients.ssn at privata_identity.patients.ssn by reception",
			},
		},
		{
			name:  "one identity column granted to a role without identity access",
			grant: "GRANT SELECT (id, ssn) ON privata_identity.patients TO %s",
			role:  "analyst",
			want:  []string{"exposed patients.ssn at privata_identity.patients.ssn by analyst"},
		},
		{
			name:  "clinical values through a view to a role without clinical access",
			grant: "GRANT SELECT ON public.encounters TO %s",
			role:  "reception",
			want: []string{
				"exposed encounters.code at public.encounters.code by reception",
				"exposed encounters.description at public.encounters.description by reception",
				"exposed encounters.started_at at public.encounters.started_at by reception",
			},
		},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			conn, p := splitDB(t, fmt.Sprintf("roles%d", i))
			if c.grant != "" {
				q := fmt.Sprintf(c.grant, pgx.Identifier{p.Role(c.role).PGRole}.Sanitize())
				if _, err := conn.Exec(context.Background(), q); err != nil {
					t.Fatal(err)
				}
			}
			got, err := CheckRoles(context.Background(), conn, p, fx.values())
			if err != nil {
				t.Fatal(err)
			}
			if g := describe(got); !slices.Equal(g, c.want) {
				t.Errorf("findings:\n got %q\nwant %q", g, c.want)
			}
		})
	}
}

func TestCheckRolesNeedsTheRoles(t *testing.T) {
	db := pgtest.NewDB(t, pgtest.Shared(t))
	conn := db.Connect(t)
	db.Exec(t, "CREATE TABLE patients (id uuid, ssn text)")
	_, err := CheckRoles(context.Background(), conn, testPolicy(t, "absent"), fx.values())
	if err == nil || !strings.Contains(err.Error(), "read as role clinician_absent") {
		t.Fatalf("error = %v, want one naming the missing role", err)
	}
}

func TestCheckPlainFindsWhatIsMissing(t *testing.T) {
	db := pgtest.NewDB(t, pgtest.Shared(t))
	conn := db.Connect(t)
	ctx := context.Background()
	db.Exec(t, `CREATE TABLE patients (id uuid, ssn text, first_name text, last_name text,
	    birthdate date, address text, marital text, gender text);
	  CREATE TABLE encounters (patient_id uuid, code text, description text,
	    started_at timestamptz)`)
	db.Exec(t, "INSERT INTO patients VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
		fx.id, fx.ssn, fx.first, fx.last, fx.birth, fx.address, fx.marital, fx.gender)
	db.Exec(t, "INSERT INTO encounters VALUES ($1, $2, $3, $4)",
		fx.id, fx.code, fx.description, fx.started)

	got, err := CheckPlain(ctx, conn, fx.values())
	if err != nil || len(got) != 0 {
		t.Fatalf("plain tables holding every value: findings %q, error %v", describe(got), err)
	}

	// The checks read timestamps in UTC whatever the session's zone.
	db.Exec(t, "UPDATE patients SET address = $1", fx.oldAddress)
	if _, err := conn.Exec(ctx, "SET TimeZone = 'America/New_York'"); err != nil {
		t.Fatal(err)
	}
	got, err = CheckPlain(ctx, conn, fx.values())
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"missing patients.address at public.patients.address"}
	if g := describe(got); !slices.Equal(g, want) {
		t.Errorf("findings:\n got %q\nwant %q", g, want)
	}
}

func TestMatcher(t *testing.T) {
	values := []Value{
		{Column: "ssn", Value: "512-34-0001"},
		{Column: "gender", Value: "F"},
		{Column: "code", Value: "K1_ab"},
	}
	m := newMatcher(values)
	cases := []struct {
		cell string
		want []int
	}{
		{"512-34-0001", []int{0}},
		{"ssn was 512-34-0001.", []int{0}},
		{"512-34-000", nil},
		{"F", []int{1}},
		{"First", nil},
		{"K1_ab", []int{2}},
		{"K1_abc", nil}, // shorter than minContained: exact matches only
	}
	for _, c := range cases {
		if got := m.match(c.cell); !slices.Equal(got, c.want) {
			t.Errorf("match(%q) = %v, want %v", c.cell, got, c.want)
		}
	}
	for s, want := range map[string]bool{"": false, "42": false, "1234567": false,
		"12345678": true, "F": true, "6f1c1a0e-8c55": true} {
		if Distinctive(s) != want {
			t.Errorf("Distinctive(%q) = %v, want %v", s, !want, want)
		}
	}
}

func TestReadReportRefusesBadFiles(t *testing.T) {
	dir := t.TempDir()
	cases := map[string]string{
		"unknown field": `{"app": "x", "values": [{"table": "t", "colum": "c"}]}`,
		"no values":     `{"app": "x", "values": []}`,
		"not json":      `app: x`,
	}
	for name, body := range cases {
		path := filepath.Join(dir, strings.ReplaceAll(name, " ", "_"))
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := ReadReport(path); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, err := ReadReport(filepath.Join(dir, "absent")); err == nil {
		t.Error("absent file: no error")
	}
}
