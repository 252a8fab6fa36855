package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

func TestPgxEveryQueryExecMode(t *testing.T) {
	e := newEnv(t, envOptions{})
	ctx := context.Background()
	setup := e.connect(t, "clinician")
	_, err := setup.Exec(ctx, `CREATE TABLE notes (id int PRIMARY KEY, body text, at timestamptz)`)
	if err != nil {
		t.Fatal(err)
	}
	modes := []pgx.QueryExecMode{pgx.QueryExecModeCacheStatement, pgx.QueryExecModeCacheDescribe,
		pgx.QueryExecModeDescribeExec, pgx.QueryExecModeExec, pgx.QueryExecModeSimpleProtocol}
	for i, mode := range modes {
		t.Run(mode.String(), func(t *testing.T) {
			cfg, err := pgx.ParseConfig(e.url("clinician"))
			if err != nil {
				t.Fatal(err)
			}
			cfg.DefaultQueryExecMode = mode
			conn, err := pgx.ConnectConfig(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close(ctx)
			at := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
			for j := 0; j < 3; j++ {
				id := i*10 + j
				tag, err := conn.Exec(ctx, "INSERT INTO notes VALUES ($1, $2, $3)", id, "it's "+mode.String(), at)
				if err != nil || tag.RowsAffected() != 1 {
					t.Fatalf("insert %d: %v %v", id, tag, err)
				}
			}
			var n int
			var body string
			var got time.Time
			err = conn.QueryRow(ctx, "SELECT count(*) OVER (), body, at FROM notes WHERE id >= $1 AND id < $2",
				i*10, i*10+10).Scan(&n, &body, &got)
			if err != nil || n != 3 || body != "it's "+mode.String() || !got.Equal(at) {
				t.Fatalf("select: n=%d body=%q at=%v err=%v", n, body, got, err)
			}
			// An error, then the connection still works.
			_, err = conn.Exec(ctx, "INSERT INTO notes VALUES ($1, 'dup', now())", i*10)
			var pe *pgconn.PgError
			if !errors.As(err, &pe) || pe.Code != "23505" {
				t.Fatalf("duplicate insert: err = %v, want 23505", err)
			}
			var who string
			if err := conn.QueryRow(ctx, "SELECT current_user").Scan(&who); err != nil || who != "clinician" {
				t.Fatalf("current_user = %q, %v", who, err)
			}
		})
	}
}

func TestPgxBatchCopyAndTransactions(t *testing.T) {
	e := newEnv(t, envOptions{})
	ctx := context.Background()
	conn := e.connect(t, "clinician")
	if _, err := conn.Exec(ctx, "CREATE TABLE obs (id int, code text, value float8)"); err != nil {
		t.Fatal(err)
	}

	b := &pgx.Batch{}
	for i := 0; i < 50; i++ {
		b.Queue("INSERT INTO obs VALUES ($1, $2, $3)", i, fmt.Sprintf("c%d", i%5), float64(i)/2)
	}
	b.Queue("SELECT sum(id) FROM obs")
	br := conn.SendBatch(ctx, b)
	for i := 0; i < 50; i++ {
		if _, err := br.Exec(); err != nil {
			t.Fatalf("batch insert %d: %v", i, err)
		}
	}
	var sum int
	if err := br.QueryRow().Scan(&sum); err != nil || sum != 1225 {
		t.Fatalf("batch sum = %d, %v", sum, err)
	}
	if err := br.Close(); err != nil {
		t.Fatal(err)
	}

	rows := make([][]any, 10000)
	for i := range rows {
		rows[i] = []any{1000 + i, "copy", float64(i)}
	}
	n, err := conn.CopyFrom(ctx, pgx.Identifier{"obs"}, []string{"id", "code", "value"},
		pgx.CopyFromRows(rows))
	if err != nil || n != 10000 {
		t.Fatalf("copy from: n=%d err=%v", n, err)
	}

	var buf bytes.Buffer
	tag, err := conn.PgConn().CopyTo(ctx, &buf, "COPY (SELECT id, code FROM obs ORDER BY id) TO STDOUT")
	if err != nil || tag.RowsAffected() != 10050 {
		t.Fatalf("copy to: %v %v", tag, err)
	}
	if lines := strings.Count(buf.String(), "\n"); lines != 10050 {
		t.Fatalf("copy to wrote %d lines", lines)
	}

	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "DELETE FROM obs"); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	var count int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM obs").Scan(&count); err != nil || count != 10050 {
		t.Fatalf("after rollback count = %d, %v", count, err)
	}
}

