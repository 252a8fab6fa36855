package audit

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// childConfig is what the kill test tells its child.
type childConfig struct {
	URL string
	Dir string
	Run int
}

// runAppendChild appends read records from four goroutines, as proxy
// sessions would, and prints "ack <fingerprint>" after each Append returns,
// until it is killed.
func runAppendChild(arg string) int {
	var cfg childConfig
	if err := json.Unmarshal([]byte(arg), &cfg); err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 2
	}
	ctx := context.Background()
	s, err := Open(ctx, "kill", cfg.URL)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 2
	}
	w, err := OpenWriter(ctx, s, WriterOptions{Dir: cfg.Dir})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 2
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				fp := fmt.Sprintf("run%d-g%d-%d", cfg.Run, g, i)
				r := sampleRead(0, randomPseudonym())
				r.Fingerprint = fp
				if err := w.Append(ctx, r); err != nil {
					fmt.Fprintln(os.Stderr, "child:", err)
					os.Exit(1)
				}
				// One write(2) per line: lines from different goroutines do
				// not interleave on the pipe.
				os.Stdout.WriteString("ack " + fp + "\n")
			}
		})
	}
	wg.Wait()
	return 0
}

func TestWriterSurvivesKill9(t *testing.T) {
	db, s := newStore(t)
	dir := filepath.Join(t.TempDir(), "spool")
	acked := map[string]bool{}
	for run := range 8 {
		arg, _ := json.Marshal(childConfig{URL: db.URL(), Dir: dir, Run: run})
		cmd := exec.Command(os.Args[0], "-test.run=^$", "-audit.append-child="+string(arg))
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		var got []string
		started, finished := make(chan struct{}), make(chan struct{})
		go func() {
			defer close(finished)
			readAcks(out, func(fp string) {
				if got = append(got, fp); len(got) == 200 {
					close(started)
				}
			})
		}()
		// Let the child get going, then kill it at a random point.
		select {
		case <-started:
		case <-finished:
		}
		time.Sleep(time.Duration(rand.IntN(300)) * time.Millisecond)
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-finished
		cmd.Wait()
		if len(got) < 200 {
			t.Fatalf("run %d: the child stopped after %d acks: %s", run, len(got), stderr.String())
		}
		for _, fp := range got {
			acked[fp] = true
		}
	}

	// A last start ships what the killed children left in the spool.
	w := newWriter(t, s, WriterOptions{Dir: dir})
	mustFlush(t, w)

	ctx := context.Background()
	counts := map[string]int{}
	rows, err := s.pool.Query(ctx, "SELECT fingerprint FROM privata_audit.read_log")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var fp string
		if err := rows.Scan(&fp); err != nil {
			t.Fatal(err)
		}
		counts[fp]++
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	missing, twice := 0, 0
	for fp := range acked {
		if counts[fp] == 0 {
			missing++
		}
	}
	for _, c := range counts {
		if c > 1 {
			twice++
		}
	}
	if missing > 0 || twice > 0 {
		t.Fatalf("%d acknowledged records missing from the store, %d stored more than once "+
			"(%d acknowledged, %d stored)", missing, twice, len(acked), len(counts))
	}
	reps := verifyAll(t, s, nil)
	if len(reps) != 1 || reps[0].Records != int64(len(counts)) {
		t.Fatalf("verify: %v, want one chain holding all %d records", reps, len(counts))
	}
	t.Logf("%d acknowledged, %d stored (the rest were written but killed before the ack)",
		len(acked), len(counts))
}

// readAcks calls ack with the fingerprint of every complete "ack" line; a
// line the kill cut short was not acknowledged.
func readAcks(r io.Reader, ack func(string)) {
	br := bufio.NewReader(r)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		if fp, ok := strings.CutPrefix(strings.TrimSuffix(line, "\n"), "ack "); ok {
			ack(fp)
		}
	}
}
