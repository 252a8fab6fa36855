package main

import (
	"fmt"
	"log/slog"

	"github.com/spf13/cobra"

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
		return c
	})
}

func runApply(c *cobra.Command, _ []string) error {
	ctx := c.Context()
	p, targets, err := loadTargets(c)
	if err != nil {
		return err
	}
	out := c.OutOrStdout()
	for i, t := range targets {
		conn, err := connect(ctx, t, "privata apply")
		if err != nil {
			return fmt.Errorf("cluster %s: %w%s", t.Name, err, untouched(targets[i+1:]))
		}
		slog.Info("apply", "cluster", t.Name, "regions", t.Regions)
		pl, err := storage.Apply(ctx, conn, p, t)
		conn.Close(ctx)
		if err != nil {
			return fmt.Errorf("cluster %s: nothing was changed there: %w%s", t.Name, err,
				untouched(targets[i+1:]))
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
