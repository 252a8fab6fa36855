package storage

import (
	"fmt"
	"slices"
	"strings"

	"github.com/privata/privata/policy"
)

// Constraints, indexes and foreign keys of a converted table go to the base
// table that holds their columns, under their original names. Those that
// would span identity and clinical columns are refused. A child's unique
// and primary key constraints and indexes that name its reference column
// go on the pseudonym that stores it (reference.go); its check and
// exclusion constraints that do are refused.

// placeConstraints decides where each constraint and index of the
// original table goes, refusing those it cannot place.
func (pl *planner) placeConstraints(a *adoption) error {
	t := a.t
	var errs Errors
	span := func(what, name string, cols []string) {
		errs = append(errs, &Error{Table: t, Msg: fmt.Sprintf("%s %s spans identity and clinical columns (%s)",
			what, name, strings.Join(cols, ", ")), Hint: "keep its columns in one class, or drop it"})
	}
	onReference := func(err error) {
		errs = append(errs, &Error{Table: t, Msg: err.Error(), Hint: "the reference column is stored as " +
			"the subject's pseudonym, of another type and with other values; drop it"})
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
		if t.Kind == policy.Child {
			moved, err := onPseudonym(k, t.Reference)
			if err != nil {
				onReference(err)
				continue
			}
			k = moved
			a.pseudonymIndexed = a.pseudonymIndexed || (k.Type == "p" || k.Type == "u") &&
				k.Columns[0] == PseudonymColumn
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
		if t.Kind == policy.Child && slices.Contains(ix.Columns, t.Reference) {
			moved, plain, err := indexOnPseudonym(ix, t.Reference)
			if err != nil {
				onReference(err)
				continue
			}
			ix = moved
			a.pseudonymIndexed = a.pseudonymIndexed || plain
		}
		base := a.sideOf(ix.Columns)
		if base == nil {
			span("index", ix.Name, ix.Columns)
			continue
		}
		a.indexes = append(a.indexes, placed[*Index]{base, ix})
		base.Indexes = append(base.Indexes, ix)
	}
	return errs.err()
}

func (pl *planner) placeForeignKey(a *adoption, k *Constraint) error {
	t, s := a.t, a.split
	target := pl.p.Table(k.RefSchema, k.RefTable)
	if t.Kind == policy.Child && s.Subject != nil && k.RefSchema == IdentitySchema &&
		k.RefTable == s.Subject.Table.Name {
		// A child created after its subject was split refers to the
		// subject's identity table, which holds its key: the subject's
		// application name is a view, which a foreign key cannot refer to.
		target = s.Subject.Table
	}
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
