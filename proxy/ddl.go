package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/privata/privata/fdw"
	"github.com/privata/privata/policy"
	"github.com/privata/privata/rewrite"
	"github.com/privata/privata/storage"
)

// Migrations through Privata. A CREATE TABLE of a table the policy
// classifies runs as the application wrote it, so that its constraints,
// defaults, serial and identity columns are PostgreSQL's own; then, in the
// same transaction on the same upstream connection (an implicit one when
// the client is not in a transaction block), the storage planner adopts
// the new, empty table into split storage (storage.ApplyTx), before the
// client gets its CommandComplete. A table already split makes CREATE
// TABLE IF NOT EXISTS a no-op with PostgreSQL's own notice, since its
// name is then a view. Other DDL on a split table (package rewrite says
// which) runs on its base tables as the session's upstream user, and the
// planner derives the table's views, triggers and grants again.
//
// The storage planner speaks pgx; it gets a pgx connection (ownConn) whose
// other end is served here: each of its queries is written to the home
// connection as a hidden entry of the relay, after everything the client
// sent, and the whole answer goes back to it instead of to the client.
// The planner runs as the session's upstream user (the role the client
// runs as may not own Privata's schemas); the client's statement runs as
// the client's role.

// ownDDL carries out a simple Query holding DDL on classified tables (or a
// DROP INDEX, whose table only the catalog says), statement by statement.
// handled is false when the Query is to be forwarded as it is: in a failed
// transaction block, where PostgreSQL refuses it, and for a DROP INDEX
// when the cluster's storage is unknown.
func (s *session) ownDDL(script *ddlScript) (handled bool, err error) {
	status, err := s.drain()
	if err != nil {
		return true, err
	}
	if status == 'E' {
		return false, nil
	}
	if s.srv.storage == nil {
		if !script.tables() {
			return false, nil
		}
		d := script.first()
		return true, s.refuseQuery(&Error{Code: codeFeatureNotSupport, Message: fmt.Sprintf("%s on "+
			"%s, which the policy classifies, is not supported: Privata does not know the storage of "+
			"cluster %s", d.Tag, d.Name(), s.srv.upstreamCluster)})
	}
	ctx := context.Background()
	var notices []*pgconn.Notice
	collect := false
	conn, err := s.ownConn(ctx, status, func(n *pgconn.Notice) {
		if collect {
			notices = append(notices, n)
		}
	})
	if err != nil {
		return true, err
	}
	defer conn.Close(ctx)
	implicit := status == 'I'
	var out []byte
	flushNotices := func() {
		for _, n := range notices {
			out = append(out, encodeMessage((*pgproto3.NoticeResponse)(noticeMessage(n)))...)
		}
		notices = nil
	}
	var e *Error
	if implicit {
		if _, err := conn.Exec(ctx, "BEGIN"); err != nil {
			e = pgError(err, "begin")
		}
	}
	// The statements run in order, in one transaction, as PostgreSQL runs
	// those of one Query; the first error ends them.
	for _, st := range script.steps {
		if e != nil {
			break
		}
		var answer []byte
		if st.ddl != nil {
			var tag string
			run := s.runDDL
			if st.ddl.Index != nil {
				run = s.dropIndex
			}
			if tag, e = run(ctx, conn, st.ddl, &collect); e == nil {
				answer = encodeMessage(&pgproto3.CommandComplete{CommandTag: []byte(tag)})
			}
		} else {
			answer, e = s.runPlain(ctx, conn, st.text, &collect)
		}
		flushNotices()
		out = append(out, answer...)
	}
	if e == nil && implicit {
		if _, err := conn.Exec(ctx, "COMMIT"); err != nil {
			e = pgError(err, "commit")
		}
	}
	if e != nil {
		if implicit {
			conn.Exec(ctx, "ROLLBACK")
		} else if !s.failed() {
			// A refusal of Privata's own (the planner's): the client's
			// transaction block fails as it would on PostgreSQL's error.
			conn.Exec(ctx, standIn)
		}
		out = append(out, e.encode()...)
	} else {
		if !implicit {
			s.homeWrote.Store(true)
		}
		s.ddlWrote(script)
		out = append(out, s.otherClusters(script)...)
	}
	out = append(out, encodeMessage(&pgproto3.ReadyForQuery{TxStatus: byte(s.txStatus.Load())})...)
	return true, s.toClient(out)
}

