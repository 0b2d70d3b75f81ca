package job

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
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

// TestPositional: files encrypted at known positions (every size from
// one byte, across frame and window boundaries, the largest on both
// goroutines), with pread and pwrite and through mappings, with and
// without verification, decrypt back through the job's reader and have
// the length the stream of writes gives them.
func TestPositional(t *testing.T) {
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
	lens := map[string]map[string]int64{}
	for _, path := range []string{"stream", "pread", "mmap"} {
		for _, noVerify := range []bool{false, true} {
			name := fmt.Sprintf("%s/no-verify=%v", path, noVerify)
			out, dec := filepath.Join(base, "out"), filepath.Join(base, "dec")
			j := newTestJob(t, Config{Mode: Encrypt, KMS: []KMS{k}, KeyID: "k", Sync: SyncNone, NoVerify: noVerify, Mmap: path == "mmap"})
			j.posMin = 1 // every size, small ones too
			if path == "stream" {
				j.posMin = 1 << 62
			}
			var mu sync.Mutex
			windows := 0
			j.onWindow = func(int64) { mu.Lock(); windows++; mu.Unlock() }
			s, err := j.Run(context.Background(), in, out)
			if err != nil || !s.OK() || s.Succeeded != int64(len(sizes)) {
				t.Fatalf("%s: encrypt %+v %v", name, s, err)
			}
			wantWindows := map[string]int{"stream": 0, "mmap": 7 + 2 + 3, "pread": 5 + 8 + 8 + 9 + 17}[path] // 8 MiB and 1 MiB windows
			if windows != wantWindows {
				t.Fatalf("%s: %d windows, want %d", name, windows, wantWindows)
			}
			lens[path] = map[string]int64{}
			for n := range want {
				fi, err := os.Stat(filepath.Join(out, n+Suffix))
				if err != nil {
					t.Fatal(err)
				}
				lens[path][n] = fi.Size()
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
		if lens["pread"][n] != lens["stream"][n] || lens["mmap"][n] != lens["stream"][n] {
			t.Errorf("%s: %d bytes with pread, %d mapped, %d as a stream", n, lens["pread"][n], lens["mmap"][n], lens["stream"][n])
		}
	}
}

// TestPositionalFaults: a source truncated while it is encrypted, or
// (mapped) the temporary output truncated under its mapping, fails that
// file, never the process: with mappings the goroutine sealing that
// window (either of the two) takes a SIGBUS, which the job turns into an
// error (ErrSourceChanged for the source); with pread the source reads
// short. No output and no temporary file are left, and the job goes on
// with the next file.
func TestPositionalFaults(t *testing.T) {
	for _, tc := range []struct{ what, path string }{{"source", "mmap"}, {"output", "mmap"}, {"source", "pread"}} {
		t.Run(tc.what+"/"+tc.path, func(t *testing.T) {
			base := mapTestDir(t)
			in, out := filepath.Join(base, "in"), filepath.Join(base, "out")
			os.MkdirAll(in, 0o755)
			big, small := filepath.Join(in, "big"), filepath.Join(in, "small")
			b := make([]byte, 3*mapWindow+5)
			rand.Read(b)
			os.WriteFile(big, b, 0o644)
			os.WriteFile(small, b[:100<<10], 0o644)
			j := newTestJob(t, Config{Mode: Encrypt, KMS: []KMS{newSealKMS(t)}, KeyID: "k", Sync: SyncNone, Workers: 1, Mmap: tc.path == "mmap"})
			j.onWindow = func(off int64) {
				if off != mapWindow {
					return
				}
				switch tc.what {
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
			if tc.what == "source" && !strings.Contains(msg, ErrSourceChanged.Error()) ||
				tc.what == "output" && !strings.Contains(msg, "writing the output through its mapping failed") {
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

// BenchmarkEncryptFile encrypts one file (verified, no sync) as a stream
// of writes, at known positions with pread and pwrite, and through
// mappings, in /dev/shm when there is one, at
// sizes around the threshold (mapMin), next to each other so that the
// figure to read is the ratio; CPU is the process's, per file.
func BenchmarkEncryptFile(b *testing.B) {
	base := mapTestDir(b)
	k := newSealKMS(b)
	for _, size := range []int{16 << 10, 64 << 10, 256 << 10, 1 << 20, 64 << 20} {
		src := filepath.Join(base, fmt.Sprintf("src%d", size))
		for _, path := range []string{"stream", "pread", "mmap", "stream-no-verify", "pread-no-verify"} {
			b.Run(fmt.Sprintf("%dKiB/%s", size>>10, path), func(b *testing.B) {
				fi, err := os.Stat(src)
				if err != nil {
					p := make([]byte, size)
					mrand.NewChaCha8([32]byte{1}).Read(p)
					if err := os.WriteFile(src, p, 0o644); err != nil {
						b.Fatal(err)
					}
					fi, _ = os.Stat(src)
				}
				j := newTestJob(b, Config{Mode: Encrypt, KMS: []KMS{k}, KeyID: "k", Sync: SyncNone, FrameLength: 64 << 10, Mmap: path == "mmap",
					NoVerify: strings.HasSuffix(path, "-no-verify")})
				j.posMin = 1
				if strings.HasPrefix(path, "stream") {
					j.posMin = 1 << 62
				}
				t := task{src: src, dst: filepath.Join(base, "out", "x"+Suffix), size: fi.Size(), mtime: fi.ModTime().UnixNano()}
				b.SetBytes(int64(size))
				b.ReportAllocs()
				cpu0 := cpuTime()
				for b.Loop() {
					if _, err := j.file(context.Background(), t); err != nil {
						b.Fatal(err)
					}
					os.Remove(t.dst)
				}
				b.ReportMetric((cpuTime()-cpu0).Seconds()/float64(b.N)/(float64(size)/(1<<30)), "cpu-s/GiB")
			})
		}
	}
}

// cpuTime is the process's user+system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
