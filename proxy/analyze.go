package proxy

// stmtInfo is what the proxy keeps of an analysed statement text (a Query
// or a Parse): the facts the relay acts on. It is shared by both sides of
// a session and never changed after it is made.
type stmtInfo struct {
	kind   string            // metrics label of the text's first statement
	want   map[string]string // context settings its tags ask for, by setting name
	facts  []stmtFacts       // one per statement
	resets bool              // a statement resets the session (DISCARD ALL, RESET ALL)
	ctx    bool              // a statement may change the context settings
}

// stmtFacts are one statement's effects on the session.
type stmtFacts struct {
	sets   []ctxSet // privata.* settings it assigns with constants
	resets bool
}

// at returns the facts of the i-th statement, or nil.
func (in *stmtInfo) at(i int) *stmtFacts {
	if i < len(in.facts) {
		return &in.facts[i]
	}
	return nil
}

var unanalysed = &stmtInfo{kind: "unknown"}

// analyze analyses a statement text and decides on it. A refused text
// returns the error to answer it with.
func (s *session) analyze(text []byte) (*stmtInfo, *Error) {
	return unanalysed, nil
}

// initAnalysis prepares the server's statement analysis.
func (srv *Server) initAnalysis() {}
