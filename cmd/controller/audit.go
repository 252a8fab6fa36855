package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/spf13/cobra"

	"github.com/privata/privata/audit"
	"github.com/privata/privata/config"
	"github.com/privata/privata/policy"
	"github.com/privata/privata/sql"
)

func init() {
	commands = append(commands, auditCommand)
}

func auditCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use: "audit",
		Short: "Verify the audit trail, account for a subject's disclosures, " +
			"run the change consumers",
	}
	cmd.AddCommand(auditVerifyCommand(), auditSubjectCommand(), auditConsumeCommand(),
		auditInstallCommand())
	return cmd
}

// loadConfig reads the file -c names.
func loadConfig(cmd *cobra.Command) (*config.Config, error) {
	file, _ := cmd.Flags().GetString("config")
	return config.Load(file)
}

func auditVerifyCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use: "verify",
		Short: "Recompute every hash chain of every audit store; " +
			"exit 1 naming the first bad record",
		Args: cobra.NoArgs,
	}
	configFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		cfg, err := loadConfig(cmd)
		if err != nil {
			return err
		}
		stores, err := openStores(cmd.Context(), cfg)
		if err != nil {
			return err
		}
		defer closeStores(stores)
		return verifyStores(cmd.Context(), cmd.OutOrStdout(), stores, []byte(cfg.Audit.HMACKey))
	}
	return cmd
}

func verifyStores(ctx context.Context, out io.Writer, stores []*audit.Store, key []byte) error {
	chains, bad := 0, 0
	for _, s := range stores {
		reps, err := s.Verify(ctx, key)
		if err != nil {
			return err
		}
		for _, r := range reps {
			chains++
			if r.OK() {
				fmt.Fprintf(out, "ok    store %s, chain %s: %d records\n", s.Name, r.Chain,
					r.Records)
				continue
			}
			bad++
			fmt.Fprintf(out, "FAIL  store %s, chain %s: %s at seq %d: %s\n", s.Name, r.Chain,
				r.Problem.Kind, r.Problem.Seq, r.Problem.Detail)
		}
	}
	if bad > 0 {
		fmt.Fprintf(out, "%d of %d chains failed verification\n", bad, chains)
		return exitCode(1)
	}
	fmt.Fprintf(out, "all %d chains verified\n", chains)
	return nil
}

func auditSubjectCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "subject KEY",
		Short: "Print the accounting of disclosures of one data subject",
		Long: "subject finds the subject's pseudonym through the identity table of the policy's " +
			"subject table, in whichever cluster holds it, and lists from every audit store " +
			"the reads that returned the subject's data and the changes made to it.",
		Args: cobra.ExactArgs(1),
	}
	configFlag(cmd)
	table := cmd.Flags().String("table", "", "the subject table (default: the policy's only one)")
	byPseudonym := cmd.Flags().Bool("pseudonym", false,
		"KEY is the pseudonym itself (for a subject whose identity was erased)")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		cfg, err := loadConfig(cmd)
		if err != nil {
			return err
		}
		ctx := cmd.Context()
		var subject audit.Pseudonym
		var where, what string
		if *byPseudonym {
			if subject, err = audit.ParsePseudonym(args[0]); err != nil {
				return err
			}
			what = "pseudonym " + subject.String()
		} else {
			pol, err := policy.Load(cfg.Policies...)
			if err != nil {
				return err
			}
			t, err := subjectTable(pol, *table)
			if err != nil {
				return err
			}
			subject, where, err = resolveSubject(ctx, cfg, pol, t, args[0])
			if err != nil {
				return err
			}
			what = fmt.Sprintf("%s %s = %s (pseudonym %s, identity in cluster %s)",
				t.QualifiedName(), t.Key, args[0], subject, where)
		}
		stores, err := openStores(ctx, cfg)
		if err != nil {
			return err
		}
		defer closeStores(stores)
		var all []audit.Disclosure
		for _, s := range stores {
			d, err := s.Disclosures(ctx, subject)
			if err != nil {
				return err
			}
			all = append(all, d...)
		}
		sort.SliceStable(all, func(i, j int) bool { return all[i].At.Before(all[j].At) })
		printDisclosures(cmd.OutOrStdout(), what, all)
		return nil
	}
	return cmd
}

