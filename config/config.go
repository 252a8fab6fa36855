// Package config reads privata.yaml: the clusters Privata fronts, the policy
// files, and how the server listens and authenticates clients.
//
// Decoding is strict: an unknown or duplicate key is an error that names its
// file, line and column. String values may refer to environment variables as
// ${NAME} (an error when NAME is unset) or ${NAME:-default}. Defaults live in
// one place, Default. Relative paths are relative to the configuration file.
package config

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
)

// Config is the content of privata.yaml.
type Config struct {
	// Clusters by name; the policy's regions refer to these names.
	Clusters map[string]*Cluster `yaml:"clusters"`
	// Policies are the policy files, merged in order.
	Policies []string `yaml:"policies"`
	Server   Server   `yaml:"server"`
	Auth     Auth     `yaml:"auth"`
	Audit    Audit    `yaml:"audit"`
	Cache    Cache    `yaml:"cache"`

	// File is the path the configuration was read from.
	File string `yaml:"-"`
}

// Cluster is one PostgreSQL cluster (one database in it).
type Cluster struct {
	// URL is Privata's own connection: plan, apply and the controller loops
	// use it, and sessions too unless SessionURL is set.
	URL Env `yaml:"url"`
	// SessionURL, when set, is the login client sessions use upstream before
	// taking on their policy role. It should not be a superuser.
	SessionURL Env `yaml:"session_url"`
	// FDW says how the other regions' clusters reach this one over
	// postgres_fdw. It is needed when the policy lets another region read
	// this region's subjects (transfers).
	FDW *FDW `yaml:"fdw"`
}

// FDW is how other clusters connect to a cluster to read what it exports.
type FDW struct {
	// Password is the password of the login roles (privata_export_*) that
	// other clusters use here; apply sets it here and in their user
	// mappings. It is never printed or logged.
	Password Env `yaml:"password"`
	// Host, Port and DBName say where the other clusters connect; by
	// default those of the cluster's url.
	Host   string `yaml:"host"`
	Port   int    `yaml:"port"`
	DBName string `yaml:"dbname"`
	// SSLMode is the sslmode of those connections; by default the url's,
	// or prefer.
	SSLMode string `yaml:"sslmode"`
}

// Server says where and how the proxy listens.
type Server struct {
	Listen        string `yaml:"listen"`
	MetricsListen string `yaml:"metrics_listen"`
	TLSCert       string `yaml:"tls_cert"`
	TLSKey        string `yaml:"tls_key"`
	// MaxMessageBytes is the largest protocol message a client may send;
	// larger ones are refused before they are read.
	MaxMessageBytes int `yaml:"max_message_bytes"`
	// ParseCacheEntries bounds the cache of parsed statement texts.
	ParseCacheEntries int `yaml:"parse_cache_entries"`
	// Region is the region of this instance's sessions: statements go to
	// its cluster unless routing says otherwise (package regions). Default:
	// the policy's default region.
	Region string `yaml:"region"`
	// TwoPhaseCommit lets a transaction write to two regions' clusters
	// (and a subject move between them): it commits on all or none, with
	// PREPARE TRANSACTION. Off, such a transaction is refused.
	TwoPhaseCommit bool `yaml:"two_phase_commit"`
	// TwoPhaseRecoveryAfter is how long a transaction Privata prepared
	// waits before recovery (at start, then as often) resolves it as its
	// recorded decision says: younger ones may belong to a commit in
	// progress.
	TwoPhaseRecoveryAfter Duration `yaml:"two_phase_recovery_after"`
	// DirectoryEntries bounds the cache of which region holds a subject;
	// DirectoryTTL is how long an entry is trusted.
	DirectoryEntries int      `yaml:"directory_entries"`
	DirectoryTTL     Duration `yaml:"directory_ttl"`
}

