package cache

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"hash"
	"sort"
	"sync"
)

// Request is everything that changes the answer to a read. Two requests
// share an entry only when every field is equal.
type Request struct {
	// Role is the database role the statement runs as.
	Role string
	// Profile is the masking profile applied to the answer.
	Profile string
	// Purpose is the purpose of use the session declared.
	Purpose string
	// Consent identifies the consent state the policy decision relied on
	// (for example a version of the subject's consent records).
	Consent string
	// Database names the cluster and database the statement is sent to.
	Database string
	// SQL is the exact statement text, literals included. The statement's
	// fingerprint is not enough: it is the same for texts that differ only
	// in their literals, such as WHERE id = 1 and WHERE id = 2.
	SQL string
	// Params are the bound parameter values as sent; a nil element is NULL.
	Params [][]byte
	// ParamFormats and ResultFormats are the Bind message's format codes.
	ParamFormats  []int16
	ResultFormats []int16
	// Settings are the session settings that change how values are
	// written (TimeZone, DateStyle, IntervalStyle, extra_float_digits,
	// bytea_output, client_encoding, search_path...).
	Settings map[string]string
	// BreakGlass marks an emergency read: it is never served from the
	// cache and never fills it.
	BreakGlass bool
}

// namer turns requests, dependencies and subjects into backend keys with
// HMAC-SHA-256, so that a key reveals nothing of what it names (an SSN in a
// parameter, a pseudonym, a table).
type namer struct {
	prefix string
	pool   sync.Pool
}

// Kinds of key; each is a separate HMAC domain and a separate key prefix.
const (
	kindEntry    = 'e' // an entry: one request's answer
	kindRow      = 'r' // mark: a subject's rows of a table changed
	kindTable    = 't' // mark: any row of a table changed
	kindTableAll = 'a' // mark: rows of a table changed, subjects unknown
	kindSubject  = 's' // mark: a subject was erased or restricted
	kindIndex    = 'i' // the set of a subject's entries
)

func newNamer(prefix string, key []byte) *namer {
	k := append([]byte(nil), key...)
	n := &namer{prefix: prefix}
	n.pool.New = func() any { return hmac.New(sha256.New, k) }
	return n
}

// flush is the mark every entry depends on: raising it empties the cache.
func (n *namer) flush() string { return n.prefix + "flush" }

func (n *namer) entry(req *Request) string {
	b := make([]byte, 0, 128+len(req.SQL))
	b = appendString(b, req.Role)
	b = appendString(b, req.Profile)
	b = appendString(b, req.Purpose)
	b = appendString(b, req.Consent)
	b = appendString(b, req.Database)
	b = appendString(b, req.SQL)
	b = binary.AppendUvarint(b, uint64(len(req.Params)))
	for _, p := range req.Params {
		if p == nil {
			b = append(b, 0)
			continue
		}
		b = append(b, 1)
		b = appendString(b, string(p))
	}
	for _, formats := range [][]int16{req.ParamFormats, req.ResultFormats} {
		b = binary.AppendUvarint(b, uint64(len(formats)))
		for _, f := range formats {
			b = binary.BigEndian.AppendUint16(b, uint16(f))
		}
	}
	names := make([]string, 0, len(req.Settings))
	for k := range req.Settings {
		names = append(names, k)
	}
	sort.Strings(names)
	b = binary.AppendUvarint(b, uint64(len(names)))
	for _, k := range names {
		b = appendString(appendString(b, k), req.Settings[k])
	}
	return n.name(kindEntry, b)
}

func (n *namer) row(table, subject string) string {
	return n.name(kindRow, appendString(appendString(nil, table), subject))
}

func (n *namer) table(table string) string { return n.name(kindTable, appendString(nil, table)) }

func (n *namer) tableAll(table string) string {
	return n.name(kindTableAll, appendString(nil, table))
}

func (n *namer) subject(subject string) string {
	return n.name(kindSubject, appendString(nil, subject))
}

func (n *namer) index(subject string) string {
	return n.name(kindIndex, appendString(nil, subject))
}

func (n *namer) name(kind byte, input []byte) string {
	mac := n.pool.Get().(hash.Hash)
	mac.Reset()
	mac.Write([]byte{'v', '1', kind})
	mac.Write(input)
	var sum [sha256.Size]byte
	mac.Sum(sum[:0])
	n.pool.Put(mac)

	out := make([]byte, 0, len(n.prefix)+2+2*len(sum))
	out = append(out, n.prefix...)
	out = append(out, kind, ':')
	return string(hex.AppendEncode(out, sum[:]))
}

// appendString writes s with its length in front, so that no two
// sequences of fields encode the same way.
func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}