// subjectTable picks the subject table named, or the policy's only one.
func subjectTable(p *policy.Policy, name string) (*policy.Table, error) {
	subjects := p.Subjects()
	var names []string
	for _, t := range subjects {
		if name == "" && len(subjects) == 1 || name == t.Name || name == t.QualifiedName() {
			return t, nil
		}
		names = append(names, t.QualifiedName())
	}
	if name == "" {
		return nil, fmt.Errorf("the policy has several subject tables (%s): "+
			"choose one with --table", strings.Join(names, ", "))
	}
	return nil, fmt.Errorf("%s is not a subject table of the policy (subject tables: %s)", name,
		strings.Join(names, ", "))
}

// resolveSubject looks the key up in the identity table of t on every
// cluster that holds identity data, and returns the pseudonym and the
// cluster that holds it.
func resolveSubject(ctx context.Context, cfg *config.Config, p *policy.Policy, t *policy.Table,
	key string) (audit.Pseudonym, string, error) {
	var clusters []string
	for _, r := range p.Regions {
		if c := r.ClusterFor(policy.Identity); !slices.Contains(clusters, c) {
			clusters = append(clusters, c)
		}
	}
	if len(clusters) == 0 {
		clusters = cfg.ClusterNames()
	}
	sort.Strings(clusters)
	q := fmt.Sprintf("SELECT privata_pseudonym FROM %s WHERE %s = $1",
		pgx.Identifier{"privata_identity", t.Name}.Sanitize(), pgx.Identifier{t.Key}.Sanitize())
	for _, name := range clusters {
		cl := cfg.Clusters[name]
		if cl == nil {
			return audit.Pseudonym{}, "", fmt.Errorf("the policy names cluster %s, which the "+
				"configuration does not have", name)
		}
		conn, err := pgx.Connect(ctx, string(cl.URL))
		if err != nil {
			return audit.Pseudonym{}, "", fmt.Errorf("cluster %s: %w", name, err)
		}
		var found audit.Pseudonym
		err = conn.QueryRow(ctx, q, key).Scan(&found)
		conn.Close(ctx)
		var pgErr *pgconn.PgError
		switch {
		case err == nil:
			return found, name, nil
		case errors.Is(err, pgx.ErrNoRows):
			continue
		case errors.As(err, &pgErr) && pgErr.Code == "42P01": // undefined_table
			return audit.Pseudonym{}, "", fmt.Errorf("cluster %s has no table "+
				"privata_identity.%s: apply the policy first (privata apply)", name, t.Name)
		case errors.As(err, &pgErr) && strings.HasPrefix(pgErr.Code, "22"): // data exception
			return audit.Pseudonym{}, "", fmt.Errorf("the key is not a valid value of "+
				"%s.%s (SQLSTATE %s)", t.QualifiedName(), t.Key, pgErr.Code)
		default:
			return audit.Pseudonym{}, "", fmt.Errorf("cluster %s: look up the subject: %w",
				name, err)
		}
	}
	return audit.Pseudonym{}, "", fmt.Errorf("no subject of %s has that key on cluster(s) %s; "+
		"a subject whose identity was erased can still be looked up with --pseudonym",
		t.QualifiedName(), strings.Join(clusters, ", "))
}

