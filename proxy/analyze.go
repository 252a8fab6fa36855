package proxy

import (
	"errors"
	"maps"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/privata/privata/rewrite"
)

// stmtInfo is what the proxy keeps of an analysed statement text (a Query
// or a Parse): the facts the relay acts on. It is shared by both sides of
// a session and never changed after it is made.
type stmtInfo struct {
	kind   string            // metrics label of the text's first statement
	want   map[string]string // context settings its tags ask for, by setting name
	facts  []stmtFacts       // one per statement, when any has effects
	resets bool              // a statement resets the session (DISCARD ALL, RESET ALL)
	ctx    bool              // a statement may change the context settings
	// analysis is the statement analysis, for per-statement observers.
	analysis *rewrite.Analysis
	// read is the read path's plan (readpath.go); nil when it has nothing
	// to do with the text.
	read *readPlan
	// wire, when set, is the text sent upstream in place of the client's,
	// and sideWire the one a side connection gets (rewrite.go).
	wire, sideWire string
	// ddl is set for a CREATE TABLE of a classified table, which Privata
	// carries out itself (ddl.go).
	ddl *ddlScript
}

// stmtFacts are one statement's effects on the session.
type stmtFacts struct {
	sets   []ctxSet // privata.* settings it assigns with constants
	forget bool     // it assigns one Privata cannot know (a parameter, RESET)
	resets bool
}

// at returns the facts of the i-th statement, or nil.
func (in *stmtInfo) at(i int) *stmtFacts {
	if i < len(in.facts) {
		return &in.facts[i]
	}
	return nil
}

// plain holds, per statement kind, the shared stmtInfo of texts without
// tags and without effects on the session: most statements.
var plain = func() map[rewrite.Kind]*stmtInfo {
	m := map[rewrite.Kind]*stmtInfo{}
	for k := rewrite.Kind(0); k.String() != "unknown"; k++ {
		m[k] = &stmtInfo{kind: k.String()}
	}
	return m
}()

var emptyInfo = &stmtInfo{kind: "empty"}

// initAnalysis makes the server's analyzer and registers its cache
// statistics as metrics.
func (srv *Server) initAnalysis() {
	entries, maxText := 10000, 0
	if srv.cfg != nil {
		entries = srv.cfg.Server.ParseCacheEntries
		maxText = srv.cfg.Server.MaxMessageBytes
	}
	var opts []rewrite.Option
	if maxText > 0 {
		opts = append(opts, rewrite.MaxTextBytes(maxText))
	}
	srv.analyzer = rewrite.NewAnalyzer(entries, opts...)
	srv.rewriter = rewrite.NewRewriter(srv.pol, entries)
	srv.decisions = map[rewrite.Kind][2]prometheus.Counter{}
	for k := range plain {
		srv.decisions[k] = [2]prometheus.Counter{
			srv.metrics.statements.WithLabelValues(k.String(), "allow"),
			srv.metrics.statements.WithLabelValues(k.String(), "refuse"),
		}
	}
	if srv.opts.Registerer != nil {
		for _, c := range []struct {
			result string
			get    func(rewrite.CacheStats) uint64
		}{
			{"hit", func(s rewrite.CacheStats) uint64 { return s.Hits }},
			{"fast_path", func(s rewrite.CacheStats) uint64 { return s.FastPathHits }},
			{"miss", func(s rewrite.CacheStats) uint64 { return s.Misses }},
		} {
			get := c.get
			srv.opts.Registerer.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name:        "privata_parse_cache_total",
				Help:        "Statement texts analysed, by how the parse cache served them.",
				ConstLabels: prometheus.Labels{"result": c.result},
			}, func() float64 { return float64(get(srv.analyzer.Stats())) }))
		}
	}
}

// decided returns the statements counter of a kind and decision (0 allow,
// 1 refuse).
func (srv *Server) decided(k rewrite.Kind, refuse int) prometheus.Counter {
	if c, ok := srv.decisions[k]; ok {
		return c[refuse]
	}
	return srv.metrics.statements.WithLabelValues(k.String(), [2]string{"allow", "refuse"}[refuse])
}

