package storage

import (
	"fmt"
	"slices"
	"strings"

	"github.com/privata/privata/policy"
)

// The INSTEAD OF triggers of the application's view split each written row
// between the base tables. They are generated per table as plain
// statements (no dynamic SQL), and run with the writer's own privileges, so
// that a role without full access to a class gets PostgreSQL's own 42501
// when it writes that class.

// triggers returns the trigger functions and the triggers on the view.
func (d *deriver) triggers() Step {
	t := d.t()
	var b strings.Builder
	ops := []struct{ op, body string }{
		{"insert", d.insertBody()},
		{"update", d.updateBody()},
		{"delete", d.deleteBody()},
	}
	for _, o := range ops {
		fn := qname(AccessSchema, t.Name+"_"+o.op)
		fmt.Fprintf(&b, "CREATE OR REPLACE FUNCTION %s() RETURNS trigger\n    LANGUAGE plpgsql AS %s;\n",
			fn, dollarQuote(o.body))
		fmt.Fprintf(&b, "ALTER FUNCTION %s() OWNER TO %s;\n", fn, ident(Owner))
		fmt.Fprintf(&b, "REVOKE ALL ON FUNCTION %s() FROM PUBLIC;\n", fn)
		fmt.Fprintf(&b, "CREATE OR REPLACE TRIGGER %s INSTEAD OF %s ON %s\n"+
			"    FOR EACH ROW EXECUTE FUNCTION %s();\n",
			ident("privata_"+o.op), strings.ToUpper(o.op), qname(t.Schema, t.Name), fn)
	}
	var comment string
	if t.Kind == policy.Subject {
		comment = fmt.Sprintf("INSTEAD OF triggers split each row written to %s: identity columns "+
			"to %s, clinical columns to %s, linked by a new random pseudonym. An update writes "+
			"a base table only when one of its columns changed, so a role that reads masked "+
			"identity values can still update clinical ones.", t.QualifiedName(),
			d.s.Identity.QualifiedName(), d.s.Clinical.QualifiedName())
	} else {
		comment = fmt.Sprintf("INSTEAD OF triggers write %s's rows to %s, with the subject's "+
			"pseudonym in place of %s; a %s that names no subject fails as the foreign key "+
			"did (23503).", t.QualifiedName(), d.s.Clinical.QualifiedName(), t.Reference, t.Reference)
	}
	return Step{Comment: comment, SQL: b.String()}
}

// function wraps statements into a trigger function body.
func function(vars []string, body string) string {
	var b strings.Builder
	b.WriteString("#variable_conflict use_column\n")
	if len(vars) > 0 {
		b.WriteString("DECLARE\n")
		for _, v := range vars {
			b.WriteString("    " + v + ";\n")
		}
	}
	b.WriteString("BEGIN\n")
	b.WriteString(body)
	b.WriteString("END\n")
	return b.String()
}

// indent prefixes every line of s with n spaces.
func indent(s string, n int) string {
	pad := strings.Repeat(" ", n)
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		if l != "" {
			lines[i] = pad + l
		}
	}
	return strings.Join(lines, "\n") + "\n"
}

func newValues(cols []*Column) []string {
	out := make([]string, len(cols))
	for i, c := range cols {
		out[i] = "NEW." + ident(c.Name)
	}
	return out
}

// changed is true when a column of cols differs between OLD and NEW. The
// text forms are compared: every type has one, not every type has =.
func changed(cols []string) string {
	parts := make([]string, len(cols))
	for i, c := range cols {
		parts[i] = fmt.Sprintf("NEW.%s::text IS DISTINCT FROM OLD.%s::text", ident(c), ident(c))
	}
	return strings.Join(parts, "\n    OR ")
}

// setList assigns NEW's values to cols; GENERATED ALWAYS identity columns
// are left out (updateGuard refuses changing them).
func setList(cols []*Column) string {
	var parts []string
	for _, c := range cols {
		if c.Identity != "a" {
			parts = append(parts, fmt.Sprintf("%s = NEW.%s", ident(c.Name), ident(c.Name)))
		}
	}
	return strings.Join(parts, ",\n       ")
}

// A GENERATED ALWAYS identity column of a base table behaves through the
// view as on the original table: the view gives it no default, an insert
// that names a value fails, the trigger takes the next value itself; an
// update may not change it.
const alwaysDetail = "Column %q is an identity column defined as GENERATED ALWAYS."

