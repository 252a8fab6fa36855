package proxy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/privata/privata/audit"
	"github.com/privata/privata/cache"
	"github.com/privata/privata/policy"
	"github.com/privata/privata/rewrite"
	"github.com/privata/privata/storage"
)

// ReadAuditor takes the read audit records of the statements run on one
// cluster; *audit.Writer is one. Append must make a record durable before
// it returns (the rows of its statement are released only then); Check
// says whether Append would fail now.
type ReadAuditor interface {
	Append(ctx context.Context, r *audit.Read) error
	Check() error
}

// readPath is the server's read path: the audit of reads and the read
// cache (see the package documentation).
type readPath struct {
	audit  func(cluster string) ReadAuditor
	cache  *cache.Cache
	shaper *rewrite.Shaper
	// profile identifies the policy's masking rules in cache keys.
	profile string
	// wholeTables are the tables whose pure reads are cached with the
	// table as a whole as their dependency (cache.tables).
	wholeTables map[*policy.Table]bool
	// fills bounds the cache fills in flight.
	fills chan struct{}

	layoutMu sync.Mutex
	layouts  map[string]*layout // by cluster
}

// layout is what the read path knows of a cluster's catalog: which policy
// tables are split, and the names of its own aggregate functions.
type layout struct {
	split      map[*policy.Table]bool
	aggregates map[string]bool
	at         time.Time
	refreshing bool
}

// layoutMaxAge is how long a cluster's layout is trusted before it is read
// again (in the background).
const layoutMaxAge = 30 * time.Second

// maxFills bounds the cache fills a server runs at once; a fill over the
// bound is skipped.
const maxFills = 64

func newReadPath(srv *Server) (*readPath, error) {
	o := srv.opts
	if o.Audit == nil && o.Cache == nil {
		return nil, nil
	}
	rp := &readPath{audit: o.Audit, cache: o.Cache, shaper: rewrite.NewShaper(10000),
		wholeTables: map[*policy.Table]bool{}, fills: make(chan struct{}, maxFills),
		layouts: map[string]*layout{}}
	h := sha256.New()
	for _, t := range srv.pol.Tables {
		fmt.Fprintf(h, "%s|", t.QualifiedName())
		for _, c := range t.Columns {
			fmt.Fprintf(h, "%s:%s:%s|", c.Name, c.Class, c.Mask)
		}
	}
	rp.profile = hex.EncodeToString(h.Sum(nil)[:12])
	if srv.cfg != nil {
		for _, name := range srv.cfg.Cache.Tables {
			schema, table, ok := strings.Cut(name, ".")
			if !ok {
				schema, table = "public", name
			}
			t := srv.pol.Table(schema, table)
			if t == nil {
				return nil, fmt.Errorf("cache: tables: %s is not a table of the policy", name)
			}
			rp.wholeTables[t] = true
		}
	}
	return rp, nil
}

// layoutOf returns the layout of a cluster, reading it on first use and
// again in the background once it is older than layoutMaxAge. It returns
// nil when the catalog cannot be read: the read path then appends no
// column (subjects are not attributed) rather than risk a statement.
func (srv *Server) layoutOf(cluster string) *layout {
	rp := srv.read
	rp.layoutMu.Lock()
	l := rp.layouts[cluster]
	stale := l != nil && time.Since(l.at) > layoutMaxAge && !l.refreshing
	if stale {
		l.refreshing = true
	}
	rp.layoutMu.Unlock()
	if stale {
		go srv.loadLayout(cluster)
	}
	if l == nil {
		return srv.loadLayout(cluster)
	}
	return l
}

// loadLayout reads a cluster's layout with Privata's own connection.
func (srv *Server) loadLayout(cluster string) *layout {
	ctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
	defer cancel()
	l, err := srv.readLayout(ctx, cluster)
	rp := srv.read
	rp.layoutMu.Lock()
	defer rp.layoutMu.Unlock()
	if err != nil {
		if old := rp.layouts[cluster]; old != nil {
			old.refreshing = false
			return old
		}
		return nil
	}
	rp.layouts[cluster] = l
	return l
}

func (srv *Server) readLayout(ctx context.Context, cluster string) (*layout, error) {
	cl := srv.cfg.Clusters[cluster]
	if cl == nil {
		return nil, fmt.Errorf("cluster %s is not configured", cluster)
	}
	conn, err := pgconn.Connect(ctx, string(cl.URL))
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.Background())
	l := &layout{split: map[*policy.Table]bool{}, aggregates: map[string]bool{}, at: time.Now()}
	res := conn.ExecParams(ctx, `SELECT schema_name, table_name FROM privata.tables`,
		nil, nil, nil, nil).Read()
	if res.Err != nil {
		return nil, res.Err
	}
	for _, row := range res.Rows {
		if t := srv.pol.Table(string(row[0]), string(row[1])); t != nil {
			l.split[t] = true
		}
	}
	res = conn.ExecParams(ctx, `SELECT DISTINCT lower(proname) FROM pg_catalog.pg_proc
		WHERE prokind = 'a' AND pronamespace <> 'pg_catalog'::regnamespace`,
		nil, nil, nil, nil).Read()
	if res.Err != nil {
		return nil, res.Err
	}
	for _, row := range res.Rows {
		l.aggregates[string(row[0])] = true
	}
	return l, nil
}

