package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/privata/privata/policy"
)

// offlineSession is a session whose client side reads data and whose
// upstream writes go nowhere: enough to run the client-side decoder.
func offlineSession(data []byte) *session {
	pol, err := policy.Parse("policy.yaml", []byte(testPolicy))
	if err != nil {
		panic(err)
	}
	srv := &Server{metrics: newMetrics(nil), pol: pol}
	srv.initAnalysis()
	s := &session{srv: srv, q: newQueue(), ctx: newUpstreamContext(nil), role: pol.Role("clinician"),
		stmts: map[string]*stmtInfo{}, portals: map[string]*stmtInfo{}, setRole: "SET ROLE x",
		searchPath: []string{"public"}}
	s.cr = newReader(bytes.NewReader(data), 1<<16)
	s.uw = bufio.NewWriter(io.Discard)
	return s
}

func encode(msgs ...pgproto3.FrontendMessage) []byte {
	var out []byte
	for _, m := range msgs {
		b, err := m.Encode(nil)
		if err != nil {
			panic(err)
		}
		out = append(out, b...)
	}
	return out
}

// FuzzClientMessages feeds arbitrary bytes to the startup decoder and to the
// client-side message loop. Neither may panic or hang, and every error the
// client would be sent is a protocol error with a SQLSTATE.
func FuzzClientMessages(f *testing.F) {
	f.Add(startupPacket(protocol30, "user", "u", "database", "d", "options", `-c a=b\ c --x=y`))
	f.Add(encode(&pgproto3.Query{String: "SELECT 1; SELECT 2"}, &pgproto3.Terminate{}))
	f.Add(encode(&pgproto3.Parse{Name: "s", Query: "SELECT $1"}, &pgproto3.Bind{PreparedStatement: "s",
		Parameters: [][]byte{[]byte("1")}}, &pgproto3.Describe{ObjectType: 'P'},
		&pgproto3.Execute{MaxRows: 1}, &pgproto3.Close{ObjectType: 'S', Name: "s"},
		&pgproto3.Flush{}, &pgproto3.Sync{}))
	f.Add(encode(&pgproto3.FunctionCall{Function: 957, Arguments: [][]byte{{0, 0, 0, 1}}},
		&pgproto3.CopyData{Data: []byte("1\n")}, &pgproto3.CopyDone{}, &pgproto3.CopyFail{Message: "x"}))
	f.Add([]byte{'Q', 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{'B', 0, 0, 0, 5, 0})
	f.Add(encode(&pgproto3.Query{String: "/*actor='a'*/ SELECT 1; DISCARD ALL; SET ROLE x"},
		&pgproto3.Parse{Query: "SET privata.actor = 'b'"}, &pgproto3.Bind{}, &pgproto3.Execute{}))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) >= 8 {
			if st, err := parseStartup(data[8:]); err == nil {
				checkSettings(st.settings())
			}
			readStartupPacket(bytes.NewReader(data))
		}
		s := offlineSession(data)
		err := s.front()
		var pe *Error
		if errors.As(err, &pe) && (len(pe.Code) != 5 || pe.Message == "") {
			t.Fatalf("error without SQLSTATE or message: %+v", pe)
		}
	})
}