func printDisclosures(out io.Writer, what string, all []audit.Disclosure) {
	reads, changes := 0, 0
	for _, d := range all {
		if d.Kind == "read" {
			reads++
		} else {
			changes++
		}
	}
	fmt.Fprintf(out, "Accounting of disclosures for %s\n", what)
	fmt.Fprintf(out, "%d reads returned this subject's data; %d changes were made to it.\n\n",
		reads, changes)
	if len(all) == 0 {
		return
	}
	tw := tabwriter.NewWriter(out, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "WHEN (UTC)\tKIND\tACTION\tACTOR\tROLE\tPURPOSE\tAPPLICATION\tCLIENT\tDATA")
	for _, d := range all {
		action := d.Action
		if d.BreakGlass {
			action += " (break-glass)"
		}
		data := strings.Join(d.Columns, ", ")
		if data == "" {
			data = strings.Join(d.Tables, ", ")
		}
		if d.Kind == "change" {
			data = strings.Join(d.Tables, ", ") + ": " + data
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			d.At.UTC().Format("2006-01-02 15:04:05"), d.Kind, action, dash(d.Actor), dash(d.Role),
			dash(d.Purpose), dash(d.Application), dash(d.ClientAddr), data)
	}
	tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func auditInstallCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "install",
		Short: "Install the audit store (privata_audit) into the audit database or every cluster",
		Long: "install installs Privata's SQL (the audit store among it) where audit records " +
			"are kept, and creates each cluster's replication slot, so that changes are " +
			"captured from now on even before a consumer first runs.",
		Args: cobra.NoArgs,
	}
	configFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		cfg, err := loadConfig(cmd)
		if err != nil {
			return err
		}
		for _, t := range storeTargets(cfg) {
			changed, err := installSQL(cmd.Context(), t.url)
			if err != nil {
				return fmt.Errorf("install into %s: %w", t.name, err)
			}
			state := "already installed"
			if changed {
				state = "installed"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %s\n", t.name, state)
		}
		for _, name := range cfg.ClusterNames() {
			created, err := createSlot(cmd.Context(), string(cfg.Clusters[name].URL),
				cfg.Audit.Slot)
			if err != nil {
				return fmt.Errorf("cluster %s: %w", name, err)
			}
			state := "exists"
			if created {
				state = "created"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: replication slot %s %s\n", name,
				cfg.Audit.Slot, state)
		}
		return nil
	}
	return cmd
}

// createSlot creates the change consumer's slot unless it exists.
func createSlot(ctx context.Context, url, slot string) (bool, error) {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return false, err
	}
	defer conn.Close(ctx)
	tag, err := conn.Exec(ctx, `SELECT pg_create_logical_replication_slot($1, 'pgoutput')
		WHERE NOT EXISTS (SELECT FROM pg_replication_slots WHERE slot_name = $1)`, slot)
	if err != nil {
		return false, fmt.Errorf("create replication slot %s: %w", slot, err)
	}
	return tag.RowsAffected() == 1, nil
}

// installSQL installs the embedded SQL under the advisory lock.
func installSQL(ctx context.Context, url string) (bool, error) {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return false, err
	}
	defer conn.Close(ctx)
	tx, err := conn.Begin(ctx)
	if err != nil {
		return false, err
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", sql.LockKey); err != nil {
		return false, err
	}
	changed, err := sql.Install(ctx, tx)
	if err != nil {
		return false, err
	}
	return changed, tx.Commit(ctx)
}

type storeTarget struct{ name, url string }

// storeTargets are the audit stores of the configuration: the separate
// audit database, or every cluster's own.
func storeTargets(cfg *config.Config) []storeTarget {
	if cfg.Audit.URL != "" {
		return []storeTarget{{"audit", string(cfg.Audit.URL)}}
	}
	var out []storeTarget
	for _, name := range cfg.ClusterNames() {
		out = append(out, storeTarget{name, string(cfg.Clusters[name].URL)})
	}
	return out
}

func openStores(ctx context.Context, cfg *config.Config) ([]*audit.Store, error) {
	var out []*audit.Store
	for _, t := range storeTargets(cfg) {
		s, err := audit.Open(ctx, t.name, t.url)
		if err != nil {
			closeStores(out)
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

func closeStores(stores []*audit.Store) {
	for _, s := range stores {
		s.Close()
	}
}

func storeNamed(stores []*audit.Store, name string) *audit.Store {
	for _, s := range stores {
		if s.Name == name {
			return s
		}
	}
	return nil
}

func openSink(cfg *config.Config) (*audit.Sink, error) {
	if cfg.Audit.Sink == "" {
		return nil, nil
	}
	return audit.OpenSink(cfg.Audit.Sink)
}
