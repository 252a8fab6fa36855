package rewrite

import (
	"slices"
	"strconv"
	"strings"

	pg "github.com/pganalyze/pg_query_go/v5"
)

// Run-time parameters that matter to Privata.
const (
	paramRole        = "role"
	paramSessionAuth = "session_authorization"
	paramSCS         = "standard_conforming_strings"
	paramEncoding    = "client_encoding"
	paramSearchPath  = "search_path"
)

// form is the syntax that assigns a parameter; it decides how a refusal
// reads and whether the assignment is the session's.
type form uint8

const (
	formSet       form = iota // SET, RESET
	formSetConfig             // set_config()
	formFunction              // a function's SET clause
	formStored                // ALTER ROLE/DATABASE/SYSTEM ... SET
)

// value is what an expression assigned to a parameter is known to be.
type value struct {
	text  string
	known bool // a constant (text holds it)
	param int  // a $n parameter
}

// value returns what n is known to be. Reading a constant marks the
// analysis as depending on constants (no fast path).
func (w *walker) value(n *pg.Node) value {
	if n == nil {
		return value{}
	}
	switch e := n.Node.(type) {
	case *pg.Node_AConst:
		w.an.literal = true
		if e.AConst.Isnull {
			return value{}
		}
		return value{text: constText(e.AConst), known: true}
	case *pg.Node_TypeCast:
		return w.value(e.TypeCast.Arg)
	case *pg.Node_NamedArgExpr:
		return w.value(e.NamedArgExpr.Arg)
	case *pg.Node_ParamRef:
		return value{param: int(e.ParamRef.Number)}
	}
	return value{}
}

func constText(c *pg.A_Const) string {
	switch v := c.Val.(type) {
	case *pg.A_Const_Sval:
		return v.Sval.Sval
	case *pg.A_Const_Ival:
		return strconv.Itoa(int(v.Ival.Ival))
	case *pg.A_Const_Fval:
		return v.Fval.Fval
	case *pg.A_Const_Boolval:
		return strconv.FormatBool(v.Boolval.Boolval)
	case *pg.A_Const_Bsval:
		return v.Bsval.Bsval
	}
	return ""
}

// setStmt handles SET and RESET.
func (w *walker) setStmt(s *pg.VariableSetStmt) {
	switch s.Kind {
	case pg.VariableSetKind_VAR_RESET_ALL:
		w.st.ResetsSession = true
		return
	case pg.VariableSetKind_VAR_SET_MULTI:
		return // SET TRANSACTION, SET SESSION CHARACTERISTICS
	}
	v := value{}
	if s.Kind == pg.VariableSetKind_VAR_SET_VALUE {
		v.known = true
		parts := make([]string, 0, len(s.Args))
		for _, a := range s.Args {
			pv := w.value(a)
			v.known = v.known && pv.known
			parts = append(parts, pv.text)
		}
		v.text = strings.Join(parts, ", ")
	}
	reset := s.Kind == pg.VariableSetKind_VAR_RESET || s.Kind == pg.VariableSetKind_VAR_SET_DEFAULT
	w.assign(lowerASCII(s.Name), v, s.IsLocal, reset, formSet)
}

// setConfig handles set_config(name, value, is_local).
func (w *walker) setConfig(fc *pg.FuncCall) {
	var args [3]*pg.Node
	for i, a := range fc.Args {
		if na := a.GetNamedArgExpr(); na != nil {
			switch na.Name {
			case "setting_name":
				args[0] = na.Arg
			case "new_value":
				args[1] = na.Arg
			case "is_local":
				args[2] = na.Arg
			}
			continue
		}
		if i < len(args) {
			args[i] = a
		}
	}
	name := w.value(args[0])
	if !name.known {
		w.roleChange("set_config() with a parameter name that is not a constant")
		return
	}
	local := w.value(args[2])
	w.assign(lowerASCII(name.text), w.value(args[1]), local.known && parseBool(local.text),
		false, formSetConfig)
}

// storedSetting handles ALTER ROLE/DATABASE ... SET and ALTER SYSTEM SET,
// which change what later sessions start with.
func (w *walker) storedSetting(s *pg.VariableSetStmt, how string) {
	if s == nil || s.Kind == pg.VariableSetKind_VAR_RESET ||
		s.Kind == pg.VariableSetKind_VAR_RESET_ALL {
		return
	}
	v := value{}
	if s.Kind == pg.VariableSetKind_VAR_SET_VALUE && len(s.Args) == 1 {
		v = w.value(s.Args[0])
	}
	w.assign(lowerASCII(s.Name), v, false, s.Kind == pg.VariableSetKind_VAR_SET_DEFAULT,
		formStored, how)
}

