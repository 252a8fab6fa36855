package storage

import (
	"fmt"
	"slices"
	"strings"

	"github.com/privata/privata/policy"
)

// Upserts. PostgreSQL refuses INSERT ... ON CONFLICT on a view with INSTEAD
// OF triggers (or, without a conflict target, ignores the clause). Package
// rewrite turns such a statement on a split table T into inserts into three
// views derived here, each with an INSTEAD OF INSERT trigger and no rows of
// its own:
//
//	privata_access.T_upsert  the proposed rows, with the defaults of T: the
//	                         trigger inserts each through T, or finds and
//	                         locks the row it conflicts with (DO UPDATE)
//	privata_access.T_apply   the new values of DO UPDATE SET for a row the
//	                         first view found: the trigger updates it
//	                         through T
//	privata_access.T_echo    the rows inserted or updated, so that the
//	                         statement's RETURNING list and command tag
//	                         (INSERT 0 n) are those of T
//
// Every write goes through T's own triggers, with the writer's rights.
// Conflicts are found as PostgreSQL's speculative insertion finds them:
// DO NOTHING inserts in a subtransaction and treats a unique violation of
// an arbiter constraint as the conflict; DO UPDATE looks the row up by the
// arbiters' columns, locks its base row (FOR UPDATE) and reads it again,
// and inserts when there is none, trying again when a concurrent insert
// wins. Two sessions upserting one key at once leave one row and no error.
// The trigger looks rows up through T, so it needs full access to the
// data T holds (which inserting into T needs anyway).

// upsertViews are the upsert views' suffixes after the table's name, in
// the order they are dropped (the others use T_echo's row type).
var upsertViews = []string{"_upsert", "_apply", "_echo"}

// UpsertViews names split table t's upsert views (in AccessSchema).
func UpsertViews(t *policy.Table) (upsert, apply, echo string) {
	return t.Name + upsertViews[0], t.Name + upsertViews[1], t.Name + upsertViews[2]
}

// Columns of the upsert views besides the application's.
const (
	// OnConflictColumn, the first column of T_upsert, says what a proposed
	// row's statement does on conflict: {action, kind, names...}.
	OnConflictColumn = "privata_on_conflict"
	// The last columns of T_upsert, which its trigger sets: whether the row
	// conflicted, the key of the row inserted or found (as text), the row
	// found (DO UPDATE) and the row inserted or proposed (EXCLUDED), both
	// of T's row type.
	ConflictColumn = "privata_conflict"
	TargetColumn   = "privata_target"
	OldColumn      = "privata_old"
	NewColumn      = "privata_new"
	// The first columns of T_apply: the columns DO UPDATE SET assigns, the
	// row found, and the proposed row's ordinal; its last column is the
	// row as updated.
	SetColumn    = "privata_set"
	OrdColumn    = "privata_ord"
	ResultColumn = "privata_result"
)

// The actions and kinds of conflict targets in OnConflictColumn.
const (
	ActionNothing = "nothing"
	ActionUpdate  = "update"
	// ConflictAny: no conflict target (every unique constraint decides).
	ConflictAny = "any"
	// ConflictConstraint: ON CONSTRAINT name; names[0] is the name.
	ConflictConstraint = "constraint"
	// ConflictColumns: the target's columns, sorted. ConflictColumnsWhere
	// when the target has a WHERE clause: partial unique indexes on those
	// columns decide too.
	ConflictColumns      = "columns"
	ConflictColumnsWhere = "columns_where"
)

// arbiter is a unique constraint or index that can decide conflicts.
type arbiter struct {
	name             string   // what a unique violation names
	cols             []string // the application's columns, in key order
	predicate        string   // a partial index's condition
	nullsNotDistinct bool
}

