package proxy

import (
	"context"
	"fmt"
	"net"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// wire is a protocol-level client: pgconn does the startup, then the test
// speaks pgproto3 itself.
type wire struct {
	t    testing.TB
	conn net.Conn
	fe   *pgproto3.Frontend
	pid  uint32
}

func (e *env) wire(t testing.TB, user string) *wire {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pc, err := pgconn.Connect(ctx, e.url(user))
	if err != nil {
		t.Fatal(err)
	}
	hc, err := pc.Hijack()
	if err != nil {
		t.Fatal(err)
	}
	w := &wire{t: t, conn: hc.Conn, fe: pgproto3.NewFrontend(hc.Conn, hc.Conn), pid: hc.PID}
	t.Cleanup(func() { hc.Conn.Close() })
	return w
}

func (w *wire) send(msgs ...pgproto3.FrontendMessage) {
	w.t.Helper()
	for _, m := range msgs {
		w.fe.Send(m)
	}
	if err := w.fe.Flush(); err != nil {
		w.t.Fatal(err)
	}
}

// recv reads messages up to and including one of type until, and returns
// their short names ("DataRow:42", "CommandComplete:SELECT 1", "Error:22012").
func (w *wire) recv(until string) []string {
	w.t.Helper()
	w.conn.SetReadDeadline(time.Now().Add(time.Minute))
	var out []string
	for {
		m, err := w.fe.Receive()
		if err != nil {
			w.t.Fatalf("receive after %v: %v", out, err)
		}
		s := short(m)
		out = append(out, s)
		if strings.HasPrefix(s, until) {
			return out
		}
	}
}

func short(m pgproto3.BackendMessage) string {
	switch m := m.(type) {
	case *pgproto3.DataRow:
		vals := make([]string, len(m.Values))
		for i, v := range m.Values {
			vals[i] = string(v)
		}
		return "DataRow:" + strings.Join(vals, ",")
	case *pgproto3.CommandComplete:
		return "CommandComplete:" + string(m.CommandTag)
	case *pgproto3.ErrorResponse:
		return "Error:" + m.Code
	case *pgproto3.ReadyForQuery:
		return "ReadyForQuery:" + string(m.TxStatus)
	case *pgproto3.FunctionCallResponse:
		return "FunctionCallResponse"
	}
	return strings.TrimPrefix(reflect.TypeOf(m).String(), "*pgproto3.")
}

func expect(t testing.TB, got []string, want ...string) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got  %q\nwant %q", got, want)
	}
}

func TestUnnamedStatementAndPortalSurviveSyncs(t *testing.T) {
	e := newEnv(t, envOptions{})
	w := e.wire(t, "clinician")
	w.send(&pgproto3.Parse{Query: "SELECT $1::int + 1"}, &pgproto3.Sync{})
	expect(t, w.recv("ReadyForQuery"), "ParseComplete", "ReadyForQuery:I")
	for _, v := range []string{"41", "1"} {
		w.send(&pgproto3.Bind{Parameters: [][]byte{[]byte(v)}}, &pgproto3.Execute{}, &pgproto3.Sync{})
		want := fmt.Sprint(map[string]string{"41": "42", "1": "2"}[v])
		expect(t, w.recv("ReadyForQuery"), "BindComplete", "DataRow:"+want,
			"CommandComplete:SELECT 1", "ReadyForQuery:I")
	}
	// An unnamed portal survives a Sync inside a transaction block.
	w.send(&pgproto3.Query{String: "BEGIN"})
	expect(t, w.recv("ReadyForQuery"), "CommandComplete:BEGIN", "ReadyForQuery:T")
	w.send(&pgproto3.Parse{Query: "SELECT generate_series(1, 3)"}, &pgproto3.Bind{}, &pgproto3.Sync{})
	expect(t, w.recv("ReadyForQuery"), "ParseComplete", "BindComplete", "ReadyForQuery:T")
	w.send(&pgproto3.Execute{}, &pgproto3.Sync{})
	expect(t, w.recv("ReadyForQuery"), "DataRow:1", "DataRow:2", "DataRow:3",
		"CommandComplete:SELECT 3", "ReadyForQuery:T")
}

