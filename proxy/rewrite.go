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
// analysis Decide answered with rewrite.Rewrite for some statement or
// which reads emulated catalogs (catalog), or the error to refuse it with.
func (s *session) rewrite(text []byte, an *rewrite.Analysis, catalog bool) (string, *Error) {
	out, err := s.rewriteText(string(text), an, catalog)
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
// one; shared infos are copied, not changed. When the read path adds
// hidden columns to SELECTs of the same text, the rewrite is made again on
// the read path's text, whose SELECTs it keeps as they are: upstream gets
// both. Side connections (other regions' clusters) get the rewrite alone,
// as they get SELECTs without hidden columns.
func (s *session) withWire(info *stmtInfo, wire string, catalog bool) (*stmtInfo, *Error) {
	if wire == "" {
		return info, nil
	}
	c := *info
	c.wire, c.sideWire = wire, wire
	if info.read != nil && info.read.text != "" {
		an, err := s.srv.analyzer.Analyze(info.read.text)
		if err != nil {
			return nil, &Error{Code: rewrite.CodeInternalError,
				Message: "statement rewrite failed: the read path's text does not analyse"}
		}
		if c.wire, err = s.rewriteText(info.read.text, an, catalog); err != nil {
			return nil, &Error{Code: rewrite.CodeInternalError,
				Message: "statement rewrite failed on the read path's text"}
		}
	}
	return &c, nil
}

// wireText is the text a side connection gets for a statement text.
func (in *stmtInfo) wireText(text []byte) string {
	if in.sideWire != "" {
		return in.sideWire
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

// rewriteText rewrites text for split storage and, when catalog is set,
// for the emulated catalogs.
func (s *session) rewriteText(text string, an *rewrite.Analysis, catalog bool) (string, error) {
	if catalog {
		return s.srv.rewriter.RewriteWithCatalog(text, an, s.searchPath)
	}
	return s.srv.rewriter.Rewrite(text, an, s.searchPath)
}
