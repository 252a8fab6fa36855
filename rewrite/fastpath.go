package rewrite

import (
	"strings"

	pg "github.com/pganalyze/pg_query_go/v5"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// The simple-protocol fast path. Clients that send statements with their
// constants inline (pgbench -M simple, psql, ORMs in simple mode) send a
// new text for every value. Two texts whose tokens are the same except for
// the content of plain string and numeric constants, and whose whitespace
// and comments separate tokens alike, have the same parse tree up to those
// constants' values and the nodes' locations. Their analyses are the same
// too, once the parts that depend on the text are redone: statement spans
// and sqlcommenter tags. Analyses that read a constant's content (SET
// values, set_config() names, function bodies) are never shared.
//
// shapeKey encodes a text's tokens with constants replaced by their class.
// Texts with the same key share a cache entry. The lexer refuses (simple =
// false) everything it does not model exactly.

// Bytes that never occur in a text the fast path accepts: NUL is refused
// by guard, other control characters clear the simple flag.
const (
	keyToken   = "\x00"
	keyLiteral = "\x01"
)

// shapeKey returns the fast-path key of a lexed text, or "" when the text
// may not take the fast path.
func shapeKey(l *lexer) string {
	if !l.simple || l.broken {
		return ""
	}
	var b strings.Builder
	b.Grow(len(l.text) + 2*len(l.toks))
	for _, t := range l.toks {
		if t.kind == tComment {
			continue
		}
		b.WriteString(keyToken)
		b.WriteByte('0' + byte(t.gap))
		switch t.kind {
		case tString:
			b.WriteString(keyLiteral + "s")
		case tInt:
			b.WriteString(keyLiteral + "i") // an Integer node
		case tNum:
			b.WriteString(keyLiteral + "f") // a Float node
		default:
			b.WriteString(l.tokText(t))
		}
	}
	return b.String()
}

// constantsCovered reports whether every constant token of a lexed text
// became an A_Const node of its parse tree: then the tree depends on the
// constants only through A_Const values, which neither the analysis nor
// pg_query's fingerprint reads. Constants elsewhere (COPY options, FETCH
// counts, NOTIFY payloads, the second of two joined strings) end up in
// other nodes, and the text must not share its analysis. A negative number
// is folded into an A_Const at its minus sign.
func constantsCovered(tree *pg.ParseResult, l *lexer) bool {
	at := map[int32]bool{}
	collectConsts(tree.ProtoReflect(), at)
	prev := -1
	for i, t := range l.toks {
		if t.kind == tComment {
			continue
		}
		if t.kind == tString || t.kind == tInt || t.kind == tNum {
			folded := prev >= 0 && l.toks[prev].kind == tOp && l.tokText(l.toks[prev]) == "-" &&
				at[l.toks[prev].start]
			if !at[t.start] && !folded {
				return false
			}
		}
		prev = i
	}
	return true
}

func collectConsts(m protoreflect.Message, at map[int32]bool) {
	if c, ok := m.Interface().(*pg.A_Const); ok {
		at[c.Location] = true
		return
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.Kind() != protoreflect.MessageKind || fd.IsMap():
		case fd.IsList():
			for i := 0; i < v.List().Len(); i++ {
				collectConsts(v.List().Get(i).Message(), at)
			}
		default:
			collectConsts(v.Message(), at)
		}
		return true
	})
}

// shapeEntry is a cached analysis and how to find its statements' spans in
// another text of the same shape.
type shapeEntry struct {
	an *Analysis
	// starts[i] is the ordinal of the semicolon statement i starts after,
	// or -1 for the start of the text; ends[i] is the ordinal of the
	// semicolon it ends at, or -1 for the end of the text.
	starts, ends []int
}

func semicolons(l *lexer) []token {
	var out []token
	for _, t := range l.toks {
		if t.kind == tPunct && t.end-t.start == 1 && l.text[t.start] == ';' {
			out = append(out, t)
		}
	}
	return out
}

// newShapeEntry makes an entry of an analysis, or returns nil when a
// statement's span does not start and end at the text's edges or at
// semicolons.
func newShapeEntry(an *Analysis, l *lexer) *shapeEntry {
	semis := semicolons(l)
	e := &shapeEntry{an: an}
	find := func(offset int, atEnd bool) (int, bool) {
		for i, t := range semis {
			if atEnd && int(t.start) == offset || !atEnd && int(t.end) == offset {
				return i, true
			}
		}
		return 0, false
	}
	for _, st := range an.Statements {
		start, end := -1, -1
		var ok bool
		if st.Location != 0 {
			if start, ok = find(st.Location, false); !ok {
				return nil
			}
		}
		if st.Location+st.Length != len(l.text) {
			if end, ok = find(st.Location+st.Length, true); !ok {
				return nil
			}
		}
		e.starts = append(e.starts, start)
		e.ends = append(e.ends, end)
	}
	return e
}

// apply returns the analysis of the lexed text, which has the entry's
// shape.
func (e *shapeEntry) apply(l *lexer) *Analysis {
	var semis []token
	if len(e.an.Statements) > 1 || len(e.starts) > 0 && (e.starts[0] >= 0 || e.ends[0] >= 0) {
		semis = semicolons(l)
	}
	out := &Analysis{Tags: commentTags(l), shareable: true}
	if len(e.an.Statements) == 0 {
		return out
	}
	out.Statements = make([]*Statement, len(e.an.Statements))
	copies := make([]Statement, len(e.an.Statements))
	for i, st := range e.an.Statements {
		start, end := 0, len(l.text)
		if s := e.starts[i]; s >= 0 {
			if s >= len(semis) {
				return nil
			}
			start = int(semis[s].end)
		}
		if s := e.ends[i]; s >= 0 {
			if s >= len(semis) {
				return nil
			}
			end = int(semis[s].start)
		}
		copies[i] = *st
		copies[i].Location, copies[i].Length = start, end-start
		out.Statements[i] = &copies[i]
	}
	return out
}
