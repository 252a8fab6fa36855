package storage

import (
	"slices"

	"github.com/privata/privata/policy"
)

// Split is the layout of a classified table: its base tables and where each
// of the application's columns is stored. It describes the tables as they
// are (read from the catalog) or as a plan will leave them (adoption,
// migration); Derive builds everything else from it.
type Split struct {
	Table *policy.Table
	// App lists the application's columns in their order.
	App []*AppColumn
	// Identity is the subject's identity base table; nil for a child.
	Identity *Base
	// Clinical is the clinical base table.
	Clinical *Base
	// AppGrants are the grants of the original table, kept on the view.
	AppGrants []Grant

	// Child tables: the subject's split, and the reference column's type
	// and the constraint name that errors about it report.
	Subject       *Split
	ReferenceType string
	ReferenceFK   string
}

// AppColumn is a column of the application's view.
type AppColumn struct {
	Name string
	// Side is Identity or Clinical: the base table that stores it. The
	// reference column of a child table has no side: its view maps it back
	// from the pseudonym.
	Side policy.Class
	// Column is the base table's column (nil for a child's reference).
	Column *Column
}

// Base is a base table of a split table.
type Base struct {
	Schema, Name string
	Columns      []*Column
	// Comment is the original table's comment, which the view shows.
	Comment string
	// Constraints are the table's constraints (primary key, unique, check,
	// foreign keys) as they are, or will be.
	Constraints []*Constraint
	// Indexes are its indexes that back no constraint.
	Indexes []*Index
}

// QualifiedName is the base table's quoted name.
func (b *Base) QualifiedName() string { return qname(b.Schema, b.Name) }

// Column returns the named column, or nil.
func (b *Base) Column(name string) *Column {
	for _, c := range b.Columns {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// Key is the subject table's key column on its identity base table.
func (s *Split) Key() *Column { return s.Identity.Column(s.Table.Key) }

// Bases returns the base tables, identity first.
func (s *Split) Bases() []*Base {
	if s.Identity != nil {
		return []*Base{s.Identity, s.Clinical}
	}
	return []*Base{s.Clinical}
}

// Base returns the base table of a side.
func (s *Split) Base(side policy.Class) *Base {
	if side == policy.Identity {
		return s.Identity
	}
	return s.Clinical
}

// SideColumns returns the application's columns stored on side, in the
// application's order.
func (s *Split) SideColumns(side policy.Class) []*AppColumn {
	var out []*AppColumn
	for _, c := range s.App {
		if c.Side == side {
			out = append(out, c)
		}
	}
	return out
}

// rowKey returns the columns that identify a child's base row: its primary
// key, when it has one and the key does not include the reference column
// (which the view's rows hold as the subject's key, not the pseudonym);
// otherwise nil, and triggers locate rows by value.
func (s *Split) rowKey() []string {
	for _, k := range s.Clinical.Constraints {
		if k.Type == "p" && !slices.Contains(k.Columns, PseudonymColumn) {
			return k.Columns
		}
	}
	return nil
}

// keyChecks are the foreign keys of children that forbid changing the
// subject's key while rows refer to it (ON UPDATE NO ACTION or RESTRICT):
// the pseudonym never changes, so the subject's update trigger checks them.
func (s *Split) keyChecks(children []*Split) []keyCheck {
	var out []keyCheck
	for _, c := range children {
		for _, k := range c.Clinical.Constraints {
			if k.Type == "f" && k.RefSchema == ClinicalSchema && k.RefTable == s.Table.Name &&
				slices.Equal(k.Columns, []string{PseudonymColumn}) && (k.OnUpdate == "a" || k.OnUpdate == "r") {
				out = append(out, keyCheck{child: c.Clinical, constraint: k.Name, table: c.Table.Name})
			}
		}
	}
	return out
}

type keyCheck struct {
	child      *Base
	constraint string
	table      string
}
