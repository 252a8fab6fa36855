package rewrite

import (
	"strings"
	"sync/atomic"

	pg "github.com/pganalyze/pg_query_go/v5"

	"github.com/privata/privata/policy"
	"github.com/privata/privata/storage"
)

// Rewriter writes the statements that Decide answers with Rewrite in the
// form Privata runs them on split tables, from their parse trees:
//
//   - INSERT ... ON CONFLICT into a split table becomes inserts into its
//     upsert views (upsert.go, storage/upsert.go);
//   - COPY t [(columns)] TO ... becomes COPY (SELECT columns FROM t) TO ...,
//     since PostgreSQL copies only tables out;
//   - TRUNCATE t truncates t's base tables;
//   - with RewriteWithCatalog, a statement that reads an emulated catalog
//     relation reads it in schema privata_catalog (catalog.go).
//
// EXPLAIN and PREPARE of such statements are rewritten around them. The
// other statements of a text are kept as they are, byte for byte; the
// rewritten ones are deparsed by pg_query. A Rewriter keeps the results
// of recently rewritten texts; it is safe for concurrent use.
type Rewriter struct {
	policy *policy.Policy
	cache  *lru[string]

	hits, misses atomic.Uint64
}

// NewRewriter returns a Rewriter for the tables policy p classifies, which
// keeps the rewrites of up to cacheEntries texts.
func NewRewriter(p *policy.Policy, cacheEntries int) *Rewriter {
	return &Rewriter{policy: p, cache: newLRU[string](cacheEntries, DefaultCacheBytes)}
}

// Rewrite returns text with each of its statements that needs a rewrite
// (Decide answered Rewrite) rewritten. an is text's analysis, and
// searchPath resolves unqualified names as Classify does. Its error is an
// *Error: a statement of a shape Privata cannot rewrite is refused (0A000).
func (r *Rewriter) Rewrite(text string, an *Analysis, searchPath []string) (string, error) {
	return r.rewriteText(text, an, searchPath, false)
}

// RewriteWithCatalog is Rewrite on a database whose catalogs privata_catalog
// emulates (catalog.go): the statements that read an emulated catalog
// relation are rewritten to read its emulation too.
func (r *Rewriter) RewriteWithCatalog(text string, an *Analysis, searchPath []string) (string, error) {
	return r.rewriteText(text, an, searchPath, true)
}

func (r *Rewriter) rewriteText(text string, an *Analysis, searchPath []string,
	catalog bool) (string, error) {
	if len(searchPath) == 0 {
		searchPath = []string{"public"}
	}
	key := text + "\x00" + strings.Join(searchPath, "\x00")
	if catalog {
		key += "\x00\x01"
	}
	if len(text) <= maxCachedText {
		if out, ok := r.cache.get(key); ok {
			r.hits.Add(1)
			return out, nil
		}
	}
	r.misses.Add(1)
	out, err := r.rewrite(text, an, searchPath, catalog)
	if err != nil {
		return "", err
	}
	if len(text) <= maxCachedText {
		r.cache.put(key, out)
	}
	return out, nil
}

func (r *Rewriter) rewrite(text string, an *Analysis, searchPath []string,
	catalog bool) (string, *Error) {
	tree, perr := parse(text)
	if perr != nil {
		return "", parserError(perr)
	}
	if len(tree.Stmts) != len(an.Statements) {
		return "", &Error{SQLState: CodeInternalError,
			Message: "statement analysis does not match the text"}
	}
	var b strings.Builder
	done := 0
	for i, st := range an.Statements {
		split := r.needs(st, searchPath)
		emulate := catalog && readsCatalog(st, searchPath)
		if !split && !emulate {
			continue
		}
		node := tree.Stmts[i].Stmt
		if emulate {
			emulateCatalog(node, searchPath)
		}
		if split {
			rw := &rewriting{policy: r.policy, path: searchPath}
			var err *Error
			if node, err = rw.statement(node); err != nil {
				return "", err
			}
		}
		out, derr := deparse(&pg.ParseResult{Version: tree.Version,
			Stmts: []*pg.RawStmt{{Stmt: node}}})
		if derr != nil {
			return "", &Error{SQLState: CodeFeatureNotSupported,
				Message: "Privata could not write the statement for split storage",
				Hint:    "Write the statement more simply, or send its parts on their own."}
		}
		start := st.Location + leadingTrivia(text[st.Location:st.Location+st.Length])
		b.WriteString(text[done:start])
		b.WriteString(out)
		done = st.Location + st.Length
	}
	b.WriteString(text[done:])
	return b.String(), nil
}

// needs reports whether a statement has an operation to rewrite on a
// classified table.
func (r *Rewriter) needs(st *Statement, searchPath []string) bool {
	for _, op := range st.Operations {
		if onClassified[op.What].action != Rewrite || op.Relation < 0 {
			continue
		}
		if len(resolveTables(st.Relations[op.Relation], r.policy, searchPath)) > 0 {
			return true
		}
	}
	return false
}

// RewriterStats counts how Rewrite found its answers.
type RewriterStats struct{ Hits, Misses uint64 }

// Stats returns the cache counters.
func (r *Rewriter) Stats() RewriterStats {
	return RewriterStats{Hits: r.hits.Load(), Misses: r.misses.Load()}
}

// rewriting is the rewrite of one statement.
type rewriting struct {
	policy *policy.Policy
	path   []string
}

