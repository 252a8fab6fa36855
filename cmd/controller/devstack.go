package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/privata/privata/config"
	"github.com/privata/privata/internal/localpg"
	"github.com/privata/privata/policy"
)

// devDatabase is the database privata dev creates in each of its clusters.
const devDatabase = "privata"

// devStack is what privata dev runs: a local cluster per cluster the
// policy's regions name, and the configuration that points at them.
type devStack struct {
	dir        string
	policyFile string
	pol        *policy.Policy
	cfg        *config.Config
	clusters   map[string]*devCluster
	// endpoints are the proxies, one per region, the default region's
	// first.
	endpoints []*devEndpoint
}

// devEndpoint is the proxy of one region: its sessions' statements go to
// that region's cluster unless routing says otherwise.
type devEndpoint struct {
	region string
	cfg    *config.Config
	addr   string // once it listens
}

type devCluster struct {
	name  string
	pg    *localpg.Cluster
	fresh bool // initialised by this start
}

// devState is what the data directory remembers between starts, in
// dev.json (mode 0600): the clusters' ports, so that their URLs stay the
// same, and the generated secrets.
type devState struct {
	// SuperPassword is the clusters' superuser password: postgres_fdw
	// connects between clusters with passwords only.
	SuperPassword string `json:"super_password"`
	// FDWPassword is the export roles' password (clusters.*.fdw.password).
	FDWPassword string `json:"fdw_password"`
	// AuditKey keys the audit hash chains.
	AuditKey string         `json:"audit_key"`
	Ports    map[string]int `json:"ports"`
}

// startDevStack starts (initialising them the first time) the clusters of
// the policy's regions under o.data and writes the configuration that
// names them.
func startDevStack(ctx context.Context, o devOptions) (*devStack, error) {
	policyFile, err := filepath.Abs(o.policy)
	if err != nil {
		return nil, err
	}
	pol, err := loadDevPolicy(policyFile)
	if err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(o.data)
	if err != nil {
		return nil, err
	}
	// The postgres OS user must be able to enter it when we run as root.
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	st, err := loadDevState(dir)
	if err != nil {
		return nil, err
	}
	s := &devStack{dir: dir, policyFile: policyFile, pol: pol, clusters: map[string]*devCluster{}}
	var names []string
	for _, r := range pol.Regions {
		if !slices.Contains(names, r.Cluster) {
			names = append(names, r.Cluster)
		}
	}
	for _, name := range names {
		c, err := startDevCluster(ctx, dir, name, st)
		if err != nil {
			s.stop()
			return nil, err
		}
		s.clusters[name] = c
	}
	if err := saveDevState(dir, st); err != nil {
		s.stop()
		return nil, err
	}
	if s.cfg, err = s.writeConfig(o, st); err != nil {
		s.stop()
		return nil, err
	}
	if s.endpoints, err = s.regionEndpoints(o.listen); err != nil {
		s.stop()
		return nil, err
	}
	return s, nil
}

// regionEndpoints derives from the generated configuration (the default
// region's) one per region: the others listen on the following ports,
// leave the change consumers to the first (one consumer per slot) and
// have no read cache (only the first hears of changes).
func (s *devStack) regionEndpoints(listen string) ([]*devEndpoint, error) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return nil, fmt.Errorf("--listen: %w", err)
	}
	first, err := strconv.Atoi(port)
	if err != nil {
		return nil, fmt.Errorf("--listen: port %q is not a number", port)
	}
	regions := []string{s.cfg.Server.Region}
	for _, r := range s.pol.Regions {
		if r.Name != s.cfg.Server.Region {
			regions = append(regions, r.Name)
		}
	}
	var eps []*devEndpoint
	for i, r := range regions {
		if i == 0 {
			eps = append(eps, &devEndpoint{region: r, cfg: s.cfg})
			continue
		}
		cfg := *s.cfg
		cfg.Server.Region = r
		p := 0
		if first != 0 {
			p = first + i
		}
		cfg.Server.Listen = net.JoinHostPort(host, strconv.Itoa(p))
		cfg.Server.MetricsListen = ""
		cfg.Audit.ServeConsumers = false
		cfg.Audit.SpoolDir = filepath.Join(s.dir, "audit-spool-"+r)
		cfg.Cache.Backend = "off"
		eps = append(eps, &devEndpoint{region: r, cfg: &cfg})
	}
	return eps, nil
}

// apply applies the policy to every cluster, with the tables the
// application has not created yet pending, and lets the policy's roles
// create tables in schema public (the application's migrations run
// through Privata as one of them). It says in one line per cluster what
// it did, after prefix.
func (s *devStack) apply(ctx context.Context, out io.Writer, prefix string) error {
	targets, topo, err := targetsOf(s.cfg, s.pol)
	if err != nil {
		return err
	}
	var roles []string
	for _, r := range s.pol.Roles {
		roles = append(roles, pgx.Identifier{r.PGRole}.Sanitize())
	}
	for _, t := range targets {
		conn, err := connect(ctx, t, "privata dev")
		if err != nil {
			return fmt.Errorf("cluster %s: %w", t.Name, err)
		}
		pl, err := applyOne(ctx, conn, s.pol, t, topo, true)
		if err == nil {
			_, err = conn.Exec(ctx, "GRANT CREATE ON SCHEMA public TO "+strings.Join(roles, ", "))
		}
		conn.Close(ctx)
		if err != nil {
			return fmt.Errorf("cluster %s: apply the policy: %w", t.Name, err)
		}
		slog.Info("applied", "cluster", t.Name, "steps", len(pl.Steps), "pending", len(pl.Pending))
		what := "applied"
		if pl.Empty() {
			what = "up to date"
		}
		fmt.Fprintf(out, "%sPolicy %s on cluster %s", prefix, what, t.Name)
		if len(pl.Pending) > 0 {
			fmt.Fprintf(out, " (%d tables not created yet: split when created through Privata)",
				len(pl.Pending))
		}
		fmt.Fprintln(out)
	}
	return nil
}