// functionSet handles a SET clause of CREATE or ALTER FUNCTION.
func (w *walker) functionSet(s *pg.VariableSetStmt) {
	if s == nil || s.Kind != pg.VariableSetKind_VAR_SET_VALUE &&
		s.Kind != pg.VariableSetKind_VAR_SET_CURRENT {
		return
	}
	v := value{}
	if s.Kind == pg.VariableSetKind_VAR_SET_VALUE && len(s.Args) == 1 {
		v = w.value(s.Args[0])
	}
	w.assign(lowerASCII(s.Name), v, true, false, formFunction)
}

// assign checks and records one parameter assignment.
func (w *walker) assign(name string, v value, local, reset bool, f form, how ...string) {
	switch name {
	case paramRole, paramSessionAuth:
		w.roleChange(roleReason(name, reset, f, how))
	case paramSCS:
		if !reset && !(v.known && parseBool(v.text)) {
			w.unsafe(unsafeReason("setting standard_conforming_strings to off", f, how))
		}
	case paramEncoding:
		if !reset && !(v.known && readableEncodingName(v.text)) {
			w.unsafe(unsafeReason("setting client_encoding to an encoding other than UTF8 or SQL_ASCII", f, how))
		}
	case paramSearchPath:
		// Privata resolves unqualified names through the search path it
		// knows: one it cannot read, or one that reaches its storage,
		// would have a statement mean other relations than it analysed.
		switch {
		case reset:
		case !v.known:
			w.unsafe(unsafeReason("setting search_path to a value that is not a constant", f, how))
		case slices.ContainsFunc(SearchPath(v.text, ""), isStorageSchema):
			w.unsafe(unsafeReason("a search_path with Privata's storage schemas", f, how))
		}
	}
	if f != formSet && f != formSetConfig {
		return
	}
	set := ContextSet{Name: name, Local: local, Reset: reset}
	switch {
	case reset:
	case v.known:
		set.Value = v.text
	case v.param > 0:
		set.Param = v.param
	default:
		set.Unknown = true
	}
	w.st.Settings = append(w.st.Settings, set)
	if isContext(name) {
		w.st.Context = append(w.st.Context, set)
	}
}

func roleReason(name string, reset bool, f form, how []string) string {
	words := "ROLE"
	if name == paramSessionAuth {
		words = "SESSION AUTHORIZATION"
	}
	switch f {
	case formSetConfig:
		return "set_config('" + name + "', ...)"
	case formFunction:
		return "a function SET clause for " + name
	case formStored:
		return strings.Join(how, " ") + " " + name
	}
	if reset {
		return "RESET " + words
	}
	return "SET " + words
}

func unsafeReason(what string, f form, how []string) string {
	switch f {
	case formSetConfig:
		return what + " with set_config()"
	case formFunction:
		return what + " in a function SET clause"
	case formStored:
		return what + " with " + strings.Join(how, " ")
	}
	return what
}

func (w *walker) roleChange(reason string) {
	if reason != "" && w.st.RoleChange == "" {
		w.st.RoleChange = w.via + reason
	}
}

func (w *walker) unsafe(reason string) {
	if reason != "" && w.st.Unsafe == "" {
		w.st.Unsafe = w.via + reason
	}
}

// SearchPath reads a search_path value into schema names, as PostgreSQL
// does: unquoted names fold to lower case, and $user is user.
func SearchPath(v, user string) []string {
	var out []string
	for _, p := range strings.Split(v, ",") {
		p = strings.TrimSpace(p)
		if len(p) >= 2 && p[0] == '"' && p[len(p)-1] == '"' {
			p = strings.ReplaceAll(p[1:len(p)-1], `""`, `"`)
		} else {
			p = strings.ToLower(p)
		}
		if p == "$user" {
			p = user
		}
		if p != "" {
			out = append(out, p)
		}
	}
	return out
}

// parseBool is PostgreSQL's parse_bool: true for on, 1, and prefixes of true
// and yes.
func parseBool(s string) bool {
	s = strings.ToLower(strings.TrimSpace(s))
	if s == "" {
		return false
	}
	return s == "on" || s == "1" || strings.HasPrefix("true", s) || strings.HasPrefix("yes", s)
}

// readableEncodingName reports whether an encoding name, ignoring case and
// punctuation as PostgreSQL does, means UTF8 or SQL_ASCII: the client
// encodings whose statements Privata reads as PostgreSQL does (see the
// proxy's readableEncoding).
func readableEncodingName(s string) bool {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		}
	}
	switch b.String() {
	case "utf8", "unicode", "sqlascii":
		return true
	}
	return false
}
