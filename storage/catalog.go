package storage

import (
	"slices"
	"strings"

	"github.com/privata/privata/policy"
)

// The split layout's schemas and roles. Other packages build on these names.
const (
	IdentitySchema = "privata_identity"
	ClinicalSchema = "privata_clinical"
	AccessSchema   = "privata_access"

	// Owner owns every derived object, so that forced row-level security
	// applies to the definer-rights access views too.
	Owner = "privata_owner"

	// PseudonymColumn links a subject's identity row to its clinical rows;
	// RegionColumn holds the subject's home region.
	PseudonymColumn = "privata_pseudonym"
	RegionColumn    = "privata_region"
	// ExportRolePrefix starts the names of the login roles other clusters
	// read this one as (package fdw); they are members of the group roles,
	// and fdw keeps those memberships.
	ExportRolePrefix = "privata_export_"
	// rowColumn is the child access views' row locator (the base row's ctid).
	rowColumn = "privata_row"
)

// GroupRole names the group role whose members have access a to class c,
// e.g. privata_identity_full.
func GroupRole(c policy.Class, a policy.Access) string {
	return "privata_" + string(c) + "_" + string(a)
}

// groupRoles are the four group roles, in a fixed order.
var groupRoles = []string{
	GroupRole(policy.Identity, policy.Full), GroupRole(policy.Identity, policy.Masked),
	GroupRole(policy.Clinical, policy.Full), GroupRole(policy.Clinical, policy.Masked),
}

// Catalog is what plan reads of a database: the relations the policy's
// tables involve, Privata's registry and settings, and the roles.
type Catalog struct {
	relations map[string]*Relation // by schema.name; nil value: looked up, absent
	Registry  map[string]*Registered
	// Settings is the privata.settings row; nil when apply never ran.
	Settings *Settings
	// Roles holds the roles plan looked up; absent roles are not in it.
	Roles map[string]*RoleInfo
	// Members maps each group role to its direct members.
	Members map[string][]string
	// SchemaOwners maps Privata's schemas to their owners.
	SchemaOwners map[string]string
	// SchemaUsage says which roles were granted USAGE on Privata's schemas.
	SchemaUsage map[string]map[string]bool
	// RegionOf is the body of privata.region_of(text), "" if missing.
	RegionOf string
	// EmitContext says whether privata.emit_context() exists.
	EmitContext bool
	// OwnerReadsSecrets says whether privata_owner may read privata.secrets.
	OwnerReadsSecrets bool
}

// Relation is a table or view as the catalog describes it.
type Relation struct {
	OID    uint32
	Schema string
	Name   string
	// Printed is the qualified name as PostgreSQL prints it in
	// definitions (quote_ident), e.g. public.patients.
	Printed     string
	Kind        string // relkind: r, v, p, m, f
	Persistence string // relpersistence: p, u, t
	Owner       string
	Comment     string
	Columns     []*Column
	Constraints []*Constraint
	Indexes     []*Index // indexes that back no constraint
	Grants      []Grant
	Triggers    []string // user triggers
	Rules       []string
	Policies    []string
	RowSecurity bool
	Inherits    bool // has a parent or children, or is a partition
	// Dependents are views (other than Privata's) that depend on it.
	Dependents []string
	// ReferencedBy are foreign keys of other tables that refer to it.
	ReferencedBy []*Constraint
	Publications []string
}

// QualifiedName is the relation's quoted name.
func (r *Relation) QualifiedName() string { return qname(r.Schema, r.Name) }

