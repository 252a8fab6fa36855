package proxy

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/privata/privata/internal/pgtest"
)

// run runs a client program and returns its combined output, failing the
// test when it exits non-zero.
func run(t testing.TB, dir string, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func pgBin(t testing.TB, name string) string {
	t.Helper()
	c := pgtest.Shared(t)
	if c.Local != nil {
		return c.Local.Bin(name)
	}
	return name
}

func TestPsqlSeveralStatementsAndCopyBothWays(t *testing.T) {
	e := newEnv(t, envOptions{})
	psql := pgBin(t, "psql")
	url := e.url("clinician")
	out := run(t, "", nil, psql, "-X", "-Atq", "-v", "ON_ERROR_STOP=1", url, "-c",
		"CREATE TABLE p (n int, s text); INSERT INTO p SELECT g, 'row ' || g FROM generate_series(1, 100) g; "+
			"SELECT sum(n) FROM p")
	if strings.TrimSpace(out) != "5050" {
		t.Fatalf("psql -c output %q, want 5050", out)
	}

	dir := t.TempDir()
	dump := filepath.Join(dir, "p.tsv")
	run(t, "", nil, psql, "-X", "-v", "ON_ERROR_STOP=1", url, "-c", `\copy p TO '`+dump+`'`)
	data, err := os.ReadFile(dump)
	lines := strings.Count(string(data), "\n")
	if err != nil || lines != 100 || !strings.Contains(string(data), "42\trow 42\n") {
		t.Fatalf("\\copy to wrote %d bytes, err %v", len(data), err)
	}
	run(t, "", nil, psql, "-X", "-v", "ON_ERROR_STOP=1", url, "-c", `\copy p FROM '`+dump+`'`)
	out = run(t, "", nil, psql, "-X", "-At", url, "-c", "SELECT count(*), count(DISTINCT n) FROM p")
	if strings.TrimSpace(out) != "200|100" {
		t.Fatalf("after \\copy from: %q, want 200|100", out)
	}
}

func TestPgbenchEveryProtocolMode(t *testing.T) {
	e := newEnv(t, envOptions{})
	pgbench := pgBin(t, "pgbench")
	url := e.url("clinician")
	run(t, "", nil, pgbench, "-i", "-s", "1", "-q", url)
	processed := regexp.MustCompile(`number of transactions actually processed: (\d+)/(\d+)`)
	for _, mode := range []string{"simple", "extended", "prepared"} {
		for _, script := range [][]string{{"-S"}, {"-b", "tpcb-like"}} {
			args := append([]string{"-M", mode, "-c", "4", "-j", "2", "-t", "50", "-n"}, script...)
			out := run(t, "", nil, pgbench, append(args, url)...)
			m := processed.FindStringSubmatch(out)
			if m == nil || m[1] != "200" || m[2] != "200" {
				t.Fatalf("pgbench %v: not all transactions processed:\n%s", args, out)
			}
			if !strings.Contains(out, "number of failed transactions: 0 ") {
				t.Fatalf("pgbench %v: failed transactions:\n%s", args, out)
			}
		}
	}
}

func TestNodePostgres(t *testing.T) {
	e := newEnv(t, envOptions{})
	dir, err := filepath.Abs("../integration/node-pg")
	if err != nil {
		t.Fatal(err)
	}
	run(t, dir, nil, "npm", "ci", "--no-audit", "--no-fund", "--loglevel=error")
	out := run(t, dir, []string{"PRIVATA_URL=" + e.url("clinician")}, "node", "check.js")
	if !strings.Contains(out, "node-pg check: ok") {
		t.Fatalf("node check output:\n%s", out)
	}
}
