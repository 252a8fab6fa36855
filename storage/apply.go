package storage

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/privata/privata/config"
	"github.com/privata/privata/policy"
	privatasql "github.com/privata/privata/sql"
)

// Target is one database that plan and apply work on: a cluster of
// privata.yaml and the home regions it serves.
type Target struct {
	// Name is the cluster's name in privata.yaml. Clusters whose URLs name
	// the same database are one target, named "a+b".
	Name string
	// URL is Privata's connection to the cluster. It may hold a password:
	// never print it.
	URL string
	// Session is the user of the cluster's session_url, or "".
	Session string
	// Regions are the home regions whose subjects the cluster stores.
	Regions []string
}

// Targets resolves the policy's regions to the configuration's clusters.
func Targets(cfg *config.Config, p *policy.Policy) ([]Target, error) {
	var errs policy.ErrorList
	byDB := map[string]*Target{}
	var order []string
	for _, r := range p.Regions {
		if r.Cluster == "" {
			continue // refused by plan with the region's position
		}
		cl := cfg.Clusters[r.Cluster]
		if cl == nil {
			errs = append(errs, &policy.Error{Pos: r.Pos,
				Msg:  fmt.Sprintf("region %s names cluster %s, which %s does not define", r.Name, r.Cluster, cfg.File),
				Hint: "clusters are: " + strings.Join(cfg.ClusterNames(), ", ")})
			continue
		}
		cc, err := pgconn.ParseConfig(string(cl.URL))
		if err != nil {
			return nil, fmt.Errorf("cluster %s: url cannot be parsed: %v", r.Cluster, innermost(err))
		}
		db := fmt.Sprintf("%s:%d/%s", cc.Host, cc.Port, cc.Database)
		t := byDB[db]
		if t == nil {
			t = &Target{URL: string(cl.URL)}
			byDB[db] = t
			order = append(order, db)
		}
		if !slices.Contains(strings.Split(t.Name, "+"), r.Cluster) {
			if t.Name != "" {
				t.Name += "+"
			}
			t.Name += r.Cluster
		}
		t.Regions = append(t.Regions, r.Name)
		if cl.SessionURL != "" {
			sc, err := pgconn.ParseConfig(string(cl.SessionURL))
			if err != nil {
				return nil, fmt.Errorf("cluster %s: session_url cannot be parsed: %v", r.Cluster, innermost(err))
			}
			t.Session = sc.User
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	out := make([]Target, 0, len(order))
	for _, db := range order {
		t := byDB[db]
		slices.Sort(t.Regions)
		out = append(out, *t)
	}
	slices.SortFunc(out, func(a, b Target) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// innermost is the cause of a connection-string error, without the
// connection string itself.
func innermost(err error) error {
	for {
		u := errors.Unwrap(err)
		if u == nil {
			return err
		}
		err = u
	}
}

// Option changes how Preview, Apply and ApplyTx treat a database.
type Option func(*options)

type options struct {
	allowMissing bool
}

// AllowMissing makes tables the policy classifies that do not exist yet
// pending instead of an error (policy.CheckPending): the plan lists them in
// Plan.Pending, and applies everything else (roles, schemas, settings, the
// tables that exist). A table created later through Privata's proxy is
// split then. Without it, plan refuses a policy naming a missing table.
func AllowMissing() Option { return func(o *options) { o.allowMissing = true } }

func collect(opts []Option) options {
	var o options
	for _, f := range opts {
		f(&o)
	}
	return o
}

// Preview computes what applying p to target takes, without changing
// anything: it works in a transaction that it rolls back.
func Preview(ctx context.Context, conn *pgx.Conn, p *policy.Policy, target Target, opts ...Option) (*Plan, error) {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback(context.Background())
	install, err := prepare(ctx, tx)
	if err != nil {
		return nil, err
	}
	pl, err := plan(ctx, tx, p, target, collect(opts))
	if err != nil {
		return nil, err
	}
	pl.Install = install
	return pl, nil
}

// Apply applies p to target in one transaction under Privata's advisory
// lock: it installs the SQL of package sql, plans, locks the tables the
// plan converts, plans again and runs the steps. On any error nothing is
// changed. It returns the plan it ran.
func Apply(ctx context.Context, conn *pgx.Conn, p *policy.Policy, target Target, opts ...Option) (*Plan, error) {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback(context.Background())
	pl, err := ApplyTx(ctx, tx, p, target, opts...)
	if err != nil {
		return nil, err
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("commit: %w", err)
	}
	return pl, nil
}

// ApplyTx is Apply inside the caller's transaction, which the caller
// commits or rolls back: for DDL rewriting, which changes base tables and
// then has their views, triggers and grants derived again in the same
// transaction. It leaves the transaction's search_path as it found it.
func ApplyTx(ctx context.Context, tx pgx.Tx, p *policy.Policy, target Target,
	opts ...Option) (pl *Plan, err error) {
	o := collect(opts)
	var path string
	if err := tx.QueryRow(ctx, "SELECT pg_catalog.current_setting('search_path')").Scan(&path); err != nil {
		return nil, fmt.Errorf("read search_path: %w", err)
	}
	install, err := prepare(ctx, tx)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err == nil {
			_, err = tx.Exec(ctx, "SELECT pg_catalog.set_config('search_path', $1, true)", path)
		}
	}()
	if pl, err = plan(ctx, tx, p, target, o); err != nil {
		return nil, err
	}
	if len(pl.locks) > 0 {
		// Another session may have changed the tables between the catalog
		// read and the lock: read again under the lock.
		lock := fmt.Sprintf("LOCK TABLE %s IN ACCESS EXCLUSIVE MODE", strings.Join(pl.locks, ", "))
		if _, err := tx.Exec(ctx, lock); err != nil {
			return nil, fmt.Errorf("lock tables: %w", err)
		}
		if pl, err = plan(ctx, tx, p, target, o); err != nil {
			return nil, err
		}
	}
	for i, s := range pl.Steps {
		if _, err := tx.Exec(ctx, s.SQL); err != nil {
			return nil, fmt.Errorf("step %d of %d (%s): %w", i+1, len(pl.Steps), summary(s.Comment), err)
		}
	}
	pl.Install = install
	return pl, nil
}

// prepare takes the advisory lock, installs Privata's SQL and pins the
// search_path, in tx.
func prepare(ctx context.Context, tx pgx.Tx) (installed bool, err error) {
	if _, err := tx.Exec(ctx, "SELECT pg_catalog.pg_advisory_xact_lock($1)", privatasql.LockKey); err != nil {
		return false, fmt.Errorf("advisory lock: %w", err)
	}
	if installed, err = privatasql.Install(ctx, tx); err != nil {
		return false, err
	}
	if _, err := tx.Exec(ctx, searchPath); err != nil {
		return false, fmt.Errorf("set search_path: %w", err)
	}
	return installed, nil
}

// summary is the first sentence of a step's comment.
func summary(comment string) string {
	if i := strings.Index(comment, ". "); i > 0 {
		return comment[:i]
	}
	return strings.TrimSuffix(comment, ".")
}
