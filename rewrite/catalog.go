package rewrite

import (
	"slices"

	pg "github.com/pganalyze/pg_query_go/v5"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Catalog emulation. On a database with split tables, the catalogs show a
// split table's view as a view, without the keys, indexes and NOT NULL
// flags its base tables carry, and ORMs that introspect them (TypeORM's
// synchronize, Prisma's db pull, Sequelize's describeTable, psql's \d)
// see a table that is not theirs. Schema privata_catalog (sql/0005_catalog.sql)
// holds emulations of the catalog relations ORMs read, with the columns of
// the originals and the rows they would have if every split table were a
// plain table. A statement that reads one of those relations is rewritten
// to read its emulation instead; the functions that print a definition
// from an oid (pg_get_expr, pg_get_indexdef, pg_get_constraintdef) are
// replaced in it too, so that what they print names the view and its
// columns. Nothing else in the statement changes: regclass casts such as
// 'patients'::regclass keep working, since the view's oid stands for the
// table.

// CatalogSchema holds the emulations.
const CatalogSchema = "privata_catalog"

// emulatedRelations are the catalog relations CatalogSchema emulates, by
// schema, under the same names.
var emulatedRelations = map[string][]string{
	"pg_catalog": {"pg_class", "pg_index", "pg_constraint", "pg_attribute", "pg_attrdef",
		"pg_depend", "pg_trigger", "pg_indexes", "pg_tables", "pg_views", "pg_sequences",
		"pg_stat_all_tables", "pg_stat_user_tables", "pg_statio_all_tables", "pg_stat_all_indexes",
		"pg_stat_user_indexes"},
	"information_schema": {"tables", "columns", "table_constraints", "key_column_usage",
		"constraint_column_usage", "referential_constraints", "check_constraints", "views", "triggers"},
}

// emulatedFunctions print definitions from oids, or find a column's
// sequence; CatalogSchema has versions that see a split table's objects as
// a plain table's.
var emulatedFunctions = []string{"pg_get_expr", "pg_get_indexdef", "pg_get_constraintdef",
	"pg_get_serial_sequence"}

// catalogSchemaOf returns the catalog schema an emulated relation reference
// resolves to, or "". An unqualified pg_catalog name resolves to
// pg_catalog, which PostgreSQL searches first unless the search path names
// it later; an unqualified information_schema name only when that schema
// comes first in the search path.
func catalogSchemaOf(schema, name string, searchPath []string) string {
	if schema == "" {
		switch {
		case slices.Contains(emulatedRelations["pg_catalog"], name) && !pgCatalogLater(searchPath):
			return "pg_catalog"
		case len(searchPath) > 0 && searchPath[0] == "information_schema" &&
			slices.Contains(emulatedRelations["information_schema"], name):
			return "information_schema"
		}
		return ""
	}
	if slices.Contains(emulatedRelations[schema], name) {
		return schema
	}
	return ""
}

// pgCatalogLater reports whether the search path names pg_catalog after
// another schema, which then comes before it.
func pgCatalogLater(searchPath []string) bool {
	i := slices.Index(searchPath, "pg_catalog")
	return i > 0
}

// ReadsCatalog reports whether a statement of an reads a catalog relation
// that CatalogSchema emulates.
func ReadsCatalog(an *Analysis, searchPath []string) bool {
	for _, st := range an.Statements {
		if readsCatalog(st, searchPath) {
			return true
		}
	}
	return false
}

func readsCatalog(st *Statement, searchPath []string) bool {
	for _, r := range st.Relations {
		if !r.Function && catalogSchemaOf(r.Schema, r.Name, searchPath) != "" {
			return true
		}
	}
	return false
}

// emulateCatalog makes the statement n read CatalogSchema's emulations in
// place of the catalog relations, and call its definition printers. An
// unqualified name that a WITH query of the statement defines is left
// alone.
func emulateCatalog(n *pg.Node, searchPath []string) {
	ctes := map[string]bool{}
	visitMessages(n.ProtoReflect(), func(m protoreflect.Message) {
		if c, ok := m.Interface().(*pg.CommonTableExpr); ok {
			ctes[c.Ctename] = true
		}
	})
	visitMessages(n.ProtoReflect(), func(m protoreflect.Message) {
		switch v := m.Interface().(type) {
		case *pg.RangeVar:
			if v.Schemaname == "" && ctes[v.Relname] {
				return
			}
			if catalogSchemaOf(v.Schemaname, v.Relname, searchPath) != "" {
				v.Schemaname = CatalogSchema
			}
		case *pg.FuncCall:
			emulateFunction(v, searchPath)
		}
	})
}

// emulateFunction points a call of a definition printer at CatalogSchema's
// version.
func emulateFunction(f *pg.FuncCall, searchPath []string) {
	var schema, name string
	switch len(f.Funcname) {
	case 1:
		if pgCatalogLater(searchPath) {
			return
		}
		name = f.Funcname[0].GetString_().GetSval()
	case 2:
		schema = f.Funcname[0].GetString_().GetSval()
		name = f.Funcname[1].GetString_().GetSval()
	default:
		return
	}
	if (schema == "" || schema == "pg_catalog") && slices.Contains(emulatedFunctions, name) {
		f.Funcname = []*pg.Node{pg.MakeStrNode(CatalogSchema), pg.MakeStrNode(name)}
	}
}

// visitMessages calls visit on m and every message under it.
func visitMessages(m protoreflect.Message, visit func(protoreflect.Message)) {
	visit(m)
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.Kind() != protoreflect.MessageKind || fd.IsMap():
		case fd.IsList():
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				visitMessages(l.Get(i).Message(), visit)
			}
		default:
			visitMessages(v.Message(), visit)
		}
		return true
	})
}
