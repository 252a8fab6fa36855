package rewrite

import (
	"encoding/json"
	"slices"
	"strings"

	pg "github.com/pganalyze/pg_query_go/v5"
)

// maxNesting bounds bodies and SQL constants analysed inside each other
// (a DO block that runs a DO block that ...).
const maxNesting = 8

// sqlTextArgs are the built-in and contrib functions that run SQL text
// given as an argument, and which arguments hold it.
var sqlTextArgs = map[string][]int{
	"query_to_xml":               {0},
	"query_to_xmlschema":         {0},
	"query_to_xml_and_xmlschema": {0},
	"ts_stat":                    {0},
	"ts_rewrite":                 {1}, // the two-argument form only
	"crosstab":                   {0, 1},
	"crosstab2":                  {0},
	"crosstab3":                  {0},
	"crosstab4":                  {0},
}

// Functions that read whole tables by name: tableReaders the one their
// first argument names, bulkReaders every table of a schema or database.
var (
	tableReaders = map[string]bool{"table_to_xml": true, "table_to_xml_and_xmlschema": true}
	bulkReaders  = map[string]bool{
		"schema_to_xml": true, "schema_to_xml_and_xmlschema": true,
		"database_to_xml": true, "database_to_xml_and_xmlschema": true,
	}
)

// tableReader records the table table_to_xml() reads, or marks the
// statement opaque when the name is not a constant.
func (w *walker) tableReader(fc *pg.FuncCall, name string) {
	if len(fc.Args) > 0 {
		if v := w.value(fc.Args[0]); v.known {
			if schema, rel, ok := parseRelationName(v.text); ok {
				idx := w.addRelation(Relation{Schema: schema, Name: rel, Access: Read})
				w.addColumn(Column{Relation: idx, Star: true, Access: Read})
				return
			}
		}
	}
	w.opaque(name + "() of a table name that is not a constant")
}

func (w *walker) opaque(reason string) {
	if w.st.Opaque == "" {
		w.st.Opaque = reason
	}
}

// parseRelationName reads a regclass constant: name, schema.name or
// db.schema.name, each part an identifier, quoted or not.
func parseRelationName(s string) (schema, name string, ok bool) {
	l := lex(s)
	var parts []string
	for i, t := range l.toks {
		text := l.tokText(t)
		switch {
		case i%2 == 1 && text == ".":
		case i%2 == 0 && t.kind == tIdent:
			parts = append(parts, strings.ToLower(text))
		case i%2 == 0 && t.kind == tQIdent && text[0] == '"':
			parts = append(parts, strings.ReplaceAll(text[1:len(text)-1], `""`, `"`))
		default:
			return "", "", false
		}
	}
	if len(parts) == 0 || len(parts) > 3 || len(l.toks)%2 == 0 || l.broken {
		return "", "", false
	}
	name = parts[len(parts)-1]
	if len(parts) > 1 {
		schema = parts[len(parts)-2]
	}
	return schema, name, true
}

// doStmt analyses a DO block: its body runs now, so what it reads and
// writes is the statement's.
func (w *walker) doStmt(s *pg.DoStmt) {
	lang, body := "plpgsql", ""
	for _, a := range s.Args {
		de := a.GetDefElem()
		switch {
		case de == nil:
		case de.Defname == "language":
			lang = lowerASCII(w.constOrName(de.Arg))
		case de.Defname == "as":
			w.an.literal = true
			body = stringValue(de.Arg)
		}
	}
	if lang != "plpgsql" {
		w.roleChange("a DO block in a language other than PL/pgSQL, which Privata cannot analyse")
		return
	}
	saved := w.via
	if w.via == "" {
		w.via = "the DO block runs "
	}
	w.plpgsql(body)
	w.via = saved
}