// otherClusters is the notice that DDL on classified tables changed the
// session's own cluster only, when the configuration has others: DDL is
// not routed between regions, and each region's cluster holds the same
// schema.
func (s *session) otherClusters(script *ddlScript) []byte {
	if s.srv.opts.Router == nil || !script.tables() {
		return nil
	}
	var others []string
	for _, p := range s.srv.opts.Router.Topo.Peers {
		if p.Target.Name != s.srv.home {
			others = append(others, p.Server)
		}
	}
	if len(others) == 0 {
		return nil
	}
	return encodeMessage(&pgproto3.NoticeResponse{Severity: "NOTICE", SeverityUnlocalized: "NOTICE",
		Code: "00000", Message: fmt.Sprintf("Privata changed the tables of region %s only; the "+
			"clusters of regions %s need the same DDL", s.regionOf(s.srv.home), strings.Join(others, ", ")),
		Hint: "Run the migration through a Privata of each region (server.region), then privata apply."})
}

// ddlWrote counts the script's classified tables as written, for the read
// cache: their answers are dropped when the transaction commits, as after
// any write through the session.
func (s *session) ddlWrote(script *ddlScript) {
	if rp := s.srv.read; rp == nil || rp.cache == nil {
		return
	}
	s.cwMu.Lock()
	defer s.cwMu.Unlock()
	for _, st := range script.steps {
		if st.ddl != nil && st.ddl.Table != nil {
			s.rs.pendingWrites = append(s.rs.pendingWrites, st.ddl.Table.QualifiedName())
		}
	}
	if s.txStatus.Load() == 'I' {
		s.readReady('I')
	}
}

// ddlScript is a Query holding DDL on classified tables, which Privata
// runs itself statement by statement: ORMs send migration files whole.
type ddlScript struct {
	steps []ddlStep
}

// ddlStep is one statement of a ddlScript: DDL on a classified table, or
// a statement that names no classified table, run as it is.
type ddlStep struct {
	ddl  *rewrite.TableDDL
	text string
}

func (sc *ddlScript) first() *rewrite.TableDDL {
	for _, st := range sc.steps {
		if st.ddl != nil {
			return st.ddl
		}
	}
	return nil
}

// tables reports whether the script holds DDL on a classified table (not
// only DROP INDEX, whose table the catalog says).
func (sc *ddlScript) tables() bool {
	for _, st := range sc.steps {
		if st.ddl != nil && st.ddl.Table != nil {
			return true
		}
	}
	return false
}

// dropIndex carries out DROP INDEX and ALTER INDEX ... RENAME TO: of an
// index of a split table's base table, which the application created
// through Privata and names as its own, as the session's upstream user; of
// any other, as the client wrote it.
func (s *session) dropIndex(ctx context.Context, conn *pgx.Conn, d *rewrite.TableDDL,
	collect *bool) (string, *Error) {
	ix := *d.Index
	var visible bool
	name := pgx.Identifier{ix[1]}
	if ix[0] != "" {
		name = pgx.Identifier{ix[0], ix[1]}
	}
	if err := conn.QueryRow(ctx, "SELECT pg_catalog.to_regclass($1) IS NOT NULL",
		name.Sanitize()).Scan(&visible); err != nil {
		return "", pgError(err, "read the catalog")
	}
	var t *policy.Table
	var schema string
	if !visible && ix[0] != storage.IdentitySchema && ix[0] != storage.ClinicalSchema {
		var table string
		err := conn.QueryRow(ctx, `SELECT n.nspname, t.relname FROM pg_catalog.pg_index x
			JOIN pg_catalog.pg_class i ON i.oid = x.indexrelid
			JOIN pg_catalog.pg_class t ON t.oid = x.indrelid
			JOIN pg_catalog.pg_namespace n ON n.oid = i.relnamespace
			WHERE i.relname = $1 AND n.nspname IN ($2, $3)`, ix[1], storage.IdentitySchema,
			storage.ClinicalSchema).Scan(&schema, &table)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return "", pgError(err, "read the catalog")
		}
		for _, pt := range s.srv.pol.Tables {
			if pt.Name == table && (ix[0] == "" || ix[0] == pt.Schema) {
				t = pt
			}
		}
	}
	if t == nil {
		*collect = true
		ct, err := conn.Exec(ctx, d.Text())
		*collect = false
		if err != nil {
			return "", pgError(err, "")
		}
		return ct.String(), nil
	}
	sql := "DROP INDEX "
	if d.NewName != "" {
		sql = "ALTER INDEX "
	}
	if d.IfExists {
		sql += "IF EXISTS "
	}
	sql += pgx.Identifier{schema, ix[1]}.Sanitize()
	switch {
	case d.NewName != "":
		sql += " RENAME TO " + pgx.Identifier{d.NewName}.Sanitize()
	case d.Cascade:
		sql += " CASCADE"
	}
	dd := *d
	dd.Table = t
	if e := s.mayChange(ctx, conn, t); e != nil {
		return "", e
	}
	if _, err := conn.Exec(ctx, "SET ROLE "+pgx.Identifier{storage.Owner}.Sanitize()); err != nil {
		return "", pgError(err, "set role")
	}
	*collect = true
	_, err := conn.Exec(ctx, sql)
	*collect = false
	if err != nil {
		return "", pgError(err, "")
	}
	if _, err := conn.Exec(ctx, "RESET ROLE"); err != nil {
		return "", pgError(err, "reset role")
	}
	if e := s.derive(ctx, conn, &dd); e != nil {
		return "", e
	}
	return d.Tag, nil
}

