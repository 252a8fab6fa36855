package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/privata/privata/internal/localpg"
	"github.com/privata/privata/internal/pgtest"
)

// privata apply --allow-missing on an empty database, then privata serve:
// tables an application creates through it are split as they are created.
func TestServeSplitsTablesCreatedThroughIt(t *testing.T) {
	db := pgtest.NewDB(t, pgtest.Shared(t))
	dir := t.TempDir()
	listen, err := localpg.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "policy.yaml"), []byte(`version: 1
regions: {main: {cluster: main}}
subjects:
  people: {key: id, identity: [ssn], clinical: [blood]}
children:
  visits: {subject: {table: people, column: person}}
roles: {ddl_owner: {identity: full, clinical: full}}
`), 0o644)
	config := filepath.Join(dir, "privata.yaml")
	os.WriteFile(config, []byte(fmt.Sprintf(`clusters:
  main: {url: "%s"}
policies: [policy.yaml]
server: {listen: "127.0.0.1:%d", metrics_listen: ""}
auth: {method: trust, default_role: ddl_owner}
`, db.URL(), listen)), 0o644)

	out, err := exec.Command(privata(t), "apply", "--allow-missing", "-c", config).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "public.people does not exist yet") {
		t.Fatalf("apply --allow-missing: %v\n%s", err, out)
	}
	db.Exec(t, "GRANT CREATE, USAGE ON SCHEMA public TO ddl_owner")

	cmd := exec.Command(privata(t), "serve", "-c", config)
	var logs strings.Builder
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
	})
	url := fmt.Sprintf("postgres://app@127.0.0.1:%d/%s?sslmode=disable", listen, db.Name)
	var conn *pgconn.PgConn
	deadline := time.Now().Add(time.Minute)
	for conn == nil {
		conn, err = pgconn.Connect(ctx, url)
		if err != nil && time.Now().After(deadline) {
			t.Fatalf("privata serve never accepted a connection: %v\n%s", err, logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	defer conn.Close(ctx)
	res, err := conn.Exec(ctx, `CREATE TABLE people (id serial PRIMARY KEY, ssn text UNIQUE, blood text);
		CREATE TABLE visits (id serial PRIMARY KEY, person int REFERENCES people ON DELETE CASCADE, at date)`).ReadAll()
	if err != nil || len(res) != 2 {
		t.Fatalf("migration through privata serve: %v\n%s", err, logs.String())
	}
	for _, sql := range []string{`INSERT INTO people (ssn, blood) VALUES ('123-45-6789', 'A+')`,
		`INSERT INTO visits (person, at) VALUES (1, '2024-01-02')`} {
		if _, err := conn.Exec(ctx, sql).ReadAll(); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	admin := db.Connect(t)
	var kinds string
	if err := admin.QueryRow(ctx, `SELECT string_agg(n.nspname || '.' || c.relname || ':' || c.relkind::text, ' '
		ORDER BY n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relname IN ('people', 'visits') AND n.nspname IN ('public', 'privata_identity',
		'privata_clinical')`).Scan(&kinds); err != nil {
		t.Fatal(err)
	}
	if want := "privata_clinical.people:r privata_clinical.visits:r privata_identity.people:r " +
		"public.people:v public.visits:v"; kinds != want {
		t.Errorf("stored as %s, want %s", kinds, want)
	}
	var ssn, blood string
	if err := admin.QueryRow(ctx, `SELECT i.ssn, c.blood FROM privata_identity.people i
		JOIN privata_clinical.visits v USING (privata_pseudonym)
		JOIN privata_clinical.people c USING (privata_pseudonym)`).Scan(&ssn, &blood); err != nil ||
		ssn != "123-45-6789" || blood != "A+" {
		t.Errorf("base tables hold %q %q, %v", ssn, blood, err)
	}
}