// createFunction analyses CREATE FUNCTION and CREATE PROCEDURE. The body
// runs later, so only what it could do to the session counts: its role
// changes and unsafe settings become the statement's.
func (w *walker) createFunction(s *pg.CreateFunctionStmt) {
	lang := ""
	var body []string
	for _, o := range s.Options {
		de := o.GetDefElem()
		if de == nil {
			continue
		}
		switch de.Defname {
		case "language":
			lang = lowerASCII(w.constOrName(de.Arg))
		case "as":
			w.an.literal = true
			if l := de.Arg.GetList(); l != nil {
				for _, it := range l.Items {
					body = append(body, stringValue(it))
				}
			}
		case "set":
			w.functionSet(de.Arg.GetVariableSetStmt())
		case "security":
			w.st.Definer = w.st.Definer || definer(de)
		}
	}
	if lang == "" {
		lang = "sql"
	}

	inner := &Statement{}
	bw := &walker{st: inner, text: w.text, an: w.an, opt: w.opt, via: w.via, nesting: w.nesting}
	if bw.via == "" {
		bw.via = "the function body runs "
	}
	bw.ddlNode(&pg.List{Items: s.Parameters}) // defaults run in the caller's session
	switch {
	case s.SqlBody != nil:
		bw.expr(s.SqlBody, nil)
	case lang == "sql":
		for _, b := range body {
			if err := bw.nested(b); err != nil {
				err.Position = 0
				err.Detail = "The error is in the body of a function."
				bw.fail(err)
			}
		}
	case lang == "plpgsql" && len(body) > 0:
		bw.plpgsql(body[0])
	default:
		bw.roleChange("code in a language other than SQL or PL/pgSQL, which Privata cannot analyse")
	}
	if w.err == nil {
		w.err = bw.err
	}
	w.roleChange(strings.TrimPrefix(inner.RoleChange, w.via))
	w.unsafe(strings.TrimPrefix(inner.Unsafe, w.via))
	// What the body would create or make SECURITY DEFINER when it runs is
	// judged now: a call does not show it.
	w.st.Definer = w.st.Definer || inner.Definer
	w.st.Temporary = append(w.st.Temporary, inner.Temporary...)
	w.st.Renamed = append(w.st.Renamed, inner.Renamed...)
	// What the body reads is read when the function is called, by a
	// statement that does not show it, and its DDL runs then: both are the
	// definition's.
	for i, r := range inner.Relations {
		ddl := slices.ContainsFunc(inner.Operations, func(op Operation) bool {
			return op.Relation == i && op.What == OpBodyDDL
		})
		if r.Function || !ddl && r.Access&Read == 0 {
			continue
		}
		w.st.Relations = append(w.st.Relations, r)
		what := OpFunction
		if ddl {
			what = OpBodyDDL
		}
		w.operation(len(w.st.Relations)-1, what)
	}
}

// alterFunction checks the SET clauses of ALTER FUNCTION/PROCEDURE.
func (w *walker) alterFunction(s *pg.AlterFunctionStmt) {
	for _, a := range s.Actions {
		de := a.GetDefElem()
		switch {
		case de == nil:
		case de.Defname == "set":
			w.functionSet(de.Arg.GetVariableSetStmt())
		case de.Defname == "security":
			w.st.Definer = w.st.Definer || definer(de)
		}
	}
}

// definer reports whether a function's "security" option says SECURITY
// DEFINER.
func definer(de *pg.DefElem) bool {
	if b := de.Arg.GetBoolean(); b != nil {
		return b.Boolval
	}
	if i := de.Arg.GetInteger(); i != nil {
		return i.Ival != 0
	}
	return true // an option Privata cannot read: as if it said DEFINER
}

// constOrName returns a String node's value (LANGUAGE plpgsql) or a
// constant's.
func (w *walker) constOrName(n *pg.Node) string {
	if s := stringValue(n); s != "" {
		return s
	}
	return w.value(n).text
}

// nested parses SQL text found in a constant and walks its statements as
// part of w's statement. A text too long, badly encoded or too deep is an
// error of the whole statement (w.fail); a text pg_query cannot parse is
// returned for the caller to judge.
func (w *walker) nested(text string) *Error {
	if w.nesting >= maxNesting {
		return &Error{SQLState: CodeStatementTooComplex,
			Message: "function bodies and SQL constants nested too deeply"}
	}
	if _, err := guard(text, w.opt); err != nil {
		w.fail(err)
		return nil
	}
	tree, err := parse(text)
	if err != nil {
		return parserError(err)
	}
	w.nesting++
	savedText := w.text
	for _, raw := range tree.Stmts {
		loc, length := span(raw, len(text))
		w.text = text[loc : loc+length]
		w.statement(raw.Stmt, nil)
	}
	w.text = savedText
	w.nesting--
	return nil
}

// plpgsql analyses body, the PL/pgSQL code of the DO or CREATE FUNCTION
// statement in w.text, with pg_query's PL/pgSQL parser: every statement and
// expression it holds is parsed and walked, and dynamic SQL (EXECUTE)
// counts as a role change, since it can run anything.
func (w *walker) plpgsql(body string) {
	if w.nesting >= maxNesting {
		w.roleChange("code nested too deeply for Privata to analyse")
		return
	}
	if l, err := guard(body, w.opt); err != nil {
		w.fail(err)
		return
	} else if plDepth(l) > w.opt.maxDepth {
		w.fail(tooDeep())
		return
	}
	out, err := parsePlpgsql(w.text)
	if err != nil {
		// pg_query's PL/pgSQL parser has no catalog and refuses some valid
		// code (a cursor declared with CURSOR FOR, for one); PostgreSQL
		// rejects what is really wrong. Read the code token by token.
		w.scanUnparsed(body)
		return
	}
	var funcs any
	if err := json.Unmarshal([]byte(out), &funcs); err != nil {
		w.fail(tooDeep())
		return
	}
	w.nesting++
	w.plWalk(funcs)
	w.nesting--
}

