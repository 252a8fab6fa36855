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

// refuse returns why rel cannot be converted faithfully, if it cannot.
func (pl *planner) refuse(t *policy.Table, rel *Relation) error {
	var errs Errors
	no := func(msg, hint string, args ...any) {
		errs = append(errs, &Error{Table: t, Msg: fmt.Sprintf(msg, args...), Hint: hint})
	}
	name := t.QualifiedName()
	switch {
	case rel.Inherits:
		no("%s takes part in inheritance or partitioning", "Privata converts plain tables", name)
	case rel.Persistence != "p":
		no("%s is a temporary or unlogged table", "Privata converts ordinary tables", name)
	}
	for _, c := range rel.Columns {
		if c.Generated != "" {
			no("column %s.%s is a generated column", "make it an ordinary column first", t.Name, c.Name)
		}
		if strings.HasPrefix(c.Name, "privata_") {
			no("column %s.%s has a name Privata keeps for itself", "rename it", t.Name, c.Name)
		}
	}
	if len(rel.Triggers) > 0 {
		no("%s has triggers (%s); they would not fire on the base tables", "drop them first",
			name, strings.Join(rel.Triggers, ", "))
	}
	if len(rel.Rules) > 0 {
		no("%s has rules (%s)", "drop them first", name, strings.Join(rel.Rules, ", "))
	}
	if rel.RowSecurity || len(rel.Policies) > 0 {
		no("%s has row-level security of its own", "disable it and drop its policies first", name)
	}
	if len(rel.Publications) > 0 {
		no("%s is in publications (%s)", "remove it from them first; add the base tables afterwards",
			name, strings.Join(rel.Publications, ", "))
	}
	if len(rel.Dependents) > 0 {
		no("views depend on %s: %s", "drop them, apply, then create them again over the new view",
			name, strings.Join(rel.Dependents, ", "))
	}
	for _, k := range rel.ReferencedBy {
		if from := pl.p.Table(k.Schema, k.Table); from == nil || pl.cat.Registry[k.Schema+"."+k.Table] != nil {
			no("foreign key %s of %s refers to %s, and %s is not classified by the policy",
				"classify the referring table as a child, or drop the foreign key",
				k.Name, qname(k.Schema, k.Table), name, qname(k.Schema, k.Table))
		}
	}
	return errs.err()
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

// placeConstraints decides where each constraint and index of the
// original table goes, refusing those that span identity and clinical
// columns or involve a child's reference column.
func (pl *planner) placeConstraints(a *adoption) error {
	t := a.t
	var errs Errors
	span := func(what, name string, cols []string) {
		msg := fmt.Sprintf("%s %s spans identity and clinical columns (%s)", what, name, strings.Join(cols, ", "))
		hint := "keep its columns in one class, or drop it"
		if t.Kind == policy.Child {
			msg = fmt.Sprintf("%s %s involves the reference column %s (%s)", what, name, t.Reference,
				strings.Join(cols, ", "))
			hint = "the reference column is stored as a pseudonym; drop it"
		}
		errs = append(errs, &Error{Table: t, Msg: msg, Hint: hint})
	}
	for _, k := range a.orig.Constraints {
		if k.Type == "f" {
			if err := pl.placeForeignKey(a, k); err != nil {
				errs = append(errs, err)
			}
			continue
		}
		if t.Kind == policy.Subject && k.Type == "p" {
			continue // the identity base table's primary key, above
		}
		base := a.sideOf(k.Columns)
		if base == nil {
			span("constraint", k.Name, k.Columns)
			continue
		}
		a.constraints = append(a.constraints, placed[*Constraint]{base, k})
		if k.Type == "p" || k.Type == "u" || k.Type == "x" {
			base.Constraints = append(base.Constraints, k)
		}
	}
	for _, ix := range a.orig.Indexes {
		if t.Kind == policy.Child && slices.Equal(ix.Columns, []string{t.Reference}) {
			continue // the pseudonym gets its own index
		}
		base := a.sideOf(ix.Columns)
		if base == nil {
			span("index", ix.Name, ix.Columns)
			continue
		}
		a.indexes = append(a.indexes, placed[*Index]{base, ix})
	}
	return errs.err()
}

func (pl *planner) placeForeignKey(a *adoption, k *Constraint) error {
	t, s := a.t, a.split
	target := pl.p.Table(k.RefSchema, k.RefTable)
	if t.Kind == policy.Child && slices.Contains(k.Columns, t.Reference) {
		subj := s.Subject.Table
		if target != subj || !slices.Equal(k.Columns, []string{t.Reference}) ||
			!slices.Equal(k.RefColumns, []string{subj.Key}) {
			return &Error{Table: t, Msg: fmt.Sprintf("foreign key %s involves the reference column %s "+
				"but is not (%s) referring to %s(%s)", k.Name, t.Reference, t.Reference,
				subj.QualifiedName(), subj.Key), Hint: "drop it"}
		}
		if k.OnUpdate == "n" || k.OnUpdate == "d" || k.OnDelete == "d" || k.SetColumns {
			return &Error{Table: t, Msg: fmt.Sprintf("foreign key %s uses ON UPDATE SET NULL/DEFAULT, "+
				"ON DELETE SET DEFAULT or a column list, which Privata does not carry over", k.Name),
				Hint: "use NO ACTION, RESTRICT or CASCADE (or ON DELETE SET NULL)"}
		}
		a.ref = k
		s.ReferenceFK = k.Name
		fk := &Constraint{Name: k.Name, Type: "f", Columns: []string{PseudonymColumn},
			RefSchema: ClinicalSchema, RefTable: subj.Name, RefColumns: []string{PseudonymColumn},
			OnUpdate: k.OnUpdate, OnDelete: k.OnDelete, Match: k.Match, Deferrable: k.Deferrable,
			Deferred: k.Deferred, Validated: k.Validated}
		s.Clinical.Constraints = append(s.Clinical.Constraints, fk)
		a.fks = append(a.fks, foreignKey{base: s.Clinical, k: fk, target: qname(ClinicalSchema, subj.Name)})
		return nil
	}
	base := a.sideOf(k.Columns)
	if base == nil {
		return &Error{Table: t, Msg: fmt.Sprintf("foreign key %s spans identity and clinical columns (%s)",
			k.Name, strings.Join(k.Columns, ", ")), Hint: "keep its columns in one class, or drop it"}
	}
	kc := *k
	base.Constraints = append(base.Constraints, &kc)
	a.fks = append(a.fks, foreignKey{base: base, k: &kc, ref: target, target: qname(k.RefSchema, k.RefTable)})
	return nil
}

// resolveForeignKeys points foreign keys between adopted tables at the
// base tables that will hold the referred columns. It runs once every
// table is planned, whatever the policy's order.
func (pl *planner) resolveForeignKeys() {
	for _, a := range pl.adopted {
		for i, fk := range a.fks {
			target, k := fk.ref, fk.k
			if target == nil {
				continue
			}
			var ta *adoption
			for _, x := range pl.adopted {
				if x.t == target {
					ta = x
				}
			}
			if ta == nil && pl.splits[target] == nil {
				continue // the target's own error is reported
			}
			if ta == nil || (target.Kind == policy.Subject && slices.Contains(k.RefColumns, target.Key)) {
				pl.errs = append(pl.errs, &Error{Table: a.t, Msg: fmt.Sprintf("foreign key %s refers to "+
					"%s(%s), which cannot stay a foreign key once %s is split", k.Name,
					target.QualifiedName(), strings.Join(k.RefColumns, ", "), target.QualifiedName()),
					Hint: "a reference to a subject's key belongs in a child table's reference column; drop it"})
				continue
			}
			tb := ta.sideOf(k.RefColumns)
			if tb == nil {
				pl.errs = append(pl.errs, &Error{Table: a.t, Msg: fmt.Sprintf("foreign key %s refers to "+
					"columns of %s stored apart", k.Name, target.QualifiedName()), Hint: "drop it"})
				continue
			}
			a.fks[i].target = tb.QualifiedName()
			k.RefSchema, k.RefTable = tb.Schema, tb.Name
		}
	}
}

// checkData refuses rows that cannot be converted: a key that is not a key,
// references to subjects that do not exist, subjects whose home region
// this cluster does not serve.
func (pl *planner) checkData(a *adoption) error {
	t, rel := a.t, a.orig
	if t.Kind == policy.Subject {
		hasPK := false
		for _, k := range rel.Constraints {
			hasPK = hasPK || k.Type == "p"
		}
		if !hasPK {
			var dups, nulls int64
			err := pl.tx.QueryRow(pl.ctx, fmt.Sprintf(`SELECT count(%[1]s) - count(DISTINCT %[1]s),
				count(*) - count(%[1]s) FROM %[2]s`, ident(t.Key), rel.QualifiedName())).Scan(&dups, &nulls)
			if err != nil {
				return fmt.Errorf("check the key of %s: %w", t.QualifiedName(), err)
			}
			if dups > 0 || nulls > 0 {
				return &Error{Table: t, Msg: fmt.Sprintf("key column %s has %d duplicate and %d NULL values",
					t.Key, dups, nulls), Hint: "a subject's key identifies one row; fix the rows first"}
			}
		}
		return pl.checkRegions(a)
	}
	if a.ref != nil && a.ref.Validated {
		return nil
	}
	subj := a.split.Subject
	source := qname(IdentitySchema, subj.Table.Name)
	if pl.dropped[subj.Table.Schema+"."+subj.Table.Name] {
		source = subj.Table.QualifiedName()
	}
	var orphans int64
	err := pl.tx.QueryRow(pl.ctx, fmt.Sprintf(`SELECT count(*) FROM %s t
		WHERE t.%s IS NOT NULL AND NOT EXISTS (SELECT FROM %s s WHERE s.%s = t.%s)`,
		rel.QualifiedName(), ident(t.Reference), source, ident(subj.Table.Key), ident(t.Reference))).
		Scan(&orphans)
	if err != nil {
		return fmt.Errorf("check the references of %s: %w", t.QualifiedName(), err)
	}
	if orphans > 0 {
		return &Error{Table: t, Msg: fmt.Sprintf("%d rows have a %s that names no row of %s",
			orphans, t.Reference, subj.Table.QualifiedName()),
			Hint: "a child row refers to its subject by pseudonym; delete or fix those rows first"}
	}
	return nil
}

func (pl *planner) checkRegions(a *adoption) error {
	t, rel := a.t, a.orig
	served := func(r string) bool { return slices.Contains(pl.t.Regions, r) }
	res := pl.p.Residency
	var count int64
	var regions []string
	if res == nil || res.Table != t.QualifiedName() {
		if served(pl.p.DefaultRegion()) {
			return nil
		}
		regions = []string{pl.p.DefaultRegion()}
		if err := pl.tx.QueryRow(pl.ctx, "SELECT count(*) FROM "+rel.QualifiedName()).Scan(&count); err != nil {
			return fmt.Errorf("count the rows of %s: %w", t.QualifiedName(), err)
		}
	} else {
		rows, err := pl.tx.Query(pl.ctx, fmt.Sprintf("SELECT DISTINCT t.%s::text FROM %s t",
			ident(res.Column), rel.QualifiedName()))
		if err != nil {
			return fmt.Errorf("read the home regions of %s: %w", t.QualifiedName(), err)
		}
		var values []*string
		for rows.Next() {
			var v *string
			if err := rows.Scan(&v); err != nil {
				return err
			}
			values = append(values, v)
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("read the home regions of %s: %w", t.QualifiedName(), err)
		}
		var away []string
		nullAway := false
		for _, v := range values {
			var r string
			if v == nil {
				r = res.RegionOf("", true)
			} else {
				r = res.RegionOf(*v, false)
			}
			if served(r) {
				continue
			}
			if !slices.Contains(regions, r) {
				regions = append(regions, r)
			}
			if v == nil {
				nullAway = true
			} else {
				away = append(away, *v)
			}
		}
		if len(regions) == 0 {
			return nil
		}
		err = pl.tx.QueryRow(pl.ctx, fmt.Sprintf(`SELECT count(*) FROM %s t
			WHERE t.%s::text = ANY($1) OR ($2 AND t.%s IS NULL)`, rel.QualifiedName(),
			ident(res.Column), ident(res.Column)), away, nullAway).Scan(&count)
		if err != nil {
			return fmt.Errorf("count the rows of %s by region: %w", t.QualifiedName(), err)
		}
	}
	if count == 0 {
		return nil
	}
	slices.Sort(regions)
	return &Error{Table: t, Msg: fmt.Sprintf("%d rows have a home region (%s) that cluster %s does not serve",
		count, strings.Join(regions, ", "), pl.t.Name),
		Hint: "move those rows to their region's cluster first, or let this cluster serve the region"}
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
		fmt.Fprintf(rest, "INSERT INTO %s (%s) OVERRIDING SYSTEM VALUE\nSELECT i.%s%s\n  FROM %s t\n  JOIN %s i ON i.%s = t.%s;\n",
			s.Clinical.QualifiedName(), colNames(s.Clinical.Columns), ident(PseudonymColumn),
			prefixComma(values(clCols, "t")), orig, s.Identity.QualifiedName(), ident(t.Key), ident(t.Key))
		return
	}
	subj := s.Subject
	cols := s.Clinical.Columns[1:]
	fmt.Fprintf(rest, "INSERT INTO %s (%s) OVERRIDING SYSTEM VALUE\nSELECT s.%s%s\n  FROM %s t\n  LEFT JOIN %s s ON s.%s = t.%s;\n",
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
	} else {
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

// moveIndex rewrites an index definition onto base.
func moveIndex(ix *Index, printed string, base *Base) string {
	return strings.Replace(ix.Def, " ON "+printed+" USING ", " ON "+base.QualifiedName()+" USING ", 1)
}

// foreignKeyDef builds a FOREIGN KEY clause of k referring to target.
func foreignKeyDef(k *Constraint, target string) string {
	actions := map[string]string{"a": "NO ACTION", "r": "RESTRICT", "c": "CASCADE", "n": "SET NULL",
		"d": "SET DEFAULT"}
	s := fmt.Sprintf("FOREIGN KEY (%s) REFERENCES %s (%s)", idents(k.Columns), target, idents(k.RefColumns))
	if k.Match == "f" {
		s += " MATCH FULL"
	}
	s += " ON UPDATE " + actions[k.OnUpdate] + " ON DELETE " + actions[k.OnDelete]
	if k.Deferrable {
		s += " DEFERRABLE"
		if k.Deferred {
			s += " INITIALLY DEFERRED"
		}
	}
	if !k.Validated {
		s += " NOT VALID"
	}
	return s
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
