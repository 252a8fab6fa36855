package cache

import (
	"encoding/binary"
	"errors"
)

// Record is an entry as a backend holds it. Mark and Marks are in the clear
// so that the backend can check freshness without the encryption keys; both
// are bound to the sealed value as authenticated data, so that an altered
// record fails to open.
type Record struct {
	// Mark is the counter's value before the read that produced the entry.
	Mark uint64
	// Marks are the keys of the marks the entry depends on.
	Marks []string
	// Sealed is the encrypted payload: the dependencies and the answer.
	Sealed []byte
}

var errCorrupt = errors.New("cache: corrupt record")

// encodeRecord is the byte form of a record, for backends that store bytes.
func encodeRecord(r *Record) []byte {
	n := 8 + 10 + len(r.Sealed)
	for _, m := range r.Marks {
		n += 2 + len(m)
	}
	b := make([]byte, 0, n)
	b = binary.BigEndian.AppendUint64(b, r.Mark)
	b = binary.AppendUvarint(b, uint64(len(r.Marks)))
	for _, m := range r.Marks {
		b = appendString(b, m)
	}
	return append(b, r.Sealed...)
}

func decodeRecord(b []byte) (*Record, error) {
	if len(b) < 8 {
		return nil, errCorrupt
	}
	r := &Record{Mark: binary.BigEndian.Uint64(b)}
	b = b[8:]
	n, b, err := readUvarint(b)
	if err != nil || n > uint64(len(b)) {
		return nil, errCorrupt
	}
	r.Marks = make([]string, n)
	for i := range r.Marks {
		if r.Marks[i], b, err = readString(b); err != nil {
			return nil, err
		}
	}
	r.Sealed = b
	return r, nil
}

// aad is the authenticated data of an entry's value: its name, its mark and
// the marks it depends on.
func (r *Record) aad(name string) []byte {
	b := make([]byte, 0, 16+len(name)+len(r.Marks)*80)
	b = appendString(b, name)
	b = binary.BigEndian.AppendUint64(b, r.Mark)
	b = binary.AppendUvarint(b, uint64(len(r.Marks)))
	for _, m := range r.Marks {
		b = appendString(b, m)
	}
	return b
}

// encodePayload is the plaintext of an entry: its dependencies (which the
// caller needs on a hit, to audit the subjects served) and the answer.
func encodePayload(deps []Dep, value []byte) []byte {
	n := 10 + len(value)
	for _, d := range deps {
		n += 4 + len(d.Table) + len(d.Subject)
	}
	b := make([]byte, 0, n)
	b = binary.AppendUvarint(b, uint64(len(deps)))
	for _, d := range deps {
		b = appendString(appendString(b, d.Table), d.Subject)
	}
	return append(b, value...)
}

func decodePayload(b []byte) ([]Dep, []byte, error) {
	n, b, err := readUvarint(b)
	if err != nil || n > uint64(len(b)) {
		return nil, nil, errCorrupt
	}
	deps := make([]Dep, n)
	for i := range deps {
		if deps[i].Table, b, err = readString(b); err != nil {
			return nil, nil, err
		}
		if deps[i].Subject, b, err = readString(b); err != nil {
			return nil, nil, err
		}
	}
	return deps, b, nil
}

func readUvarint(b []byte) (uint64, []byte, error) {
	v, n := binary.Uvarint(b)
	if n <= 0 {
		return 0, nil, errCorrupt
	}
	return v, b[n:], nil
}

func readString(b []byte) (string, []byte, error) {
	n, b, err := readUvarint(b)
	if err != nil || n > uint64(len(b)) {
		return "", nil, errCorrupt
	}
	return string(b[:n]), b[n:], nil
}
