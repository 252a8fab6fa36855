package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/privata/privata/internal/synthea"
)

// The demo's tour: what Privata did with the application's rows.

// tour prints, briefly: rows per region; one Swedish patient as three
// roles see it; what the EU cluster physically holds for that patient; the
// patient's audit trail; a cross-region count.
func tour(ctx context.Context, s *devStack, example string, out io.Writer) error {
	direct := map[string]*pgx.Conn{}
	for name, c := range s.clusters {
		conn, err := pgx.Connect(ctx, c.pg.URL(devDatabase))
		if err != nil {
			return fmt.Errorf("cluster %s: %w", name, err)
		}
		defer conn.Close(ctx)
		direct[name] = conn
	}
	if err := tourRegions(ctx, s, direct, out); err != nil {
		return err
	}
	_, records, err := readCSV(filepath.Join(example, "data", "se", "patients.csv"))
	if err != nil {
		return err
	}
	// The clinic policy's residency puts Swedish patients in region eu.
	id, home := records[0][0], "eu"
	r := s.pol.Region(home)
	if r == nil {
		return fmt.Errorf("the tour follows a Swedish patient into region %s, which the policy "+
			"does not have: run the demo with examples/clinic/policy.yaml", home)
	}
	eu := direct[r.Cluster]
	// The roles' reads below reach the audit store a moment after their
	// rows reach the reader: tourAudit waits for the records since now.
	var since time.Time
	if err := eu.QueryRow(ctx, "SELECT clock_timestamp()").Scan(&since); err != nil {
		return err
	}
	if err := tourRoles(ctx, s, home, id, out); err != nil {
		return err
	}
	pseudonym, err := tourStorage(ctx, eu, id, out)
	if err != nil {
		return err
	}
	if err := tourAudit(ctx, eu, pseudonym, len(s.pol.Roles), since, out); err != nil {
		return err
	}
	fmt.Fprintf(out, "  full accounting: privata audit subject -c %s %s\n", s.rel(s.cfg.File), id)
	return tourGlobal(ctx, s, out)
}

// tourRegions counts each table's rows in each region's cluster, directly.
func tourRegions(ctx context.Context, s *devStack, direct map[string]*pgx.Conn,
	out io.Writer) error {
	fmt.Fprintln(out, "\nRows per region (each cluster counted directly):")
	fmt.Fprintf(out, "  %-14s", "")
	for _, r := range s.pol.Regions {
		fmt.Fprintf(out, "%6s", r.Name)
	}
	fmt.Fprintln(out)
	for _, table := range synthea.Tables {
		if s.pol.Table("public", table) == nil {
			continue
		}
		fmt.Fprintf(out, "  %-14s", table)
		for _, r := range s.pol.Regions {
			var n int64
			err := direct[r.Cluster].QueryRow(ctx, "SELECT count(*) FROM "+
				pgx.Identifier{"public", table}.Sanitize()).Scan(&n)
			if err != nil {
				return fmt.Errorf("count %s in %s: %w", table, r.Name, err)
			}
			fmt.Fprintf(out, "%6d", n)
		}
		fmt.Fprintln(out)
	}
	return nil
}

// tourRoles reads one patient through Privata as each policy role.
func tourRoles(ctx context.Context, s *devStack, region, id string, out io.Writer) error {
	fmt.Fprintf(out, "\nOne Swedish patient, read through Privata (region %s) by each role:\n", region)
	cols := []string{"first", "last", "ssn", "birthdate", "city", "gender", "marital"}
	w := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintf(w, "  role\t%s\n", strings.Join(cols, "\t"))
	purposes := map[string]string{"clinician": "treatment", "analyst": "research"}
	for _, r := range s.pol.Roles {
		conn, err := s.connect(ctx, region, r.PGRole, purposes[r.Name])
		if err != nil {
			return err
		}
		vals, err := readPatient(ctx, conn, cols, id)
		conn.Close(ctx)
		if err != nil {
			fmt.Fprintf(w, "  %s\trefused: %s\n", r.Name, firstLine(err.Error()))
			continue
		}
		fmt.Fprintf(w, "  %s\t%s\n", r.Name, strings.Join(vals, "\t"))
	}
	return w.Flush()
}

// readPatient reads cols of patient id, as text ("-" for NULL).
func readPatient(ctx context.Context, conn *pgx.Conn, cols []string, id string) ([]string, error) {
	sel := make([]string, len(cols))
	for i, c := range cols {
		sel[i] = pgx.Identifier{c}.Sanitize() + "::text"
	}
	vals := make([]*string, len(cols))
	dest := make([]any, len(cols))
	for i := range vals {
		dest[i] = &vals[i]
	}
	err := conn.QueryRow(ctx, fmt.Sprintf("SELECT %s FROM patients WHERE id = $1",
		strings.Join(sel, ", ")), id).Scan(dest...)
	if err != nil {
		return nil, err
	}
	text := make([]string, len(vals))
	for i, v := range vals {
		text[i] = "-"
		if v != nil {
			text[i] = *v
		}
	}
	return text, nil
}

