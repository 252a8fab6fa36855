package proxy

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/privata/privata/policy"
	"github.com/privata/privata/regions"
	"github.com/privata/privata/rewrite"
)

// Routing between regions. A session's connection goes to its region's
// cluster (the home connection, relayed by front and back). A statement
// that package regions routes to another region's cluster runs on a side
// connection to that cluster, opened on first use with the same startup
// parameters and role: the client side waits until every earlier message
// of the home connection has been answered (drain), then relays the side
// connection's answers itself, so that the client sees one stream in
// order. A transaction block of the client opens one on each side it
// reaches; COMMIT and ROLLBACK end them all (see commit.go).

// hiddenResult is the answer of a statement Privata runs itself on the
// home connection.
type hiddenResult struct {
	err  []byte   // ErrorResponse body; nil when the statement succeeded
	rows [][]byte // the first column of each row, as text
}

// firstColumn returns the first column of a DataRow body.
func firstColumn(body []byte) []byte {
	if len(body) < 6 || binary.BigEndian.Uint16(body) == 0 {
		return nil
	}
	n := int32(binary.BigEndian.Uint32(body[2:]))
	if n < 0 || int(n) > len(body)-6 {
		return nil
	}
	return append([]byte(nil), body[6:6+n]...)
}

// Transfer describes a read of another region's data that a transfer of
// the policy allows; it names regions, tables and transfers, never values.
type Transfer struct {
	User, Role, Purpose string
	// Region is the session's region; From the region whose subjects are
	// read.
	Region, From string
	Transfers    []string
	Tables       []string
	// Via says how: "routing" (the statement ran in From's cluster) or
	// "fdw" (through foreign tables, privata_global or privata_region_*).
	Via string
}

// regionState is what a session keeps to route between regions.
type regionState struct {
	user     string
	params   map[string]string  // startup parameters, replayed on side connections
	sides    map[string]*side   // by cluster
	parses   map[string][]byte  // Parse bodies by statement name, for side connections
	wire     map[string][]byte  // the same, as sent when Privata rewrote the statement
	portals  map[string]*side   // portals bound on a side connection
	sets     []string           // SET statements the client ran, replayed on sides
	declared map[string]string  // privata.* values the client declared
	begin    string             // the client's last BEGIN, replayed on sides
	failed   bool               // an error on a side in the current extended cycle
	pending  map[*side]struct{} // sides that got extended messages since Sync
	writes   map[string]bool    // portals bound at home whose statement may write
	moved    map[string]string  // portals of moves carried out at Bind: their command tags
}

func (srv *Server) initRegions() error {
	r := srv.opts.Router
	if r == nil {
		return nil
	}
	srv.home = r.Home(srv.region)
	if srv.home == "" {
		return fmt.Errorf("server: region %s has no cluster that stores it", srv.region)
	}
	srv.rmetrics = newRegionMetrics(srv.opts.Registerer, r.Dir)
	srv.upstreams = map[string]*pgconn.Config{}
	for _, p := range r.Topo.Peers {
		cluster := strings.Split(p.Target.Name, "+")[0]
		if srv.cfg.Clusters[cluster] == nil {
			return fmt.Errorf("cluster %s is not in the configuration", cluster)
		}
		up, err := pgconn.ParseConfig(srv.cfg.SessionURL(cluster))
		if err != nil {
			return fmt.Errorf("cluster %s: session url does not parse", cluster)
		}
		srv.upstreams[p.Target.Name] = up
	}
	return nil
}

// newRegionState starts a session's routing state.
func (srv *Server) newRegionState(st *startup) *regionState {
	if srv.opts.Router == nil {
		return nil
	}
	rs := &regionState{user: string(st.user), params: map[string]string{}, sides: map[string]*side{},
		parses: map[string][]byte{}, wire: map[string][]byte{}, portals: map[string]*side{},
		declared: map[string]string{}, pending: map[*side]struct{}{}, writes: map[string]bool{},
		moved: map[string]string{}}
	for k, v := range st.params {
		rs.params[k] = v
	}
	for _, g := range contextGUCs {
		if v, ok := st.settings()[g]; ok {
			rs.declared[g] = v
		}
	}
	return rs
}

// routeSession is the session as routing sees it, for a text with tags.
func (s *session) routeSession(tags map[string]string) regions.Session {
	purpose := s.regions.declared["privata.purpose"]
	if v, ok := tags["purpose"]; ok {
		purpose = v
	}
	return regions.Session{Region: s.srv.region, Role: s.role, Purpose: purpose}
}

