package cache

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/csv"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// patient is one synthetic patient of testdata/patients.csv.
type patient struct {
	id, ssn, first, last, address, diagnosis string
	pseudonym                                string
}

func loadPatients(t testing.TB) []patient {
	t.Helper()
	f, err := os.Open("testdata/patients.csv")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	var out []patient
	for _, r := range rows[1:] {
		out = append(out, patient{id: r[0], ssn: r[1], first: r[2], last: r[3], address: r[4],
			diagnosis: r[5], pseudonym: randomUUID()})
	}
	if len(out) < 20 {
		t.Fatalf("only %d patients in testdata", len(out))
	}
	return out
}

func randomUUID() string {
	b := make([]byte, 16)
	rand.Read(b)
	b[6], b[8] = b[6]&0x0f|0x40, b[8]&0x3f|0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// TestNoPersonalDataInTheClear caches reads of every patient (by SSN as a
// parameter, by SSN as a literal, by key, and their diagnoses), then scans
// every key and value the backend holds for every SSN, name, address,
// diagnosis, application key and pseudonym.
func TestNoPersonalDataInTheClear(t *testing.T) {
	patients := loadPatients(t)
	eachBackend(t, func(t *testing.T, f *fixture) {
		ctx := context.Background()
		entries := 0
		for _, p := range patients {
			row := strings.Join([]string{p.id, p.ssn, p.first, p.last, p.address}, "|")
			reads := []struct {
				req   *Request
				value string
				dep   Dep
			}{
				{&Request{Role: "clinician", SQL: "SELECT * FROM patients WHERE ssn = $1",
					Params: [][]byte{[]byte(p.ssn)}}, row, Dep{"public.patients", p.pseudonym}},
				{&Request{Role: "clinician", SQL: "SELECT * FROM patients WHERE ssn = '" + p.ssn + "'"},
					row, Dep{"public.patients", p.pseudonym}},
				{&Request{Role: "clinician", SQL: "SELECT * FROM patients WHERE first = $1 AND last = $2",
					Params: [][]byte{[]byte(p.first), []byte(p.last)}}, row,
					Dep{"public.patients", p.pseudonym}},
				{&Request{Role: "clinician", SQL: "SELECT description FROM conditions WHERE patient_id = $1",
					Params: [][]byte{[]byte(p.id)}}, p.diagnosis, Dep{"public.conditions", p.pseudonym}},
			}
			for _, r := range reads {
				fill(t, f.cache, r.req, r.value, r.dep)
				hit := wantHit(t, f.cache, r.req, r.value)
				if hit.Deps[0].Subject != p.pseudonym {
					t.Fatalf("hit names subject %q, want %q", hit.Deps[0].Subject, p.pseudonym)
				}
				entries++
			}
		}
		f.cache.Invalidate(ctx, Change{Table: "public.patients", Subject: patients[0].pseudonym})
		f.cache.Erase(ctx, patients[1].pseudonym)

		// A canary stored in the clear shows that the scan sees values.
		const canary = "CANARY 999-00-0000"
		rec := &Record{Mark: 1, Sealed: []byte(canary)}
		if _, err := f.backend.Store(ctx, f.prefix+"canary", rec, nil, time.Minute); err != nil {
			t.Fatal(err)
		}

		keys, values := f.dump(t)
		canaries := 0
		for _, v := range values {
			if bytes.Contains(v, []byte(canary)) {
				canaries++
			}
		}
		if canaries != 1 {
			t.Fatalf("the scan found the canary %d times, want 1", canaries)
		}
		if n := len(f.entryKeys(t)); n < entries-8 {
			t.Fatalf("backend holds %d entries, want about %d: the scan would prove little", n, entries)
		}
		found := 0
		for _, p := range patients {
			for what, needle := range map[string]string{"ssn": p.ssn, "first name": p.first,
				"last name": p.last, "address": p.address, "diagnosis": p.diagnosis,
				"application key": p.id, "pseudonym": p.pseudonym} {
				if needle == "" {
					continue
				}
				for _, k := range keys {
					if strings.Contains(k, needle) {
						t.Errorf("a key holds the %s of patient %s: %s", what, p.id, k)
						found++
					}
				}
				for _, v := range values {
					if bytes.Contains(v, []byte(needle)) {
						t.Errorf("a value holds the %s of patient %s", what, p.id)
						found++
					}
				}
			}
		}
		t.Logf("%d keys, %d values scanned; %d plaintext findings", len(keys), len(values), found)
	})
}
