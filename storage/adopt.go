package storage

import (
	"fmt"
	"slices"
	"strings"

	"github.com/privata/privata/policy"
)

// Adoption converts a plain table with rows in place: new base tables, the
// rows copied with fresh pseudonyms, constraints and indexes recreated on
// the base table that holds their columns, sequences handed over, the
// original dropped; the view takes its name. What cannot be converted
// faithfully is refused before anything runs.

type adoption struct {
	t     *policy.Table
	orig  *Relation
	split *Split
	// ref is the child's foreign key from its reference column to the
	// subject's key, if it had one.
	ref *Constraint
	// constraints and indexes to recreate, with the base table they go to.
	constraints []placed[*Constraint]
	indexes     []placed[*Index]
	// pseudonymIndexed says that one of the child's indexes serves the
	// lookups of a subject's rows, so that it needs no index of Privata's.
	pseudonymIndexed bool
	// foreign keys, and the table each refers to after the conversion
	fks []foreignKey
	// serial sequences that move to the base schema; identity columns
	// whose new sequences continue where the old ones stood
	moves    []*Column // original columns
	identity []*Column // original columns
}

type placed[T any] struct {
	base *Base
	obj  T
}

type foreignKey struct {
	base *Base
	k    *Constraint
	// ref is the classified table it refers to, nil for other tables;
	// target is the quoted table it refers to once split.
	ref    *policy.Table
	target string
}

// adopt plans the conversion of t's plain table rel.
func (pl *planner) adopt(t *policy.Table, rel *Relation) error {
	if err := pl.refuse(t, rel); err != nil {
		return err
	}
	a := &adoption{t: t, orig: rel}
	s := &Split{Table: t, AppGrants: tableGrants(rel)}
	a.split = s
	var err error
	if t.Kind == policy.Subject {
		err = pl.layoutSubject(a)
	} else {
		err = pl.layoutChild(a)
	}
	if err != nil {
		return err
	}
	if err := pl.placeConstraints(a); err != nil {
		return err
	}
	if err := pl.checkData(a); err != nil {
		return err
	}
	pl.splits[t] = s
	pl.adopted = append(pl.adopted, a)
	pl.derive[t] = "a plain table converted in place"
	pl.locks = append(pl.locks, rel.QualifiedName())
	pl.dropped[t.Schema+"."+t.Name] = true
	return nil
}

// tableGrants are the original table's grants, kept on the view.
func tableGrants(rel *Relation) []Grant {
	var out []Grant
	for _, g := range rel.Grants {
		if g.Grantee != Owner {
			out = append(out, g)
		}
	}
	return out
}

// baseColumn copies an original column for a base table.
func (pl *planner) baseColumn(a *adoption, c *Column, base *Base) (*Column, error) {
	n := *c
	switch {
	case c.Identity != "":
		n.SequenceSchema, n.SequenceName = base.Schema, objectName(base.Name, c.Name, "seq")
		p, err := pl.printed(n.SequenceSchema, n.SequenceName)
		if err != nil {
			return nil, err
		}
		n.Sequence = p
		a.identity = append(a.identity, c)
	case c.Sequence != "":
		// A serial column's sequence moves with it; its default names it.
		n.SequenceSchema = base.Schema
		p, err := pl.printed(n.SequenceSchema, n.SequenceName)
		if err != nil {
			return nil, err
		}
		n.Sequence = p
		n.Default = strings.ReplaceAll(c.Default, "'"+c.Sequence+"'::regclass", "'"+p+"'::regclass")
		a.moves = append(a.moves, c)
	}
	return &n, nil
}

