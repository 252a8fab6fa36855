package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

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
// name is then a view.
//
// The storage planner speaks pgx; it gets a pgx connection (ownConn) whose
// other end is served here: each of its queries is written to the home
// connection as a hidden entry of the relay, after everything the client
// sent, and the whole answer goes back to it instead of to the client.
// The planner runs as the session's upstream user (the role the client
// runs as may not own Privata's schemas); the client's statement runs as
// the client's role.

// ownDDL carries out a simple Query holding one statement that creates a
// classified table. handled is false when the Query is to be forwarded
// as it is: in a failed transaction block, where PostgreSQL refuses it.
func (s *session) ownDDL(d *rewrite.TableDDL) (handled bool, err error) {
	status, err := s.drain()
	if err != nil {
		return true, err
	}
	if status == 'E' {
		return false, nil
	}
	if s.srv.storage == nil {
		return true, s.refuseQuery(&Error{Code: codeFeatureNotSupport, Message: fmt.Sprintf("CREATE "+
			"TABLE of %s, which the policy classifies, is not supported: Privata does not know the "+
			"storage of cluster %s", d.Table.QualifiedName(), s.srv.upstreamCluster)})
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
	tag, e := s.createTable(ctx, conn, d, implicit, &collect)
	if e != nil {
		if implicit {
			conn.Exec(ctx, "ROLLBACK")
		} else if !s.failed() {
			// A refusal of Privata's own (the planner's): the client's
			// transaction block fails as it would on PostgreSQL's error.
			conn.Exec(ctx, standIn)
		}
		b := e.encode()
		b = append(b, encodeMessage(&pgproto3.ReadyForQuery{TxStatus: byte(s.txStatus.Load())})...)
		return true, s.toClient(b)
	}
	if !implicit {
		s.homeWrote.Store(true)
	}
	var b []byte
	for _, n := range notices {
		b = append(b, encodeMessage((*pgproto3.NoticeResponse)(noticeMessage(n)))...)
	}
	b = append(b, encodeMessage(&pgproto3.CommandComplete{CommandTag: []byte(tag)})...)
	b = append(b, encodeMessage(&pgproto3.ReadyForQuery{TxStatus: byte(s.txStatus.Load())})...)
	return true, s.toClient(b)
}

// failed reports whether the home connection's transaction block failed.
func (s *session) failed() bool { return s.txStatus.Load() == 'E' }

// createTable runs the client's CREATE TABLE and adopts the table; it
// returns the command tag, or the error to answer with.
func (s *session) createTable(ctx context.Context, conn *pgx.Conn, d *rewrite.TableDDL, implicit bool,
	collect *bool) (string, *Error) {
	if implicit {
		if _, err := conn.Exec(ctx, "BEGIN"); err != nil {
			return "", pgError(err, "begin")
		}
	}
	split := map[*policy.Table]bool{}
	for _, t := range d.References {
		var v bool
		err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pg_catalog.pg_class c
			JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
			WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind = 'v')`, t.Schema, t.Name).Scan(&v)
		if err != nil {
			return "", pgError(err, "read the catalog")
		}
		split[t] = v
	}
	sql, bases, err := d.SQL(func(t *policy.Table) bool { return split[t] })
	if err != nil {
		return "", &Error{Code: rewrite.CodeInternalError, Message: "CREATE TABLE rewrite failed"}
	}
	// The policy's roles may not refer to base tables: the client's role
	// may for the time of its statement, in the transaction.
	granted, e := s.grantReferences(ctx, conn, bases)
	if e != nil {
		return "", e
	}
	*collect = true
	tag, err := conn.Exec(ctx, sql)
	*collect = false
	if err != nil {
		return "", pgError(err, "")
	}
	if _, err := conn.Exec(ctx, "RESET ROLE"); err != nil {
		return "", pgError(err, "reset role")
	}
	role := pgx.Identifier{s.role.PGRole}.Sanitize()
	for _, b := range granted {
		if _, err := conn.Exec(ctx, "REVOKE REFERENCES ON "+b+" FROM "+role); err != nil {
			return "", pgError(err, "revoke")
		}
	}
	if _, err := storage.ApplyTx(ctx, ownTx{conn}, s.srv.pol, *s.srv.storage, storage.AllowMissing()); err != nil {
		var se storage.Errors
		var one *storage.Error
		switch {
		case errors.As(err, &se) || errors.As(err, &one):
			return "", &Error{Code: codeFeatureNotSupport, Message: fmt.Sprintf("table %s, which the "+
				"policy classifies, cannot be split: %v", d.Table.QualifiedName(), err)}
		}
		e := pgError(err, "splitting table "+d.Table.QualifiedName())
		if e.Code == codeInsufficientPriv {
			e.Hint = "Privata splits a table created through it as the user of the cluster's " +
				"session_url, which needs the rights privata apply has: make it the user of the " +
				"cluster's url, or a superuser."
		}
		return "", e
	}
	if _, err := conn.Exec(ctx, s.setRole); err != nil {
		return "", pgError(err, "set role")
	}
	if implicit {
		if _, err := conn.Exec(ctx, "COMMIT"); err != nil {
			return "", pgError(err, "commit")
		}
	}
	return tag.String(), nil
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

// ddlRefusal refuses a CREATE TABLE of a classified table sent in a way
// Privata does not carry out.
func ddlRefusal(d *rewrite.TableDDL, how string) *Error {
	return &Error{Code: codeFeatureNotSupport, Message: fmt.Sprintf("CREATE TABLE of %s, which "+
		"Privata splits into identity and clinical storage, is not supported %s",
		d.Table.QualifiedName(), how), Hint: "Send it as a simple query of its own."}
}

// tableDDL returns the TableDDL of a text that creates a classified
// table, or nil. Privata carries out such a statement only on its own,
// not in a text of several statements: it is refused there.
func (s *session) tableDDL(text []byte, an *rewrite.Analysis) (*rewrite.TableDDL, *Error) {
	var found *rewrite.TableDDL
	for i, st := range an.Statements {
		if st.Kind != rewrite.DDL || st.Tag != "CREATE TABLE" {
			continue
		}
		d, err := rewrite.ClassifiedDDL(string(text), i, s.srv.pol, s.searchPath)
		if err != nil || d == nil {
			continue
		}
		if len(an.Statements) > 1 {
			return nil, ddlRefusal(d, "in a message with other statements")
		}
		found = d
	}
	return found, nil
}
