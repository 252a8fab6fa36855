package fdw_test

import (
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/privata/privata/fdw"
)

// usPatients and euPatients are each region's subjects; their conditions
// give known totals per code.
var (
	usPatients = []patient{
		{"00000000-0000-4000-8000-000000000001", "999-11-0001", "Ann", "Adams", "Massachusetts",
			[]string{"flu", "asthma"}},
		{"00000000-0000-4000-8000-000000000002", "999-11-0002", "Bob", "Brown", "Texas",
			[]string{"flu"}},
	}
	euPatients = []patient{
		{"00000000-0000-4000-8000-000000000011", "19800517-1234", "Astrid", "Lindqvist", "Stockholm",
			[]string{"flu", "flu", "diabetes"}},
		{"00000000-0000-4000-8000-000000000012", "19751224-4321", "Sven", "Berg", "Uppsala",
			[]string{"asthma"}},
		{"00000000-0000-4000-8000-000000000013", "19900101-1111", "Karin", "Ek", "Stockholm", nil},
	}
)

// twoRegions is a US and an EU cluster, the policy applied, each region's
// patients inserted at home.
func twoRegions(t *testing.T) *world {
	t.Helper()
	w := newWorld(t, sharedClusters(t, "us", "eu"), basePolicy)
	w.apply(t)
	w.regions["us"].insert(t, usPatients...)
	w.regions["eu"].insert(t, euPatients...)
	return w
}

func TestCrossRegionViewsCountEveryRegion(t *testing.T) {
	w := twoRegions(t)
	us, eu := w.regions["us"], w.regions["eu"]

	// An analyst in the US, for research, counts diagnoses of both regions.
	n, err := us.count(t, "analyst", "research", `SELECT count(*) FROM privata_global.conditions`)
	if err != nil || n != 7 {
		t.Fatalf("US analyst counts %d conditions (%v), want 3 US + 4 EU = 7", n, err)
	}
	var byCode string
	err = us.as(t, "analyst", "research", func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `SELECT string_agg(code || '=' || n, ',' ORDER BY code)
			FROM (SELECT code, count(*) n FROM privata_global.conditions GROUP BY code) s`).Scan(&byCode)
	})
	if err != nil || byCode != "asthma=2,diabetes=1,flu=4" {
		t.Fatalf("counts by code: %q (%v)", byCode, err)
	}
	// Per region, by the subjects' home region.
	var perRegion string
	err = us.as(t, "analyst", "research", func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `SELECT string_agg(privata_region || '=' || n, ',' ORDER BY privata_region)
			FROM (SELECT privata_region, count(*) n FROM privata_global.patients GROUP BY 1) s`).Scan(&perRegion)
	})
	if err != nil || perRegion != "eu=3,us=2" {
		t.Fatalf("patients per region: %q (%v)", perRegion, err)
	}
	// The EU analyst sees the same totals from the other side.
	n, err = eu.count(t, "analyst", "research", `SELECT count(*) FROM privata_global.conditions`)
	if err != nil || n != 7 {
		t.Fatalf("EU analyst counts %d conditions (%v), want 7", n, err)
	}
	// Conditions join patients by pseudonym across regions.
	n, err = us.count(t, "analyst", "research", `SELECT count(*) FROM privata_global.conditions c
		JOIN privata_global.patients p USING (privata_pseudonym)
		WHERE p.privata_region = 'eu' AND p.marital = 'M'`)
	if err != nil || n != 4 {
		t.Fatalf("EU conditions joined to their patients: %d (%v), want 4", n, err)
	}
}