func (pl *planner) layoutSubject(a *adoption) error {
	t, s, rel := a.t, a.split, a.orig
	s.Identity = &Base{Schema: IdentitySchema, Name: t.Name, Comment: rel.Comment}
	s.Clinical = &Base{Schema: ClinicalSchema, Name: t.Name}
	key := rel.Column(t.Key)
	kc, err := pl.baseColumn(a, key, s.Identity)
	if err != nil {
		return err
	}
	kc.NotNull = true
	s.Identity.Columns = []*Column{kc,
		{Name: PseudonymColumn, Type: "uuid", BaseType: "uuid", Category: "U", NotNull: true,
			Default: "privata.new_pseudonym()"},
		{Name: RegionColumn, Type: "text", BaseType: "text", Category: "S", NotNull: true},
	}
	s.Clinical.Columns = []*Column{
		{Name: PseudonymColumn, Type: "uuid", BaseType: "uuid", Category: "U", NotNull: true},
	}
	for _, c := range rel.Columns {
		side := t.SideOf(c.Name, pl.p.Unclassified)
		base := s.Base(side)
		bc := kc
		if c.Name != t.Key {
			if bc, err = pl.baseColumn(a, c, base); err != nil {
				return err
			}
			base.Columns = append(base.Columns, bc)
		}
		s.App = append(s.App, &AppColumn{Name: c.Name, Side: side, Column: bc})
	}
	pk := &Constraint{Name: objectName(t.Name, "pkey"), Type: "p", Def: "PRIMARY KEY (" + ident(t.Key) + ")",
		Columns: []string{t.Key}}
	for _, k := range rel.Constraints {
		if k.Type == "p" {
			if !slices.Equal(k.Columns, []string{t.Key}) {
				return &Error{Table: t, Msg: fmt.Sprintf("the primary key of %s is (%s), not the key %s",
					t.QualifiedName(), strings.Join(k.Columns, ", "), t.Key),
					Hint: "a subject table's key is its primary key"}
			}
			pk = k
		}
	}
	s.Identity.Constraints = []*Constraint{pk,
		{Name: objectName(t.Name, PseudonymColumn, "key"), Type: "u",
			Def: "UNIQUE (" + ident(PseudonymColumn) + ")", Columns: []string{PseudonymColumn}}}
	s.Clinical.Constraints = []*Constraint{{Name: objectName(t.Name, "pkey"), Type: "p",
		Def: "PRIMARY KEY (" + ident(PseudonymColumn) + ")", Columns: []string{PseudonymColumn}}}
	return nil
}

func (pl *planner) layoutChild(a *adoption) error {
	t, s, rel := a.t, a.split, a.orig
	subj := pl.p.SubjectOf(t)
	s.Subject = pl.splits[subj]
	s.Clinical = &Base{Schema: ClinicalSchema, Name: t.Name, Comment: rel.Comment}
	ref := rel.Column(t.Reference)
	s.ReferenceType = ref.Type
	s.ReferenceFK = objectName(t.Name, t.Reference, "fkey")
	s.Clinical.Columns = []*Column{{Name: PseudonymColumn, Type: "uuid", BaseType: "uuid", Category: "U",
		NotNull: ref.NotNull}}
	for _, c := range rel.Columns {
		if c.Name == t.Reference {
			s.App = append(s.App, &AppColumn{Name: c.Name})
			continue
		}
		bc, err := pl.baseColumn(a, c, s.Clinical)
		if err != nil {
			return err
		}
		s.Clinical.Columns = append(s.Clinical.Columns, bc)
		s.App = append(s.App, &AppColumn{Name: c.Name, Side: policy.Clinical, Column: bc})
	}
	return nil
}

// sideOf returns the base table that holds all of cols of adopted table a,
// or nil when they are stored apart.
func (a *adoption) sideOf(cols []string) *Base {
	var base *Base
	for _, c := range cols {
		var b *Base
		for _, x := range a.split.Bases() {
			if x.Column(c) != nil {
				b = x
			}
		}
		if b == nil || (base != nil && b != base) {
			return nil
		}
		base = b
	}
	return base
}

