package rewrite

import (
	"errors"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
)

// fuzzSeeds are the texts every fuzz target starts from.
func fuzzSeeds() []string {
	var seeds []string
	for _, c := range corpus {
		seeds = append(seeds, c.sql)
	}
	for _, c := range tagCases {
		seeds = append(seeds, c.sql)
	}
	for _, c := range roleCases {
		seeds = append(seeds, c.sql)
	}
	for _, c := range errorCases {
		seeds = append(seeds, c.sql)
	}
	return append(seeds,
		"SELECT 1"+strings.Repeat("+1", 200),
		"SELECT "+strings.Repeat("(", 300)+"1"+strings.Repeat(")", 300),
		"DO $$DECLARE r record; BEGIN FOR r IN SELECT * FROM t LOOP RAISE NOTICE '%', r; "+
			"END LOOP; END$$",
		"SELECT 'a' /*actor='x'*/; SELECT $1::text -- c")
}

// FuzzAnalyze feeds Analyze arbitrary text. It must never crash, answer
// errors as *Error values that quote no constant, keep its analyses
// consistent, and answer from its caches what a fresh Analyzer answers.
func FuzzAnalyze(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s)
	}
	cached := NewAnalyzer(64)
	f.Fuzz(func(t *testing.T, text string) {
		an, err := cached.Analyze(text)
		fresh, freshErr := NewAnalyzer(0).Analyze(text)
		if !reflect.DeepEqual(err, freshErr) || !reflect.DeepEqual(an, fresh) {
			t.Fatalf("cached %+v, %v; fresh %+v, %v", an, err, fresh, freshErr)
		}
		if err != nil {
			checkError(t, text, err)
			return
		}
		checkAnalysis(t, text, an)
	})
}

func checkError(t *testing.T, text string, err error) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %T is not an *Error: %v", err, err)
	}
	if len(e.SQLState) != 5 || e.Message == "" {
		t.Fatalf("malformed error %+v", e)
	}
	if e.Position < 0 || e.Position > len(text)+1 {
		t.Fatalf("position %d in a text of %d bytes", e.Position, len(text))
	}
	l := lex(text)
	for _, tok := range l.toks {
		switch tok.kind {
		case tString, tXString, tInt, tNum:
			if lit := l.tokText(tok); len(lit) > 1 && strings.Contains(e.Message, `"`+lit+`"`) {
				t.Fatalf("error quotes the constant %q: %q", lit, e.Message)
			}
		}
	}
}

func checkAnalysis(t *testing.T, text string, an *Analysis) {
	t.Helper()
	end := 0
	for _, st := range an.Statements {
		if st.Location < end || st.Length < 0 || st.Location+st.Length > len(text) {
			t.Fatalf("span %d+%d after %d in %d bytes", st.Location, st.Length, end, len(text))
		}
		end = st.Location + st.Length
		if st.Tag == "" || st.Tag == "???" || st.Kind.String() == "unknown" || st.Fingerprint == "" {
			t.Fatalf("statement %+v", st)
		}
		for _, c := range st.Columns {
			if c.Relation >= len(st.Relations) || c.Relation < 0 && len(c.Candidates) == 0 {
				t.Fatalf("column %+v of %d relations", c, len(st.Relations))
			}
			for _, i := range c.Candidates {
				if i < 0 || i >= len(st.Relations) {
					t.Fatalf("column %+v of %d relations", c, len(st.Relations))
				}
			}
		}
	}
}

// FuzzFastPath checks the fast path's property on texts the fuzzer makes:
// a text and a variant with other constants, whitespace and comments. When
// they share a shape and the first's analysis is shared, they parse to the
// same tree up to constants, and the analysis the fast path gives the
// variant is the one a full parse gives.
func FuzzFastPath(f *testing.F) {
	for i, s := range fuzzSeeds() {
		f.Add(s, uint64(i))
	}
	f.Fuzz(func(t *testing.T, text string, seed uint64) {
		variant := mutateConstants(rand.New(rand.NewPCG(seed, seed>>7)), text)
		key := shapeKey(lex(text))
		if key == "" || key != shapeKey(lex(variant)) {
			return
		}
		a := NewAnalyzer(4)
		first, err := a.Analyze(text)
		if err != nil {
			return
		}
		if first.shareable {
			checkSameTree(t, text, variant)
		}
		checkFastPath(t, a, variant)
	})
}
