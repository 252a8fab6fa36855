package logical

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/privata/privata/audit"
)

// ErrNoSlot is returned by ReadSlot when the slot does not exist.
var ErrNoSlot = errors.New("replication slot does not exist")

// SlotStatus is the state of a replication slot.
type SlotStatus struct {
	Cluster string
	Slot    string
	// Active is true while a consumer streams from it.
	Active bool
	// ConfirmedFlush is the position the consumer acknowledged; RestartLSN
	// the oldest WAL the slot keeps; Current the server's WAL position.
	ConfirmedFlush audit.LSN
	RestartLSN     audit.LSN
	Current        audit.LSN
	// Retained is the WAL the slot holds back, in bytes.
	Retained int64
	// WALStatus is PostgreSQL's: reserved, extended, unreserved or lost.
	WALStatus string
	// Limit is the size past which the consumer warns (set in warnings).
	Limit int64
}

// ReadSlot reads the state of slot on the cluster conn is connected to.
func ReadSlot(ctx context.Context, conn *pgx.Conn, slot string) (*SlotStatus, error) {
	st := &SlotStatus{Slot: slot}
	var confirmed, restart, current string
	err := conn.QueryRow(ctx, `SELECT active, coalesce(confirmed_flush_lsn, '0/0')::text,
			coalesce(restart_lsn, '0/0')::text, pg_current_wal_insert_lsn()::text,
			coalesce(pg_wal_lsn_diff(pg_current_wal_insert_lsn(), restart_lsn), 0)::bigint,
			coalesce(wal_status, '')
		FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&st.Active, &confirmed,
		&restart, &current, &st.Retained, &st.WALStatus)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("%w: %s", ErrNoSlot, slot)
	}
	if err != nil {
		return nil, fmt.Errorf("read replication slot %s: %w", slot, err)
	}
	for _, p := range []struct {
		text string
		lsn  *audit.LSN
	}{{confirmed, &st.ConfirmedFlush}, {restart, &st.RestartLSN}, {current, &st.Current}} {
		if err := p.lsn.UnmarshalText([]byte(p.text)); err != nil {
			return nil, fmt.Errorf("read replication slot %s: %w", slot, err)
		}
	}
	return st, nil
}

// Advice says what the retained WAL means and how to recover, for the
// warning the server logs.
func (s *SlotStatus) Advice() string {
	state := "no consumer is streaming from it: start `privata serve` (or `privata audit " +
		"consume`) so that it catches up and releases the WAL"
	if s.Active {
		state = "its consumer is behind: check the audit store's health and the " +
			"privata_logical_lag_bytes metric"
	}
	return fmt.Sprintf("replication slot %s on cluster %s retains %d MiB of WAL "+
		"(warning at %d MiB); "+
		"%s. If the disk is about to fill, drop the slot with "+
		"SELECT pg_drop_replication_slot('%s') on that cluster; the consumer creates a new "+
		"one when it starts, but every change committed after %s and before the new slot "+
		"exists is then missing from the change audit (the read audit is not affected)",
		s.Slot, s.Cluster, s.Retained>>20, s.Limit>>20, state, s.Slot, s.ConfirmedFlush)
}
