package rewrite

import (
	"fmt"
	"strings"
	"sync"
	"unicode/utf8"

	pg "github.com/pganalyze/pg_query_go/v5"
)

// pgMu serialises every call into pg_query. Each call redirects the
// process's stderr (file descriptor 2) to a pipe and back with dup2; two
// calls at once can leave fd 2 pointing at a closed pipe, after which a
// write to stderr kills a Go program with SIGPIPE. See doc.go.
var pgMu sync.Mutex

func parse(text string) (*pg.ParseResult, error) {
	pgMu.Lock()
	defer pgMu.Unlock()
	return pg.Parse(text)
}

func fingerprint(text string) (string, error) {
	pgMu.Lock()
	defer pgMu.Unlock()
	return pg.Fingerprint(text)
}

func parsePlpgsql(text string) (string, error) {
	pgMu.Lock()
	defer pgMu.Unlock()
	return pg.ParsePlPgSqlToJSON(text)
}

// span returns a statement's byte span in a text of n bytes; pg_query
// gives a length of 0 for "to the end".
func span(raw *pg.RawStmt, n int) (loc, length int) {
	loc = min(int(raw.StmtLocation), n)
	length = int(raw.StmtLen)
	if length == 0 || loc+length > n {
		length = n - loc
	}
	return loc, length
}

// guard checks a text before pg_query sees it: its size, its encoding and
// how deep its parse tree could be. It returns the text's tokens.
func guard(text string, opt *options) (*lexer, *Error) {
	if len(text) > opt.maxBytes {
		return nil, &Error{
			SQLState: CodeProgramLimit,
			Message:  "statement text too long",
			Detail: fmt.Sprintf("The text is %d bytes long; Privata analyses texts "+
				"up to %d bytes.", len(text), opt.maxBytes),
			Hint: "Split the statement, or load bulk data with COPY.",
		}
	}
	if i := strings.IndexByte(text, 0); i >= 0 {
		return nil, &Error{
			SQLState: CodeCharNotInRepertoire,
			Message:  `invalid byte sequence for encoding "UTF8": 0x00`,
			Position: charPosition(text, i),
		}
	}
	if !utf8.ValidString(text) {
		return nil, &Error{
			SQLState: CodeCharNotInRepertoire,
			Message:  `invalid byte sequence for encoding "UTF8"`,
			Position: charPosition(text, firstInvalid(text)),
		}
	}
	l := lex(text)
	if nestingDepth(l) > opt.maxDepth {
		return nil, tooDeep()
	}
	return l, nil
}

// firstInvalid returns the offset of the first byte that is not part of a
// valid UTF-8 sequence.
func firstInvalid(s string) int {
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			return i
		}
		i += size
	}
	return len(s)
}

// fail records the first error found while walking.
func (w *walker) fail(e *Error) {
	if w.err == nil {
		w.err = e
	}
}

func deparse(tree *pg.ParseResult) (string, error) {
	pgMu.Lock()
	defer pgMu.Unlock()
	return pg.Deparse(tree)
}
