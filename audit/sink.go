package audit

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"
)

// Sink writes audit records as JSON lines, for a SIEM: one object per
// record with a "kind" field (read or change) and the same fields as the
// store, link included. Records reach the sink before the store commits
// them, so after a crash a line may appear twice (identical, same chain and
// seq), never not at all. A nil *Sink writes nothing.
type Sink struct {
	mu   sync.Mutex
	w    io.Writer
	file *os.File
	buf  []byte
}

// OpenSink opens target: "stdout", or a file appended to (created with mode
// 0600).
func OpenSink(target string) (*Sink, error) {
	if target == "stdout" || target == "-" {
		return &Sink{w: os.Stdout}, nil
	}
	f, err := os.OpenFile(target, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open audit sink: %w", err)
	}
	return &Sink{w: f, file: f}, nil
}

// NewSink writes to w.
func NewSink(w io.Writer) *Sink { return &Sink{w: w} }

type changeLine struct {
	Kind string `json:"kind"`
	*Change
}

// WriteReads writes read records.
func (s *Sink) WriteReads(recs []*Read) error {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.buf = s.buf[:0]
	for _, r := range recs {
		s.buf = append(appendReadJSON(s.buf, `"kind":"read",`, r), '\n')
	}
	return s.flush()
}

// WriteChanges writes change records.
func (s *Sink) WriteChanges(recs []*Change) error {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.buf = s.buf[:0]
	for _, c := range recs {
		b, err := json.Marshal(changeLine{"change", c})
		if err != nil {
			return fmt.Errorf("audit sink: %w", err)
		}
		s.buf = append(append(s.buf, b...), '\n')
	}
	return s.flush()
}

func (s *Sink) flush() error {
	if _, err := s.w.Write(s.buf); err != nil {
		return fmt.Errorf("audit sink: %w", err)
	}
	return nil
}

// Close closes the sink's file.
func (s *Sink) Close() error {
	if s == nil || s.file == nil {
		return nil
	}
	return s.file.Close()
}