func TestIdentityCrossesOnlyWithATransfer(t *testing.T) {
	w := twoRegions(t)
	us := w.regions["us"]
	identity := func(role, purpose string) (string, error) {
		var s string
		err := us.as(t, role, purpose, func(tx pgx.Tx) error {
			return tx.QueryRow(ctx, `SELECT string_agg(concat_ws('/', id, ssn, first, last, state,
					birthdate, marital, income), ' ' ORDER BY income, ssn, marital, privata_pseudonym)
				FROM privata_global.patients WHERE privata_region = 'eu'`).Scan(&s)
		})
		return s, err
	}
	// Research: clinical data only, identities NULL (key included).
	got, err := identity("analyst", "research")
	if err != nil || got != "M/1000 M/1000 M/1000" {
		t.Fatalf("analyst, research: %q (%v)", got, err)
	}
	// The clinician's research transfer carries no identity either.
	got, err = identity("clinician", "research")
	if err != nil || got != "M/1000 M/1000 M/1000" {
		t.Fatalf("clinician, research: %q (%v)", got, err)
	}
	// Treatment, with the patient's consent: identities cross.
	got, err = identity("clinician", "treatment")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range euPatients {
		if !strings.Contains(got, p.id+"/"+p.ssn+"/"+p.first+"/"+p.last+"/"+p.state) {
			t.Fatalf("clinician, treatment: %q lacks %s", got, p.first)
		}
	}
	// Without a purpose the transfer does not apply: the query fails,
	// naming the region, rather than leaving EU rows out.
	_, err = us.count(t, "analyst", "", `SELECT count(*) FROM privata_global.conditions`)
	if sqlstate(err) != "42501" || !strings.Contains(err.Error(), "region eu") {
		t.Fatalf("analyst without a purpose: %v, want 42501 naming region eu", err)
	}
	// A role no transfer names may not read the foreign tables at all.
	_, err = us.count(t, "reception", "research", `SELECT count(*) FROM privata_global.patients`)
	if sqlstate(err) != "42501" {
		t.Fatalf("reception: %v, want 42501", err)
	}
	// Nor may it read them directly.
	_, err = us.count(t, "reception", "research", `SELECT count(*) FROM privata_region_eu.patients`)
	if sqlstate(err) != "42501" {
		t.Fatalf("reception, foreign table: %v, want 42501", err)
	}
}

// The EU cluster exports identity values only to readers whose transfer
// carries identity data: the analyst's reads arrive without them, so they
// never reach the US cluster at all.
func TestExportsMaskAtHome(t *testing.T) {
	w := twoRegions(t)
	us := w.regions["us"]
	var remote string
	err := us.as(t, "analyst", "research", func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `SELECT string_agg(concat_ws('/', id, ssn, first, marital), ' ')
			FROM privata_region_eu.patients`).Scan(&remote)
	})
	if err != nil || remote != "M M M" {
		t.Fatalf("analyst reading EU's export directly: %q (%v)", remote, err)
	}
	var keys, children int64
	err = us.as(t, "analyst", "research", func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `SELECT (SELECT count(id) FROM privata_region_eu.patients),
			(SELECT count(*) FROM privata_region_eu.conditions)`).Scan(&keys, &children)
	})
	if err != nil || keys != 0 || children != 4 {
		t.Fatalf("keys %d, conditions %d (%v); want 0 and 4", keys, children, err)
	}
}

func TestPlanHidesSecretsAndSecondApplyDoesNothing(t *testing.T) {
	w := newWorld(t, sharedClusters(t, "us", "eu"), basePolicy)
	plans := w.plan(t)
	for name, pl := range plans {
		text := stepsSQL(pl.Before) + stepsSQL(pl.After)
		if strings.Contains(text, fdwPassword) || strings.Contains(text, "SCRAM-SHA-256$") {
			t.Fatalf("%s: plan shows a password or a verifier:\n%s", name, text)
		}
		if !strings.Contains(text, "password "+fdw.Placeholder) {
			t.Fatalf("%s: plan has no user mapping with a hidden password:\n%s", name, text)
		}
		if !strings.Contains(text, `CREATE SERVER "`) || !strings.Contains(text, "CREATE VIEW \"privata_global\"") {
			t.Fatalf("%s: plan lacks the server or the global views:\n%s", name, text)
		}
	}
	w.apply(t)
	for name, pl := range w.plan(t) {
		if !pl.Empty() {
			t.Fatalf("%s: plan after apply is not empty:\n%s", name, stepsSQL(pl.Before)+stepsSQL(pl.After))
		}
	}
	for name, pl := range w.apply(t) {
		if !pl.Empty() {
			t.Fatalf("%s: second apply ran steps:\n%s", name, stepsSQL(pl.After))
		}
	}
}

