// Package audittest prepares databases for the tests of the audit trail:
// Privata's SQL installed, a small schema split by package storage, and
// the Synthea sample loaded into it.
package audittest

import (
	"context"
	"encoding/csv"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/privata/privata/internal/pgtest"
	"github.com/privata/privata/policy"
	"github.com/privata/privata/sql"
	"github.com/privata/privata/storage"
)

// Install installs Privata's SQL into db, as `privata apply` does.
func Install(t testing.TB, db *pgtest.DB) {
	t.Helper()
	ctx := context.Background()
	conn := db.Connect(t)
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", sql.LockKey); err != nil {
		t.Fatal(err)
	}
	if _, err := sql.Install(ctx, tx); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
}

// Schema is the application's own tables, before Privata splits them.
const Schema = `
CREATE TABLE public.patients (
    id uuid PRIMARY KEY,
    ssn text, drivers text, passport text, first text, last text, maiden text,
    address text, city text, birthdate date,
    marital text, race text, gender text, notes text
);
CREATE TABLE public.encounters (
    id      uuid PRIMARY KEY,
    patient uuid REFERENCES public.patients (id),
    start timestamptz, description text, cost numeric
);`

// Policy classifies Schema: patients is the subject table, encounters a
// child table, and the role clinician sees everything.
const Policy = `version: 1
regions:
  us: {cluster: us}
subjects:
  patients:
    key: id
    identity: [ssn, drivers, passport, first, last, maiden, address, city, birthdate]
    clinical: [marital, race, gender, notes]
children:
  encounters:
    subject: {table: patients, column: patient}
roles:
  clinician: {identity: full, clinical: full}
`

// Layout creates Schema in db and splits it as ` + "`privata apply`" + ` does
// (package storage): privata_identity.patients, privata_clinical.patients
// and privata_clinical.encounters with REPLICA IDENTITY FULL and the
// emit_context trigger, the views public.patients and public.encounters,
// and the role clinician.
func Layout(t testing.TB, db *pgtest.DB) {
	t.Helper()
	db.Exec(t, Schema)
	p, err := policy.Parse("policy.yaml", []byte(Policy))
	if err != nil {
		t.Fatal(err)
	}
	conn := db.Connect(t)
	target := storage.Target{Name: "us", URL: db.URL(), Regions: []string{"us"}}
	if _, err := storage.Apply(context.Background(), conn, p, target); err != nil {
		t.Fatalf("apply the policy: %v", err)
	}
}

// Patient is a Synthea patient: the values the audit trail must never hold.
type Patient struct {
	ID, SSN, Drivers, Passport, First, Last, Maiden, Address, City string
	Birthdate                                                      string
	Marital, Race, Gender                                          string
	// Pseudonym is set by Load.
	Pseudonym string
}

// Values returns the patient's identifying values that a leak scan looks
// for.
func (p *Patient) Values() []string {
	var out []string
	for _, v := range []string{p.SSN, p.Drivers, p.Passport, p.First, p.Last, p.Maiden,
		p.Address} {
		if v != "" {
			out = append(out, v)
		}
	}
	return out
}

// Encounter is a Synthea encounter; Description is clinical free text.
type Encounter struct {
	ID, Patient, Start, Description, Cost string
}

// SyntheaDir is the directory of the US Synthea sample: the copy in
// examples/clinic/data/us when the repository has it, else the shared one.
func SyntheaDir(t testing.TB) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	for _, d := range []string{filepath.Join(root, "examples", "clinic", "data", "us"),
		"/work/shared/synthea"} {
		if _, err := os.Stat(filepath.Join(d, "patients.csv")); err == nil {
			return d
		}
	}
	t.Fatalf("the Synthea sample is missing: expected examples/clinic/data/us/patients.csv")
	return ""
}

// Load reads the Synthea sample and inserts its patients and encounters
// through the views, as an application would, as role clinician with actor
// and purpose set. It returns the patients with their pseudonyms, and the
// encounters.
func Load(t testing.TB, db *pgtest.DB) ([]*Patient, []*Encounter) {
	t.Helper()
	dir := SyntheaDir(t)
	var patients []*Patient
	readCSV(t, filepath.Join(dir, "patients.csv"), func(r map[string]string) {
		patients = append(patients, &Patient{ID: r["Id"], SSN: r["SSN"], Drivers: r["DRIVERS"],
			Passport: r["PASSPORT"], First: r["FIRST"], Last: r["LAST"], Maiden: r["MAIDEN"],
			Address: r["ADDRESS"], City: r["CITY"], Birthdate: r["BIRTHDATE"],
			Marital: r["MARITAL"], Race: r["RACE"], Gender: r["GENDER"]})
	})
	var encounters []*Encounter
	readCSV(t, filepath.Join(dir, "encounters.csv"), func(r map[string]string) {
		encounters = append(encounters, &Encounter{ID: r["Id"], Patient: r["PATIENT"],
			Start: r["START"], Description: r["DESCRIPTION"], Cost: r["TOTAL_CLAIM_COST"]})
	})
	ctx := context.Background()
	conn := db.Connect(t)
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	for _, s := range []string{"SET LOCAL ROLE clinician", "SET LOCAL privata.actor = 'loader'",
		"SET LOCAL privata.purpose = 'operations'"} {
		if _, err := tx.Exec(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	batch := &pgx.Batch{}
	for _, p := range patients {
		batch.Queue(`INSERT INTO public.patients (id, ssn, drivers, passport, first, last, maiden,
				address, city, birthdate, marital, race, gender)
			VALUES ($1, $2, nullif($3, ''), nullif($4, ''), $5, $6, nullif($7, ''), $8, $9, $10,
				nullif($11, ''), $12, $13)`,
			p.ID, p.SSN, p.Drivers, p.Passport, p.First, p.Last, p.Maiden, p.Address, p.City,
			p.Birthdate, p.Marital, p.Race, p.Gender)
	}
	for _, e := range encounters {
		batch.Queue(`INSERT INTO public.encounters (id, patient, start, description, cost)
			VALUES ($1, $2, $3, $4, $5)`, e.ID, e.Patient, e.Start, e.Description, e.Cost)
	}
	if err := tx.SendBatch(ctx, batch).Close(); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	for _, p := range patients {
		err := conn.QueryRow(ctx, `SELECT privata_pseudonym::text FROM privata_identity.patients
			WHERE id = $1`, p.ID).Scan(&p.Pseudonym)
		if err != nil {
			t.Fatal(err)
		}
	}
	return patients, encounters
}

func readCSV(t testing.TB, path string, row func(map[string]string)) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := csv.NewReader(f)
	header, err := r.Read()
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	for {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		m := make(map[string]string, len(header))
		for i, h := range header {
			m[h] = rec[i]
		}
		row(m)
	}
}
