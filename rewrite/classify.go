package rewrite

import (
	"slices"
	"strings"

	"github.com/privata/privata/policy"
	"github.com/privata/privata/storage"
)

// Classification is what a statement touches of the data a policy
// classifies.
type Classification struct {
	// Tables are the classified tables the statement references, each once.
	Tables []*policy.Table
	// Columns are the classified tables' columns the statement references,
	// each (table, column) once with the union of its accesses. A star
	// lists the table's key, reference and every column the policy names.
	Columns []ClassifiedColumn
	// AllColumns is set when the statement may touch columns of a
	// classified table that Columns cannot list: a star or whole-row
	// reference, or a column whose table the text does not say.
	AllColumns bool
	// Relations holds, for each of the statement's relations, the
	// classified tables it may name (more than one only when the search
	// path leaves it open); nil for the others.
	Relations [][]*policy.Table
	// Storage names the first relation in one of Privata's storage
	// schemas (privata_identity, privata_clinical, privata_access, and
	// privata_export, which other clusters read), "" when there is none.
	Storage string
	// Derived holds, for each of the statement's relations in a schema of
	// cross-region views (privata_global, privata_region_*), the
	// classified table whose data it shows; nil for the others.
	Derived []*policy.Table
	// Shadowed is the classified table that a temporary relation the
	// statement creates, or a relation it renames, would hide from the
	// session's unqualified names (or clash with).
	Shadowed *policy.Table
}

// The schemas whose relations show a classified table's data in another
// form: cross-region views and their foreign tables (package fdw).
const (
	globalSchema       = "privata_global"
	exportSchema       = "privata_export"
	regionSchemaPrefix = "privata_region_"
)

// isStorageSchema reports whether schema holds Privata's split storage,
// which clients do not reach: the base tables, the access and upsert
// views, and the views other clusters read.
func isStorageSchema(schema string) bool {
	return schema == storage.IdentitySchema || schema == storage.ClinicalSchema ||
		schema == storage.AccessSchema || schema == exportSchema
}

// ClassifiedColumn is a column of a classified table.
type ClassifiedColumn struct {
	Table  *policy.Table
	Name   string
	Class  policy.Class
	Access Access
}

// Classify resolves an analysed statement against a policy. Unqualified
// names resolve through searchPath (["public"] when empty); a name that
// could be a classified table counts as one, so with "$user" on the path
// every schema could hold it. A column whose table the text does not say
// counts for each classified table it could belong to.
func Classify(st *Statement, p *policy.Policy, searchPath []string) Classification {
	var c Classification
	if st == nil || p == nil {
		return c
	}
	if len(searchPath) == 0 {
		searchPath = []string{"public"}
	}
	for _, name := range append(slices.Clip(st.Temporary), st.Renamed...) {
		if ts := resolveTables(Relation{Name: name}, p, searchPath); len(ts) > 0 && c.Shadowed == nil {
			c.Shadowed = ts[0]
		}
	}
	// With a storage schema on the search path (set at connection start: a
	// SET of it is refused), an unqualified name may mean Privata's own
	// relation.
	onPath := slices.IndexFunc(searchPath, isStorageSchema)
	tables := make([][]*policy.Table, len(st.Relations))
	for i, r := range st.Relations {
		if r.Function {
			continue
		}
		if r.Schema == "" && onPath >= 0 && c.Storage == "" {
			c.Storage = searchPath[onPath] + "." + r.Name
		}
		switch schema := r.Schema; {
		case isStorageSchema(schema):
			if c.Storage == "" {
				c.Storage = schema + "." + r.Name
			}
		case schema == globalSchema || strings.HasPrefix(schema, regionSchemaPrefix):
			if t := tableNamed(p, r.Name); t != nil {
				if c.Derived == nil {
					c.Derived = make([]*policy.Table, len(st.Relations))
				}
				c.Derived[i] = t
			}
		}
		tables[i] = resolveTables(r, p, searchPath)
		for _, t := range tables[i] {
			if !slices.Contains(c.Tables, t) {
				c.Tables = append(c.Tables, t)
			}
		}
	}
	if len(c.Tables) == 0 {
		return c
	}
	c.Relations = tables

	// Columns of one scope share their candidate lists; resolve each list
	// to its distinct classified tables once.
	type listKey struct {
		first *int
		n     int
	}
	byList := map[listKey][]*policy.Table{}
	candidates := func(col Column) []*policy.Table {
		if col.Relation >= 0 {
			return tables[col.Relation]
		}
		key := listKey{&col.Candidates[0], len(col.Candidates)}
		if ts, ok := byList[key]; ok {
			return ts
		}
		var ts []*policy.Table
		for _, ri := range col.Candidates {
			for _, t := range tables[ri] {
				if !slices.Contains(ts, t) {
					ts = append(ts, t)
				}
			}
		}
		byList[key] = ts
		return ts
	}

	index := map[columnKey]int{}
	for _, col := range st.Columns {
		if col.Relation < 0 && len(col.Candidates) == 0 {
			continue
		}
		for _, t := range candidates(col) {
			if col.Star {
				c.AllColumns = true
				c.addStar(index, t, col.Access)
				continue
			}
			if col.Relation < 0 {
				c.AllColumns = true
			}
			c.add(index, t, col.Name, t.ClassOf(col.Name), col.Access)
		}
	}
	return c
}

type columnKey struct {
	table *policy.Table
	name  string
}

// resolveTables returns the classified tables a relation reference could
// name.
func resolveTables(r Relation, p *policy.Policy, searchPath []string) []*policy.Table {
	if r.Schema != "" {
		if t := p.Table(r.Schema, r.Name); t != nil {
			return []*policy.Table{t}
		}
		return nil
	}
	anySchema := slices.Contains(searchPath, "$user")
	var out []*policy.Table
	for _, t := range p.Tables {
		if t.Name == r.Name && (anySchema || slices.Contains(searchPath, t.Schema)) {
			out = append(out, t)
		}
	}
	return out
}

// tableNamed returns the classified table whose cross-region views are
// named name, or nil.
func tableNamed(p *policy.Policy, name string) *policy.Table {
	for _, t := range p.Tables {
		if t.Name == name {
			return t
		}
	}
	return nil
}

func (c *Classification) addStar(index map[columnKey]int, t *policy.Table, a Access) {
	if t.Key != "" {
		c.add(index, t, t.Key, policy.Other, a)
	}
	if t.Reference != "" {
		c.add(index, t, t.Reference, policy.Other, a)
	}
	for _, col := range t.Columns {
		c.add(index, t, col.Name, col.Class, a)
	}
}

// add records a column once per table and name, merging accesses.
func (c *Classification) add(index map[columnKey]int, t *policy.Table, name string,
	class policy.Class, a Access) {
	k := columnKey{t, name}
	if i, ok := index[k]; ok {
		c.Columns[i].Access |= a
		return
	}
	index[k] = len(c.Columns)
	c.Columns = append(c.Columns, ClassifiedColumn{Table: t, Name: name, Class: class, Access: a})
}