// routed is where a text's statements go.
type routed struct {
	target    string // cluster; the session's own when home
	write     bool   // a statement may write there
	transfers []*policy.Transfer
	from      string // region read under transfers
	tables    []string
	move      *regions.Move
	control   string // a transaction control statement's tag, when the text is one
}

func (r *routed) home(s *session) bool { return r.target == s.srv.home }

// route decides where the statements of an analysed text go. params are
// the values bound to a Parse's text. A refusal is returned as an Error.
func (s *session) route(text string, an *rewrite.Analysis, params []regions.Param) (*routed, *Error) {
	sess := s.routeSession(an.Tags)
	out := &routed{target: s.srv.home}
	var hints []*rewrite.Hints
	targets := map[string]bool{}
	for i, st := range an.Statements {
		if e := s.checkCrossings(st, sess); e != nil {
			return nil, e
		}
		if st.Kind == rewrite.Transaction && len(an.Statements) == 1 {
			out.control = st.Tag
		}
		if st.Kind == rewrite.Transaction && (st.Tag == "BEGIN" || st.Tag == "START TRANSACTION") {
			s.regions.begin = text[st.Location : st.Location+st.Length]
		}
		cls := rewrite.Classify(st, s.srv.pol, s.searchPath)
		var h *rewrite.Hints
		if len(cls.Tables) > 0 {
			if hints == nil {
				var err error
				if hints, err = rewrite.RouteHints(text); err != nil {
					hints = []*rewrite.Hints{}
				}
			}
			if i < len(hints) {
				h = hints[i]
			}
		}
		rt, err := s.srv.opts.Router.Route(context.Background(), sess,
			regions.Statement{Analysis: st, Class: cls, Hints: h, Params: params})
		if err != nil {
			return nil, routeError(err)
		}
		targets[rt.Target] = true
		if rt.Target != s.srv.home || len(targets) == 1 {
			out.target = rt.Target
		}
		out.write = out.write || rt.Write
		if len(rt.Transfers) > 0 {
			out.transfers, out.from = rt.Transfers, rt.Region
			for _, t := range cls.Tables {
				out.tables = append(out.tables, t.QualifiedName())
			}
		}
		if rt.Move != nil {
			out.move = rt.Move
		}
	}
	if len(targets) > 1 {
		var names []string
		for t := range targets {
			names = append(names, t)
		}
		slices.Sort(names)
		return nil, &Error{Code: codeFeatureNotSupport, Message: "the statements of this message go " +
			"to different regions' clusters (" + strings.Join(names, " and ") + ")",
			Hint: "Send them one statement per message."}
	}
	if !out.home(s) && an.Statements[0].Kind == rewrite.Transaction {
		out.target = s.srv.home
	}
	return out, nil
}

// routeError turns a routing error into the client's ErrorResponse.
func routeError(err error) *Error {
	var re *regions.Error
	if errors.As(err, &re) {
		return &Error{Code: re.SQLState, Message: re.Message, Detail: re.Detail, Hint: re.Hint}
	}
	return &Error{Code: "XX000", Message: "routing failed: " + err.Error()}
}

// checkCrossings refuses a read of another region's data through the
// foreign tables that no transfer allows, and reports those allowed.
func (s *session) checkCrossings(st *rewrite.Statement, sess regions.Session) *Error {
	topo := s.srv.opts.Router.Topo
	crossings := topo.Crossings(st, s.srv.region, s.searchPath)
	if len(crossings) == 0 {
		return nil
	}
	byRegion := map[string]*Transfer{}
	for _, c := range crossings {
		for _, class := range c.Classes {
			tr := s.srv.pol.TransferFor(c.Region, s.srv.region, s.role.Name, sess.Purpose, class)
			if tr == nil {
				purpose := sess.Purpose
				if purpose == "" {
					purpose = "(none)"
				}
				return &Error{Code: codeInsufficientPriv, Message: fmt.Sprintf("%s reads %s data of "+
					"region %s, and no transfer of the policy lets role %s read it in region %s for "+
					"purpose %s", c.Relation, class, c.Region, s.role.Name, s.srv.region, purpose),
					Hint: "Add a transfer to the policy (transfers:), or read this region's data only."}
			}
			t := byRegion[c.Region]
			if t == nil {
				t = s.transfer(sess, c.Region, "fdw")
				byRegion[c.Region] = t
			}
			if !slices.Contains(t.Transfers, tr.Name) {
				t.Transfers = append(t.Transfers, tr.Name)
			}
			if !slices.Contains(t.Tables, c.Table.QualifiedName()) {
				t.Tables = append(t.Tables, c.Table.QualifiedName())
			}
		}
	}
	for _, t := range byRegion {
		s.srv.rmetrics.transfers.WithLabelValues(t.From, t.Via).Inc()
		if s.srv.opts.OnTransfer != nil {
			s.srv.opts.OnTransfer(*t)
		}
	}
	return nil
}

