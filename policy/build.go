package policy

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

var (
	errorsAs = errors.As
	sprintf  = fmt.Sprintf
)

// Masks are the masking functions a policy may name; see sql/ for what each
// does. An empty mask means the default for the column's type.
var Masks = []string{"redact", "partial", "last4", "initial", "year", "hash"}

// builder merges decoded files into a Policy, collecting every problem.
type builder struct {
	p    *Policy
	errs ErrorList

	versionSet   bool
	unclassified *Pos
	residency    *residencyDoc
	residencyAt  Pos
	// where each column of each table was classified, to report a second
	// classification next to the first
	classified map[*Table]map[string]Pos
	// where each child table names its subject table
	subjectAt map[*Table]Pos
	// the parts of each transfer, checked once every file is read
	transferDocs map[*Transfer]transferDoc
}

func newBuilder() *builder {
	return &builder{p: &Policy{}, classified: map[*Table]map[string]Pos{}, subjectAt: map[*Table]Pos{},
		transferDocs: map[*Transfer]transferDoc{}}
}

func at(file string, s scalar) Pos { return Pos{File: file, Line: s.Line, Column: s.Col} }

func (b *builder) add(file string, d *document) {
	top := Pos{File: file, Line: 1, Column: 1}
	switch {
	case d.Version == nil:
		b.errs.add(top, "add `version: 1` at the top of the file", "missing required key version")
	case d.Version.Value != fmt.Sprint(Version):
		b.errs.add(at(file, *d.Version), fmt.Sprintf("this Privata reads policy version %d", Version),
			"unsupported policy version %s", d.Version.Value)
	default:
		b.versionSet = true
	}
	b.addRegions(file, d.Regions)
	if d.Residency != nil {
		if b.residency != nil {
			b.errs.add(top, "keep one residency rule across all policy files",
				"residency is defined again (first in %s)", b.residencyAt)
		} else {
			b.residency = d.Residency
			b.residencyAt = top
			b.p.Residency = &Residency{Pos: top}
		}
	}
	if d.Unclassified != nil {
		pos := at(file, *d.Unclassified)
		switch {
		case b.unclassified != nil:
			b.errs.add(pos, "", "unclassified is set again (first at %s)", *b.unclassified)
		case d.Unclassified.Value != string(Identity) && d.Unclassified.Value != string(Clinical):
			b.errs.add(pos, "write `unclassified: clinical` or `unclassified: identity`",
				"unclassified must be identity or clinical, not %q", d.Unclassified.Value)
		default:
			b.p.Unclassified = Class(d.Unclassified.Value)
			b.unclassified = &pos
		}
	}
	for _, e := range d.Subjects {
		b.addSubject(file, e)
	}
	for _, e := range d.Children {
		b.addChild(file, e)
	}
	b.addRoles(file, d.Roles)
	b.addTransfers(file, d.Transfers)
}

func (b *builder) addRegions(file string, regions entries[regionDoc]) {
	for _, e := range regions {
		pos := at(file, e.Key)
		if r := b.p.Region(e.Key.Value); r != nil {
			b.errs.add(pos, "", "region %q is defined twice (first at %s)", e.Key.Value, r.Pos)
			continue
		}
		r := &Region{Name: e.Key.Value, Pos: pos}
		if c := e.Value.Cluster; c != nil {
			r.Cluster = c.Value
		}
		if c := e.Value.IdentityCluster; c != nil {
			r.IdentityCluster = c.Value
		}
		if c := e.Value.ClinicalCluster; c != nil {
			r.ClinicalCluster = c.Value
		}
		split := r.IdentityCluster != "" || r.ClinicalCluster != ""
		switch {
		case r.Cluster == "" && !split:
			b.errs.add(pos, "give it `cluster: <name of a cluster in privata.yaml>`",
				"region %q has no cluster", r.Name)
		case r.Cluster != "" && split:
			b.errs.add(pos, "use either cluster, or identity_cluster and clinical_cluster",
				"region %q names both a cluster and split clusters", r.Name)
		case split && (r.IdentityCluster == "" || r.ClinicalCluster == ""):
			b.errs.add(pos, "a split region needs both identity_cluster and clinical_cluster",
				"region %q names only one of identity_cluster and clinical_cluster", r.Name)
		}
		b.p.Regions = append(b.p.Regions, r)
	}
}

// tableName splits "schema.table" or "table" (schema defaults to public, or to
// the explicit schema key).
func tableName(key string, schema *scalar) (string, string) {
	if s, t, ok := strings.Cut(key, "."); ok {
		return s, t
	}
	if schema != nil {
		return schema.Value, key
	}
	return "public", key
}

