package fdw

import (
	"fmt"
	"slices"
	"strings"

	"github.com/privata/privata/policy"
	"github.com/privata/privata/storage"
)

// deriver builds the SQL of the cross-region objects of one cluster from
// nothing: the export views, the foreign servers, user mappings and
// foreign tables of the clusters it reads, the cross-region views and the
// transfers. Plan runs it after dropping what exists (a rebuild).
type deriver struct {
	topo    *Topology
	local   *Peer
	imports []*Import
	cat     *catalog
}

// viewColumn is a column of a generated view or foreign table.
type viewColumn struct {
	name, typ string
	class     policy.Class
	// expr is the export view's expression for the column.
	expr string
}

// exportColumns are the columns of table t in every export and global
// view: the home region, the pseudonym, a subject table's key, then the
// application's columns in their order, without a child table's reference
// to its subject (the pseudonym stands for it).
func (d *deriver) exportColumns(t *policy.Table) []viewColumn {
	p := d.topo.Policy
	app := d.cat.tables[t]
	cols := []viewColumn{
		{name: RegionColumn, typ: "text", class: policy.Other},
		{name: PseudonymColumn, typ: "uuid", class: policy.Other},
	}
	if t.Kind == policy.Child {
		cols[0].expr = "s." + ident(RegionColumn)
		cols[1].expr = "a." + ident(PseudonymColumn)
		for _, c := range app {
			if c.name != t.Reference {
				cols = append(cols, viewColumn{name: c.name, typ: c.typ, class: t.ClassOf(c.name),
					expr: "a." + ident(c.name)})
			}
		}
		return cols
	}
	cols[0].expr = "i." + ident(RegionColumn)
	cols[1].expr = "i." + ident(PseudonymColumn)
	for _, c := range app {
		if c.name == t.Key {
			// The key identifies the subject at home: only readers with
			// full identity access see it.
			cols = append(cols, viewColumn{name: c.name, typ: c.typ, class: policy.Identity,
				expr: fmt.Sprintf("CASE WHEN %s THEN i.%s END",
					hasRole(storage.GroupRole(policy.Identity, policy.Full)), ident(c.name))})
		}
	}
	for _, c := range app {
		if c.name == t.Key {
			continue
		}
		alias := "c"
		if t.SideOf(c.name, p.Unclassified) == policy.Identity {
			alias = "i"
		}
		cols = append(cols, viewColumn{name: c.name, typ: c.typ, class: t.ClassOf(c.name),
			expr: alias + "." + ident(c.name)})
	}
	return cols
}

func hasRole(g string) string {
	return "(SELECT pg_catalog.pg_has_role(" + literal(g) + ", 'USAGE'))"
}

// selectList writes cols as a view's select list, with "AS name" where
// the expression does not end in the name.
func selectList(cols []viewColumn, expr func(viewColumn) string) string {
	parts := make([]string, len(cols))
	for i, c := range cols {
		e := expr(c)
		if e != ident(c.name) && !strings.HasSuffix(e, "."+ident(c.name)) {
			e += " AS " + ident(c.name)
		}
		parts[i] = e
	}
	return strings.Join(parts, ",\n       ")
}

// exportStep creates schema privata_export and its views.
func (d *deriver) exportStep() Step {
	var s script
	s.f("CREATE SCHEMA %s AUTHORIZATION %s;\n", ident(ExportSchema), ident(storage.Owner))
	readers := d.exportReaders()
	s.f("GRANT USAGE ON SCHEMA %s TO %s;\n", ident(ExportSchema), idents(readers))
	for _, t := range d.topo.Policy.Tables {
		if _, ok := d.cat.tables[t]; !ok {
			continue // not created yet (Input.AllowMissing)
		}
		name := qname(ExportSchema, t.Name)
		cols := d.exportColumns(t)
		var from string
		if t.Kind == policy.Child {
			subj := d.topo.Policy.SubjectOf(t)
			from = fmt.Sprintf("%s a\n  LEFT JOIN %s s ON s.%s = a.%s",
				qname(storage.AccessSchema, t.Name+"_clinical"),
				qname(storage.IdentitySchema, subj.Name), ident(PseudonymColumn), ident(PseudonymColumn))
		} else {
			from = fmt.Sprintf("%s i\n  LEFT JOIN %s c ON c.%s = i.%s",
				qname(storage.AccessSchema, t.Name+"_identity"),
				qname(storage.AccessSchema, t.Name+"_clinical"), ident(PseudonymColumn), ident(PseudonymColumn))
		}
		s.f("CREATE VIEW %s AS\nSELECT %s\n  FROM %s;\n", name,
			selectList(cols, func(c viewColumn) string { return c.expr }), from)
		s.f("ALTER VIEW %s OWNER TO %s;\n", name, ident(storage.Owner))
		s.f("GRANT SELECT ON %s TO %s;\n", name, idents(readers))
	}
	return s.step(fmt.Sprintf("Exports: schema %s holds one view per classified table, by pseudonym, "+
		"with the subject's home region. Each value shows as the reader may see it: other clusters "+
		"read as login roles privata_export_<identity>_<clinical>, whose memberships give the "+
		"access a transfer allows; local roles read their own access. A subject's key shows "+
		"only to readers with full identity access; a child table's reference to its subject "+
		"is replaced by the pseudonym. The views are %s's, so that readers need no access to "+
		"the base tables.", ExportSchema, storage.Owner))
}

