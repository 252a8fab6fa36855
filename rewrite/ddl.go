package rewrite

import (
	pg "github.com/pganalyze/pg_query_go/v5"
)

// This file handles the DDL statements that name relations or functions
// in ways the generic walk does not see.

// defineStmt checks CREATE AGGREGATE (and the other definitions with
// options) for a support function that is set_config: an aggregate whose
// state function is set_config, with 'role' as its initial state, changes
// the role of whoever runs it.
func (w *walker) defineStmt(s *pg.DefineStmt) {
	for _, d := range s.Definition {
		de := d.GetDefElem()
		if de == nil {
			continue
		}
		if tn := de.Arg.GetTypeName(); tn != nil && len(tn.Names) > 0 &&
			stringValue(tn.Names[len(tn.Names)-1]) == "set_config" {
			w.roleChange("a definition whose " + de.Defname + " is set_config()")
		}
	}
	w.ddlNode(s)
}

// dropStmt records the relations DROP TABLE/VIEW/INDEX/... names.
func (w *walker) dropStmt(s *pg.DropStmt) {
	if !isRelationType(s.RemoveType) {
		w.ddlNode(s)
		return
	}
	for _, o := range s.Objects {
		w.namedRelation(o, 0)
	}
}

// namedObject records the relation a COMMENT or SECURITY LABEL names.
func (w *walker) namedObject(t pg.ObjectType, obj *pg.Node) {
	switch {
	case isRelationType(t):
		w.namedRelation(obj, 0)
	case t == pg.ObjectType_OBJECT_COLUMN:
		w.namedRelation(obj, 1)
	}
}

// namedRelation records a relation named by a list of strings, dropping
// the last skip names (a column's).
func (w *walker) namedRelation(n *pg.Node, skip int) {
	l := n.GetList()
	if l == nil || len(l.Items) <= skip {
		return
	}
	names := make([]string, 0, len(l.Items))
	for _, it := range l.Items[:len(l.Items)-skip] {
		names = append(names, stringValue(it))
	}
	r := Relation{Name: names[len(names)-1], Access: Write}
	if len(names) > 1 {
		r.Schema = names[len(names)-2]
	}
	w.addRelation(r)
}

func isRelationType(t pg.ObjectType) bool {
	switch t {
	case pg.ObjectType_OBJECT_TABLE, pg.ObjectType_OBJECT_VIEW, pg.ObjectType_OBJECT_MATVIEW,
		pg.ObjectType_OBJECT_FOREIGN_TABLE, pg.ObjectType_OBJECT_INDEX,
		pg.ObjectType_OBJECT_SEQUENCE:
		return true
	}
	return false
}