// runPlain runs a statement that names no classified table, as the
// client's role, and returns its answer for the client.
func (s *session) runPlain(ctx context.Context, conn *pgx.Conn, text string, collect *bool) ([]byte, *Error) {
	*collect = true
	res, err := conn.PgConn().Exec(ctx, text).ReadAll()
	*collect = false
	if err != nil {
		return nil, pgError(err, "")
	}
	var out []byte
	for _, r := range res {
		if len(r.FieldDescriptions) > 0 {
			fields := make([]pgproto3.FieldDescription, len(r.FieldDescriptions))
			for i, f := range r.FieldDescriptions {
				fields[i] = pgproto3.FieldDescription{Name: []byte(f.Name), TableOID: f.TableOID,
					TableAttributeNumber: f.TableAttributeNumber, DataTypeOID: f.DataTypeOID,
					DataTypeSize: f.DataTypeSize, TypeModifier: f.TypeModifier, Format: f.Format}
			}
			out = append(out, encodeMessage(&pgproto3.RowDescription{Fields: fields})...)
			for _, row := range r.Rows {
				out = append(out, encodeMessage(&pgproto3.DataRow{Values: row})...)
			}
		}
		out = append(out, encodeMessage(&pgproto3.CommandComplete{CommandTag: []byte(r.CommandTag.String())})...)
	}
	return out, nil
}

// failed reports whether the home connection's transaction block failed.
func (s *session) failed() bool { return s.txStatus.Load() == 'E' }

