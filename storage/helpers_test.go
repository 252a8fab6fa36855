package storage_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/privata/privata/internal/pgtest"
	"github.com/privata/privata/policy"
	"github.com/privata/privata/storage"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

var ctx = context.Background()

// testDB is a fresh database with a superuser connection.
type testDB struct {
	*pgtest.DB
	conn *pgx.Conn
}

func newDB(t *testing.T) *testDB {
	t.Helper()
	db := pgtest.NewDB(t, pgtest.Shared(t))
	return &testDB{DB: db, conn: db.Connect(t)}
}

// exec runs statements as the superuser and fails the test on error.
func (d *testDB) exec(t *testing.T, sql string, args ...any) {
	t.Helper()
	if _, err := d.conn.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("exec %.200s: %v", sql, err)
	}
}

func parsePolicy(t *testing.T, text string) *policy.Policy {
	t.Helper()
	p, err := policy.Parse("policy.yaml", []byte(text))
	if err != nil {
		t.Fatalf("policy: %v", err)
	}
	return p
}

func (d *testDB) target(regions ...string) storage.Target {
	if len(regions) == 0 {
		regions = []string{"us"}
	}
	return storage.Target{Name: "test", URL: d.URL(), Regions: regions}
}

// apply applies p on a connection of its own and fails the test on error.
func (d *testDB) apply(t *testing.T, p *policy.Policy, regions ...string) *storage.Plan {
	t.Helper()
	pl, err := d.tryApply(t, p, regions...)
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	return pl
}

func (d *testDB) tryApply(t *testing.T, p *policy.Policy, regions ...string) (*storage.Plan, error) {
	t.Helper()
	conn := d.Connect(t)
	defer conn.Close(ctx)
	return storage.Apply(ctx, conn, p, d.target(regions...))
}

func (d *testDB) preview(t *testing.T, p *policy.Policy, regions ...string) *storage.Plan {
	t.Helper()
	conn := d.Connect(t)
	defer conn.Close(ctx)
	pl, err := storage.Preview(ctx, conn, p, d.target(regions...))
	if err != nil {
		t.Fatalf("plan: %v", err)
	}
	return pl
}

func storageApply(conn *pgx.Conn, p *policy.Policy, t storage.Target) (*storage.Plan, error) {
	return storage.Apply(ctx, conn, p, t)
}

// pgtestConnectAs connects to the database as a login role.
func pgtestConnectAs(t *testing.T, d *testDB, role string) *pgx.Conn {
	t.Helper()
	return pgtest.Connect(t, strings.Replace(d.URL(), "postgres@", role+"@", 1))
}

// contents returns every row of each table as text, sorted.
func (d *testDB) contents(t *testing.T, tables ...string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, tab := range tables {
		rows, err := d.conn.Query(ctx, "SELECT t::text FROM "+pgx.Identifier{"public", tab}.Sanitize()+
			" t ORDER BY 1")
		if err != nil {
			t.Fatalf("read %s: %v", tab, err)
		}
		vals, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatalf("read %s: %v", tab, err)
		}
		out[tab] = vals
	}
	return out
}

// dump is pg_dump's output for the database (schema and data), with the
// cluster's roles and memberships: what "changes nothing" compares.
func (d *testDB) dump(t *testing.T) string {
	t.Helper()
	cmd := exec.Command(d.Cluster.Local.Bin("pg_dump"), "--dbname", d.URL())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("pg_dump: %v\n%s", err, out)
	}
	rows, err := d.conn.Query(ctx, `SELECT r.rolname || ' ' || r.rolcanlogin || ' ' || r.rolinherit || ' ' ||
		COALESCE((SELECT string_agg(g.rolname, ',' ORDER BY g.rolname) FROM pg_auth_members m
			JOIN pg_roles g ON g.oid = m.roleid WHERE m.member = r.oid), '')
		FROM pg_roles r ORDER BY r.rolname`)
	if err != nil {
		t.Fatal(err)
	}
	roles, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	// pg_dump guards its output with a random \restrict key per run.
	lines := slices.DeleteFunc(strings.Split(string(out), "\n"), func(l string) bool {
		return strings.HasPrefix(l, `\restrict `) || strings.HasPrefix(l, `\unrestrict `)
	})
	return strings.Join(lines, "\n") + "\n-- roles\n" + strings.Join(roles, "\n")
}

// as runs f in a transaction as role (SET LOCAL ROLE), rolled back after.
func (d *testDB) as(t *testing.T, role string, f func(tx pgx.Tx)) {
	t.Helper()
	tx, err := d.conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "SET LOCAL ROLE "+pgx.Identifier{role}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	f(tx)
}

// sqlstate returns err's SQLSTATE, or "" when it is no PostgreSQL error.
func sqlstate(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

func sortedCopy(s []string) []string {
	c := slices.Clone(s)
	slices.Sort(c)
	return c
}
