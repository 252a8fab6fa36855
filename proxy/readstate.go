package proxy

import (
	"strings"
	"sync"
	"sync/atomic"

	"github.com/privata/privata/audit"
	"github.com/privata/privata/cache"
	"github.com/privata/privata/rewrite"
)

// readState is a session's state on the read path. Fields are owned by one
// side of the relay, as marked, unless guarded by mu.
type readState struct {
	client string // the client's host
	// auditor takes the session's read audit records; nil when reads are
	// not audited.
	auditor ReadAuditor

	mu sync.Mutex
	// params are the ParameterStatus values the backend reported last.
	params map[string]string
	// startup are the settings the client connected with.
	startup map[string]string

	// Client side:
	// execSeq numbers the statements forwarded (Query, Execute,
	// FunctionCall); idleSeq is the number of the last one that had
	// completed when the backend last reported an idle session. The cache
	// answers and fills only when they are equal: nothing forwarded is
	// still running, no transaction block is open, and no write of the
	// same pipeline is uncommitted.
	execSeq uint64
	idleSeq atomic.Uint64
	// cycleForwarded is set when a message of the current extended-protocol
	// cycle (since the last Sync) went upstream; cycleAnswered when one was
	// answered from the cache.
	cycleForwarded, cycleAnswered bool
	// noCache is set once the session changed a setting that changes how
	// values are written in a way Privata cannot follow.
	noCache bool
	// portals answered from the cache, and the fills of portals bound
	// after a miss, by portal name; both live until the next Sync.
	answers map[string]*answerPortal
	fills   map[string]*fill

	// Upstream side:
	lastDone    uint64 // seq of the last statement entry completed
	cycleFailed bool   // an error came since the last ReadyForQuery
	// pendingWrites are the classified tables written since the last
	// ReadyForQuery at which the session was idle.
	pendingWrites []string
	held          []byte // responses held until the statement's record is durable
	result        stmtResult
}

// stmtResult is what the upstream side saw of the current statement.
type stmtResult struct {
	rows     int64
	desc     []byte // the RowDescription relayed, for a fill
	subjects []audit.Pseudonym
	deps     []cache.Dep
	seen     map[audit.Pseudonym]struct{}
	parts    int
}

// reset starts the next statement (or part). The slices are not reused:
// the audit writer and the cache keep them.
func (r *stmtResult) reset() { *r = stmtResult{} }

// addSubject records the subject of a row of table.
func (r *stmtResult) addSubject(table string, p audit.Pseudonym) {
	if r.seen == nil && len(r.subjects) >= 8 {
		r.seen = map[audit.Pseudonym]struct{}{}
		for _, q := range r.subjects {
			r.seen[q] = struct{}{}
		}
	}
	dup := false
	if r.seen != nil {
		_, dup = r.seen[p]
		r.seen[p] = struct{}{}
	} else {
		for _, q := range r.subjects {
			if q == p {
				dup = true
				break
			}
		}
	}
	if !dup {
		r.subjects = append(r.subjects, p)
	}
	for _, d := range r.deps {
		if d.Table == table && d.Subject == p.String() {
			return
		}
	}
	if len(r.deps) <= cache.MaxDeps {
		r.deps = append(r.deps, cache.Dep{Table: table, Subject: p.String()})
	}
}

// init prepares a session's read state.
func (rs *readState) init(s *session, startup map[string]string) {
	rs.client = clientHost(s.client.RemoteAddr())
	if rp := s.srv.read; rp != nil && rp.audit != nil {
		rs.auditor = rp.audit(s.srv.upstreamCluster)
	}
	rs.params = map[string]string{}
	rs.startup = map[string]string{}
	for k, v := range startup {
		rs.startup[strings.ToLower(k)] = v
	}
}

// outputSettings are the settings, other than those the backend reports
// in ParameterStatus, that change how values are written.
var outputSettings = map[string]bool{
	"extra_float_digits": true, "bytea_output": true, "lc_monetary": true, "lc_numeric": true,
	"lc_time": true, "xmlbinary": true, "xmloption": true, "search_path": true,
}