// startDevCluster starts cluster name in dir/name on its remembered port
// when it is free, and creates the database dev uses.
func startDevCluster(ctx context.Context, dir, name string, st *devState) (*devCluster, error) {
	data := filepath.Join(dir, name)
	fresh := false
	if _, err := os.Stat(filepath.Join(data, "PG_VERSION")); errors.Is(err, os.ErrNotExist) {
		fresh = true
	} else if old, err := localpg.Attach(data); err == nil && old.Running() {
		// An earlier privata dev that was killed left it running.
		slog.Info("stopping a cluster an earlier run left running", "cluster", name)
		if err := old.Stop(); err != nil {
			return nil, err
		}
	}
	port := st.Ports[name]
	if port != 0 && !portFree(port) {
		slog.Info("the cluster's earlier port is taken; picking another", "cluster", name,
			"port", port)
		port = 0
	}
	pg, err := localpg.Start(ctx, localpg.Options{Dir: data, Port: port,
		Password: st.SuperPassword})
	if err != nil {
		return nil, fmt.Errorf("cluster %s: %w", name, err)
	}
	st.Ports[name] = pg.Port
	if fresh {
		slog.Info("initialised a cluster", "cluster", name, "dir", data)
	}
	if err := createDatabase(ctx, pg, devDatabase); err != nil {
		pg.Stop()
		return nil, fmt.Errorf("cluster %s: %w", name, err)
	}
	return &devCluster{name: name, pg: pg, fresh: fresh}, nil
}

func portFree(port int) bool {
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// createDatabase creates database db unless it exists.
func createDatabase(ctx context.Context, pg *localpg.Cluster, db string) error {
	conn, err := pgx.Connect(ctx, pg.URL("postgres"))
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(ctx)
	var exists bool
	err = conn.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pg_database WHERE datname = $1)`,
		db).Scan(&exists)
	if err != nil || exists {
		return err
	}
	_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{db}.Sanitize())
	return err
}

// writeConfig writes <data>/privata.yaml, the configuration dev serves,
// and loads it.
func (s *devStack) writeConfig(o devOptions, st *devState) (*config.Config, error) {
	var b strings.Builder
	b.WriteString("# Generated by privata dev at every start; edits are lost.\nclusters:\n")
	for _, name := range s.clusterNames() {
		u := s.clusters[name].pg.URL(devDatabase)
		fmt.Fprintf(&b, "  %s:\n    url: %s\n    fdw: {password: %s}\n", name, yamlQuote(u),
			yamlQuote(st.FDWPassword))
	}
	fmt.Fprintf(&b, "policies: [%s]\n", yamlQuote(s.policyFile))
	fmt.Fprintf(&b, "server:\n  listen: %s\n  metrics_listen: %s\n  region: %s\n"+
		"  two_phase_commit: true\n", yamlQuote(o.listen), yamlQuote(o.metrics),
		yamlQuote(s.pol.DefaultRegion()))
	b.WriteString("auth: {method: trust}\n")
	fmt.Fprintf(&b, "audit:\n  spool_dir: audit-spool\n  hmac_key: %s\n", yamlQuote(st.AuditKey))
	b.WriteString("cache: {backend: memory}\n")
	file := filepath.Join(s.dir, "privata.yaml")
	if err := os.WriteFile(file, []byte(b.String()), 0o600); err != nil {
		return nil, err
	}
	return config.Load(file)
}

// yamlQuote quotes s as a YAML single-quoted scalar.
func yamlQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

func loadDevState(dir string) (*devState, error) {
	st := &devState{Ports: map[string]int{}}
	b, err := os.ReadFile(filepath.Join(dir, "dev.json"))
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, err
	default:
		if err := json.Unmarshal(b, st); err != nil {
			return nil, fmt.Errorf("%s: %w", filepath.Join(dir, "dev.json"), err)
		}
	}
	if st.Ports == nil {
		st.Ports = map[string]int{}
	}
	for _, p := range []*string{&st.SuperPassword, &st.FDWPassword, &st.AuditKey} {
		if *p == "" {
			*p = randomHex(16)
		}
	}
	return st, nil
}

func saveDevState(dir string, st *devState) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "dev.json"), append(b, '\n'), 0o600)
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// stop stops every cluster with pg_ctl (fast mode).
func (s *devStack) stop() error {
	var errs []error
	for _, name := range s.clusterNames() {
		if err := s.clusters[name].pg.Stop(); err != nil {
			errs = append(errs, fmt.Errorf("cluster %s: %w", name, err))
			continue
		}
		slog.Info("cluster stopped", "cluster", name)
	}
	return errors.Join(errs...)
}

// clusterNames returns the names of the stack's clusters, sorted.
func (s *devStack) clusterNames() []string {
	names := make([]string, 0, len(s.clusters))
	for n := range s.clusters {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}
