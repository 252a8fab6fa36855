package main

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"
)

// The demo is privata dev with an application in front: once the proxies
// listen, a client of Privata (pgx over the printed Postgres URLs, as a
// policy role, nothing in-process) runs the example's migrations through
// each region's proxy and loads the Synthea sets through the default
// region's; then the tour reads what happened, through Privata where an
// application would and from the clusters directly where it shows what
// they physically hold. demoapp.go is the application, demotour.go the
// tour.

// demoOptions are the flags of `privata demo`.
type demoOptions struct {
	dev devOptions
	// example holds migrations/*.sql and data/<set>/*.csv; default: the
	// policy file's directory.
	example string
}

func init() {
	commands = append(commands, func() *cobra.Command {
		var o demoOptions
		c := &cobra.Command{
			Use:   "demo",
			Short: "Run privata dev with the clinic example loaded, and show what Privata did",
			Long: `Demo runs privata dev (same flags) for the clinic example, then acts as its
application: it runs examples/clinic/migrations through Privata in every
region (tracked in schema_migrations, so that a second run applies only
new ones), and inserts both Synthea sets (data/us, data/se) through the
default region's proxy with multi-row INSERTs; residency sends Swedish
patients to the EU cluster. A set already loaded is not loaded again.
Then it prints a short tour and serves until Ctrl-C.`,
			Args: cobra.NoArgs,
			RunE: func(c *cobra.Command, _ []string) error {
				return runDemo(c.Context(), o, c.OutOrStdout())
			},
		}
		o.dev.flags(c)
		c.Flags().StringVar(&o.example, "example", "", "directory with migrations/ and data/ "+
			"(default: the policy file's)")
		return c
	})
}

func runDemo(ctx context.Context, o demoOptions, out io.Writer) error {
	if o.example == "" {
		o.example = filepath.Dir(o.dev.policy)
	}
	for _, sub := range []string{"migrations", "data"} {
		if _, err := os.Stat(filepath.Join(o.example, sub)); err != nil {
			return fmt.Errorf("--example: %w", err)
		}
	}
	return runDev(ctx, o.dev, out, func(ctx context.Context, s *devStack) error {
		return demo(ctx, s, o.example, out)
	})
}

// demo runs the application's part and the tour.
func demo(ctx context.Context, s *devStack, example string, out io.Writer) error {
	fmt.Fprintf(out, "\nThe application: migrations and Synthea data of %s, through Privata\n",
		s.rel(example))
	created := false
	for _, e := range s.endpoints {
		conn, err := s.connect(ctx, e.region, "clinician", "treatment")
		if err != nil {
			return err
		}
		applied, total, err := migrate(ctx, conn, filepath.Join(example, "migrations"))
		conn.Close(ctx)
		if err != nil {
			return fmt.Errorf("region %s: migrations: %w", e.region, err)
		}
		created = created || applied > 0
		fmt.Fprintf(out, "  region %-4s %2d of %d migrations applied now (%d before)\n", e.region,
			applied, total, total-applied)
	}
	if created {
		// The cross-region views cover the tables just created.
		if err := s.apply(ctx, out, "  "); err != nil {
			return err
		}
	}
	conn, err := s.connect(ctx, s.endpoints[0].region, "clinician", "treatment")
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	for _, set := range []string{"us", "se"} {
		n, err := loadSet(ctx, conn, set, filepath.Join(example, "data", set))
		if err != nil {
			return fmt.Errorf("load %s: %w", set, err)
		}
		if n.rows == 0 {
			fmt.Fprintf(out, "  data/%-4s already loaded\n", set)
			continue
		}
		fmt.Fprintf(out, "  data/%-4s %d patients and %d other rows inserted in %d statements\n",
			set, n.patients, n.rows-n.patients, n.statements)
	}
	return tour(ctx, s, example, out)
}

// connect connects through the proxy of region as user, for purpose, with
// actor "demo" (the audit trail's actor).
func (s *devStack) connect(ctx context.Context, region, user, purpose string) (*pgx.Conn, error) {
	options := "-c privata.actor=demo"
	if purpose != "" {
		options += " -c privata.purpose=" + purpose
	}
	u := s.URL(region, user) + "&application_name=clinic-demo&options=" +
		strings.ReplaceAll(url.QueryEscape(options), "+", "%20")
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		return nil, fmt.Errorf("connect to Privata (region %s, as %s): %w", region, user, err)
	}
	return conn, nil
}
