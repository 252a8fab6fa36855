package rewrite

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestDbgSlow(t *testing.T) {
	dir := os.Getenv("DIR")
	files, _ := filepath.Glob(filepath.Join(dir, "*"))
	for _, f := range files {
		b, _ := os.ReadFile(f)
		lines := strings.Split(string(b), "\n")
		text, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[1], "string("), ")"))
		if err != nil {
			t.Log(f, err)
			continue
		}
		var seed uint64
		if len(lines) > 2 && strings.HasPrefix(lines[2], "uint64(") {
			seed, _ = strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(lines[2], "uint64("), ")"), 10, 64)
		}
		start := time.Now()
		variant := mutateConstants(rand.New(rand.NewPCG(seed, seed>>7)), text)
		a := NewAnalyzer(4)
		a.Analyze(text)
		a.Analyze(variant)
		NewAnalyzer(0).Analyze(variant)
		if d := time.Since(start); d > 50*time.Millisecond {
			t.Logf("%v %s %.200q", d, filepath.Base(f), text)
		}
	}
}