// tourStorage shows what the cluster's base tables hold for patient id,
// and returns the patient's pseudonym.
func tourStorage(ctx context.Context, conn *pgx.Conn, id string, out io.Writer) (string, error) {
	fmt.Fprintln(out, "\nWhat the EU cluster physically holds for this patient:")
	var pseudonym string
	err := conn.QueryRow(ctx, `SELECT privata_pseudonym::text FROM privata_identity.patients
		WHERE id = $1`, id).Scan(&pseudonym)
	if err != nil {
		return "", fmt.Errorf("identity row: %w", err)
	}
	w := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	for _, t := range []string{"privata_identity.patients", "privata_clinical.patients",
		"privata_clinical.encounters"} {
		schema, name, _ := strings.Cut(t, ".")
		rows, _ := conn.Query(ctx, `SELECT attname FROM pg_attribute
			WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum`,
			pgx.Identifier{schema, name}.Sanitize())
		cols, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return "", fmt.Errorf("columns of %s: %w", t, err)
		}
		var n int64
		err = conn.QueryRow(ctx, "SELECT count(*) FROM "+pgx.Identifier{schema, name}.Sanitize()+
			" WHERE privata_pseudonym = $1", pseudonym).Scan(&n)
		if err != nil {
			return "", fmt.Errorf("rows of %s: %w", t, err)
		}
		fmt.Fprintf(w, "  %s\t%d row(s)\t%s\n", t, n, abbreviate(cols, 4))
	}
	if err := w.Flush(); err != nil {
		return "", err
	}
	fmt.Fprintf(out, "  linked by the random pseudonym %s only: privata_clinical\n"+
		"  holds no name, SSN or patient id\n", pseudonym)
	return pseudonym, nil
}

// abbreviate lists the first n names and how many more there are.
func abbreviate(names []string, n int) string {
	if len(names) <= n {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s, ... (%d in all)", strings.Join(names[:n], ", "), len(names))
}

// tourAudit prints the patient's audit trail, grouped. The read audit
// ships from a spool and the change audit comes from the WAL, so it waits
// (15 seconds at most) for the reads of every role and a change.
func tourAudit(ctx context.Context, conn *pgx.Conn, pseudonym string, readers int, since time.Time,
	out io.Writer) error {
	fmt.Fprintln(out, "\nThe patient's audit trail (privata_audit.disclosures on the EU cluster):")
	q := `SELECT kind, coalesce(actor, '-'), coalesce(role, '-'), coalesce(purpose, '-'),
			action, array_to_string(tables, ','), count(*), min(at)
		FROM privata_audit.disclosures($1::uuid)
		GROUP BY 1, 2, 3, 4, 5, 6 ORDER BY min(at), 1, 6, 3`
	type group struct {
		kind, actor, role, purpose, action, tables string
		n                                          int64
		at                                         time.Time
	}
	var groups []group
	deadline := time.Now().Add(15 * time.Second)
	for {
		rows, _ := conn.Query(ctx, q, pseudonym)
		var err error
		groups, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (group, error) {
			var g group
			return g, r.Scan(&g.kind, &g.actor, &g.role, &g.purpose, &g.action, &g.tables, &g.n,
				&g.at)
		})
		if err != nil {
			return fmt.Errorf("audit trail: %w", err)
		}
		var reads int
		err = conn.QueryRow(ctx, `SELECT count(*) FROM privata_audit.disclosures($1::uuid)
			WHERE kind = 'read' AND at >= $2`, pseudonym, since).Scan(&reads)
		if err != nil {
			return fmt.Errorf("audit trail: %w", err)
		}
		changes := 0
		for _, g := range groups {
			if g.kind != "read" {
				changes++
			}
		}
		if reads >= readers && changes > 0 || time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	w := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "  first at\tkind\tactor\trole\tpurpose\taction\ttable\tcount")
	for _, g := range groups {
		fmt.Fprintf(w, "  %s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\n", g.at.UTC().Format("15:04:05"),
			g.kind, g.actor, g.role, g.purpose, g.action, g.tables, g.n)
	}
	return w.Flush()
}

// tourGlobal counts diagnoses across both regions as a US analyst.
func tourGlobal(ctx context.Context, s *devStack, out io.Writer) error {
	region := s.endpoints[0].region
	fmt.Fprintf(out, "\nAcross regions: an analyst in region %s (purpose research) counts "+
		"conditions\nthrough privata_global (pseudonymised clinical data over postgres_fdw):\n", region)
	conn, err := s.connect(ctx, region, "analyst", "research")
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	rows, _ := conn.Query(ctx, `SELECT p.privata_region, count(*)
		FROM privata_global.conditions c JOIN privata_global.patients p USING (privata_pseudonym)
		GROUP BY 1 ORDER BY 1`)
	var parts []string
	var total int64
	var r string
	var n int64
	_, err = pgx.ForEachRow(rows, []any{&r, &n}, func() error {
		parts = append(parts, fmt.Sprintf("%s %d", r, n))
		total += n
		return nil
	})
	if err != nil {
		fmt.Fprintf(out, "  refused: %s\n", firstLine(err.Error()))
		return nil
	}
	fmt.Fprintf(out, "  %s; total %d\n", strings.Join(parts, ", "), total)
	return nil
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
