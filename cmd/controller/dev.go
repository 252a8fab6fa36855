package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/spf13/cobra"

	"github.com/privata/privata/policy"
)

// devOptions are the flags of `privata dev` (and `privata demo`).
type devOptions struct {
	data    string // data directory: one cluster per subdirectory
	policy  string // policy file
	listen  string // the proxy's address for the default region
	metrics string // /metrics address; empty: none
}

func (o *devOptions) flags(c *cobra.Command) {
	c.Flags().StringVar(&o.data, "data", ".privata/dev", "data directory (clusters, audit spool, "+
		"log, generated privata.yaml)")
	c.Flags().StringVarP(&o.policy, "policy", "c", "examples/clinic/policy.yaml", "policy file")
	c.Flags().StringVar(&o.listen, "listen", "127.0.0.1:6432", "address the proxy listens on for "+
		"the policy's default region; each other region gets the next port (port 0: any)")
	c.Flags().StringVar(&o.metrics, "metrics-listen", "", "address of /metrics (default: none)")
}

func init() {
	commands = append(commands, func() *cobra.Command {
		var o devOptions
		c := &cobra.Command{
			Use:   "dev",
			Short: "Run Privata and local clusters for a policy, with no configuration",
			Long: `Dev starts one local PostgreSQL cluster per cluster the policy's regions
name (initdb on first start, under --data; the same data afterwards),
applies the policy to them, and serves: a proxy per region (sessions of
the default region on --listen, each other region on the next port), the
audit consumers and the in-process read cache. Clients authenticate with
trust, as the policy role whose pg_role is their user name; the policy's
roles may create tables in schema public, so that an application's
migrations can run through Privata. Dev writes the configuration it
generated to <data>/privata.yaml, for the other verbs (privata audit
subject -c <data>/privata.yaml KEY), and its log to <data>/privata.log
(warnings and errors also to stderr). Ctrl-C stops everything, clusters
included.`,
			Args: cobra.NoArgs,
			RunE: func(c *cobra.Command, _ []string) error {
				return runDev(c.Context(), o, c.OutOrStdout(), nil)
			},
		}
		o.flags(c)
		return c
	})
}

// runDev starts the dev stack, applies the policy and serves until ctx
// ends, then stops the clusters. serving, when set, runs once every
// region's proxy accepts connections (before runDev says where to
// connect on out); an error from it stops everything.
func runDev(ctx context.Context, o devOptions, out io.Writer,
	serving func(ctx context.Context, s *devStack) error) (err error) {
	closeLog, err := devLogging(o.data)
	if err != nil {
		return err
	}
	defer closeLog()
	s, err := startDevStack(ctx, o)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, s.stop()) }()
	var started []string
	for _, name := range s.clusterNames() {
		how := "reused"
		if s.clusters[name].fresh {
			how = "new"
		}
		started = append(started, fmt.Sprintf("%s (%s)", name, how))
	}
	fmt.Fprintf(out, "Clusters under %s: %s\n", s.rel(s.dir), strings.Join(started, ", "))
	if err := s.apply(ctx, out, ""); err != nil {
		return err
	}
	return s.serve(ctx, func(ctx context.Context) error {
		if serving != nil {
			if err := serving(ctx, s); err != nil {
				return err
			}
		}
		s.describe(out)
		return nil
	})
}

// serve runs a proxy per region (runServer) until ctx ends or one of them
// fails. Once all accept connections, ready runs; an error from it stops
// everything and is returned.
func (s *devStack) serve(ctx context.Context, ready func(context.Context) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var listening sync.WaitGroup
	listening.Add(len(s.endpoints))
	stopped := make(chan error, len(s.endpoints))
	for _, e := range s.endpoints {
		go func() {
			stopped <- runServer(ctx, e.cfg, s.pol, func(addr string) {
				e.addr = addr
				listening.Done()
			})
		}()
	}
	errReady := errors.New("ready hook failed")
	var readyErr error
	hookDone := make(chan struct{})
	go func() {
		defer close(hookDone)
		all := make(chan struct{})
		go func() { listening.Wait(); close(all) }()
		select {
		case <-ctx.Done():
			return
		case <-all:
		}
		if readyErr = ready(ctx); readyErr != nil {
			cancel(errReady)
		}
	}()
	var errs []error
	for range s.endpoints {
		// One proxy stopping (an error, or ctx) stops the others.
		err := <-stopped
		cancel(nil)
		if err != nil {
			errs = append(errs, err)
		}
	}
	<-hookDone
	if context.Cause(ctx) == errReady {
		errs = append(errs, readyErr)
	}
	return errors.Join(errs...)
}

