package main

import (
	"strings"
	"testing"

	"github.com/privata/privata/config"
	"github.com/privata/privata/policy"
)

// A region that keeps identity and clinical data in separate clusters is
// refused with its position, also when another region is plain: plan and
// apply never leave such a region out silently.
func TestTargetsRefuseSplitRegion(t *testing.T) {
	p, err := policy.Parse("policy.yaml", []byte(`version: 1
regions:
  us: {cluster: us}
  eu: {identity_cluster: eu-id, clinical_cluster: eu-clin}
residency:
  table: patients
  column: state
  values: {Stockholm: eu}
  default: us
subjects:
  patients: {key: id, identity: [ssn]}
roles:
  clinician: {identity: full, clinical: full}
`))
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Clusters = map[string]*config.Cluster{
		"us":      {URL: "postgres://privata@127.0.0.1:5432/us"},
		"eu-id":   {URL: "postgres://privata@127.0.0.1:5432/eu_id"},
		"eu-clin": {URL: "postgres://privata@127.0.0.1:5432/eu_clin"},
	}
	_, _, err = targetsOf(cfg, p)
	if err == nil {
		t.Fatal("targetsOf accepted a region with separate identity and clinical clusters")
	}
	want := "policy.yaml:4:3: region eu keeps identity and clinical data in different clusters"
	if !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("error = %q, want prefix %q", err, want)
	}
}
