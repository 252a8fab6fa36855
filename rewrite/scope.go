package rewrite

// A scope is one query level's FROM list, as column references see it: the
// names it binds (aliases or table names) and what each stands for.
type scope struct {
	parent *scope
	items  []item
	// ctes are the WITH names visible at this level.
	ctes []string
	// outputs are the target list's column aliases, which ORDER BY and
	// GROUP BY may name.
	outputs []string
}

// item is a name a FROM list binds.
type item struct {
	name   string
	schema string // for schema.table.column references
	// rel is the index of the relation in Statement.Relations, or -1 for a
	// derived table (subquery, CTE, VALUES, join alias).
	rel int
	// members are the relations a join alias covers.
	members []int
}

// child returns a new query level below s.
func (s *scope) child() *scope { return &scope{parent: s} }

// withoutItems returns a level that sees the WITH names of s but not its
// FROM items: what a non-LATERAL subquery in FROM sees.
func (s *scope) withoutItems() *scope {
	if s == nil {
		return nil
	}
	return &scope{parent: s.parent, ctes: s.ctes}
}

// isCTE reports whether an unqualified name refers to a visible WITH query.
func (s *scope) isCTE(name string) bool {
	for ; s != nil; s = s.parent {
		for _, c := range s.ctes {
			if c == name {
				return true
			}
		}
	}
	return false
}

// lookup finds the innermost item bound to a name (optionally schema
// qualified).
func (s *scope) lookup(schema, name string) (item, bool) {
	for ; s != nil; s = s.parent {
		for i := len(s.items) - 1; i >= 0; i-- {
			it := s.items[i]
			// An unqualified FROM item may be the schema-qualified one.
			if it.name == name && (schema == "" || it.schema == "" || schema == it.schema) {
				return it, true
			}
		}
	}
	return item{}, false
}

// isOutput reports whether a name is one of this level's output aliases.
func (s *scope) isOutput(name string) bool {
	if s == nil {
		return false
	}
	for _, o := range s.outputs {
		if o == name {
			return true
		}
	}
	return false
}

// visible returns the relations an unqualified column may belong to,
// innermost level first, each once. single is set when the column can only
// belong to rels[0]: every visible item stands for that one relation.
func (s *scope) visible() (rels []int, single bool) {
	derived := 0
	add := func(r int) {
		for _, have := range rels {
			if have == r {
				return
			}
		}
		rels = append(rels, r)
	}
	for ; s != nil; s = s.parent {
		for _, it := range s.items {
			switch {
			case it.rel >= 0:
				add(it.rel)
			case len(it.members) == 0:
				derived++
			}
			for _, m := range it.members {
				add(m)
			}
		}
	}
	return rels, derived == 0 && len(rels) == 1
}