func TestReapplyRepairsDrift(t *testing.T) {
	w := twoRegions(t)
	us, eu := w.regions["us"], w.regions["eu"]
	works := func(what string) {
		t.Helper()
		n, err := us.count(t, "analyst", "research", `SELECT count(*) FROM privata_global.conditions`)
		if err != nil || n != 7 {
			t.Fatalf("after %s: %d conditions (%v), want 7", what, n, err)
		}
	}
	repair := func(what string, wantReason string) {
		t.Helper()
		plans := w.plan(t)
		text := strings.Join(plans["us"].Reasons, "; ") + strings.Join(plans["eu"].Reasons, "; ")
		if !strings.Contains(text, wantReason) {
			t.Fatalf("after %s: plan reasons %q, want %q", what, text, wantReason)
		}
		w.apply(t)
		works(what)
		for name, pl := range w.plan(t) {
			if !pl.Empty() {
				t.Fatalf("after repairing %s, %s still plans:\n%s", what, name, stepsSQL(pl.After))
			}
		}
	}
	cases := []struct{ name, sql, reason string }{
		{"a dropped foreign table", `DROP VIEW privata_global.conditions;
			DROP FOREIGN TABLE privata_region_eu.conditions`, "drift"},
		{"a changed server option", `ALTER SERVER eu OPTIONS (SET port '1')`, "drift"},
		{"a dropped server", `DROP SERVER eu CASCADE`, "foreign server eu is missing"},
		{"a dropped user mapping", `DROP USER MAPPING FOR analyst SERVER eu`, "drift"},
	}
	for _, c := range cases {
		if _, err := us.conn.Exec(ctx, c.sql); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		repair(c.name, c.reason)
	}

	// A password changed behind Privata's back, on either side.
	if _, err := eu.conn.Exec(ctx, `ALTER ROLE privata_export_none_full PASSWORD 'guessed'`); err != nil {
		t.Fatal(err)
	}
	repair("a changed export role password", "password of privata_export_none_full differs")
	if _, err := us.conn.Exec(ctx, `ALTER USER MAPPING FOR analyst SERVER eu
		OPTIONS (SET password 'guessed')`); err != nil {
		t.Fatal(err)
	}
	repair("a changed mapping password", "password differs")

	// A new password in privata.yaml: both sides change.
	w.password["eu"] = "rotated-pw-4567"
	plans := w.plan(t)
	if !strings.Contains(plans["eu"].After[0].SQL, "ALTER ROLE \"privata_export_none_full\" PASSWORD "+
		fdw.Placeholder) {
		t.Fatalf("eu plan after a password change:\n%s", stepsSQL(plans["eu"].After))
	}
	if !strings.Contains(stepsSQL(plans["us"].After), "OPTIONS (SET password "+fdw.Placeholder+")") {
		t.Fatalf("us plan after a password change:\n%s", stepsSQL(plans["us"].After))
	}
	w.apply(t)
	works("a new password")
	w.password["eu"] = fdwPassword
	w.apply(t)
}

func TestStoppedRegionFailsCrossRegionQueriesByName(t *testing.T) {
	w := newWorld(t, ownClusters(t, "us", "eu"), basePolicy)
	w.apply(t)
	us, eu := w.regions["us"], w.regions["eu"]
	us.insert(t, usPatients...)
	eu.insert(t, euPatients...)
	if err := eu.cluster.Local.Stop(); err != nil {
		t.Fatal(err)
	}
	_, err := us.count(t, "analyst", "research", `SELECT count(*) FROM privata_global.conditions`)
	if err == nil || !strings.HasPrefix(sqlstate(err), "08") || !strings.Contains(err.Error(), `"eu"`) {
		t.Fatalf("cross-region query with EU down: %v, want an 08xxx error naming eu", err)
	}
	// The US's own data is still there.
	n, err := us.count(t, "analyst", "research", `SELECT count(*) FROM conditions`)
	if err != nil || n != 3 {
		t.Fatalf("US conditions with EU down: %d (%v)", n, err)
	}
	if err := eu.cluster.Local.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	n, err = us.count(t, "analyst", "research", `SELECT count(*) FROM privata_global.conditions`)
	if err != nil || n != 7 {
		t.Fatalf("after EU came back: %d (%v), want 7", n, err)
	}
}