// arbiters lists the split table's unique constraints and indexes on
// columns of the application (not the subject's pseudonym).
func (d *deriver) arbiters() []arbiter {
	s, t := d.s, d.t()
	app := func(cols []string) ([]string, bool) {
		out := make([]string, len(cols))
		for i, c := range cols {
			switch {
			case c == "":
				return nil, false // an expression
			case c == PseudonymColumn && t.Kind == policy.Child:
				out[i] = t.Reference
			case c == PseudonymColumn:
				return nil, false
			default:
				out[i] = c
			}
		}
		return out, true
	}
	var out []arbiter
	seen := map[string]bool{}
	for _, base := range s.Bases() {
		for _, k := range base.Constraints {
			if k.Type != "p" && k.Type != "u" || seen[k.Name] {
				continue
			}
			if cols, ok := app(k.Columns); ok {
				seen[k.Name] = true
				out = append(out, arbiter{name: k.Name, cols: cols,
					nullsNotDistinct: strings.Contains(k.Def, "NULLS NOT DISTINCT")})
			}
		}
		for _, ix := range base.Indexes {
			// A child's pseudonym in a condition is its reference column
			// tested for NULL (RenameReference allows no other use), which
			// the condition tests on T's rows. Printed alike whether it
			// was planned or read back.
			predicate, ok := ix.Predicate, true
			if t.Kind == policy.Child && predicate != "" {
				predicate, ok = conditionOnView(predicate, t.Reference)
			}
			if !ix.Unique || seen[ix.Name] || !ok {
				continue
			}
			if cols, ok := app(ix.Keys); ok {
				seen[ix.Name] = true
				out = append(out, arbiter{name: ix.Name, cols: cols, predicate: predicate,
					nullsNotDistinct: ix.NullsNotDistinct})
			}
		}
	}
	// In name order, whatever order the constraints were planned or read in,
	// so that what apply derives does not depend on it.
	slices.SortFunc(out, func(a, b arbiter) int { return strings.Compare(a.name, b.name) })
	return out
}

// upsertKey returns the application's columns that identify a row and that
// the base table holding it has as its primary key: the subject's key, a
// child's primary key (its reference column where the key has the
// pseudonym). Nil when there are none (a child without a primary key).
func (d *deriver) upsertKey() (cols []string, base *Base) {
	s, t := d.s, d.t()
	if t.Kind == policy.Subject {
		return []string{t.Key}, s.Identity
	}
	for _, k := range s.Clinical.Constraints {
		if k.Type == "p" {
			return replaced(k.Columns, PseudonymColumn, t.Reference), s.Clinical
		}
	}
	return nil, nil
}

// keyMatch is the condition that base row b holds the row of T in row
// variable r whose key column is k: a child's reference column is held as
// its subject's pseudonym.
func (d *deriver) keyMatch(k, r string) string {
	s, t := d.s, d.t()
	if t.Kind == policy.Child && k == t.Reference {
		return fmt.Sprintf("b.%s = (SELECT s.%s FROM %s s WHERE s.%s = %s.%s)", ident(PseudonymColumn),
			ident(PseudonymColumn), s.Subject.Identity.QualifiedName(), ident(s.Subject.Table.Key), r,
			ident(k))
	}
	return fmt.Sprintf("b.%s = %s.%s", ident(k), r, ident(k))
}

