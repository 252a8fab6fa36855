package storage

import (
	"fmt"
	"slices"
	"strings"

	"github.com/privata/privata/policy"
)

// A split table whose policy entry changed is migrated in place: columns
// that change class move between the base tables with their values. Policy
// changes that alter only what is derived (masks, roles) need no migration:
// Derive rebuilds the views, triggers and grants.

// existing reads the split table t from the catalog and plans what its
// policy entry now asks.
func (pl *planner) existing(t *policy.Table, reg *Registered) error {
	if err := pl.sameShape(t, reg); err != nil {
		return err
	}
	s, err := pl.splitFromCatalog(t, reg)
	if err != nil {
		return err
	}
	pl.splits[t] = s
	if t.Kind == policy.Subject {
		return pl.moveColumns(s)
	}
	return nil
}

// sameShape refuses changes to what a table is: its kind, key, subject.
func (pl *planner) sameShape(t *policy.Table, reg *Registered) error {
	refuse := func(what string) error {
		return &Error{Table: t, Msg: fmt.Sprintf("%s is split with a different %s than the policy now says",
			t.QualifiedName(), what), Hint: "changing what a split table is keyed by is not supported; " +
			"keep its kind, key, subject and reference column"}
	}
	switch {
	case reg.Kind != t.Kind:
		return refuse("kind")
	case t.Kind == policy.Subject && reg.Key != t.Key:
		return refuse("key")
	case t.Kind == policy.Child && (reg.Reference != t.Reference ||
		reg.SubjectSchema+"."+reg.SubjectTable != t.SubjectTable):
		return refuse("subject or reference column")
	}
	return nil
}

// splitFromCatalog reads the layout of split table t.
func (pl *planner) splitFromCatalog(t *policy.Table, reg *Registered) (*Split, error) {
	s := &Split{Table: t, AppGrants: reg.AppGrants, ReferenceType: reg.ReferenceType}
	base := func(schema string) (*Base, error) {
		r := pl.cat.Relation(schema, t.Name)
		if r == nil || r.Kind != "r" {
			return nil, &Error{Table: t, Msg: fmt.Sprintf("base table %s is missing", qname(schema, t.Name)),
				Hint: "a split table's data lives in its base tables; restore it from a backup"}
		}
		return &Base{Schema: schema, Name: t.Name, Columns: r.Columns, Constraints: r.Constraints,
			Indexes: r.Indexes, Comment: r.Comment}, nil
	}
	var err error
	if s.Clinical, err = base(ClinicalSchema); err != nil {
		return nil, err
	}
	if t.Kind == policy.Subject {
		if s.Identity, err = base(IdentitySchema); err != nil {
			return nil, err
		}
	} else {
		s.Subject = pl.splits[pl.p.SubjectOf(t)]
		s.ReferenceFK = objectName(t.Name, t.Reference, "fkey")
		for _, k := range s.Clinical.Constraints {
			if k.Type == "f" && k.RefSchema == ClinicalSchema && k.RefTable == s.Subject.Table.Name &&
				slices.Equal(k.Columns, []string{PseudonymColumn}) {
				s.ReferenceFK = k.Name
			}
		}
	}
	for _, name := range pl.cat.appColumns(reg) {
		if t.Kind == policy.Child && name == t.Reference {
			s.App = append(s.App, &AppColumn{Name: name})
			continue
		}
		for _, b := range s.Bases() {
			if c := b.Column(name); c != nil {
				s.App = append(s.App, &AppColumn{Name: name, Side: s.sideOf(b), Column: c})
			}
		}
	}
	return s, nil
}

// sideOf returns the side of one of the split's base tables.
func (s *Split) sideOf(b *Base) policy.Class {
	if b == s.Identity {
		return policy.Identity
	}
	return policy.Clinical
}

// moveColumns plans moving the subject's columns whose class changed.
func (pl *planner) moveColumns(s *Split) error {
	t := s.Table
	moves := map[policy.Class][]*AppColumn{}
	for _, a := range s.App {
		if want := t.SideOf(a.Name, pl.p.Unclassified); want != a.Side {
			if a.Column.Identity != "" || a.Column.Sequence != "" {
				return &Error{Table: t, Msg: fmt.Sprintf("column %s takes its values from a sequence; "+
					"moving it to the %s base table is not supported", a.Name, want),
					Hint: "keep it in its class"}
			}
			moves[want] = append(moves[want], a)
		}
	}
	if len(moves) == 0 {
		return nil
	}
	if err := pl.dropViews(s); err != nil {
		return err
	}
	var b strings.Builder
	var moved []string
	for _, to := range []policy.Class{policy.Identity, policy.Clinical} {
		if len(moves[to]) == 0 {
			continue
		}
		from := policy.Clinical
		if to == policy.Clinical {
			from = policy.Identity
		}
		if err := pl.moveTo(&b, s, moves[to], s.Base(from), s.Base(to)); err != nil {
			return err
		}
		for _, a := range moves[to] {
			moved = append(moved, fmt.Sprintf("%s to %s", a.Name, to))
		}
	}
	pl.locks = append(pl.locks, s.Identity.QualifiedName(), s.Clinical.QualifiedName())
	pl.migrations = append(pl.migrations, Step{
		Comment: fmt.Sprintf("%s: move columns whose class changed, with their values, between the "+
			"base tables (%s). The views go first; they are derived again below.", t.QualifiedName(),
			strings.Join(moved, ", ")),
		SQL: b.String(),
	})
	pl.derive[t] = "columns changed class"
	return nil
}

