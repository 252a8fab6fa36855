package rewrite

// A scope is one query level's FROM list, as column references see it: the
// names it binds (aliases or table names) and what each stands for.
//
// Lookups must stay cheap on hostile texts (SELECT a, a, ... FROM t1, t2,
// ... with many thousands of each): names are indexed once a level holds a
// few, and the list of relations visible from a level is computed once and
// shared by every column that needs it.
type scope struct {
	parent *scope
	items  []item
	// ctes are the WITH names visible at this level.
	ctes []string
	// outputs are the target list's column aliases, which ORDER BY and
	// GROUP BY may name.
	outputs []string

	// Indexes, built on first use and dropped when items change.
	byName  map[string]int // name -> index of the last item with that name
	cteSet  map[string]bool
	outSet  map[string]bool
	visRels []int
	visOne  bool
	visOK   bool
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

// indexAbove is the number of entries past which a level indexes them.
const indexAbove = 8

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

// add binds an item at this level.
func (s *scope) add(it item) {
	s.items = append(s.items, it)
	s.changed()
}

// setItems replaces this level's items.
func (s *scope) setItems(items []item) {
	s.items = items
	s.changed()
}

// addOutput records an output column alias of this level.
func (s *scope) addOutput(name string) {
	s.outputs = append(s.outputs, name)
	s.outSet = nil
}

// addCTE makes a WITH name visible at this level.
func (s *scope) addCTE(name string) {
	s.ctes = append(s.ctes, name)
	s.cteSet = nil
}

func (s *scope) changed() {
	s.byName = nil
	s.visOK = false
}

// isCTE reports whether an unqualified name refers to a visible WITH query.
func (s *scope) isCTE(name string) bool {
	for ; s != nil; s = s.parent {
		if len(s.ctes) > indexAbove {
			if s.cteSet == nil {
				s.cteSet = make(map[string]bool, len(s.ctes))
				for _, c := range s.ctes {
					s.cteSet[c] = true
				}
			}
			if s.cteSet[name] {
				return true
			}
			continue
		}
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
		if it, ok := s.find(schema, name); ok {
			return it, true
		}
	}
	return item{}, false
}

// find looks a name up at this level only. An unqualified FROM item may
// be the schema-qualified one a reference names.
func (s *scope) find(schema, name string) (item, bool) {
	matches := func(it item) bool {
		return it.name == name && (schema == "" || it.schema == "" || schema == it.schema)
	}
	if len(s.items) <= indexAbove {
		for i := len(s.items) - 1; i >= 0; i-- {
			if matches(s.items[i]) {
				return s.items[i], true
			}
		}
		return item{}, false
	}
	if s.byName == nil {
		s.byName = make(map[string]int, len(s.items))
		for i, it := range s.items {
			s.byName[it.name] = i
		}
	}
	i, ok := s.byName[name]
	if ok && matches(s.items[i]) {
		return s.items[i], true
	}
	if ok && schema != "" {
		// The last item of that name is in another schema; look further.
		for i := len(s.items) - 1; i >= 0; i-- {
			if matches(s.items[i]) {
				return s.items[i], true
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
	if s.outSet == nil {
		s.outSet = make(map[string]bool, len(s.outputs))
		for _, o := range s.outputs {
			s.outSet[o] = true
		}
	}
	return s.outSet[name]
}

// visible returns the relations an unqualified column may belong to,
// innermost level first, each once. single is set when the column can only
// belong to rels[0]: every visible item stands for that one relation. The
// slice is shared: callers must not modify it.
func (s *scope) visible() (rels []int, single bool) {
	if s == nil {
		return nil, false
	}
	if !s.visOK {
		outer, _ := s.parent.visible()
		seen := make(map[int]bool, len(outer)+len(s.items))
		own := make([]int, 0, len(outer)+len(s.items))
		add := func(r int) {
			if r >= 0 && !seen[r] {
				seen[r] = true
				own = append(own, r)
			}
		}
		for _, it := range s.items {
			add(it.rel)
			for _, m := range it.members {
				add(m)
			}
		}
		for _, r := range outer {
			add(r)
		}
		s.visRels, s.visOne, s.visOK = own, len(own) == 1 && s.derivedCount() == 0, true
	}
	return s.visRels, s.visOne
}

// derivedCount counts the derived items visible from s.
func (s *scope) derivedCount() int {
	n := 0
	for ; s != nil; s = s.parent {
		for _, it := range s.items {
			if it.rel < 0 && len(it.members) == 0 {
				n++
			}
		}
	}
	return n
}
