package audit

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
)

// The spool is a directory of append-only segment files of JSON lines:
//
//	chain.json          the instance name, the current chain, each chain's key id
//	lock                flock'ed by the process using the spool
//	seg-0000000001.jsonl
//	seg-0000000002.jsonl
//
// Every segment starts with a head line, {"head":{"chain":..,"seq":..,
// "hash":..}}, the chain's position before the segment's first record, so
// that the chain can be resumed after older segments were shipped and
// removed. Every other line is a read record, link included, exactly as the
// sink writes it (without "kind").

// spoolState is chain.json.
type spoolState struct {
	Instance string            `json:"instance"`
	Current  string            `json:"current"`
	Keys     map[string]string `json:"keys"` // chain -> key id
}

type spoolLine struct {
	Head *Link `json:"head,omitempty"`
	*Read
}

type segment struct {
	no   int
	path string
}

func segmentPath(dir string, no int) string {
	return filepath.Join(dir, fmt.Sprintf("seg-%010d.jsonl", no))
}

// segments lists the spool's segment files in order.
func segments(dir string) ([]segment, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []segment
	for _, e := range entries {
		name := e.Name()
		if !strings.HasPrefix(name, "seg-") || !strings.HasSuffix(name, ".jsonl") {
			continue
		}
		no, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(name, "seg-"), ".jsonl"))
		if err != nil {
			continue
		}
		out = append(out, segment{no: no, path: filepath.Join(dir, name)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].no < out[j].no })
	return out, nil
}

// lockDir takes an exclusive flock on dir/lock; the kernel releases it when
// the process dies, however it dies.
func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("spool %s is in use by another process", dir)
	}
	return f, nil
}

func readState(dir string) (*spoolState, error) {
	b, err := os.ReadFile(filepath.Join(dir, "chain.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var st spoolState
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, "chain.json"), err)
	}
	return &st, nil
}

// writeState replaces chain.json atomically and durably.
func writeState(dir string, st *spoolState) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, "chain.json.tmp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, "chain.json")); err != nil {
		return err
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func randomInstance() string {
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// recoverSegment reads the last segment after a restart: it cuts off a
// trailing partial line (a write the crash interrupted, never acknowledged)
// and returns the segment's size and the link of its last line.
func recoverSegment(path string) (size int64, last Link, err error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0o600)
	if err != nil {
		return 0, Link{}, err
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<16)
	var good int64
	lineNo := 0
	for {
		line, err := r.ReadBytes('\n')
		if errors.Is(err, io.EOF) {
			break // a partial last line, or none
		}
		if err != nil {
			return 0, Link{}, err
		}
		lineNo++
		l, perr := parseSpoolLine(line)
		if perr != nil {
			return 0, Link{}, fmt.Errorf("%s:%d: %w", path, lineNo, perr)
		}
		last = l
		good += int64(len(line))
	}
	if lineNo == 0 {
		return 0, Link{}, fmt.Errorf("%s: segment has no head line", path)
	}
	if err := f.Truncate(good); err != nil {
		return 0, Link{}, err
	}
	return good, last, nil
}

// parseSpoolLine returns the chain position after line.
func parseSpoolLine(line []byte) (Link, error) {
	var sl spoolLine
	if err := json.Unmarshal(bytes.TrimSpace(line), &sl); err != nil {
		return Link{}, fmt.Errorf("bad spool line: %w", err)
	}
	switch {
	case sl.Head != nil:
		return *sl.Head, nil
	case sl.Read != nil && sl.Chain != "" && sl.Seq > 0:
		return sl.Link, nil
	}
	return Link{}, errors.New("bad spool line: neither a head nor a record")
}

// spoolReader reads records from the spool for the shipper.
type spoolReader struct {
	dir  string
	seg  int   // segment being read
	off  int64 // offset of the next unread line in it
	file *os.File
}

// read returns up to max records from the current position up to limit (the
// end of what the writer has made durable in segment limitSeg), with the
// position after each record.
func (sr *spoolReader) read(max int, limitSeg int, limitOff int64) ([]*Read, []int64, error) {
	if sr.file == nil {
		f, err := os.Open(segmentPath(sr.dir, sr.seg))
		if err != nil {
			return nil, nil, err
		}
		sr.file = f
	}
	end := limitOff
	if sr.seg < limitSeg {
		st, err := sr.file.Stat()
		if err != nil {
			return nil, nil, err
		}
		end = st.Size()
	}
	if sr.off >= end {
		return nil, nil, nil
	}
	r := bufio.NewReaderSize(io.NewSectionReader(sr.file, sr.off, end-sr.off), 1<<16)
	var recs []*Read
	var offs []int64
	off := sr.off
	for len(recs) < max {
		line, err := r.ReadBytes('\n')
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, nil, err
		}
		off += int64(len(line))
		var sl spoolLine
		if err := json.Unmarshal(line, &sl); err != nil {
			return nil, nil, fmt.Errorf("%s at byte %d: bad spool line: %w",
				segmentPath(sr.dir, sr.seg), off-int64(len(line)), err)
		}
		if sl.Head != nil {
			// Only a segment's first line is a head; step over it.
			if len(recs) == 0 {
				sr.off = off
			}
			continue
		}
		if sl.Read == nil {
			return nil, nil, fmt.Errorf("%s: bad spool line", segmentPath(sr.dir, sr.seg))
		}
		recs = append(recs, sl.Read)
		offs = append(offs, off)
	}
	return recs, offs, nil
}

// next moves to the following segment once the current one is finished,
// and returns the path of the finished one.
func (sr *spoolReader) next() string {
	done := segmentPath(sr.dir, sr.seg)
	if sr.file != nil {
		sr.file.Close()
		sr.file = nil
	}
	sr.seg++
	sr.off = 0
	return done
}

func (sr *spoolReader) close() {
	if sr.file != nil {
		sr.file.Close()
		sr.file = nil
	}
}
