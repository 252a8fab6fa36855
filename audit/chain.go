package audit

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"hash"
	"time"
)

// KeyID names an HMAC key without revealing it: the first 16 hex digits of
// SHA-256("privata audit key id" NUL key). Chains record the id of the key
// they are hashed with; "" means plain SHA-256.
func KeyID(key []byte) string {
	if len(key) == 0 {
		return ""
	}
	s := sha256.Sum256(append([]byte("privata audit key id\x00"), key...))
	return hex.EncodeToString(s[:8])
}

// hasher computes the links of chains: SHA-256, or HMAC-SHA256 with a key.
// It is not safe for concurrent use.
type hasher struct {
	h hash.Hash
}

func newHasher(key []byte) *hasher {
	if len(key) == 0 {
		return &hasher{h: sha256.New()}
	}
	return &hasher{h: hmac.New(sha256.New, key)}
}

// sum is H(prev || canon).
func (h *hasher) sum(prev Digest, canon []byte) Digest {
	h.h.Reset()
	h.h.Write(prev[:])
	h.h.Write(canon)
	var d Digest
	h.h.Sum(d[:0])
	return d
}

// genesis is the "previous hash" of a chain's first record; it binds the
// chain's records to its name.
func (h *hasher) genesis(chain string) Digest {
	return h.sum(Digest{}, []byte("privata audit chain\x00"+chain))
}

// chainState is a writer's position in its chain.
type chainState struct {
	name string
	seq  int64
	head Digest
}

// link appends a record with canonical form canon to the chain.
func (c *chainState) link(h *hasher, canon []byte) Link {
	c.seq++
	l := Link{Chain: c.name, Seq: c.seq, Prev: c.head, Hash: h.sum(c.head, canon)}
	c.head = l.Hash
	return l
}

// The canonical form of a record is what its hash covers: every field but
// the link, in a fixed order, each length-prefixed, so that no two different
// records share a form. doc.go describes it for verifiers written elsewhere.

func (r *Read) canonical(b []byte) []byte {
	b = append(b, "privata.read.v1\x00"...)
	b = appendTime(b, r.Time)
	b = appendString(b, r.Actor)
	b = appendString(b, r.Role)
	b = appendString(b, r.ClientAddr)
	b = appendString(b, r.Application)
	b = appendString(b, r.Purpose)
	b = appendBool(b, r.BreakGlass)
	b = appendString(b, r.Statement)
	b = appendString(b, r.Fingerprint)
	b = appendStrings(b, r.Tables)
	b = appendStrings(b, r.Columns)
	b = appendString(b, string(r.Decision))
	b = appendString(b, r.Reason)
	b = binary.BigEndian.AppendUint64(b, uint64(r.Rows))
	b = binary.AppendUvarint(b, uint64(len(r.Subjects)))
	for _, s := range r.Subjects {
		b = append(b, s[:]...)
	}
	return b
}

func (c *Change) canonical(b []byte) []byte {
	b = append(b, "privata.change.v1\x00"...)
	b = appendTime(b, c.CommitTime)
	b = binary.BigEndian.AppendUint32(b, c.XID)
	b = binary.BigEndian.AppendUint64(b, uint64(c.LSN))
	b = binary.BigEndian.AppendUint32(b, uint32(c.Ordinal))
	b = appendString(b, string(c.Op))
	b = appendString(b, c.Table)
	b = append(b, c.Subject[:]...)
	b = appendStrings(b, c.Columns)
	b = appendString(b, c.Actor)
	b = appendString(b, c.Purpose)
	b = appendString(b, c.Role)
	b = appendString(b, c.Application)
	b = appendBool(b, c.BreakGlass)
	return b
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendStrings(b []byte, ss []string) []byte {
	b = binary.AppendUvarint(b, uint64(len(ss)))
	for _, s := range ss {
		b = appendString(b, s)
	}
	return b
}

func appendBool(b []byte, v bool) []byte {
	if v {
		return append(b, 1)
	}
	return append(b, 0)
}

// appendTime writes microseconds since the Unix epoch: PostgreSQL's
// timestamptz precision, so that a record read back hashes the same.
func appendTime(b []byte, t time.Time) []byte {
	return binary.BigEndian.AppendUint64(b, uint64(t.UnixMicro()))
}
