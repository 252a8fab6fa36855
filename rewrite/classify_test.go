package rewrite

import (
	"fmt"
	"slices"
	"testing"

	"github.com/privata/privata/policy"
)

func clinicPolicy(t *testing.T) *policy.Policy {
	t.Helper()
	p, err := policy.Load("../examples/clinic/policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// describeClassification renders tables as "schema.name" and columns as
// "table.column class access", sorted, and "ALL" when AllColumns is set.
func describeClassification(c Classification) []string {
	var out []string
	for _, t := range c.Tables {
		out = append(out, t.QualifiedName())
	}
	for _, col := range c.Columns {
		out = append(out, fmt.Sprintf("%s.%s %s %s", col.Table.Name, col.Name, col.Class,
			accessCode(col.Access)))
	}
	if c.AllColumns {
		out = append(out, "ALL")
	}
	slices.Sort(out)
	return out
}

func TestClassify(t *testing.T) {
	p := clinicPolicy(t)
	cases := []struct {
		name string
		sql  string
		path []string
		want []string
	}{
		{name: "an identity column read through an alias",
			sql:  "SELECT p.ssn FROM patients p",
			want: []string{"patients.ssn identity r", "public.patients"}},
		{name: "a clinical column of a child table",
			sql:  "SELECT code FROM encounters",
			want: []string{"encounters.code clinical r", "public.encounters"}},
		{name: "the key and the reference are other",
			sql: "SELECT p.id, e.patient FROM patients p JOIN encounters e ON true",
			want: []string{"encounters.patient other r", "patients.id other r",
				"public.encounters", "public.patients"}},
		{name: "an unlisted column takes the policy's unclassified class",
			sql:  "SELECT shoe_size FROM patients",
			want: []string{"patients.shoe_size clinical r", "public.patients"}},
		{name: "a star reads every column",
			sql:  "SELECT * FROM allergies",
			want: []string{"ALL", "allergies.patient other r", "public.allergies"}},
		{name: "an open column counts for every classified table it may belong to",
			sql: "SELECT ssn FROM patients p JOIN encounters e ON e.patient = p.id",
			want: []string{"ALL", "encounters.patient other r", "encounters.ssn clinical r",
				"patients.id other r", "patients.ssn identity r", "public.encounters", "public.patients"}},
		{name: "writes and reads of one column merge",
			sql:  "UPDATE patients SET ssn = upper(ssn) WHERE id = 1",
			want: []string{"patients.id other r", "patients.ssn identity rw", "public.patients"}},
		{name: "tables the policy does not classify are left out",
			sql: "SELECT * FROM staging"},
		{name: "a function named like a table is not one",
			sql: "SELECT * FROM patients()"},
		{name: "the search path decides unqualified names",
			sql: "SELECT ssn FROM patients", path: []string{"app"}},
		{name: "every schema on the path counts",
			sql: "SELECT ssn FROM patients", path: []string{"app", "public"},
			want: []string{"patients.ssn identity r", "public.patients"}},
		{name: "with $user on the path any schema could hold it",
			sql: "SELECT ssn FROM patients", path: []string{"$user"},
			want: []string{"patients.ssn identity r", "public.patients"}},
		{name: "a schema-qualified name ignores the path",
			sql: "SELECT ssn FROM public.patients", path: []string{"app"},
			want: []string{"patients.ssn identity r", "public.patients"}},
		{name: "another schema's table of the same name is not classified",
			sql: "SELECT ssn FROM archive.patients"},
		{name: "DDL on a classified table names it",
			sql: "DROP TABLE patients", want: []string{"public.patients"}},
	}
	a := NewAnalyzer(0)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st := analyzeOne(t, a, c.sql)
			got := describeClassification(Classify(st, p, c.path))
			if !slices.Equal(got, c.want) {
				t.Fatalf("got  %q\nwant %q", got, c.want)
			}
		})
	}
}

func TestClassifyStarListsThePolicysColumns(t *testing.T) {
	p := clinicPolicy(t)
	st := analyzeOne(t, NewAnalyzer(0), "SELECT * FROM patients")
	c := Classify(st, p, nil)
	patients := p.Table("public", "patients")
	if !c.AllColumns || len(c.Columns) != len(patients.Columns)+1 {
		t.Fatalf("AllColumns %v, %d columns; want true, %d", c.AllColumns, len(c.Columns),
			len(patients.Columns)+1)
	}
	for _, col := range c.Columns {
		if col.Class != patients.ClassOf(col.Name) {
			t.Errorf("%s is %s, the policy says %s", col.Name, col.Class, patients.ClassOf(col.Name))
		}
	}
}
