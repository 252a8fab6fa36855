package rewrite

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/privata/privata/internal/pgtest"
)

// These tests hold the analysis to what PostgreSQL itself does: the tags it
// reports, and whether a statement really changes the session's role.

// roleSetup creates the roles the tests switch to; roles are cluster-wide.
const roleSetup = `
DO $$BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'privata_other') THEN
    CREATE ROLE privata_other;
  END IF;
END$$`

// caseConn opens a connection to db whose search_path is a fresh schema
// holding baseSchema's tables.
func caseConn(t *testing.T, db *pgtest.DB, i int) *pgx.Conn {
	t.Helper()
	conn := db.Connect(t)
	schema := fmt.Sprintf("case_%d", i)
	mustExec(t, conn, "CREATE SCHEMA "+schema+"; SET search_path = "+schema)
	mustExec(t, conn, strings.ReplaceAll(baseSchema, "CREATE ROLE privata_other;", ""))
	return conn
}

func mustExec(t *testing.T, conn *pgx.Conn, sql string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := conn.PgConn().Exec(ctx, sql).ReadAll(); err != nil {
		t.Fatalf("exec %q: %v", sql, err)
	}
}

// reportedTag runs one statement and returns PostgreSQL's command tag
// without its row counts.
func reportedTag(t *testing.T, conn *pgx.Conn, sql string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	results, err := conn.PgConn().Exec(ctx, sql).ReadAll()
	if err != nil {
		t.Fatalf("exec %q: %v", sql, err)
	}
	if len(results) != 1 {
		t.Fatalf("exec %q: %d results", sql, len(results))
	}
	words := strings.Fields(results[0].CommandTag.String())
	for len(words) > 1 && strings.Trim(words[len(words)-1], "0123456789") == "" {
		words = words[:len(words)-1]
	}
	return strings.Join(words, " ")
}

func TestTagsMatchPostgreSQL(t *testing.T) {
	db := pgtest.NewDB(t, pgtest.Shared(t))
	mustExec(t, db.Connect(t), roleSetup)
	a := NewAnalyzer(0)
	ran := 0
	for i, c := range tagCases {
		if c.noRun != "" {
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			conn := caseConn(t, db, i)
			if c.setup != "" {
				mustExec(t, conn, c.setup)
			}
			want := c.tag
			if c.reported != "" {
				want = c.reported
			}
			if got := reportedTag(t, conn, c.sql); got != want {
				t.Fatalf("PostgreSQL reports %q, the case says %q", got, want)
			}
			if st := analyzeOne(t, a, c.sql); st.Tag != c.tag {
				t.Fatalf("Analyze says %q, the case says %q", st.Tag, c.tag)
			}
		})
		ran++
	}
	if ran < len(tagCases)*3/4 {
		t.Fatalf("only %d of %d cases ran against PostgreSQL", ran, len(tagCases))
	}
}