func insertGuard(cols []*Column) string {
	var b strings.Builder
	for _, c := range cols {
		if c.Identity != "a" {
			continue
		}
		fmt.Fprintf(&b, `IF NEW.%[1]s IS NOT NULL THEN
    RAISE EXCEPTION USING ERRCODE = 'generated_always',
        MESSAGE = %[2]s, DETAIL = %[3]s;
END IF;
NEW.%[1]s := pg_catalog.nextval(%[4]s::pg_catalog.regclass);
`, ident(c.Name), literal(fmt.Sprintf("cannot insert a non-DEFAULT value into column %q", c.Name)),
			literal(fmt.Sprintf(alwaysDetail, c.Name)), literal(c.Sequence))
	}
	return b.String()
}

func updateGuard(cols []*Column) string {
	var b strings.Builder
	for _, c := range cols {
		if c.Identity != "a" {
			continue
		}
		fmt.Fprintf(&b, `IF NEW.%[1]s IS DISTINCT FROM OLD.%[1]s THEN
    RAISE EXCEPTION USING ERRCODE = 'generated_always',
        MESSAGE = %[2]s, DETAIL = %[3]s;
END IF;
`, ident(c.Name), literal(fmt.Sprintf("column %q can only be updated to DEFAULT", c.Name)),
			literal(fmt.Sprintf(alwaysDetail, c.Name)))
	}
	return b.String()
}

// overriding is the OVERRIDING clause an INSERT into base needs to write
// GENERATED ALWAYS identity columns.
func overriding(cols []*Column) string {
	for _, c := range cols {
		if c.Identity == "a" {
			return " OVERRIDING SYSTEM VALUE"
		}
	}
	return ""
}

func insertSQL(base *Base, cols []*Column, values []string, returning string) string {
	s := fmt.Sprintf("INSERT INTO %s (%s)%s\nVALUES (%s)", base.QualifiedName(), colNames(cols),
		overriding(cols), strings.Join(values, ", "))
	if returning != "" {
		s += "\n" + returning
	}
	return s + ";\n"
}

func colNames(cols []*Column) string {
	names := make([]string, len(cols))
	for i, c := range cols {
		names[i] = c.Name
	}
	return idents(names)
}

// sideColumns are the base columns of the app columns stored on side.
func (d *deriver) sideColumns(side policy.Class, skip string) []*Column {
	var out []*Column
	for _, a := range d.s.SideColumns(side) {
		if a.Name != skip {
			out = append(out, a.Column)
		}
	}
	return out
}

// regionExpr computes a new subject's home region in a trigger.
func (d *deriver) regionExpr(row string) string {
	r := d.env.Policy.Residency
	if r != nil && r.Table == d.t().QualifiedName() {
		return fmt.Sprintf("privata.region_of(%s.%s::text)", row, ident(r.Column))
	}
	return "privata.region_of(NULL)"
}

func (d *deriver) insertBody() string {
	s, t := d.s, d.t()
	if t.Kind == policy.Child {
		cols := d.sideColumns(policy.Clinical, "")
		var b strings.Builder
		b.WriteString(insertGuard(cols))
		b.WriteString(d.lookupSubject("NEW"))
		b.WriteString(insertSQL(s.Clinical, append([]*Column{s.Clinical.Column(PseudonymColumn)}, cols...),
			append([]string{"privata_p"}, newValues(cols)...), ""))
		b.WriteString("RETURN NEW;\n")
		return function([]string{"privata_p uuid"}, indent(b.String(), 4))
	}
	key := s.Key()
	idCols := d.sideColumns(policy.Identity, t.Key)
	all := append([]*Column{key, s.Identity.Column(RegionColumn)}, idCols...)
	values := append([]string{"NEW." + ident(key.Name), d.regionExpr("NEW")}, newValues(idCols)...)
	clCols := d.sideColumns(policy.Clinical, "")
	var b strings.Builder
	b.WriteString(insertGuard(append(slices.Clone(all), clCols...)))
	b.WriteString(insertSQL(s.Identity, all, values, "RETURNING "+ident(PseudonymColumn)+" INTO privata_p"))
	b.WriteString(insertSQL(s.Clinical, append([]*Column{s.Clinical.Column(PseudonymColumn)}, clCols...),
		append([]string{"privata_p"}, newValues(clCols)...), ""))
	b.WriteString("RETURN NEW;\n")
	return function([]string{"privata_p uuid"}, indent(b.String(), 4))
}

