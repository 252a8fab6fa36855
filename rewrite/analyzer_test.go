package rewrite

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
)

func TestCacheCountsHitsAndMisses(t *testing.T) {
	a := NewAnalyzer(2)
	// SELECT 1 is parsed, then found; SELECT a and SELECT b push it out of
	// both caches; it is parsed again, and SELECT 2 shares its shape.
	for _, sql := range []string{"SELECT 1", "SELECT 1", "SELECT a", "SELECT b", "SELECT 1",
		"SELECT 2"} {
		if _, err := a.Analyze(sql); err != nil {
			t.Fatal(err)
		}
	}
	s := a.Stats()
	if s.Hits != 1 || s.Misses != 4 || s.FastPathHits != 1 || s.Entries != 2 || s.Shapes != 2 {
		t.Fatalf("stats %+v", s)
	}
}

func TestCacheIsBoundedInBytes(t *testing.T) {
	a := NewAnalyzer(1000, CacheBytes(10_000))
	for i := range 100 {
		sql := fmt.Sprintf("SELECT c%d FROM t /* %s */", i, strings.Repeat("x", 1000))
		if _, err := a.Analyze(sql); err != nil {
			t.Fatal(err)
		}
	}
	// The texts take 1 KiB each; their shapes leave the comment out.
	if s := a.Stats(); s.Entries > 10 || s.Entries == 0 || s.Shapes != 100 {
		t.Fatalf("stats %+v; want at most 10 texts and 100 shapes", s)
	}
}

func TestCachedAnalysesAreShared(t *testing.T) {
	a := NewAnalyzer(10)
	one, _ := a.Analyze("SELECT ssn FROM patients")
	two, _ := a.Analyze("SELECT ssn FROM patients")
	if one != two {
		t.Fatal("the same text was analysed twice")
	}
	off := NewAnalyzer(0)
	one, _ = off.Analyze("SELECT ssn FROM patients")
	two, _ = off.Analyze("SELECT ssn FROM patients")
	if one == two || off.Stats().Misses != 2 {
		t.Fatal("a cache of size 0 cached")
	}
}

// TestConcurrentAnalyzeKeepsStderr runs many parses at once. pg_query
// swaps file descriptor 2 during each parse; unserialised, concurrent
// parses can leave it pointing at a closed pipe.
func TestConcurrentAnalyzeKeepsStderr(t *testing.T) {
	var before syscall.Stat_t
	if err := syscall.Fstat(2, &before); err != nil {
		t.Fatal(err)
	}
	a := NewAnalyzer(50)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 300 {
				sql := fmt.Sprintf("SELECT ssn, c%d FROM patients p%d WHERE id = %d", i%97, g, i)
				an, err := a.Analyze(sql)
				if err == nil && (len(an.Statements) != 1 || an.Statements[0].Relations[0].Name != "patients") {
					err = fmt.Errorf("%q: wrong analysis %+v", sql, an.Statements[0])
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	var after syscall.Stat_t
	if err := syscall.Fstat(2, &after); err != nil {
		t.Fatal(err)
	}
	if before.Dev != after.Dev || before.Ino != after.Ino {
		t.Fatal("file descriptor 2 no longer refers to stderr")
	}
	if _, err := fmt.Fprint(os.Stderr, ""); err != nil {
		t.Fatal(err)
	}
}
