package multiregion

import (
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

const clinicPolicy = "../../examples/clinic/policy.yaml"

// Patients of the tests below: one of each region.
const (
	svenID  = "10000000-0000-4000-8000-000000000001" // Stockholm: eu
	annID   = "10000000-0000-4000-8000-000000000002" // Texas: us
	karinID = "10000000-0000-4000-8000-000000000003" // Uppsala: eu
)

// The arguments of insertPatient for each.
var (
	sven  = []any{svenID, "19800517-1234", "Sven", "Berg", "Storgatan 1", "Stockholm"}
	ann   = []any{annID, "999-00-1234", "Ann", "Adams", "1 Main St", "Texas"}
	karin = []any{karinID, "19900101-5555", "Karin", "Ek", "Gatan 2", "Uppsala"}
)

const insertPatient = `INSERT INTO patients (id, birthdate, ssn, first, last, address, state, marital, gender)
	VALUES ($1, '1980-05-17', $2, $3, $4, $5, $6, 'M', 'M')`

// inEach counts a patient in each region's cluster, read directly.
func (w *world) inEach(t *testing.T, id string) (us, eu int) {
	t.Helper()
	q := `SELECT count(*) FROM privata_identity.patients WHERE id = $1`
	return w.regions["us"].count(t, q, id), w.regions["eu"].count(t, q, id)
}

func TestRoutingOfEveryStatementKind(t *testing.T) {
	w := newWorld(t, shared(t, "us", "eu"), clinicPolicy)
	w.start(t)
	c := w.client(t, "clinician", "treatment")
	us, eu := w.regions["us"], w.regions["eu"]

	// INSERT with bound values (extended protocol) and with literals
	// (simple protocol), of each region.
	if _, err := c.Exec(ctx, insertPatient, svenID, "19800517-1234", "Sven", "Berg", "Storgatan 1",
		"Stockholm"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, insertPatient, pgx.QueryExecModeSimpleProtocol, annID, "999-00-1234",
		"Ann", "Adams", "1 Main St", "Texas"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, `INSERT INTO patients (id, birthdate, ssn, first, last, state)
		VALUES ('`+karinID+`', '1990-01-01', '19900101-5555', 'Karin', 'Ek', 'Uppsala')`); err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string][2]int{svenID: {0, 1}, annID: {1, 0}, karinID: {0, 1}} {
		if u, e := w.inEach(t, id); u != want[0] || e != want[1] {
			t.Fatalf("patient %s: %d in us, %d in eu; want %v", id, u, e, want)
		}
	}

	// A child row follows its subject, bound or literal.
	if _, err := c.Exec(ctx, `INSERT INTO conditions (start, patient, code, description)
		VALUES ('2020-01-01', $1, '44054006', 'Diabetes')`, svenID); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, `INSERT INTO conditions (start, patient, code, description)
		VALUES ('2021-01-01', '`+svenID+`', '195662009', 'Pharyngitis')`); err != nil {
		t.Fatal(err)
	}
	if n := eu.count(t, `SELECT count(*) FROM conditions WHERE patient = $1`, svenID); n != 2 {
		t.Fatalf("eu holds %d of Sven's conditions, want 2", n)
	}
	if n := us.count(t, `SELECT count(*) FROM privata_clinical.conditions`); n != 0 {
		t.Fatalf("us holds %d conditions, want 0", n)
	}

	// Reads by key reach the subject's region.
	var first string
	if err := c.QueryRow(ctx, `SELECT first FROM patients WHERE id = $1`, svenID).Scan(&first); err != nil ||
		first != "Sven" {
		t.Fatalf("read Sven by key: %q %v", first, err)
	}
	var n int
	err := c.QueryRow(ctx, `SELECT count(*) FROM conditions WHERE patient = $1`, svenID).Scan(&n)
	if err != nil || n != 2 {
		t.Fatalf("read Sven's conditions by key: %d %v", n, err)
	}

	// Update and delete by key.
	if tag, err := c.Exec(ctx, `UPDATE patients SET marital = 'S' WHERE id = $1`, svenID); err != nil ||
		tag.RowsAffected() != 1 {
		t.Fatalf("update Sven: %v %v", tag, err)
	}
	if m := eu.count(t, `SELECT count(*) FROM patients WHERE id = $1 AND marital = 'S'`, svenID); m != 1 {
		t.Fatalf("Sven's update is not in eu")
	}
	if tag, err := c.Exec(ctx, `DELETE FROM conditions WHERE patient = $1 AND code = '195662009'`,
		svenID); err != nil || tag.RowsAffected() != 1 {
		t.Fatalf("delete Sven's condition: %v %v", tag, err)
	}

	// A move to a region of another cluster needs two-phase commit.
	_, err = c.Exec(ctx, `UPDATE patients SET state = 'Texas' WHERE id = $1`, svenID)
	if sqlstate(err) != "0A000" || !strings.Contains(err.Error(), "two-phase commit") {
		t.Fatalf("move without two-phase commit: %v", err)
	}
	if u, e := w.inEach(t, svenID); u != 0 || e != 1 {
		t.Fatalf("after a refused move: %d in us, %d in eu", u, e)
	}

	// A transaction that would write to both regions is refused, and
	// rolled back whole.
	tx, err := c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `UPDATE patients SET marital = 'W' WHERE id = $1`, annID); err != nil {
		t.Fatal(err)
	}
	_, err = tx.Exec(ctx, `UPDATE patients SET marital = 'W' WHERE id = $1`, svenID)
	if sqlstate(err) != "0A000" || !strings.Contains(err.Error(), "regions eu and us") {
		t.Fatalf("second region's write in one transaction: %v", err)
	}
	tx.Rollback(ctx)
	if us.count(t, `SELECT count(*) FROM patients WHERE marital = 'W'`)+
		eu.count(t, `SELECT count(*) FROM patients WHERE marital = 'W'`) != 0 {
		t.Fatalf("a refused two-region transaction left a change")
	}
	// A transaction of one other region's writes commits there.
	tx, err = c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{svenID, karinID} {
		if _, err := tx.Exec(ctx, `UPDATE patients SET marital = 'D' WHERE id = $1`, id); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if m := eu.count(t, `SELECT count(*) FROM patients WHERE marital = 'D'`); m != 2 {
		t.Fatalf("eu transaction: %d rows changed, want 2", m)
	}

	// Reading across regions needs a transfer for what is read.
	a := w.client(t, "analyst", "research")
	_, err = a.Exec(ctx, `SELECT * FROM patients WHERE id = $1`, svenID)
	if sqlstate(err) != "42501" || !strings.Contains(err.Error(), "region eu") {
		t.Fatalf("analyst reading an EU patient's identity: %v", err)
	}
	var marital string
	if err := a.QueryRow(ctx, `SELECT marital FROM patients WHERE id = $1`, svenID).Scan(&marital); err != nil ||
		marital != "D" {
		t.Fatalf("analyst reading an EU patient's clinical data: %q %v", marital, err)
	}
	if !strings.Contains(w.serve.logs(), "msg=transfer") {
		t.Fatalf("the server logged no transfer:\n%s", w.serve.logs())
	}
	m := w.serve.scrape(t)
	for _, want := range []string{`privata_routed_statements_total{region="eu"}`,
		`privata_transfers_total{from="eu",via="routing"}`,
		`privata_region_connections_total{outcome="opened",region="eu"}`,
		`privata_directory_lookups_total{result="cached"}`} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}
