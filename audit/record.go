package audit

import (
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgtype"
)

// Pseudonym names a data subject in the audit log: the random UUID that links
// the subject's identity row to its clinical rows. The zero Pseudonym means
// "no subject".
type Pseudonym [16]byte

// ParsePseudonym reads a pseudonym in the canonical UUID text form.
func ParsePseudonym(s string) (Pseudonym, error) {
	var p Pseudonym
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return p, errors.New("pseudonym is not a UUID")
	}
	h := s[0:8] + s[9:13] + s[14:18] + s[19:23] + s[24:]
	if _, err := hex.Decode(p[:], []byte(h)); err != nil {
		return p, errors.New("pseudonym is not a UUID")
	}
	return p, nil
}

// IsZero reports whether p names no subject.
func (p Pseudonym) IsZero() bool { return p == Pseudonym{} }

func (p Pseudonym) String() string {
	var b [36]byte
	hex.Encode(b[0:8], p[0:4])
	b[8] = '-'
	hex.Encode(b[9:13], p[4:6])
	b[13] = '-'
	hex.Encode(b[14:18], p[6:8])
	b[18] = '-'
	hex.Encode(b[19:23], p[8:10])
	b[23] = '-'
	hex.Encode(b[24:], p[10:])
	return string(b[:])
}

// MarshalText writes the UUID text form.
func (p Pseudonym) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// UnmarshalText reads the UUID text form.
func (p *Pseudonym) UnmarshalText(b []byte) error {
	v, err := ParsePseudonym(string(b))
	*p = v
	return err
}

// UUIDValue lets pgx send a Pseudonym as a uuid; the zero Pseudonym is NULL.
func (p Pseudonym) UUIDValue() (pgtype.UUID, error) {
	return pgtype.UUID{Bytes: p, Valid: !p.IsZero()}, nil
}

// ScanUUID lets pgx read a uuid (NULL reads as the zero Pseudonym).
func (p *Pseudonym) ScanUUID(v pgtype.UUID) error {
	*p = v.Bytes
	if !v.Valid {
		*p = Pseudonym{}
	}
	return nil
}

// Digest is a SHA-256 or HMAC-SHA256 value of the hash chain.
type Digest [32]byte

func (d Digest) String() string { return hex.EncodeToString(d[:]) }

// MarshalText writes the digest in hex.
func (d Digest) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText reads a digest in hex.
func (d *Digest) UnmarshalText(b []byte) error {
	if len(b) != 64 {
		return errors.New("digest is not 64 hex digits")
	}
	_, err := hex.Decode(d[:], b)
	return err
}

// Link is a record's place in its chain: the chain, the record's sequence
// number (1 for the first record), its predecessor's hash and its own.
type Link struct {
	Chain string `json:"chain"`
	Seq   int64  `json:"seq"`
	Prev  Digest `json:"prev"`
	Hash  Digest `json:"hash"`
}

// Decision is what Privata did with a statement.
type Decision string

// The decisions a read record can carry.
const (
	Allowed Decision = "allowed"
	Masked  Decision = "masked"
	Refused Decision = "refused"
)

// Op is the kind of a change.
type Op string

// The operations a change record can carry.
const (
	Insert   Op = "insert"
	Update   Op = "update"
	Delete   Op = "delete"
	Truncate Op = "truncate"
)

// Read is the audit record of one statement that touched classified
// columns, allowed or not. It names tables, columns and subjects; it never
// holds a value of a subject's data. The proxy fills everything but Link.
type Read struct {
	Link
	// Time is when the statement ran; Append sets it when it is zero.
	Time time.Time `json:"at"`
	// Actor is the end user the application named (sqlcommenter tag or SET
	// privata.actor); empty when it named none.
	Actor string `json:"actor,omitempty"`
	// Role is the database role the statement ran as.
	Role string `json:"role,omitempty"`
	// ClientAddr is the client's network address.
	ClientAddr  string `json:"client_addr,omitempty"`
	Application string `json:"application,omitempty"`
	Purpose     string `json:"purpose,omitempty"`
	BreakGlass  bool   `json:"break_glass"`
	// Statement is the normalised statement text: every literal and
	// parameter replaced by a placeholder. It must never hold a value.
	Statement string `json:"statement"`
	// Fingerprint identifies the statement's shape (pg_query fingerprint).
	Fingerprint string `json:"fingerprint"`
	// Tables are the classified tables read (schema.name) and Columns their
	// classified columns (schema.name.column).
	Tables   []string `json:"tables"`
	Columns  []string `json:"columns"`
	Decision Decision `json:"decision"`
	// Reason says why a statement was masked or refused (an SQLSTATE and a
	// message naming no value).
	Reason string `json:"reason,omitempty"`
	// Rows is the number of rows sent to the client.
	Rows int64 `json:"rows"`
	// Subjects are the pseudonyms of the subjects whose rows were sent.
	Subjects []Pseudonym `json:"subjects"`
}