func (b *builder) newTable(file string, key scalar, schema *scalar, kind Kind) *Table {
	s, n := tableName(key.Value, schema)
	pos := at(file, key)
	if t := b.p.Table(s, n); t != nil {
		b.errs.add(pos, "each table is classified once, as a subject or as a child",
			"table %s is classified twice (first at %s)", t.QualifiedName(), t.Pos)
		return nil
	}
	t := &Table{Schema: s, Name: n, Kind: kind, Pos: pos}
	b.classified[t] = map[string]Pos{}
	return t
}

// classify adds columns of one class, reporting a column classified twice.
func (b *builder) classify(file string, t *Table, class Class, cols []scalar) {
	for _, c := range cols {
		pos := at(file, c)
		if c.Value == "" {
			if c.Line == 0 {
				pos = t.Pos // a null entry: YAML keeps no position for it
			}
			b.errs.add(pos, "write the column's name, or remove the entry",
				"an empty column name in table %s's %s columns", t.Name, class)
			continue
		}
		if first, dup := b.classified[t][c.Value]; dup {
			b.errs.add(pos, "a column belongs to one class; remove one of the two",
				"column %s.%s is classified twice (first at %s)", t.Name, c.Value, first)
			continue
		}
		b.classified[t][c.Value] = pos
		t.Columns = append(t.Columns, &Column{Name: c.Value, Class: class, Pos: pos})
	}
}

func (b *builder) masks(file string, t *Table, masks entries[scalar]) {
	for _, m := range masks {
		pos := at(file, m.Key)
		col := t.Column(m.Key.Value)
		switch {
		case col == nil || col.Class == Other:
			b.errs.add(pos, "masks apply to identity and clinical columns",
				"mask for %s.%s, which is not an identity or clinical column of the table",
				t.Name, m.Key.Value)
		case !slices.Contains(Masks, m.Value.Value):
			b.errs.add(at(file, m.Value), "masks are: "+strings.Join(Masks, ", "),
				"unknown mask %q", m.Value.Value)
		default:
			col.Mask = m.Value.Value
			col.MaskPos = at(file, m.Value)
		}
	}
}

func (b *builder) addSubject(file string, e entry[subjectDoc]) {
	t := b.newTable(file, e.Key, e.Value.Schema, Subject)
	if t == nil {
		return
	}
	if e.Value.Key == nil {
		b.errs.add(t.Pos, "name the column that identifies a subject, e.g. `key: id`",
			"subject table %s has no key", t.Name)
	} else {
		t.Key = e.Value.Key.Value
		b.classified[t][t.Key] = at(file, *e.Value.Key)
	}
	b.classify(file, t, Identity, e.Value.Identity)
	b.classify(file, t, Clinical, e.Value.Clinical)
	b.classify(file, t, Other, e.Value.Other)
	b.masks(file, t, e.Value.Masks)
	b.p.Tables = append(b.p.Tables, t)
}

func (b *builder) addChild(file string, e entry[childDoc]) {
	t := b.newTable(file, e.Key, e.Value.Schema, Child)
	if t == nil {
		return
	}
	ref := e.Value.Subject
	if ref == nil || ref.Table == nil || ref.Column == nil {
		b.errs.add(t.Pos, "write `subject: {table: patients, column: patient_id}`",
			"child table %s does not say which subject table it refers to, and by which column", t.Name)
	} else {
		t.SubjectTable = ref.Table.Value
		t.Reference = ref.Column.Value
		b.subjectAt[t] = at(file, *ref.Table)
		b.classified[t][t.Reference] = at(file, *ref.Column)
	}
	b.classify(file, t, Clinical, e.Value.Clinical)
	b.classify(file, t, Other, e.Value.Other)
	b.masks(file, t, e.Value.Masks)
	b.p.Tables = append(b.p.Tables, t)
}

func (b *builder) addRoles(file string, roles entries[roleDoc]) {
	for _, e := range roles {
		pos := at(file, e.Key)
		if r := b.p.Role(e.Key.Value); r != nil {
			b.errs.add(pos, "", "role %q is defined twice (first at %s)", e.Key.Value, r.Pos)
			continue
		}
		r := &Role{Name: e.Key.Value, PGRole: e.Key.Value, Access: map[Class]Access{}, Pos: pos}
		if e.Value.PGRole != nil {
			r.PGRole = e.Value.PGRole.Value
		}
		for class, s := range map[Class]*scalar{Identity: e.Value.Identity, Clinical: e.Value.Clinical} {
			r.Access[class] = None
			if s == nil {
				continue
			}
			switch a := Access(s.Value); a {
			case Full, Masked, None:
				r.Access[class] = a
			default:
				b.errs.add(at(file, *s), "access is full, masked or none",
					"role %s: unknown access %q for %s data", r.Name, s.Value, class)
			}
		}
		b.p.Roles = append(b.p.Roles, r)
	}
}

