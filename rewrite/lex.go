package rewrite

// This file holds a small SQL lexer that follows PostgreSQL's scan.l with
// standard_conforming_strings on. It never builds a parse tree; three callers
// use its tokens:
//
//   - the nesting pre-scan (depth.go), which must never under-count;
//   - the simple-protocol fast path (fastpath.go), which must never treat two
//     texts as alike when PostgreSQL would not; it relies on the simple flag,
//     which is cleared by every construct the lexer does not fully model;
//   - the sqlcommenter reader (comment.go), which needs the block comments
//     that are not inside literals.

type tokKind uint8

const (
	tIdent   tokKind = iota // bare word: keyword or identifier
	tQIdent                 // "quoted identifier" (or U&"...")
	tString                 // plain '...' string constant
	tXString                // E'', B'', X'', N'', U&'' or dollar-quoted constant
	tInt                    // integer constant that fits in int32
	tNum                    // any other numeric constant
	tParam                  // $1
	tOp                     // run of operator characters
	tPunct                  // ( ) [ ] , ; . : :: := and stray characters
	tComment                // /* block comment */ (nested ones included)
)

// token is a span of the text. Line comments and whitespace are not tokens;
// the gap before a token is summarised in gap.
type token struct {
	start, end int32 // texts are at most 1 GiB (maxTextLimit)
	kind       tokKind
	gap        gapClass
}

// gapClass summarises what separates a token from the one before it. Texts
// whose gaps differ only within a class lex and parse alike: the class keeps
// the one distinction PostgreSQL makes, which is whether two string
// constants separated by it are joined (a newline, with no block comment).
type gapClass uint8

const (
	gapNone    gapClass = iota // tokens touch
	gapSpace                   // spaces only, no newline
	gapNewline                 // contains a newline (or ends a line comment)
	gapComment                 // contains a block comment (never joins strings)
)

// lexer tokenizes a statement text. It stops at the first error (an
// unterminated literal or comment); PostgreSQL's parser reports those.
type lexer struct {
	text   string
	pos    int
	toks   []token
	simple bool // false once a construct the fast path must not trust is seen
	broken bool // an unterminated literal, identifier or comment was seen
}

// lex tokenizes text. Block comments are kept as tokens.
func lex(text string) *lexer {
	l := &lexer{text: text, simple: true, toks: make([]token, 0, 16+len(text)/6)}
	l.run()
	return l
}

func (l *lexer) run() {
	gap := gapNone
	for l.pos < len(l.text) && !l.broken {
		c := l.text[l.pos]
		switch {
		case c == ' ' || c == '\t' || c == '\f':
			l.pos++
			gap = max(gap, gapSpace)
		case c == '\n' || c == '\r':
			l.pos++
			gap = max(gap, gapNewline)
		case c == '\v':
			// PostgreSQL 16 treats \v as whitespace, 15 does not.
			l.pos++
			l.simple = false
			gap = max(gap, gapSpace)
		case c == '-' && l.peek(1) == '-':
			l.lineComment()
			gap = max(gap, gapNewline)
		case c == '/' && l.peek(1) == '*':
			start := l.pos
			end := l.blockComment()
			l.emit(tComment, start, end, gap)
			gap = gapComment
		default:
			l.token(gap)
			gap = gapNone
		}
	}
}

func (l *lexer) peek(n int) byte {
	if l.pos+n < len(l.text) {
		return l.text[l.pos+n]
	}
	return 0
}

func (l *lexer) emit(k tokKind, start, end int, gap gapClass) {
	l.toks = append(l.toks, token{kind: k, start: int32(start), end: int32(end), gap: gap})
}

func (l *lexer) lineComment() {
	for l.pos < len(l.text) && l.text[l.pos] != '\n' && l.text[l.pos] != '\r' {
		if l.text[l.pos] >= 0x80 {
			l.simple = false
		}
		l.pos++
	}
}

// blockComment consumes a possibly nested block comment and returns its end.
func (l *lexer) blockComment() int {
	depth := 0
	for l.pos < len(l.text) {
		switch {
		case l.text[l.pos] == '/' && l.peek(1) == '*':
			depth++
			if depth > 1 {
				l.simple = false
			}
			l.pos += 2
		case l.text[l.pos] == '*' && l.peek(1) == '/':
			depth--
			l.pos += 2
			if depth == 0 {
				return l.pos
			}
		default:
			l.pos++
		}
	}
	l.broken = true
	return l.pos
}

