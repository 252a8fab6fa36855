package fdw

import (
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// The helpers below build SQL text. Every identifier goes through ident or
// qname, every value through literal; secrets go through script.secret,
// which prints a placeholder and runs the value.

func ident(name string) string { return pgx.Identifier{name}.Sanitize() }

func qname(schema, name string) string { return pgx.Identifier{schema, name}.Sanitize() }

func idents(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = ident(n)
	}
	return strings.Join(q, ", ")
}

// literal quotes a string constant so that it reads the same whatever
// standard_conforming_strings says.
func literal(s string) string {
	s = strings.ReplaceAll(s, "\x00", "")
	q := strings.ReplaceAll(s, "'", "''")
	if strings.Contains(q, `\`) {
		return "E'" + strings.ReplaceAll(q, `\`, `\\`) + "'"
	}
	return "'" + q + "'"
}

func textArray(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = literal(s)
	}
	return "ARRAY[" + strings.Join(q, ", ") + "]::text[]"
}

// Placeholder stands for a secret in printed SQL.
const Placeholder = "'********'"

// script is SQL text in two copies: the one plan prints, with secrets
// replaced by Placeholder, and the one apply runs.
type script struct {
	print, exec strings.Builder
	secrets     bool
}

func (s *script) f(format string, args ...any) {
	text := fmt.Sprintf(format, args...)
	s.print.WriteString(text)
	s.exec.WriteString(text)
}

// secret writes value as a string constant, shown as Placeholder.
func (s *script) secret(value string) {
	s.print.WriteString(Placeholder)
	s.exec.WriteString(literal(value))
	s.secrets = true
}

func (s *script) empty() bool { return s.print.Len() == 0 }

// step turns the script into a Step with a comment.
func (s *script) step(comment string) Step {
	st := Step{Comment: comment, SQL: s.print.String()}
	if s.secrets {
		st.exec = s.exec.String()
	}
	return st
}