// table returns the classified table a relation names, or nil.
func (rw *rewriting) table(rv *pg.RangeVar) *policy.Table {
	if rv == nil {
		return nil
	}
	ts := resolveTables(Relation{Schema: rv.Schemaname, Name: rv.Relname}, rw.policy, rw.path)
	if len(ts) == 0 {
		return nil
	}
	return ts[0]
}

// statement rewrites a statement node, or says why it cannot.
func (rw *rewriting) statement(n *pg.Node) (*pg.Node, *Error) {
	switch s := n.Node.(type) {
	case *pg.Node_InsertStmt:
		if t := rw.table(s.InsertStmt.Relation); t != nil && s.InsertStmt.OnConflictClause != nil {
			return rw.upsert(s.InsertStmt, t)
		}
	case *pg.Node_CopyStmt:
		if t := rw.table(s.CopyStmt.Relation); t != nil && !s.CopyStmt.IsFrom {
			return rw.copyTo(s.CopyStmt)
		}
	case *pg.Node_TruncateStmt:
		return rw.truncate(s.TruncateStmt), nil
	case *pg.Node_ExplainStmt:
		q, err := rw.statement(s.ExplainStmt.Query)
		if err != nil {
			return nil, err
		}
		s.ExplainStmt.Query = q
		return n, nil
	case *pg.Node_PrepareStmt:
		q, err := rw.statement(s.PrepareStmt.Query)
		if err != nil {
			return nil, err
		}
		s.PrepareStmt.Query = q
		return n, nil
	}
	return nil, &Error{SQLState: CodeFeatureNotSupported,
		Message: "an upsert, COPY or TRUNCATE of a table Privata splits is supported only as a " +
			"statement of its own, not inside a WITH query or another statement",
		Hint: "Send it as a statement of its own."}
}

// copyTo rewrites COPY t [(columns)] TO ... as COPY (SELECT columns FROM t)
// TO ..., with the same options: the view gives the rows and columns the
// table would, values as the reader may see them.
func (rw *rewriting) copyTo(c *pg.CopyStmt) (*pg.Node, *Error) {
	targets := []*pg.Node{pg.MakeResTargetNodeWithVal(pg.MakeColumnRefNode(
		[]*pg.Node{pg.MakeAStarNode()}, -1), -1)}
	if len(c.Attlist) > 0 {
		targets = targets[:0]
		for _, a := range c.Attlist {
			targets = append(targets, pg.MakeResTargetNodeWithVal(pg.MakeColumnRefNode(
				[]*pg.Node{pg.MakeStrNode(stringValue(a))}, -1), -1))
		}
	}
	sel := &pg.SelectStmt{
		TargetList:  targets,
		FromClause:  []*pg.Node{{Node: &pg.Node_RangeVar{RangeVar: c.Relation}}},
		LimitOption: pg.LimitOption_LIMIT_OPTION_DEFAULT,
		Op:          pg.SetOperation_SETOP_NONE,
	}
	out := &pg.CopyStmt{
		Query:     &pg.Node{Node: &pg.Node_SelectStmt{SelectStmt: sel}},
		IsFrom:    false,
		IsProgram: c.IsProgram,
		Filename:  c.Filename,
		Options:   c.Options,
	}
	return &pg.Node{Node: &pg.Node_CopyStmt{CopyStmt: out}}, nil
}

// truncate replaces each split table that TRUNCATE names by its base
// tables: the identity table and the clinical one, or a child's clinical
// table. CASCADE, RESTART IDENTITY and ONLY keep their meaning: the
// children's base tables refer to the subject's, and the serial and
// identity sequences belong to the base tables' columns. Whoever may
// truncate the view may truncate its base tables (storage grants it).
func (rw *rewriting) truncate(s *pg.TruncateStmt) *pg.Node {
	var rels []*pg.Node
	for _, n := range s.Relations {
		rv := n.GetRangeVar()
		t := rw.table(rv)
		if t == nil {
			rels = append(rels, n)
			continue
		}
		schemas := []string{storage.ClinicalSchema}
		if t.Kind == policy.Subject {
			schemas = []string{storage.IdentitySchema, storage.ClinicalSchema}
		}
		for _, schema := range schemas {
			rels = append(rels, &pg.Node{Node: &pg.Node_RangeVar{RangeVar: &pg.RangeVar{
				Schemaname: schema, Relname: t.Name, Inh: rv.Inh, Relpersistence: "p",
				Location: rv.Location}}})
		}
	}
	s.Relations = rels
	return &pg.Node{Node: &pg.Node_TruncateStmt{TruncateStmt: s}}
}

// leadingTrivia returns the length of the whitespace and comments that
// start a statement's span, which the rewritten statement keeps (a
// sqlcommenter comment among them).
func leadingTrivia(s string) int {
	i := 0
	for i < len(s) {
		switch {
		case s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r' || s[i] == '\f':
			i++
		case strings.HasPrefix(s[i:], "--"):
			end := strings.IndexByte(s[i:], '\n')
			if end < 0 {
				return len(s)
			}
			i += end + 1
		case strings.HasPrefix(s[i:], "/*"):
			depth, j := 0, i
			for j < len(s) {
				if strings.HasPrefix(s[j:], "/*") {
					depth++
					j += 2
				} else if strings.HasPrefix(s[j:], "*/") {
					depth--
					j += 2
					if depth == 0 {
						break
					}
				} else {
					j++
				}
			}
			if depth != 0 {
				return i
			}
			i = j
		default:
			return i
		}
	}
	return i
}