func (d *deriver) upserts() Step {
	s, t := d.s, d.t()
	upsert, apply, echo := UpsertViews(t)
	// The views name their columns' types rather than read T, so that T
	// can be dropped and made again without them; their composite
	// columns are of T_echo's row type, which is T's.
	row := qname(AccessSchema, echo)
	cols := make([]string, len(s.App))
	for i, a := range s.App {
		typ, coll := s.ReferenceType, ""
		if a.Column != nil {
			typ, coll = a.Column.Type, a.Column.Collation
		}
		cols[i] = "NULL::" + typ
		if coll != "" {
			cols[i] += " COLLATE " + coll
		}
		cols[i] += " AS " + ident(a.Name)
	}
	list := strings.Join(cols, ",\n       ")
	var b strings.Builder

	fmt.Fprintf(&b, "CREATE OR REPLACE VIEW %s AS\nSELECT %s\n WHERE false;\n", row, list)
	fmt.Fprintf(&b, "CREATE OR REPLACE VIEW %s AS\nSELECT NULL::text[] AS %s,\n       %s,\n       "+
		"NULL::boolean AS %s, NULL::text AS %s, NULL::%s AS %s, NULL::%s AS %s\n WHERE false;\n",
		qname(AccessSchema, upsert), ident(OnConflictColumn), list, ident(ConflictColumn),
		ident(TargetColumn), row, ident(OldColumn), row, ident(NewColumn))
	for _, a := range s.App {
		if a.Column != nil && viewDefault(a.Column) != "" {
			fmt.Fprintf(&b, "ALTER VIEW %s ALTER COLUMN %s SET DEFAULT %s;\n", qname(AccessSchema, upsert),
				ident(a.Name), viewDefault(a.Column))
		}
	}
	fmt.Fprintf(&b, "CREATE OR REPLACE VIEW %s AS\nSELECT NULL::text[] AS %s, NULL::%s AS %s, "+
		"NULL::bigint AS %s,\n       %s,\n       NULL::%s AS %s\n WHERE false;\n",
		qname(AccessSchema, apply), ident(SetColumn), row, ident(OldColumn), ident(OrdColumn), list,
		row, ident(ResultColumn))

	for _, v := range []struct{ name, body string }{
		{echo, function(nil, "    RETURN NEW;\n")}, {upsert, d.upsertBody()}, {apply, d.applyBody()},
	} {
		view, fn := qname(AccessSchema, v.name), qname(AccessSchema, v.name)
		fmt.Fprintf(&b, "ALTER VIEW %s OWNER TO %s;\n", view, ident(Owner))
		fmt.Fprintf(&b, "CREATE OR REPLACE FUNCTION %s() RETURNS trigger\n    LANGUAGE plpgsql AS %s;\n",
			fn, dollarQuote(v.body))
		fmt.Fprintf(&b, "ALTER FUNCTION %s() OWNER TO %s;\n", fn, ident(Owner))
		fmt.Fprintf(&b, "REVOKE ALL ON FUNCTION %s() FROM PUBLIC;\n", fn)
		fmt.Fprintf(&b, "CREATE OR REPLACE TRIGGER %s INSTEAD OF INSERT ON %s\n"+
			"    FOR EACH ROW EXECUTE FUNCTION %s();\n", ident("privata"+strings.TrimPrefix(v.name, t.Name)),
			view, fn)
	}

	writers := policyRoles(d.env.Policy)
	for _, g := range s.AppGrants {
		if g.Privilege == "INSERT" && g.Column == "" && g.Grantee != Owner &&
			!slices.Contains(writers, g.Grantee) {
			writers = append(writers, g.Grantee)
		}
	}
	if len(writers) > 0 {
		fmt.Fprintf(&b, "GRANT SELECT, INSERT ON %s, %s, %s TO %s;\n", qname(AccessSchema, upsert),
			qname(AccessSchema, apply), qname(AccessSchema, echo), granteeList(writers))
	}
	if extra := slices.DeleteFunc(slices.Clone(writers), func(r string) bool {
		return slices.Contains(policyRoles(d.env.Policy), r)
	}); len(extra) > 0 {
		fmt.Fprintf(&b, "GRANT USAGE ON SCHEMA %s TO %s;\n", ident(AccessSchema), granteeList(extra))
	}

	comment := fmt.Sprintf("Upserts. PostgreSQL refuses INSERT ... ON CONFLICT on a view with INSTEAD "+
		"OF triggers, so Privata runs an upsert on %s as inserts into three views of %s that hold "+
		"no rows: %s (the proposed rows; its trigger inserts each through %s, or finds and locks "+
		"the row it conflicts with), %s (the new values of DO UPDATE SET, applied through %s) and "+
		"%s (what the statement returns). They need the same rights as writing %s.",
		t.QualifiedName(), AccessSchema, upsert, t.QualifiedName(), apply, t.QualifiedName(), echo,
		t.QualifiedName())
	return Step{Comment: comment, SQL: b.String()}
}

