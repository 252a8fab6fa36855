package proxy

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// modes are the two ways a client sends statements: pgx's default
// (extended protocol, prepared and cached) and the simple protocol.
var modes = []pgx.QueryExecMode{pgx.QueryExecModeCacheStatement, pgx.QueryExecModeSimpleProtocol}

func connectMode(t *testing.T, e *env, user string, mode pgx.QueryExecMode) *pgx.Conn {
	t.Helper()
	cfg, err := pgx.ParseConfig(e.url(user))
	if err != nil {
		t.Fatal(err)
	}
	cfg.DefaultQueryExecMode = mode
	conn, err := pgx.ConnectConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func sqlstate(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

func TestClientCannotChangeItsRole(t *testing.T) {
	e := newEnv(t, envOptions{})
	ctx := context.Background()
	escapes := []string{
		"SET ROLE escalated",
		"SET SESSION ROLE analyst",
		"RESET ROLE",
		"SET ROLE NONE",
		"SET SESSION AUTHORIZATION postgres",
		"RESET SESSION AUTHORIZATION",
		"SELECT set_config('role', 'escalated', false)",
		"SELECT pg_catalog.set_config('session_authorization', 'postgres', false)",
		"DO $$ BEGIN EXECUTE 'SET ROLE escalated'; END $$",
		"DO $$ BEGIN SET ROLE escalated; END $$",
	}
	for _, mode := range modes {
		conn := connectMode(t, e, "clinician", mode)
		for _, sql := range escapes {
			_, err := conn.Exec(ctx, sql)
			if code := sqlstate(err); code != codeInsufficientPriv {
				t.Errorf("%s %q: err = %v, want 42501", mode, sql, err)
			}
			if who := currentUser(t, conn); who != "clinician" {
				t.Fatalf("%s: after %q current_user = %q", mode, sql, who)
			}
		}
		// Inside a transaction block, the refusal aborts the block as an
		// error from PostgreSQL would.
		tx, err := conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, "SET LOCAL ROLE escalated"); sqlstate(err) != codeInsufficientPriv {
			t.Fatalf("%s: SET LOCAL ROLE in a block: %v", mode, err)
		}
		if _, err := tx.Exec(ctx, "SELECT 1"); sqlstate(err) != "25P02" {
			t.Fatalf("%s: block after refusal: %v, want 25P02", mode, err)
		}
		tx.Rollback(ctx)
	}
	if got := counterValue(t, e, "privata_refused_statements_total", codeInsufficientPriv); got < 20 {
		t.Fatalf("refused statements metric = %v", got)
	}
}

func TestDiscardAllAndResetAllKeepTheRole(t *testing.T) {
	e := newEnv(t, envOptions{})
	ctx := context.Background()
	// DISCARD ALL drops prepared statements, so pgx must not cache them here
	// (directly, too).
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeExec, pgx.QueryExecModeSimpleProtocol} {
		conn := connectMode(t, e, "analyst", mode)
		for _, sql := range []string{"DISCARD ALL", "RESET ALL", "DISCARD ALL"} {
			if _, err := conn.Exec(ctx, sql); err != nil {
				t.Fatalf("%s %s: %v", mode, sql, err)
			}
			if who := currentUser(t, conn); who != "analyst" {
				t.Fatalf("%s: after %s current_user = %q, want analyst", mode, sql, who)
			}
		}
	}
	// DISCARD ALL refused by PostgreSQL inside a transaction block: the
	// session goes on, with its role.
	conn := e.connect(t, "analyst")
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "DISCARD ALL"); sqlstate(err) != "25001" {
		t.Fatalf("DISCARD ALL in a block: %v, want 25001", err)
	}
	tx.Rollback(ctx)
	if who := currentUser(t, conn); who != "analyst" {
		t.Fatalf("after a failed DISCARD ALL current_user = %q", who)
	}
	w0 := e.wire(t, "analyst")
	w0.send(&pgproto3.Query{String: "BEGIN; DISCARD ALL"})
	expect(t, w0.recv("ReadyForQuery"), "CommandComplete:BEGIN", "Error:25001", "ReadyForQuery:E")
	w0.send(&pgproto3.Query{String: "ROLLBACK"})
	expect(t, w0.recv("ReadyForQuery"), "CommandComplete:ROLLBACK", "ReadyForQuery:I")
	w0.send(&pgproto3.Query{String: "SELECT current_user"})
	expect(t, w0.recv("ReadyForQuery"), "RowDescription", "DataRow:analyst",
		"CommandComplete:SELECT 1", "ReadyForQuery:I")

	// At the protocol level: DISCARD ALL and a query in one pipeline.
	w := e.wire(t, "analyst")
	w.send(&pgproto3.Parse{Query: "DISCARD ALL"}, &pgproto3.Bind{}, &pgproto3.Execute{},
		&pgproto3.Parse{Query: "SELECT current_user"}, &pgproto3.Bind{}, &pgproto3.Execute{},
		&pgproto3.Sync{})
	expect(t, w.recv("ReadyForQuery"), "ParseComplete", "BindComplete", "CommandComplete:DISCARD ALL",
		"ParseComplete", "BindComplete", "DataRow:analyst", "CommandComplete:SELECT 1", "ReadyForQuery:I")
}

