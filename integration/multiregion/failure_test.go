package multiregion

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/privata/privata/regions"
)

// COPY goes to the session's cluster, whose row-level security refuses
// rows of a region it does not store: a COPY never puts a row in the
// wrong region.
func TestCopyNeverPutsARowInTheWrongRegion(t *testing.T) {
	w := newWorld(t, shared(t, "us", "eu"), clinicPolicy)
	w.start(t)
	c := w.client(t, "clinician", "")
	copyIn := func(rows string) error {
		_, err := c.PgConn().CopyFrom(ctx, strings.NewReader(rows),
			`COPY patients (id, birthdate, ssn, first, last, state) FROM STDIN WITH (FORMAT csv)`)
		return err
	}
	mixed := svenID + ",1980-05-17,19800517-1234,Sven,Berg,Stockholm\n" +
		annID + ",1970-01-01,999-00-1234,Ann,Adams,Texas\n"
	if err := copyIn(mixed); sqlstate(err) != "42501" {
		t.Fatalf("COPY of both regions' rows from a US session: %v, want 42501", err)
	}
	if err := copyIn(svenID + ",1980-05-17,19800517-1234,Sven,Berg,Stockholm\n"); sqlstate(err) != "42501" {
		t.Fatalf("COPY of an EU row from a US session: %v, want 42501", err)
	}
	for _, id := range []string{svenID, annID} {
		if u, e := w.inEach(t, id); u+e != 0 {
			t.Fatalf("a refused COPY left patient %s: %d in us, %d in eu", id, u, e)
		}
	}
	if err := copyIn(annID + ",1970-01-01,999-00-1234,Ann,Adams,Texas\n"); err != nil {
		t.Fatalf("COPY of US rows: %v", err)
	}
	if u, e := w.inEach(t, annID); u != 1 || e != 0 {
		t.Fatalf("Ann: %d in us, %d in eu", u, e)
	}
	// Child rows of a subject the session's cluster does not hold fail as
	// their foreign key would.
	if _, err := c.Exec(ctx, insertPatient, sven...); err != nil {
		t.Fatal(err)
	}
	_, err := c.PgConn().CopyFrom(ctx, strings.NewReader("2020-01-01,"+svenID+",1,flu\n"),
		`COPY conditions (start, patient, code, description) FROM STDIN WITH (FORMAT csv)`)
	if sqlstate(err) != "23503" {
		t.Fatalf("COPY of an EU subject's conditions from a US session: %v, want 23503", err)
	}
	if n := w.regions["us"].count(t, `SELECT count(*) FROM privata_clinical.conditions`) +
		w.regions["eu"].count(t, `SELECT count(*) FROM privata_clinical.conditions`); n != 0 {
		t.Fatalf("a refused COPY left %d conditions", n)
	}
}

// A stopped region: statements for it fail naming it (08xxx), the other
// region keeps working, cross-region queries name the missing region, and
// all is well once it is back.
func TestStoppedRegion(t *testing.T) {
	w := newWorld(t, own(t, nil, "us", "eu"), clinicPolicy)
	w.start(t)
	c := w.client(t, "clinician", "treatment")
	if _, err := c.Exec(ctx, insertPatient, sven...); err != nil {
		t.Fatal(err)
	}
	if err := w.regions["eu"].cluster.Local.Stop(); err != nil {
		t.Fatal(err)
	}
	// The EU's statements fail, naming the region.
	_, err := c.Exec(ctx, insertPatient, karin...)
	if !strings.HasPrefix(sqlstate(err), "08") || !strings.Contains(err.Error(), "region eu") {
		t.Fatalf("insert of an EU patient with the EU down: %v", err)
	}
	var first string
	err = c.QueryRow(ctx, `SELECT first FROM patients WHERE id = $1`, svenID).Scan(&first)
	if !strings.HasPrefix(sqlstate(err), "08") || !strings.Contains(err.Error(), "region eu") {
		t.Fatalf("read of an EU patient with the EU down: %v", err)
	}
	// The US's go on, in the same session.
	if _, err := c.Exec(ctx, insertPatient, ann...); err != nil {
		t.Fatalf("US insert with the EU down: %v", err)
	}
	if err := c.QueryRow(ctx, `SELECT first FROM patients WHERE id = $1`, annID).Scan(&first); err != nil ||
		first != "Ann" {
		t.Fatalf("US read with the EU down: %q %v", first, err)
	}
	// A cross-region query names the missing region instead of answering
	// with the US's rows alone.
	a := w.client(t, "analyst", "research")
	var n int
	err = a.QueryRow(ctx, `SELECT count(*) FROM privata_global.patients`).Scan(&n)
	if !strings.HasPrefix(sqlstate(err), "08") || !strings.Contains(err.Error(), `"eu"`) {
		t.Fatalf("cross-region count with the EU down: %d, %v", n, err)
	}
	if err := w.regions["eu"].cluster.Local.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, insertPatient, karin...); err != nil {
		t.Fatalf("insert of an EU patient once the EU is back: %v", err)
	}
	if err := a.QueryRow(ctx, `SELECT count(*) FROM privata_global.patients`).Scan(&n); err != nil || n != 3 {
		t.Fatalf("cross-region count once the EU is back: %d %v", n, err)
	}
}