// lookupSubject sets privata_p to the pseudonym of the subject whose key
// row's reference column names, failing as the foreign key would when
// there is no such subject.
func (d *deriver) lookupSubject(row string) string {
	s, t := d.s, d.t()
	ref := row + "." + ident(t.Reference)
	subj := s.Subject
	msg := fmt.Sprintf("insert or update on table %q violates foreign key constraint %q",
		t.Name, s.ReferenceFK)
	detail := fmt.Sprintf("Key (%s) is not present in table %q.", t.Reference, subj.Table.Name)
	// A NULL reference where the pseudonym may not be NULL fails as the
	// application's column would, naming it (not the pseudonym).
	notNull := ""
	if c := s.Clinical.Column(PseudonymColumn); c != nil && c.NotNull {
		notNull = fmt.Sprintf(`IF %s IS NULL THEN
    RAISE EXCEPTION USING ERRCODE = 'not_null_violation', MESSAGE = %s,
        COLUMN = %s, TABLE = %s, SCHEMA = %s;
END IF;
`, ref, literal(fmt.Sprintf("null value in column %q of relation %q violates not-null constraint",
			t.Reference, t.Name)), literal(t.Reference), literal(t.Name), literal(t.Schema))
	}
	return notNull + fmt.Sprintf(`privata_p := NULL;
IF %s IS NOT NULL THEN
    SELECT s.%s INTO privata_p FROM %s s WHERE s.%s = %s;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'foreign_key_violation', MESSAGE = %s,
            DETAIL = %s, TABLE = %s, CONSTRAINT = %s;
    END IF;
END IF;
`, ref, ident(PseudonymColumn), subj.Identity.QualifiedName(), ident(subj.Table.Key), ref,
		literal(msg), literal(detail), literal(t.Name), literal(s.ReferenceFK))
}

func (d *deriver) updateBody() string {
	if d.t().Kind == policy.Child {
		return d.childWrite("update")
	}
	s, t := d.s, d.t()
	key := ident(t.Key)
	var b strings.Builder
	if r := d.env.Policy.Residency; r != nil && r.Table == t.QualifiedName() && r.OnChange == policy.Refuse {
		fmt.Fprintf(&b, `IF %s IS DISTINCT FROM %s THEN
    RAISE EXCEPTION USING ERRCODE = 'check_violation',
        MESSAGE = %s,
        HINT = 'the policy says on_region_change: refuse', TABLE = %s;
END IF;
`, d.regionExpr("NEW"), d.regionExpr("OLD"),
			literal(fmt.Sprintf("an update of %q may not change a subject's home region", t.Name)),
			literal(t.Name))
	}
	idCols := append([]*Column{s.Key()}, d.sideColumns(policy.Identity, t.Key)...)
	b.WriteString(updateGuard(append(slices.Clone(idCols), d.sideColumns(policy.Clinical, "")...)))
	watch := colNamesList(idCols)
	if r := d.env.Policy.Residency; r != nil && r.Table == t.QualifiedName() &&
		s.Identity.Column(r.Column) == nil {
		watch = append(watch, r.Column)
	}
	var id strings.Builder
	if checks := s.keyChecks(d.env.Children); len(checks) > 0 {
		fmt.Fprintf(&id, "IF NEW.%s IS DISTINCT FROM OLD.%s THEN\n", key, key)
		fmt.Fprintf(&id, "    SELECT %s INTO privata_p FROM %s WHERE %s = OLD.%s;\n",
			ident(PseudonymColumn), s.Identity.QualifiedName(), key, key)
		for _, k := range checks {
			fmt.Fprintf(&id, `    IF EXISTS (SELECT FROM %s WHERE %s = privata_p) THEN
        RAISE EXCEPTION USING ERRCODE = 'foreign_key_violation', MESSAGE = %s,
            DETAIL = %s, TABLE = %s, CONSTRAINT = %s;
    END IF;
`, k.child.QualifiedName(), ident(PseudonymColumn),
				literal(fmt.Sprintf("update or delete on table %q violates foreign key constraint %q on table %q",
					t.Name, k.constraint, k.table)),
				literal(fmt.Sprintf("Key (%s) is still referenced from table %q.", t.Key, k.table)),
				literal(t.Name), literal(k.constraint))
		}
		id.WriteString("END IF;\n")
	}
	set := fmt.Sprintf("%s = %s", ident(RegionColumn), d.regionExpr("NEW"))
	if rest := setList(idCols); rest != "" {
		set = rest + ",\n       " + set
	}
	fmt.Fprintf(&id, "UPDATE %s\n   SET %s\n WHERE %s = OLD.%s\nRETURNING %s INTO privata_p;\n",
		s.Identity.QualifiedName(), set, key, key, ident(PseudonymColumn))
	id.WriteString("IF NOT FOUND THEN\n    RETURN NULL;\nEND IF;\n")
	fmt.Fprintf(&b, "IF %s THEN\n%sEND IF;\n", changed(watch), indent(id.String(), 4))

	if clCols := d.sideColumns(policy.Clinical, ""); len(clCols) > 0 {
		var cl strings.Builder
		fmt.Fprintf(&cl, "IF privata_p IS NULL THEN\n"+
			"    SELECT %s INTO privata_p FROM %s WHERE %s = OLD.%s;\nEND IF;\n",
			ident(PseudonymColumn), s.Identity.QualifiedName(), key, key)
		fmt.Fprintf(&cl, "UPDATE %s\n   SET %s\n WHERE %s = privata_p;\n", s.Clinical.QualifiedName(),
			setList(clCols), ident(PseudonymColumn))
		cl.WriteString("IF NOT FOUND THEN\n    RETURN NULL;\nEND IF;\n")
		fmt.Fprintf(&b, "IF %s THEN\n%sEND IF;\n", changed(colNamesList(clCols)), indent(cl.String(), 4))
	}
	b.WriteString("RETURN NEW;\n")
	return function([]string{"privata_p uuid"}, indent(b.String(), 4))
}

