package audit

import (
	"encoding/hex"
	"strconv"
	"time"
	"unicode/utf8"
)

// Hand-written encoders for the two hot paths, a spool line per Append and
// a COPY row per shipped record: the reflection of encoding/json and of
// pgx's generic COPY cost more than everything else Append does. Their
// output is checked against encoding/json and against what the store reads
// back (encode_test.go).

// appendReadJSON appends r as a JSON object with the fields, names and
// order of encoding/json's encoding of Read, preceded by prefix fields
// (such as `"kind":"read",`).
func appendReadJSON(b []byte, prefix string, r *Read) []byte {
	b = append(b, '{')
	b = append(b, prefix...)
	b = append(b, `"chain":`...)
	b = appendJSONString(b, r.Chain)
	b = append(b, `,"seq":`...)
	b = strconv.AppendInt(b, r.Seq, 10)
	b = append(b, `,"prev":"`...)
	b = hex.AppendEncode(b, r.Prev[:])
	b = append(b, `","hash":"`...)
	b = hex.AppendEncode(b, r.Hash[:])
	b = append(b, `","at":"`...)
	b = r.Time.AppendFormat(b, time.RFC3339Nano)
	b = append(b, '"')
	b = appendJSONField(b, "actor", r.Actor)
	b = appendJSONField(b, "role", r.Role)
	b = appendJSONField(b, "client_addr", r.ClientAddr)
	b = appendJSONField(b, "application", r.Application)
	b = appendJSONField(b, "purpose", r.Purpose)
	b = append(b, `,"break_glass":`...)
	b = strconv.AppendBool(b, r.BreakGlass)
	b = append(b, `,"statement":`...)
	b = appendJSONString(b, r.Statement)
	b = append(b, `,"fingerprint":`...)
	b = appendJSONString(b, r.Fingerprint)
	b = append(b, `,"tables":`...)
	b = appendJSONStrings(b, r.Tables)
	b = append(b, `,"columns":`...)
	b = appendJSONStrings(b, r.Columns)
	b = append(b, `,"decision":`...)
	b = appendJSONString(b, string(r.Decision))
	b = appendJSONField(b, "reason", r.Reason)
	b = append(b, `,"rows":`...)
	b = strconv.AppendInt(b, r.Rows, 10)
	b = append(b, `,"subjects":`...)
	if r.Subjects == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i, s := range r.Subjects {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(append(append(b, '"'), s.String()...), '"')
		}
		b = append(b, ']')
	}
	return append(b, '}')
}

// appendJSONField appends ,"name":value, or nothing for an empty value
// (omitempty).
func appendJSONField(b []byte, name, v string) []byte {
	if v == "" {
		return b
	}
	b = append(append(append(b, `,"`...), name...), `":`...)
	return appendJSONString(b, v)
}

func appendJSONStrings(b []byte, ss []string) []byte {
	if ss == nil {
		return append(b, "null"...)
	}
	b = append(b, '[')
	for i, s := range ss {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, s)
	}
	return append(b, ']')
}

// appendJSONString quotes s as JSON does; s is valid UTF-8 (Read.check).
func appendJSONString(b []byte, s string) []byte {
	const hexDigits = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == '\u2028' || r == '\u2029' {
				b = append(append(b, s[start:i]...), `\u202`...)
				b = append(b, hexDigits[r&0xF])
				i += size
				start = i
				continue
			}
			i += size
			continue
		}
		if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
			i++
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
		}
		i++
		start = i
	}
	return append(append(b, s[start:]...), '"')
}

// appendReadCopy appends r as a row of COPY ... FROM STDIN text format, in
// the order of readColumns.
func appendReadCopy(b []byte, r *Read) []byte {
	b = appendCopyText(b, r.Chain)
	b = append(b, '\t')
	b = strconv.AppendInt(b, r.Seq, 10)
	b = append(b, '\t')
	b = appendCopyTime(b, r.Time)
	for _, s := range []string{r.Actor, r.Role, r.ClientAddr, r.Application, r.Purpose} {
		b = append(b, '\t')
		b = appendCopyNullable(b, s)
	}
	b = append(b, '\t')
	b = appendCopyBool(b, r.BreakGlass)
	b = append(b, '\t')
	b = appendCopyText(b, r.Statement)
	b = append(b, '\t')
	b = appendCopyText(b, r.Fingerprint)
	b = append(b, '\t')
	b = appendCopyArray(b, r.Tables)
	b = append(b, '\t')
	b = appendCopyArray(b, r.Columns)
	b = append(b, '\t')
	b = appendCopyText(b, string(r.Decision))
	b = append(b, '\t')
	b = appendCopyNullable(b, r.Reason)
	b = append(b, '\t')
	b = strconv.AppendInt(b, r.Rows, 10)
	b = append(b, '\t', '{')
	for i, s := range r.Subjects {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, s.String()...)
	}
	b = append(b, '}', '\t')
	b = appendCopyBytea(b, r.Prev[:])
	b = append(b, '\t')
	b = appendCopyBytea(b, r.Hash[:])
	return append(b, '\n')
}