func TestExecuteWithRowLimitSuspendsThePortal(t *testing.T) {
	e := newEnv(t, envOptions{})
	w := e.wire(t, "clinician")
	w.send(&pgproto3.Parse{Name: "s", Query: "SELECT generate_series(1, 5)"},
		&pgproto3.Bind{DestinationPortal: "p", PreparedStatement: "s"},
		&pgproto3.Execute{Portal: "p", MaxRows: 2},
		&pgproto3.Execute{Portal: "p", MaxRows: 2},
		&pgproto3.Execute{Portal: "p", MaxRows: 2},
		&pgproto3.Sync{})
	expect(t, w.recv("ReadyForQuery"), "ParseComplete", "BindComplete",
		"DataRow:1", "DataRow:2", "PortalSuspended",
		"DataRow:3", "DataRow:4", "PortalSuspended",
		"DataRow:5", "CommandComplete:SELECT 1", "ReadyForQuery:I")
}

func TestFlushWithoutSync(t *testing.T) {
	e := newEnv(t, envOptions{})
	w := e.wire(t, "clinician")
	w.send(&pgproto3.Parse{Query: "SELECT 7"}, &pgproto3.Bind{},
		&pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{}, &pgproto3.Flush{})
	expect(t, w.recv("CommandComplete"), "ParseComplete", "BindComplete", "RowDescription",
		"DataRow:7", "CommandComplete:SELECT 1")
	w.send(&pgproto3.Sync{})
	expect(t, w.recv("ReadyForQuery"), "ReadyForQuery:I")
}

func TestLongPipelineWithAnErrorInTheMiddle(t *testing.T) {
	e := newEnv(t, envOptions{})
	w := e.wire(t, "clinician")
	w.send(&pgproto3.Parse{Name: "div", Query: "SELECT 100 / $1::int"}, &pgproto3.Sync{})
	expect(t, w.recv("ReadyForQuery"), "ParseComplete", "ReadyForQuery:I")

	// 2,000 Bind/Execute pairs, each pair followed by a Sync, sent before
	// reading anything; the 1,000th divides by zero.
	var msgs []pgproto3.FrontendMessage
	var want []string
	for i := 1; i <= 2000; i++ {
		d := i % 50
		if i == 1000 {
			d = 0
		}
		if d == 0 && i != 1000 {
			d = 1
		}
		msgs = append(msgs, &pgproto3.Bind{PreparedStatement: "div",
			Parameters: [][]byte{[]byte(fmt.Sprint(d))}}, &pgproto3.Execute{}, &pgproto3.Sync{})
		if i == 1000 {
			want = append(want, "BindComplete", "Error:22012", "ReadyForQuery:I")
		} else {
			want = append(want, "BindComplete", fmt.Sprintf("DataRow:%d", 100/d),
				"CommandComplete:SELECT 1", "ReadyForQuery:I")
		}
	}
	go w.send(msgs...)
	var got []string
	for i := 0; i < 2000; i++ {
		got = append(got, w.recv("ReadyForQuery")...)
	}
	expect(t, got, want...)

	// Within one Sync, everything after the error is skipped.
	w.send(&pgproto3.Bind{PreparedStatement: "div", Parameters: [][]byte{[]byte("0")}},
		&pgproto3.Execute{},
		&pgproto3.Bind{PreparedStatement: "div", Parameters: [][]byte{[]byte("5")}},
		&pgproto3.Execute{},
		&pgproto3.Sync{})
	expect(t, w.recv("ReadyForQuery"), "BindComplete", "Error:22012", "ReadyForQuery:I")
}

func TestCopyInErrorMidStream(t *testing.T) {
	e := newEnv(t, envOptions{})
	w := e.wire(t, "clinician")
	w.send(&pgproto3.Query{String: "CREATE TABLE c (n int)"})
	expect(t, w.recv("ReadyForQuery"), "CommandComplete:CREATE TABLE", "ReadyForQuery:I")

	w.send(&pgproto3.Query{String: "COPY c FROM STDIN"})
	expect(t, w.recv("CopyInResponse"), "CopyInResponse")
	var msgs []pgproto3.FrontendMessage
	for i := 0; i < 1000; i++ {
		msgs = append(msgs, &pgproto3.CopyData{Data: []byte(fmt.Sprintf("%d\n", i))})
	}
	msgs = append(msgs, &pgproto3.CopyData{Data: []byte("not a number\n")})
	for i := 0; i < 1000; i++ {
		msgs = append(msgs, &pgproto3.CopyData{Data: []byte("1\n")})
	}
	msgs = append(msgs, &pgproto3.CopyDone{})
	w.send(msgs...)
	expect(t, w.recv("ReadyForQuery"), "Error:22P02", "ReadyForQuery:I")

	// A client's CopyFail aborts the COPY too.
	w.send(&pgproto3.Query{String: "COPY c FROM STDIN"})
	expect(t, w.recv("CopyInResponse"), "CopyInResponse")
	w.send(&pgproto3.CopyData{Data: []byte("5\n")}, &pgproto3.CopyFail{Message: "changed my mind"})
	expect(t, w.recv("ReadyForQuery"), "Error:57014", "ReadyForQuery:I")

	w.send(&pgproto3.Query{String: "SELECT count(*) FROM c"})
	expect(t, w.recv("ReadyForQuery"), "RowDescription", "DataRow:0", "CommandComplete:SELECT 1",
		"ReadyForQuery:I")
}

