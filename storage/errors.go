package storage

import (
	"fmt"
	"strings"

	"github.com/privata/privata/policy"
)

// Error is a reason plan cannot convert or migrate a table faithfully. It
// names the table and the policy entry that classifies it, and says how to
// get past it.
type Error struct {
	Table *policy.Table
	Msg   string
	Hint  string
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.Table != nil {
		fmt.Fprintf(&b, "%s: %s: ", e.Table.Pos, e.Table.QualifiedName())
	}
	b.WriteString(e.Msg)
	if e.Hint != "" {
		b.WriteString("\n\thint: ")
		b.WriteString(e.Hint)
	}
	return b.String()
}

// Errors is every reason found, in policy order.
type Errors []error

func (l Errors) Error() string {
	parts := make([]string, len(l))
	for i, e := range l {
		parts[i] = e.Error()
	}
	return strings.Join(parts, "\n")
}

// Unwrap gives errors.As and errors.Is the individual errors.
func (l Errors) Unwrap() []error { return l }

func (l Errors) err() error {
	if len(l) == 0 {
		return nil
	}
	return l
}
