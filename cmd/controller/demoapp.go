package main

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/privata/privata/internal/synthea"
)

// The demo's application: what a program using Privata through its
// Postgres URL does, with pgx and nothing of Privata's.

// migrate runs the *.sql files of dir that schema_migrations does not list
// yet, in name order, each in a transaction with its row there, as
// migration tools do. It returns how many it ran and how many there are.
func migrate(ctx context.Context, conn *pgx.Conn, dir string) (applied, total int, err error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.sql"))
	if err != nil {
		return 0, 0, err
	}
	slices.Sort(files)
	_, err = conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    text PRIMARY KEY,
		applied_at timestamptz NOT NULL DEFAULT now())`)
	if err != nil {
		return 0, 0, fmt.Errorf("create schema_migrations: %w", err)
	}
	rows, _ := conn.Query(ctx, `SELECT version FROM schema_migrations`)
	done, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return 0, 0, fmt.Errorf("read schema_migrations: %w", err)
	}
	for _, f := range files {
		version := strings.TrimSuffix(filepath.Base(f), ".sql")
		if slices.Contains(done, version) {
			continue
		}
		sql, err := os.ReadFile(f)
		if err != nil {
			return applied, len(files), err
		}
		err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			// No arguments: pgx sends it with the simple protocol, as
			// migration tools do.
			if _, err := tx.Exec(ctx, string(sql)); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version) VALUES ($1)`, version)
			return err
		})
		if err != nil {
			return applied, len(files), fmt.Errorf("%s: %w", filepath.Base(f), err)
		}
		applied++
	}
	return applied, len(files), nil
}

// loaded counts what loadSet inserted.
type loaded struct {
	patients, rows, statements int
}

// loadSet inserts the CSV files of data set set (in dir) in one
// transaction, referenced tables first, with multi-row INSERTs whose
// values are bound parameters; empty fields are NULL. A set that
// data_loads lists is not inserted again.
func loadSet(ctx context.Context, conn *pgx.Conn, set, dir string) (loaded, error) {
	var n loaded
	var done bool
	err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT FROM data_loads WHERE data_set = $1)`,
		set).Scan(&done)
	if err != nil || done {
		return n, err
	}
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		for _, table := range synthea.Tables {
			header, records, err := readCSV(filepath.Join(dir, table+".csv"))
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			if err != nil {
				return err
			}
			s, err := insertRows(ctx, tx, table, header, records)
			if err != nil {
				return fmt.Errorf("%s: %w", table, err)
			}
			n.statements += s
			n.rows += len(records)
			if table == "patients" {
				n.patients = len(records)
			}
		}
		_, err := tx.Exec(ctx, `INSERT INTO data_loads (data_set) VALUES ($1)`, set)
		return err
	})
	return n, err
}

// readCSV reads a Synthea file: its header in lower case (the column
// names) and its records.
func readCSV(file string) ([]string, [][]string, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	r := csv.NewReader(f)
	header, err := r.Read()
	if err != nil {
		return nil, nil, fmt.Errorf("%s: header: %w", file, err)
	}
	for i, h := range header {
		header[i] = strings.ToLower(strings.TrimSpace(h))
	}
	var records [][]string
	for {
		rec, err := r.Read()
		if err == io.EOF {
			return header, records, nil
		}
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", file, err)
		}
		records = append(records, rec)
	}
}

// insertRows inserts records into table, up to demoBatch rows per
// statement. It returns the number of statements.
func insertRows(ctx context.Context, tx pgx.Tx, table string, header []string,
	records [][]string) (int, error) {
	cols := make([]string, len(header))
	for i, h := range header {
		cols[i] = pgx.Identifier{h}.Sanitize()
	}
	head := fmt.Sprintf("INSERT INTO %s (%s) VALUES ", pgx.Identifier{table}.Sanitize(),
		strings.Join(cols, ", "))
	batch := min(demoBatch, 65535/len(header))
	statements := 0
	for start := 0; start < len(records); start += batch {
		var sql strings.Builder
		sql.WriteString(head)
		var args []any
		for i, rec := range records[start:min(start+batch, len(records))] {
			if len(rec) != len(header) {
				return statements, fmt.Errorf("record %d has %d fields, the header %d",
					start+i+1, len(rec), len(header))
			}
			if i > 0 {
				sql.WriteString(", ")
			}
			sql.WriteByte('(')
			for j, v := range rec {
				if j > 0 {
					sql.WriteString(", ")
				}
				fmt.Fprintf(&sql, "$%d", len(args)+1)
				if v == "" {
					args = append(args, nil)
				} else {
					args = append(args, v)
				}
			}
			sql.WriteByte(')')
		}
		if _, err := tx.Exec(ctx, sql.String(), args...); err != nil {
			return statements, err
		}
		statements++
	}
	return statements, nil
}

// demoBatch is the most rows the loader puts in one INSERT.
const demoBatch = 100