// analyze analyses a statement text and decides on each of its
// statements. A refused text returns the error to answer it with; the
// text is then refused as a whole, before any of its statements runs.
func (s *session) analyze(text []byte) (*stmtInfo, *Error) {
	m := s.srv.metrics
	start := time.Now()
	sql := string(text)
	an, err := s.srv.analyzer.Analyze(sql)
	m.parse.Observe(time.Since(start).Seconds())
	if err != nil {
		var re *rewrite.Error
		if !errors.As(err, &re) {
			re = &rewrite.Error{SQLState: "XX000", Message: "statement analysis failed"}
		}
		m.statements.WithLabelValues("invalid", "refuse").Inc()
		m.refused.WithLabelValues(re.SQLState).Inc()
		return nil, &Error{Code: re.SQLState, Message: re.Message, Detail: re.Detail, Hint: re.Hint,
			Position: int32(re.Position)}
	}
	if len(an.Statements) == 0 {
		return emptyInfo, nil
	}
	sess := rewrite.Session{Role: s.role, BreakGlass: s.breakGlass}
	rewrites, creates := false, false
	for _, st := range an.Statements {
		c := rewrite.Classify(st, s.srv.pol, s.searchPath)
		creates = creates || (st.Kind == rewrite.DDL && (len(c.Tables) > 0 || st.Tag == "DROP INDEX" ||
			st.Tag == "ALTER INDEX"))
		d := rewrite.Decide(st, c, sess)
		if d.Action == rewrite.Refuse {
			s.srv.decided(st.Kind, 1).Inc()
			m.refused.WithLabelValues(d.SQLState).Inc()
			s.auditRefusal(sql, st, c, d.SQLState, d.Message)
			return nil, &Error{Code: d.SQLState, Message: d.Message, Hint: d.Hint}
		}
		rewrites = rewrites || d.Action == rewrite.Rewrite
		s.noteSplitDDL(st, c)
	}
	catalog := s.emulatesCatalog() && rewrite.ReadsCatalog(an, s.searchPath)
	wire := ""
	if rewrites || catalog {
		var e *Error
		if wire, e = s.rewrite(text, an, catalog); e != nil {
			return nil, e
		}
	}
	var ddl *ddlScript
	if creates {
		var e *Error
		if ddl, e = s.tableDDL(text, an); e != nil {
			s.srv.decided(an.Statements[0].Kind, 1).Inc()
			m.refused.WithLabelValues(e.Code).Inc()
			return nil, e
		}
	}
	for _, st := range an.Statements {
		s.srv.decided(st.Kind, 0).Inc()
	}
	info, e := s.withWire(s.planRead(s.info(an), sql, an), wire, catalog)
	if ddl != nil && e == nil {
		c := *info
		c.ddl = ddl
		info = &c
	}
	return info, e
}

