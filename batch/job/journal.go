package job

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// journal records finished files, one JSON line each. Lines wait in
// memory and are written by group commit: every syncEvery files or every
// second, it first makes the outputs durable (SyncBatch: one syncfs of
// the output file system; SyncFile: the outputs were synced before their
// rename, so only their directories), then appends the lines and syncs
// the journal. A line on disk therefore always means a durable output;
// lines lost to a crash or a kill only mean those files are done again.
type journal struct {
	path, root string
	f          *os.File
	mode       SyncMode
	seen       map[string]journalEntry
	dirs       map[string]bool
	outs       []string
	pending    []byte
	n          int
	last       time.Time
}

type journalEntry struct {
	Rel   string `json:"rel"`
	Size  int64  `json:"size"`
	MTime int64  `json:"mtime"`
}

const (
	syncEvery    = 256
	syncInterval = time.Second
)

func openJournal(root string, resume bool, mode SyncMode) (*journal, error) {
	path := filepath.Join(root, JournalName)
	j := &journal{path: path, root: root, mode: mode, seen: map[string]journalEntry{}, dirs: map[string]bool{}, last: time.Now()}
	if f, err := os.Open(path); err == nil {
		if !resume {
			f.Close()
			return nil, fmt.Errorf("job: %s holds the journal of an unfinished job: pass --resume to continue it, or remove it to start over", path)
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var e journalEntry
			if json.Unmarshal(sc.Bytes(), &e) == nil { // a torn last line is ignored
				j.seen[e.Rel] = e
			}
		}
		f.Close()
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("job: journal: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("job: journal: %w", err)
	}
	j.f = f
	return j, nil
}

// done reports whether t finished in an earlier run with the same source
// size and modification time.
func (j *journal) done(t task) bool {
	e, ok := j.seen[t.rel]
	return ok && e.Size == t.size && e.MTime == t.mtime
}

// record notes a renamed output; it commits when a group is due.
func (j *journal) record(t task) error {
	b, _ := json.Marshal(journalEntry{Rel: t.rel, Size: t.size, MTime: t.mtime})
	j.pending = append(append(j.pending, b...), '\n')
	j.dirs[filepath.Dir(t.dst)] = true
	j.outs = append(j.outs, t.dst)
	if j.n++; j.n%syncEvery == 0 {
		return j.commit()
	}
	return nil
}

// tick commits pending lines older than syncInterval.
func (j *journal) tick() error {
	if len(j.pending) > 0 && time.Since(j.last) >= syncInterval {
		return j.commit()
	}
	return nil
}

// commit makes the recorded outputs durable, then their lines.
func (j *journal) commit() error {
	j.last = time.Now()
	if len(j.pending) == 0 {
		return nil
	}
	switch j.mode {
	case SyncBatch:
		if err := syncOutputs(j.root, j.outs, j.dirs); err != nil {
			return fmt.Errorf("job: sync outputs: %w", err)
		}
	case SyncFile:
		for d := range j.dirs {
			if err := syncPath(d); err != nil {
				return fmt.Errorf("job: sync %s: %w", d, err)
			}
		}
	}
	clear(j.dirs)
	j.outs = j.outs[:0]
	if _, err := j.f.Write(j.pending); err != nil {
		return fmt.Errorf("job: journal: %w", err)
	}
	j.pending = j.pending[:0]
	if j.mode != SyncNone {
		return j.f.Sync()
	}
	return nil
}

func (j *journal) close() { j.f.Close() }

func (j *journal) remove() { j.f.Close(); os.Remove(j.path) }

// syncPath fsyncs a file or directory.
func syncPath(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}