// readPlan is what the read path does with an allowed statement text that
// touches classified data. It is made per session (the role and the
// search path matter) and never changed after.
type readPlan struct {
	stmts []*stmtRead // one per statement of the text; nil for one without classified data
	// src is the client's text, the cache key's statement.
	src string
	// text is the text to forward, with the hidden subject columns
	// appended; "" when it is the client's.
	text string
	// cache is set for a text of one statement that the cache may answer.
	cache *cachePlan
}

// stmtRead is the read path's plan for one statement.
type stmtRead struct {
	// rec is the audit record's template (statement, fingerprint, tables,
	// columns, role, decision, reason); nil when the statement reads no
	// classified column.
	rec *audit.Read
	// hidden lists, per column appended to the select list, the table
	// (policy name) whose subject's pseudonym it holds.
	hidden []string
	// notes are what the record's reason says of the rows: why they are
	// not attributed to subjects, when they are not.
	notes []string
	// writes are the classified tables the statement writes (policy names).
	writes []string
}

// cachePlan says how the cache answers a statement.
type cachePlan struct {
	// whole lists the tables an answer depends on as a whole (cache.tables
	// reads); empty for a point read, whose answer depends on the subjects
	// it returned (or its table as a whole when it returned none).
	whole []string
	table string // the point read's table
}

// hiddenAlias names the i-th appended column.
func hiddenAlias(i int) string { return fmt.Sprintf("privata_subject_%d", i+1) }

// planRead returns in with the read plan of an allowed analysis, or in
// itself when the read path has nothing to do with it.
func (s *session) planRead(in *stmtInfo, text string, an *rewrite.Analysis) *stmtInfo {
	rp := s.srv.read
	if rp == nil || len(an.Statements) == 0 {
		return in
	}
	s.noteSettings(an)
	p := &readPlan{stmts: make([]*stmtRead, len(an.Statements)), src: text}
	any := false
	var pieces []string
	last := 0
	for i, st := range an.Statements {
		if len(st.Relations) == 0 {
			continue
		}
		c := rewrite.Classify(st, s.srv.pol, s.searchPath)
		if len(c.Tables) == 0 {
			if sr := s.planDerived(text, st, c); sr != nil {
				p.stmts[i], any = sr, true
			}
			continue
		}
		sr, rewritten, cp := s.planStatement(text, st, c, len(an.Statements) == 1)
		if sr == nil {
			continue
		}
		p.stmts[i], any = sr, true
		if rewritten != "" {
			pieces = append(pieces, text[last:st.Location], rewritten)
			last = st.Location + st.Length
		}
		p.cache = cp
	}
	if !any {
		return in
	}
	if pieces != nil {
		p.text = strings.Join(append(pieces, text[last:]), "")
	}
	out := *in
	out.read = p
	return &out
}

