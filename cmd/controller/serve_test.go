package main

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/privata/privata/internal/localpg"
	"github.com/privata/privata/internal/pgtest"
)

func TestServeRelaysAndServesMetrics(t *testing.T) {
	db := pgtest.NewDB(t, pgtest.Shared(t))
	db.Exec(t, `DO $$ BEGIN
		IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'serve_clinician') THEN
			CREATE ROLE serve_clinician NOLOGIN;
		END IF; END $$`)
	dir := t.TempDir()
	listen, err := localpg.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	metrics, err := localpg.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "policy.yaml"), []byte("version: 1\n"+
		"regions: {main: {cluster: main}}\n"+
		"roles: {clinician: {pg_role: serve_clinician, identity: full, clinical: full}}\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "privata.yaml"), []byte(fmt.Sprintf(`clusters:
  main: {url: "%s"}
policies: [policy.yaml]
server: {listen: "127.0.0.1:%d", metrics_listen: "127.0.0.1:%d"}
auth: {method: trust, default_role: clinician}
`, db.URL(), listen, metrics)), 0o644)

	cmd := exec.Command(privata(t), "serve", "-c", filepath.Join(dir, "privata.yaml"))
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

	url := fmt.Sprintf("postgres://someone@127.0.0.1:%d/%s?sslmode=disable", listen, db.Name)
	var conn *pgx.Conn
	deadline := time.Now().Add(time.Minute)
	for conn == nil {
		conn, err = pgx.Connect(ctx, url)
		if err != nil && time.Now().After(deadline) {
			t.Fatalf("privata serve never accepted a connection: %v\n%s", err, logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	var who string
	if err := conn.QueryRow(ctx, "SELECT current_user").Scan(&who); err != nil || who != "serve_clinician" {
		t.Fatalf("current_user = %q, %v", who, err)
	}
	conn.Close(ctx)

	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", metrics))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`privata_client_connections_total{outcome="accepted"} 1`,
		`privata_statements_total{decision="allow",kind="select"} 1`, "privata_parse_seconds_bucket",
		"privata_upstream_seconds_bucket", `privata_parse_cache_total{result="miss"}`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %s", want)
		}
	}

	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-done:
		var exit *exec.ExitError
		if err != nil && !errors.As(err, &exit) {
			t.Fatal(err)
		}
		if err != nil {
			t.Fatalf("privata serve exited with %v after SIGTERM\n%s", err, logs.String())
		}
		done <- nil
	case <-time.After(time.Minute):
		t.Fatalf("privata serve still running a minute after SIGTERM")
	}
}
