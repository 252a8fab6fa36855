package storage

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"

	"github.com/jackc/pgx/v5"
)

// The helpers below build SQL text. Every identifier goes through ident or
// qname; every value that must appear in DDL (a region name, a message)
// goes through literal. Nothing else is pasted into SQL.

// ident quotes one identifier.
func ident(name string) string { return pgx.Identifier{name}.Sanitize() }

// qname quotes a schema-qualified name.
func qname(schema, name string) string { return pgx.Identifier{schema, name}.Sanitize() }

// literal quotes a string constant so that it reads the same whatever
// standard_conforming_strings says: a string with backslashes becomes an
// escape string constant (E'...') with the backslashes doubled.
func literal(s string) string {
	s = strings.ReplaceAll(s, "\x00", "")
	q := strings.ReplaceAll(s, "'", "''")
	if strings.Contains(q, `\`) {
		return "E'" + strings.ReplaceAll(q, `\`, `\\`) + "'"
	}
	return "'" + q + "'"
}

// literals quotes each string and joins them with commas.
func literals(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = literal(s)
	}
	return strings.Join(q, ", ")
}

// textArray is an ARRAY[...]::text[] constructor of quoted strings.
func textArray(ss []string) string {
	return "ARRAY[" + literals(ss) + "]::text[]"
}

// idents quotes each name and joins them with commas.
func idents(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = ident(n)
	}
	return strings.Join(q, ", ")
}

// dollarQuote wraps a function body in a dollar quote whose tag does not
// occur in it.
func dollarQuote(body string) string {
	tag := "$body$"
	for i := 0; strings.Contains(body, tag); i++ {
		tag = "$body" + strings.Repeat("x", i+1) + "$"
	}
	return tag + "\n" + body + tag
}

// maxIdentLen is the longest identifier PostgreSQL keeps (NAMEDATALEN-1).
const maxIdentLen = 63

// objectName joins parts with underscores into a name PostgreSQL keeps as
// it is: names that would be truncated are shortened and given a hash
// suffix so that two long names stay distinct.
func objectName(parts ...string) string {
	name := strings.Join(parts, "_")
	if len(name) <= maxIdentLen {
		return name
	}
	sum := sha256.Sum256([]byte(name))
	suffix := "_" + hex.EncodeToString(sum[:4])
	cut := maxIdentLen - len(suffix)
	for cut > 0 && !utf8Start(name[cut]) {
		cut--
	}
	return name[:cut] + suffix
}

func utf8Start(b byte) bool { return b&0xC0 != 0x80 }