// appendChangeCopy appends c as a COPY text row in the order of
// changeColumns.
func appendChangeCopy(b []byte, c *Change) []byte {
	b = appendCopyText(b, c.Chain)
	b = append(b, '\t')
	b = strconv.AppendInt(b, c.Seq, 10)
	b = append(b, '\t')
	b = appendCopyTime(b, c.CommitTime)
	b = append(b, '\t')
	b = strconv.AppendUint(b, uint64(c.XID), 10)
	b = append(b, '\t')
	b = append(b, c.LSN.String()...)
	b = append(b, '\t')
	b = strconv.AppendInt(b, int64(c.Ordinal), 10)
	b = append(b, '\t')
	b = appendCopyText(b, string(c.Op))
	b = append(b, '\t')
	b = appendCopyText(b, c.Table)
	b = append(b, '\t')
	if c.Subject.IsZero() {
		b = append(b, `\N`...)
	} else {
		b = append(b, c.Subject.String()...)
	}
	b = append(b, '\t')
	b = appendCopyArray(b, c.Columns)
	for _, s := range []string{c.Actor, c.Purpose, c.Role, c.Application} {
		b = append(b, '\t')
		b = appendCopyNullable(b, s)
	}
	b = append(b, '\t')
	b = appendCopyBool(b, c.BreakGlass)
	b = append(b, '\t')
	b = appendCopyBytea(b, c.Prev[:])
	b = append(b, '\t')
	b = appendCopyBytea(b, c.Hash[:])
	return append(b, '\n')
}

// appendCopyText escapes s for COPY's text format: backslash, tab, newline
// and carriage return.
func appendCopyText(b []byte, s string) []byte {
	start := 0
	for i := 0; i < len(s); i++ {
		var esc byte
		switch s[i] {
		case '\\':
			esc = '\\'
		case '\t':
			esc = 't'
		case '\n':
			esc = 'n'
		case '\r':
			esc = 'r'
		default:
			continue
		}
		b = append(append(b, s[start:i]...), '\\', esc)
		start = i + 1
	}
	return append(b, s[start:]...)
}

// appendCopyNullable stores the empty string as NULL.
func appendCopyNullable(b []byte, s string) []byte {
	if s == "" {
		return append(b, `\N`...)
	}
	return appendCopyText(b, s)
}

// appendCopyArray writes a text[] literal, every element double-quoted,
// then escaped for COPY.
func appendCopyArray(b []byte, ss []string) []byte {
	lit := make([]byte, 0, 64)
	lit = append(lit, '{')
	for i, s := range ss {
		if i > 0 {
			lit = append(lit, ',')
		}
		lit = append(lit, '"')
		for j := 0; j < len(s); j++ {
			if s[j] == '"' || s[j] == '\\' {
				lit = append(lit, '\\')
			}
			lit = append(lit, s[j])
		}
		lit = append(lit, '"')
	}
	lit = append(lit, '}')
	return appendCopyText(b, string(lit))
}

func appendCopyBool(b []byte, v bool) []byte {
	if v {
		return append(b, 't')
	}
	return append(b, 'f')
}

// appendCopyBytea writes bytea's hex form, its backslash escaped for COPY.
func appendCopyBytea(b []byte, v []byte) []byte {
	b = append(b, `\\x`...)
	return hex.AppendEncode(b, v)
}

// appendCopyTime writes a timestamp in UTC with microseconds.
func appendCopyTime(b []byte, t time.Time) []byte {
	return t.UTC().AppendFormat(b, "2006-01-02 15:04:05.999999Z07:00")
}
