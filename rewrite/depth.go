package rewrite

// pg_query's C parser keeps its own stack for the grammar, so deeply nested
// brackets end in a clean "memory exhausted" error. Left-associative chains
// (a+a+a..., x::int::int..., SELECT 1 UNION SELECT 1 UNION ...) do not: the
// grammar builds them without growing its stack, and the C code that then
// serialises the tree recurses once per level and overflows the thread's
// stack (a crash, not an error) somewhere past 20,000 levels. Go's protobuf
// decoder refuses trees deeper than 10,000 messages.
//
// nestingDepth bounds, from tokens alone, how deep the tree of a text can
// be, so that Analyze refuses a text before pg_query sees it. The bound
// counts one level per bracket, CASE, chainable operator, set operation and
// JOIN. Chains restart at the tokens no chain can span: commas, semicolons,
// AND and OR (which the grammar flattens into one list), WHEN, THEN and
// ELSE. Set operations and joins never restart within a bracket.

// frame is one open bracket (or CASE) while scanning.
type frame struct {
	closer byte // ')' or ']', 'E' for CASE ... END, 0 for the text itself
	chain  int  // chain tokens in the current segment
	child  int  // deepest closed bracket in the current segment
	best   int  // deepest finished segment
	setops int
	joins  int
}

func (f *frame) endSegment() {
	f.best = max(f.best, f.chain+f.child)
	f.chain, f.child = 0, 0
}

func (f *frame) depth() int {
	f.endSegment()
	return f.best + f.setops + f.joins + 1
}

// nestingDepth returns the bound for the lexed text.
func nestingDepth(l *lexer) int {
	stack := []frame{{}}
	deepest := 0
	closeTop := func() {
		d := stack[len(stack)-1].depth()
		stack = stack[:len(stack)-1]
		top := &stack[len(stack)-1]
		top.child = max(top.child, d)
	}
	for _, t := range l.toks {
		top := &stack[len(stack)-1]
		switch t.kind {
		case tOp:
			top.chain += opChainLength(l.tokText(t))
		case tPunct:
			switch c := l.text[t.start]; {
			case c == '(' || c == '[':
				closer := byte(')')
				if c == '[' {
					closer = ']'
				}
				stack = append(stack, frame{closer: closer})
			case c == ')' || c == ']':
				// Close CASE frames left open by a malformed text, then the
				// bracket itself if there is one.
				for len(stack) > 1 && stack[len(stack)-1].closer == 'E' {
					closeTop()
				}
				if len(stack) > 1 {
					closeTop()
				}
			case c == ',':
				top.endSegment()
			case c == ';':
				for len(stack) > 1 {
					closeTop()
				}
				deepest = max(deepest, stack[0].depth())
				stack[0] = frame{}
			case t.end-t.start == 2 && c == ':' && l.text[t.start+1] == ':':
				top.chain++
			}
		case tIdent:
			switch {
			case l.isKeyword(t, "case"):
				stack = append(stack, frame{closer: 'E'})
			case l.isKeyword(t, "end"):
				if top.closer == 'E' {
					closeTop()
				}
			case l.isKeyword(t, "and") || l.isKeyword(t, "or") || l.isKeyword(t, "when") ||
				l.isKeyword(t, "then") || l.isKeyword(t, "else"):
				top.endSegment()
			case l.isKeyword(t, "union") || l.isKeyword(t, "intersect") || l.isKeyword(t, "except"):
				top.setops++
			case l.isKeyword(t, "join"):
				top.joins++
			case isChainKeyword(l, t):
				top.chain++
			}
		}
	}
	for len(stack) > 1 {
		closeTop()
	}
	return max(deepest, stack[0].depth())
}

// opChainLength is how many operators a run of operator characters can
// stand for: PostgreSQL splits runs of + and - into one-character
// operators (a+-+-b), and reads other runs as one operator.
func opChainLength(run string) int {
	for i := 0; i < len(run); i++ {
		if run[i] != '+' && run[i] != '-' {
			return 1
		}
	}
	return len(run)
}

var chainKeywords = []string{"is", "isnull", "notnull", "not", "like", "ilike", "similar",
	"between", "in", "at", "collate", "operator", "overlaps", "escape"}

func isChainKeyword(l *lexer, t token) bool {
	n := t.end - t.start
	if n < 2 || n > 8 {
		return false
	}
	for _, kw := range chainKeywords {
		if l.isKeyword(t, kw) {
			return true
		}
	}
	return false
}