// adoptionSteps returns the steps that convert every adopted table.
func (pl *planner) adoptionSteps() []Step {
	if len(pl.adopted) == 0 {
		return nil
	}
	var steps []Step
	add := func(comment string, sql string) {
		if sql != "" {
			steps = append(steps, Step{Comment: comment, SQL: sql})
		}
	}
	var moves, create, copyID, copyRest, keys, fks, seqs, drop strings.Builder
	var names []string
	for _, a := range pl.adopted {
		names = append(names, a.orig.QualifiedName())
		for _, c := range a.moves {
			fmt.Fprintf(&moves, "ALTER SEQUENCE %s OWNED BY NONE;\n", qname(c.SequenceSchema, c.SequenceName))
			fmt.Fprintf(&moves, "ALTER SEQUENCE %s SET SCHEMA %s;\n", qname(c.SequenceSchema, c.SequenceName),
				ident(a.split.Base(a.split.sideOfColumn(c.Name)).Schema))
		}
		for _, b := range a.split.Bases() {
			create.WriteString(createTable(b))
		}
		pl.copyRows(a, &copyID, &copyRest)
		pl.keysAndIndexes(a, &keys)
		for _, fk := range a.fks {
			fmt.Fprintf(&fks, "ALTER TABLE %s ADD CONSTRAINT %s %s;\n", fk.base.QualifiedName(),
				ident(fk.k.Name), foreignKeyDef(fk.k, fk.target))
		}
		pl.sequences(a, &seqs)
	}
	fmt.Fprintf(&drop, "DROP TABLE %s;\n", strings.Join(names, ", "))
	add("Serial sequences move to the schema of the base table that will own them "+
		"(PostgreSQL keeps an owned sequence in its table's schema). Their values go on.", moves.String())
	add("Base tables, owned by "+Owner+". A subject's identity table holds its key, a random "+
		"pseudonym, its home region and the identity columns; its clinical table holds the "+
		"pseudonym and the clinical columns. A child's clinical table holds its columns with "+
		"the subject's pseudonym in place of the reference column.", create.String())
	add("Copy the rows. Every subject gets a fresh random pseudonym and its home region from "+
		"the residency rule.", copyID.String())
	add("Copy the clinical rows, linked by pseudonym; children find their subject's pseudonym "+
		"by the key in their reference column.", copyRest.String())
	add("Recreate the original tables' keys, constraints and indexes on the base table that "+
		"holds their columns, under their original names.", keys.String())
	add("Recreate the foreign keys between the base tables and to other tables, with their "+
		"actions. A child's reference to its subject becomes a foreign key on the pseudonym.", fks.String())
	add("Sequences: identity columns continue where they stood; moved serial sequences belong "+
		"to their new columns.", seqs.String())
	add("Drop the original tables; the views below take their names.", drop.String())
	return steps
}

func createTable(b *Base) string {
	var s strings.Builder
	fmt.Fprintf(&s, "CREATE TABLE %s (\n", b.QualifiedName())
	for i, c := range b.Columns {
		sep := ","
		if i == len(b.Columns)-1 {
			sep = ""
		}
		fmt.Fprintf(&s, "    %s%s\n", columnDDL(c), sep)
	}
	s.WriteString(");\n")
	fmt.Fprintf(&s, "ALTER TABLE %s OWNER TO %s;\n", b.QualifiedName(), ident(Owner))
	if b.Comment != "" {
		fmt.Fprintf(&s, "COMMENT ON TABLE %s IS %s;\n", b.QualifiedName(), literal(b.Comment))
	}
	for _, c := range b.Columns {
		if c.Comment != "" {
			fmt.Fprintf(&s, "COMMENT ON COLUMN %s.%s IS %s;\n", b.QualifiedName(), ident(c.Name),
				literal(c.Comment))
		}
	}
	return s.String()
}

func columnDDL(c *Column) string {
	s := ident(c.Name) + " " + c.Type
	if c.Collation != "" {
		s += " COLLATE " + c.Collation
	}
	switch {
	case c.Identity != "":
		kind := "BY DEFAULT"
		if c.Identity == "a" {
			kind = "ALWAYS"
		}
		s += fmt.Sprintf(" GENERATED %s AS IDENTITY (SEQUENCE NAME %s %s)", kind,
			qname(c.SequenceSchema, c.SequenceName), c.SequenceOptions)
	case c.Default != "":
		s += " DEFAULT " + c.Default
	}
	if c.NotNull {
		s += " NOT NULL"
	}
	return s
}