// describe says where to connect and what runs where.
func (s *devStack) describe(out io.Writer) {
	var roles []string
	for _, r := range s.pol.Roles {
		roles = append(roles, r.PGRole)
	}
	fmt.Fprintf(out, "\nPrivata is serving. Connect as a policy role (%s), no password:\n",
		strings.Join(roles, ", "))
	for _, e := range s.endpoints {
		c := s.clusters[s.pol.Region(e.region).Cluster]
		fmt.Fprintf(out, "  region %-4s psql '%s'\n", e.region, s.URL(e.region, roles[0]))
		fmt.Fprintf(out, "              PostgreSQL 127.0.0.1:%d, data %s\n", c.pg.Port,
			s.rel(c.pg.Dir))
	}
	fmt.Fprintf(out, "  configuration %s, log %s\n", s.rel(s.cfg.File),
		s.rel(filepath.Join(s.dir, devLogFile)))
	fmt.Fprintf(out, "  audit: privata audit subject -c %s <patient id>\n", s.rel(s.cfg.File))
	fmt.Fprintln(out, "Ctrl-C stops Privata and the clusters.")
}

// URL is the Postgres URL a client of region connects to Privata with, as
// user.
func (s *devStack) URL(region, user string) string {
	for _, e := range s.endpoints {
		if e.region == region {
			return fmt.Sprintf("postgres://%s@%s/%s?sslmode=disable", user, e.addr, devDatabase)
		}
	}
	return ""
}

// rel shows path relative to the working directory when it is below it.
func (s *devStack) rel(path string) string {
	wd, err := os.Getwd()
	if err != nil {
		return path
	}
	if r, err := filepath.Rel(wd, path); err == nil && !strings.HasPrefix(r, "..") {
		return r
	}
	return path
}

// devLogFile is the log of privata dev, in its data directory.
const devLogFile = "privata.log"

// devLogging sends the log to <data>/privata.log at the --log-level, and
// warnings and errors also to stderr: the terminal shows what dev prints
// for people, not the server's lifecycle.
func devLogging(data string) (func(), error) {
	if err := os.MkdirAll(data, 0o755); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(data, devLogFile), os.O_CREATE|os.O_WRONLY|os.O_APPEND,
		0o600)
	if err != nil {
		return nil, fmt.Errorf("log: %w", err)
	}
	prev := slog.Default()
	level := slog.LevelInfo
	for l := slog.LevelDebug; l <= slog.LevelError; l += 4 {
		if prev.Enabled(context.Background(), l) {
			level = l
			break
		}
	}
	slog.SetDefault(slog.New(slog.NewMultiHandler(
		slog.NewTextHandler(f, &slog.HandlerOptions{Level: level}),
		slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: max(level, slog.LevelWarn)}),
	)))
	return func() {
		slog.SetDefault(prev)
		f.Close()
	}, nil
}

// loadDevPolicy reads the policy and checks that dev can run it: every
// region in one cluster.
func loadDevPolicy(file string) (*policy.Policy, error) {
	p, err := policy.Load(file)
	if err != nil {
		return nil, err
	}
	for _, r := range p.Regions {
		if r.Cluster == "" {
			return nil, policy.ErrorList{{Pos: r.Pos, Msg: fmt.Sprintf("region %s keeps identity and "+
				"clinical data in different clusters; privata dev does not support that yet", r.Name),
				Hint: "give the region one cluster"}}
		}
	}
	return p, nil
}