// With two-phase commit, a transaction writes to both regions and commits
// on both or neither.
func TestTwoPhaseCommitAcrossRegions(t *testing.T) {
	settings := map[string]map[string]string{"eu": {"max_prepared_transactions": "0"}}
	for _, name := range []string{"works", "eu cannot prepare"} {
		t.Run(name, func(t *testing.T) {
			var w *world
			if name == "works" {
				w = newWorld(t, shared(t, "us", "eu"), clinicPolicy)
			} else {
				w = newWorld(t, own(t, settings, "us", "eu"), clinicPolicy)
			}
			w.extra = "  two_phase_commit: true\n"
			w.start(t)
			c := w.client(t, "clinician", "")
			write := func(tx pgx.Tx) {
				t.Helper()
				for _, p := range [][]any{sven, ann} {
					if _, err := tx.Exec(ctx, insertPatient, p...); err != nil {
						t.Fatal(err)
					}
				}
			}
			tx, err := c.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			write(tx)
			if err := tx.Rollback(ctx); err != nil {
				t.Fatal(err)
			}
			if u, e := w.inEach(t, svenID); u+e != 0 || w.regions["us"].count(t,
				`SELECT count(*) FROM patients`) != 0 {
				t.Fatalf("rolled back, yet rows remain")
			}

			tx, err = c.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			write(tx)
			err = tx.Commit(ctx)
			us, eu := w.inEach(t, svenID)
			ann, _ := w.inEach(t, annID)
			if name == "works" {
				if err != nil || us != 0 || eu != 1 || ann != 1 {
					t.Fatalf("commit: %v; Sven %d/%d, Ann %d", err, us, eu, ann)
				}
			} else if err == nil || eu+ann != 0 {
				t.Fatalf("commit with the EU unable to prepare: %v; Sven in eu %d, Ann %d", err, eu, ann)
			}
			if name == "works" {
				moves(t, w, c)
			}
			for _, r := range w.regions {
				if n := r.count(t, `SELECT count(*) FROM pg_prepared_xacts`); n != 0 {
					t.Fatalf("%s: %d prepared transactions left", r.name, n)
				}
			}
			// The session goes on.
			var one int
			if err := c.QueryRow(ctx, `SELECT 1`).Scan(&one); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// Three regions through one US instance: each subject lands at home, and
// the US analyst counts all three.
func TestThreeRegions(t *testing.T) {
	src, err := os.ReadFile(clinicPolicy)
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Replace(string(src), "  eu:\n    cluster: eu\n",
		"  eu:\n    cluster: eu\n  asia:\n    cluster: asia\n", 1)
	text = strings.Replace(text, "    Norrbotten: eu\n", "    Norrbotten: eu\n    Tokyo: asia\n", 1)
	text += `  asia_research_in_us:
    from: asia
    to: us
    roles: [analyst]
    purposes: [research]
    classes: [clinical]
    basis: adequacy
`
	policy := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(policy, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	w := newWorld(t, shared(t, "us", "eu", "asia"), policy)
	w.start(t)
	c := w.client(t, "clinician", "")
	yuki := "10000000-0000-4000-8000-000000000009"
	for _, p := range [][]any{sven, ann, {yuki, "JP-0001", "Yuki", "Sato", "z", "Tokyo"}} {
		if _, err := c.Exec(ctx, insertPatient, p...); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Exec(ctx, `INSERT INTO conditions (start, patient, code) VALUES ('2020-01-01', $1, 'flu')`,
			p[0]); err != nil {
			t.Fatal(err)
		}
	}
	for region, id := range map[string]string{"us": annID, "eu": svenID, "asia": yuki} {
		for other, r := range w.regions {
			want := 0
			if other == region {
				want = 1
			}
			if n := r.count(t, `SELECT count(*) FROM privata_identity.patients WHERE id = $1`, id); n != want {
				t.Fatalf("%s's patient: %d in %s", region, n, other)
			}
		}
	}
	a := w.client(t, "analyst", "research")
	var byRegion string
	err = a.QueryRow(ctx, `SELECT string_agg(r || '=' || n, ',' ORDER BY r) FROM (
		SELECT p.privata_region r, count(*) n FROM privata_global.conditions c
		JOIN privata_global.patients p USING (privata_pseudonym) GROUP BY 1) s`).Scan(&byRegion)
	if err != nil || byRegion != "asia=1,eu=1,us=1" {
		t.Fatalf("conditions per region: %q %v", byRegion, err)
	}
}

// moves moves Sven (with his conditions) from the EU to the US and back:
// by an UPDATE on its own, then within a transaction block.
func moves(t *testing.T, w *world, c *pgx.Conn) {
	t.Helper()
	us, eu := w.regions["us"], w.regions["eu"]
	for _, code := range []string{"flu", "asthma"} {
		if _, err := c.Exec(ctx, `INSERT INTO conditions (start, patient, code) VALUES ('2020-01-01', $1, $2)`,
			svenID, code); err != nil {
			t.Fatal(err)
		}
	}
	where := func(region *region) (patients, conditions int) {
		return region.count(t, `SELECT count(*) FROM patients WHERE id = $1`, svenID),
			region.count(t, `SELECT count(*) FROM conditions WHERE patient = $1`, svenID)
	}
	tag, err := c.Exec(ctx, `UPDATE patients SET state = 'Texas', city = 'Austin' WHERE id = '`+svenID+`'`,
		pgx.QueryExecModeSimpleProtocol)
	if err != nil || tag.String() != "UPDATE 1" {
		t.Fatalf("move to the US: %v %v", tag, err)
	}
	if p, cs := where(us); p != 1 || cs != 2 {
		t.Fatalf("after the move, the US holds %d patient and %d conditions", p, cs)
	}
	if p, cs := where(eu); p != 0 || cs != 0 {
		t.Fatalf("after the move, the EU still holds %d patient and %d conditions", p, cs)
	}
	if us.count(t, `SELECT count(*) FROM patients WHERE id = $1 AND ssn = '19800517-1234' AND city = 'Austin'`,
		svenID) != 1 {
		t.Fatalf("the moved patient lost or changed a value")
	}
	// Reads by key follow the subject.
	var state string
	if err := c.QueryRow(ctx, `SELECT state FROM patients WHERE id = $1`, svenID).Scan(&state); err != nil ||
		state != "Texas" {
		t.Fatalf("read after the move: %q %v", state, err)
	}
	// Back to the EU, within a transaction block that also writes in the US.
	tx, err := c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `UPDATE patients SET marital = 'S' WHERE id = $1`, annID); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `UPDATE patients SET state = 'Uppsala' WHERE id = '`+svenID+`'`,
		pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if p, cs := where(eu); p != 1 || cs != 2 {
		t.Fatalf("after the move back, the EU holds %d patient and %d conditions", p, cs)
	}
	if p, _ := where(us); p != 0 || us.count(t, `SELECT count(*) FROM patients WHERE marital = 'S'`) != 1 {
		t.Fatalf("after the move back: US patients %d, or Ann's update lost", p)
	}
	// With bound values (the extended protocol), on its own and in a block.
	move := `UPDATE patients SET state = $2 WHERE id = $1`
	if tag, err := c.Exec(ctx, move, svenID, "Ohio"); err != nil || tag.String() != "UPDATE 1" {
		t.Fatalf("extended move to the US: %v %v", tag, err)
	}
	if p, cs := where(us); p != 1 || cs != 2 {
		t.Fatalf("after the extended move, the US holds %d patient and %d conditions", p, cs)
	}
	tx, err = c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if tag, err := tx.Exec(ctx, move, svenID, "Stockholm"); err != nil || tag.String() != "UPDATE 1" {
		t.Fatalf("extended move back in a block: %v %v", tag, err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if p, cs := where(eu); p != 1 || cs != 2 {
		t.Fatalf("after the extended move back, the EU holds %d patient and %d conditions", p, cs)
	}
	// A move whose WHERE clause says more than the key is refused.
	_, err = c.Exec(ctx, `UPDATE patients SET state = 'Ohio' WHERE id = $1 AND marital = 'S'`, svenID)
	if sqlstate(err) != "0A000" {
		t.Fatalf("move with a wider WHERE clause: %v", err)
	}
	if p, _ := where(eu); p != 1 {
		t.Fatalf("a refused move moved the patient")
	}
}

// Transactions a Privata instance left prepared when it died are resolved
// when one starts: committed where the decision to commit was recorded,
// rolled back where none was.
func TestInDoubtTransactionsResolvedOnStart(t *testing.T) {
	w := newWorld(t, shared(t, "us", "eu"), clinicPolicy)
	w.extra = "  two_phase_commit: true\n  two_phase_recovery_after: 1s\n"
	us, eu := w.regions["us"], w.regions["eu"]
	prepare := func(r *region, gid, id, ssn, state string) {
		t.Helper()
		tx, err := r.conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO patients (id, birthdate, ssn, state)
			VALUES ($1, '1980-01-01', $2, $3)`, id, ssn, state); err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, regions.PrepareSQL(gid, r.name)); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
	}
	decided, abandoned := regions.NewGID("us"), regions.NewGID("us")
	prepare(us, decided, annID, "999-00-1234", "Texas")
	prepare(eu, decided, svenID, "19800517-1234", "Stockholm")
	if _, err := us.conn.Exec(ctx, `INSERT INTO privata.twophase (gid, decision) VALUES ($1, 'commit')`,
		decided); err != nil {
		t.Fatal(err)
	}
	other := "10000000-0000-4000-8000-000000000004"
	prepare(us, abandoned, other, "999-00-9999", "Ohio")
	prepare(eu, abandoned, karinID, "19900101-5555", "Uppsala")
	// Older than two_phase_recovery_after, so that recovery may resolve them.
	time.Sleep(1500 * time.Millisecond)
	w.start(t)
	for id, want := range map[string][2]int{annID: {1, 0}, svenID: {0, 1}, other: {0, 0}, karinID: {0, 0}} {
		if u, e := w.inEach(t, id); u != want[0] || e != want[1] {
			t.Fatalf("patient %s after recovery: %d in us, %d in eu; want %v", id, u, e, want)
		}
	}
	for _, r := range w.regions {
		if n := r.count(t, `SELECT count(*) FROM pg_prepared_xacts`); n != 0 {
			t.Fatalf("%s: %d prepared transactions left", r.name, n)
		}
	}
	if n := us.count(t, `SELECT count(*) FROM privata.twophase WHERE gid = $1 AND decision = 'abort'`,
		abandoned); n != 1 {
		t.Fatalf("the abandoned transaction's abort was not recorded")
	}
	if !strings.Contains(w.serve.logs(), "two-phase recovery") {
		t.Fatalf("recovery did not log what it did:\n%s", w.serve.logs())
	}
}
