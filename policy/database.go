package policy

import (
	"slices"
	"strings"
)

// Catalog describes the tables of a database as the application sees them:
// for a table that is already split, the view at its name.
type Catalog interface {
	// Columns returns the relation's column names in order, and false when
	// no table or view schema.name exists.
	Columns(schema, name string) ([]string, bool)
}

// CheckDatabase reports every table and column the policy names that the
// database does not have. Clusters of different regions hold the same
// schema, so one catalog stands for all of them.
func CheckDatabase(p *Policy, cat Catalog) error {
	var errs ErrorList
	for _, t := range p.Tables {
		cols, ok := cat.Columns(t.Schema, t.Name)
		if !ok {
			errs.add(t.Pos, "create the table first, or remove it from the policy",
				"table %s does not exist in the database", t.QualifiedName())
			continue
		}
		has := make(map[string]bool, len(cols))
		for _, c := range cols {
			has[c] = true
		}
		missing := func(col string, pos Pos, what string) {
			if !has[col] {
				errs.add(pos, "columns of "+t.Name+": "+strings.Join(cols, ", "),
					"%s %s.%s does not exist in the database", what, t.Name, col)
			}
		}
		if t.Kind == Subject {
			missing(t.Key, t.Pos, "key column")
		} else {
			missing(t.Reference, t.Pos, "reference column")
		}
		for _, c := range t.Columns {
			missing(c.Name, c.Pos, "column")
		}
	}
	if r := p.Residency; r != nil {
		s, n, _ := strings.Cut(r.Table, ".")
		if cols, ok := cat.Columns(s, n); ok && !slices.Contains(cols, r.Column) {
			errs.add(r.Pos, "the residency column must be a column of "+r.Table,
				"residency column %s.%s does not exist in the database", n, r.Column)
		}
	}
	sortErrors(errs)
	return errs.Err()
}
