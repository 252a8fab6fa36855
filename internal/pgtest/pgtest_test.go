package pgtest

import (
	"context"
	"os"
	"testing"
)

func TestMain(m *testing.M) { os.Exit(Main(m)) }

func TestSharedClusterIsLogicalAndDatabasesAreSeparate(t *testing.T) {
	c := Shared(t)
	a, b := NewDB(t, c), NewDB(t, c)
	if a.Name == b.Name {
		t.Fatalf("two tests got the same database %q", a.Name)
	}
	ctx := context.Background()
	conn := a.Connect(t)
	var level string
	if err := conn.QueryRow(ctx, "SHOW wal_level").Scan(&level); err != nil {
		t.Fatal(err)
	}
	if level != "logical" {
		t.Fatalf("wal_level = %q, want logical", level)
	}
	a.Exec(t, "CREATE TABLE only_in_a (x int)")
	var n int
	err := b.Connect(t).QueryRow(ctx,
		"SELECT count(*) FROM pg_class WHERE relname = 'only_in_a'").Scan(&n)
	if err != nil || n != 0 {
		t.Fatalf("table of database a visible in b: n=%d err=%v", n, err)
	}
}

func TestSeveralClustersRunAtOnce(t *testing.T) {
	us := Start(t, "us", nil)
	eu := Start(t, "eu", map[string]string{"max_connections": "50"})
	if us.Port() == eu.Port() {
		t.Fatalf("both clusters on port %d", us.Port())
	}
	ctx := context.Background()
	var max string
	if err := Connect(t, eu.URL("postgres")).QueryRow(ctx, "SHOW max_connections").Scan(&max); err != nil {
		t.Fatal(err)
	}
	if max != "50" {
		t.Fatalf("eu max_connections = %s, want the setting given, 50", max)
	}
	if err := us.Local.Kill(); err != nil {
		t.Fatal(err)
	}
	if us.Local.Running() {
		t.Fatal("us still running after Kill")
	}
	if _, err := Connect(t, eu.URL("postgres")).Exec(ctx, "SELECT 1"); err != nil {
		t.Fatalf("eu affected by stopping us: %v", err)
	}
	if err := us.Local.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := Connect(t, us.URL("postgres")).Exec(ctx, "SELECT 1"); err != nil {
		t.Fatalf("us after restart: %v", err)
	}
}
