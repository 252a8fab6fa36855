package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/privata/privata/internal/localpg"
	"github.com/privata/privata/internal/pgtest"
	"github.com/privata/privata/internal/synthea"
)

var binDir string

func TestMain(m *testing.M) {
	code := pgtest.Main(m)
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

var ctx = context.Background()

var (
	buildOnce sync.Once
	bin       string
	buildErr  error
)

// privata builds the binary once per test run.
func privata(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		if binDir, buildErr = os.MkdirTemp("", "privata-bin-"); buildErr != nil {
			return
		}
		bin = filepath.Join(binDir, "privata")
		out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return bin
}

// run runs the binary with extra environment variables.
func run(t *testing.T, env []string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	cmd := exec.Command(privata(t), args...)
	cmd.Env = append(os.Environ(), env...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

const password = "s3cret-pw"

// withPassword puts a password into a test cluster's URL. The test
// clusters trust local connections, so it is never checked; it must never
// be printed.
func withPassword(url string) string {
	return strings.Replace(url, "postgres@", "postgres:"+password+"@", 1)
}

// digests returns a digest of every row of each table.
func digests(t *testing.T, conn *pgx.Conn, tables ...string) string {
	t.Helper()
	var b strings.Builder
	for _, tab := range tables {
		var digest string
		err := conn.QueryRow(ctx, "SELECT md5(COALESCE(string_agg(t::text, E'\\n' ORDER BY t::text), '')) FROM "+
			pgx.Identifier{tab}.Sanitize()+" t").Scan(&digest)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s %s\n", tab, digest)
	}
	return b.String()
}

// state describes a database for "changed nothing" checks: its schema
// (pg_dump) and a digest of every row of the given tables.
func state(t *testing.T, db *pgtest.DB, conn *pgx.Conn, tables ...string) string {
	t.Helper()
	out, err := exec.Command(db.Cluster.Local.Bin("pg_dump"), "--schema-only", "--dbname", db.URL()).
		CombinedOutput()
	if err != nil {
		t.Fatalf("pg_dump: %v\n%s", err, out)
	}
	var b strings.Builder
	for _, l := range strings.Split(string(out), "\n") {
		if !strings.HasPrefix(l, `\restrict `) && !strings.HasPrefix(l, `\unrestrict `) {
			b.WriteString(l + "\n")
		}
	}
	return b.String() + digests(t, conn, tables...)
}

func noSecrets(t *testing.T, texts ...string) {
	t.Helper()
	for _, s := range texts {
		if strings.Contains(s, password) || strings.Contains(s, "postgres://") {
			t.Fatalf("output shows a password or a URL:\n%s", s)
		}
	}
}

// The clinic example as shipped: two clusters (regions us and eu), their
// URLs from the environment, the US and Swedish Synthea sets.
func TestClinicExamplePlanThenApply(t *testing.T) {
	cluster := pgtest.Shared(t)
	dbs := map[string]*pgtest.DB{"us": pgtest.NewDB(t, cluster), "eu": pgtest.NewDB(t, cluster)}
	conns := map[string]*pgx.Conn{}
	for region, set := range map[string]string{"us": "us", "eu": "se"} {
		conns[region] = dbs[region].Connect(t)
		dir, err := synthea.Dir(set)
		if err != nil {
			t.Fatal(err)
		}
		if err := synthea.Create(ctx, conns[region]); err != nil {
			t.Fatal(err)
		}
		if _, err := synthea.Load(ctx, conns[region], dir); err != nil {
			t.Fatal(err)
		}
	}
	// Both databases are on one server, whose roles they share: one fdw
	// password for both.
	env := []string{"PRIVATA_US_URL=" + withPassword(dbs["us"].URL()),
		"PRIVATA_EU_URL=" + withPassword(dbs["eu"].URL()),
		"PRIVATA_US_FDW_PASSWORD=" + password, "PRIVATA_EU_FDW_PASSWORD=" + password}
	cfg := filepath.Join("..", "..", "examples", "clinic", "privata.yaml")
	before, rows := map[string]string{}, map[string]string{}
	for r, db := range dbs {
		before[r] = state(t, db, conns[r], synthea.Tables...)
		rows[r] = digests(t, conns[r], synthea.Tables...)
	}

	out, errOut, err := run(t, env, "plan", "-c", cfg)
	if err != nil {
		t.Fatalf("plan: %v\n%s", err, errOut)
	}
	noSecrets(t, out, errOut)
	for _, r := range []string{"us", "eu"} {
		head := fmt.Sprintf("-- Privata plan for cluster %s (home regions it serves: %s).", r, r)
		if !strings.Contains(out, head) {
			t.Errorf("plan does not show cluster %s", r)
		}
		if got := state(t, dbs[r], conns[r], synthea.Tables...); got != before[r] {
			t.Errorf("plan changed cluster %s", r)
		}
	}
	if strings.Count(out, `CREATE TABLE "privata_identity"."patients"`) != 2 {
		t.Errorf("plan does not convert patients on both clusters:\n%.2000s", out)
	}
	// The policy's transfers go both ways: each cluster reads the other.
	for _, server := range []string{"us", "eu"} {
		if !strings.Contains(out, `CREATE SERVER "`+server+`" FOREIGN DATA WRAPPER postgres_fdw`) {
			t.Errorf("plan does not create foreign server %s", server)
		}
	}
	if !strings.Contains(out, "password '********'") {
		t.Errorf("plan shows no user mapping with a hidden password")
	}

	out, errOut, err = run(t, env, "apply", "-c", cfg)
	if err != nil {
		t.Fatalf("apply: %v\n%s", err, errOut)
	}
	noSecrets(t, out, errOut)
	if !strings.Contains(out, "cluster eu: applied") || !strings.Contains(out, "cluster us: applied") {
		t.Fatalf("apply printed:\n%s", out)
	}
	for r := range dbs {
		var kind string
		if err := conns[r].QueryRow(ctx, `SELECT relkind::text FROM pg_class WHERE oid = 'patients'::regclass`).
			Scan(&kind); err != nil || kind != "v" {
			t.Fatalf("cluster %s: patients is %q (%v), want a view", r, kind, err)
		}
		if got := digests(t, conns[r], synthea.Tables...); got != rows[r] {
			t.Fatalf("cluster %s: rows read back different through the views:\n%s\nwant\n%s", r, got, rows[r])
		}
	}

	out, errOut, err = run(t, env, "apply", "-c", cfg)
	if err != nil || out != "cluster eu: nothing to do\ncluster us: nothing to do\n" {
		t.Fatalf("second apply: %v\n%s%s", err, out, errOut)
	}
	out, _, err = run(t, env, "plan", "-c", cfg)
	if err != nil || strings.Count(out, "-- Nothing to do") != 2 {
		t.Fatalf("plan after apply: %v\n%s", err, out)
	}
}

// writeConfig writes a privata.yaml with one cluster and a policy file.
func writeConfig(t *testing.T, url, policy string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "policy.yaml"), []byte(policy), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf("clusters:\n  main:\n    url: %s\npolicies: [policy.yaml]\n", url)
	file := filepath.Join(dir, "privata.yaml")
	if err := os.WriteFile(file, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return file
}

const killPolicy = `version: 1
regions: {home: {cluster: main}}
subjects:
  patients:
    key: id
    identity: [ssn]
    clinical: [diagnosis]
    other: [clinic]
roles:
  k_reader: {identity: full, clinical: full}
`

func TestUnreachableClusterIsNamedWithoutItsURL(t *testing.T) {
	port, err := localpg.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	url := fmt.Sprintf("postgres://privata:%s@127.0.0.1:%d/clinic?sslmode=disable", password, port)
	cfg := writeConfig(t, url, killPolicy)
	for _, verb := range []string{"plan", "apply"} {
		out, errOut, err := run(t, nil, verb, "-c", cfg)
		if err == nil {
			t.Fatalf("%s succeeded against a cluster that does not listen", verb)
		}
		noSecrets(t, out, errOut)
		if !strings.Contains(errOut, "cluster main:") || !strings.Contains(errOut, "cannot connect") {
			t.Errorf("%s: error does not name the cluster and the failure:\n%s", verb, errOut)
		}
	}
}

func TestPolicyThatDoesNotMatchTheDatabase(t *testing.T) {
	db := pgtest.NewDB(t, pgtest.Shared(t))
	conn := db.Connect(t)
	if _, err := conn.Exec(ctx, `CREATE TABLE patients (id int PRIMARY KEY, ssn text, clinic int)`); err != nil {
		t.Fatal(err)
	}
	before := state(t, db, conn, "patients")
	cfg := writeConfig(t, withPassword(db.URL()), killPolicy)
	for _, verb := range []string{"plan", "apply"} {
		_, errOut, err := run(t, nil, verb, "-c", cfg)
		if err == nil {
			t.Fatalf("%s accepted a policy naming a missing column", verb)
		}
		want := filepath.Join(filepath.Dir(cfg), "policy.yaml") +
			":7:16: column patients.diagnosis does not exist in the database"
		if !strings.Contains(errOut, want) {
			t.Errorf("%s: stderr\n%s\nwant %q", verb, errOut, want)
		}
		noSecrets(t, errOut)
	}
	if after := state(t, db, conn, "patients"); after != before {
		t.Fatalf("a refused apply changed the database")
	}
}

// A kill -9 of `privata apply` in the middle of its transaction leaves the
// database as it was. The test holds a lock on the table a foreign key of
// the converted table refers to, so apply stops at that step with the base
// tables created and every row copied; it is killed there.
func TestKill9DuringApplyLeavesTheDatabaseAsItWas(t *testing.T) {
	db := pgtest.NewDB(t, pgtest.Shared(t))
	conn := db.Connect(t)
	_, err := conn.Exec(ctx, `
		CREATE TABLE clinics (id int PRIMARY KEY, name text);
		INSERT INTO clinics VALUES (1, 'north');
		CREATE TABLE patients (id bigint PRIMARY KEY, ssn text, diagnosis text, clinic int REFERENCES clinics);
		INSERT INTO patients SELECT g, 'ssn-' || g, 'dx-' || g % 97, 1 FROM generate_series(1, 50000) g`)
	if err != nil {
		t.Fatal(err)
	}
	before := state(t, db, conn, "patients")
	cfg := writeConfig(t, db.URL(), killPolicy)

	blocker := db.Connect(t)
	tx, err := blocker.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `LOCK TABLE clinics IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(privata(t), "apply", "-c", cfg)
	var errOut bytes.Buffer
	cmd.Stderr = &errOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	// Wait (for as long as it takes) until apply waits for the lock.
	var waiting string
	for waiting == "" {
		select {
		case err := <-exited:
			tx.Rollback(ctx)
			t.Fatalf("apply exited before it reached the foreign key: %v\n%s", err, errOut.String())
		case <-time.After(50 * time.Millisecond):
		}
		err := conn.QueryRow(ctx, `SELECT COALESCE(max(query), '') FROM pg_stat_activity
			WHERE application_name = 'privata apply' AND wait_event_type = 'Lock'`).Scan(&waiting)
		if err != nil {
			t.Fatal(err)
		}
	}
	if !strings.Contains(waiting, "FOREIGN KEY") {
		t.Fatalf("apply waits at an unexpected step:\n%s", waiting)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := <-exited; err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("apply was not killed: %v", err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	// Its session ends once the server notices the client is gone.
	for {
		var n int
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE application_name = 'privata apply'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if after := state(t, db, conn, "patients"); after != before {
		t.Fatalf("the killed apply left changes behind")
	}

	// Applying again converts the table, every row intact.
	if _, errText, err := run(t, nil, "apply", "-c", cfg); err != nil {
		t.Fatalf("apply after the kill: %v\n%s", err, errText)
	}
	var kind string
	if err := conn.QueryRow(ctx, `SELECT relkind::text FROM pg_class WHERE oid = 'patients'::regclass`).
		Scan(&kind); err != nil || kind != "v" {
		t.Fatalf("patients is %q after apply (%v)", kind, err)
	}
	if !strings.HasSuffix(before, digests(t, conn, "patients")) {
		t.Fatalf("rows differ after the conversion")
	}
}
