package policy

import (
	"fmt"
	"slices"
	"strings"
)

// Version is the policy format version this package reads.
const Version = 1

// Class is the class of data a column holds.
type Class string

// The classes of data. Identity and clinical columns are stored apart;
// Other columns are stored on the side the policy's Unclassified setting
// names and are not access-controlled.
const (
	Identity Class = "identity"
	Clinical Class = "clinical"
	Other    Class = "other"
)

// Access is what a role may see of a class of data.
type Access string

// The access levels. Full reads and writes values; Masked reads masked values
// and may not write them; None reads NULL and may not write.
const (
	Full   Access = "full"
	Masked Access = "masked"
	None   Access = "none"
)

// Kind tells subject tables from child tables.
type Kind string

// A subject table holds one row per data subject (patients); a child table
// holds facts about a subject (encounters) and refers to it by key.
const (
	Subject Kind = "subject"
	Child   Kind = "child"
)

// OnRegionChange says what happens when an update changes a subject's home
// region.
type OnRegionChange string

// Move moves the subject's rows to the new home region in one step; Refuse
// refuses the update.
const (
	Move   OnRegionChange = "move"
	Refuse OnRegionChange = "refuse"
)

// Pos is a position in a policy file.
type Pos struct {
	File   string
	Line   int
	Column int
}

func (p Pos) String() string {
	if p.Line == 0 {
		return p.File
	}
	return fmt.Sprintf("%s:%d:%d", p.File, p.Line, p.Column)
}

// Policy is the merged content of one or more policy files.
type Policy struct {
	Version int
	// Regions in the order they were declared; the first is the default home
	// region when there is no residency rule.
	Regions   []*Region
	Residency *Residency
	// Unclassified is the class of subject-table columns the policy does not
	// list, and where Other columns are stored: Identity or Clinical.
	// Default Clinical.
	Unclassified Class
	// Tables are the subject tables, then the child tables, each in file order.
	Tables []*Table
	Roles  []*Role
	// Transfers say what may be read across regions; see Transfer.
	Transfers []*Transfer
}

// Region is a home region for data subjects.
type Region struct {
	Name string
	// Cluster holds both identity and clinical data, unless IdentityCluster
	// and ClinicalCluster are set.
	Cluster         string
	IdentityCluster string
	ClinicalCluster string
	Pos             Pos
}

// ClusterFor names the cluster that stores class c for this region.
func (r *Region) ClusterFor(c Class) string {
	switch {
	case c == Identity && r.IdentityCluster != "":
		return r.IdentityCluster
	case c != Identity && r.ClinicalCluster != "":
		return r.ClinicalCluster
	}
	return r.Cluster
}

// Residency decides a subject's home region from a column of the subject
// table.
type Residency struct {
	Table    string // subject table
	Column   string
	Values   map[string]string // column value to region name
	Default  string            // region for values not in Values (and NULL)
	OnChange OnRegionChange
	Pos      Pos
}

// RegionOf returns the home region for a value of the residency column;
// null is true when the column is NULL.
func (r *Residency) RegionOf(value string, null bool) string {
	if !null {
		if reg, ok := r.Values[value]; ok {
			return reg
		}
	}
	return r.Default
}

// Table is a classified table.
type Table struct {
	Schema string
	Name   string
	Kind   Kind
	// Key is the subject table's key column (subject tables only).
	Key string
	// SubjectTable and Reference say, for a child table, which subject table
	// it refers to (schema.name) and which of its columns holds that
	// subject's key.
	SubjectTable string
	Reference    string
	// Columns lists the columns the policy names, in file order (the key and
	// the reference are not among them).
	Columns []*Column
	// Unlisted is the class of the table's columns the policy does not list:
	// the policy's Unclassified for a subject table, Clinical for a child.
	Unlisted Class
	Pos      Pos
}

// QualifiedName is schema.name, unquoted.
func (t *Table) QualifiedName() string { return t.Schema + "." + t.Name }

// Column returns the named column's classification, or nil.
func (t *Table) Column(name string) *Column {
	for _, c := range t.Columns {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// ClassOf returns the class of a column of the table: its listed class, or
// the table's Unlisted class. The key and the reference column are Other.
func (t *Table) ClassOf(column string) Class {
	if column == t.Key || column == t.Reference {
		return Other
	}
	if c := t.Column(column); c != nil {
		return c.Class
	}
	return t.Unlisted
}

// SideOf returns where a column of the table is stored: Identity or
// Clinical. The key is stored with the identity; child tables have only a
// clinical side.
func (t *Table) SideOf(column string, unclassified Class) Class {
	if t.Kind == Child {
		return Clinical
	}
	if column == t.Key {
		return Identity
	}
	if c := t.ClassOf(column); c != Other {
		return c
	}
	return unclassified
}

// Column is a column the policy classifies.
type Column struct {
	Name  string
	Class Class
	// Mask names the masking function applied for roles with Masked access;
	// empty means the default for the column's type. MaskPos is where the
	// policy names it.
	Mask    string
	MaskPos Pos
	Pos     Pos
}

// Role maps a policy role to a PostgreSQL role and says what it may see.
type Role struct {
	Name   string
	PGRole string
	Access map[Class]Access // Identity and Clinical
	Pos    Pos
}

// AccessTo returns the role's access to class c; Other is always Full.
func (r *Role) AccessTo(c Class) Access {
	if c == Other {
		return Full
	}
	if a, ok := r.Access[c]; ok {
		return a
	}
	return None
}

// Table returns the classified table schema.name, or nil.
func (p *Policy) Table(schema, name string) *Table {
	for _, t := range p.Tables {
		if t.Schema == schema && t.Name == name {
			return t
		}
	}
	return nil
}

// Subjects returns the subject tables.
func (p *Policy) Subjects() []*Table {
	return slices.DeleteFunc(slices.Clone(p.Tables), func(t *Table) bool { return t.Kind != Subject })
}

// Children returns the child tables of subject table s.
func (p *Policy) Children(s *Table) []*Table {
	var out []*Table
	for _, t := range p.Tables {
		if t.Kind == Child && t.SubjectTable == s.QualifiedName() {
			out = append(out, t)
		}
	}
	return out
}

// SubjectOf returns the subject table a child table refers to; for a
// subject table, the table itself.
func (p *Policy) SubjectOf(t *Table) *Table {
	if t.Kind == Subject {
		return t
	}
	s, n, _ := strings.Cut(t.SubjectTable, ".")
	return p.Table(s, n)
}

// Region returns the named region, or nil.
func (p *Policy) Region(name string) *Region {
	for _, r := range p.Regions {
		if r.Name == name {
			return r
		}
	}
	return nil
}

// Role returns the named policy role, or nil.
func (p *Policy) Role(name string) *Role {
	for _, r := range p.Roles {
		if r.Name == name {
			return r
		}
	}
	return nil
}

// RoleForPG returns the policy role mapped to PostgreSQL role pg, or nil.
func (p *Policy) RoleForPG(pg string) *Role {
	for _, r := range p.Roles {
		if r.PGRole == pg {
			return r
		}
	}
	return nil
}

// DefaultRegion is the region of subjects the residency rule does not place,
// or the only region.
func (p *Policy) DefaultRegion() string {
	if p.Residency != nil {
		return p.Residency.Default
	}
	if len(p.Regions) > 0 {
		return p.Regions[0].Name
	}
	return ""
}