// planStatement plans one statement touching classified tables; it
// returns the statement's text with hidden columns appended, when it has
// any, and the cache plan when alone in its text it may be cached.
func (s *session) planStatement(text string, st *rewrite.Statement, c rewrite.Classification,
	alone bool) (*stmtRead, string, *cachePlan) {
	rp := s.srv.read
	sr := &stmtRead{}
	for _, col := range c.Columns {
		if col.Access&rewrite.Write != 0 && !slices.Contains(sr.writes, col.Table.QualifiedName()) {
			sr.writes = append(sr.writes, col.Table.QualifiedName())
		}
	}
	if st.Kind == rewrite.Truncate || st.Kind == rewrite.DDL || st.Kind == rewrite.CopyFrom {
		for _, t := range c.Tables {
			if !slices.Contains(sr.writes, t.QualifiedName()) {
				sr.writes = append(sr.writes, t.QualifiedName())
			}
		}
	}
	sr.rec = s.recordTemplate(text, st, c, "")
	if sr.rec == nil {
		if len(sr.writes) == 0 {
			return nil, "", nil
		}
		return sr, "", nil
	}
	if rp.audit == nil && rp.cache == nil {
		return sr, "", nil
	}
	sh, err := rp.shaper.Shape(text, st)
	if err != nil {
		sr.notes = append(sr.notes, "not attributable: the statement's shape is unknown")
		return sr, "", nil
	}
	lay := s.srv.layoutOf(s.srv.upstreamCluster)
	reason := sh.NotAttributable
	if reason == "" && lay == nil {
		reason = "the cluster's catalog could not be read"
	}
	if reason == "" {
		for _, f := range sh.Calls {
			if lay.aggregates[f] {
				reason = "aggregate"
			}
		}
	}
	if reason != "" {
		sr.notes = append(sr.notes, "not attributable: "+reason)
		return sr, "", nil
	}
	var exprs, aliases []string
	var named []*policy.Table
	for _, f := range sh.From {
		t := s.resolve(f)
		if t == nil || !lay.split[t] {
			continue
		}
		subj := s.srv.pol.SubjectOf(t)
		if subj == nil {
			continue
		}
		col := t.Key
		if t.Kind == policy.Child {
			col = t.Reference
		}
		exprs = append(exprs, "(SELECT privata_s."+pgx.Identifier{storage.PseudonymColumn}.Sanitize()+
			" FROM "+pgx.Identifier{storage.IdentitySchema, subj.Name}.Sanitize()+" privata_s"+
			" WHERE privata_s."+pgx.Identifier{subj.Key}.Sanitize()+" = "+f.QualifiedColumn(col)+")")
		aliases = append(aliases, hiddenAlias(len(aliases)))
		sr.hidden = append(sr.hidden, t.QualifiedName())
		named = append(named, t)
	}
	for _, t := range c.Tables {
		if !slices.Contains(named, t) {
			sr.notes = append(sr.notes, "not attributable: rows of "+t.QualifiedName()+
				" read outside the FROM list")
			break
		}
	}
	if len(exprs) == 0 {
		return sr, "", nil
	}
	cp := s.planCache(st, sh, c, named, alone)
	if rp.audit == nil && cp == nil {
		// Without audit, subjects matter only to the cache.
		sr.hidden = nil
		return sr, "", nil
	}
	// A statement the cache answers names the table Privata resolved, in
	// the text PostgreSQL runs: a temporary relation of the same name
	// (made where the analysis does not see, by EXECUTE in a function)
	// must not fill other sessions' answers.
	schema := ""
	if cp != nil && s.rs.noCache {
		cp = nil // the session never uses the cache: its text stays as sent
	}
	if cp != nil && len(sh.From) == 1 {
		schema = named[0].Schema
	} else if cp != nil {
		// Several FROM items are not qualified here: such a read is
		// cached only when the text names each table's schema.
		for _, f := range sh.From {
			if f.Schema == "" {
				cp = nil
				break
			}
		}
	}
	rewritten, err := sh.AppendTargetsIn(text, st, exprs, aliases, schema)
	if err != nil {
		sr.hidden, sr.notes = nil, append(sr.notes, "not attributable: "+err.Error())
		return sr, "", nil
	}
	return sr, rewritten, cp
}

// planCache decides whether the cache may answer a statement: a point read
// of one classified table by its key (a subject table) or by its subject
// (a child table), or a pure read of tables listed in cache.tables.
func (s *session) planCache(st *rewrite.Statement, sh *rewrite.ReadShape,
	c rewrite.Classification, named []*policy.Table, alone bool) *cachePlan {
	rp := s.srv.read
	if rp.cache == nil || !alone || !sh.Pure || len(named) != len(sh.From) ||
		len(st.Relations) != len(sh.From) {
		return nil
	}
	if sh.Point && len(named) == 1 && len(c.Tables) == 1 {
		t := named[0]
		if t.Kind == policy.Subject && sh.PointColumn == t.Key ||
			t.Kind == policy.Child && sh.PointColumn == t.Reference {
			return &cachePlan{table: t.QualifiedName()}
		}
	}
	cp := &cachePlan{}
	for _, t := range named {
		if !rp.wholeTables[t] {
			return nil
		}
		cp.whole = append(cp.whole, t.QualifiedName())
	}
	return cp
}

// resolve returns the policy table a FROM reference names, through the
// session's search path.
func (s *session) resolve(f rewrite.FromRef) *policy.Table {
	if f.Schema != "" {
		return s.srv.pol.Table(f.Schema, f.Name)
	}
	for _, sp := range s.searchPath {
		if t := s.srv.pol.Table(sp, f.Name); t != nil {
			return t
		}
	}
	return nil
}