func (pl *planner) copyRows(a *adoption, id, rest *strings.Builder) {
	t, s := a.t, a.split
	orig := a.orig.QualifiedName()
	values := func(cols []*Column, alias string) []string {
		out := make([]string, len(cols))
		for i, c := range cols {
			out[i] = alias + "." + ident(c.Name)
		}
		return out
	}
	if t.Kind == policy.Subject {
		idCols := s.Identity.Columns[3:]
		region := "privata.region_of(NULL)"
		if r := pl.p.Residency; r != nil && r.Table == t.QualifiedName() {
			region = fmt.Sprintf("privata.region_of(t.%s::text)", ident(r.Column))
		}
		cols := append([]*Column{s.Key(), s.Identity.Column(RegionColumn)}, idCols...)
		vals := append([]string{"t." + ident(t.Key), region}, values(idCols, "t")...)
		fmt.Fprintf(id, "INSERT INTO %s (%s) OVERRIDING SYSTEM VALUE\nSELECT %s\n  FROM %s t;\n",
			s.Identity.QualifiedName(), colNames(cols), strings.Join(vals, ", "), orig)
		clCols := s.Clinical.Columns[1:]
		fmt.Fprintf(rest, "INSERT INTO %s (%s) OVERRIDING SYSTEM VALUE\n"+
			"SELECT i.%s%s\n  FROM %s t\n  JOIN %s i ON i.%s = t.%s;\n",
			s.Clinical.QualifiedName(), colNames(s.Clinical.Columns), ident(PseudonymColumn),
			prefixComma(values(clCols, "t")), orig, s.Identity.QualifiedName(), ident(t.Key), ident(t.Key))
		return
	}
	subj := s.Subject
	cols := s.Clinical.Columns[1:]
	fmt.Fprintf(rest, "INSERT INTO %s (%s) OVERRIDING SYSTEM VALUE\n"+
		"SELECT s.%s%s\n  FROM %s t\n  LEFT JOIN %s s ON s.%s = t.%s;\n",
		s.Clinical.QualifiedName(), colNames(s.Clinical.Columns), ident(PseudonymColumn),
		prefixComma(values(cols, "t")), orig, subj.Identity.QualifiedName(), ident(subj.Table.Key),
		ident(t.Reference))
}

func prefixComma(ss []string) string {
	if len(ss) == 0 {
		return ""
	}
	return ", " + strings.Join(ss, ", ")
}

func (pl *planner) keysAndIndexes(a *adoption, b *strings.Builder) {
	s := a.split
	if s.Identity != nil {
		for _, k := range s.Identity.Constraints {
			if k.Type != "f" && !a.hasConstraint(k) {
				fmt.Fprintf(b, "ALTER TABLE %s ADD CONSTRAINT %s %s;\n", s.Identity.QualifiedName(),
					ident(k.Name), k.Def)
			}
		}
	}
	if s.Identity != nil {
		k := s.Clinical.Constraints[0]
		fmt.Fprintf(b, "ALTER TABLE %s ADD CONSTRAINT %s %s;\n", s.Clinical.QualifiedName(), ident(k.Name), k.Def)
	} else if !a.pseudonymIndexed {
		fmt.Fprintf(b, "CREATE INDEX %s ON %s (%s);\n", ident(objectName(a.t.Name, PseudonymColumn, "idx")),
			s.Clinical.QualifiedName(), ident(PseudonymColumn))
	}
	for _, p := range a.constraints {
		fmt.Fprintf(b, "ALTER TABLE %s ADD CONSTRAINT %s %s;\n", p.base.QualifiedName(), ident(p.obj.Name),
			p.obj.Def)
	}
	for _, p := range a.indexes {
		b.WriteString(moveIndex(p.obj, a.orig.Printed, p.base) + ";\n")
	}
}

// hasConstraint reports whether k is one of the original constraints that
// placeConstraints recreates (the identity table's own primary key is
// added separately only when it is not).
func (a *adoption) hasConstraint(k *Constraint) bool {
	for _, p := range a.constraints {
		if p.obj == k {
			return true
		}
	}
	return false
}

func (pl *planner) sequences(a *adoption, b *strings.Builder) {
	s := a.split
	for _, c := range a.identity {
		nc := s.Base(s.sideOfColumn(c.Name)).Column(c.Name)
		fmt.Fprintf(b, "SELECT pg_catalog.setval(%s, s.last_value, s.is_called) FROM %s s;\n",
			literal(nc.Sequence), qname(c.SequenceSchema, c.SequenceName))
	}
	for _, c := range a.moves {
		base := s.Base(s.sideOfColumn(c.Name))
		seq := qname(base.Schema, c.SequenceName)
		fmt.Fprintf(b, "ALTER SEQUENCE %s OWNER TO %s;\n", seq, ident(Owner))
		fmt.Fprintf(b, "ALTER SEQUENCE %s OWNED BY %s.%s;\n", seq, base.QualifiedName(), ident(c.Name))
	}
}

// sideOfColumn returns the side whose base table holds column name.
func (s *Split) sideOfColumn(name string) policy.Class {
	if s.Identity != nil && s.Identity.Column(name) != nil {
		return policy.Identity
	}
	return policy.Clinical
}
