package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestExampleConfigTakesURLsFromEnvironment(t *testing.T) {
	t.Setenv("PRIVATA_US_URL", "postgres://privata@us.example:5432/clinic")
	t.Setenv("PRIVATA_EU_URL", "postgres://privata@eu.example:5432/clinic")
	c, err := Load("../examples/clinic/privata.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if got := string(c.Clusters["eu"].URL); got != "postgres://privata@eu.example:5432/clinic" {
		t.Fatalf("eu url = %q", got)
	}
	want := filepath.Join("..", "examples", "clinic", "policy.yaml")
	if len(c.Policies) != 1 || c.Policies[0] != want {
		t.Fatalf("policies = %v, want [%s]", c.Policies, want)
	}
	if c.Server.Listen != "127.0.0.1:6432" {
		t.Fatalf("listen default = %q", c.Server.Listen)
	}
}

func TestBadConfigs(t *testing.T) {
	os.Unsetenv("PRIVATA_TEST_UNSET")
	cases := []struct {
		name, src, want string
	}{
		{"unknown key", "clusters: {a: {url: postgres://x}}\npolicies: [p.yaml]\nlisten: 1\n",
			`c.yaml:3:1: unknown field "listen"`},
		{"unset variable", "clusters:\n  a:\n    url: ${PRIVATA_TEST_UNSET}\npolicies: [p.yaml]\n",
			"c.yaml:3:10: environment variable PRIVATA_TEST_UNSET is not set"},
		{"duplicate key", "clusters: {a: {url: postgres://x}}\nclusters: {}\n",
			`c.yaml:2:1: mapping key "clusters" already defined`},
		{"no clusters", "policies: [p.yaml]\n", "no clusters"},
		{"plain password", "clusters: {a: {url: postgres://x}}\npolicies: [p.yaml]\n" +
			"auth: {users: {alice: {password: secret, role: clinician}}}\n",
			"auth: user alice: password must be a SCRAM-SHA-256 verifier"},
		{"bad method", "clusters: {a: {url: postgres://x}}\npolicies: [p.yaml]\nauth: {method: md5}\n",
			`auth: method "md5"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("c.yaml", []byte(tc.src))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v\nwant it to contain %q", err, tc.want)
			}
		})
	}
}

func TestURLNeverInErrors(t *testing.T) {
	src := "clusters: {a: {url: 'mysql://admin:hunter2@db'}}\npolicies: [p.yaml]\n"
	_, err := Parse("c.yaml", []byte(src))
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("err = %v", err)
	}
}

func TestExpandDefaults(t *testing.T) {
	t.Setenv("PRIVATA_TEST_SET", "v")
	for in, want := range map[string]string{
		"a${PRIVATA_TEST_SET}b":          "avb",
		"${PRIVATA_TEST_NOPE:-fallback}": "fallback",
		"no reference":                   "no reference",
	} {
		got, err := expand(in)
		if err != nil || got != want {
			t.Errorf("expand(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := expand("${bad name}"); err == nil {
		t.Error("bad reference accepted")
	}
}