func TestFunctionCallMessage(t *testing.T) {
	e := newEnv(t, envOptions{})
	w := e.wire(t, "clinician")
	w.send(&pgproto3.Query{String: "BEGIN"})
	expect(t, w.recv("ReadyForQuery"), "CommandComplete:BEGIN", "ReadyForQuery:T")
	// lo_creat(-1): a large-object function, as libpq's lo_creat calls it.
	w.send(&pgproto3.FunctionCall{Function: 957, ArgFormatCodes: []uint16{1},
		Arguments: [][]byte{{0xff, 0xff, 0xff, 0xff}}, ResultFormatCode: 1})
	expect(t, w.recv("ReadyForQuery"), "FunctionCallResponse", "ReadyForQuery:T")
	// set_config (OID 2078) is not callable this way: it could change the role.
	w.send(&pgproto3.FunctionCall{Function: 2078, ArgFormatCodes: []uint16{0},
		Arguments: [][]byte{[]byte("role"), []byte("escalated"), []byte("false")}})
	expect(t, w.recv("ReadyForQuery"), "Error:42501", "ReadyForQuery:E")
	w.send(&pgproto3.Query{String: "ROLLBACK"})
	expect(t, w.recv("ReadyForQuery"), "CommandComplete:ROLLBACK", "ReadyForQuery:I")
}

func TestEmptyQueriesAndImplicitTransaction(t *testing.T) {
	e := newEnv(t, envOptions{})
	w := e.wire(t, "clinician")
	w.send(&pgproto3.Query{String: ""})
	expect(t, w.recv("ReadyForQuery"), "EmptyQueryResponse", "ReadyForQuery:I")
	w.send(&pgproto3.Query{String: "  ;  "})
	expect(t, w.recv("ReadyForQuery"), "EmptyQueryResponse", "ReadyForQuery:I")
	w.send(&pgproto3.Parse{Query: ""}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{})
	expect(t, w.recv("ReadyForQuery"), "ParseComplete", "BindComplete", "EmptyQueryResponse",
		"ReadyForQuery:I")

	// Several statements in one Query run as one transaction: the error in
	// the third undoes the insert of the second.
	w.send(&pgproto3.Query{String: "CREATE TABLE m (n int); INSERT INTO m VALUES (1); SELECT 1/0; " +
		"INSERT INTO m VALUES (2)"})
	expect(t, w.recv("ReadyForQuery"), "CommandComplete:CREATE TABLE", "CommandComplete:INSERT 0 1",
		"Error:22012", "ReadyForQuery:I")
	w.send(&pgproto3.Query{String: "SELECT to_regclass('m') IS NULL"})
	expect(t, w.recv("ReadyForQuery"), "RowDescription", "DataRow:t", "CommandComplete:SELECT 1",
		"ReadyForQuery:I")
}

// countRows is an observer that counts what it sees.
type countRows struct {
	mu                *sync.Mutex
	cols, rows, dones *int
}

func (c countRows) columns([]byte) { c.mu.Lock(); *c.cols++; c.mu.Unlock() }
func (c countRows) row([]byte)     { c.mu.Lock(); *c.rows++; c.mu.Unlock() }
func (c countRows) done([]byte)    { c.mu.Lock(); *c.dones++; c.mu.Unlock() }

