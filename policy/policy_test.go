package policy

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Every file in testdata/bad is a policy with one mistake; its first line,
// "# want: ...", is the message (with file:line:column) that loading it must
// give.
func TestBadPoliciesReportWhereAndWhat(t *testing.T) {
	files, err := filepath.Glob("testdata/bad/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no bad policies found: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			first, _, _ := bytes.Cut(data, []byte("\n"))
			want, ok := strings.CutPrefix(string(first), "# want: ")
			if !ok {
				t.Fatalf("%s: first line must be `# want: <expected error>`", f)
			}
			_, err = Parse(filepath.Base(f), data)
			if err == nil {
				t.Fatalf("loaded without error; want %q", want)
			}
			if !strings.Contains(err.Error(), want) {
				t.Fatalf("error:\n%v\nwant it to contain:\n%s", err, want)
			}
		})
	}
}

func TestEveryErrorHasAHint(t *testing.T) {
	// Errors of our own carry a hint; the YAML decoder's syntax errors are
	// exempt, as they say what the parser expected.
	for _, f := range []string{"column_twice.yaml", "unknown_subject.yaml", "region_without_cluster.yaml",
		"unknown_key.yaml", "duplicate_key.yaml", "no_key.yaml"} {
		data, err := os.ReadFile(filepath.Join("testdata/bad", f))
		if err != nil {
			t.Fatal(err)
		}
		_, err = Parse(f, data)
		if err == nil || !strings.Contains(err.Error(), "hint: ") {
			t.Errorf("%s: error without a hint: %v", f, err)
		}
	}
}

func TestExamplePolicy(t *testing.T) {
	p, err := Load("../examples/clinic/policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	patients := p.Table("public", "patients")
	if patients == nil || patients.Kind != Subject || patients.Key != "id" {
		t.Fatalf("patients = %+v", patients)
	}
	checks := []struct {
		table, column string
		class         Class
		side          Class
	}{
		{"patients", "ssn", Identity, Identity},
		{"patients", "id", Other, Identity},
		{"patients", "marital", Clinical, Clinical},
		{"patients", "healthcare_expenses", Other, Clinical},
		{"encounters", "code", Clinical, Clinical},
		{"encounters", "patient", Other, Clinical},
		{"encounters", "payer", Other, Clinical},
	}
	for _, c := range checks {
		tbl := p.Table("public", c.table)
		if got := tbl.ClassOf(c.column); got != c.class {
			t.Errorf("%s.%s class = %s, want %s", c.table, c.column, got, c.class)
		}
		if got := tbl.SideOf(c.column, p.Unclassified); got != c.side {
			t.Errorf("%s.%s stored on %s side, want %s", c.table, c.column, got, c.side)
		}
	}
	if got := patients.Column("ssn").Mask; got != "last4" {
		t.Errorf("ssn mask = %q", got)
	}
	if n := len(p.Children(patients)); n != 8 {
		t.Errorf("patients has %d child tables, want 8", n)
	}
	if got := p.Residency.RegionOf("Stockholm", false); got != "eu" {
		t.Errorf("Stockholm -> %s", got)
	}
	if got := p.Residency.RegionOf("", true); got != "us" {
		t.Errorf("NULL state -> %s", got)
	}
	analyst := p.RoleForPG("analyst")
	if analyst.AccessTo(Identity) != None || analyst.AccessTo(Clinical) != Full {
		t.Errorf("analyst access = %v", analyst.Access)
	}
}

func TestFilesMergeAndConflict(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	base := write("base.yaml", "version: 1\nregions: {us: {cluster: us}}\nsubjects:\n  patients: {key: id, identity: [ssn]}\n")
	roles := write("roles.yaml", "version: 1\nroles:\n  analyst: {identity: none, clinical: full}\n")
	p, err := Load(base, roles)
	if err != nil {
		t.Fatal(err)
	}
	if p.Role("analyst") == nil || p.Table("public", "patients") == nil {
		t.Fatalf("merge lost a part: %+v", p)
	}
	again := write("again.yaml", "version: 1\nsubjects:\n  patients: {key: id}\n")
	_, err = Load(base, again)
	if err == nil || !strings.Contains(err.Error(), "again.yaml:3:3: table public.patients is classified twice (first at "+base+":4:3)") {
		t.Fatalf("err = %v", err)
	}
}

type fakeCatalog map[string][]string

func (c fakeCatalog) Columns(schema, name string) ([]string, bool) {
	cols, ok := c[schema+"."+name]
	return cols, ok
}

func TestCheckDatabaseNamesWhatIsMissing(t *testing.T) {
	src := `version: 1
regions: {us: {cluster: us}}
subjects:
  patients:
    key: id
    identity: [ssn, frist]
children:
  visits:
    subject: {table: patients, column: patient}
`
	p, err := Parse("p.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	err = CheckDatabase(p, fakeCatalog{"public.patients": {"id", "ssn", "first"}})
	var got []string
	if el, ok := err.(ErrorList); ok {
		for _, e := range el {
			got = append(got, e.Pos.String()+": "+e.Msg)
		}
	}
	want := []string{
		"p.yaml:6:21: column patients.frist does not exist in the database",
		"p.yaml:8:3: table public.visits does not exist in the database",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if !strings.Contains(err.Error(), "hint: columns of patients: id, ssn, first") {
		t.Errorf("hint does not list the columns: %v", err)
	}
}

func TestPositionsSurviveFlowAndBlockStyle(t *testing.T) {
	src := "version: 1\nregions:\n  us:\n    cluster: us\n"
	p, err := Parse("x.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Regions[0].Pos.String(); got != "x.yaml:3:3" {
		t.Fatalf("region position %s", got)
	}
}

func TestTransfersSayWhoMayReadWhatAcrossRegions(t *testing.T) {
	src := `version: 1
regions: {us: {cluster: us}, eu: {cluster: eu}}
residency: {table: patients, column: state, default: us}
subjects:
  patients: {key: id, identity: [ssn]}
roles:
  analyst: {identity: none, clinical: full}
  clinician: {identity: full, clinical: full}
transfers:
  research:
    from: eu
    to: us
    roles: [analyst, clinician]
    purposes: [research]
    classes: [clinical]
    basis: scc
  care:
    from: eu
    to: us
    roles: [clinician]
    classes: [identity, clinical]
    basis: consent
`
	p, err := Parse("p.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name                    string
		from, to, role, purpose string
		class                   Class
		want                    string
	}{
		{"listed purpose", "eu", "us", "analyst", "research", Clinical, "research"},
		{"other columns travel with clinical", "eu", "us", "analyst", "research", Other, "research"},
		{"purpose not listed", "eu", "us", "analyst", "marketing", Clinical, ""},
		{"no purpose set", "eu", "us", "analyst", "", Clinical, ""},
		{"class not listed", "eu", "us", "analyst", "research", Identity, ""},
		{"any purpose", "eu", "us", "clinician", "", Identity, "care"},
		{"other direction", "us", "eu", "clinician", "research", Clinical, ""},
		{"own region", "us", "us", "clinician", "", Clinical, ""},
	}
	for _, c := range cases {
		got := ""
		if tr := p.TransferFor(c.from, c.to, c.role, c.purpose, c.class); tr != nil {
			got = tr.Name
		}
		if got != c.want {
			t.Errorf("%s: transfer %q, want %q", c.name, got, c.want)
		}
	}
	if got := p.TransfersBetween("eu", "us"); len(got) != 2 || got[0].Basis != SCC || got[1].Basis != Consent {
		t.Errorf("TransfersBetween(eu, us) = %v", got)
	}
}
