package main

import (
	"bufio"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/privata/privata/internal/localpg"
	"github.com/privata/privata/internal/synthea"
)

// demoRun is a running `privata demo`.
type demoRun struct {
	cmd    *exec.Cmd
	out    strings.Builder // stdout, up to the serving notice
	stderr strings.Builder
	done   chan error
}

// startDemo runs `privata demo` on data directory dir and returns once it
// says that it serves, with what it printed.
func startDemo(t *testing.T, dir string) *demoRun {
	t.Helper()
	d := &demoRun{done: make(chan error, 1)}
	d.cmd = exec.Command(privata(t), "demo", "--data", dir, "--listen", "127.0.0.1:0",
		"--policy", filepath.Join("..", "..", "examples", "clinic", "policy.yaml"))
	d.cmd.Stderr = &d.stderr
	stdout, err := d.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	serving := make(chan struct{})
	go func() {
		s := bufio.NewScanner(stdout)
		closed := false
		for s.Scan() {
			if !closed {
				d.out.WriteString(s.Text() + "\n")
			}
			if !closed && strings.HasPrefix(s.Text(), "Ctrl-C stops") {
				close(serving)
				closed = true
			}
		}
		io.Copy(io.Discard, stdout)
		d.done <- d.cmd.Wait()
	}()
	t.Cleanup(func() {
		if d.cmd.ProcessState == nil {
			d.cmd.Process.Signal(os.Interrupt)
			<-d.done
		}
	})
	// Not a timed assertion: a bound for a run that hangs.
	select {
	case <-serving:
	case err := <-d.done:
		d.done <- err
		t.Fatalf("privata demo ended before serving: %v\n%s%s", err, d.out.String(), d.stderr.String())
	case <-time.After(5 * time.Minute):
		t.Fatalf("privata demo is not serving after 5 minutes\n%s%s", d.out.String(), d.stderr.String())
	}
	return d
}

// interrupt sends SIGINT and waits for the demo to end; it must end well.
func (d *demoRun) interrupt(t *testing.T) {
	t.Helper()
	d.cmd.Process.Signal(syscall.SIGINT)
	select {
	case err := <-d.done:
		if err != nil {
			t.Fatalf("privata demo ended with %v after SIGINT\n%s", err, d.stderr.String())
		}
	case <-time.After(2 * time.Minute):
		t.Fatalf("privata demo still running 2 minutes after SIGINT")
	}
}

// url returns the psql URL the demo printed for region.
func (d *demoRun) url(t *testing.T, region, user string) string {
	t.Helper()
	m := regexp.MustCompile(`region ` + region + ` +psql '([^']+)'`).FindStringSubmatch(d.out.String())
	if m == nil {
		t.Fatalf("no URL for region %s in:\n%s", region, d.out.String())
	}
	return strings.Replace(m[1], "clinician@", user+"@", 1)
}

// regionCounts parses the tour's "Rows per region" table: table -> us, eu.
func (d *demoRun) regionCounts(t *testing.T) map[string][2]int {
	t.Helper()
	text := d.out.String()
	_, after, ok := strings.Cut(text, "Rows per region")
	if !ok {
		t.Fatalf("no rows per region in:\n%s", text)
	}
	lines := strings.Split(after, "\n")
	if f := strings.Fields(lines[1]); len(f) != 2 || f[0] != "us" || f[1] != "eu" {
		t.Fatalf("regions of the table: %q", lines[1])
	}
	counts := map[string][2]int{}
	for _, l := range lines[2:] {
		f := strings.Fields(l)
		if len(f) != 3 {
			break
		}
		us, err1 := strconv.Atoi(f[1])
		eu, err2 := strconv.Atoi(f[2])
		if err := errors.Join(err1, err2); err != nil {
			t.Fatalf("%q: %v", l, err)
		}
		counts[f[0]] = [2]int{us, eu}
	}
	return counts
}

// csvCount counts the records of a data set's file (0 when it has none).
func csvCount(t *testing.T, set, table string) int {
	t.Helper()
	dir, err := synthea.Dir(set)
	if err != nil {
		t.Fatal(err)
	}
	_, records, err := readCSV(filepath.Join(dir, table+".csv"))
	if errors.Is(err, os.ErrNotExist) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return len(records)
}

// psql runs a query with the real psql and returns its unaligned output.
func psql(t *testing.T, url, query string) string {
	t.Helper()
	bin, err := localpg.BinDir()
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(filepath.Join(bin, "psql"), "-X", "-At", "-d", url, "-c", query).
		CombinedOutput()
	if err != nil {
		t.Fatalf("psql %s: %v\n%s", query, err, out)
	}
	return strings.TrimSpace(string(out))
}

