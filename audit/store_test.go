package audit

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/privata/privata/internal/pgtest"
)

func TestOpenWithoutSchemaSaysHowToInstall(t *testing.T) {
	db := pgtest.NewDB(t, pgtest.Shared(t))
	_, err := Open(context.Background(), "us", db.URL())
	if !errors.Is(err, ErrNotInstalled) {
		t.Fatalf("Open on an empty database: %v, want ErrNotInstalled", err)
	}
}

func TestStoreRefusesUpdateDeleteTruncateForEveryRole(t *testing.T) {
	db, s := newStore(t)
	ctx := context.Background()
	w := newWriter(t, s, WriterOptions{})
	p := randomPseudonym()
	for i := range 3 {
		if err := w.Append(ctx, sampleRead(i, p)); err != nil {
			t.Fatal(err)
		}
	}
	mustFlush(t, w)
	ch, _, err := s.OpenChangeChain(ctx, ChainOptions{Source: "us"})
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.Write(ctx, sampleChanges(0x1000, 3, p)); err != nil {
		t.Fatal(err)
	}
	db.Exec(t, `DO $$ BEGIN
		IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'audit_test_writer') THEN
			CREATE ROLE audit_test_writer NOLOGIN IN ROLE privata_audit_writer;
		END IF;
		IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'audit_test_reader') THEN
			CREATE ROLE audit_test_reader NOLOGIN IN ROLE privata_audit_reader;
		END IF;
	END $$`)

	conn := db.Connect(t)
	roles := map[string]string{
		"superuser (the owner)":          "",
		"superuser as replica":           "SET session_replication_role = replica",
		"member of privata_audit_writer": "SET ROLE audit_test_writer",
		"member of privata_audit_reader": "SET ROLE audit_test_reader",
	}
	statements := []string{
		"UPDATE privata_audit.read_log SET actor = 'someone else'",
		"DELETE FROM privata_audit.read_log",
		"TRUNCATE privata_audit.read_log",
		"UPDATE privata_audit.change_log SET role = 'nobody'",
		"DELETE FROM privata_audit.change_log WHERE seq = 2",
		"TRUNCATE privata_audit.change_log",
		"DELETE FROM privata_audit.chains",
		"UPDATE privata_audit.chains SET key_id = 'x'",
	}
	for who, setup := range roles {
		for _, stmt := range statements {
			t.Run(who+"/"+stmt, func(t *testing.T) {
				if _, err := conn.Exec(ctx, "RESET ROLE; RESET session_replication_role"); err != nil {
					t.Fatal(err)
				}
				if setup != "" {
					if _, err := conn.Exec(ctx, setup); err != nil {
						t.Fatal(err)
					}
				}
				_, err := conn.Exec(ctx, stmt)
				var pgErr *pgconn.PgError
				if !errors.As(err, &pgErr) || pgErr.Code != "42501" {
					t.Fatalf("%s as %s: %v, want SQLSTATE 42501", stmt, who, err)
				}
			})
		}
	}
	if _, err := conn.Exec(ctx, "RESET ROLE; RESET session_replication_role"); err != nil {
		t.Fatal(err)
	}
	if n := count(t, s, "SELECT count(*) FROM privata_audit.read_log"); n != 3 {
		t.Errorf("read_log has %d records after the refused statements, want 3", n)
	}
	if n := count(t, s, "SELECT count(*) FROM privata_audit.change_log"); n != 3 {
		t.Errorf("change_log has %d records after the refused statements, want 3", n)
	}
	verifyAll(t, s, nil)

	// The writers go on after the refusals: nothing is stuck or lost.
	if err := w.Append(ctx, sampleRead(3, p)); err != nil {
		t.Fatal(err)
	}
	mustFlush(t, w)
	if err := ch.Write(ctx, sampleChanges(0x2000, 1, p)); err != nil {
		t.Fatal(err)
	}
	if reps := verifyAll(t, s, nil); len(reps) != 2 || reps[0].Records+reps[1].Records != 8 {
		t.Errorf("after more writes: %v, want two chains with 8 records in all", reps)
	}
}

func TestRolesHaveNoUpdateDeleteOrTruncatePrivilege(t *testing.T) {
	_, s := newStore(t)
	rows, err := s.pool.Query(context.Background(), `
		SELECT grantee, table_name, privilege_type FROM information_schema.role_table_grants
		WHERE table_schema = 'privata_audit' AND privilege_type IN ('UPDATE', 'DELETE', 'TRUNCATE')`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var who, table, priv string
		if err := rows.Scan(&who, &table, &priv); err != nil {
			t.Fatal(err)
		}
		t.Errorf("%s has %s on privata_audit.%s", who, priv, table)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
}

func TestChangeChainResumesAndReportsProgress(t *testing.T) {
	_, s := newStore(t)
	ctx := context.Background()
	ch, p, err := s.OpenChangeChain(ctx, ChainOptions{Source: "us"})
	if err != nil {
		t.Fatal(err)
	}
	if p != (Progress{}) {
		t.Fatalf("progress of a new consumer: %+v, want zero", p)
	}
	subject := randomPseudonym()
	if err := ch.Write(ctx, sampleChanges(0x5000, 4, subject)); err != nil {
		t.Fatal(err)
	}
	ch2, p, err := s.OpenChangeChain(ctx, ChainOptions{Source: "us"})
	if err != nil {
		t.Fatal(err)
	}
	if ch2.Name() != ch.Name() || p != (Progress{LSN: 0x5000, Ordinal: 3}) {
		t.Fatalf("reopened: chain %s progress %+v, want chain %s at 0/5000 #3", ch2.Name(), p,
			ch.Name())
	}
	if err := ch2.Write(ctx, sampleChanges(0x6000, 2, subject)); err != nil {
		t.Fatal(err)
	}
	// A key configured later starts a new chain; progress carries over.
	key := []byte("k3y-0123456789abcdef")
	ch3, p, err := s.OpenChangeChain(ctx, ChainOptions{Source: "us", Key: key})
	if err != nil {
		t.Fatal(err)
	}
	if ch3.Name() == ch.Name() || p != (Progress{LSN: 0x6000, Ordinal: 1}) {
		t.Fatalf("with a key: chain %s progress %+v, want a new chain at 0/6000 #1", ch3.Name(), p)
	}
	reps, err := s.Verify(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []ProblemKind
	for _, r := range reps {
		if r.Problem != nil {
			kinds = append(kinds, r.Problem.Kind)
		}
	}
	if len(reps) != 2 || !reps[0].OK() || !slices.Equal(kinds, []ProblemKind{WrongKey}) {
		t.Fatalf("verify without the key: %v, want the unkeyed chain ok and the keyed one "+
			"reported as needing its key", reps)
	}
}