// reportedSettings are the ParameterStatus values that change how values
// are written.
var reportedSettings = map[string]bool{
	"TimeZone": true, "DateStyle": true, "IntervalStyle": true, "client_encoding": true,
	"integer_datetimes": true,
}

// param records a ParameterStatus message (upstream side).
func (rs *readState) param(body []byte) {
	name, rest, ok := cstring(body)
	value, _, ok2 := cstring(rest)
	if !ok || !ok2 {
		return
	}
	if n := string(name); reportedSettings[n] || n == "application_name" {
		rs.mu.Lock()
		rs.params[n] = string(value)
		rs.mu.Unlock()
	}
}

// application is the session's application_name.
func (rs *readState) application() string {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if v, ok := rs.params["application_name"]; ok {
		return v
	}
	return rs.startup["application_name"]
}

// noteSettings looks at the settings a text assigns (client side): an
// assignment of a setting that changes how values are written, other than
// search_path (which the session follows) and those the backend reports,
// turns the session's cache off.
func (s *session) noteSettings(an *rewrite.Analysis) {
	for _, st := range an.Statements {
		for _, set := range st.Settings {
			if outputSettings[set.Name] && set.Name != "search_path" {
				s.rs.noCache = true
			}
			if set.Name == "search_path" && (set.Reset || set.Param > 0 || set.Unknown) {
				s.rs.noCache = true
			}
		}
		// A temporary relation may take the name of a table the cache
		// answers for, for this session only.
		if st.ResetsSession || len(st.Temporary) > 0 {
			s.rs.noCache = true
		}
	}
}

// settings returns what the cache key needs of the session's settings.
func (s *session) settings() map[string]string {
	rs := &s.rs
	out := make(map[string]string, 8)
	rs.mu.Lock()
	for k, v := range rs.params {
		if k != "application_name" {
			out[k] = v
		}
	}
	for k, v := range rs.startup {
		if outputSettings[k] {
			out[k] = v
		}
	}
	rs.mu.Unlock()
	out["search_path"] = strings.Join(s.searchPath, ",")
	return out
}

// pushed numbers a statement entry and follows the extended-protocol cycle
// (client side).
func (rs *readState) pushed(e *entry) {
	if e.answer == nil && !e.hidden && (e.kind == kQuery || e.kind == kExecute ||
		e.kind == kFunc) {
		rs.execSeq++
		e.seq = rs.execSeq
	}
	switch {
	case e.kind.endsCycle():
		rs.cycleForwarded, rs.cycleAnswered = false, false
	case e.answer != nil:
		rs.cycleAnswered = true
	default:
		rs.cycleForwarded = true
	}
}

// clean reports whether nothing forwarded is running and the session was
// idle when it last reported (client side).
func (rs *readState) clean() bool { return rs.execSeq == rs.idleSeq.Load() }

// popped follows the completion of a statement entry (upstream side).
func (rs *readState) popped(e *entry) {
	if e.seq > 0 {
		rs.lastDone = e.seq
	}
}

// answered returns the portal of that name answered from the cache.
func (rs *readState) answered(name []byte) *answerPortal {
	if rs.answers == nil {
		return nil
	}
	return rs.answers[string(name)]
}

// dropPortal forgets what the read path knew of a portal that is bound
// again or closed.
func (rs *readState) dropPortal(name []byte) {
	if rs.answers != nil {
		delete(rs.answers, string(name))
	}
	if rs.fills != nil {
		delete(rs.fills, string(name))
	}
}

// takeFill returns and forgets the fill of a portal being executed; nil
// unless clean (a statement forwarded since the Bind could have changed
// what the read sees).
func (rs *readState) takeFill(name []byte, clean bool) *fill {
	if rs.fills == nil {
		return nil
	}
	f := rs.fills[string(name)]
	delete(rs.fills, string(name))
	if !clean {
		return nil
	}
	return f
}

// value returns a context setting's value as the upstream session has it,
// or "" when it is unknown.
func (c *upstreamContext) value(name string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.visible[name].v
}
