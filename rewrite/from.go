package rewrite

import (
	pg "github.com/pganalyze/pg_query_go/v5"
)

// This file binds FROM items and records relations and columns.

func (w *walker) fromList(items []*pg.Node, sc *scope) {
	for _, n := range items {
		w.fromItem(n, sc)
	}
}

// fromItem binds one FROM item at level sc and walks what it contains.
func (w *walker) fromItem(n *pg.Node, sc *scope) {
	if n == nil {
		return
	}
	switch f := n.Node.(type) {
	case *pg.Node_RangeVar:
		rv := f.RangeVar
		if rv.Schemaname == "" && sc.isCTE(rv.Relname) {
			sc.add(item{name: aliasOr(rv.Alias, rv.Relname), rel: -1})
			return
		}
		idx := w.relation(rv, Read)
		sc.add(w.itemFor(idx, rv))
	case *pg.Node_JoinExpr:
		j := f.JoinExpr
		first := len(sc.items)
		w.fromItem(j.Larg, sc)
		w.fromItem(j.Rarg, sc)
		for _, u := range j.UsingClause {
			w.columnName(stringValue(u), sc, Read)
		}
		w.expr(j.Quals, sc)
		if j.Alias != nil {
			// The alias hides the names inside the join.
			joined := item{name: j.Alias.Aliasname, rel: -1}
			for _, it := range sc.items[first:] {
				if it.rel >= 0 {
					joined.members = append(joined.members, it.rel)
				}
				joined.members = append(joined.members, it.members...)
			}
			sc.setItems(append(sc.items[:first], joined))
		}
	case *pg.Node_RangeSubselect:
		r := f.RangeSubselect
		if r.Lateral {
			w.query(r.Subquery, sc)
		} else {
			w.query(r.Subquery, sc.withoutItems())
		}
		sc.add(item{name: aliasOr(r.Alias, ""), rel: -1})
	case *pg.Node_RangeFunction:
		w.rangeFunction(f.RangeFunction, sc)
	case *pg.Node_RangeTableSample:
		w.fromItem(f.RangeTableSample.Relation, sc)
		w.exprs(f.RangeTableSample.Args, sc)
		w.expr(f.RangeTableSample.Repeatable, sc)
	case *pg.Node_RangeTableFunc:
		t := f.RangeTableFunc
		w.expr(t.Docexpr, sc)
		w.expr(t.Rowexpr, sc)
		w.exprs(t.Columns, sc)
		sc.add(item{name: aliasOr(t.Alias, ""), rel: -1})
	default:
		w.node(n, sc)
	}
}

// rangeFunction binds a function in FROM; it is a relation of its own.
func (w *walker) rangeFunction(r *pg.RangeFunction, sc *scope) {
	it := item{rel: -1}
	for _, f := range r.Functions {
		// Each entry is a list: the call, then its column definitions.
		var call *pg.Node
		if l := f.GetList(); l != nil && len(l.Items) > 0 {
			call = l.Items[0]
		} else {
			call = f
		}
		fc := call.GetFuncCall()
		if fc == nil {
			w.expr(call, sc)
			continue
		}
		schema, name := funcName(fc)
		idx := w.addRelation(Relation{Schema: schema, Name: name, Access: Read,
			Alias: aliasOr(r.Alias, ""), Function: true})
		if it.rel < 0 && it.members == nil {
			it.rel, it.name = idx, name
		} else {
			it.members = append(it.members, idx)
		}
		w.funcCall(fc, sc)
	}
	if r.Alias != nil {
		it.name = r.Alias.Aliasname
	}
	if len(it.members) > 0 {
		it.members = append(it.members, it.rel)
		it.rel = -1
	}
	sc.add(it)
}

// relation records a reference to a table or view and returns its index.
func (w *walker) relation(rv *pg.RangeVar, access Access) int {
	if rv == nil {
		return -1
	}
	return w.addRelation(Relation{Schema: rv.Schemaname, Name: rv.Relname, Access: access,
		Alias: aliasOr(rv.Alias, "")})
}

func (w *walker) addRelation(r Relation) int {
	w.st.Relations = append(w.st.Relations, r)
	return len(w.st.Relations) - 1
}

func (w *walker) itemFor(idx int, rv *pg.RangeVar) item {
	if rv == nil {
		return item{rel: -1}
	}
	return item{name: aliasOr(rv.Alias, rv.Relname), schema: rv.Schemaname, rel: idx}
}

func (w *walker) addColumn(c Column) {
	if c.Relation < 0 && len(c.Candidates) == 0 {
		return
	}
	if c.Relation >= 0 && c.Access&Read != 0 {
		w.st.Relations[c.Relation].Access |= Read
	}
	w.st.Columns = append(w.st.Columns, c)
}
