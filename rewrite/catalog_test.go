package rewrite

import (
	"strings"
	"testing"

	"github.com/privata/privata/policy"
)

// TestCatalogRewrite checks which relations and functions of a statement
// the catalog rewrite replaces, and that it leaves the rest alone.
func TestCatalogRewrite(t *testing.T) {
	pol, err := policy.Parse("policy.yaml", []byte(splitPolicy))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, text string
		path       []string
		// want are substrings of the rewritten text
		want []string
		same bool // the text is sent as it is
	}{
		{name: "qualified information_schema",
			text: `SELECT * FROM "information_schema"."tables" WHERE "table_schema" = $1`,
			want: []string{"privata_catalog.tables", "$1"}},
		{name: "unqualified pg_catalog relations",
			text: `SELECT c.relname FROM pg_class c JOIN pg_index i ON i.indrelid = c.oid
			       JOIN pg_namespace n ON n.oid = c.relnamespace`,
			want: []string{"privata_catalog.pg_class", "privata_catalog.pg_index", "JOIN pg_namespace n"}},
		{name: "definition printers",
			text: `SELECT pg_get_indexdef(i.indexrelid, 0, true), pg_catalog.pg_get_constraintdef(k.oid),
			       pg_get_expr(d.adbin, d.adrelid), pg_get_triggerdef(t.oid)
			       FROM pg_catalog.pg_index i, pg_constraint k, pg_attrdef d, pg_trigger t`,
			want: []string{"privata_catalog.pg_get_indexdef(", "privata_catalog.pg_get_constraintdef(",
				"privata_catalog.pg_get_expr(", "pg_get_triggerdef(", "privata_catalog.pg_trigger"}},
		{name: "subquery and join",
			text: `SELECT * FROM information_schema.columns c WHERE EXISTS
			       (SELECT FROM information_schema.key_column_usage k WHERE k.column_name = c.column_name)`,
			want: []string{"privata_catalog.columns", "privata_catalog.key_column_usage"}},
		{name: "a WITH query of the same name",
			text: `WITH pg_class AS (SELECT 1 AS relkind) SELECT * FROM pg_class, pg_catalog.pg_attribute`,
			want: []string{"FROM pg_class,", "privata_catalog.pg_attribute"}},
		{name: "unqualified information_schema name on the default path",
			text: `SELECT * FROM tables`, same: true},
		{name: "information_schema first on the path",
			text: `SELECT * FROM tables`, path: []string{"information_schema", "public"},
			want: []string{"privata_catalog.tables"}},
		{name: "pg_catalog after another schema",
			text: `SELECT * FROM pg_class`, path: []string{"public", "pg_catalog"}, same: true},
		{name: "catalog relations not emulated",
			text: `SELECT * FROM pg_catalog.pg_namespace, pg_type`, same: true},
		{name: "regclass constants stay",
			text: `SELECT relkind FROM pg_class WHERE oid = 'patients'::regclass`,
			want: []string{"privata_catalog.pg_class", "'patients'::regclass"}},
		{name: "only the statement that reads the catalogs",
			text: `SELECT 1; SELECT relname FROM pg_class;  SELECT  2`,
			want: []string{"SELECT 1; SELECT relname FROM privata_catalog.pg_class;  SELECT  2"}},
		{name: "an upsert beside a catalog query",
			text: `INSERT INTO patients (id) VALUES (9) ON CONFLICT (id) DO NOTHING;
			       SELECT count(*) FROM information_schema.tables`,
			want: []string{"privata_access.patients_upsert", "privata_catalog.tables"}},
	}
	a := NewAnalyzer(0)
	r := NewRewriter(pol, 100)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			an, err := a.Analyze(c.text)
			if err != nil {
				t.Fatal(err)
			}
			path := c.path
			if path == nil {
				path = []string{"public"}
			}
			if reads := ReadsCatalog(an, path); reads == c.same {
				t.Errorf("ReadsCatalog = %v", reads)
			}
			out, err := r.RewriteWithCatalog(c.text, an, path)
			if err != nil {
				t.Fatal(err)
			}
			if c.same && out != c.text {
				t.Errorf("rewritten to %q", out)
			}
			for _, w := range c.want {
				if !strings.Contains(out, w) {
					t.Errorf("%q lacks %q", out, w)
				}
			}
			if plain, err := r.Rewrite(c.text, an, path); err != nil || strings.Contains(plain, CatalogSchema) {
				t.Errorf("Rewrite without the catalog: %q, %v", plain, err)
			}
		})
	}
}
