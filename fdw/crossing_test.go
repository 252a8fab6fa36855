package fdw_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/privata/privata/config"
	"github.com/privata/privata/fdw"
	"github.com/privata/privata/policy"
	"github.com/privata/privata/rewrite"
	"github.com/privata/privata/storage"
)

// topology is basePolicy's topology, with clusters that are never reached.
func topology(t *testing.T) *fdw.Topology {
	t.Helper()
	cfg, err := config.Parse("privata.yaml", []byte(`clusters:
  us: {url: 'postgres://privata@us.example:5432/clinic', fdw: {password: a}}
  eu: {url: 'postgres://privata@eu.example:5432/clinic', fdw: {password: b}}
policies: [policy.yaml]
`))
	if err != nil {
		t.Fatal(err)
	}
	p, err := policy.Parse("policy.yaml", []byte(basePolicy))
	if err != nil {
		t.Fatal(err)
	}
	targets, err := storage.Targets(cfg, p)
	if err != nil {
		t.Fatal(err)
	}
	topo, err := fdw.NewTopology(cfg, p, targets)
	if err != nil {
		t.Fatal(err)
	}
	return topo
}

func TestCrossingsNameTheRegionsAndClassesRead(t *testing.T) {
	topo := topology(t)
	an := rewrite.NewAnalyzer(0)
	path := []string{"public"}
	cases := []struct {
		name, session, sql string
		path               []string
		want               string
	}{
		{"count through a global view", "us", `SELECT count(*) FROM privata_global.conditions`, path,
			"eu conditions [clinical]"},
		{"an identity column", "us", `SELECT ssn FROM privata_global.patients`, path,
			"eu patients [clinical identity]"},
		{"the subject's key", "us", `SELECT p.id FROM privata_global.patients p`, path,
			"eu patients [clinical identity]"},
		{"every column", "us", `SELECT * FROM privata_region_eu.patients`, path,
			"eu patients [clinical identity]"},
		{"clinical columns only", "us", `SELECT p.marital, count(*) FROM privata_global.patients p
			GROUP BY 1`, path, "eu patients [clinical]"},
		{"a join of both", "eu", `SELECT c.code FROM privata_global.conditions c
			JOIN privata_global.patients p USING (privata_pseudonym) WHERE p.last = 'x'`, path,
			"us conditions [clinical]; us patients [clinical identity]"},
		{"the application's tables", "us", `SELECT * FROM patients`, path, ""},
		{"a global view through the search path", "us", `SELECT count(*) FROM conditions`,
			[]string{"privata_global", "public"}, "eu conditions [clinical]"},
		{"the session's own cluster", "eu", `SELECT * FROM privata_export.patients`, path, ""},
		{"a subquery", "us", `SELECT * FROM patients WHERE id IN
			(SELECT privata_pseudonym FROM privata_region_eu.conditions)`, path, "eu conditions [clinical]"},
	}
	for _, c := range cases {
		an, err := an.Analyze(c.sql)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		var got []string
		for _, x := range topo.Crossings(an.Statements[0], c.session, c.path) {
			got = append(got, fmt.Sprintf("%s %s %v", x.Region, x.Table.Name, x.Classes))
		}
		if g := strings.Join(got, "; "); g != c.want {
			t.Errorf("%s: crossings %q, want %q", c.name, g, c.want)
		}
	}
}
