package audit

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Disclosure is one entry of a subject's accounting of disclosures: a read
// that returned the subject's rows, or a change to them.
type Disclosure struct {
	At          time.Time
	Kind        string // read or change
	Actor       string
	Role        string
	Purpose     string
	BreakGlass  bool
	Application string
	ClientAddr  string
	// Action is the read's decision (allowed, masked) or the change's
	// operation (insert, update, delete).
	Action  string
	Tables  []string
	Columns []string
	Chain   string
	Seq     int64
	// Store names the store the entry came from.
	Store string
}

// Disclosures returns the store's accounting of disclosures for subject,
// oldest first (privata_audit.disclosures).
func (s *Store) Disclosures(ctx context.Context, subject Pseudonym) ([]Disclosure, error) {
	rows, err := s.pool.Query(ctx, `SELECT at, kind, coalesce(actor, ''), coalesce(role, ''),
			coalesce(purpose, ''), break_glass, coalesce(application, ''),
			coalesce(client_addr, ''), action, tables, columns, chain, seq
		FROM privata_audit.disclosures($1)`, subject)
	if err != nil {
		return nil, fmt.Errorf("audit store %s: disclosures: %w", s.Name, err)
	}
	list, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Disclosure, error) {
		d := Disclosure{Store: s.Name}
		err := row.Scan(&d.At, &d.Kind, &d.Actor, &d.Role, &d.Purpose, &d.BreakGlass,
			&d.Application, &d.ClientAddr, &d.Action, &d.Tables, &d.Columns, &d.Chain, &d.Seq)
		return d, err
	})
	if err != nil {
		return nil, fmt.Errorf("audit store %s: disclosures: %w", s.Name, err)
	}
	return list, nil
}
