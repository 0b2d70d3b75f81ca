package audit

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Sink is where encoded records go: the rotated files of Config.Dir by
// default, something else in tests (a full or stalled disk). The logger
// calls it from one goroutine only.
type Sink interface {
	// Write writes p, one or more whole lines. On error it reports how many
	// bytes of p it wrote; the logger writes the rest again later.
	Write(p []byte) (int, error)
	// Sync makes what was written durable.
	Sync() error
	// Close syncs and releases the sink.
	Close() error
}

// Names of the log files in Config.Dir.
const (
	currentName   = "audit.log"
	rotatedPrefix = "audit-"
	rotatedSuffix = ".log"
	// rotatedLayout sorts in time order as a string.
	rotatedLayout = "20060102T150405.000000000Z"
)

// fileSink writes to Dir/audit.log and, when the next line would take it
// past maxBytes, renames it to Dir/audit-<UTC time>.log and starts a new
// one, keeping the newest maxFiles rotated files.
type fileSink struct {
	dir      string
	maxBytes int64
	maxFiles int
	now      func() time.Time

	f       *os.File
	size    int64
	midLine bool // a short write left a partial line in f: no rotation until it is finished
}

var _ Sink = (*fileSink)(nil)

func newFileSink(dir string, maxBytes int64, maxFiles int, now func() time.Time) (*fileSink, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	s := &fileSink{dir: dir, maxBytes: maxBytes, maxFiles: maxFiles, now: now}
	if err := s.open(); err != nil {
		return nil, err
	}
	if err := s.prune(); err != nil {
		s.f.Close()
		return nil, err
	}
	return s, nil
}

func (s *fileSink) open() error {
	p := filepath.Join(s.dir, currentName)
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	// A file left by an older run, or made by hand, may be more open.
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return fmt.Errorf("audit: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("audit: %w", err)
	}
	s.f, s.size = f, st.Size()
	return nil
}

func (s *fileSink) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		if s.f == nil {
			if err := s.open(); err != nil {
				return written, err
			}
		}
		// Take as many whole lines as fit; at least one. All of p when it
		// fits (the usual case: no scan for line ends).
		n := 0
		if s.size+int64(len(p)) <= s.maxBytes {
			n = len(p)
		}
		for n < len(p) {
			e := n + lineLen(p[n:])
			if n > 0 && s.size+int64(e) > s.maxBytes {
				break
			}
			n = e
		}
		if !s.midLine && s.size > 0 && s.size+int64(n) > s.maxBytes {
			if err := s.rotate(); err != nil {
				return written, err
			}
			continue
		}
		w, err := s.f.Write(p[:n])
		s.size += int64(w)
		written += w
		if err != nil {
			s.midLine = w > 0 && p[w-1] != '\n'
			return written, err
		}
		s.midLine = false
		p = p[n:]
	}
	return written, nil
}

func lineLen(p []byte) int {
	if i := bytes.IndexByte(p, '\n'); i >= 0 {
		return i + 1
	}
	return len(p)
}

// rotate closes the current file under its rotated name and opens a new one.
func (s *fileSink) rotate() error {
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	if err := s.f.Close(); err != nil {
		s.f = nil
		return fmt.Errorf("audit: %w", err)
	}
	s.f = nil
	t := s.now().UTC()
	var dst string
	for {
		dst = filepath.Join(s.dir, rotatedPrefix+t.Format(rotatedLayout)+rotatedSuffix)
		if _, err := os.Lstat(dst); os.IsNotExist(err) {
			break
		}
		t = t.Add(time.Nanosecond)
	}
	if err := os.Rename(filepath.Join(s.dir, currentName), dst); err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	if err := s.open(); err != nil {
		return err
	}
	return s.prune()
}

// rotated lists the rotated files, oldest first.
func rotated(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range ents {
		n := e.Name()
		if e.Type().IsRegular() && strings.HasPrefix(n, rotatedPrefix) && strings.HasSuffix(n, rotatedSuffix) {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	return names, nil
}

// prune removes the oldest rotated files beyond maxFiles.
func (s *fileSink) prune() error {
	names, err := rotated(s.dir)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	for len(names) > s.maxFiles {
		if err := os.Remove(filepath.Join(s.dir, names[0])); err != nil && !os.IsNotExist(err) {
			return fmt.Errorf("audit: %w", err)
		}
		names = names[1:]
	}
	return nil
}

func (s *fileSink) Sync() error {
	if s.f == nil {
		return nil
	}
	return s.f.Sync()
}

func (s *fileSink) Close() error {
	if s.f == nil {
		return nil
	}
	err := s.f.Sync()
	if cerr := s.f.Close(); err == nil {
		err = cerr
	}
	s.f = nil
	return err
}
