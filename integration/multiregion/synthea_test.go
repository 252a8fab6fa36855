package multiregion

import (
	"encoding/csv"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/privata/privata/internal/synthea"
)

// csvRows reads a data set's file: the header (lower case) and the rows.
func csvRows(t *testing.T, set, table string) ([]string, [][]string) {
	t.Helper()
	dir, err := synthea.Dir(set)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join(dir, table+".csv"))
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	header := make([]string, len(rows[0]))
	for i, h := range rows[0] {
		header[i] = strings.ToLower(h)
	}
	return header, rows[1:]
}

// load inserts a data set through Privata, one row per statement, in the
// given mode (bound parameters, or literals with the simple protocol).
// Empty fields are NULL.
func load(t *testing.T, c *pgx.Conn, set string, mode pgx.QueryExecMode) map[string]int {
	t.Helper()
	counts := map[string]int{}
	for _, table := range synthea.Tables {
		header, rows := csvRows(t, set, table)
		if header == nil {
			continue
		}
		marks := make([]string, len(header))
		for i := range marks {
			marks[i] = fmt.Sprintf("$%d", i+1)
		}
		sql := fmt.Sprintf("INSERT INTO %s (%s) VALUES (%s)", pgx.Identifier{table}.Sanitize(),
			strings.Join(header, ", "), strings.Join(marks, ", "))
		for _, row := range rows {
			args := []any{mode}
			for _, v := range row {
				if v == "" {
					args = append(args, nil)
				} else {
					args = append(args, v)
				}
			}
			if _, err := c.Exec(ctx, sql, args...); err != nil {
				t.Fatalf("%s %s: %v", set, table, err)
			}
		}
		counts[table] = len(rows)
	}
	return counts
}

// column returns one column of a data set's file.
func column(t *testing.T, set, table, name string) []string {
	t.Helper()
	header, rows := csvRows(t, set, table)
	var out []string
	for i, h := range header {
		if h != name {
			continue
		}
		for _, r := range rows {
			if r[i] != "" {
				out = append(out, r[i])
			}
		}
	}
	return out
}

// Both Synthea sets loaded by a US client through Privata: every Swedish
// patient's identity is in the EU cluster, and none of it anywhere in the
// US cluster; a US analyst counts diagnoses of both regions.
func TestSyntheaSetsLandInTheirRegions(t *testing.T) {
	if len(column(t, "se", "patients", "ssn")) != 13 {
		t.Fatalf("the Swedish data set changed: 13 patients expected")
	}
	w := newWorld(t, shared(t, "us", "eu"), clinicPolicy)
	w.start(t)
	c := w.client(t, "clinician", "treatment")
	usCounts := load(t, c, "us", pgx.QueryExecModeCacheStatement)
	seCounts := load(t, c, "se", pgx.QueryExecModeSimpleProtocol)
	us, eu := w.regions["us"], w.regions["eu"]

	// Each cluster holds its region's patients, and every row of theirs.
	for region, want := range map[string]map[string]int{"us": usCounts, "eu": seCounts} {
		r := w.regions[region]
		for _, table := range synthea.Tables {
			if got := r.count(t, "SELECT count(*) FROM "+table); got != want[table] &&
				!(region == "eu" && want[table] == 0) {
				t.Errorf("%s.%s holds %d rows, want %d", region, table, got, want[table])
			}
		}
	}
	for _, id := range column(t, "se", "patients", "id") {
		if u, e := w.inEach(t, id); u != 0 || e != 1 {
			t.Fatalf("Swedish patient %s: %d in us, %d in eu", id, u, e)
		}
	}

	// No Swedish identity value anywhere in the US cluster: its whole dump
	// is searched for each SSN, first and last name and address.
	dump, err := exec.Command(us.cluster.Local.Bin("pg_dump"), "--dbname", us.db.URL()).CombinedOutput()
	if err != nil {
		t.Fatalf("pg_dump: %v\n%s", err, dump)
	}
	usText := string(dump)
	// A value the US data set holds itself (Synthea gave a US provider the
	// name of a Swedish patient) proves nothing either way; it is left out.
	var usData strings.Builder
	for _, table := range synthea.Tables {
		usData.Write(mustRead(t, "us", table))
	}
	searched, shared := 0, 0
	for _, col := range []string{"ssn", "first", "last", "address"} {
		for _, v := range column(t, "se", "patients", col) {
			// Not in the US identity table, whatever else holds it.
			if us.count(t, "SELECT count(*) FROM privata_identity.patients WHERE "+
				pgx.Identifier{col}.Sanitize()+" = $1", v) != 0 {
				t.Fatalf("the US cluster's patients hold a Swedish patient's %s", col)
			}
			if strings.Contains(usData.String(), v) {
				shared++
				continue
			}
			if strings.Contains(usText, v) {
				t.Fatalf("the US cluster holds a Swedish patient's %s", col)
			}
			searched++
		}
	}
	t.Logf("searched the US cluster's dump for %d Swedish identity values (%d left out: the US "+
		"data set holds them too)", searched, shared)
	if searched < 40 {
		t.Fatalf("searched only %d values", searched)
	}
	// The EU cluster has each of them, in its identity table.
	for _, ssn := range column(t, "se", "patients", "ssn") {
		if eu.count(t, `SELECT count(*) FROM privata_identity.patients WHERE ssn = $1`, ssn) != 1 {
			t.Fatalf("the EU cluster lacks a Swedish SSN")
		}
	}

	// A US analyst, for research, counts diagnoses across both regions.
	a := w.client(t, "analyst", "research")
	var total int
	if err := a.QueryRow(ctx, `SELECT count(*) FROM privata_global.conditions`).Scan(&total); err != nil {
		t.Fatal(err)
	}
	if want := usCounts["conditions"] + seCounts["conditions"]; total != want {
		t.Fatalf("US analyst counts %d conditions across regions, want %d", total, want)
	}
	var perRegion string
	err = a.QueryRow(ctx, `SELECT string_agg(r || '=' || n, ',' ORDER BY r) FROM (
		SELECT p.privata_region r, count(*) n FROM privata_global.conditions c
		JOIN privata_global.patients p USING (privata_pseudonym) GROUP BY 1) s`).Scan(&perRegion)
	if want := fmt.Sprintf("eu=%d,us=%d", seCounts["conditions"], usCounts["conditions"]); err != nil ||
		perRegion != want {
		t.Fatalf("conditions per region: %q (%v), want %q", perRegion, err, want)
	}
	// The read is audited as a transfer, naming the transfer.
	if logs := w.serve.logs(); !strings.Contains(logs, "eu_research_in_us") {
		t.Fatalf("no transfer logged:\n%s", logs)
	}
	// Reception has no transfer: refused, naming the region.
	r := w.client(t, "reception", "")
	_, err = r.Exec(ctx, `SELECT count(*) FROM privata_global.patients`)
	if sqlstate(err) != "42501" || !strings.Contains(err.Error(), "region eu") {
		t.Fatalf("reception reading across regions: %v", err)
	}
}

// mustRead returns a data set's file.
func mustRead(t *testing.T, set, table string) []byte {
	t.Helper()
	dir, err := synthea.Dir(set)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, table+".csv"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}