// upsertBody is the body of T_upsert's trigger: insert the proposed row
// through T, or report the row it conflicts with.
func (d *deriver) upsertBody() string {
	s, t := d.s, d.t()
	app := qname(t.Schema, t.Name)
	_, _, echo := UpsertViews(t)
	row := qname(AccessSchema, echo)
	var cols []string
	for _, a := range s.App {
		cols = append(cols, a.Name)
	}
	newRow := make([]string, len(cols))
	for i, c := range cols {
		newRow[i] = "NEW." + ident(c)
	}
	arbs := d.arbiters()
	key, keyBase := d.upsertKey()
	var b strings.Builder

	fmt.Fprintf(&b, `IF NEW.%s IS NOT NULL OR NEW.%s IS NOT NULL OR NEW.%s IS NOT NULL OR NEW.%s IS NOT NULL THEN
    RAISE EXCEPTION USING ERRCODE = 'syntax_error',
        MESSAGE = 'INSERT has more expressions than target columns';
END IF;
`, ident(ConflictColumn), ident(TargetColumn), ident(OldColumn), ident(NewColumn))
	need := hasRole(GroupRole(policy.Clinical, policy.Full))
	what := "clinical"
	if t.Kind == policy.Subject {
		need = hasRole(GroupRole(policy.Identity, policy.Full)) + " AND " + need
		what = "identity and clinical"
	}
	fmt.Fprintf(&b, `IF NOT (%s) THEN
    RAISE EXCEPTION USING ERRCODE = 'insufficient_privilege',
        MESSAGE = %s,
        DETAIL = %s;
END IF;
NEW.%s := ROW(%s);
`, need, literal(fmt.Sprintf("permission denied to upsert into %s", t.Name)),
		literal(fmt.Sprintf("INSERT ... ON CONFLICT on %s needs full access to its %s data.", t.Name, what)),
		ident(NewColumn), strings.Join(newRow, ", "))

	// Which constraints decide conflicts.
	var all []string
	for _, a := range arbs {
		all = append(all, a.name)
	}
	fmt.Fprintf(&b, `privata_kind := NEW.%[1]s[2];
privata_names := NEW.%[1]s[3:];
IF privata_kind = %[2]s THEN
    privata_arbiters := %[3]s;
ELSIF privata_kind = %[4]s THEN
    IF privata_names[1] = ANY (%[3]s) THEN
        privata_arbiters := privata_names[1:1];
    ELSE
        RAISE EXCEPTION USING ERRCODE = 'undefined_object',
            MESSAGE = pg_catalog.format('constraint "%%s" for table "%%s" does not exist', privata_names[1], %[5]s);
    END IF;
ELSE
`, ident(OnConflictColumn), literal(ConflictAny), textArray(all), literal(ConflictConstraint),
		literal(t.Name))
	for _, a := range arbs {
		sorted := slices.Sorted(slices.Values(a.cols))
		cond := "privata_names = " + textArray(sorted)
		if a.predicate != "" {
			cond = "privata_kind = " + literal(ConflictColumnsWhere) + " AND " + cond
		}
		fmt.Fprintf(&b, "    IF %s THEN\n        privata_arbiters := privata_arbiters || %s::text;\n    END IF;\n",
			cond, literal(a.name))
	}
	b.WriteString(`    IF pg_catalog.cardinality(privata_arbiters) = 0 THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_column_reference',
            MESSAGE = 'there is no unique or exclusion constraint matching the ON CONFLICT specification';
    END IF;
END IF;
`)

	insert := fmt.Sprintf("INSERT INTO %s (%s)\nVALUES (%s)\nRETURNING * INTO privata_row;\n", app,
		idents(cols), strings.Join(newRow, ", "))
	inserted := fmt.Sprintf("NEW.%s := false;\nNEW.%s := %s;\nNEW.%s := privata_row;\nRETURN NEW;\n",
		ident(ConflictColumn), ident(TargetColumn), targetExpr("privata_row", key), ident(NewColumn))
	violated := "GET STACKED DIAGNOSTICS privata_constraint = CONSTRAINT_NAME;\n"

	// DO NOTHING: insert; a unique violation of an arbiter is the conflict.
	fmt.Fprintf(&b, `IF NEW.%s[1] = %s THEN
    BEGIN
%s    EXCEPTION WHEN unique_violation THEN
%s        IF privata_constraint = ANY (privata_arbiters) THEN
            NEW.%s := true;
            RETURN NEW;
        END IF;
        RAISE;
    END;
%sEND IF;
`, ident(OnConflictColumn), literal(ActionNothing), indent(insert, 8), indent(violated, 8),
		ident(ConflictColumn), indent(inserted, 4))

	// DO UPDATE: find and lock the row, or insert.
	if key == nil {
		fmt.Fprintf(&b, `RAISE EXCEPTION USING ERRCODE = 'feature_not_supported',
    MESSAGE = %s,
    HINT = 'Give the table a primary key, or use ON CONFLICT DO NOTHING.';
`, literal(fmt.Sprintf("ON CONFLICT DO UPDATE is not supported on split table %s, which has no "+
			"primary key to lock rows by", t.QualifiedName())))
		return function([]string{"privata_kind text", "privata_names text[]",
			"privata_arbiters text[] := '{}'", "privata_constraint text",
			"privata_row " + row}, indent(b.String(), 4))
	}
	lookup := func(into string) string {
		var l strings.Builder
		l.WriteString("privata_found := false;\n")
		for _, a := range arbs {
			var match, guard []string
			for _, c := range a.cols {
				if a.nullsNotDistinct {
					match = append(match, fmt.Sprintf("a.%s IS NOT DISTINCT FROM NEW.%s", ident(c), ident(c)))
				} else {
					match = append(match, fmt.Sprintf("a.%s = NEW.%s", ident(c), ident(c)))
					guard = append(guard, fmt.Sprintf("NEW.%s IS NOT NULL", ident(c)))
				}
			}
			if a.predicate != "" {
				match = append(match, "("+a.predicate+")")
			}
			cond := append([]string{"NOT privata_found",
				literal(a.name) + " = ANY (privata_arbiters)"}, guard...)
			fmt.Fprintf(&l, "IF %s THEN\n    SELECT a.* INTO %s FROM %s a\n     WHERE %s;\n"+
				"    privata_found := FOUND;\nEND IF;\n", strings.Join(cond, " AND "), into, app,
				strings.Join(match, "\n       AND "))
		}
		return l.String()
	}
	var lock, same []string
	for _, k := range key {
		lock = append(lock, d.keyMatch(k, "privata_old"))
		same = append(same, fmt.Sprintf("privata_row.%s IS NOT DISTINCT FROM privata_old.%s",
			ident(k), ident(k)))
	}
	found := fmt.Sprintf("NEW.%s := true;\nNEW.%s := %s;\nNEW.%s := privata_row;\nRETURN NEW;\n",
		ident(ConflictColumn), ident(TargetColumn), targetExpr("privata_row", key), ident(OldColumn))
	fmt.Fprintf(&b, `LOOP
%s    IF privata_found THEN
        PERFORM FROM %s b WHERE %s FOR UPDATE;
        IF FOUND THEN
%s            IF privata_found AND %s THEN
%s            END IF;
        END IF;
    ELSE
        BEGIN
%s%s        EXCEPTION WHEN unique_violation THEN
%s            IF NOT privata_constraint = ANY (privata_arbiters) THEN
                RAISE;
            END IF;
            IF pg_catalog.current_setting('transaction_isolation') <> 'read committed' THEN
                RAISE EXCEPTION USING ERRCODE = 'serialization_failure',
                    MESSAGE = 'could not serialize access due to concurrent update';
            END IF;
        END;
    END IF;
END LOOP;
`, indent(lookup("privata_old"), 4), keyBase.QualifiedName(), strings.Join(lock, " AND "),
		indent(lookup("privata_row"), 12), strings.Join(same, " AND "), indent(found, 16),
		indent(insert, 12), indent(inserted, 12), indent(violated, 12))
	return function([]string{"privata_kind text", "privata_names text[]",
		"privata_arbiters text[] := '{}'", "privata_constraint text", "privata_found boolean",
		"privata_old " + row, "privata_row " + row}, indent(b.String(), 4))
}

