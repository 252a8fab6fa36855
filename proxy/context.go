package proxy

import "sync"

// The session context settings Privata makes visible to SQL. Views and
// row-level security read them with current_setting(name, true).
var contextGUCs = []string{"privata.actor", "privata.purpose", "privata.break_glass"}

// tagGUC maps a sqlcommenter tag to the setting it sets.
var tagGUC = map[string]string{
	"actor":       "privata.actor",
	"purpose":     "privata.purpose",
	"break_glass": "privata.break_glass",
}

// ctxSet is one assignment of a context setting.
type ctxSet struct {
	name, value string
	local       bool
}

// ctxValue is a setting's value as far as Privata knows it.
type ctxValue struct {
	v     string
	known bool
}

// upstreamContext tracks the context settings' values in the upstream
// session as PostgreSQL's transaction rules make them: SET lasts past
// COMMIT, SET LOCAL until the end of the transaction, and a rollback undoes
// both. The relay's upstream side feeds it responses in order; the client
// side asks whether a value must be injected before a statement.
type upstreamContext struct {
	mu sync.Mutex
	// visible is what SQL sees now; session what survives a commit; snap
	// the session values when the current transaction began.
	visible, session, snap map[string]ctxValue
	// Within the current cycle (up to ReadyForQuery):
	failed, rolledBack bool
	// inflight counts forwarded entries that may change the values and
	// whose cycle has not ended: while there are any, values are not
	// trusted.
	inflight int
}

func newUpstreamContext(initial map[string]string) *upstreamContext {
	c := &upstreamContext{visible: map[string]ctxValue{}, session: map[string]ctxValue{},
		snap: map[string]ctxValue{}}
	for _, g := range contextGUCs {
		v := ctxValue{v: initial[g], known: true}
		c.visible[g], c.session[g], c.snap[g] = v, v, v
	}
	return c
}

// needs returns the assignments that make the upstream values equal want,
// counting an unknown or in-flight value as different.
func (c *upstreamContext) needs(want map[string]string) []ctxSet {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []ctxSet
	for _, g := range contextGUCs {
		w, ok := want[g]
		if !ok {
			continue
		}
		if cur := c.visible[g]; c.inflight > 0 || !cur.known || cur.v != w {
			out = append(out, ctxSet{name: g, value: w})
		}
	}
	return out
}

func (c *upstreamContext) begin() {
	c.mu.Lock()
	c.inflight++
	c.mu.Unlock()
}

// set records a completed assignment.
func (c *upstreamContext) set(sets []ctxSet) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range sets {
		v := ctxValue{v: s.value, known: true}
		c.visible[s.name] = v
		if !s.local {
			c.session[s.name] = v
		}
	}
}

// forget marks every value unknown (RESET ALL, DISCARD ALL, a rollback to
// a savepoint, a failed injection).
func (c *upstreamContext) forget() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, g := range contextGUCs {
		c.visible[g], c.session[g] = ctxValue{}, ctxValue{}
	}
}

func (c *upstreamContext) fail()     { c.mu.Lock(); c.failed = true; c.mu.Unlock() }
func (c *upstreamContext) rollback() { c.mu.Lock(); c.rolledBack = true; c.mu.Unlock() }

// ready ends a cycle at ReadyForQuery with transaction status tx; done is
// the number of context-changing entries whose cycle this ends.
func (c *upstreamContext) ready(tx byte, done int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.inflight -= done
	switch {
	case tx == 'I' && (c.failed || c.rolledBack):
		for _, g := range contextGUCs {
			c.visible[g], c.session[g] = c.snap[g], c.snap[g]
		}
	case tx == 'I':
		for _, g := range contextGUCs {
			c.visible[g] = c.session[g]
		}
	case c.rolledBack:
		// ROLLBACK TO SAVEPOINT: which SETs it undid is not tracked.
		for _, g := range contextGUCs {
			c.visible[g], c.session[g] = ctxValue{}, ctxValue{}
		}
	}
	if tx == 'I' {
		for _, g := range contextGUCs {
			c.snap[g] = c.session[g]
		}
	}
	c.failed, c.rolledBack = false, false
}
