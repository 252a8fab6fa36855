package regions

import (
	"slices"

	"github.com/privata/privata/policy"
	"github.com/privata/privata/rewrite"
)

// MoveSpec is what moving a subject to another cluster takes: the subject,
// its child tables (in the order rows are inserted; they are deleted in
// the reverse order), and the values the update sets, as text (nil for
// NULL). The proxy copies the subject's rows from the old home to the new
// one with those values, and deletes them at the old home, in one
// two-phase transaction.
type MoveSpec struct {
	Move
	Children []*policy.Table
	Key      string
	Set      map[string]*string
}

// PlanMove checks that an update routed as move m can be carried out and
// returns what it takes. It refuses (0A000) what it cannot carry out
// faithfully: several subjects, a WHERE clause with more than the key, a
// value it does not know, a new key, RETURNING.
func (r *Router) PlanMove(m *Move, h *rewrite.Hints, params []Param) (*MoveSpec, error) {
	refuse := func(why string) error {
		return errorf(CodeFeatureNotSupported, "Move the subject with an UPDATE of constant values "+
			"whose WHERE clause names its key and nothing else, then change the rest.",
			"this update moves a subject from region %s to region %s, and %s", m.From, m.To, why)
	}
	t := m.Table
	if h.Returning {
		return nil, refuse("a move returns no rows")
	}
	if !h.OnlyEqual || len(h.Equal) != 1 || h.Equal[0].Column != t.Key || len(h.Equal[0].Values) != 1 {
		return nil, refuse("its WHERE clause must name the subject's key and nothing else")
	}
	key := resolve(h.Equal[0].Values[0], params)
	if !key.known || key.null {
		return nil, refuse("its key must be a constant or a text parameter")
	}
	spec := &MoveSpec{Move: *m, Children: r.Policy.Children(t), Key: key.text, Set: map[string]*string{}}
	for col, hv := range h.Set {
		if col == t.Key {
			return nil, refuse("it may not change the key as well")
		}
		v := resolve(hv, params)
		if !v.known {
			return nil, refuse("it sets " + col + " to a value Privata cannot read")
		}
		if v.null {
			spec.Set[col] = nil
		} else {
			text := v.text
			spec.Set[col] = &text
		}
	}
	return spec, nil
}

// Remember records that region holds the subject of table t whose key is
// key (as text), after a move.
func (d *Directory) Remember(t *policy.Table, key, region string) {
	d.learn(t, value{text: key, known: true}, region)
}

// reversed returns the tables in reverse order.
func reversed(ts []*policy.Table) []*policy.Table {
	out := slices.Clone(ts)
	slices.Reverse(out)
	return out
}

// DeleteOrder returns the child tables in the order their rows are
// deleted: the reverse of the policy's, so that a child referring to an
// earlier one (conditions to encounters) goes first.
func (m *MoveSpec) DeleteOrder() []*policy.Table { return reversed(m.Children) }