// runDDL carries out the client's DDL on a classified table and has the
// storage planner adopt or derive the table again; it returns the command
// tag, or the error to answer with.
func (s *session) runDDL(ctx context.Context, conn *pgx.Conn, d *rewrite.TableDDL,
	collect *bool) (string, *Error) {
	split := map[*policy.Table]bool{}
	for _, t := range append([]*policy.Table{d.Table}, d.References...) {
		var v bool
		// Split: registered by Privata, its name a view.
		err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT FROM privata.tables r
			JOIN pg_catalog.pg_namespace n ON n.nspname = r.schema_name
			JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = r.table_name
			WHERE r.schema_name = $1 AND r.table_name = $2 AND c.relkind = 'v')`, t.Schema, t.Name).Scan(&v)
		if err != nil {
			return "", pgError(err, "read the catalog")
		}
		split[t] = v
	}
	isSplit := func(t *policy.Table) bool { return split[t] }
	var tag string
	if d.Create || !split[d.Table] {
		// A table that is not split yet (or is being created) is the
		// application's own: its statement runs as it wrote it.
		sql, bases, err := d.SQL(isSplit)
		if err != nil {
			return "", &Error{Code: rewrite.CodeInternalError, Message: "CREATE TABLE rewrite failed"}
		}
		// The policy's roles may not refer to base tables: the client's
		// role may for the time of its statement, in the transaction.
		granted, e := s.grantReferences(ctx, conn, bases)
		if e != nil {
			return "", e
		}
		*collect = true
		ct, err := conn.Exec(ctx, sql)
		*collect = false
		if err != nil {
			return "", pgError(err, "")
		}
		tag = ct.String()
		if _, err := conn.Exec(ctx, "RESET ROLE"); err != nil {
			return "", pgError(err, "reset role")
		}
		role := pgx.Identifier{s.role.PGRole}.Sanitize()
		for _, b := range granted {
			if _, err := conn.Exec(ctx, "REVOKE REFERENCES ON "+b+" FROM "+role); err != nil {
				return "", pgError(err, "revoke")
			}
		}
	} else {
		if e := s.changeSplit(ctx, conn, d, isSplit, collect); e != nil {
			return "", e
		}
		tag = d.Tag
	}
	if e := s.derive(ctx, conn, d); e != nil {
		return "", e
	}
	return tag, nil
}

// derive has the storage planner adopt the tables the policy classifies
// that are plain, and derive again what changed, as the session's upstream
// user; then the session takes on the client's role again.
func (s *session) derive(ctx context.Context, conn *pgx.Conn, d *rewrite.TableDDL) *Error {
	if e := s.crossRegion(ctx, conn, false); e != nil {
		return e
	}
	if _, err := storage.ApplyTx(ctx, ownTx{conn}, s.srv.pol, *s.srv.storage, storage.AllowMissing()); err != nil {
		var se storage.Errors
		var one *storage.Error
		switch {
		case errors.As(err, &se) || errors.As(err, &one):
			return &Error{Code: codeFeatureNotSupport, Message: fmt.Sprintf("table %s, which the "+
				"policy classifies, cannot be split: %v", d.Table.QualifiedName(), err)}
		}
		e := pgError(err, "splitting table "+d.Table.QualifiedName())
		if e.Code == codeInsufficientPriv {
			e.Hint = "Privata splits a table created through it as the user of the cluster's " +
				"session_url, which needs the rights privata apply has: make it the user of the " +
				"cluster's url, or a superuser."
		}
		return e
	}
	if e := s.crossRegion(ctx, conn, true); e != nil {
		return e
	}
	if _, err := conn.Exec(ctx, s.setRole); err != nil {
		return pgError(err, "set role")
	}
	return nil
}

// crossRegion runs the cross-region part of apply (package fdw) around
// the split storage's: before, the views other clusters read through
// postgres_fdw, which block changes of the views they read, are dropped;
// after, they are made again for the tables as they now are. It runs as
// the session's upstream user, and leaves the transaction's search_path
// as it found it. Nothing to do with one cluster.
func (s *session) crossRegion(ctx context.Context, conn *pgx.Conn, after bool) *Error {
	if s.srv.opts.Router == nil {
		return nil
	}
	var path string
	if err := conn.QueryRow(ctx, "SELECT pg_catalog.current_setting('search_path')").Scan(&path); err != nil {
		return pgError(err, "read search_path")
	}
	tx := ownTx{conn}
	fp, err := fdw.PlanTx(ctx, tx, fdw.Input{Topology: s.srv.opts.Router.Topo, Target: s.srv.home,
		SplitChanges: true, AllowMissing: true})
	if err == nil {
		err = fdw.Run(ctx, tx, fp.Before)
	}
	if err == nil && after {
		err = fdw.Run(ctx, tx, fp.After)
	}
	if err != nil {
		return pgError(err, "cross-region objects")
	}
	if _, err := conn.Exec(ctx, "SELECT pg_catalog.set_config('search_path', $1, true)", path); err != nil {
		return pgError(err, "restore search_path")
	}
	return nil
}

// mayChange refuses the client's role a change of split table t unless it
// has full access to identity and clinical data and may create tables in
// t's schema: the application's view belongs to Privata.
func (s *session) mayChange(ctx context.Context, conn *pgx.Conn, t *policy.Table) *Error {
	// The statements on the base tables run as their owner, who reads
	// every value: the role must have full access to all of them.
	if s.role.AccessTo(policy.Identity) != policy.Full || s.role.AccessTo(policy.Clinical) != policy.Full {
		return &Error{Code: codeInsufficientPriv, Message: fmt.Sprintf("permission denied to change "+
			"table %s: role %s does not have full access to identity and clinical data", t.QualifiedName(),
			s.role.Name), Hint: "Run migrations as a role the policy gives full access to both."}
	}
	var may bool
	if err := conn.QueryRow(ctx, "SELECT pg_catalog.has_schema_privilege($1, 'CREATE')",
		t.Schema).Scan(&may); err != nil {
		return pgError(err, "read privileges")
	}
	if !may {
		return &Error{Code: codeInsufficientPriv, Message: fmt.Sprintf("permission denied to change "+
			"table %s: role %s may not create tables in schema %s", t.QualifiedName(), s.role.PGRole,
			t.Schema)}
	}
	return nil
}

// changeSplit carries out DDL on a split table on its base tables, as the
// session's upstream user. The application's view belongs to Privata: the
// client's role may change the table when it may create tables in the
// table's schema.
func (s *session) changeSplit(ctx context.Context, conn *pgx.Conn, d *rewrite.TableDDL,
	isSplit func(*policy.Table) bool, collect *bool) *Error {
	t := d.Table
	if e := s.mayChange(ctx, conn, t); e != nil {
		return e
	}
	if _, err := conn.Exec(ctx, "RESET ROLE"); err != nil {
		return pgError(err, "reset role")
	}
	var sqls, after []string
	if d.Drop {
		after = []string{storage.UnregisterSQL(t)}
		sqls = []string{storage.DropSQL(t, d.Cascade)}
	} else {
		// Which base table holds each of the table's constraints.
		held := map[string]string{}
		rows, err := conn.Query(ctx, `SELECT n.nspname, k.conname FROM pg_catalog.pg_constraint k
			JOIN pg_catalog.pg_class c ON c.oid = k.conrelid
			JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
			WHERE c.relname = $1 AND n.nspname IN ($2, $3)`, t.Name, storage.IdentitySchema,
			storage.ClinicalSchema)
		if err != nil {
			return pgError(err, "read the catalog")
		}
		for rows.Next() {
			var schema, name string
			if err := rows.Scan(&schema, &name); err != nil {
				return pgError(err, "read the catalog")
			}
			held[name] = schema
		}
		if err := rows.Err(); err != nil {
			return pgError(err, "read the catalog")
		}
		base, re := d.Base(isSplit, func(name string) string { return held[name] })
		if re != nil {
			return &Error{Code: re.SQLState, Message: re.Message, Hint: re.Hint}
		}
		if d.DropViews {
			sqls = append(sqls, storage.DropViewsSQL(t))
		}
		if r := d.RenamedColumn; r != nil {
			after = append(after, storage.RenameColumnSQL(t, r[0], r[1]))
		}
		sqls = append(sqls, base...)
	}
	if e := s.crossRegion(ctx, conn, false); e != nil {
		return e
	}
	// The statements run as the owner of the base tables and views, not as
	// the session's upstream user: expressions in them (a new column's
	// default, a check, USING) run with no more rights than Privata's own
	// objects have.
	if _, err := conn.Exec(ctx, "SET ROLE "+pgx.Identifier{storage.Owner}.Sanitize()); err != nil {
		return pgError(err, "set role")
	}
	for i, sql := range sqls {
		*collect = i == len(sqls)-1
		_, err := conn.Exec(ctx, sql)
		*collect = false
		if err != nil {
			return pgError(err, "")
		}
	}
	if _, err := conn.Exec(ctx, "RESET ROLE"); err != nil {
		return pgError(err, "reset role")
	}
	for _, sql := range after {
		if _, err := conn.Exec(ctx, sql); err != nil {
			return pgError(err, "unregister")
		}
	}
	return nil
}

// grantReferences grants the client's role REFERENCES on the base tables
// that it lacks it on, and returns those.
func (s *session) grantReferences(ctx context.Context, conn *pgx.Conn, bases [][2]string) ([]string, *Error) {
	if len(bases) == 0 {
		return nil, nil
	}
	if _, err := conn.Exec(ctx, "RESET ROLE"); err != nil {
		return nil, pgError(err, "reset role")
	}
	role := pgx.Identifier{s.role.PGRole}.Sanitize()
	var granted []string
	for _, b := range bases {
		name := pgx.Identifier{b[0], b[1]}.Sanitize()
		var has bool
		if err := conn.QueryRow(ctx, "SELECT pg_catalog.has_table_privilege($1, $2, 'REFERENCES')",
			s.role.PGRole, name).Scan(&has); err != nil {
			return nil, pgError(err, "read privileges")
		}
		if has {
			continue
		}
		if _, err := conn.Exec(ctx, "GRANT REFERENCES ON "+name+" TO "+role); err != nil {
			return nil, pgError(err, "grant")
		}
		granted = append(granted, name)
	}
	if _, err := conn.Exec(ctx, s.setRole); err != nil {
		return nil, pgError(err, "set role")
	}
	return granted, nil
}

// pgError turns an error of a statement run on the home connection into
// the client's error: PostgreSQL's own, prefixed with what Privata was
// doing when it was not the client's statement.
func pgError(err error, doing string) *Error {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		if doing == "" {
			doing = "the statement"
		}
		return &Error{Code: rewrite.CodeInternalError, Message: doing + " failed: " + err.Error()}
	}
	e := &Error{Code: pe.Code, Message: pe.Message, Detail: pe.Detail, Hint: pe.Hint}
	if doing == "" {
		e.Position = pe.Position
	} else {
		e.Message = doing + ": " + e.Message
	}
	return e
}

// noticeMessage is a notice as the client gets it.
func noticeMessage(n *pgconn.Notice) *pgproto3.ErrorResponse {
	return &pgproto3.ErrorResponse{Severity: n.Severity, SeverityUnlocalized: n.SeverityUnlocalized,
		Code: n.Code, Message: n.Message, Detail: n.Detail, Hint: n.Hint, Position: n.Position,
		Where: n.Where, SchemaName: n.SchemaName, TableName: n.TableName, ColumnName: n.ColumnName,
		DataTypeName: n.DataTypeName, ConstraintName: n.ConstraintName, File: n.File,
		Line: n.Line, Routine: n.Routine}
}

// ownConn returns a pgx connection whose statements run on the home
// connection after everything the client sent, in the simple protocol,
// their answers going to it instead of the client. status is the home
// connection's transaction status.
func (s *session) ownConn(ctx context.Context, status byte, notice func(*pgconn.Notice)) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig("host=privata-home user=privata dbname=privata sslmode=disable")
	if err != nil {
		return nil, err
	}
	client, server := net.Pipe()
	cfg.LookupFunc = func(context.Context, string) ([]string, error) { return []string{"privata-home"}, nil }
	cfg.DialFunc = func(context.Context, string, string) (net.Conn, error) { return client, nil }
	cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	cfg.StatementCacheCapacity, cfg.DescriptionCacheCapacity = 0, 0
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) { notice(n) }
	cfg.ConnectTimeout = 0
	go s.serveOwn(server, status)
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		server.Close()
		return nil, fmt.Errorf("privata's own connection: %w", err)
	}
	return conn, nil
}

// serveOwn serves ownConn's connection: a startup answered here, then
// each Query run on the home connection as a hidden entry whose answer
// comes back whole (relayOwn).
func (s *session) serveOwn(c net.Conn, status byte) {
	defer c.Close()
	be := pgproto3.NewBackend(c, c)
	if _, err := be.ReceiveStartupMessage(); err != nil {
		return
	}
	be.Send(&pgproto3.AuthenticationOk{})
	for _, p := range [][2]string{{"client_encoding", "UTF8"}, {"standard_conforming_strings", "on"},
		{"DateStyle", "ISO, MDY"}, {"integer_datetimes", "on"}, {"server_encoding", "UTF8"}} {
		be.Send(&pgproto3.ParameterStatus{Name: p[0], Value: p[1]})
	}
	be.Send(&pgproto3.BackendKeyData{SecretKey: make([]byte, 4)})
	be.Send(&pgproto3.ReadyForQuery{TxStatus: status})
	if be.Flush() != nil {
		return
	}
	for {
		msg, err := be.Receive()
		if err != nil {
			return
		}
		q, ok := msg.(*pgproto3.Query)
		if !ok {
			return // Terminate, or a message Privata's planner does not send
		}
		ch := make(chan []byte, 1)
		if err := s.push(entry{kind: kQuery, hidden: true, quiet: true, own: ch}); err != nil {
			return
		}
		s.writeQuery(q.String)
		if s.uw.Flush() != nil {
			return
		}
		select {
		case answer := <-ch:
			if _, err := c.Write(answer); err != nil {
				return
			}
		case <-s.backExit:
			return
		}
	}
}

// relayOwn collects the answer of a query of ownConn, and hands it over
// at ReadyForQuery.
func (s *session) relayOwn(e *entry, typ byte, n int) error {
	body, err := s.ur.body(n)
	if err != nil {
		return s.upstreamLost(err)
	}
	s.ownAnswer = appendMessage(s.ownAnswer, typ, body)
	switch typ {
	case 'C':
		s.trackTransaction(body)
	case 'E':
		if isFatal(body) {
			s.sawFatal = true
		}
	case 'Z':
		if len(body) != 1 {
			return s.upstreamLost(errors.New("malformed ReadyForQuery"))
		}
		s.txStatus.Store(uint32(body[0]))
		if body[0] == 'I' {
			s.homeWrote.Store(false)
		}
		e.own <- s.ownAnswer
		s.ownAnswer = nil
		s.pop()
	}
	return nil
}

// ownTx is ownConn's connection as the pgx.Tx of a transaction it is in:
// the storage planner runs in the client's transaction (or the one
// ownDDL opened), which it neither commits nor rolls back.
type ownTx struct{ c *pgx.Conn }

var errOwnTx = errors.New("privata's own connection runs in the client's transaction")

func (t ownTx) Begin(context.Context) (pgx.Tx, error) { return nil, errOwnTx }
func (t ownTx) Commit(context.Context) error          { return errOwnTx }
func (t ownTx) Rollback(context.Context) error        { return errOwnTx }
func (t ownTx) CopyFrom(ctx context.Context, name pgx.Identifier, cols []string,
	src pgx.CopyFromSource) (int64, error) {
	return t.c.CopyFrom(ctx, name, cols, src)
}
func (t ownTx) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	return t.c.SendBatch(ctx, b)
}
func (t ownTx) LargeObjects() pgx.LargeObjects { return pgx.LargeObjects{} }
func (t ownTx) Prepare(ctx context.Context, name, sql string) (*pgconn.StatementDescription, error) {
	return t.c.Prepare(ctx, name, sql)
}
func (t ownTx) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	return t.c.Exec(ctx, sql, args...)
}
func (t ownTx) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	return t.c.Query(ctx, sql, args...)
}
func (t ownTx) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	return t.c.QueryRow(ctx, sql, args...)
}
func (t ownTx) Conn() *pgx.Conn { return t.c }

// ddlRefusal refuses DDL on a classified table sent in a way Privata does
// not carry out.
func ddlRefusal(d *rewrite.TableDDL, how string) *Error {
	return &Error{Code: codeFeatureNotSupport, Message: fmt.Sprintf("%s on %s, which "+
		"Privata splits into identity and clinical storage, is not supported %s", d.Tag,
		d.Name(), how), Hint: "Send it as a simple query of its own."}
}

// tableDDL returns the ddlScript of a text holding DDL on a classified
// table, or nil; or the refusal of DDL Privata does not carry out on such
// a table. In a text of several statements, the others may be DDL or
// statements that name no classified table and change nothing of the
// session; transaction control is refused there.
func (s *session) tableDDL(text []byte, an *rewrite.Analysis) (*ddlScript, *Error) {
	sc := &ddlScript{}
	found := false
	for i, st := range an.Statements {
		step := ddlStep{text: statementText(string(text), st)}
		if st.Kind == rewrite.DDL {
			d, re := rewrite.ClassifiedDDL(string(text), i, s.srv.pol, s.searchPath)
			if re != nil {
				return nil, &Error{Code: re.SQLState, Message: re.Message, Hint: re.Hint}
			}
			step.ddl, found = d, found || d != nil
		}
		sc.steps = append(sc.steps, step)
	}
	if !found {
		return nil, nil
	}
	for i, st := range an.Statements {
		if sc.steps[i].ddl != nil || len(an.Statements) == 1 {
			continue
		}
		c := rewrite.Classify(st, s.srv.pol, s.searchPath)
		if st.Kind == rewrite.Transaction || len(c.Tables) > 0 || len(st.Settings) > 0 ||
			st.ResetsSession || st.RoleChange != "" || st.Kind == rewrite.CopyFrom || st.Kind == rewrite.CopyTo {
			return nil, ddlRefusal(sc.first(), "in a message with this other statement: "+st.Tag)
		}
	}
	return sc, nil
}

// statementText is the text of one statement of a text.
func statementText(text string, st *rewrite.Statement) string {
	end := len(text)
	if st.Length > 0 && st.Location+st.Length <= len(text) {
		end = st.Location + st.Length
	}
	return text[st.Location:end]
}