func (s *session) transfer(sess regions.Session, from, via string) *Transfer {
	return &Transfer{User: s.regions.user, Role: s.role.Name, Purpose: sess.Purpose,
		Region: s.srv.region, From: from, Via: via}
}

// reportTransfers tells the server about a routed read under transfers.
func (s *session) reportTransfers(r *routed, tags map[string]string) {
	if !r.home(s) {
		s.srv.rmetrics.routed.WithLabelValues(s.regionOf(r.target)).Inc()
	}
	if len(r.transfers) == 0 {
		return
	}
	s.srv.rmetrics.transfers.WithLabelValues(r.from, "routing").Inc()
	if s.srv.opts.OnTransfer == nil {
		return
	}
	t := s.transfer(s.routeSession(tags), r.from, "routing")
	for _, tr := range r.transfers {
		t.Transfers = append(t.Transfers, tr.Name)
	}
	t.Tables = r.tables
	s.srv.opts.OnTransfer(*t)
}

// drain waits until the home connection has answered every message sent
// so far, and returns its transaction status.
func (s *session) drain() (byte, error) {
	s.uw.WriteByte('H') // Flush: the backend sends what it holds
	s.uw.Write([]byte{0, 0, 0, 4})
	if err := s.uw.Flush(); err != nil {
		return 0, errUpstreamWrite
	}
	if !s.q.waitIdle() {
		return 0, errUpstreamWrite
	}
	return byte(s.txStatus.Load()), nil
}

// toClient writes messages to the client in order with the relay.
func (s *session) toClient(b []byte) error {
	s.cwMu.Lock()
	defer s.cwMu.Unlock()
	s.cw.Write(b)
	if err := s.cw.Flush(); err != nil {
		return s.clientLost(err)
	}
	return nil
}

// answer sends the client an error and, for a Query, ReadyForQuery.
func (s *session) answer(e *Error, ready bool) error {
	b := e.encode()
	if ready {
		b = append(b, encodeMessage(&pgproto3.ReadyForQuery{TxStatus: byte(s.txStatus.Load())})...)
	}
	return s.toClient(b)
}

// runOwn runs a statement Privata needs on the home connection, after
// everything the client sent there, and returns its answer.
func (s *session) runOwn(sql string) (hiddenResult, error) {
	ch := make(chan hiddenResult, 1)
	if err := s.push(entry{kind: kQuery, hidden: true, quiet: true, result: ch}); err != nil {
		return hiddenResult{}, err
	}
	s.writeQuery(sql)
	if err := s.uw.Flush(); err != nil {
		return hiddenResult{}, errUpstreamWrite
	}
	select {
	case r := <-ch:
		return r, nil
	case <-s.backExit:
		return hiddenResult{}, errUpstreamWrite
	}
}

// abortHome aborts the client's transaction block on the home connection,
// as an error on a side connection aborted it there.
func (s *session) abortHome() error {
	if err := s.push(entry{kind: kQuery, hidden: true, quiet: true}); err != nil {
		return err
	}
	s.writeQuery(standIn)
	return nil
}

// writers names the clusters that wrote in the client's transaction, with
// the one about to write.
func (s *session) writers(next string) []string {
	var out []string
	if s.homeWrote.Load() {
		out = append(out, s.srv.home)
	}
	for t, sd := range s.regions.sides {
		if sd.inTx && sd.wrote && !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	if next != "" && !slices.Contains(out, next) {
		out = append(out, next)
	}
	slices.Sort(out)
	return out
}

// twoRegionsError refuses a write that would make a transaction write to
// two clusters without two-phase commit.
func (s *session) twoRegionsError(clusters []string) *Error {
	var names []string
	for _, c := range clusters {
		names = append(names, s.regionOf(c))
	}
	return &Error{Code: codeFeatureNotSupport, Message: "this transaction would write to regions " +
		strings.Join(names, " and ") + ", which different clusters store, and two-phase commit is off",
		Hint: "Write each region's data in its own transaction, or turn server.two_phase_commit on " +
			"in privata.yaml."}
}

// sideInTx reports whether a transaction block is open on a side.
func (s *session) sideInTx() bool {
	for _, sd := range s.regions.sides {
		if sd.inTx {
			return true
		}
	}
	return false
}
