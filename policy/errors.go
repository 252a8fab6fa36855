package policy

import (
	"errors"
	"strings"

	"github.com/goccy/go-yaml"
)

// Error is a problem in a policy file, at a position, with a hint that says
// how to fix it.
type Error struct {
	Pos  Pos
	Msg  string
	Hint string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Pos.String())
	b.WriteString(": ")
	b.WriteString(e.Msg)
	if e.Hint != "" {
		b.WriteString("\n\thint: ")
		b.WriteString(e.Hint)
	}
	return b.String()
}

// ErrorList is every problem found in a policy, in file order.
type ErrorList []*Error

func (l ErrorList) Error() string {
	parts := make([]string, len(l))
	for i, e := range l {
		parts[i] = e.Error()
	}
	return strings.Join(parts, "\n")
}

// Err returns the list as an error, or nil when it is empty.
func (l ErrorList) Err() error {
	if len(l) == 0 {
		return nil
	}
	return l
}

func (l *ErrorList) add(pos Pos, hint, format string, args ...any) {
	*l = append(*l, &Error{Pos: pos, Msg: sprintf(format, args...), Hint: hint})
}

// fromYAML turns an error of the YAML decoder into a positioned Error.
func fromYAML(file string, err error) *Error {
	var pe *Error
	if errors.As(err, &pe) {
		return pe
	}
	var ye yaml.Error
	if errors.As(err, &ye) && ye.GetToken() != nil {
		pos := Pos{File: file, Line: ye.GetToken().Position.Line, Column: ye.GetToken().Position.Column}
		msg := ye.GetMessage()
		e := &Error{Pos: pos, Msg: msg}
		var unknown *yaml.UnknownFieldError
		var syntax *yaml.SyntaxError
		switch {
		case errors.As(err, &unknown):
			e.Hint = "check the spelling; the policy format is described in the README"
		case errors.As(err, &syntax):
			e.Hint = "fix the YAML here: indentation, brackets, quotes; a key may appear once in a mapping"
		}
		return e
	}
	return &Error{Pos: Pos{File: file}, Msg: err.Error()}
}
