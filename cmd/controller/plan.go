package main

import (
	"fmt"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/privata/privata/fdw"
	"github.com/privata/privata/policy"
	"github.com/privata/privata/storage"
)

func init() {
	commands = append(commands, func() *cobra.Command {
		c := &cobra.Command{
			Use:   "plan",
			Short: "Print, per cluster, the SQL that applying the policy would run",
			Long: `Plan connects to every cluster of the configuration, checks the policy
against its catalog and prints the SQL that apply would run there, commented
for review. It changes nothing: it works in a transaction that it rolls back.`,
			Args: cobra.NoArgs,
			RunE: runPlan,
		}
		configFlag(c)
		allowMissingFlag(c)
		return c
	})
}

func runPlan(c *cobra.Command, _ []string) error {
	p, targets, topo, err := loadTargets(c)
	if err != nil {
		return err
	}
	failed := 0
	for _, t := range targets {
		slog.Info("plan", "cluster", t.Name, "regions", t.Regions)
		if err := planOne(c, p, t, topo); err != nil {
			fmt.Fprintf(c.ErrOrStderr(), "privata: cluster %s: %v\n", t.Name, err)
			failed++
		}
	}
	if failed > 0 {
		return fmt.Errorf("plan failed on %d of %d clusters", failed, len(targets))
	}
	return nil
}

// planOne prints the plan of one cluster: the split storage's steps, with
// the cross-region part (package fdw) around them.
func planOne(c *cobra.Command, p *policy.Policy, t storage.Target, topo *fdw.Topology) error {
	ctx := c.Context()
	conn, err := connect(ctx, t, "privata plan")
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	pl, err := storage.Preview(ctx, conn, p, t, storageOptions(c)...)
	if err != nil {
		return err
	}
	fp, err := fdw.Preview(ctx, conn, fdw.Input{Topology: topo, Target: t.Name,
		SplitChanges: len(pl.Steps) > 0})
	if err != nil {
		return err
	}
	pl.Steps = append(append(fdwSteps(fp.Before), pl.Steps...), fdwSteps(fp.After)...)
	fmt.Fprintln(c.OutOrStdout(), pl.SQL())
	return nil
}
