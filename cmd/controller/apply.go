package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"

	"github.com/privata/privata/fdw"
	"github.com/privata/privata/policy"
	"github.com/privata/privata/storage"
)

func init() {
	commands = append(commands, func() *cobra.Command {
		c := &cobra.Command{
			Use:   "apply",
			Short: "Apply the policy to every cluster: split storage, views, grants",
			Long: `Apply runs, on every cluster of the configuration, the SQL that plan prints:
per cluster in one transaction under Privata's advisory lock, planned again
inside the lock. Plain tables the policy classifies are converted in place.
A cluster that already matches the policy is left as it is ("nothing to do").
Apply stops at the first cluster that fails; that cluster is left as it was.`,
			Args: cobra.NoArgs,
			RunE: runApply,
		}
		configFlag(c)
		allowMissingFlag(c)
		return c
	})
}

func runApply(c *cobra.Command, _ []string) error {
	p, targets, topo, err := loadTargets(c)
	if err != nil {
		return err
	}
	return applyAll(c.Context(), c.OutOrStdout(), p, targets, topo, storageOptions(c)...)
}

// applyAll applies the policy to every target in turn, saying on out what
// it did to each; it stops at the first that fails.
func applyAll(ctx context.Context, out io.Writer, p *policy.Policy, targets []storage.Target,
	topo *fdw.Topology, opts ...storage.Option) error {
	for i, t := range targets {
		conn, err := connect(ctx, t, "privata apply")
		if err != nil {
			return fmt.Errorf("cluster %s: %w%s", t.Name, err, untouched(targets[i+1:]))
		}
		slog.Info("apply", "cluster", t.Name, "regions", t.Regions)
		pl, err := applyOne(ctx, conn, p, t, topo, opts...)
		conn.Close(ctx)
		if err != nil {
			return fmt.Errorf("cluster %s: nothing was changed there: %w%s", t.Name, err,
				untouched(targets[i+1:]))
		}
		for _, name := range pl.Pending {
			fmt.Fprintf(out, "cluster %s: %s does not exist yet; it will be split when created "+
				"through Privata\n", t.Name, name)
		}
		if len(pl.Pending) > 0 {
			fmt.Fprintf(out, "cluster %s: cross-region views wait until every classified table "+
				"exists (apply again then)\n", t.Name)
		}
		if pl.Empty() {
			fmt.Fprintf(out, "cluster %s: nothing to do\n", t.Name)
			continue
		}
		slog.Info("applied", "cluster", t.Name, "steps", len(pl.Steps), "installed_sql", pl.Install)
		fmt.Fprintf(out, "cluster %s: applied %d steps\n", t.Name, len(pl.Steps))
	}
	return nil
}

// applyOne applies the policy to one cluster in one transaction: the
// cross-region part (package fdw) around the split storage's steps. It
// returns the plan it ran.
func applyOne(ctx context.Context, conn *pgx.Conn, p *policy.Policy, t storage.Target,
	topo *fdw.Topology, opts ...storage.Option) (*storage.Plan, error) {
	// Whether the split storage changes anything decides whether the
	// views over its tables are rebuilt; apply plans it again under the
	// lock.
	preview, err := storage.Preview(ctx, conn, p, t, opts...)
	if err != nil {
		return nil, err
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback(context.Background())
	// The cross-region objects cover every table the policy classifies;
	// while one does not exist yet (AllowMissing), they wait for an apply
	// after it has been created.
	fp := &fdw.Plan{}
	if len(preview.Pending) == 0 {
		fp, err = fdw.PlanTx(ctx, tx, fdw.Input{Topology: topo, Target: t.Name,
			SplitChanges: len(preview.Steps) > 0})
		if err != nil {
			return nil, err
		}
	}
	if err := fdw.Run(ctx, tx, fp.Before); err != nil {
		return nil, err
	}
	pl, err := storage.ApplyTx(ctx, tx, p, t, opts...)
	if err != nil {
		return nil, err
	}
	if err := fdw.Run(ctx, tx, fp.After); err != nil {
		return nil, err
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("commit: %w", err)
	}
	pl.Steps = append(append(fdwSteps(fp.Before), pl.Steps...), fdwSteps(fp.After)...)
	return pl, nil
}

// untouched names the clusters apply did not get to.
func untouched(rest []storage.Target) string {
	if len(rest) == 0 {
		return ""
	}
	names := ""
	for i, t := range rest {
		if i > 0 {
			names += ", "
		}
		names += t.Name
	}
	return "\n(not applied to: " + names + ")"
}