// dropViews drops the table's views ahead of a change to its base tables.
func (pl *planner) dropViews(s *Split) error {
	t := s.Table
	var b strings.Builder
	for _, v := range upsertViews {
		if pl.cat.Relation(AccessSchema, t.Name+v) != nil {
			fmt.Fprintf(&b, "DROP VIEW %s;\n", qname(AccessSchema, t.Name+v))
			pl.dropped[AccessSchema+"."+t.Name+v] = true
		}
	}
	if r := pl.cat.Relation(t.Schema, t.Name); r != nil {
		if len(r.Dependents) > 0 {
			return &Error{Table: t, Msg: fmt.Sprintf("views depend on %s: %s", t.QualifiedName(),
				strings.Join(r.Dependents, ", ")), Hint: "drop them, apply, then create them again"}
		}
		fmt.Fprintf(&b, "DROP VIEW %s;\n", qname(t.Schema, t.Name))
		pl.dropped[t.Schema+"."+t.Name] = true
	}
	for _, side := range []policy.Class{policy.Identity, policy.Clinical} {
		name := t.Name + "_" + string(side)
		if pl.cat.Relation(AccessSchema, name) != nil {
			fmt.Fprintf(&b, "DROP VIEW %s;\n", qname(AccessSchema, name))
			pl.dropped[AccessSchema+"."+name] = true
		}
	}
	pl.migrations = append(pl.migrations, Step{
		Comment: t.QualifiedName() + ": drop the views that read the base tables about to change.",
		SQL:     b.String()})
	return nil
}

// moveTo moves columns from one base table to the other: add, copy by
// pseudonym, recreate their constraints and indexes, drop the old ones.
func (pl *planner) moveTo(b *strings.Builder, s *Split, cols []*AppColumn, from, to *Base) error {
	t := s.Table
	names := make([]string, len(cols))
	for i, a := range cols {
		names[i] = a.Name
	}
	rel := pl.cat.Relation(from.Schema, from.Name)
	for _, k := range rel.ReferencedBy {
		if overlaps(k.RefColumns, names) {
			return &Error{Table: t, Msg: fmt.Sprintf("foreign key %s of %s refers to a column that "+
				"changes class", k.Name, qname(k.Schema, k.Table)), Hint: "drop it, or keep the column's class"}
		}
	}
	for _, a := range cols {
		c := *a.Column
		nc := &c
		fmt.Fprintf(b, "ALTER TABLE %s ADD COLUMN %s;\n", to.QualifiedName(), columnDDL(&Column{
			Name: c.Name, Type: c.Type, Collation: c.Collation, Default: c.Default}))
		if c.Comment != "" {
			fmt.Fprintf(b, "COMMENT ON COLUMN %s.%s IS %s;\n", to.QualifiedName(), ident(c.Name), literal(c.Comment))
		}
		to.Columns = append(to.Columns, nc)
		a.Column, a.Side = nc, s.sideOf(to)
	}
	set := make([]string, len(names))
	for i, n := range names {
		set[i] = fmt.Sprintf("%s = f.%s", ident(n), ident(n))
	}
	fmt.Fprintf(b, "UPDATE %s t\n   SET %s\n  FROM %s f\n WHERE f.%s = t.%s;\n", to.QualifiedName(),
		strings.Join(set, ", "), from.QualifiedName(), ident(PseudonymColumn), ident(PseudonymColumn))
	for _, a := range cols {
		if a.Column.NotNull {
			fmt.Fprintf(b, "ALTER TABLE %s ALTER COLUMN %s SET NOT NULL;\n", to.QualifiedName(), ident(a.Name))
		}
	}
	for _, k := range rel.Constraints {
		if !overlaps(k.Columns, names) {
			continue
		}
		if !subset(k.Columns, names) || k.Type == "p" {
			return &Error{Table: t, Msg: fmt.Sprintf("constraint %s would span identity and clinical "+
				"columns", k.Name), Hint: "drop it, or move all of its columns"}
		}
		def := k.Def
		if k.Type == "f" {
			def = foreignKeyDef(k, qname(k.RefSchema, k.RefTable))
		}
		fmt.Fprintf(b, "ALTER TABLE %s ADD CONSTRAINT %s %s;\n", to.QualifiedName(), ident(k.Name), def)
	}
	for _, ix := range rel.Indexes {
		if overlaps(ix.Columns, names) {
			if !subset(ix.Columns, names) {
				return &Error{Table: t, Msg: fmt.Sprintf("index %s would span identity and clinical "+
					"columns", ix.Name), Hint: "drop it, or move all of its columns"}
			}
			fmt.Fprintf(b, "%s;\n", moveIndex(ix, rel.Printed, to))
		}
	}
	drops := make([]string, len(names))
	for i, n := range names {
		drops[i] = "DROP COLUMN " + ident(n)
	}
	fmt.Fprintf(b, "ALTER TABLE %s %s;\n", from.QualifiedName(), strings.Join(drops, ", "))
	from.Columns = slices.DeleteFunc(slices.Clone(from.Columns), func(c *Column) bool {
		return slices.Contains(names, c.Name)
	})
	return nil
}

func overlaps(a, b []string) bool {
	for _, x := range a {
		if slices.Contains(b, x) {
			return true
		}
	}
	return false
}

func subset(a, b []string) bool {
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	return true
}
