package rewrite

import (
	"fmt"
	"strings"

	"github.com/privata/privata/policy"
)

// Action is what Decide says to do with a statement.
type Action uint8

// The actions. Rewrite: Privata runs the statement in another form that
// does on split tables what the statement does on plain ones (Rewriter).
const (
	Allow Action = iota
	Refuse
	Rewrite
)

func (a Action) String() string {
	switch a {
	case Refuse:
		return "refuse"
	case Rewrite:
		return "rewrite"
	}
	return "allow"
}

// Session is the context Decide judges a statement in.
type Session struct {
	// Role is the policy role the client is mapped to; nil when the
	// policy maps it to none.
	Role       *policy.Role
	BreakGlass bool
}

// Decision is Decide's answer. For Refuse, SQLState, Message and Hint make
// the ErrorResponse; they never contain a value from the statement.
type Decision struct {
	Action   Action
	SQLState string
	Message  string
	Hint     string
}

// Decide judges an analysed and classified statement. It refuses a
// statement that could change the session's role (42501) and one that
// would make Privata's analysis of later statements wrong (0A000), decides
// what the statement does to split tables (classified.go: refuse with
// 0A000, or rewrite), and allows the rest.
func Decide(st *Statement, c Classification, s Session) Decision {
	switch {
	case st == nil:
		return Decision{Action: Allow}
	case st.RoleChange != "":
		hint := "Privata runs each client as the role the policy maps it to. " +
			"To act as another role, connect as a user mapped to it."
		if s.Role != nil {
			hint = fmt.Sprintf("This session runs as role %q, as the policy maps it. "+
				"To act as another role, connect as a user mapped to it.", s.Role.PGRole)
		}
		return Decision{
			Action:   Refuse,
			SQLState: CodeInsufficientPriv,
			Message:  "permission denied to change role through Privata: " + st.RoleChange,
			Hint:     hint,
		}
	case st.Definer:
		return Decision{
			Action:   Refuse,
			SQLState: CodeFeatureNotSupported,
			Message:  "SECURITY DEFINER functions and procedures are not supported through Privata",
			Hint: "Such a function reads with its owner's access for every caller, past the policy's " +
				"masks and the read audit. Use SECURITY INVOKER, or have a DBA create it on the " +
				"cluster directly.",
		}
	case st.Unsafe != "":
		hint := "Privata reads every statement as PostgreSQL does only with " +
			"standard_conforming_strings on and the client encoding UTF8 (or SQL_ASCII)."
		if strings.Contains(st.Unsafe, "search_path") {
			hint = "Set search_path with a constant, and leave Privata's storage schemas " +
				"(privata_identity, privata_clinical, privata_access, privata_export) off it."
		}
		return Decision{
			Action:   Refuse,
			SQLState: CodeFeatureNotSupported,
			Message:  "not supported through Privata: " + st.Unsafe,
			Hint:     hint,
		}
	}
	switch {
	case c.Storage != "":
		return Decision{
			Action:   Refuse,
			SQLState: CodeInsufficientPriv,
			Message:  fmt.Sprintf("relation %s is Privata's split storage, which clients do not reach directly", c.Storage),
			Hint: "Use the application's table: its view applies the policy's masks and Privata " +
				"audits what it returns.",
		}
	case c.Shadowed != nil:
		return Decision{
			Action:   Refuse,
			SQLState: CodeFeatureNotSupported,
			Message: fmt.Sprintf("another relation named %s is not supported through Privata: it "+
				"would hide table %s from this session's statements", c.Shadowed.Name,
				c.Shadowed.QualifiedName()),
			Hint: "Give the temporary or renamed relation another name.",
		}
	}
	if d, ok := decideOperations(st, c); ok {
		return d
	}
	return Decision{Action: Allow}
}
