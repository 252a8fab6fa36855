package regions

import "fmt"

// SQLSTATE codes of routing errors.
const (
	CodeFeatureNotSupported = "0A000" // feature_not_supported
	CodeInsufficientPriv    = "42501" // insufficient_privilege
	CodeCheckViolation      = "23514" // check_violation
	CodeConnectionFailure   = "08006" // connection_failure
	CodeCannotConnect       = "08001" // sqlclient_unable_to_establish_sqlconnection
	CodeResolutionUnknown   = "08007" // transaction_resolution_unknown
)

// Error is a statement routing refuses, or a region it cannot reach. Its
// fields map onto an ErrorResponse; they name regions, tables, columns and
// roles, never a value.
type Error struct {
	SQLState string
	Message  string
	Detail   string
	Hint     string
	// Region is the region the error is about, when there is one.
	Region string
}

func (e *Error) Error() string { return fmt.Sprintf("%s (SQLSTATE %s)", e.Message, e.SQLState) }

func errorf(code, hint, format string, args ...any) *Error {
	return &Error{SQLState: code, Hint: hint, Message: fmt.Sprintf(format, args...)}
}

// Unreachable is the error for a region whose cluster cannot be reached.
func Unreachable(region, cluster string, cause error) *Error {
	e := &Error{SQLState: CodeCannotConnect, Region: region,
		Message: fmt.Sprintf("region %s is unreachable: cannot connect to its cluster %s", region, cluster),
		Hint:    "Statements for other regions keep working; retry when the region is back."}
	if cause != nil {
		e.Detail = cause.Error()
	}
	return e
}