// Sessions that log in upstream as a superuser (privata dev does) are one
// for a moment after DISCARD ALL, until Privata's SET ROLE runs: that is
// not an escalation, and the session keeps its role.
func TestDiscardAllWithASuperuserLogin(t *testing.T) {
	e := newEnv(t, envOptions{urlOnly: true})
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeExec, pgx.QueryExecModeSimpleProtocol} {
		conn := connectMode(t, e, "reception", mode)
		for _, sql := range []string{"DISCARD ALL", "SELECT 1", "DISCARD ALL"} {
			if _, err := conn.Exec(context.Background(), sql); err != nil {
				t.Fatalf("%s %s: %v", mode, sql, err)
			}
			if who := currentUser(t, conn); who != "reception" {
				t.Fatalf("%s: after %s current_user = %q, want reception", mode, sql, who)
			}
		}
	}
	w := e.wire(t, "reception")
	w.send(&pgproto3.Query{String: "DISCARD ALL"})
	w.recv("ReadyForQuery")
	w.send(&pgproto3.Query{String: "SELECT current_user, current_setting('is_superuser')"})
	// The hidden SET ROLE's is_superuser=off reaches the client too.
	expect(t, w.recv("ReadyForQuery"), "ParameterStatus", "RowDescription", "DataRow:reception,off",
		"CommandComplete:SELECT 1", "ReadyForQuery:I")
	// An escalation that is not DISCARD ALL's still ends the session.
	w.send(&pgproto3.Query{String: "SELECT set_config('role', 'none', false)"})
	expect(t, w.recv("ReadyForQuery"), "Error:42501", "ReadyForQuery:I")
}

func TestRefusalsInThePipeline(t *testing.T) {
	e := newEnv(t, envOptions{})
	w := e.wire(t, "clinician")
	w.send(&pgproto3.Parse{Name: "ok", Query: "SELECT 1"},
		&pgproto3.Parse{Name: "bad", Query: "SET ROLE escalated"},
		&pgproto3.Bind{PreparedStatement: "bad"}, &pgproto3.Execute{},
		&pgproto3.Sync{},
		&pgproto3.Bind{PreparedStatement: "ok"}, &pgproto3.Execute{}, &pgproto3.Sync{})
	expect(t, w.recv("ReadyForQuery"), "ParseComplete", "Error:42501", "ReadyForQuery:I")
	expect(t, w.recv("ReadyForQuery"), "BindComplete", "DataRow:1", "CommandComplete:SELECT 1",
		"ReadyForQuery:I")

	// A multi-statement Query with a refused statement is refused whole.
	w.send(&pgproto3.Query{String: "CREATE TABLE r (n int); SET ROLE escalated"})
	expect(t, w.recv("ReadyForQuery"), "Error:42501", "ReadyForQuery:I")
	w.send(&pgproto3.Query{String: "SELECT to_regclass('r') IS NULL"})
	expect(t, w.recv("ReadyForQuery"), "RowDescription", "DataRow:t", "CommandComplete:SELECT 1",
		"ReadyForQuery:I")

	// Unsafe settings are refused with 0A000.
	w.send(&pgproto3.Query{String: "SET standard_conforming_strings = off"})
	expect(t, w.recv("ReadyForQuery"), "Error:0A000", "ReadyForQuery:I")
}

