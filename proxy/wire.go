package proxy

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// bufSize is the size of each read and write buffer of a session.
const bufSize = 16 << 10

// errTooLong is returned when a message declares a length over the limit.
type errTooLong struct {
	typ      byte
	length   int
	maxBytes int
}

func (e *errTooLong) Error() string {
	return fmt.Sprintf("message of type %q declares %d bytes, over the limit of %d "+
		"(server.max_message_bytes)", e.typ, e.length, e.maxBytes)
}

// errBadLength is returned when a message declares a length below 4.
var errBadLength = errors.New("invalid message length")

// reader reads protocol messages (type byte, 4-byte length, body) from a
// buffered connection. A body that fits the buffer is returned in place,
// without copying; it is valid until the next call.
type reader struct {
	br   *bufio.Reader
	max  int // largest accepted message (length field included); 0: none
	skip int // bytes of the previous body still to discard
	big  []byte
}

func newReader(r io.Reader, maxBytes int) *reader {
	return &reader{br: bufio.NewReaderSize(r, bufSize), max: maxBytes}
}

// ready reports whether a whole next message is already buffered, so that
// reading it will not block.
func (r *reader) ready() bool {
	n := r.br.Buffered() - r.skip
	if n < 5 {
		return false
	}
	h, _ := r.br.Peek(r.skip + 5)
	l := int(binary.BigEndian.Uint32(h[r.skip+1:]))
	return n >= 1+l
}

// next reads the header of the next message: its type and body length. The
// length is checked against the limit before anything is allocated.
func (r *reader) next() (typ byte, n int, err error) {
	if r.skip > 0 {
		if _, err := r.br.Discard(r.skip); err != nil {
			return 0, 0, err
		}
		r.skip = 0
	}
	h, err := r.br.Peek(5)
	if err != nil {
		if err == io.EOF && len(h) > 0 {
			err = io.ErrUnexpectedEOF
		}
		return 0, 0, err
	}
	typ = h[0]
	l := int(binary.BigEndian.Uint32(h[1:5]))
	if l < 4 {
		return typ, 0, errBadLength
	}
	if r.max > 0 && l > r.max {
		return typ, 0, &errTooLong{typ: typ, length: l, maxBytes: r.max}
	}
	r.br.Discard(5)
	return typ, l - 4, nil
}

// body returns the n-byte body of the message whose header next returned.
func (r *reader) body(n int) ([]byte, error) {
	if n <= r.br.Size() {
		b, err := r.br.Peek(n)
		if err != nil {
			return nil, unexpected(err)
		}
		r.skip = n
		return b, nil
	}
	if cap(r.big) < n || cap(r.big) > 4*n {
		r.big = make([]byte, n)
	}
	b := r.big[:n]
	if _, err := io.ReadFull(r.br, b); err != nil {
		return nil, unexpected(err)
	}
	return b, nil
}

// copyTo writes the message (header and n-byte body) to w as it arrives,
// without holding the whole body.
func (r *reader) copyTo(w *bufio.Writer, typ byte, n int) error {
	writeHeader(w, typ, n)
	for n > 0 {
		want := r.br.Buffered()
		if want == 0 {
			want = 1
		}
		want = min(want, n)
		b, err := r.br.Peek(want)
		if err != nil {
			return unexpected(err)
		}
		w.Write(b)
		r.br.Discard(len(b))
		n -= len(b)
	}
	return nil
}

// discard skips an n-byte body.
func (r *reader) discard(n int) error {
	_, err := r.br.Discard(n)
	return unexpected(err)
}

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// writeHeader writes a message's type byte and length for an n-byte body.
func writeHeader(w *bufio.Writer, typ byte, n int) {
	// Byte by byte: a [5]byte passed to Write would escape, one allocation
	// per message.
	l := uint32(n + 4)
	w.WriteByte(typ)
	w.WriteByte(byte(l >> 24))
	w.WriteByte(byte(l >> 16))
	w.WriteByte(byte(l >> 8))
	w.WriteByte(byte(l))
}

// writeMessage writes a whole message.
func writeMessage(w *bufio.Writer, typ byte, body []byte) {
	writeHeader(w, typ, len(body))
	w.Write(body)
}

// cstring splits a NUL-terminated string off the front of b.
func cstring(b []byte) (s, rest []byte, ok bool) {
	i := bytes.IndexByte(b, 0)
	if i < 0 {
		return nil, nil, false
	}
	return b[:i], b[i+1:], true
}

// builder appends message fields to a buffer; begin/finish frame a message.
type builder struct {
	buf   []byte
	start int
}

func (b *builder) begin(typ byte) {
	b.buf = append(b.buf, typ, 0, 0, 0, 0)
	b.start = len(b.buf) - 4
}

func (b *builder) str(s string) { b.buf = append(append(b.buf, s...), 0) }

func (b *builder) i16(v int16) { b.buf = binary.BigEndian.AppendUint16(b.buf, uint16(v)) }

func (b *builder) i32(v int32) { b.buf = binary.BigEndian.AppendUint32(b.buf, uint32(v)) }

func (b *builder) bytes(p []byte) { b.buf = append(b.buf, p...) }

func (b *builder) finish() {
	binary.BigEndian.PutUint32(b.buf[b.start:], uint32(len(b.buf)-b.start))
}
