package synthea_test

import (
	"context"
	"encoding/csv"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/privata/privata/internal/pgtest"
	"github.com/privata/privata/internal/synthea"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// records reads a CSV file's records, header excluded.
func records(t *testing.T, file string) [][]string {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	all, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	return all[1:]
}

func TestBothSetsLoadIntoOneSchema(t *testing.T) {
	ctx := context.Background()
	db := pgtest.NewDB(t, pgtest.Shared(t))
	conn := db.Connect(t)
	if err := synthea.Create(ctx, conn); err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{}
	for _, set := range synthea.Sets {
		dir, err := synthea.Dir(set)
		if err != nil {
			t.Fatal(err)
		}
		counts, err := synthea.Load(ctx, conn, dir)
		if err != nil {
			t.Fatalf("load %s: %v", set, err)
		}
		for _, tab := range synthea.Tables {
			file := filepath.Join(dir, tab+".csv")
			if _, err := os.Stat(file); err != nil {
				continue
			}
			n := int64(len(records(t, file)))
			if counts[tab] != n {
				t.Errorf("%s/%s: loaded %d rows, the file has %d", set, tab, counts[tab], n)
			}
			want[tab] += n
		}
	}
	for tab, n := range want {
		var got int64
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM "+tab).Scan(&got); err != nil || got != n {
			t.Errorf("%s: %d rows (%v), want %d", tab, got, err, n)
		}
	}

	// Every patient field reads back as the file has it: dates as dates,
	// numbers as numbers, empty fields as NULL.
	for _, set := range synthea.Sets {
		dir, _ := synthea.Dir(set)
		f, _ := os.Open(filepath.Join(dir, "patients.csv"))
		all, err := csv.NewReader(f).ReadAll()
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		cols := strings.ToLower(strings.Join(all[0], ", "))
		for _, rec := range all[1:] {
			var got []*string
			row, err := conn.Query(ctx, "SELECT "+castAll(all[0])+" FROM patients WHERE id = $1", rec[0])
			if err != nil {
				t.Fatal(err)
			}
			for row.Next() {
				vals := make([]any, len(rec))
				got = make([]*string, len(rec))
				for i := range vals {
					vals[i] = &got[i]
				}
				if err := row.Scan(vals...); err != nil {
					t.Fatal(err)
				}
			}
			row.Close()
			for i, v := range rec {
				g := ""
				if got[i] != nil {
					g = *got[i]
				}
				if g != v {
					t.Errorf("%s patient %s: %s = %q, file has %q (columns %s)", set, rec[0],
						strings.ToLower(all[0][i]), g, v, cols)
				}
			}
		}
	}
	var dateType string
	if err := conn.QueryRow(ctx, `SELECT format_type(atttypid, atttypmod) FROM pg_attribute
		WHERE attrelid = 'encounters'::regclass AND attname = 'start'`).Scan(&dateType); err != nil ||
		dateType != "timestamp with time zone" {
		t.Errorf("encounters.start is %q (%v)", dateType, err)
	}
}

// castAll selects each header's column as text.
func castAll(header []string) string {
	parts := make([]string, len(header))
	for i, h := range header {
		parts[i] = strings.ToLower(h) + "::text"
	}
	return strings.Join(parts, ", ")
}