func colNamesList(cols []*Column) []string {
	out := make([]string, len(cols))
	for i, c := range cols {
		out[i] = c.Name
	}
	return out
}

func (d *deriver) deleteBody() string {
	if d.t().Kind == policy.Child {
		return d.childWrite("delete")
	}
	s, t := d.s, d.t()
	key := ident(t.Key)
	body := fmt.Sprintf(`DELETE FROM %s WHERE %s = OLD.%s
RETURNING %s INTO privata_p;
IF NOT FOUND THEN
    RETURN NULL;
END IF;
DELETE FROM %s WHERE %s = privata_p;
RETURN OLD;
`, s.Identity.QualifiedName(), key, key, ident(PseudonymColumn), s.Clinical.QualifiedName(),
		ident(PseudonymColumn))
	return function([]string{"privata_p uuid"}, indent(body, 4))
}

// childWrite is the body of a child table's update or delete trigger. A
// child row is found by its primary key when it has one; otherwise by all
// of its values, through the access view, which gives the base row's
// location (ctid): the writer may not read the base table's values.
func (d *deriver) childWrite(op string) string {
	s, t := d.s, d.t()
	ref := ident(t.Reference)
	cols := d.sideColumns(policy.Clinical, "")
	var b strings.Builder
	var where string
	vars := []string{"privata_p uuid"}
	if pk := s.rowKey(); pk != nil {
		parts := make([]string, len(pk))
		for i, c := range pk {
			parts[i] = fmt.Sprintf("%s = OLD.%s", ident(c), ident(c))
		}
		where = strings.Join(parts, " AND ")
	} else {
		vars = append(vars, "privata_r tid")
		access := qname(AccessSchema, d.accessName(policy.Clinical))
		match := ""
		for _, c := range cols {
			match += fmt.Sprintf("\n       AND a.%s::text IS NOT DISTINCT FROM OLD.%s::text",
				ident(c.Name), ident(c.Name))
		}
		locate := func(cond string) string {
			return indent(fmt.Sprintf("SELECT a.%s INTO privata_r FROM %s a\n WHERE %s%s\n LIMIT 1;\n",
				rowColumn, access, cond, match), 4)
		}
		fmt.Fprintf(&b, "IF OLD.%s IS NULL THEN\n%sELSE\n%sEND IF;\n", ref,
			locate("a."+ref+" IS NULL"), locate(fmt.Sprintf("a.%s = OLD.%s", ref, ref)))
		where = "ctid = privata_r"
	}
	base := s.Clinical.QualifiedName()
	if op == "delete" {
		fmt.Fprintf(&b, "DELETE FROM %s WHERE %s;\n", base, where)
		b.WriteString("IF NOT FOUND THEN\n    RETURN NULL;\nEND IF;\nRETURN OLD;\n")
		return function(vars, indent(b.String(), 4))
	}
	if op == "update" {
		b.WriteString(updateGuard(cols))
	}
	keep := setList(cols)
	if keep == "" {
		keep = fmt.Sprintf("%s = %s", ident(PseudonymColumn), ident(PseudonymColumn))
	}
	move := fmt.Sprintf("%s = privata_p", ident(PseudonymColumn))
	if set := setList(cols); set != "" {
		move = set + ",\n       " + move
	}
	update := func(set string) string {
		return indent(fmt.Sprintf("UPDATE %s\n   SET %s\n WHERE %s;\n", base, set, where), 4)
	}
	fmt.Fprintf(&b, "IF NEW.%s::text IS NOT DISTINCT FROM OLD.%s::text THEN\n%sELSE\n%s%sEND IF;\n",
		ref, ref, update(keep), indent(d.lookupSubject("NEW"), 4), update(move))
	b.WriteString("IF NOT FOUND THEN\n    RETURN NULL;\nEND IF;\nRETURN NEW;\n")
	return function(vars, indent(b.String(), 4))
}
