package config

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const base = "clusters: {a: {url: postgres://x}}\npolicies: [p.yaml]\n"

func TestAuditDefaultsAndRelativePaths(t *testing.T) {
	c, err := Parse(filepath.Join("etc", "c.yaml"), []byte(base+
		"audit: {sink: audit.jsonl, hmac_key: 0123456789abcdef0123}\n"))
	if err != nil {
		t.Fatal(err)
	}
	a := c.Audit
	if a.Fsync != "interval" || a.FsyncInterval != Duration(time.Second) || a.Slot != "privata_audit" ||
		a.SpoolMaxMB != 1024 || a.FailOpen {
		t.Fatalf("defaults: %+v", a)
	}
	if a.SpoolDir != filepath.Join("etc", ".privata", "audit-spool") ||
		a.Sink != filepath.Join("etc", "audit.jsonl") {
		t.Fatalf("paths not relative to the file: spool %s, sink %s", a.SpoolDir, a.Sink)
	}
	c, err = Parse("c.yaml", []byte(base+"audit: {sink: stdout}\n"))
	if err != nil || c.Audit.Sink != "stdout" {
		t.Fatalf("sink stdout: %q, %v", c.Audit.Sink, err)
	}
}

func TestBadAuditConfigs(t *testing.T) {
	cases := []struct{ name, src, want string }{
		{"unknown key", "audit:\n  fsynk: always\n", `c.yaml:4:3: unknown field "fsynk"`},
		{"bad fsync", "audit: {fsync: sometimes}\n", `audit: fsync "sometimes"`},
		{"short key", "audit: {hmac_key: short}\n", "audit: hmac_key has 5 bytes"},
		{"bad slot", "audit: {slot: Audit-Slot}\n", `audit: slot "Audit-Slot"`},
		{"bad interval", "audit: {fsync_interval: 0s}\n", "fsync_interval must be positive"},
		{"bad url", "audit: {url: 'mysql://admin:hunter2@db'}\n", "audit: url is not a postgres"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("c.yaml", []byte(base+tc.src))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v\nwant it to contain %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Fatalf("the error shows the password: %v", err)
			}
		})
	}
}