// Auth says how clients authenticate to Privata.
type Auth struct {
	// Method is scram (users below), auth_query (verifiers looked up
	// upstream) or trust (development only).
	Method string `yaml:"method"`
	// Users maps client user names to SCRAM-SHA-256 verifiers and roles.
	Users map[string]*User `yaml:"users"`
	// Query looks up a user's verifier upstream for auth_query; $1 is the
	// user name; it returns one text column.
	Query string `yaml:"query"`
	// QueryCluster is the cluster auth_query runs on (default: the first).
	QueryCluster string `yaml:"query_cluster"`
	// DefaultRole is the policy role of a client whose user name is neither
	// in Users nor a policy role's pg_role.
	DefaultRole string `yaml:"default_role"`
}

// User is a client user of Privata.
type User struct {
	// Password is a SCRAM-SHA-256 verifier as PostgreSQL stores it
	// (SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>); `privata
	// passwd` prints one. Plain passwords are refused.
	Password Env `yaml:"password"`
	// Role is the policy role the user acts as.
	Role string `yaml:"role"`
}

// Cache configures the read cache (package cache).
type Cache struct {
	// Backend is memory (in-process, bounded by MaxBytes), redis,
	// memcached or off.
	Backend string `yaml:"backend"`
	// Address is the server: host:port or a redis:// (rediss://) URL for
	// redis; host:port[,host:port...] for memcached.
	Address Env `yaml:"address"`
	// MaxBytes bounds the in-process cache, counting keys and values.
	MaxBytes int64 `yaml:"max_bytes"`
	// TTL is the longest an entry lives.
	TTL Duration `yaml:"ttl"`
	// Timeout bounds each call to the backend; a slower call is a miss.
	Timeout Duration `yaml:"timeout"`
	// Prefix starts every key Privata writes to a shared backend.
	Prefix string `yaml:"prefix"`
	// HashKey names entries with HMAC-SHA-256: at least 32 bytes, base64.
	// Every instance sharing a backend uses the same one. Changing it
	// empties the cache.
	HashKey Env `yaml:"hash_key"`
	// Keys encrypt values with AES-256-GCM, newest first: new entries use
	// the first; entries under the others still decrypt; entries under a
	// key no longer listed are misses.
	Keys []*CacheKey `yaml:"keys"`
	// Tables lists classified tables (schema.name; public when the schema
	// is left out) whose other reads are cached too: any pure SELECT of
	// them alone (no function call, subquery or lock), invalidated by any
	// change to them. Point reads by key or subject are always cached.
	Tables []string `yaml:"tables"`
}

// CacheKey is one encryption key of the cache.
type CacheKey struct {
	// ID names the key; it is stored with every value it encrypts.
	ID string `yaml:"id"`
	// Secret is 32 bytes, base64 (openssl rand -base64 32).
	Secret Env `yaml:"secret"`
}

// Bytes decodes the key's secret.
func (k *CacheKey) Bytes() ([]byte, error) {
	b, err := decodeBase64(string(k.Secret))
	if err != nil || len(b) != 32 {
		return nil, fmt.Errorf("key %q: secret must be 32 bytes in base64 "+
			"(openssl rand -base64 32)", k.ID)
	}
	return b, nil
}

// HashKeyBytes decodes HashKey; nil when it is not set.
func (c *Cache) HashKeyBytes() ([]byte, error) {
	if c.HashKey == "" {
		return nil, nil
	}
	b, err := decodeBase64(string(c.HashKey))
	if err != nil || len(b) < 32 {
		return nil, errors.New("hash_key must be at least 32 bytes in base64 " +
			"(openssl rand -base64 32)")
	}
	return b, nil
}

func decodeBase64(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if b, err := base64.StdEncoding.DecodeString(s); err == nil {
		return b, nil
	}
	return base64.RawStdEncoding.DecodeString(s)
}

