package logical

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/privata/privata/audit"
)

// replication is the one place that speaks PostgreSQL's replication
// protocol: a walsender connection, the slot, the stream of pgoutput
// messages and the acknowledgements. Nothing else in the package touches
// pglogrepl's connection functions.
type replication struct {
	conn *pgconn.PgConn
}

// dialReplication opens a logical replication connection (replication=database)
// to the database url names.
func dialReplication(ctx context.Context, url string) (*replication, error) {
	cfg, err := pgconn.ParseConfig(url)
	if err != nil {
		return nil, errors.New("the cluster url is not a valid connection string")
	}
	cfg.RuntimeParams["replication"] = "database"
	cfg.RuntimeParams["application_name"] = "privata audit consumer"
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("replication connection: %w", err)
	}
	return &replication{conn: conn}, nil
}

// ensureSlot creates the permanent pgoutput slot unless it exists.
func (r *replication) ensureSlot(ctx context.Context, slot string) (created bool, err error) {
	_, err = pglogrepl.CreateReplicationSlot(ctx, r.conn, quoteSlot(slot), "pgoutput",
		pglogrepl.CreateReplicationSlotOptions{Mode: pglogrepl.LogicalReplication,
			SnapshotAction: "NOEXPORT_SNAPSHOT"})
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42710" { // duplicate_object
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("create replication slot %s: %w", slot, err)
	}
	return true, nil
}

// dropSlot removes the slot.
func (r *replication) dropSlot(ctx context.Context, slot string) error {
	err := pglogrepl.DropReplicationSlot(ctx, r.conn, quoteSlot(slot),
		pglogrepl.DropReplicationSlotOptions{Wait: true})
	if err != nil {
		return fmt.Errorf("drop replication slot %s: %w", slot, err)
	}
	return nil
}

// start streams the publication's changes from the slot's confirmed
// position, with logical messages (the session context) included.
func (r *replication) start(ctx context.Context, slot, publication string) error {
	err := pglogrepl.StartReplication(ctx, r.conn, quoteSlot(slot), 0,
		pglogrepl.StartReplicationOptions{Mode: pglogrepl.LogicalReplication, PluginArgs: []string{
			"proto_version '1'",
			"publication_names " + quoteLiteral(publication),
			"messages 'true'",
		}})
	if err != nil {
		return fmt.Errorf("start replication from slot %s: %w", slot, err)
	}
	return nil
}

// frame is what the stream delivers: a pgoutput message with its WAL
// position, or a keepalive.
type frame struct {
	keepalive      bool
	replyRequested bool
	// walEnd is, for a keepalive, the position up to which the server has
	// sent everything.
	walEnd audit.LSN
	// data is a pgoutput message; it is only valid until the next receive.
	data []byte
}

// receive waits for the next frame until deadline; ok is false when the
// deadline passed first.
func (r *replication) receive(ctx context.Context) (f frame, ok bool, err error) {
	msg, err := r.conn.ReceiveMessage(ctx)
	if err != nil {
		if pgconn.Timeout(err) && ctx.Err() == context.DeadlineExceeded {
			return frame{}, false, nil
		}
		return frame{}, false, fmt.Errorf("receive: %w", err)
	}
	switch m := msg.(type) {
	case *pgproto3.CopyData:
		if len(m.Data) == 0 {
			return frame{}, false, errors.New("receive: empty CopyData")
		}
		switch m.Data[0] {
		case pglogrepl.PrimaryKeepaliveMessageByteID:
			k, err := pglogrepl.ParsePrimaryKeepaliveMessage(m.Data[1:])
			if err != nil {
				return frame{}, false, fmt.Errorf("receive keepalive: %w", err)
			}
			return frame{keepalive: true, replyRequested: k.ReplyRequested,
				walEnd: audit.LSN(k.ServerWALEnd)}, true, nil
		case pglogrepl.XLogDataByteID:
			x, err := pglogrepl.ParseXLogData(m.Data[1:])
			if err != nil {
				return frame{}, false, fmt.Errorf("receive: %w", err)
			}
			return frame{data: x.WALData}, true, nil
		}
		return frame{}, false, fmt.Errorf("receive: unknown CopyData message %q", m.Data[0])
	case *pgproto3.ErrorResponse:
		err := pgconn.ErrorResponseToPgError(m)
		return frame{}, false, fmt.Errorf("replication stream: %w", err)
	case *pgproto3.CopyDone:
		return frame{}, false, errors.New("replication stream: the server ended it")
	}
	return frame{}, false, fmt.Errorf("replication stream: unexpected %T", msg)
}

// ack tells the server that everything up to lsn is durable: the slot may
// release the WAL before it, and a restart resumes after it.
func (r *replication) ack(ctx context.Context, lsn audit.LSN) error {
	err := pglogrepl.SendStandbyStatusUpdate(ctx, r.conn, pglogrepl.StandbyStatusUpdate{
		WALWritePosition: pglogrepl.LSN(lsn), ClientTime: time.Now()})
	if err != nil {
		return fmt.Errorf("acknowledge %s: %w", lsn, err)
	}
	return nil
}

func (r *replication) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r.conn.Close(ctx)
}

// quoteSlot returns a slot name as the replication grammar takes it. Slot
// names are limited to lower-case letters, digits and underscores, which
// Options.check enforces, so the name needs no quoting; the double quotes
// make that explicit.
func quoteSlot(slot string) string { return `"` + slot + `"` }

// quoteLiteral quotes s as an SQL string literal.
func quoteLiteral(s string) string {
	out := []byte{'\''}
	for i := 0; i < len(s); i++ {
		if s[i] == '\'' {
			out = append(out, '\'')
		}
		out = append(out, s[i])
	}
	return string(append(out, '\''))
}