// processesUnder lists the processes whose command line names dir.
func processesUnder(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		cmdline := strings.ReplaceAll(string(b), "\x00", " ")
		if strings.Contains(cmdline, dir) {
			found = append(found, e.Name()+": "+cmdline)
		}
	}
	return found
}

// The demo end to end, twice on the same data: the first run creates the
// schema through Privata and loads both Synthea sets, each region's
// cluster holds its patients' rows, psql reads through Privata as a
// policy role, SIGINT leaves no process; the second run applies no
// migration and loads nothing, and finds the same rows.
func TestDemoLoadsBothSetsAndRestartsOnTheSameData(t *testing.T) {
	// The clusters' directories must be reachable by the postgres OS user
	// when the tests run as root: not under t.TempDir (0700).
	dir, err := os.MkdirTemp("", "privata-demo-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "dev")

	d := startDemo(t, data)
	out := d.out.String()
	for _, want := range []string{"eu (new), us (new)",
		"region us   13 of 13 migrations applied now (0 before)",
		"region eu   13 of 13 migrations applied now (0 before)",
		"data/us   27 patients", "data/se   13 patients"} {
		if !strings.Contains(out, want) {
			t.Errorf("the first run does not say %q:\n%s", want, out)
		}
	}
	// Every classified file of each set landed in its region: the US set
	// in us, the Swedish one in eu.
	counts := d.regionCounts(t)
	checked := 0
	for _, table := range synthea.Tables {
		want := [2]int{csvCount(t, "us", table), csvCount(t, "se", table)}
		got, ok := counts[table]
		if !ok {
			continue // not classified: the tour does not count it
		}
		checked++
		if got != want {
			t.Errorf("%s: us, eu hold %v rows; the CSV files have %v", table, got, want)
		}
	}
	if checked != 9 {
		t.Errorf("the tour counted %d tables, want the 9 classified ones:\n%s", checked, out)
	}
	if counts["patients"] != [2]int{27, 13} {
		t.Errorf("patients per region: %v, want 27 and 13", counts["patients"])
	}
	for _, want := range []string{"clinician  Eustolia154  Mayert710  999-10-4053",
		"reception  E.           M.         *******4053", "eu 521, us 438; total 959"} {
		if !strings.Contains(out, want) {
			t.Errorf("the tour does not show %q:\n%s", want, out)
		}
	}

	// The patient's audit trail: the loader's inserts, from the WAL, and
	// each role's read, from the proxy, with actor, role and purpose.
	for _, re := range []string{
		`change +demo +clinician +treatment +insert +privata_identity\.patients +1\n`,
		`change +demo +clinician +treatment +insert +privata_clinical\.encounters +14\n`,
		`read +demo +clinician +treatment +allowed +public\.patients +1\n`,
		`read +demo +reception +- +masked +public\.patients +1\n`,
		`read +demo +analyst +research +masked +public\.patients +1\n`} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("the audit trail lacks %s:\n%s", re, out)
		}
	}

	// A real psql, through Privata, as policy roles: the analyst counts
	// patients and sees no SSN; the EU clinician sees the Swedish ones'.
	if got := psql(t, d.url(t, "us", "analyst"),
		"SELECT count(*), count(ssn) FROM patients"); got != "27|0" {
		t.Errorf("analyst in us: count, count(ssn) = %q, want 27|0", got)
	}
	if got := psql(t, d.url(t, "eu", "clinician"),
		"SELECT count(*), count(ssn) FROM patients"); got != "13|13" {
		t.Errorf("clinician in eu: count, count(ssn) = %q, want 13|13", got)
	}

	d.interrupt(t)
	if ps := processesUnder(t, data); len(ps) > 0 {
		t.Fatalf("processes left after SIGINT:\n%s", strings.Join(ps, "\n"))
	}
	for _, c := range []string{"us", "eu"} {
		if _, err := os.Stat(filepath.Join(data, c, "postmaster.pid")); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("cluster %s still has a postmaster.pid (%v)", c, err)
		}
	}

	// Again, on the same data.
	d = startDemo(t, data)
	out = d.out.String()
	for _, want := range []string{"eu (reused), us (reused)",
		"Policy up to date on cluster eu", "Policy up to date on cluster us",
		"region us    0 of 13 migrations applied now (13 before)",
		"region eu    0 of 13 migrations applied now (13 before)",
		"data/us   already loaded", "data/se   already loaded"} {
		if !strings.Contains(out, want) {
			t.Errorf("the second run does not say %q:\n%s", want, out)
		}
	}
	if again := d.regionCounts(t); !mapsEqual(again, counts) {
		t.Errorf("the second run counts %v, the first %v", again, counts)
	}
	d.interrupt(t)
	if ps := processesUnder(t, data); len(ps) > 0 {
		t.Fatalf("processes left after the second SIGINT:\n%s", strings.Join(ps, "\n"))
	}
}

func mapsEqual(a, b map[string][2]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
