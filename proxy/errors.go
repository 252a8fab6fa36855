package proxy

import (
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// SQLSTATEs Privata answers with itself.
const (
	codeProtocolViolation   = "08P01"
	codeConnectionFailure   = "08006"
	codeInvalidAuthSpec     = "28000"
	codeInvalidPassword     = "28P01"
	codeInvalidCatalog      = "3D000"
	codeInsufficientPriv    = "42501"
	codeFeatureNotSupport   = "0A000"
	codeAdminShutdown       = "57P01"
	codeInFailedTransaction = "25P02"
)

// Error is an error Privata sends to a client as an ErrorResponse. Its
// message never holds a value from the client's data.
type Error struct {
	Severity string // ERROR or FATAL
	Code     string // SQLSTATE
	Message  string
	Detail   string
	Hint     string
	Position int32 // 1-based character position in the statement, or 0
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// fatalf returns a FATAL error with SQLSTATE code.
func fatalf(code, format string, args ...any) *Error {
	return &Error{Severity: "FATAL", Code: code, Message: fmt.Sprintf(format, args...)}
}

// encode returns the error as an ErrorResponse message.
func (e *Error) encode() []byte {
	sev := e.Severity
	if sev == "" {
		sev = "ERROR"
	}
	msg := &pgproto3.ErrorResponse{
		Severity:            sev,
		SeverityUnlocalized: sev,
		Code:                e.Code,
		Message:             e.Message,
		Detail:              e.Detail,
		Hint:                e.Hint,
		Position:            e.Position,
	}
	b, err := msg.Encode(nil)
	if err != nil {
		// Only a field over 1 GiB fails to encode; ours are short.
		panic(err)
	}
	return b
}

// upstreamError turns an error from connecting upstream into the error the
// client sees: PostgreSQL's own when it sent one, else a connection failure
// that names the cluster but not its address or credentials.
func upstreamError(cluster string, err error) *Error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return &Error{Severity: "FATAL", Code: pe.Code, Message: pe.Message, Detail: pe.Detail,
			Hint: pe.Hint}
	}
	return fatalf(codeConnectionFailure, "cannot connect to cluster %s", cluster)
}
