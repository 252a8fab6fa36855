package storage_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/privata/privata/internal/synthea"
	"github.com/privata/privata/policy"
)

// loadSynthea creates the Synthea tables and loads both data sets.
func loadSynthea(t *testing.T, d *testDB, sets ...string) {
	t.Helper()
	if err := synthea.Create(ctx, d.conn); err != nil {
		t.Fatal(err)
	}
	for _, set := range sets {
		dir, err := synthea.Dir(set)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := synthea.Load(ctx, d.conn, dir); err != nil {
			t.Fatal(err)
		}
	}
}

func examplePolicy(t *testing.T) *policy.Policy {
	t.Helper()
	p, err := policy.Load("../examples/clinic/policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestSyntheaAdoptionKeepsEveryValue(t *testing.T) {
	d := newDB(t)
	loadSynthea(t, d, synthea.Sets...)
	p := examplePolicy(t)
	before := d.contents(t, synthea.Tables...)
	dumpBefore := d.dump(t)

	pl := d.preview(t, p, "us", "eu")
	if pl.Empty() || !strings.Contains(pl.SQL(), `CREATE TABLE "privata_identity"."patients"`) {
		t.Fatalf("plan on plain tables has nothing to convert:\n%s", pl.SQL())
	}
	if got := d.dump(t); got != dumpBefore {
		t.Fatalf("plan changed the database:\n%s", diff(dumpBefore, got))
	}

	d.apply(t, p, "us", "eu")
	after := d.contents(t, synthea.Tables...)
	for _, tab := range synthea.Tables {
		if !slices.Equal(before[tab], after[tab]) {
			t.Errorf("%s reads back different through the view:\n%s", tab,
				diff(strings.Join(before[tab], "\n"), strings.Join(after[tab], "\n")))
		}
		if len(before[tab]) == 0 && tab != "observations" {
			t.Errorf("%s: no rows loaded", tab)
		}
	}
	for _, tab := range p.Tables {
		var kind string
		if err := d.conn.QueryRow(ctx, "SELECT relkind::text FROM pg_class WHERE oid = $1::regclass",
			tab.QualifiedName()).Scan(&kind); err != nil || kind != "v" {
			t.Errorf("%s: relkind %q (%v), want a view", tab.QualifiedName(), kind, err)
		}
	}

	dumpApplied := d.dump(t)
	second := d.apply(t, p, "us", "eu")
	if !second.Empty() {
		t.Fatalf("second apply was not empty:\n%s", second.SQL())
	}
	if got := d.dump(t); got != dumpApplied {
		t.Fatalf("second apply changed the database:\n%s", diff(dumpApplied, got))
	}
}

// diff shows the first lines where a and b differ.
func diff(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	var out []string
	for i := 0; i < len(al) || i < len(bl); i++ {
		var x, y string
		if i < len(al) {
			x = al[i]
		}
		if i < len(bl) {
			y = bl[i]
		}
		if x != y {
			out = append(out, "- "+x, "+ "+y)
			if len(out) > 20 {
				break
			}
		}
	}
	return strings.Join(out, "\n")
}