func TestListenNotifyShowsTheRealPID(t *testing.T) {
	e := newEnv(t, envOptions{})
	ctx := context.Background()
	listener := e.connect(t, "clinician")
	notifier := e.connect(t, "clinician")
	if _, err := listener.Exec(ctx, "LISTEN events"); err != nil {
		t.Fatal(err)
	}
	var backendPID uint32
	if err := notifier.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&backendPID); err != nil {
		t.Fatal(err)
	}
	if told := notifier.PgConn().PID(); told != backendPID {
		t.Fatalf("client was told PID %d, backend is %d", told, backendPID)
	}
	if _, err := notifier.Exec(ctx, "SELECT pg_notify('events', 'hello')"); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	n, err := listener.WaitForNotification(wctx)
	if err != nil {
		t.Fatal(err)
	}
	if n.Channel != "events" || n.Payload != "hello" || n.PID != notifier.PgConn().PID() {
		t.Fatalf("notification %+v, want from PID %d", n, notifier.PgConn().PID())
	}
}

func TestCancelReachesOnlyThatClientsBackend(t *testing.T) {
	e := newEnv(t, envOptions{})
	ctx := context.Background()
	victim := e.connect(t, "clinician")
	bystander := e.connect(t, "clinician")

	admin := e.admin(t)
	done := make(chan error, 1)
	go func() {
		_, err := bystander.Exec(ctx, "SELECT pg_sleep(1)")
		done <- err
	}()
	victimDone := make(chan error, 1)
	go func() {
		_, err := victim.Exec(ctx, "SELECT pg_sleep(600)")
		victimDone <- err
	}()
	eventually(t, "victim's query running", func() error {
		var n int
		err := admin.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE pid = $1 "+
			"AND query LIKE 'SELECT pg_sleep(600)%' AND state = 'active'", victim.PgConn().PID()).Scan(&n)
		if err == nil && n != 1 {
			err = errors.New("not yet")
		}
		return err
	})
	// The client's CancelRequest carries the PID and the key Privata gave it.
	if err := victim.PgConn().CancelRequest(ctx); err != nil {
		t.Fatal(err)
	}
	err := <-victimDone
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "57014" {
		t.Fatalf("cancelled query: err = %v, want 57014 query_canceled", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("the other client's query was disturbed: %v", err)
	}
	// A CancelRequest with the right PID and a wrong key reaches nobody.
	raw, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	var b builder
	b.i32(16)
	b.i32(codeCancel)
	b.i32(int32(victim.PgConn().PID()))
	b.i32(12345)
	raw.Write(b.buf)
	io.Copy(io.Discard, raw) // the server closes it once handled
	raw.Close()
	if got := counterValue(t, e, "privata_cancel_requests_total", "unknown"); got != 1 {
		t.Fatalf("cancel requests with an unknown key = %v, want 1", got)
	}
	if got := counterValue(t, e, "privata_cancel_requests_total", "forwarded"); got != 1 {
		t.Fatalf("cancel requests forwarded = %v, want 1", got)
	}
	if err := victim.Ping(ctx); err != nil {
		t.Fatalf("victim unusable after cancel: %v", err)
	}

	// pgx cancels through the same request when a query's context ends:
	// the backend stops running the statement.
	pid := victim.PgConn().PID()
	cctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	if _, err := victim.Exec(cctx, "SELECT pg_sleep(600)"); err == nil {
		t.Fatal("query outlived its context")
	}
	eventually(t, "cancelled statement stopped", func() error {
		var n int
		err := admin.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE pid = $1 "+
			"AND state = 'active'", pid).Scan(&n)
		if err == nil && n != 0 {
			err = errors.New("still active")
		}
		return err
	})
}