func isIdentStart(c byte) bool {
	return c == '_' || (c|0x20 >= 'a' && c|0x20 <= 'z') || c >= 0x80
}

func isIdentCont(c byte) bool {
	return isIdentStart(c) || (c >= '0' && c <= '9') || c == '$'
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// isOpChar reports PostgreSQL's op_chars.
func isOpChar(c byte) bool {
	switch c {
	case '~', '!', '@', '#', '^', '&', '|', '`', '?', '+', '-', '*', '/', '%', '<', '>', '=':
		return true
	}
	return false
}

func (l *lexer) token(gap gapClass) {
	start := l.pos
	c := l.text[l.pos]
	switch {
	case c == '\'':
		l.quoted('\'', false, true)
		l.emit(tString, start, l.pos, gap)
	case c == '"':
		l.quoted('"', false, true)
		if l.pos-start == 2 {
			l.simple = false // zero-length identifier: an error in PostgreSQL
		}
		l.emit(tQIdent, start, l.pos, gap)
	case isIdentStart(c):
		l.word(start, gap)
	case isDigit(c) || (c == '.' && isDigit(l.peek(1))):
		l.number(start, gap)
	case c == '$':
		l.dollar(start, gap)
	case c == ':':
		l.pos++
		switch n := l.peek(0); {
		case n == ':' || n == '=':
			l.pos++
		case isIdentStart(n) || n == '\'' || n == '"':
			l.simple = false // a psql variable, or an array slice bound
		}
		l.emit(tPunct, start, l.pos, gap)
	case isOpChar(c):
		l.operator()
		l.emit(tOp, start, l.pos, gap)
	case c == '(' || c == ')' || c == '[' || c == ']' || c == ',' || c == ';' || c == '.':
		l.pos++
		l.emit(tPunct, start, l.pos, gap)
	default:
		// A backslash, a brace, a control character, or a non-ASCII byte
		// that cannot start an identifier: PostgreSQL rejects most of them.
		l.pos++
		l.simple = false
		l.emit(tPunct, start, l.pos, gap)
	}
}

// quoted consumes a '...' or "..." span. With backslashes, a backslash
// escapes the next byte (E”); with doubling, a doubled quote stands for
// itself (everywhere but in B” and X”).
func (l *lexer) quoted(q byte, backslashes, doubling bool) {
	l.pos++
	for l.pos < len(l.text) {
		c := l.text[l.pos]
		switch {
		case c == '\\':
			l.simple = false
			if backslashes {
				l.pos++
			}
		case c == q && doubling && l.peek(1) == q:
			l.pos++
		case c == q:
			l.pos++
			return
		case c >= 0x80 && q == '"':
			l.simple = false
		}
		l.pos++
	}
	l.broken = true
}

// word lexes an identifier or keyword, and the prefixed constants that start
// with a letter: E”, B”, X”, N”, U&” and U&"".
func (l *lexer) word(start int, gap gapClass) {
	c := l.text[l.pos] | 0x20
	next := l.peek(1)
	switch {
	case next == '\'' && (c == 'e' || c == 'b' || c == 'x' || c == 'n'):
		l.pos++
		l.quoted('\'', c == 'e', c != 'b' && c != 'x')
		l.simple = false
		l.emit(tXString, start, l.pos, gap)
		return
	case c == 'u' && next == '&' && (l.peek(2) == '\'' || l.peek(2) == '"'):
		q := l.peek(2)
		l.pos += 2
		l.quoted(q, false, true)
		l.simple = false
		if q == '"' {
			l.emit(tQIdent, start, l.pos, gap)
		} else {
			l.emit(tXString, start, l.pos, gap)
		}
		return
	}
	for l.pos < len(l.text) && isIdentCont(l.text[l.pos]) {
		if l.text[l.pos] >= 0x80 {
			l.simple = false
		}
		l.pos++
	}
	l.emit(tIdent, start, l.pos, gap)
}

// number lexes a numeric constant. Forms PostgreSQL 15 and 16 read
// differently (0x1F, 1_000, 1..10) or reject (1abc, 1e+) are consumed but
// clear the simple flag.
func (l *lexer) number(start int, gap gapClass) {
	integer := true
	digits := func() {
		for l.pos < len(l.text) && (isDigit(l.text[l.pos]) || l.text[l.pos] == '_') {
			if l.text[l.pos] == '_' {
				l.simple = false
			}
			l.pos++
		}
	}
	digits()
	if l.peek(0) == '.' && l.peek(1) == '.' {
		l.simple = false
	} else if l.peek(0) == '.' {
		integer = false
		l.pos++
		digits()
	}
	if c := l.peek(0) | 0x20; c == 'e' {
		n := l.peek(1)
		if isDigit(n) || ((n == '+' || n == '-') && isDigit(l.peek(2))) {
			integer = false
			l.pos += 2
			digits()
		}
	}
	if l.pos < len(l.text) && (isIdentCont(l.text[l.pos]) || l.text[l.pos] == '.') {
		// Trailing junk, a hexadecimal, octal or binary integer, or a range.
		l.simple = false
		for l.pos < len(l.text) && isIdentCont(l.text[l.pos]) {
			l.pos++
		}
		l.emit(tNum, start, l.pos, gap)
		return
	}
	if integer && fitsInt32(l.text[start:l.pos]) {
		l.emit(tInt, start, l.pos, gap)
		return
	}
	l.emit(tNum, start, l.pos, gap)
}

// fitsInt32 reports whether a string of decimal digits is an int4 constant,
// which PostgreSQL's grammar keeps as an Integer node (else a Float node).
func fitsInt32(digits string) bool {
	v := 0
	for i := 0; i < len(digits); i++ {
		v = v*10 + int(digits[i]-'0')
		if v > 1<<31-1 {
			return false
		}
	}
	return true
}

// dollar lexes $1 parameters and $tag$ dollar-quoted constants.
func (l *lexer) dollar(start int, gap gapClass) {
	l.pos++
	if isDigit(l.peek(0)) {
		for l.pos < len(l.text) && isDigit(l.text[l.pos]) {
			l.pos++
		}
		if l.pos < len(l.text) && isIdentCont(l.text[l.pos]) {
			l.simple = false // trailing junk after a parameter
		}
		l.emit(tParam, start, l.pos, gap)
		return
	}
	tagEnd := l.pos
	if tagEnd < len(l.text) && isIdentStart(l.text[tagEnd]) {
		for tagEnd < len(l.text) && isIdentCont(l.text[tagEnd]) && l.text[tagEnd] != '$' {
			tagEnd++
		}
	}
	if tagEnd >= len(l.text) || l.text[tagEnd] != '$' {
		l.simple = false // a lone $: PostgreSQL rejects it
		l.emit(tPunct, start, l.pos, gap)
		return
	}
	delim := l.text[start : tagEnd+1]
	l.simple = false
	body := tagEnd + 1
	for i := body; i+len(delim) <= len(l.text); i++ {
		if l.text[i] == '$' && l.text[i:i+len(delim)] == delim {
			l.pos = i + len(delim)
			l.emit(tXString, start, l.pos, gap)
			return
		}
	}
	l.pos = len(l.text)
	l.broken = true
}

// operator consumes a run of operator characters. Like PostgreSQL, it stops
// before a comment start inside the run.
func (l *lexer) operator() {
	start := l.pos
	for l.pos < len(l.text) && isOpChar(l.text[l.pos]) {
		if l.pos > start && (l.text[l.pos] == '-' && l.text[l.pos-1] == '-' ||
			l.text[l.pos] == '*' && l.text[l.pos-1] == '/') {
			l.pos--
			l.simple = false
			return
		}
		l.pos++
	}
}

// isKeyword reports whether an identifier token is the keyword kw (lower
// case), comparing ASCII letters without regard to case.
func (l *lexer) isKeyword(t token, kw string) bool {
	if t.kind != tIdent || int(t.end-t.start) != len(kw) {
		return false
	}
	for i := 0; i < len(kw); i++ {
		if l.text[int(t.start)+i]|0x20 != kw[i] {
			return false
		}
	}
	return true
}

// text of a token.
func (l *lexer) tokText(t token) string { return l.text[t.start:t.end] }
