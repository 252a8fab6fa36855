package storage

import (
	"fmt"
	"slices"
	"strings"

	"github.com/privata/privata/policy"
)

// Before anything runs, plan refuses what adoption cannot convert
// faithfully: the table's shape (triggers, rules, dependents, foreign keys
// from unclassified tables) and its rows (a key that is not a key, children
// naming no subject, subjects of a region the cluster does not serve).

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
