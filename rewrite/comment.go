package rewrite

import (
	"net/url"
	"strings"
	"unicode/utf8"
)

// Limits on what is read as sqlcommenter tags; a comment past them is
// ignored as malformed.
const (
	maxTagComment = 4096
	maxTags       = 32
)

// commentTags returns the tags of the last well-formed sqlcommenter comment
// among the text's block comments, or nil. Comments inside string constants
// and quoted identifiers are not comments, and are never read.
func commentTags(l *lexer) map[string]string {
	var tags map[string]string
	for _, t := range l.toks {
		if t.kind != tComment || t.end-t.start < 4 {
			continue
		}
		if m := parseTags(l.tokText(t)[2 : t.end-t.start-2]); m != nil {
			tags = m
		}
	}
	return tags
}

// parseTags reads a comment's content in sqlcommenter's format:
//
//	key='value',key2='value2'
//
// Keys and values are URL-encoded; a quote inside a value may be escaped
// with a backslash. Keys are returned in lower case. It returns nil when
// the content is anything else.
func parseTags(s string) map[string]string {
	s = strings.TrimSpace(s)
	if s == "" || len(s) > maxTagComment {
		return nil
	}
	tags := make(map[string]string)
	for len(s) > 0 {
		eq := strings.IndexByte(s, '=')
		if eq <= 0 || eq+1 >= len(s) || s[eq+1] != '\'' {
			return nil
		}
		key, ok := unescapeTag(strings.TrimSpace(s[:eq]))
		if !ok || key == "" || strings.ContainsAny(key, "',") {
			return nil
		}
		val, rest, ok := quotedTagValue(s[eq+2:])
		if !ok {
			return nil
		}
		if val, ok = unescapeTag(val); !ok {
			return nil
		}
		tags[strings.ToLower(key)] = val
		if len(tags) > maxTags {
			return nil
		}
		rest = strings.TrimSpace(rest)
		if rest == "" {
			break
		}
		if rest[0] != ',' {
			return nil
		}
		s = strings.TrimSpace(rest[1:])
		if s == "" {
			return nil
		}
	}
	return tags
}

// quotedTagValue reads up to the closing quote of a value, undoing \'
// escapes, and returns the value and what follows the quote.
func quotedTagValue(s string) (val, rest string, ok bool) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '\\' && i+1 < len(s) && s[i+1] == '\'':
			b.WriteByte('\'')
			i++
		case s[i] == '\'':
			return b.String(), s[i+1:], true
		default:
			b.WriteByte(s[i])
		}
	}
	return "", "", false
}

// unescapeTag undoes URL encoding; the result must be UTF-8 without control
// characters.
func unescapeTag(s string) (string, bool) {
	out, err := url.PathUnescape(s)
	if err != nil || !utf8.ValidString(out) {
		return "", false
	}
	for _, r := range out {
		if r < 0x20 || r == 0x7f {
			return "", false
		}
	}
	return out, true
}
