package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"

	"github.com/privata/privata/config"
	"github.com/privata/privata/fdw"
	"github.com/privata/privata/policy"
	"github.com/privata/privata/storage"
)

// The helpers below are shared by the verbs that work on every cluster of
// a configuration (plan, apply).

// configFlag adds -c/--config.
func configFlag(c *cobra.Command) {
	c.Flags().StringP("config", "c", "privata.yaml", "configuration file (privata.yaml)")
}

// allowMissingFlag adds --allow-missing to plan and apply.
func allowMissingFlag(c *cobra.Command) {
	c.Flags().Bool("allow-missing", false, "tables the policy classifies that do not exist yet "+
		"are pending (split when created through Privata) instead of an error")
}

// allowMissing reports whether the command has --allow-missing.
func allowMissing(c *cobra.Command) bool {
	ok, _ := c.Flags().GetBool("allow-missing")
	return ok
}

// storageOptions are the storage options the command's flags ask for.
func storageOptions(c *cobra.Command) []storage.Option {
	if allowMissing(c) {
		return []storage.Option{storage.AllowMissing()}
	}
	return nil
}

// loadTargets reads the configuration and its policies, and resolves the
// databases to work on and how they reach each other.
func loadTargets(c *cobra.Command) (*policy.Policy, []storage.Target, *fdw.Topology, error) {
	file, _ := c.Flags().GetString("config")
	cfg, err := config.Load(file)
	if err != nil {
		return nil, nil, nil, err
	}
	p, err := policy.Load(cfg.Policies...)
	if err != nil {
		return nil, nil, nil, err
	}
	targets, topo, err := targetsOf(cfg, p)
	return p, targets, topo, err
}

// targetsOf resolves the databases a configuration's policy is applied
// to and how they reach each other.
func targetsOf(cfg *config.Config, p *policy.Policy) ([]storage.Target, *fdw.Topology, error) {
	targets, err := storage.Targets(cfg, p)
	if err != nil {
		return nil, nil, err
	}
	for _, r := range p.Regions {
		if r.Cluster == "" {
			// TODO(#6): split storage across an identity cluster and a
			// clinical cluster (storage, routing and fdw all assume one).
			return nil, nil, policy.ErrorList{{Pos: r.Pos, Msg: fmt.Sprintf("region %s keeps "+
				"identity and clinical data in different clusters; Privata does not support "+
				"that yet", r.Name), Hint: "give the region one cluster"}}
		}
	}
	topo, err := fdw.NewTopology(cfg, p, targets)
	if err != nil {
		return nil, nil, err
	}
	return targets, topo, nil
}

// fdwSteps turns the cross-region part of a plan into steps of the split
// storage's plan, for printing: secrets show as fdw.Placeholder.
func fdwSteps(steps []fdw.Step) []storage.Step {
	out := make([]storage.Step, len(steps))
	for i, s := range steps {
		out[i] = storage.Step{Comment: s.Comment, SQL: s.SQL}
	}
	return out
}

// connectTimeout bounds how long a verb waits for a cluster that does not
// answer.
const connectTimeout = 10 * time.Second

// connect opens Privata's connection to a target. Errors never show its
// URL, which may hold a password; callers name the cluster.
func connect(ctx context.Context, t storage.Target, app string) (*pgx.Conn, error) {
	cc, err := pgx.ParseConfig(t.URL)
	if err != nil {
		return nil, fmt.Errorf("its url cannot be parsed")
	}
	if cc.ConnectTimeout == 0 || cc.ConnectTimeout > connectTimeout {
		cc.ConnectTimeout = connectTimeout
	}
	cc.RuntimeParams["application_name"] = app
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		msg := err.Error()
		if cc.Password != "" {
			msg = strings.ReplaceAll(msg, cc.Password, "********")
		}
		return nil, fmt.Errorf("cannot connect: %s", msg)
	}
	return conn, nil
}