func (c *Cache) check() []error {
	var errs []error
	shared := c.Backend == "redis" || c.Backend == "memcached"
	switch {
	case c.Backend == "off":
		return nil
	case c.Backend == "memory":
		if c.MaxBytes < 1<<20 {
			errs = append(errs, fmt.Errorf("max_bytes %d: want at least 1048576 (1 MiB)", c.MaxBytes))
		}
	case shared:
		if c.Address == "" {
			errs = append(errs, fmt.Errorf("backend %s needs an address", c.Backend))
		}
		if c.HashKey == "" {
			errs = append(errs, fmt.Errorf("backend %s needs a hash_key shared by every instance",
				c.Backend))
		}
		if len(c.Keys) == 0 {
			errs = append(errs, fmt.Errorf("backend %s needs keys to encrypt values", c.Backend))
		}
	default:
		errs = append(errs, fmt.Errorf("backend %q: want memory, redis, memcached or off", c.Backend))
	}
	if c.TTL.D() < time.Second || c.TTL.D() > 30*24*time.Hour {
		errs = append(errs, fmt.Errorf("ttl %s: want between 1s and 720h", c.TTL.D()))
	}
	if c.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("timeout %s: want more than 0", c.Timeout.D()))
	}
	if len(c.Prefix) > 64 || strings.ContainsFunc(c.Prefix, func(r rune) bool {
		return r <= ' ' || r > '~'
	}) {
		errs = append(errs, errors.New("prefix: want at most 64 printable ASCII characters, no spaces"))
	}
	if _, err := c.HashKeyBytes(); err != nil {
		errs = append(errs, err)
	}
	ids := map[string]bool{}
	for i, k := range c.Keys {
		if k == nil || k.ID == "" || len(k.ID) > 64 {
			errs = append(errs, fmt.Errorf("keys[%d]: id must be 1 to 64 characters", i))
			continue
		}
		if ids[k.ID] {
			errs = append(errs, fmt.Errorf("keys[%d]: id %q is used twice", i, k.ID))
		}
		ids[k.ID] = true
		if _, err := k.Bytes(); err != nil {
			errs = append(errs, err)
		}
	}
	for i, err := range errs {
		errs[i] = fmt.Errorf("cache: %w", err)
	}
	return errs
}

// Default returns the configuration used for keys a file leaves out.
func Default() *Config {
	return &Config{
		Server: Server{
			Listen:                "127.0.0.1:6432",
			MetricsListen:         "127.0.0.1:9187",
			MaxMessageBytes:       64 << 20,
			ParseCacheEntries:     10000,
			DirectoryEntries:      100000,
			DirectoryTTL:          Duration(time.Minute),
			TwoPhaseRecoveryAfter: Duration(time.Minute),
		},
		Auth: Auth{
			Method: "scram",
			Query:  "SELECT rolpassword FROM pg_catalog.pg_authid WHERE rolname = $1 AND rolcanlogin",
		},
		Audit: defaultAudit(),
		Cache: Cache{
			Backend:  "memory",
			MaxBytes: 64 << 20,
			TTL:      Duration(5 * time.Minute),
			Timeout:  Duration(50 * time.Millisecond),
			Prefix:   "privata:",
		},
	}
}

// Load reads and checks a configuration file.
func Load(file string) (*Config, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(file, data)
}

