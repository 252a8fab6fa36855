package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/privata/privata/policy"
	"github.com/privata/privata/storage"
)

// devOptions are the flags of `privata dev` (and `privata demo`).
type devOptions struct {
	data    string // data directory: one cluster per subdirectory
	policy  string // policy file
	listen  string // the proxy's address
	metrics string // /metrics address; empty: none
}

func (o *devOptions) flags(c *cobra.Command) {
	c.Flags().StringVar(&o.data, "data", ".privata/dev", "data directory (clusters, audit spool, "+
		"generated privata.yaml)")
	c.Flags().StringVar(&o.policy, "policy", "examples/clinic/policy.yaml", "policy file")
	c.Flags().StringVar(&o.listen, "listen", "127.0.0.1:6432", "address the proxy listens on")
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
applies the policy to them, and serves: the proxy, the audit consumers and
the in-process read cache. Clients authenticate with trust, as the policy
role whose pg_role is their user name. It writes the configuration it
generated to <data>/privata.yaml, for the other verbs (privata audit
subject -c <data>/privata.yaml KEY). Ctrl-C stops everything, clusters
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
// ends, then stops the clusters. serving, when set, runs once the proxy
// accepts connections (before runDev says so on out); an error from it
// stops everything.
func runDev(ctx context.Context, o devOptions, out io.Writer,
	serving func(ctx context.Context, s *devStack) error) (err error) {
	s, err := startDevStack(ctx, o)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, s.stop()) }()
	fmt.Fprintf(out, "Applying %s:\n", s.policyFile)
	targets, topo, err := targetsOf(s.cfg, s.pol)
	if err != nil {
		return err
	}
	if err := applyAll(ctx, indent(out), s.pol, targets, topo, storage.AllowMissing()); err != nil {
		return err
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	errServing := errors.New("serving hook failed")
	var hookErr error
	err = runServer(ctx, s.cfg, s.pol, func(addr string) {
		s.addr = addr
		go func() {
			if serving != nil {
				if hookErr = serving(ctx, s); hookErr != nil {
					cancel(errServing)
					return
				}
			}
			s.describe(out)
		}()
	})
	if errors.Is(context.Cause(ctx), errServing) {
		return hookErr
	}
	return err
}

// describe says where to connect and what runs where.
func (s *devStack) describe(out io.Writer) {
	var roles []string
	for _, r := range s.pol.Roles {
		roles = append(roles, r.PGRole)
	}
	fmt.Fprintf(out, "\nPrivata is serving on %s (user: a policy role: %s; no password).\n",
		s.addr, strings.Join(roles, ", "))
	fmt.Fprintf(out, "  url: %s\n", s.URL(roles[0]))
	fmt.Fprintf(out, "  psql '%s'\n", s.URL(roles[0]))
	for _, r := range s.pol.Regions {
		c := s.clusters[r.Cluster]
		fmt.Fprintf(out, "  region %s: cluster %s, PostgreSQL 127.0.0.1:%d, data %s\n", r.Name,
			r.Cluster, c.pg.Port, s.rel(c.pg.Dir))
	}
	fmt.Fprintf(out, "  configuration: %s (privata audit subject -c %s KEY)\n",
		s.rel(s.cfg.File), s.rel(s.cfg.File))
	fmt.Fprintln(out, "Ctrl-C stops Privata and the clusters.")
}

// URL is the Postgres URL a client connects to Privata with, as user.
func (s *devStack) URL(user string) string {
	return fmt.Sprintf("postgres://%s@%s/%s?sslmode=disable", user, s.addr, devDatabase)
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

// indent writes each line to w with two spaces in front.
func indent(w io.Writer) io.Writer { return &indenter{w: w, bol: true} }

type indenter struct {
	w   io.Writer
	bol bool
}

func (i *indenter) Write(p []byte) (int, error) {
	var b strings.Builder
	for _, c := range string(p) {
		if i.bol {
			b.WriteString("  ")
		}
		b.WriteRune(c)
		i.bol = c == '\n'
	}
	if _, err := io.WriteString(i.w, b.String()); err != nil {
		return 0, err
	}
	return len(p), nil
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
