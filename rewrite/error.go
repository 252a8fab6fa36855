package rewrite

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	pgparser "github.com/pganalyze/pg_query_go/v5/parser"
)

// SQLSTATE codes that Analyze, Decide and Error use.
const (
	CodeSyntaxError         = "42601" // syntax_error
	CodeInsufficientPriv    = "42501" // insufficient_privilege
	CodeFeatureNotSupported = "0A000" // feature_not_supported
	CodeProgramLimit        = "54000" // program_limit_exceeded
	CodeStatementTooComplex = "54001" // statement_too_complex
	CodeCharNotInRepertoire = "22021" // character_not_in_repertoire
	CodeInternalError       = "XX000" // internal_error
)

// Error is a statement Privata refuses before it reaches PostgreSQL. Its
// fields map onto an ErrorResponse. Message, Detail and Hint never contain
// a constant from the statement: they may quote keywords, identifiers and
// operators, never string or numeric constants.
type Error struct {
	SQLState string
	Message  string
	Detail   string
	Hint     string
	// Position is the 1-based character (not byte) position in the text
	// that the error refers to, or 0.
	Position int
}

func (e *Error) Error() string {
	if e.Position > 0 {
		return fmt.Sprintf("%s (SQLSTATE %s, position %d)", e.Message, e.SQLState, e.Position)
	}
	return fmt.Sprintf("%s (SQLSTATE %s)", e.Message, e.SQLState)
}

// charPosition converts a byte offset in text to a 1-based character
// position.
func charPosition(text string, offset int) int {
	offset = min(max(offset, 0), len(text))
	return utf8.RuneCountInString(text[:offset]) + 1
}

// parserError turns an error from pg_query into an *Error. pg_query's
// messages end in `at or near "TOKEN"`; when TOKEN is a constant (or could
// hold one: a quoted identifier or an unterminated literal swallowing the
// rest of the text), it is replaced by a description.
func parserError(err error) *Error {
	var pe *pgparser.Error
	if !errors.As(err, &pe) {
		// pg_query's other failure is its protobuf decoding: the only way
		// a parsed tree fails to decode is by being too deep.
		if strings.Contains(err.Error(), "recursion") {
			return tooDeep()
		}
		return &Error{SQLState: CodeInternalError, Message: "statement could not be analysed"}
	}
	return &Error{
		SQLState: CodeSyntaxError,
		Message:  sanitizeMessage(pe.Message),
		Position: pe.Cursorpos,
	}
}

func tooDeep() *Error {
	return &Error{
		SQLState: CodeStatementTooComplex,
		Message:  "statement too deeply nested",
		Hint:     "Simplify the statement: split long chains of operators, UNIONs or JOINs.",
	}
}

// sanitizeMessage keeps every quoted part of a parser message that is a bare
// word or an operator, and describes the others.
func sanitizeMessage(msg string) string {
	const near = ` at or near "`
	if i := strings.Index(msg, near); i >= 0 && strings.HasSuffix(msg, `"`) {
		tok := msg[i+len(near) : len(msg)-1]
		if safeToken(tok) {
			return msg
		}
		return msg[:i] + " at or near " + describeToken(tok)
	}
	// Other messages quote one name at most ("unrecognized role option
	// "x""); check each quoted part all the same.
	var b strings.Builder
	for {
		open := strings.IndexByte(msg, '"')
		if open < 0 {
			b.WriteString(msg)
			return b.String()
		}
		end := strings.IndexByte(msg[open+1:], '"')
		if end < 0 {
			b.WriteString(msg)
			return b.String()
		}
		part := msg[open+1 : open+1+end]
		b.WriteString(msg[:open])
		if safeToken(part) {
			b.WriteString(`"` + part + `"`)
		} else {
			b.WriteString(describeToken(part))
		}
		msg = msg[open+2+end:]
	}
}

// safeToken reports whether a token may appear in a message: a keyword or
// unquoted identifier, a parameter, or punctuation and operators.
func safeToken(tok string) bool {
	if tok == "" {
		return false
	}
	switch {
	case isIdentStart(tok[0]) && tok[0] < 0x80:
		for i := 0; i < len(tok); i++ {
			if !isIdentCont(tok[i]) || tok[i] >= 0x80 {
				return false
			}
		}
		return true
	case tok[0] == '$' && len(tok) > 1:
		for i := 1; i < len(tok); i++ {
			if !isDigit(tok[i]) {
				return false
			}
		}
		return true
	}
	for i := 0; i < len(tok); i++ {
		if !isOpChar(tok[i]) && !strings.ContainsRune("()[],;.:", rune(tok[i])) {
			return false
		}
	}
	return true
}

// describeToken names the kind of a token that may not be quoted.
func describeToken(tok string) string {
	lower := strings.ToLower(tok)
	switch {
	case tok == "":
		return "an empty token"
	case tok[0] == '\'' || len(tok) > 1 && tok[1] == '\'' || strings.HasPrefix(lower, "u&'"):
		return "a string constant"
	case tok[0] == '$':
		return "a dollar-quoted string"
	case isDigit(tok[0]) || tok[0] == '.':
		return "a numeric constant"
	case tok[0] == '"' || strings.HasPrefix(lower, `u&"`):
		return "a quoted identifier"
	}
	return "a token that is not shown"
}