// Parse decodes a configuration; file names it in errors and anchors
// relative paths.
func Parse(file string, data []byte) (*Config, error) {
	c := Default()
	if err := yaml.UnmarshalWithOptions(data, c, yaml.Strict()); err != nil {
		return nil, positioned(file, err)
	}
	c.File = file
	dir := filepath.Dir(file)
	for i, p := range c.Policies {
		if !filepath.IsAbs(p) {
			c.Policies[i] = filepath.Join(dir, p)
		}
	}
	for _, p := range []*string{&c.Server.TLSCert, &c.Server.TLSKey} {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	c.Audit.anchor(dir)
	if err := c.check(); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return c, nil
}

func (c *Config) check() error {
	var errs []error
	if len(c.Clusters) == 0 {
		errs = append(errs, errors.New("no clusters: add `clusters: {name: {url: postgres://...}}`"))
	}
	for _, name := range c.ClusterNames() {
		cl := c.Clusters[name]
		if cl == nil || cl.URL == "" {
			errs = append(errs, fmt.Errorf("cluster %s has no url", name))
			continue
		}
		if f := cl.FDW; f != nil {
			errs = append(errs, f.check(name)...)
		}
		for _, u := range []Env{cl.URL, cl.SessionURL} {
			if u == "" {
				continue
			}
			if _, err := url.Parse(string(u)); err != nil || !strings.HasPrefix(string(u), "postgres") {
				// Say which cluster, never the URL: it may hold a password.
				errs = append(errs, fmt.Errorf("cluster %s: url is not a postgres:// URL", name))
			}
		}
	}
	if len(c.Policies) == 0 {
		errs = append(errs, errors.New("no policy files: add `policies: [policy.yaml]`"))
	}
	if c.Server.TwoPhaseRecoveryAfter <= 0 {
		errs = append(errs, errors.New("server: two_phase_recovery_after must be more than 0"))
	}
	if c.Server.DirectoryEntries < 0 || c.Server.DirectoryTTL < 0 {
		errs = append(errs, errors.New("server: directory_entries and directory_ttl may not be negative"))
	}
	if (c.Server.TLSCert == "") != (c.Server.TLSKey == "") {
		errs = append(errs, errors.New("server: tls_cert and tls_key go together"))
	}
	switch c.Auth.Method {
	case "scram", "trust":
	case "auth_query":
		if c.Auth.QueryCluster != "" && c.Clusters[c.Auth.QueryCluster] == nil {
			errs = append(errs, fmt.Errorf("auth: query_cluster %q is not a cluster", c.Auth.QueryCluster))
		}
	default:
		errs = append(errs, fmt.Errorf("auth: method %q: want scram, auth_query or trust", c.Auth.Method))
	}
	for _, name := range sortedKeys(c.Auth.Users) {
		u := c.Auth.Users[name]
		if u == nil || !strings.HasPrefix(string(u.Password), "SCRAM-SHA-256$") {
			errs = append(errs, fmt.Errorf("auth: user %s: password must be a SCRAM-SHA-256 verifier "+
				"(privata passwd prints one); plain passwords are not stored", name))
		}
	}
	if err := c.Audit.check(); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, c.Cache.check()...)
	return errors.Join(errs...)
}

func (f *FDW) check(cluster string) []error {
	var errs []error
	if f.Password == "" {
		errs = append(errs, fmt.Errorf("cluster %s: fdw needs a password", cluster))
	}
	if f.Port < 0 || f.Port > 65535 {
		errs = append(errs, fmt.Errorf("cluster %s: fdw port %d is not a TCP port", cluster, f.Port))
	}
	switch f.SSLMode {
	case "", "disable", "allow", "prefer", "require", "verify-ca", "verify-full":
	default:
		errs = append(errs, fmt.Errorf("cluster %s: fdw sslmode %q: want disable, allow, prefer, "+
			"require, verify-ca or verify-full", cluster, f.SSLMode))
	}
	return errs
}

// ClusterNames returns the cluster names in sorted order.
func (c *Config) ClusterNames() []string { return sortedKeys(c.Clusters) }

