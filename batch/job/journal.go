package job

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// journal records finished files, one JSON line each, appended after the
// output's rename. Group commit: every syncEvery lines it syncs the
// directories the renames touched, then the journal, so a line on disk
// always means a durable output. A line lost in a crash only means the
// file is done again.
type journal struct {
	path  string
	f     *os.File
	fsync bool
	seen  map[string]journalEntry
	dirs  map[string]bool
	n     int
}

type journalEntry struct {
	Rel   string `json:"rel"`
	Size  int64  `json:"size"`
	MTime int64  `json:"mtime"`
}

const syncEvery = 256

func openJournal(path string, resume, fsync bool) (*journal, error) {
	j := &journal{path: path, fsync: fsync, seen: map[string]journalEntry{}, dirs: map[string]bool{}}
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

func (j *journal) record(t task) error {
	b, _ := json.Marshal(journalEntry{Rel: t.rel, Size: t.size, MTime: t.mtime})
	if _, err := j.f.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("job: journal: %w", err)
	}
	j.dirs[filepath.Dir(t.dst)] = true
	if j.n++; j.n%syncEvery == 0 {
		return j.sync()
	}
	return nil
}

func (j *journal) sync() error {
	if !j.fsync {
		return nil
	}
	for d := range j.dirs {
		if err := syncDir(d); err != nil {
			return fmt.Errorf("job: sync %s: %w", d, err)
		}
		delete(j.dirs, d)
	}
	return j.f.Sync()
}

func (j *journal) close() { j.f.Close() }

func (j *journal) remove() { j.f.Close(); os.Remove(j.path) }

func syncDir(d string) error {
	f, err := os.Open(d)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}