// plWalk searches pg_query's JSON form of PL/pgSQL functions.
func (w *walker) plWalk(v any) {
	switch x := v.(type) {
	case []any:
		for _, e := range x {
			w.plWalk(e)
		}
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			switch k {
			case "PLpgSQL_stmt_dynexecute", "PLpgSQL_stmt_dynfors", "dynquery":
				w.roleChange("dynamic SQL (EXECUTE), which Privata cannot analyse")
			case "PLpgSQL_expr":
				if e, ok := x[k].(map[string]any); ok {
					w.plExpr(e)
				}
				continue
			}
			w.plWalk(x[k])
		}
	}
}

// plExpr analyses one PL/pgSQL expression or SQL statement.
func (w *walker) plExpr(e map[string]any) {
	q, _ := e["query"].(string)
	mode, _ := e["parseMode"].(float64)
	sql := q
	switch mode {
	case 0: // RAW_PARSE_DEFAULT: a whole statement
	case 2: // RAW_PARSE_PLPGSQL_EXPR
		sql = "SELECT " + q
	case 3, 4, 5: // RAW_PARSE_PLPGSQL_ASSIGNn: target := expression
		sql = "SELECT " + afterAssignment(q)
	}
	if w.nested(sql) != nil {
		w.scanUnparsed(q)
	}
}

// scanUnparsed reads PL/pgSQL code that pg_query could not parse, token by
// token, and counts as a role change any mention of what could change the
// role: EXECUTE, DO, the words role and authorization, set_config() and the
// functions that run SQL text. What the code reads and writes is unknown.
func (w *walker) scanUnparsed(code string) {
	l := lex(code)
	for _, t := range l.toks {
		word := ""
		switch t.kind {
		case tIdent:
			word = strings.ToLower(l.tokText(t))
		case tQIdent:
			word = strings.ToLower(strings.Trim(l.tokText(t), `"`))
		}
		switch {
		case word == "execute":
			w.roleChange("dynamic SQL (EXECUTE), which Privata cannot analyse")
		case word == "do" || word == "role" || word == "authorization" ||
			word == paramSessionAuth || word == "set_config" || sqlTextArgs[word] != nil:
			w.roleChange("PL/pgSQL code that Privata cannot parse and that mentions " + word)
		case word == paramSCS || word == paramEncoding:
			w.unsafe("PL/pgSQL code that Privata cannot parse and that mentions " + word)
		}
	}
	w.opaque("PL/pgSQL code that Privata cannot parse")
}

// afterAssignment returns the expression of "target := expression".
func afterAssignment(q string) string {
	l := lex(q)
	depth := 0
	for _, t := range l.toks {
		switch s := l.tokText(t); {
		case s == "(" || s == "[":
			depth++
		case s == ")" || s == "]":
			depth--
		case depth == 0 && (s == ":=" || s == "="):
			return q[int(t.end):]
		}
	}
	return q
}

// sqlTextCall analyses the SQL text a function such as query_to_xml runs.
func (w *walker) sqlTextCall(fc *pg.FuncCall, name string) {
	if name == "ts_rewrite" && len(fc.Args) != 2 {
		return
	}
	for _, i := range sqlTextArgs[name] {
		if i >= len(fc.Args) {
			continue
		}
		v := w.value(fc.Args[i])
		if !v.known {
			w.roleChange(name + "() with SQL text that is not a constant")
			continue
		}
		saved := w.via
		if w.via == "" {
			w.via = name + "() runs "
		}
		err := w.nested(v.text)
		w.via = saved
		if err != nil {
			w.roleChange(name + "() with SQL text that Privata cannot analyse")
		}
	}
}

// plDepth bounds the block nesting of PL/pgSQL code: BEGIN, IF, LOOP and
// CASE open a level, END closes one (END IF closes, it does not open).
func plDepth(l *lexer) int {
	depth, deepest := 0, 0
	afterEnd := false
	for _, t := range l.toks {
		switch {
		case l.isKeyword(t, "end"):
			depth--
			afterEnd = true
			continue
		case !afterEnd && (l.isKeyword(t, "begin") || l.isKeyword(t, "if") ||
			l.isKeyword(t, "loop") || l.isKeyword(t, "case")):
			depth++
			deepest = max(deepest, depth)
		}
		afterEnd = false
	}
	return deepest
}