// SessionURL is the URL sessions use upstream on cluster name.
func (c *Config) SessionURL(name string) string {
	cl := c.Clusters[name]
	if cl.SessionURL != "" {
		return string(cl.SessionURL)
	}
	return string(cl.URL)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Env is a string in which ${NAME} and ${NAME:-default} are replaced by the
// environment's values when the file is read.
type Env string

func (e *Env) UnmarshalYAML(node ast.Node) error {
	sn, ok := node.(ast.ScalarNode)
	if !ok {
		return fmt.Errorf("[%d:%d] expected a string", node.GetToken().Position.Line,
			node.GetToken().Position.Column)
	}
	if node.Type() == ast.NullType {
		*e = ""
		return nil
	}
	s, err := expand(fmt.Sprint(sn.GetValue()))
	if err != nil {
		tk := node.GetToken()
		return fmt.Errorf("[%d:%d] %w", tk.Position.Line, tk.Position.Column, err)
	}
	*e = Env(s)
	return nil
}

// Duration is a time.Duration written as Go writes it: 300ms, 5m, 1h30m.
type Duration time.Duration

// D returns the duration as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d *Duration) UnmarshalYAML(node ast.Node) error {
	tk := node.GetToken()
	sn, ok := node.(ast.ScalarNode)
	if !ok || node.Type() == ast.NullType {
		return fmt.Errorf("[%d:%d] expected a duration such as 300ms or 5m",
			tk.Position.Line, tk.Position.Column)
	}
	v, err := time.ParseDuration(fmt.Sprint(sn.GetValue()))
	if err != nil {
		return fmt.Errorf("[%d:%d] %q is not a duration: want one such as 300ms or 5m",
			tk.Position.Line, tk.Position.Column, fmt.Sprint(sn.GetValue()))
	}
	*d = Duration(v)
	return nil
}

// expand replaces ${NAME} and ${NAME:-default}; an unset NAME without a
// default is an error.
func expand(s string) (string, error) {
	var b strings.Builder
	for {
		i := strings.Index(s, "${")
		if i < 0 {
			b.WriteString(s)
			return b.String(), nil
		}
		j := strings.IndexByte(s[i:], '}')
		if j < 0 {
			return "", fmt.Errorf("unclosed ${ in %q", s[i:])
		}
		b.WriteString(s[:i])
		ref := s[i+2 : i+j]
		name, def, hasDef := strings.Cut(ref, ":-")
		if name == "" || strings.ContainsFunc(name, func(r rune) bool {
			return !(r == '_' || r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9')
		}) {
			return "", fmt.Errorf("bad environment reference ${%s}", ref)
		}
		v, set := os.LookupEnv(name)
		switch {
		case set && v != "":
			b.WriteString(v)
		case hasDef:
			b.WriteString(def)
		default:
			return "", fmt.Errorf("environment variable %s is not set", name)
		}
		s = s[i+j+1:]
	}
}

// positioned turns a decoder error into file:line:column form.
func positioned(file string, err error) error {
	var ye yaml.Error
	if errors.As(err, &ye) && ye.GetToken() != nil {
		p := ye.GetToken().Position
		return fmt.Errorf("%s:%d:%d: %s", file, p.Line, p.Column, typeMessage(ye.GetMessage()))
	}
	// Errors of our own unmarshalers carry "[line:col] " in front.
	msg := err.Error()
	if strings.HasPrefix(msg, "[") {
		if pos, rest, ok := strings.Cut(msg[1:], "] "); ok {
			return fmt.Errorf("%s:%s: %s", file, pos, firstLine(rest))
		}
	}
	return fmt.Errorf("%s: %s", file, firstLine(msg))
}

// goTypeError matches the decoder's message for a value of the wrong
// type, which names Go types and fields.
var goTypeError = regexp.MustCompile(`^cannot unmarshal (.+?) into Go (?:struct field \S+ of )?type (\S+)$`)

// typeMessage says a wrong type's message in the configuration's terms.
func typeMessage(msg string) string {
	m := goTypeError.FindStringSubmatch(msg)
	if m == nil {
		return msg
	}
	want := map[string]string{"int": "a whole number", "int64": "a whole number", "uint32": "a whole number",
		"float64": "a number", "bool": "true or false", "string": "a string"}[m[2]]
	if want == "" {
		want = "a value of another kind"
	}
	found := map[string]string{"string": "a string", "number": "a number", "bool": "true or false",
		"array": "a list", "sequence": "a list", "mapping": "a mapping"}[m[1]]
	switch {
	case found != "":
	case strings.HasPrefix(m[1], "[]"):
		found = "a list"
	case strings.HasPrefix(m[1], "map["):
		found = "a mapping"
	default:
		found = "a value of another kind"
	}
	return fmt.Sprintf("expected %s here, found %s", want, found)
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}