func TestObserverSeesEachStatementsRows(t *testing.T) {
	var mu sync.Mutex
	var cols, rows, dones int
	e := newEnv(t, envOptions{observe: func(*stmtInfo) observer {
		return countRows{&mu, &cols, &rows, &dones}
	}})
	w := e.wire(t, "clinician")
	w.send(&pgproto3.Query{String: "SELECT generate_series(1, 3); SELECT 1"})
	expect(t, w.recv("ReadyForQuery"), "RowDescription", "DataRow:1", "DataRow:2", "DataRow:3",
		"CommandComplete:SELECT 3", "RowDescription", "DataRow:1", "CommandComplete:SELECT 1",
		"ReadyForQuery:I")
	w.send(&pgproto3.Parse{Query: "SELECT generate_series(1, $1::int)"},
		&pgproto3.Bind{Parameters: [][]byte{[]byte("4")}}, &pgproto3.Execute{}, &pgproto3.Sync{})
	w.recv("ReadyForQuery")
	mu.Lock()
	defer mu.Unlock()
	if cols != 2 || rows != 8 || dones != 3 {
		t.Fatalf("observer saw %d descriptions, %d rows, %d completions; want 2, 8, 3",
			cols, rows, dones)
	}
}

// libpq's PQexecParams sends COPY FROM STDIN as Parse, Bind, Describe,
// Execute and Sync before the data, and a Sync after CopyDone; the backend
// ignores the first Sync, in COPY, and answers only the second. The relay
// must not wait for a ReadyForQuery for the first: it would take the next
// statement's, and strip that statement's hidden columns from the wrong
// results (here: the subject's pseudonym would reach the client).
func TestExtendedCopyInIgnoredSync(t *testing.T) {
	re := newReadEnv(t, readOptions{})
	w := re.wire(t, "clinician")
	w.send(&pgproto3.Query{String: "CREATE TEMP TABLE c (n int)"})
	expect(t, w.recv("ReadyForQuery"), "CommandComplete:CREATE TABLE", "ReadyForQuery:I")

	copyIn := []pgproto3.FrontendMessage{&pgproto3.Parse{Query: "COPY c FROM STDIN"}, &pgproto3.Bind{},
		&pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{}, &pgproto3.Sync{}}
	w.send(copyIn...)
	expect(t, w.recv("CopyInResponse"), "ParseComplete", "BindComplete", "NoData", "CopyInResponse")
	w.send(&pgproto3.CopyData{Data: []byte("1\n2\n")}, &pgproto3.CopyDone{}, &pgproto3.Sync{})
	expect(t, w.recv("ReadyForQuery"), "CommandComplete:COPY 2", "ReadyForQuery:I")

	// A bad row: the error ends the COPY, the Sync after it the cycle.
	w.send(copyIn...)
	expect(t, w.recv("CopyInResponse"), "ParseComplete", "BindComplete", "NoData", "CopyInResponse")
	w.send(&pgproto3.CopyData{Data: []byte("x\n")}, &pgproto3.CopyDone{}, &pgproto3.Sync{})
	expect(t, w.recv("ReadyForQuery"), "Error:22P02", "ReadyForQuery:I")

	// A Sync in a simple-protocol COPY is ignored too.
	w.send(&pgproto3.Query{String: "COPY c FROM STDIN"}, &pgproto3.Sync{})
	expect(t, w.recv("CopyInResponse"), "CopyInResponse")
	w.send(&pgproto3.CopyData{Data: []byte("3\n")}, &pgproto3.CopyDone{})
	expect(t, w.recv("ReadyForQuery"), "CommandComplete:COPY 1", "ReadyForQuery:I")

	// The statements after them get their own answers, without the
	// hidden column, and are audited.
	p := re.patients[0]
	w.send(&pgproto3.Query{String: "SELECT id, first FROM patients WHERE id = '" + p.ID + "'"})
	got := w.recv("ReadyForQuery")
	expect(t, got, "RowDescription", "DataRow:"+p.ID+","+p.First, "CommandComplete:SELECT 1", "ReadyForQuery:I")
	w.send(&pgproto3.Parse{Name: "s", Query: "SELECT count(*) FROM c"}, &pgproto3.Describe{ObjectType: 'S', Name: "s"},
		&pgproto3.Bind{PreparedStatement: "s"}, &pgproto3.Execute{}, &pgproto3.Sync{})
	expect(t, w.recv("ReadyForQuery"), "ParseComplete", "ParameterDescription", "RowDescription", "BindComplete",
		"DataRow:3", "CommandComplete:SELECT 1", "ReadyForQuery:I")
}