// exportReaders are the roles that read the export views: the policy's
// roles (through the cross-region views) and the export roles.
func (d *deriver) exportReaders() []string {
	out := slices.Clone(policyRoles(d.topo.Policy))
	out = append(out, d.topo.ExportRoles(d.local)...)
	slices.Sort(out)
	return out
}

func policyRoles(p *policy.Policy) []string {
	out := make([]string, 0, len(p.Roles))
	for _, r := range p.Roles {
		out = append(out, r.PGRole)
	}
	slices.Sort(out)
	return out
}

// importStep creates the foreign server, user mappings and foreign tables
// of one cluster this one reads.
func (d *deriver) importStep(im *Import) Step {
	var s script
	from := im.From
	server := ident(from.Server)
	s.f("CREATE SERVER %s FOREIGN DATA WRAPPER postgres_fdw OPTIONS (", server)
	for i, o := range from.Options {
		sep := ",\n"
		if i == len(from.Options)-1 {
			sep = ");\n"
		}
		s.f("\n    %s %s", o[0], literal(o[1]))
		s.f("%s", strings.TrimSuffix(sep, "\n"))
	}
	s.f("\n")
	s.f("GRANT USAGE ON FOREIGN SERVER %s TO %s;\n", server, ident(storage.Owner))
	readers := sortedKeys(im.Mappings)
	for _, role := range readers {
		s.f("CREATE USER MAPPING FOR %s SERVER %s\n    OPTIONS (user %s, password ", ident(role), server,
			literal(im.Mappings[role]))
		s.secret(from.Password)
		s.f(");\n")
	}
	schema := ident(from.Schema())
	s.f("CREATE SCHEMA %s AUTHORIZATION %s;\n", schema, ident(storage.Owner))
	s.f("GRANT USAGE ON SCHEMA %s TO %s;\n", schema, idents(readers))
	for _, t := range d.topo.Policy.Tables {
		if _, ok := d.cat.tables[t]; !ok {
			continue // not created yet (Input.AllowMissing)
		}
		name := qname(from.Schema(), t.Name)
		cols := d.exportColumns(t)
		defs := make([]string, len(cols))
		for i, c := range cols {
			defs[i] = "    " + ident(c.name) + " " + c.typ
		}
		s.f("CREATE FOREIGN TABLE %s (\n%s\n) SERVER %s\n    OPTIONS (schema_name %s, table_name %s);\n",
			name, strings.Join(defs, ",\n"), server, literal(ExportSchema), literal(t.Name))
		s.f("ALTER FOREIGN TABLE %s OWNER TO %s;\n", name, ident(storage.Owner))
		s.f("GRANT SELECT ON %s TO %s;\n", name, idents(readers))
	}
	var names []string
	for _, tr := range im.Transfers {
		names = append(names, tr.Name)
	}
	return s.step(fmt.Sprintf("Region %s: cluster %s reads the exports of cluster %s over postgres_fdw, "+
		"as transfers %s allow. Server %s is named after the region, so that an error reaching it "+
		"names the region. Each policy role a transfer names reads as the export role that gives "+
		"it exactly the classes of data the transfer lets cross (its password comes from %s and "+
		"is not shown). Foreign tables in schema %s mirror the export views; only those roles "+
		"may read them.", from.Server, d.local.Target.Name, from.Target.Name,
		strings.Join(names, ", "), from.Server, "privata.yaml", from.Schema()))
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// globalStep creates schema privata_global and its views.
func (d *deriver) globalStep() Step {
	var s script
	s.f("CREATE SCHEMA %s AUTHORIZATION %s;\n", ident(GlobalSchema), ident(storage.Owner))
	roles := policyRoles(d.topo.Policy)
	s.f("GRANT USAGE ON SCHEMA %s TO %s;\n", ident(GlobalSchema), idents(roles))
	for _, t := range d.topo.Policy.Tables {
		if _, ok := d.cat.tables[t]; !ok {
			continue // not created yet (Input.AllowMissing)
		}
		name := qname(GlobalSchema, t.Name)
		cols := d.exportColumns(t)
		plain := func(c viewColumn) string { return ident(c.name) }
		branches := []string{fmt.Sprintf("SELECT %s\n  FROM %s", selectList(cols, plain),
			qname(ExportSchema, t.Name))}
		for _, other := range d.topo.Others(d.local) {
			for _, region := range other.Target.Regions {
				branches = append(branches, d.branch(t, cols, other, region))
			}
		}
		s.f("CREATE VIEW %s WITH (security_invoker = true) AS\n%s;\n", name,
			strings.Join(branches, "\nUNION ALL\n"))
		s.f("ALTER VIEW %s OWNER TO %s;\n", name, ident(storage.Owner))
		s.f("GRANT SELECT ON %s TO %s;\n", name, idents(roles))
	}
	return s.step(fmt.Sprintf("Cross-region views: schema %s holds one view per classified table, with "+
		"this cluster's rows and every other region's. Another region's rows are read only when "+
		"a transfer lets the reader's role and purpose read that region's data; otherwise the "+
		"query fails with 42501 naming the region, never returning partial results. Identity "+
		"columns of another region's subjects are NULL unless a transfer lets identity data "+
		"cross for that purpose. A region that cannot be reached fails the query with an "+
		"error naming its server, which is the region.", GlobalSchema))
}

// branch is the part of table t's cross-region view that reads the
// subjects of region from other.
func (d *deriver) branch(t *policy.Table, cols []viewColumn, other *Peer, region string) string {
	view := GlobalSchema + "." + t.Name
	gate := fmt.Sprintf("privata.transfer_gate(%s, %s)", literal(region), literal(view))
	if !d.reads(other) {
		// Nothing may cross from there: the gate raises for every reader.
		nulls := selectList(cols, func(c viewColumn) string { return "NULL::" + c.typ })
		return fmt.Sprintf("SELECT %s\n WHERE %s", nulls, gate)
	}
	expr := func(c viewColumn) string {
		if c.class == policy.Identity {
			return fmt.Sprintf("CASE WHEN privata.transfer_permits(%s, 'identity') THEN f.%s END",
				literal(region), ident(c.name))
		}
		return "f." + ident(c.name)
	}
	where := gate
	if len(other.Target.Regions) > 1 {
		where = fmt.Sprintf("f.%s = %s AND %s", ident(RegionColumn), literal(region), gate)
	}
	return fmt.Sprintf("SELECT %s\n  FROM %s f\n WHERE %s", selectList(cols, expr),
		qname(other.Schema(), t.Name), where)
}

// reads reports whether this cluster reads peer other.
func (d *deriver) reads(other *Peer) bool {
	return slices.ContainsFunc(d.imports, func(im *Import) bool { return im.From == other })
}

// transfersStep records the transfers into this cluster's regions.
func (d *deriver) transfersStep() Step {
	var s script
	s.f("DELETE FROM privata.transfers;\n")
	for _, tr := range d.topo.Policy.Transfers {
		if !d.local.Serves(tr.To) {
			continue
		}
		var roles []string
		for _, r := range tr.Roles {
			roles = append(roles, d.topo.Policy.Role(r).PGRole)
		}
		classes := make([]string, len(tr.Classes))
		for i, c := range tr.Classes {
			classes[i] = string(c)
		}
		s.f("INSERT INTO privata.transfers (name, from_region, to_region, pg_roles, purposes, "+
			"classes, basis)\nVALUES (%s, %s, %s, %s, %s, %s, %s);\n", literal(tr.Name),
			literal(tr.From), literal(tr.To), textArray(roles), textArray(tr.Purposes),
			textArray(classes), literal(string(tr.Basis)))
	}
	return s.step("The policy's transfers into this cluster's regions, which the cross-region " +
		"views check with privata.transfer_permits() and privata.transfer_gate().")
}