// info builds the stmtInfo of an allowed analysis and updates what the
// client side knows of the session: its declared context and search_path.
func (s *session) info(an *rewrite.Analysis) *stmtInfo {
	first := an.Statements[0]
	effects := len(an.Tags) > 0
	for _, st := range an.Statements {
		if len(st.Settings) > 0 || st.ResetsSession || st.Kind == rewrite.Transaction {
			effects = true
		}
	}
	if in := plain[first.Kind]; !effects && in != nil {
		return in
	}
	in := &stmtInfo{kind: first.Kind.String(), analysis: an}
	if s.ctxBase == nil {
		s.ctxBase = maps.Clone(s.ctxStartup)
		if s.ctxBase == nil {
			s.ctxBase = map[string]string{}
		}
	}
	for k, v := range an.Tags {
		if g, ok := tagGUC[k]; ok {
			if in.want == nil {
				in.want = map[string]string{}
			}
			in.want[g] = v
			s.declare(g, v)
		}
	}
	in.facts = make([]stmtFacts, len(an.Statements))
	for i, st := range an.Statements {
		f := &in.facts[i]
		f.resets = st.ResetsSession
		in.resets = in.resets || st.ResetsSession
		if st.ResetsSession {
			s.ctxBase = maps.Clone(s.ctxStartup)
		}
		if st.Kind == rewrite.Transaction {
			// A rollback undoes the SETs of its transaction (or, to a
			// savepoint, of its transaction so far: near enough).
			switch st.Tag {
			case "BEGIN", "START TRANSACTION":
				s.ctxSnap = maps.Clone(s.ctxBase)
			case "COMMIT", "PREPARE TRANSACTION":
				s.ctxSnap = nil
			case "ROLLBACK":
				if s.ctxSnap != nil {
					s.ctxBase = maps.Clone(s.ctxSnap)
				}
			}
		}
		in.ctx = in.ctx || st.ResetsSession || st.Kind == rewrite.Transaction || len(st.Context) > 0
		for _, cs := range st.Context {
			delete(s.ctxTagged, cs.Name)
			if cs.Reset || cs.Param > 0 || cs.Unknown {
				f.forget = true
				if cs.Reset && !cs.Local {
					s.ctxBase[cs.Name] = s.ctxStartup[cs.Name]
				}
				continue
			}
			f.sets = append(f.sets, ctxSet{name: cs.Name, value: cs.Value, local: cs.Local})
			s.declare(cs.Name, cs.Value)
			if !cs.Local {
				s.ctxBase[cs.Name] = cs.Value
			}
		}
		if st.ResetsSession {
			s.widenSearchPath(s.startupPath)
		}
		for _, set := range st.Settings {
			switch {
			case set.Name != "search_path":
			case set.Reset:
				s.widenSearchPath(s.startupPath)
			case set.Param == 0 && !set.Unknown: // else refused (rewrite.Decide)
				s.widenSearchPath(parseSearchPath(set.Value, s.role.PGRole))
			}
		}
	}
	return in
}

// withContext returns info as the statement runs now: a tag holds for its
// own statement only (on a pooled connection the next statement may be
// another user's), so a context setting that a tag set for an earlier
// statement goes back to the session's own value (startup, then SET)
// unless this statement's tags set it too. It returns info itself when
// nothing goes back.
func (s *session) withContext(info *stmtInfo) *stmtInfo {
	if info == nil || (len(s.ctxTagged) == 0 && len(info.want) == 0) {
		return info
	}
	var back map[string]string
	for g := range s.ctxTagged {
		if _, ok := info.want[g]; !ok {
			if back == nil {
				back = maps.Clone(info.want)
				if back == nil {
					back = map[string]string{}
				}
			}
			back[g] = s.ctxBase[g]
			s.declare(g, s.ctxBase[g])
			delete(s.ctxTagged, g)
		}
	}
	for g, v := range info.want {
		if s.ctxTagged == nil {
			s.ctxTagged = map[string]bool{}
		}
		s.ctxTagged[g] = true
		s.declare(g, v)
	}
	if back == nil {
		return info
	}
	c := *info
	c.want = back
	return &c
}

// declare records a context setting the client declared, for decisions.
func (s *session) declare(name, value string) {
	if name == "privata.break_glass" {
		s.breakGlass = isOn(value)
	}
	if s.regions != nil {
		s.regions.declared[name] = value
	}
}

// widenSearchPath follows a search_path assignment as the text is read,
// before it runs: path goes first, and the schemas of earlier paths stay
// after it, since the assignment may fail, be rolled back or be LOCAL. An
// unqualified name then counts as every classified table it could mean
// (rewrite.Classify): a stale path could only make Privata audit a read
// it need not, never miss one.
func (s *session) widenSearchPath(path []string) {
	out := slices.Clone(path)
	for _, sp := range s.searchPath {
		if !slices.Contains(out, sp) {
			out = append(out, sp)
		}
	}
	s.searchPath = out
}

// parseSearchPath reads a search_path value into schema names.
func parseSearchPath(v, user string) []string { return rewrite.SearchPath(v, user) }
