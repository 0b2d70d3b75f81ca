package job

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// mapTestDir is where the mapped-path tests write: /dev/shm (tmpfs, the
// benchmark's file system) when there is one, else the test's temporary
// directory.
func mapTestDir(t testing.TB) string {
	t.Helper()
	d, err := os.MkdirTemp("/dev/shm", "kmsd-job-test-")
	if err != nil {
		return t.TempDir()
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// TestMapped: files encrypted through mappings (every size from one byte,
// across frame and window boundaries, the largest on both goroutines),
// with and without verification, decrypt back through the job's reader
// and have the length the write path gives them.
func TestMapped(t *testing.T) {
	base := mapTestDir(t)
	k := newSealKMS(t)
	sizes := []int{1, 4095, 4096, 4097, 3*4096 + 5, mapWindow - 1, mapWindow, mapWindow + 1, 2*mapWindow + 12345}
	in := filepath.Join(base, "in")
	os.MkdirAll(in, 0o755)
	want := map[string][]byte{}
	for _, n := range sizes {
		b := make([]byte, n)
		rand.Read(b)
		name := fmt.Sprintf("f%d", n)
		if err := os.WriteFile(filepath.Join(in, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
		want[name] = b
	}
	lens := map[bool]map[string]int64{}
	for _, mapped := range []bool{true, false} {
		for _, noVerify := range []bool{false, true} {
			name := fmt.Sprintf("mapped=%v/no-verify=%v", mapped, noVerify)
			out, dec := filepath.Join(base, "out"), filepath.Join(base, "dec")
			j := newTestJob(t, Config{Mode: Encrypt, KMS: []KMS{k}, KeyID: "k", Sync: SyncNone, NoVerify: noVerify})
			j.mapMin = 1 // every size, small ones too
			if !mapped {
				j.mapMin = 1 << 62
			}
			var mu sync.Mutex
			windows := 0
			j.onMap = func(int64) { mu.Lock(); windows++; mu.Unlock() }
			s, err := j.Run(context.Background(), in, out)
			if err != nil || !s.OK() || s.Succeeded != int64(len(sizes)) {
				t.Fatalf("%s: encrypt %+v %v", name, s, err)
			}
			if want := 1 + 1 + 1 + 1 + 1 + 1 + 1 + 2 + 3; mapped && windows != want || !mapped && windows != 0 {
				t.Fatalf("%s: %d windows mapped", name, windows)
			}
			lens[mapped] = map[string]int64{}
			for n := range want {
				fi, err := os.Stat(filepath.Join(out, n+Suffix))
				if err != nil {
					t.Fatal(err)
				}
				lens[mapped][n] = fi.Size()
			}
			s, err = newTestJob(t, Config{Mode: Decrypt, KMS: []KMS{k}, Sync: SyncNone}).Run(context.Background(), out, dec)
			if err != nil || !s.OK() {
				t.Fatalf("%s: decrypt %+v %v", name, s, err)
			}
			for n, b := range want {
				got, err := os.ReadFile(filepath.Join(dec, n))
				if err != nil || !bytes.Equal(got, b) {
					t.Fatalf("%s: %s: %v, equal %v", name, n, err, bytes.Equal(got, b))
				}
			}
			os.RemoveAll(out)
			os.RemoveAll(dec)
		}
	}
	for n := range want {
		if lens[true][n] != lens[false][n] {
			t.Errorf("%s: %d bytes mapped, %d written", n, lens[true][n], lens[false][n])
		}
	}
}

// TestMappedFaults: a source truncated while it is mapped, or the
// temporary output truncated under its mapping, raises SIGBUS in the
// goroutine sealing that window (either of the two); the job turns it
// into the file's failure (ErrSourceChanged for the source), leaves no
// output and no temporary file, and goes on with the next file.
func TestMappedFaults(t *testing.T) {
	for _, what := range []string{"source", "output"} {
		t.Run(what, func(t *testing.T) {
			base := mapTestDir(t)
			in, out := filepath.Join(base, "in"), filepath.Join(base, "out")
			os.MkdirAll(in, 0o755)
			big, small := filepath.Join(in, "big"), filepath.Join(in, "small")
			b := make([]byte, 3*mapWindow+5)
			rand.Read(b)
			os.WriteFile(big, b, 0o644)
			os.WriteFile(small, b[:100<<10], 0o644)
			j := newTestJob(t, Config{Mode: Encrypt, KMS: []KMS{newSealKMS(t)}, KeyID: "k", Sync: SyncNone, Workers: 1})
			j.onMap = func(off int64) {
				if off != mapWindow {
					return
				}
				switch what {
				case "source": // to the middle of the window being sealed
					os.Truncate(big, mapWindow+mapWindow/2)
				case "output":
					os.Truncate(filepath.Join(out, ".big"+Suffix+tmpSuffix), 0)
				}
			}
			s, err := j.Run(context.Background(), in, out)
			if err != nil {
				t.Fatal(err)
			}
			if s.Failed != 1 || s.Succeeded != 1 || len(s.Failures) != 1 || s.Failures[0].Path != big {
				t.Fatalf("summary %+v", s)
			}
			msg := s.Failures[0].Error
			t.Log(msg)
			if what == "source" && !strings.HasPrefix(msg, ErrSourceChanged.Error()) ||
				what == "output" && !strings.Contains(msg, "writing the output through its mapping failed") {
				t.Fatalf("failure %q", msg)
			}
			ents, _ := os.ReadDir(out)
			var names []string
			for _, e := range ents {
				names = append(names, e.Name())
			}
			if len(names) != 2 || names[0] != JournalName || names[1] != "small"+Suffix {
				t.Fatalf("output directory holds %v", names)
			}
		})
	}
}
