package regions_test

import (
	"strings"
	"testing"

	"github.com/privata/privata/internal/pgtest"
	"github.com/privata/privata/regions"
)

func shared(t *testing.T) map[string]*pgtest.Cluster {
	c := pgtest.Shared(t)
	return map[string]*pgtest.Cluster{"us": c, "eu": c}
}

func TestRoutesFollowTheSubjects(t *testing.T) {
	s := newSetup(t, shared(t), "move")
	clinician := s.session("clinician", "treatment")
	uuidBinary := []byte{0, 0, 0, 0, 0, 0, 0x40, 0, 0x80, 0, 0, 0, 0, 0, 0, 0x11}
	cases := []struct {
		name   string
		sess   regions.Session
		sql    string
		params []regions.Param
		want   string // target, or an error's SQLSTATE
	}{
		{"insert, literal", clinician, `INSERT INTO patients (id, state) VALUES ('a', 'Stockholm')`, nil, "eu"},
		{"insert, literal of the default region", clinician,
			`INSERT INTO patients (id, state) VALUES ('a', 'Ohio')`, nil, "us"},
		{"insert, bound text", clinician, `INSERT INTO patients (id, state) VALUES ($1, $2)`,
			[]regions.Param{text("a"), text("Uppsala")}, "eu"},
		{"insert, bound binary text", clinician, `INSERT INTO patients (id, state) VALUES ($1, $2)`,
			[]regions.Param{text("a"), {Value: []byte("Stockholm"), Binary: true, OID: 25}}, "eu"},
		{"insert, bound binary of an undeclared type", clinician,
			`INSERT INTO patients (id, state) VALUES ($1, $2)`,
			[]regions.Param{text("a"), {Value: []byte("Stockholm"), Binary: true}}, "eu"},
		{"insert, NULL residency", clinician, `INSERT INTO patients (id, state) VALUES ($1, $2)`,
			[]regions.Param{text("a"), {Null: true}}, "us"},
		{"insert, residency column left out", clinician, `INSERT INTO patients (id) VALUES ('a')`, nil, "us"},
		{"insert, rows of two regions", clinician,
			`INSERT INTO patients (id, state) VALUES ('a', 'Stockholm'), ('b', 'Ohio')`, nil, "0A000"},
		{"insert, rows of one region", clinician,
			`INSERT INTO patients (id, state) VALUES ('a', 'Stockholm'), ('b', 'Uppsala')`, nil, "eu"},
		{"insert from a query: the cluster checks", clinician,
			`INSERT INTO patients SELECT * FROM patients`, nil, "us"},
		{"child row follows its subject", clinician,
			`INSERT INTO conditions (patient, code) VALUES ($1, 'x')`, []regions.Param{text(euPatient)}, "eu"},
		{"child row, binary key", clinician,
			`INSERT INTO conditions (patient, code) VALUES ($1, 'x')`,
			[]regions.Param{{Value: uuidBinary, Binary: true}}, "eu"},
		{"child row of no subject: the cluster refuses it", clinician,
			`INSERT INTO conditions (patient, code) VALUES ($1, 'x')`, []regions.Param{text(nobody)}, "us"},
		{"update by key", clinician, `UPDATE patients SET marital = 'M' WHERE id = '` + euPatient + `'`,
			nil, "eu"},
		{"update within the region", clinician,
			`UPDATE patients SET state = 'Uppsala' WHERE id = '` + euPatient + `'`, nil, "eu"},
		{"move without two-phase commit", clinician,
			`UPDATE patients SET state = $2 WHERE id = $1`, []regions.Param{text(euPatient), text("Ohio")},
			"0A000"},
		{"delete of child rows by subject", clinician, `DELETE FROM conditions WHERE patient = $1`,
			[]regions.Param{text(euPatient)}, "eu"},
		{"read by key, with a transfer", clinician, `SELECT * FROM patients WHERE id = $1`,
			[]regions.Param{text(euPatient)}, "eu"},
		{"read by key of a local subject", s.session("analyst", ""), `SELECT * FROM patients WHERE id = $1`,
			[]regions.Param{text(usPatient)}, "us"},
		{"read of identity without a transfer for it", s.session("analyst", "research"),
			`SELECT * FROM patients WHERE id = $1`, []regions.Param{text(euPatient)}, "42501"},
		{"read of clinical data with a transfer", s.session("analyst", "research"),
			`SELECT marital FROM patients WHERE id = $1`, []regions.Param{text(euPatient)}, "eu"},
		{"read for a purpose no transfer serves", s.session("clinician", "billing"),
			`SELECT marital FROM patients WHERE id = $1`, []regions.Param{text(euPatient)}, "42501"},
		{"read of child rows by subject", clinician,
			`SELECT c.code FROM conditions c WHERE c.patient = $1`, []regions.Param{text(euPatient)}, "eu"},
		{"read of subjects of two regions", clinician,
			`SELECT * FROM patients WHERE id IN ($1, $2)`,
			[]regions.Param{text(euPatient), text(usPatient)}, "0A000"},
		{"read without a key", clinician, `SELECT count(*) FROM conditions`, nil, "us"},
		{"unclassified", clinician, `SELECT 1`, nil, "us"},
		{"copy: the cluster checks", clinician, `COPY patients FROM STDIN`, nil, "us"},
	}
	for _, c := range cases {
		rt, err := s.route(t, c.sess, c.sql, c.params...)
		got := rt.Target
		if err != nil {
			got = code(err)
			if got == "" {
				t.Fatalf("%s: %v", c.name, err)
			}
		}
		if got != c.want {
			t.Errorf("%s: routed to %q (%v, %s), want %q", c.name, got, err, rt.Why, c.want)
		}
	}
}