// finish resolves references between parts of the policy and checks them.
func (b *builder) finish() (*Policy, error) {
	p := b.p
	p.Version = Version
	if p.Unclassified == "" {
		p.Unclassified = Clinical
	}
	for _, t := range p.Tables {
		t.Unlisted = Clinical
		if t.Kind == Subject {
			t.Unlisted = p.Unclassified
		}
	}
	if len(p.Regions) == 0 && b.versionSet {
		b.errs.add(Pos{File: b.firstFile(), Line: 1, Column: 1},
			"declare at least one region, e.g. `regions: {us: {cluster: us}}`", "no regions")
	}
	b.checkChildren()
	b.buildResidency()
	b.checkTransfers()
	seenPG := map[string]*Role{}
	for _, r := range p.Roles {
		if other, dup := seenPG[r.PGRole]; dup {
			b.errs.add(r.Pos, "map each PostgreSQL role to one policy role",
				"roles %s and %s map to the same PostgreSQL role %q", other.Name, r.Name, r.PGRole)
		}
		seenPG[r.PGRole] = r
	}
	sortErrors(b.errs)
	if err := b.errs.Err(); err != nil {
		return nil, err
	}
	return p, nil
}

func (b *builder) firstFile() string {
	if len(b.p.Tables) > 0 {
		return b.p.Tables[0].Pos.File
	}
	if b.residency != nil {
		return b.residencyAt.File
	}
	return ""
}

func (b *builder) checkChildren() {
	for _, t := range b.p.Tables {
		if t.Kind != Child || t.SubjectTable == "" {
			continue
		}
		s, n := tableName(t.SubjectTable, &scalar{Value: t.Schema})
		subj := b.p.Table(s, n)
		pos := b.subjectAt[t]
		switch {
		case subj == nil:
			b.errs.add(pos, "declare it under subjects:, or fix the name",
				"child table %s refers to %s, which is not a subject table of the policy",
				t.Name, t.SubjectTable)
		case subj.Kind != Subject:
			b.errs.add(pos, "a child table refers to a subject table, not to another child",
				"child table %s refers to %s, which is a child table", t.Name, t.SubjectTable)
		default:
			t.SubjectTable = subj.QualifiedName()
		}
	}
}

func (b *builder) buildResidency() {
	p := b.p
	d := b.residency
	if d == nil {
		if len(p.Regions) > 1 {
			b.errs.add(p.Regions[1].Pos, "add a residency rule that says which subjects live where",
				"several regions but no residency rule")
		}
		return
	}
	file := b.residencyAt.File
	r := p.Residency
	r.Values = map[string]string{}
	r.OnChange = Refuse
	need := func(s *scalar, key string) string {
		if s == nil {
			b.errs.add(r.Pos, "see the residency example in the README", "residency: missing %s", key)
			return ""
		}
		return s.Value
	}
	r.Table, r.Column = need(d.Table, "table"), need(d.Column, "column")
	r.Default = need(d.Default, "default")
	if d.Table != nil {
		r.Pos = at(file, *d.Table)
		s, n := tableName(r.Table, nil)
		if t := p.Table(s, n); t == nil || t.Kind != Subject {
			b.errs.add(r.Pos, "the residency rule reads a column of a subject table",
				"residency table %s is not a subject table of the policy", r.Table)
		} else {
			r.Table = t.QualifiedName()
		}
	}
	checkRegion := func(name string, pos Pos) {
		if name != "" && p.Region(name) == nil {
			b.errs.add(pos, "regions are: "+strings.Join(regionNames(p), ", "), "unknown region %q", name)
		}
	}
	if d.Default != nil {
		checkRegion(r.Default, at(file, *d.Default))
	}
	for _, v := range d.Values {
		r.Values[v.Key.Value] = v.Value.Value
		checkRegion(v.Value.Value, at(file, v.Value))
	}
	if d.OnChange != nil {
		switch oc := OnRegionChange(d.OnChange.Value); oc {
		case Move, Refuse:
			r.OnChange = oc
		default:
			b.errs.add(at(file, *d.OnChange), "on_region_change is move or refuse",
				"unknown on_region_change %q", d.OnChange.Value)
		}
	}
}

func regionNames(p *Policy) []string {
	var out []string
	for _, r := range p.Regions {
		out = append(out, r.Name)
	}
	return out
}

func sortErrors(l ErrorList) {
	slices.SortStableFunc(l, func(a, b *Error) int {
		if a.Pos.File != b.Pos.File {
			return strings.Compare(a.Pos.File, b.Pos.File)
		}
		if a.Pos.Line != b.Pos.Line {
			return a.Pos.Line - b.Pos.Line
		}
		return a.Pos.Column - b.Pos.Column
	})
}
