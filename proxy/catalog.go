package proxy

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/privata/privata/rewrite"
)

// Catalog emulation (package rewrite, catalog.go; sql/0005_catalog.sql):
// on a database with split tables, statements that read the catalogs ORMs
// introspect are rewritten to read privata_catalog's emulations, which
// show each split table as the plain table the application created. On a
// database without split tables they pass through as they are.
//
// Whether there are split tables is checked once per connection. A
// session that finds them, or runs DDL on a table the policy classifies
// (which leaves split storage behind), turns emulation on for every
// session of the server, also those opened before: an ORM migrates on one
// pooled connection and compares schemas on another. Emulating the
// catalogs of a database without split tables changes nothing but speed.

// catalogCheck tells whether the emulations are installed, and whether
// the database has split tables (every split table has a clinical base
// table). It reads only pg_class and pg_namespace, which every role may.
const catalogCheck = `SELECT
    EXISTS (SELECT FROM pg_catalog.pg_class c
            JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = 'privata_catalog' AND c.relname = 'pg_class'),
    EXISTS (SELECT FROM pg_catalog.pg_class c
            JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = 'privata_clinical' AND c.relkind IN ('r', 'p'))`

// checkCatalog runs catalogCheck on the new upstream connection, once per
// session.
func (s *session) checkCatalog(ctx context.Context, pc *pgconn.PgConn) error {
	res, err := pc.Exec(ctx, catalogCheck).ReadAll()
	if err != nil {
		return fmt.Errorf("check for split tables: %w", err)
	}
	if len(res) != 1 || len(res[0].Rows) != 1 || len(res[0].Rows[0]) != 2 {
		return fmt.Errorf("check for split tables: unexpected answer")
	}
	row := res[0].Rows[0]
	s.catalogInstalled = string(row[0]) == "t"
	if s.catalogInstalled && string(row[1]) == "t" {
		s.srv.splitSeen.Store(true)
	}
	return nil
}

// emulatesCatalog reports whether the session's catalog queries read the
// emulations.
func (s *session) emulatesCatalog() bool {
	return s.catalogInstalled && s.srv.splitSeen.Load()
}

// noteSplitDDL turns catalog emulation on once a session runs DDL on a
// table the policy classifies (the statement has not run yet).
func (s *session) noteSplitDDL(st *rewrite.Statement, c rewrite.Classification) {
	if st.Kind == rewrite.DDL && len(c.Tables) > 0 {
		s.srv.splitSeen.Store(true)
	}
}
