package proxy

import (
	"errors"

	"github.com/privata/privata/rewrite"
)

// Statements that PostgreSQL refuses or runs differently on a split
// table's view (INSERT ... ON CONFLICT, COPY ... TO, TRUNCATE) are
// forwarded in the form package rewrite writes for them: a Query carries
// the rewritten text, a Parse the rewritten statement with the client's
// name and parameter types. The rewritten statement answers as the
// client's would on a plain table (its command tag, its rows, its
// parameters), so nothing else in the relay changes. Routing between
// regions reads the client's text; side connections get the rewritten
// one.

// rewrite returns the text to send upstream in place of text, whose
// analysis Decide answered with rewrite.Rewrite for some statement, or the
// error to refuse it with.
func (s *session) rewrite(text []byte, an *rewrite.Analysis) (string, *Error) {
	out, err := s.srv.rewriter.Rewrite(string(text), an, s.searchPath)
	if err != nil {
		var re *rewrite.Error
		if !errors.As(err, &re) {
			re = &rewrite.Error{SQLState: rewrite.CodeInternalError, Message: "statement rewrite failed"}
		}
		s.srv.decided(an.Statements[0].Kind, 1).Inc()
		s.srv.metrics.refused.WithLabelValues(re.SQLState).Inc()
		return "", &Error{Code: re.SQLState, Message: re.Message, Detail: re.Detail, Hint: re.Hint}
	}
	s.srv.metrics.rewritten.WithLabelValues(an.Statements[0].Kind.String()).Inc()
	return out, nil
}

// withWire returns info with the text to send upstream, when there is
// one; shared infos are copied, not changed.
func withWire(info *stmtInfo, wire string) *stmtInfo {
	if wire == "" {
		return info
	}
	c := *info
	c.wire = wire
	return &c
}

// wireText is the text sent upstream for a statement text.
func (in *stmtInfo) wireText(text []byte) string {
	if in.wire != "" {
		return in.wire
	}
	return string(text)
}

// parseWith returns a Parse message body (name, text, parameter types)
// with its statement text replaced.
func parseWith(body []byte, text string) []byte {
	name, rest, _ := cstring(body)
	_, params, _ := cstring(rest)
	out := make([]byte, 0, len(name)+len(text)+len(params)+2)
	out = append(out, name...)
	out = append(out, 0)
	out = append(out, text...)
	out = append(out, 0)
	return append(out, params...)
}
