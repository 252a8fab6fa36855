package regions

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/privata/privata/fdw"
	"github.com/privata/privata/policy"
	"github.com/privata/privata/rewrite"
)

// Router decides which region's cluster each statement of a session goes
// to. It is safe for concurrent use.
type Router struct {
	Policy *policy.Policy
	Topo   *fdw.Topology
	Dir    *Directory
	Pools  *Pools
	// TwoPhase lets a transaction write to several clusters.
	TwoPhase bool

	types sync.Map // residency column's type, for binary values
}

// Session is what routing knows of a session.
type Session struct {
	// Region is the session's region.
	Region string
	// Role is the session's policy role; nil when it has none.
	Role    *policy.Role
	Purpose string
}

// Statement is one statement to route.
type Statement struct {
	Analysis *rewrite.Statement
	Class    rewrite.Classification
	// Hints are the statement's values (rewrite.RouteHints); nil when the
	// statement touches no classified table.
	Hints  *rewrite.Hints
	Params []Param
}

// Route is where a statement goes.
type Route struct {
	// Region is the home region of the subjects the statement writes or
	// reads by key; the session's region when it names none.
	Region string
	// Target is the cluster (storage.Target.Name) that stores Region.
	Target string
	// Write is set when the statement may change data there.
	Write bool
	// Transfers are the transfers that let the session read another
	// region's subjects: the proxy audits such a read as a transfer.
	Transfers []*policy.Transfer
	// Move is set for an update that moves a subject to a region of
	// another cluster.
	Move *Move
	// Why says how the route was chosen, for logs and tests; it never
	// holds a value.
	Why string
}

// Move is an update that changes a subject's home region to one another
// cluster stores.
type Move struct {
	Table    *policy.Table
	From, To string // regions
}

// Home returns the cluster of region r.
func (r *Router) Home(region string) string {
	if p := r.Topo.PeerOf(region); p != nil {
		return p.Target.Name
	}
	return ""
}

// writes reports whether a statement kind may change data.
func writes(st *rewrite.Statement) bool {
	if st == nil {
		return false
	}
	switch st.Kind {
	case rewrite.Select, rewrite.Show, rewrite.Explain, rewrite.CopyTo, rewrite.Transaction,
		rewrite.Set, rewrite.Reset, rewrite.Discard, rewrite.Listen, rewrite.Unlisten,
		rewrite.Fetch, rewrite.Close, rewrite.Declare, rewrite.Prepare, rewrite.Deallocate:
		return false
	}
	return true
}

// Route decides where st goes for session s.
func (r *Router) Route(ctx context.Context, s Session, st Statement) (Route, error) {
	rt := Route{Region: s.Region, Target: r.Home(s.Region), Write: writes(st.Analysis),
		Why: "the session's region"}
	h := st.Hints
	if len(r.Topo.Peers) < 2 || h == nil || len(st.Class.Tables) == 0 {
		return rt, nil
	}
	var regions []string
	var err error
	switch h.Command {
	case "INSERT":
		t := r.table(st.Class, h.Target)
		if t == nil {
			return rt, nil
		}
		regions, err = r.insertRegions(ctx, t, h, st.Params)
		rt.Why = "the home region of the rows inserted into " + t.Name
		if err == nil && len(regions) == 1 && t.Kind == policy.Subject {
			r.learnKeys(t, h, st.Params, regions[0])
		}
	case "UPDATE", "DELETE":
		t := r.table(st.Class, h.Target)
		if t == nil {
			return rt, nil
		}
		regions, err = r.keyRegions(ctx, t, h, h.Target, st.Params)
		rt.Why = "the home region of the " + t.Name + " rows named by key"
		if err == nil && h.Command == "UPDATE" && len(regions) == 1 {
			if err := r.moveOf(ctx, s, t, h, st.Params, regions[0], &rt); err != nil {
				return rt, err
			}
		}
	case "SELECT":
		for i := range h.From {
			t := r.table(st.Class, &h.From[i])
			if t == nil {
				continue
			}
			more, e := r.keyRegions(ctx, t, h, &h.From[i], st.Params)
			if e != nil {
				return rt, e
			}
			for _, m := range more {
				if !slices.Contains(regions, m) {
					regions = append(regions, m)
				}
			}
		}
		rt.Why = "the home region of the subjects read by key"
	default:
		return rt, nil
	}
	if err != nil {
		return rt, err
	}
	return r.settle(s, st, rt, regions)
}

