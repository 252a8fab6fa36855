package rewrite

import "strings"

// Analysis is what Analyze finds in one statement text. An Analysis may be
// shared between callers through the cache: treat it as read-only.
type Analysis struct {
	// Statements holds one entry per statement in the text; an empty
	// query (only whitespace, comments or semicolons) has none.
	Statements []*Statement
	// Tags are the sqlcommenter tags of the text, e.g. from
	// /*actor='dr%20who',purpose='treatment'*/: keys lower-case, values
	// URL-decoded. When several comments carry tags, the last one wins.
	// Nil when there are none.
	Tags map[string]string

	// literal is set when part of the analysis depends on the content of a
	// constant (SET values, set_config names, function bodies): such texts
	// never take the fast path.
	literal bool
	// shareable is set when texts of the same shape have this analysis
	// (see fastpath.go).
	shareable bool
}

// Statement is the analysis of one statement.
type Statement struct {
	Kind Kind
	// Tag is the command tag PostgreSQL reports for the statement, without
	// row counts: "SELECT", "CREATE TABLE", "DISCARD ALL".
	Tag string
	// Fingerprint is pg_query's fingerprint: equal for statements that
	// differ only in constants, parameters, comments and whitespace.
	Fingerprint string
	// Relations lists every reference to a table, view or function in
	// FROM, one entry per reference. Names of WITH queries are not
	// relations; what those queries reference is.
	Relations []Relation
	// Columns lists the column references, see Column.
	Columns []Column
	// RoleChange is non-empty when running the statement could change the
	// session's role or session authorization; it says why, for the
	// message of a 42501 refusal. RESET ALL and DISCARD ALL are not role
	// changes (see ResetsSession).
	RoleChange string
	// Unsafe is non-empty when the statement would make Privata's analysis
	// of later statements wrong (standard_conforming_strings off, a client
	// encoding other than UTF8 or SQL_ASCII); it says why.
	Unsafe string
	// Opaque is non-empty when the statement reads tables it does not
	// name, so that Relations cannot list them: schema_to_xml(),
	// database_to_xml(), table_to_xml() of a name that is not a constant.
	// It says which.
	Opaque string
	// Settings lists the run-time parameters the statement assigns with SET,
	// RESET or set_config(), names in lower case.
	Settings []ContextSet
	// Context is the subset of Settings that names privata.* parameters.
	Context []ContextSet
	// Operations are what the statement does to relations that PostgreSQL
	// does otherwise on a split table's view (see Operation).
	Operations []Operation
	// Definer is set when the statement creates a SECURITY DEFINER
	// function or procedure, or makes one so, itself or in a body it
	// defines.
	Definer bool
	// Temporary lists the names of the temporary relations the statement
	// creates, itself or in a body it defines. Until the session ends, its unqualified names may mean them
	// instead of the tables Privata knows by those names.
	Temporary []string
	// Renamed lists the new names of the tables, views and sequences the
	// statement renames.
	Renamed []string
	// ResetsSession is set for DISCARD ALL and RESET ALL: afterwards the
	// session's settings, Privata's context among them, are back to their
	// defaults, and the proxy must apply its own again.
	ResetsSession bool
	// Location and Length are the statement's byte span in the text.
	Location, Length int
}

// Relation is a reference to a table, view or function in FROM.
type Relation struct {
	Schema string // "" when the name is unqualified
	Name   string
	Access Access
	Alias  string // "" when there is none
	// Function is set for a function called in FROM (generate_series(...)
	// AS g); Name is then the function's name.
	Function bool
}

// QualifiedName is schema.name, or name when the reference is unqualified.
func (r Relation) QualifiedName() string {
	if r.Schema == "" {
		return r.Name
	}
	return r.Schema + "." + r.Name
}

// Column is a column reference.
type Column struct {
	// Relation is the index in Statement.Relations of the relation the
	// column belongs to, when the text says which: the reference is
	// qualified (p.ssn, patients.ssn), or exactly one relation is in scope.
	// It is -1 otherwise, and Candidates lists the relations in scope.
	Relation int
	// Name is the column's name; "" when Star is set.
	Name   string
	Access Access
	// Star is set for * and t.*, and for a whole-row reference (t used as a
	// value, as in row_to_json(t)): every column of the relation.
	Star bool
	// Candidates are the indexes of the relations an unresolved reference
	// may belong to, innermost scope first.
	Candidates []int
}

// Access says whether a statement reads or writes a relation or column.
type Access uint8

// Read and Write are the access bits. DDL, TRUNCATE, GRANT, LOCK and
// maintenance commands write the relations they name.
const (
	Read Access = 1 << iota
	Write
)

func (a Access) String() string {
	switch a {
	case Read:
		return "read"
	case Write:
		return "write"
	case Read | Write:
		return "read+write"
	}
	return "none"
}

// ContextSet is a run-time parameter a statement assigns.
type ContextSet struct {
	Name  string // lower case, e.g. "privata.actor"
	Value string // the constant assigned; "" with Reset, Param or Unknown
	Local bool   // SET LOCAL, or set_config(..., true)
	Reset bool   // RESET name, SET name TO DEFAULT
	// Param is the 1-based number of the parameter ($n) that holds the
	// value, as in set_config('privata.actor', $1, false); 0 otherwise.
	Param int
	// Unknown is set when the value is an expression Privata cannot know.
	Unknown bool
}

// contextPrefix is the namespace of Privata's own settings.
const contextPrefix = "privata."

func isContext(name string) bool { return strings.HasPrefix(name, contextPrefix) }
