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
	_, err := checkDatabase(p, cat, false)
	return err
}

// CheckPending is CheckDatabase for a database whose application has not
// created all of its tables yet (migrations that run through Privata). It
// returns the tables the policy names that do not exist yet, and the child
// tables of those, instead of reporting them; a classified column an
// existing table does not have yet is not reported either (it is placed
// when it is added). A missing key or reference column is still an error:
// a table cannot be split without it.
func CheckPending(p *Policy, cat Catalog) (pending []*Table, err error) {
	return checkDatabase(p, cat, true)
}

func checkDatabase(p *Policy, cat Catalog, allowMissing bool) ([]*Table, error) {
	var errs ErrorList
	var pending []*Table
	for _, t := range p.Tables {
		if allowMissing && t.Kind == Child {
			if subj := p.SubjectOf(t); subj != nil {
				if _, ok := cat.Columns(subj.Schema, subj.Name); !ok {
					pending = append(pending, t)
					continue
				}
			}
		}
		cols, ok := cat.Columns(t.Schema, t.Name)
		if !ok {
			if allowMissing {
				pending = append(pending, t)
				continue
			}
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
		if allowMissing {
			continue
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
	return pending, errs.Err()
}