// settle turns the regions a statement's subjects live in into a route.
func (r *Router) settle(s Session, st Statement, rt Route, regions []string) (Route, error) {
	home := rt.Target
	targets := map[string]bool{}
	for _, reg := range regions {
		targets[r.Home(reg)] = true
	}
	switch {
	case len(regions) == 0:
		rt.Why = "the session's region (no subject named by a value)"
		return rt, nil
	case len(targets) > 1:
		slices.Sort(regions)
		return rt, errorf(CodeFeatureNotSupported, "Send one statement per region: each region's "+
			"subjects live in their own cluster.", "this statement touches subjects of regions %s, "+
			"which live in different clusters", strings.Join(regions, " and "))
	}
	rt.Region = regions[0]
	rt.Target = r.Home(rt.Region)
	if rt.Target == home || rt.Move != nil {
		return rt, nil
	}
	// The statement runs where the subjects live, away from the session:
	// what it reads of them crosses regions and needs a transfer.
	read := classesRead(st)
	if len(read) == 0 {
		return rt, nil
	}
	var missing []string
	for _, c := range read {
		var tr *policy.Transfer
		if s.Role != nil {
			tr = r.Policy.TransferFor(rt.Region, s.Region, s.Role.Name, s.Purpose, c)
		}
		if tr == nil {
			missing = append(missing, string(c))
			continue
		}
		if !slices.Contains(rt.Transfers, tr) {
			rt.Transfers = append(rt.Transfers, tr)
		}
	}
	if len(missing) > 0 {
		role := "(none)"
		if s.Role != nil {
			role = s.Role.Name
		}
		purpose := s.Purpose
		if purpose == "" {
			purpose = "(none)"
		}
		return rt, &Error{SQLState: CodeInsufficientPriv, Region: rt.Region,
			Message: fmt.Sprintf("the subjects this statement reads live in region %s, and no "+
				"transfer of the policy lets role %s read their %s data in region %s for "+
				"purpose %s", rt.Region, role, strings.Join(missing, " and "), s.Region, purpose),
			Hint: "Add a transfer to the policy (transfers:), or connect to a Privata " +
				"instance of region " + rt.Region + "."}
	}
	return rt, nil
}

// classesRead returns the classes of data a statement reads (and a write
// returns): Clinical for any row of a classified table, Identity when an
// identity column is read.
func classesRead(st Statement) []policy.Class {
	reads := st.Analysis != nil && st.Analysis.Kind == rewrite.Select ||
		st.Hints != nil && st.Hints.Returning
	if !reads {
		return nil
	}
	out := []policy.Class{policy.Clinical}
	for _, c := range st.Class.Columns {
		if c.Class == policy.Identity && c.Access&rewrite.Read != 0 {
			return append(out, policy.Identity)
		}
	}
	return out
}

// table returns the classified table a relation of the statement names.
func (r *Router) table(c rewrite.Classification, rel *rewrite.Relation) *policy.Table {
	if rel == nil {
		return nil
	}
	for _, t := range c.Tables {
		if t.Name == rel.Name && (rel.Schema == "" || rel.Schema == t.Schema) {
			return t
		}
	}
	return nil
}

// insertRegions returns the home regions of the rows an INSERT writes; none
// when the text does not show them (the cluster's row-level security then
// refuses rows of regions it does not serve).
func (r *Router) insertRegions(ctx context.Context, t *policy.Table, h *rewrite.Hints,
	params []Param) ([]string, error) {
	if h.FromQuery || len(h.Rows) == 0 {
		return nil, nil
	}
	col := r.routingColumn(t)
	if col == "" {
		return []string{r.Policy.DefaultRegion()}, nil
	}
	idx := -1
	if h.Columns == nil {
		return nil, nil // positional: the table's column order is the cluster's
	}
	idx = slices.Index(h.Columns, col)
	var out []string
	for _, row := range h.Rows {
		var reg string
		switch {
		case idx < 0:
			// Not given: NULL, unless the column has a default, which
			// the cluster applies and checks.
			if t.Kind == policy.Child {
				continue
			}
			reg = r.Policy.Residency.RegionOf("", true)
		case idx >= len(row):
			return nil, nil
		default:
			v := resolve(row[idx], params)
			if !v.usable() {
				return nil, nil
			}
			var err error
			if reg, err = r.regionOfValue(ctx, t, col, v); err != nil {
				return nil, err
			}
			if reg == "" {
				continue
			}
		}
		if !slices.Contains(out, reg) {
			out = append(out, reg)
		}
	}
	return out, nil
}

// learnKeys tells the directory where the subjects an INSERT writes live.
// Should the insert fail, no cluster holds the subject, and a statement
// routed by the entry finds nothing there, as it would anywhere.
func (r *Router) learnKeys(t *policy.Table, h *rewrite.Hints, params []Param, region string) {
	idx := slices.Index(h.Columns, t.Key)
	if idx < 0 {
		return
	}
	for _, row := range h.Rows {
		if idx < len(row) {
			r.Dir.learn(t, resolve(row[idx], params), region)
		}
	}
}

// routingColumn is the column whose value places a row of t: the residency
// column of the residency table, a child's reference to its subject; ""
// for a subject table the residency rule does not read (its subjects live
// in the default region).
func (r *Router) routingColumn(t *policy.Table) string {
	if t.Kind == policy.Child {
		return t.Reference
	}
	if res := r.Policy.Residency; res != nil && res.Table == t.QualifiedName() {
		return res.Column
	}
	return ""
}