// Change is the audit record of one committed change of one row of a split
// table (or of a TRUNCATE of one table), read from the write-ahead log. The
// logical replication consumer fills everything but Link.
type Change struct {
	Link
	CommitTime time.Time `json:"at"`
	XID        uint32    `json:"xid"`
	// LSN is the commit LSN of the transaction, Ordinal the change's
	// position in it (from 0).
	LSN     LSN   `json:"lsn"`
	Ordinal int32 `json:"ordinal"`
	Op      Op    `json:"op"`
	// Table is the base table, schema.name.
	Table string `json:"table"`
	// Subject is the row's privata_pseudonym; zero for a TRUNCATE or a row
	// without one.
	Subject Pseudonym `json:"subject,omitzero"`
	// Columns names the columns the change wrote: for an insert those set to
	// a value, for an update those whose value changed, for a delete those
	// that held a value. Empty for a TRUNCATE.
	Columns []string `json:"columns"`
	// The session context: Privata's actor and purpose, and the role and
	// application of the session that made the change.
	Actor       string `json:"actor,omitempty"`
	Purpose     string `json:"purpose,omitempty"`
	Role        string `json:"role,omitempty"`
	Application string `json:"application,omitempty"`
	BreakGlass  bool   `json:"break_glass"`
}

// LSN is a position in the write-ahead log.
type LSN uint64

func (l LSN) String() string { return fmt.Sprintf("%X/%X", uint64(l)>>32, uint32(l)) }

// MarshalText writes the LSN as PostgreSQL does (16/B374D848).
func (l LSN) MarshalText() ([]byte, error) { return []byte(l.String()), nil }

// UnmarshalText reads the PostgreSQL text form of an LSN.
func (l *LSN) UnmarshalText(b []byte) error {
	hi, lo, ok := strings.Cut(string(b), "/")
	var h, o uint64
	if _, err := fmt.Sscanf(hi+" "+lo, "%x %x", &h, &o); !ok || err != nil || h > 0xFFFFFFFF ||
		o > 0xFFFFFFFF {
		return fmt.Errorf("lsn %q is not of the form X/X", b)
	}
	*l = LSN(h<<32 | o)
	return nil
}

// check validates what the store would refuse later: a record that passes
// can always be inserted, so that a bad record never blocks the shipping of
// those after it.
func (r *Read) check() error {
	switch r.Decision {
	case Allowed, Masked, Refused:
	default:
		return fmt.Errorf("decision %q: want allowed, masked or refused", r.Decision)
	}
	if r.Rows < 0 {
		return errors.New("rows is negative")
	}
	if r.Statement == "" {
		return errors.New("statement is empty")
	}
	for _, s := range r.Subjects {
		if s.IsZero() {
			return errors.New("a subject is the zero pseudonym")
		}
	}
	if y := r.Time.Year(); y < 1 || y > 9999 {
		return errors.New("time is out of range")
	}
	for _, f := range [...]struct{ name, v string }{{"actor", r.Actor}, {"role", r.Role},
		{"client_addr", r.ClientAddr}, {"application", r.Application}, {"purpose", r.Purpose},
		{"statement", r.Statement}, {"fingerprint", r.Fingerprint}, {"reason", r.Reason}} {
		if !validText(f.v) {
			return fmt.Errorf("%s is not valid text (invalid UTF-8 or a NUL byte)", f.name)
		}
	}
	return checkNames(r.Tables, r.Columns)
}

func (c *Change) check() error {
	switch c.Op {
	case Insert, Update, Delete, Truncate:
	default:
		return fmt.Errorf("op %q: want insert, update, delete or truncate", c.Op)
	}
	if c.Table == "" {
		return errors.New("table is empty")
	}
	for _, f := range [...]struct{ name, v string }{{"table", c.Table}, {"actor", c.Actor},
		{"purpose", c.Purpose}, {"role", c.Role}, {"application", c.Application}} {
		if !validText(f.v) {
			return fmt.Errorf("%s is not valid text (invalid UTF-8 or a NUL byte)", f.name)
		}
	}
	return checkNames(c.Columns)
}

// validText is what PostgreSQL's text type accepts: valid UTF-8 without
// NUL bytes.
func validText(s string) bool { return utf8.ValidString(s) && strings.IndexByte(s, 0) < 0 }

// checkNames refuses empty or invalid table and column names. Errors name
// the field, never its content.
func checkNames(lists ...[]string) error {
	for _, l := range lists {
		for _, s := range l {
			if s == "" || !validText(s) {
				return errors.New("a table or column name is empty or not valid text")
			}
		}
	}
	return nil
}
