// Package synthea loads the Synthea sample (examples/clinic/data) into a
// database as plain tables: the schema an application would have before
// Privata converts it. Tests and the demo use it.
//
// Two sets ship with the repository: us (27 patients in Massachusetts, with
// organizations, providers and payers) and se (13 patients in Stockholm).
// Both load into the same schema, the union of their columns; a set
// without some file leaves that table empty.
package synthea

import (
	"bufio"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/jackc/pgx/v5"
)

// Schema creates the tables (in the search_path's first schema).
//
//go:embed schema.sql
var Schema string

// Tables are the tables of Schema in the order they load: referenced
// tables first.
var Tables = []string{
	"organizations", "providers", "payers", "patients", "encounters", "conditions",
	"observations", "medications", "allergies", "immunizations", "procedures", "careplans",
}

// Sets are the data sets in examples/clinic/data.
var Sets = []string{"us", "se"}

// Dir returns the directory of data set set, found from the working
// directory upwards (tests run in their package's directory).
func Dir(set string) (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := wd; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			dir := filepath.Join(d, "examples", "clinic", "data", set)
			if _, err := os.Stat(filepath.Join(dir, "patients.csv")); err != nil {
				return "", fmt.Errorf("synthea data set %s: %w", set, err)
			}
			return dir, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("synthea data set %s: no go.mod above %s", set, wd)
		}
	}
}

// Create creates the schema's tables.
func Create(ctx context.Context, conn *pgx.Conn) error {
	if _, err := conn.Exec(ctx, Schema); err != nil {
		return fmt.Errorf("create synthea tables: %w", err)
	}
	return nil
}

// Load copies the CSV files of dir into the tables, each with COPY; it
// returns the number of rows loaded per table.
func Load(ctx context.Context, conn *pgx.Conn, dir string) (map[string]int64, error) {
	counts := map[string]int64{}
	for _, t := range Tables {
		n, err := loadFile(ctx, conn, t, filepath.Join(dir, t+".csv"))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("load %s: %w", t, err)
		}
		counts[t] = n
	}
	return counts, nil
}

func loadFile(ctx context.Context, conn *pgx.Conn, table, file string) (int64, error) {
	f, err := os.Open(file)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	r := bufio.NewReader(f)
	header, err := r.ReadString('\n')
	if err != nil {
		return 0, fmt.Errorf("read header: %w", err)
	}
	var cols []string
	for _, h := range strings.Split(strings.TrimRight(header, "\r\n"), ",") {
		cols = append(cols, pgx.Identifier{strings.ToLower(strings.TrimSpace(h))}.Sanitize())
	}
	sql := fmt.Sprintf("COPY %s (%s) FROM STDIN WITH (FORMAT csv)", pgx.Identifier{table}.Sanitize(),
		strings.Join(cols, ", "))
	tag, err := conn.PgConn().CopyFrom(ctx, io.Reader(r), sql)
	if err != nil {
		return 0, err
	}
	return tag.RowsAffected(), nil
}