const threeRegionPolicy = `version: 1
regions:
  us: {cluster: us}
  eu: {cluster: eu}
  asia: {cluster: asia}
residency:
  table: patients
  column: state
  values: {Stockholm: eu, Uppsala: eu, Tokyo: asia}
  default: us
subjects:
  patients:
    key: id
    identity: [ssn, first, last, state, birthdate]
    clinical: [marital]
    other: [income]
children:
  conditions:
    subject: {table: patients, column: patient}
roles:
  analyst: {identity: none, clinical: full}
  clinician: {identity: full, clinical: full}
transfers:
  eu_in_us: {from: eu, to: us, roles: [analyst], classes: [clinical], basis: scc}
  asia_in_us: {from: asia, to: us, roles: [analyst], classes: [clinical], basis: adequacy}
  us_in_eu: {from: us, to: eu, roles: [analyst], classes: [clinical], basis: scc}
`

func TestThreeRegions(t *testing.T) {
	w := newWorld(t, sharedClusters(t, "us", "eu", "asia"), threeRegionPolicy)
	w.apply(t)
	us, eu, asia := w.regions["us"], w.regions["eu"], w.regions["asia"]
	us.insert(t, usPatients...)
	eu.insert(t, euPatients...)
	asia.insert(t, patient{"00000000-0000-4000-8000-000000000021", "A-1", "Yuki", "Sato", "Tokyo",
		[]string{"flu", "gout"}})
	var byRegion string
	err := us.as(t, "analyst", "", func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `SELECT string_agg(r || '=' || n, ',' ORDER BY r) FROM (
			SELECT p.privata_region r, count(*) n FROM privata_global.conditions c
			JOIN privata_global.patients p USING (privata_pseudonym) GROUP BY 1) s`).Scan(&byRegion)
	})
	if err != nil || byRegion != "asia=2,eu=4,us=3" {
		t.Fatalf("US analyst, conditions per region: %q (%v)", byRegion, err)
	}
	// EU may read the US, not Asia: its global views fail naming asia.
	_, err = eu.count(t, "analyst", "", `SELECT count(*) FROM privata_global.conditions`)
	if sqlstate(err) != "42501" || !strings.Contains(err.Error(), "region asia") {
		t.Fatalf("EU analyst, global view: %v, want 42501 naming asia", err)
	}
	n, err := eu.count(t, "analyst", "", `SELECT count(*) FROM privata_region_us.conditions`)
	if err != nil || n != 3 {
		t.Fatalf("EU analyst, US foreign table: %d (%v)", n, err)
	}
	// Asia reads no one: it has no foreign server at all.
	var servers int64
	if err := asia.conn.QueryRow(ctx, `SELECT count(*) FROM pg_foreign_server`).Scan(&servers); err != nil ||
		servers != 0 {
		t.Fatalf("asia has %d foreign servers (%v)", servers, err)
	}
}

// A policy change that changes the split tables (a column moving between
// classes) rebuilds the views over them around the storage's migration,
// in the same transaction.
func TestPolicyChangeRebuildsAroundTheMigration(t *testing.T) {
	w := twoRegions(t)
	w.policy = strings.Replace(w.policy, "identity: [ssn, first, last, state, birthdate]",
		"identity: [ssn, first, last, state, birthdate, marital]", 1)
	w.policy = strings.Replace(w.policy, "    clinical: [marital]\n", "", 1)
	plans := w.plan(t)
	for name, pl := range plans {
		if len(pl.Before) == 0 || !strings.Contains(strings.Join(pl.Reasons, "; "), "split tables change") {
			t.Fatalf("%s: the plan does not drop the views before the migration: %v", name, pl.Reasons)
		}
	}
	w.apply(t)
	// marital is identity data now: the analyst's research reads it as NULL
	// from both regions, and counts as before.
	us := w.regions["us"]
	var n, withMarital int64
	err := us.as(t, "analyst", "research", func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `SELECT count(*), count(marital) FROM privata_global.patients`).
			Scan(&n, &withMarital)
	})
	if err != nil || n != 5 || withMarital != 0 {
		t.Fatalf("after the change: %d patients, %d with marital (%v); want 5 and 0", n, withMarital, err)
	}
	for name, pl := range w.plan(t) {
		if !pl.Empty() {
			t.Fatalf("%s plans again after the change:\n%s", name, stepsSQL(pl.After))
		}
	}
}