func TestUnparsableStatementsGetClearErrors(t *testing.T) {
	e := newEnv(t, envOptions{})
	ctx := context.Background()
	conn := e.connect(t, "clinician")
	_, err := conn.Exec(ctx, "SELEC 'secret-literal-42'")
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "42601" || pe.Position == 0 {
		t.Fatalf("syntax error: %v", err)
	}
	if strings.Contains(pe.Message, "secret-literal-42") {
		t.Fatalf("error message shows a literal: %q", pe.Message)
	}
	deep := "SELECT " + strings.Repeat("(", 100000) + "1" + strings.Repeat(")", 100000)
	if _, err := conn.Exec(ctx, deep); sqlstate(err) != "54001" {
		t.Fatalf("100,000-deep expression: %v, want 54001", err)
	}
	if who := currentUser(t, conn); who != "clinician" {
		t.Fatalf("session after errors: %q", who)
	}
}

func TestSessionContextReachesSQL(t *testing.T) {
	e := newEnv(t, envOptions{})
	ctx := context.Background()
	read := func(t *testing.T, conn *pgx.Conn, sql string) string {
		t.Helper()
		var actor, purpose string
		if err := conn.QueryRow(ctx, sql).Scan(&actor, &purpose); err != nil {
			t.Fatalf("%q: %v", sql, err)
		}
		return actor + "|" + purpose
	}
	const q = "SELECT current_setting('privata.actor', true), current_setting('privata.purpose', true)"
	for _, mode := range modes {
		t.Run(mode.String(), func(t *testing.T) {
			conn := connectMode(t, e, "clinician", mode)
			if got := read(t, conn, "/*actor='dr%20who',purpose='treatment'*/ "+q); got != "dr who|treatment" {
				t.Fatalf("tags: %q", got)
			}
			// A tag holds for its own statement only: on a pooled
			// connection the next statement may be another user's.
			if got := read(t, conn, q+" /*actor='nurse'*/"); got != "nurse|" {
				t.Fatalf("second tags: %q", got)
			}
			if got := read(t, conn, q); got != "|" {
				t.Fatalf("without tags: %q", got)
			}
			if _, err := conn.Exec(ctx, "SET privata.actor = 'set-by-client'"); err != nil {
				t.Fatal(err)
			}
			if got := read(t, conn, "/*purpose='treatment'*/ "+q); got != "set-by-client|treatment" {
				t.Fatalf("after SET, a tag: %q", got)
			}
			if got := read(t, conn, q); got != "set-by-client|" {
				t.Fatalf("after SET: %q", got)
			}
			if _, err := conn.Exec(ctx, "SET privata.purpose = 'treatment'"); err != nil {
				t.Fatal(err)
			}
			// A rolled-back SET is undone upstream; a tag asking for the
			// undone value must be applied again.
			tx, err := conn.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tx.Exec(ctx, "SET privata.actor = 'in-tx'"); err != nil {
				t.Fatal(err)
			}
			tx.Rollback(ctx)
			if got := read(t, conn, q); got != "set-by-client|treatment" {
				t.Fatalf("after rollback: %q", got)
			}
			if got := read(t, conn, "/*actor='in-tx'*/ "+q); got != "in-tx|treatment" {
				t.Fatalf("tag after rollback: %q", got)
			}
			if got := read(t, conn, q); got != "set-by-client|treatment" {
				t.Fatalf("after the tag, the session's own values: %q", got)
			}
		})
	}
}

func TestMetricsCarryNoLiterals(t *testing.T) {
	e := newEnv(t, envOptions{})
	ctx := context.Background()
	conn := e.connect(t, "clinician")
	for i := 0; i < 3; i++ {
		conn.Exec(ctx, "SELECT 'SSN-123-45-6789' AS ssn")
	}
	conn.Exec(ctx, "SET ROLE escalated")
	if got := counterValue(t, e, "privata_parse_cache_total", "hit"); got < 1 {
		t.Fatalf("parse cache hits = %v", got)
	}
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				seen[lp.GetValue()] = true
				if strings.Contains(lp.GetValue(), "SSN") || strings.Contains(lp.GetValue(), "escalated") {
					t.Fatalf("metric %s label %s=%q holds statement text", mf.GetName(), lp.GetName(), lp.GetValue())
				}
			}
		}
	}
	for _, want := range []string{"select", "allow", "refuse", "42501"} {
		if !seen[want] {
			t.Errorf("no metric label %q among %v", want, seen)
		}
	}
}