func TestReadsAcrossRegionsNameTheirTransfer(t *testing.T) {
	s := newSetup(t, shared(t), "move")
	rt, err := s.route(t, s.session("clinician", "treatment"), `SELECT ssn FROM patients WHERE id = $1`,
		text(euPatient))
	if err != nil || len(rt.Transfers) != 1 || rt.Transfers[0].Name != "care_in_us" {
		t.Fatalf("route %+v (%v), want transfer care_in_us", rt, err)
	}
	_, err = s.route(t, s.session("analyst", "research"), `SELECT ssn FROM patients WHERE id = $1`,
		text(euPatient))
	if err == nil || !strings.Contains(err.Error(), "region eu") || !strings.Contains(err.Error(), "identity") {
		t.Fatalf("analyst reading an SSN across regions: %v", err)
	}
	if strings.Contains(err.Error(), euPatient) {
		t.Fatalf("the error shows the key: %v", err)
	}
}

func TestMovesFollowThePolicy(t *testing.T) {
	s := newSetup(t, shared(t), "move")
	upd := `UPDATE patients SET state = $2 WHERE id = $1`
	s.router.TwoPhase = true
	rt, err := s.route(t, s.session("clinician", ""), upd, text(euPatient), text("Ohio"))
	if err != nil || rt.Move == nil || rt.Move.From != "eu" || rt.Move.To != "us" || rt.Target != "eu" {
		t.Fatalf("move with two-phase commit: %+v (%v)", rt, err)
	}
	refuse := newSetup(t, shared(t), "refuse")
	refuse.router.TwoPhase = true
	_, err = refuse.route(t, refuse.session("clinician", ""), upd, text(euPatient), text("Ohio"))
	if code(err) != "23514" || !strings.Contains(err.Error(), "on_region_change: refuse") &&
		!strings.Contains(err.(*regions.Error).Hint, "refuse") {
		t.Fatalf("move refused by policy: %v", err)
	}
}

func TestDirectoryAsksOnceThenRemembers(t *testing.T) {
	s := newSetup(t, shared(t), "move")
	sql := `SELECT marital FROM patients WHERE id = $1`
	for i := 0; i < 3; i++ {
		if _, err := s.route(t, s.session("clinician", "treatment"), sql, text(euPatient)); err != nil {
			t.Fatal(err)
		}
	}
	if st := s.router.Dir.Stats(); st.Asked != 1 || st.Hits != 2 {
		t.Fatalf("directory stats %+v, want 1 question and 2 hits", st)
	}
}

func TestLookupInARegionThatIsDown(t *testing.T) {
	opts := pgtest.Options{}
	clusters := map[string]*pgtest.Cluster{"us": pgtest.Shared(t), "eu": pgtest.StartWith(t, "eu", opts)}
	s := newSetup(t, clusters, "move")
	if err := clusters["eu"].Local.Stop(); err != nil {
		t.Fatal(err)
	}
	// A US subject is still found at home.
	rt, err := s.route(t, s.session("clinician", ""), `SELECT * FROM patients WHERE id = $1`, text(usPatient))
	if err != nil || rt.Target != "us" {
		t.Fatalf("US subject with EU down: %+v (%v)", rt, err)
	}
	// Another subject may live in the EU: the error names it.
	_, err = s.route(t, s.session("clinician", ""), `SELECT * FROM patients WHERE id = $1`, text(euPatient))
	if code(err) != "08001" || !strings.Contains(err.Error(), "region eu is unreachable") {
		t.Fatalf("EU subject with EU down: %v", err)
	}
	// Inserts whose region the values say need no lookup.
	rt, err = s.route(t, s.session("clinician", ""), `INSERT INTO patients (id, state) VALUES ('x', 'Ohio')`)
	if err != nil || rt.Target != "us" {
		t.Fatalf("US insert with EU down: %+v (%v)", rt, err)
	}
}