// Column returns the named column, or nil.
func (r *Relation) Column(name string) *Column {
	for _, c := range r.Columns {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// ColumnNames returns the column names in order.
func (r *Relation) ColumnNames() []string {
	out := make([]string, len(r.Columns))
	for i, c := range r.Columns {
		out[i] = c.Name
	}
	return out
}

// Column is a column of a relation.
type Column struct {
	Name      string
	Type      string // format_type(atttypid, atttypmod)
	BaseType  string // the type, or a domain's base type, without modifier
	Category  string // pg_type.typcategory: S for strings, D for date/time, ...
	NotNull   bool
	Default   string // pg_get_expr of the default, "" for none
	Identity  string // "a" (ALWAYS), "d" (BY DEFAULT) or ""
	Generated string // "s" for a stored generated column, or ""
	Collation string // qualified collation when not the type's default
	Comment   string
	// Sequence is the qualified sequence the column owns (serial or
	// identity), quoted as PostgreSQL prints it, or "". SequenceSchema and
	// SequenceName are its parts, unquoted.
	Sequence       string
	SequenceSchema string
	SequenceName   string
	// SequenceOptions are an identity column's sequence options.
	SequenceOptions string
}

// Constraint is a table constraint: p(rimary key), u(nique), c(heck),
// f(oreign key) or x (exclusion).
type Constraint struct {
	Schema, Table string // the table it belongs to
	Name          string
	Type          string
	Def           string   // pg_get_constraintdef
	Columns       []string // conkey
	// Foreign keys:
	RefSchema, RefTable string
	RefColumns          []string
	OnUpdate, OnDelete  string // a, r, c, n, d
	Match               string // s, f, p
	Deferrable          bool
	Deferred            bool
	Validated           bool
	SetColumns          bool // ON DELETE SET NULL/DEFAULT names columns
}

// Index is an index that backs no constraint.
type Index struct {
	Name    string
	Def     string   // pg_get_indexdef
	Columns []string // every column it uses, in keys, expressions or predicate
	// Unique indexes can decide an upsert's conflicts: Keys are its key
	// columns in order ("" for an expression), Predicate a partial index's
	// condition (pg_get_expr), NullsNotDistinct says NULLS NOT DISTINCT.
	Unique           bool
	Keys             []string
	Predicate        string
	NullsNotDistinct bool
}

// Grant is one privilege on a relation (or one of its columns).
type Grant struct {
	Grantee   string `json:"grantee"` // role name, or PUBLIC
	Privilege string `json:"privilege"`
	Grantable bool   `json:"grantable,omitempty"`
	Column    string `json:"column,omitempty"`
}

// Registered is a row of privata.tables.
type Registered struct {
	Schema, Name  string
	Kind          policy.Kind
	Key           string
	SubjectSchema string
	SubjectTable  string
	Reference     string
	ReferenceType string
	Columns       []string
	AppGrants     []Grant
	DerivedHash   string
	CatalogHash   string
	// Fingerprint is privata.fingerprint() now, to compare with CatalogHash.
	Fingerprint string
}

// Settings is the privata.settings row.
type Settings struct {
	Cluster       string
	Regions       []string
	DefaultRegion string
}

// RoleInfo is what plan needs of a role.
type RoleInfo struct {
	Super   bool
	Login   bool
	Inherit bool
	// MemberOf lists the roles it is a direct member of.
	MemberOf []string
}

// Relation returns schema.name, or nil when the database has no such
// table or view.
func (c *Catalog) Relation(schema, name string) *Relation { return c.relations[schema+"."+name] }

// Columns implements policy.Catalog. For a split table it returns the
// columns its view will have: those it has, and those added to its base
// tables since.
func (c *Catalog) Columns(schema, name string) ([]string, bool) {
	if reg := c.Registry[schema+"."+name]; reg != nil {
		return c.appColumns(reg), true
	}
	r := c.Relation(schema, name)
	if r == nil {
		return nil, false
	}
	return r.ColumnNames(), true
}

// appColumns returns the application's columns of a split table: those
// the registry recorded that its base tables still hold (and a child's
// reference column), then the base tables' new columns.
func (c *Catalog) appColumns(reg *Registered) []string {
	var bases []*Relation
	for _, s := range []string{IdentitySchema, ClinicalSchema} {
		if r := c.Relation(s, reg.Name); r != nil {
			bases = append(bases, r)
		}
	}
	has := func(n string) bool {
		for _, b := range bases {
			if b.Column(n) != nil {
				return true
			}
		}
		return false
	}
	var out []string
	for _, n := range reg.Columns {
		if n == reg.Reference || has(n) {
			out = append(out, n)
		}
	}
	for _, b := range bases {
		for _, col := range b.Columns {
			if !slices.Contains(out, col.Name) && !strings.HasPrefix(col.Name, "privata_") {
				out = append(out, col.Name)
			}
		}
	}
	return out
}