// targetExpr is the key of row variable r as text, for telling whether
// two proposed rows reach one row; NULL without a key.
func targetExpr(r string, key []string) string {
	switch len(key) {
	case 0:
		return "NULL"
	case 1:
		return fmt.Sprintf("%s.%s::text", r, ident(key[0]))
	}
	parts := make([]string, len(key))
	for i, k := range key {
		parts[i] = r + "." + ident(k)
	}
	return "ROW(" + strings.Join(parts, ", ") + ")::text"
}

// applyBody is the body of T_apply's trigger: update the row found with
// the columns DO UPDATE SET assigns, through T.
func (d *deriver) applyBody() string {
	s, t := d.s, d.t()
	app := qname(t.Schema, t.Name)
	_, _, echo := UpsertViews(t)
	key, _ := d.upsertKey()
	if key == nil {
		return function(nil, indent(fmt.Sprintf("RAISE EXCEPTION USING ERRCODE = 'feature_not_supported',\n"+
			"    MESSAGE = %s;\n", literal("ON CONFLICT DO UPDATE is not supported on split table "+
			t.QualifiedName())), 4))
	}
	var set, where []string
	for _, a := range s.App {
		set = append(set, fmt.Sprintf(
			"%[1]s = CASE WHEN %[2]s = ANY (NEW.%[3]s) THEN NEW.%[1]s ELSE t.%[1]s END",
			ident(a.Name), literal(a.Name), ident(SetColumn)))
	}
	for _, k := range key {
		where = append(where, fmt.Sprintf("t.%s = (NEW.%s).%s", ident(k), ident(OldColumn), ident(k)))
	}
	body := fmt.Sprintf(`UPDATE %s AS t
   SET %s
 WHERE %s
RETURNING t.* INTO privata_row;
IF NOT FOUND THEN
    RETURN NULL;
END IF;
NEW.%s := privata_row;
RETURN NEW;
`, app, strings.Join(set, ",\n       "), strings.Join(where, " AND "), ident(ResultColumn))
	return function([]string{"privata_row " + qname(AccessSchema, echo)}, indent(body, 4))
}
