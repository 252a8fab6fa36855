package storage_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/privata/privata/config"
	"github.com/privata/privata/storage"
)

func TestTargetsMergeClustersOfOneDatabase(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "privata.yaml")
	cfg := `clusters:
  us: {url: "postgres://privata:pw@db1:5432/clinic"}
  eu: {url: "postgres://privata:pw@db1:5432/clinic", session_url: "postgres://sessions@db1:5432/clinic"}
  ap: {url: "postgres://privata:pw@db2:5432/clinic"}
policies: [policy.yaml]
`
	if err := os.WriteFile(file, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := config.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	p := parsePolicy(t, `version: 1
regions: {us: {cluster: us}, eu: {cluster: eu}, ap: {cluster: ap}}
residency: {table: people, column: country, values: {SE: eu, JP: ap}, default: us}
subjects:
  people: {key: id}
`)
	got, err := storage.Targets(c, p)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Name != "ap" || got[1].Name != "us+eu" ||
		!slices.Equal(got[1].Regions, []string{"eu", "us"}) || got[1].Session != "sessions" {
		t.Fatalf("targets: %+v", got)
	}

	p = parsePolicy(t, `version: 1
regions: {us: {cluster: nowhere}}
subjects:
  people: {key: id}
`)
	_, err = storage.Targets(c, p)
	if err == nil || !strings.HasPrefix(err.Error(), "policy.yaml:2:11: region us names cluster nowhere") {
		t.Fatalf("unknown cluster: %v", err)
	}
}

// DDL rewriting changes base tables inside the application's transaction
// and has the views derived again there.
func TestApplyTxInTheCallersTransaction(t *testing.T) {
	d := newDB(t)
	d.exec(t, smallSchema)
	p := parsePolicy(t, smallPolicy)
	d.apply(t, p)
	tx, err := d.conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SET LOCAL search_path = public, pg_catalog;
		ALTER TABLE privata_clinical.visits ADD COLUMN notes text DEFAULT 'n/a'`); err != nil {
		t.Fatal(err)
	}
	pl, err := storage.ApplyTx(ctx, tx, p, d.target())
	if err != nil {
		t.Fatal(err)
	}
	if pl.Empty() {
		t.Fatalf("a new base column planned nothing")
	}
	var path string
	if err := tx.QueryRow(ctx, `SELECT current_setting('search_path')`).Scan(&path); err != nil {
		t.Fatal(err)
	}
	if path != "public, pg_catalog" {
		t.Fatalf("search_path after ApplyTx: %q", path)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if got := outcome(t, d, "doctor", `INSERT INTO visits (person, reason) VALUES (1, 'x') RETURNING notes`); got != "INSERT 0 1 n/a" {
		t.Fatalf("the view does not take the new column: %s", got)
	}
}
