package storage

import (
	"fmt"
	"strings"

	"github.com/privata/privata/policy"
)

// DDL through Privata's proxy changes a split table's base tables in the
// application's transaction, then has ApplyTx derive the rest again.
// These give the statements that clear the way.

// DropViewsSQL drops the views over split table t's base tables (the
// upsert views, the application's view and the access views), so that
// its base tables can change in ways views block (a column dropped,
// renamed or changing type). ApplyTx derives them again.
func DropViewsSQL(t *policy.Table) string {
	var names []string
	for _, v := range upsertViews {
		names = append(names, qname(AccessSchema, t.Name+v))
	}
	names = append(names, qname(t.Schema, t.Name))
	for _, side := range accessSides(t) {
		names = append(names, qname(AccessSchema, accessName(t, side)))
	}
	var b strings.Builder
	for _, n := range names {
		fmt.Fprintf(&b, "DROP VIEW IF EXISTS %s;\n", n)
	}
	return b.String()
}

// DropSQL drops split table t: its views, trigger functions and base
// tables, all owned by Owner. With cascade, foreign keys of other tables to
// its base tables go too, as DROP TABLE ... CASCADE drops those of a plain
// table. UnregisterSQL forgets it.
func DropSQL(t *policy.Table, cascade bool) string {
	var b strings.Builder
	b.WriteString(DropViewsSQL(t))
	fns := append([]string{"_insert", "_update", "_delete"}, upsertViews...)
	for _, f := range fns {
		fmt.Fprintf(&b, "DROP FUNCTION IF EXISTS %s();\n", qname(AccessSchema, t.Name+f))
	}
	bases := qname(ClinicalSchema, t.Name)
	if t.Kind == policy.Subject {
		bases = qname(IdentitySchema, t.Name) + ", " + bases
	}
	fmt.Fprintf(&b, "DROP TABLE %s", bases)
	if cascade {
		b.WriteString(" CASCADE")
	}
	b.WriteString(";\n")
	return b.String()
}

// RenameColumnSQL renames a column of split table t in the registry, whose
// list of the application's columns keeps their order in t's view: the
// column keeps its place under its new name.
func RenameColumnSQL(t *policy.Table, from, to string) string {
	return fmt.Sprintf("UPDATE privata.tables SET columns = pg_catalog.array_replace(columns, %s, %s)\n"+
		" WHERE schema_name = %s AND table_name = %s;\n", literal(from), literal(to), literal(t.Schema),
		literal(t.Name))
}

// UnregisterSQL removes split table t from the registry privata.tables.
func UnregisterSQL(t *policy.Table) string {
	return fmt.Sprintf("DELETE FROM privata.tables WHERE schema_name = %s AND table_name = %s;\n",
		literal(t.Schema), literal(t.Name))
}