// regionOfValue returns the region a row of t belongs to from the value v
// of its routing column: by the residency rule for a subject, from the
// directory for a child ("" when no cluster holds the subject).
func (r *Router) regionOfValue(ctx context.Context, t *policy.Table, col string, v value) (string, error) {
	if t.Kind == policy.Child {
		if v.null {
			return "", nil
		}
		reg, _, err := r.Dir.lookup(ctx, r.Policy.SubjectOf(t), v)
		return reg, err
	}
	if v.param == nil {
		return r.Policy.Residency.RegionOf(v.text, v.null), nil
	}
	// A binary value of another type than text: the home cluster reads it
	// as the column's type.
	typ, err := r.columnType(ctx, t, col)
	if err != nil {
		return "", err
	}
	home := r.Home(r.Policy.DefaultRegion())
	rows, err := r.Pools.exec(ctx, home, fmt.Sprintf("SELECT privata.region_of(CAST($1 AS %s)::text)", typ), v)
	if err != nil {
		return "", fmt.Errorf("read a binary value of %s.%s: %w", t.Name, col, err)
	}
	return rows[0], nil
}

// columnType returns a column's type as format_type prints it.
func (r *Router) columnType(ctx context.Context, t *policy.Table, col string) (string, error) {
	key := t.QualifiedName() + "." + col
	if v, ok := r.types.Load(key); ok {
		return v.(string), nil
	}
	home := r.Home(r.Policy.DefaultRegion())
	rows, err := r.Pools.exec(ctx, home, `SELECT pg_catalog.format_type(a.atttypid, a.atttypmod)
		FROM pg_catalog.pg_attribute a
		WHERE a.attrelid = pg_catalog.to_regclass(pg_catalog.quote_ident($1) || '.' ||
			pg_catalog.quote_ident($2)) AND a.attname = $3`,
		value{text: t.Schema, known: true}, value{text: t.Name, known: true}, value{text: col, known: true})
	if err != nil || len(rows) == 0 {
		return "", fmt.Errorf("read the type of %s.%s: %v", t.Name, col, err)
	}
	r.types.Store(key, rows[0])
	return rows[0], nil
}

// keyRegions returns the home regions of the subjects a statement names by
// key through relation rel (table t): the subject table's key, or a
// child's reference to it, compared with values.
func (r *Router) keyRegions(ctx context.Context, t *policy.Table, h *rewrite.Hints,
	rel *rewrite.Relation, params []Param) ([]string, error) {
	col := t.Key
	if t.Kind == policy.Child {
		col = t.Reference
	}
	subject := r.Policy.SubjectOf(t)
	var out []string
	for _, eq := range h.Equal {
		if eq.Column != col || eq.Relation == nil || eq.Relation.Name != rel.Name ||
			eq.Relation.Alias != rel.Alias {
			continue
		}
		for _, hv := range eq.Values {
			v := resolve(hv, params)
			if !v.usable() {
				return nil, nil
			}
			if v.null {
				continue
			}
			reg, _, err := r.Dir.lookup(ctx, subject, v)
			if err != nil {
				return nil, err
			}
			if reg != "" && !slices.Contains(out, reg) {
				out = append(out, reg)
			}
		}
		break
	}
	return out, nil
}

// moveOf checks an update of a subject's residency column: a change of
// home region to another cluster's region is a move, refused unless the
// policy says move and two-phase commit is on.
func (r *Router) moveOf(ctx context.Context, s Session, t *policy.Table, h *rewrite.Hints,
	params []Param, from string, rt *Route) error {
	res := r.Policy.Residency
	if t.Kind != policy.Subject || res == nil || res.Table != t.QualifiedName() {
		return nil
	}
	hv, ok := h.Set[res.Column]
	if !ok {
		return nil
	}
	v := resolve(hv, params)
	if !v.usable() {
		return nil // the cluster's trigger and row-level security decide
	}
	to, err := r.regionOfValue(ctx, t, res.Column, v)
	if err != nil || to == from || r.Home(to) == r.Home(from) {
		return err
	}
	switch {
	case res.OnChange == policy.Refuse:
		return &Error{SQLState: CodeCheckViolation, Region: from,
			Message: fmt.Sprintf("an update of %q may not change a subject's home region "+
				"(from %s to %s)", t.Name, from, to),
			Hint: "the policy says on_region_change: refuse"}
	case !r.TwoPhase:
		return &Error{SQLState: CodeFeatureNotSupported, Region: from,
			Message: fmt.Sprintf("this update moves a subject of %q from region %s to region %s, "+
				"which another cluster stores, and two-phase commit is off", t.Name, from, to),
			Hint: "Turn server.two_phase_commit on in privata.yaml to move subjects between clusters."}
	}
	rt.Move = &Move{Table: t, From: from, To: to}
	return nil
}
