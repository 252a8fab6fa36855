package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestExampleConfigTakesURLsFromEnvironment(t *testing.T) {
	t.Setenv("PRIVATA_US_URL", "postgres://privata@us.example:5432/clinic")
	t.Setenv("PRIVATA_EU_URL", "postgres://privata@eu.example:5432/clinic")
	t.Setenv("PRIVATA_US_FDW_PASSWORD", "us-secret")
	t.Setenv("PRIVATA_EU_FDW_PASSWORD", "eu-secret")
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
	if f := c.Clusters["eu"].FDW; f == nil || f.Password != "eu-secret" {
		t.Fatalf("eu fdw = %+v", f)
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
		{"fdw without password", "clusters: {a: {url: postgres://x, fdw: {host: h}}}\npolicies: [p.yaml]\n",
			"cluster a: fdw needs a password"},
		{"fdw sslmode", "clusters: {a: {url: postgres://x, fdw: {password: p, sslmode: maybe}}}\n" +
			"policies: [p.yaml]\n", `cluster a: fdw sslmode "maybe"`},
		{"fdw unknown key", "clusters: {a: {url: postgres://x, fdw: {passwd: p}}}\npolicies: [p.yaml]\n",
			`unknown field "passwd"`},
		{"bad method", "clusters: {a: {url: postgres://x}}\npolicies: [p.yaml]\nauth: {method: md5}\n",
			`auth: method "md5"`},
		{"a word for a number", "clusters: {a: {url: postgres://x}}\npolicies: [p.yaml]\n" +
			"server: {parse_cache_entries: lots}\n", "c.yaml:3:31: expected a whole number here, found a string"},
		{"a list for a number", "clusters: {a: {url: postgres://x}}\npolicies: [p.yaml]\n" +
			"server: {parse_cache_entries: [1]}\n", "c.yaml:3:31: expected a whole number here, found a list"},
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

func TestCacheDefaultsAndKeys(t *testing.T) {
	t.Setenv("PRIVATA_TEST_CACHE_KEY", "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=")
	src := "clusters: {a: {url: postgres://x}}\npolicies: [p.yaml]\n"
	c, err := Parse("c.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if c.Cache.Backend != "memory" || c.Cache.MaxBytes != 64<<20 || c.Cache.TTL.D() != 5*time.Minute {
		t.Fatalf("cache defaults = %+v", c.Cache)
	}
	src += "cache:\n  backend: redis\n  address: 127.0.0.1:6379\n  ttl: 90s\n" +
		"  hash_key: ${PRIVATA_TEST_CACHE_KEY}\n" +
		"  keys:\n    - {id: k2, secret: '${PRIVATA_TEST_CACHE_KEY}'}\n"
	c, err = Parse("c.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.Cache.Keys[0].Bytes()
	if err != nil || string(b) != "0123456789abcdef0123456789abcdef" {
		t.Fatalf("key = %q, %v", b, err)
	}
	if c.Cache.TTL.D() != 90*time.Second || c.Cache.Timeout.D() != 50*time.Millisecond {
		t.Fatalf("ttl, timeout = %s, %s", c.Cache.TTL.D(), c.Cache.Timeout.D())
	}
}

func TestBadCacheConfigs(t *testing.T) {
	const head = "clusters: {a: {url: postgres://x}}\npolicies: [p.yaml]\ncache:\n"
	const key = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
	cases := []struct {
		name, src, want string
	}{
		{"unknown backend", "  backend: disk\n", `cache: backend "disk"`},
		{"unknown key", "  size: 10\n", `c.yaml:4:3: unknown field "size"`},
		{"bad duration", "  ttl: 5 minutes\n", `c.yaml:4:8: "5 minutes" is not a duration`},
		{"ttl too long", "  ttl: 1000h\n", "cache: ttl 1000h0m0s: want between 1s and 720h"},
		{"tiny memory", "  max_bytes: 1000\n", "cache: max_bytes 1000: want at least"},
		{"redis without address", "  backend: redis\n", "cache: backend redis needs an address"},
		{"redis without keys", "  backend: redis\n  address: x:1\n  hash_key: " + key + "\n",
			"cache: backend redis needs keys to encrypt values"},
		{"short secret", "  keys: [{id: k1, secret: c2hvcnQ=}]\n",
			`cache: key "k1": secret must be 32 bytes in base64`},
		{"short hash key", "  hash_key: c2hvcnQ=\n", "cache: hash_key must be at least 32 bytes"},
		{"key twice", "  keys: [{id: k, secret: " + key + "}, {id: k, secret: " + key + "}]\n",
			`cache: keys[1]: id "k" is used twice`},
		{"prefix with space", "  prefix: 'a b'\n", "cache: prefix: want at most 64 printable"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("c.yaml", []byte(head+tc.src))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v\nwant it to contain %q", err, tc.want)
			}
		})
	}
}

func TestCacheSecretNeverInErrors(t *testing.T) {
	src := "clusters: {a: {url: postgres://x}}\npolicies: [p.yaml]\n" +
		"cache: {hash_key: hunter2hunter2, keys: [{id: k1, secret: hunter2hunter2}]}\n"
	_, err := Parse("c.yaml", []byte(src))
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("err = %v", err)
	}
}
