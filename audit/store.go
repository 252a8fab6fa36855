package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ErrNotInstalled is returned by Open when the database has no privata_audit
// schema.
var ErrNotInstalled = errors.New("privata_audit is not installed: run `privata apply` " +
	"(or `privata audit install` for a separate audit database)")

// Store is the audit store of one database: the schema privata_audit, by
// default in a region's own cluster, or a separate audit database.
type Store struct {
	// Name names the store in messages and metrics (a cluster name, or
	// "audit" for a separate database); never a URL.
	Name string
	pool *pgxpool.Pool
}

// pgLSNOID is the type OID of pg_lsn; its binary form is a big-endian
// 64-bit integer, which pgx's int8 codec reads and writes.
const pgLSNOID = 3220

// Open connects to the audit store at url and checks that it is installed.
func Open(ctx context.Context, name, url string) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// The parse error may quote the URL, and the URL may hold a password.
		return nil, fmt.Errorf("audit store %s: the url is not a valid connection string", name)
	}
	cfg.MaxConns = 4
	// A record is durable when its commit returns, whatever the server's
	// default: the consumer acknowledges WAL on the strength of it.
	cfg.ConnConfig.RuntimeParams["synchronous_commit"] = "on"
	cfg.AfterConnect = func(_ context.Context, c *pgx.Conn) error {
		registerLSN(c.TypeMap())
		return nil
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("audit store %s: %w", name, err)
	}
	s := &Store{Name: name, pool: pool}
	if err := s.check(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return s, nil
}

func registerLSN(m *pgtype.Map) {
	m.RegisterType(&pgtype.Type{Name: "pg_lsn", OID: pgLSNOID, Codec: pgtype.Int8Codec{}})
}

func (s *Store) check(ctx context.Context) error {
	var ok bool
	err := s.pool.QueryRow(ctx,
		`SELECT to_regclass('privata_audit.change_log') IS NOT NULL
		    AND to_regclass('privata_audit.read_log') IS NOT NULL`).Scan(&ok)
	if err != nil {
		return fmt.Errorf("audit store %s: %w", s.Name, err)
	}
	if !ok {
		return fmt.Errorf("audit store %s: %w", s.Name, ErrNotInstalled)
	}
	return nil
}

// Close closes the store's connections.
func (s *Store) Close() { s.pool.Close() }

// Pool returns the store's connection pool.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// chainInfo is a row of privata_audit.chains.
type chainInfo struct {
	Name   string
	Kind   string
	Source string
	KeyID  string
}

// number is the chain's position among the chains of its source: chains
// are named kind/source/number.
func (c chainInfo) number() int {
	i := strings.LastIndexByte(c.Name, '/')
	n, _ := strconv.Atoi(c.Name[i+1:])
	return n
}

func chainName(kind, source string, n int) string {
	return kind + "/" + source + "/" + strconv.Itoa(n)
}

// chainsOf returns the chains of kind and source, newest first.
func (s *Store) chainsOf(ctx context.Context, kind, source string) ([]chainInfo, error) {
	rows, err := s.pool.Query(ctx, `SELECT chain, kind, source, coalesce(key_id, '')
		FROM privata_audit.chains WHERE kind = $1 AND source = $2`, kind, source)
	if err != nil {
		return nil, fmt.Errorf("read chains: %w", err)
	}
	list, err := pgx.CollectRows(rows, pgx.RowToStructByPos[chainInfo])
	if err != nil {
		return nil, fmt.Errorf("read chains: %w", err)
	}
	// Newest (highest number) first.
	for i := 1; i < len(list); i++ {
		for j := i; j > 0 && list[j].number() > list[j-1].number(); j-- {
			list[j], list[j-1] = list[j-1], list[j]
		}
	}
	return list, nil
}

// register records a chain; registering it again changes nothing.
func register(ctx context.Context, tx pgx.Tx, c chainInfo) error {
	_, err := tx.Exec(ctx, `INSERT INTO privata_audit.chains (chain, kind, source, key_id)
		VALUES ($1, $2, $3, nullif($4, '')) ON CONFLICT (chain) DO NOTHING`,
		c.Name, c.Kind, c.Source, c.KeyID)
	if err != nil {
		return fmt.Errorf("register chain %s: %w", c.Name, err)
	}
	return nil
}

// logTable is the table holding records of a chain kind.
func logTable(kind string) string {
	if kind == "read" {
		return "privata_audit.read_log"
	}
	return "privata_audit.change_log"
}

// tail returns the sequence number and hash of a chain's last record (0 and
// the zero digest for an empty chain).
func (s *Store) tail(ctx context.Context, q querier, kind, chain string) (int64, Digest, error) {
	var seq int64
	var hash []byte
	err := q.QueryRow(ctx, `SELECT seq, hash FROM `+logTable(kind)+`
		WHERE chain = $1 ORDER BY seq DESC LIMIT 1`, chain).Scan(&seq, &hash)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, Digest{}, nil
	}
	if err != nil {
		return 0, Digest{}, fmt.Errorf("read the tail of chain %s: %w", chain, err)
	}
	var d Digest
	copy(d[:], hash)
	return seq, d, nil
}

type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

var readColumns = []string{"chain", "seq", "at", "actor", "role", "client_addr", "application",
	"purpose", "break_glass", "statement", "fingerprint", "tables", "columns", "decision",
	"reason", "rows", "subjects", "prev_hash", "hash"}

var changeColumns = []string{"chain", "seq", "commit_time", "xid", "lsn", "ordinal",
	"operation", "relation", "subject", "columns", "actor", "purpose", "role", "application",
	"break_glass", "prev_hash", "hash"}

func insertReads(ctx context.Context, tx pgx.Tx, recs []*Read) error {
	buf := make([]byte, 0, 512*len(recs))
	for _, r := range recs {
		buf = appendReadCopy(buf, r)
	}
	if err := copyIn(ctx, tx, "read_log", readColumns, buf); err != nil {
		return fmt.Errorf("insert read records: %w", err)
	}
	return nil
}

func insertChanges(ctx context.Context, tx pgx.Tx, recs []*Change) error {
	buf := make([]byte, 0, 384*len(recs))
	for _, c := range recs {
		buf = appendChangeCopy(buf, c)
	}
	if err := copyIn(ctx, tx, "change_log", changeColumns, buf); err != nil {
		return fmt.Errorf("insert change records: %w", err)
	}
	return nil
}

// copyIn sends rows in COPY's text format into privata_audit.table.
func copyIn(ctx context.Context, tx pgx.Tx, table string, columns []string, rows []byte) error {
	cols := make([]string, len(columns))
	for i, c := range columns {
		cols[i] = pgx.Identifier{c}.Sanitize()
	}
	sql := "COPY " + pgx.Identifier{"privata_audit", table}.Sanitize() + " (" +
		strings.Join(cols, ", ") + ") FROM STDIN"
	_, err := tx.Conn().PgConn().CopyFrom(ctx, bytes.NewReader(rows), sql)
	return err
}

// inTx runs f in a transaction and commits it.
func (s *Store) inTx(ctx context.Context, f func(pgx.Tx) error) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.Background())
	if err := f(tx); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// micro cuts t to PostgreSQL's precision (as pgx sends it), in UTC.
func micro(t time.Time) time.Time { return t.Truncate(time.Microsecond).UTC() }