// planDerived plans a statement that reads classified data only through
// cross-region views or foreign tables (privata_global, privata_region_*):
// it is audited as a read of those relations, without subjects (a row
// there carries a pseudonym of another cluster's subjects), unless it
// reads none of them.
func (s *session) planDerived(text string, st *rewrite.Statement, c rewrite.Classification) *stmtRead {
	if s.srv.read.audit == nil {
		return nil
	}
	var tables []string
	for i, t := range c.Derived {
		if t == nil || st.Relations[i].Access&rewrite.Read == 0 {
			continue
		}
		name := st.Relations[i].Schema + "." + st.Relations[i].Name
		if !slices.Contains(tables, name) {
			tables = append(tables, name)
		}
	}
	if len(tables) == 0 {
		return nil
	}
	stmt, err := rewrite.Normalize(text, st)
	if err != nil {
		stmt = "(statement not normalisable: " + st.Tag + ")"
	}
	rec := &audit.Read{Role: s.role.PGRole, Statement: stmt, Fingerprint: st.Fingerprint,
		Tables: tables, Columns: []string{}, Decision: audit.Allowed, Subjects: []audit.Pseudonym{}}
	// The views show each region's rows as the reader may see them.
	var why []string
	for _, class := range []policy.Class{policy.Identity, policy.Clinical} {
		switch s.role.AccessTo(class) {
		case policy.Masked:
			why = append(why, string(class)+" values masked for role "+s.role.Name)
		case policy.None:
			why = append(why, string(class)+" values withheld (NULL) for role "+s.role.Name)
		}
	}
	if len(why) > 0 {
		rec.Decision, rec.Reason = audit.Masked, strings.Join(why, "; ")
	}
	return &stmtRead{rec: rec, notes: []string{"not attributable: read through cross-region views " +
		"(rows of other regions are logged as transfers)"}}
}

// recordTemplate builds the audit record of a statement as far as its text
// and the policy say: nil when it reads no classified column, unless
// refusal is set (a refused statement on a classified table is audited
// whatever it reads).
func (s *session) recordTemplate(text string, st *rewrite.Statement, c rewrite.Classification,
	refusal string) *audit.Read {
	var tables, columns []string
	var classes [2]bool // identity, clinical read
	for _, col := range c.Columns {
		if col.Access&rewrite.Read == 0 || col.Class == policy.Other {
			continue
		}
		columns = append(columns, col.Table.QualifiedName()+"."+col.Name)
		classes[boolInt(col.Class == policy.Clinical)] = true
	}
	if len(columns) == 0 && refusal == "" {
		return nil
	}
	for _, t := range c.Tables {
		tables = append(tables, t.QualifiedName())
	}
	stmt, err := rewrite.Normalize(text, st)
	if err != nil {
		stmt = "(statement not normalisable: " + st.Tag + ")"
	}
	r := &audit.Read{Role: s.role.PGRole, Statement: stmt, Fingerprint: st.Fingerprint,
		Tables: tables, Columns: columns, Decision: audit.Allowed, Subjects: []audit.Pseudonym{}}
	if r.Columns == nil {
		r.Columns = []string{}
	}
	if refusal != "" {
		r.Decision, r.Reason = audit.Refused, refusal
		return r
	}
	var why []string
	for i, class := range []policy.Class{policy.Identity, policy.Clinical} {
		if !classes[i] {
			continue
		}
		switch s.role.AccessTo(class) {
		case policy.Masked:
			why = append(why, string(class)+" values masked for role "+s.role.Name)
		case policy.None:
			why = append(why, string(class)+" values withheld (NULL) for role "+s.role.Name)
		}
	}
	if len(why) > 0 {
		r.Decision, r.Reason = audit.Masked, strings.Join(why, "; ")
	}
	return r
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// auditRefusal records a refused statement that names a classified table.
// A record that cannot be written changes nothing: the statement is refused
// anyway.
func (s *session) auditRefusal(text string, st *rewrite.Statement, c rewrite.Classification,
	code, message string) {
	rp := s.srv.read
	if rp == nil || rp.audit == nil || len(c.Tables) == 0 {
		return
	}
	a := rp.audit(s.srv.upstreamCluster)
	if a == nil {
		return
	}
	r := s.recordTemplate(text, st, c, "refused ("+code+"): "+message)
	s.fillContext(r, nil)
	a.Append(context.Background(), r)
}

// fillContext sets a record's session context: the client, the
// application, and actor, purpose and break-glass as the statement sees
// them (its own tags first, then the session's settings).
func (s *session) fillContext(r *audit.Read, in *stmtInfo) {
	r.ClientAddr = s.rs.client
	r.Application = s.rs.application()
	var want map[string]string
	if in != nil {
		want = in.want
	}
	get := func(name string) string {
		if v, ok := want[name]; ok {
			return v
		}
		return s.ctx.value(name)
	}
	r.Actor = get("privata.actor")
	r.Purpose = get("privata.purpose")
	r.BreakGlass = isOn(get("privata.break_glass"))
	r.Time = time.Now()
}

// clientHost is the host part of a client's address.
func clientHost(a net.Addr) string {
	if a == nil {
		return ""
	}
	h, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return h
}
