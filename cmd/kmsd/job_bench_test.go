package main

import (
	"crypto/aes"
	"crypto/cipher"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// BenchmarkJob encrypts a data set (KMSD_JOB_BENCH_BYTES, default 1 GiB)
// of 1 MiB files and of 4 KiB files, and as one file, with `kmsd job
// encrypt` against a local kmsd process, with data-key caching on and off
// (one file: on), and reports
// MB/s, files/s and KMS calls per 1,000 files next to Go's raw
// AES-256-GCM rate measured in the same run (one core and all cores).
// Run it with `make bench-jobs` (-benchtime 1x: one pass per data set).
// Outputs are synced and verified as in production (every frame opened
// again and every write read back) unless KMSD_JOB_BENCH_FLAGS says
// otherwise (e.g. --no-verify);
// files go to a temporary directory, or under KMSD_JOB_BENCH_DIR.
func BenchmarkJob(b *testing.B) {
	total := int64(1 << 30)
	if v, err := strconv.ParseInt(os.Getenv("KMSD_JOB_BENCH_BYTES"), 10, 64); err == nil && v > 0 {
		total = v
	}
	var extra []string
	if v := os.Getenv("KMSD_JOB_BENCH_FLAGS"); v != "" {
		extra = strings.Fields(v)
	}
	base := b.TempDir()
	if d := os.Getenv("KMSD_JOB_BENCH_DIR"); d != "" { // e.g. /dev/shm: the pipeline without the disk
		var err error
		if base, err = os.MkdirTemp(d, "kmsd-job-bench-"); err != nil {
			b.Fatal(err)
		}
		defer os.RemoveAll(base)
	}
	e := newJobEnv(b)
	for _, ds := range []struct {
		name string
		size int
	}{{"1MiB-files", 1 << 20}, {"4KiB-files", 4 << 10}, {"one-file", int(total)}} {
		// One sub-benchmark per data set, so that -bench
		// 'BenchmarkJob/1MiB-files' writes only that data set.
		b.Run(ds.name, func(b *testing.B) {
			in := filepath.Join(base, "in")
			defer os.RemoveAll(in)
			n := int(total / int64(ds.size))
			writeFiles(b, in, n, ds.size)
			rawOne, rawAll := rawGCM(64 << 10)
			cp := copyRate(b, in, filepath.Join(base, "copy"), total)
			b.Logf("%s: raw AES-256-GCM in Go (64 KiB chunks) %.0f MB/s on one core, %.0f MB/s on %d cores; plain parallel copy of the tree %.0f MB/s",
				ds.name, rawOne, rawAll, runtime.GOMAXPROCS(0), cp)
			rd, wr := ioFloor(b, base)
			seal := float64(1<<30) / 1e6 / rawOne // CPU-s/GiB of one AES-GCM pass
			cores := float64(runtime.GOMAXPROCS(0))
			boundVerified := cores * seal / (rd + seal + wr + rd + seal)
			boundPlain := cores * seal / (rd + seal + wr)
			b.Logf("%s: the floor, in CPU-s/GiB: pread %.2f + seal %.2f + pwrite to a new file %.2f, and verified + read back %.2f + open %.2f: with every core busy and nothing else, at most %.2fx raw AES-GCM on one core verified, %.2fx with --no-verify",
				ds.name, rd, seal, wr, rd, seal, boundVerified, boundPlain)
			for _, cache := range []string{"cache-on", "cache-off"} {
				if n == 1 && cache == "cache-off" {
					continue // one data key either way
				}
				b.Run(cache, func(b *testing.B) {
					b.SetBytes(total)
					var calls int64
					var elapsed, cpu time.Duration
					for b.Loop() {
						out := filepath.Join(base, "out")
						args := []string{"encrypt", "--key", e.key1, "--in", in, "--out", out, "--json", "--quiet"}
						if ds.size >= 1<<20 { // large files: 64 KiB frames
							args = append(args, "--frame-length", "65536")
						}
						if cache == "cache-off" {
							args = append(args, "--no-cache")
						}
						args = append(args, extra...)
						start, cpu0 := time.Now(), cpuTime()
						code, stdout, errOut := e.job(b, args...)
						elapsed += time.Since(start)
						cpu += cpuTime() - cpu0
						if code != 0 {
							b.Fatalf("exit %d\n%s", code, errOut)
						}
						s := decodeSummary(b, stdout)
						calls = s.KMSCalls["GenerateDataKey"]
						b.StopTimer()
						os.RemoveAll(out)
						b.StartTimer()
					}
					secs := elapsed.Seconds() / float64(b.N)
					mbs := float64(total) / 1e6 / secs
					b.ReportMetric(float64(n)/secs, "files/s")
					b.ReportMetric(float64(calls)*1000/float64(n), "kms-calls/1000files")
					b.ReportMetric(rawOne, "raw-gcm-MB/s")
					b.ReportMetric(mbs/rawOne, "x-raw-gcm-1core")
					b.ReportMetric(boundVerified, "x-raw-gcm-floor-verified")
					b.ReportMetric(boundPlain, "x-raw-gcm-floor-no-verify")
					b.ReportMetric(mbs/cp, "x-plain-copy")
					cpuPerGiB := cpu.Seconds() / float64(b.N) / (float64(total) / (1 << 30))
					b.ReportMetric(cpuPerGiB, "cpu-s/GiB")
					b.Logf("%s %s: the job's process spent %.2f CPU-seconds per GiB (user+system); raw AES-256-GCM needs %.2f",
						ds.name, cache, cpuPerGiB, float64(1<<30)/1e6/rawOne)
					b.Logf("%s %s: %.0f MB/s, %.0f files/s, %d GenerateDataKey for %d files (%.1f per 1,000); %.2fx raw AES-GCM on one core (%.0f MB/s), %.2fx on all cores (%.0f MB/s), %.2fx a plain copy (%.0f MB/s)",
						ds.name, cache, mbs, float64(n)/secs, calls, n, float64(calls)*1000/float64(n), mbs/rawOne, rawOne, mbs/rawAll, rawAll, mbs/cp, cp)
				})
			}
		})
	}
}

// cpuTime is this process's user+system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// rawGCM measures Go's AES-256-GCM seal rate in MB/s on one goroutine
// and on GOMAXPROCS goroutines.
func rawGCM(chunk int) (one, all float64) {
	key := make([]byte, 32)
	block, _ := aes.NewCipher(key)
	g, _ := cipher.NewGCM(block)
	measure := func(workers int) float64 {
		const per = 512 << 20
		var wg sync.WaitGroup
		start := time.Now()
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				pt := make([]byte, chunk)
				out := make([]byte, 0, chunk+16)
				iv := make([]byte, 12)
				for done := 0; done < per; done += chunk {
					out = g.Seal(out[:0], iv, pt, nil)
				}
			}()
		}
		wg.Wait()
		return float64(workers) * per / 1e6 / time.Since(start).Seconds()
	}
	return measure(1), measure(runtime.GOMAXPROCS(0))
}

// ioFloor measures, in dir, the CPU seconds per GiB of the two kernel
// copies that every encryption of a file pays whatever the pipeline:
// reading a file that is in the page cache (pread, 256 KiB at a time) and
// writing a new one (pwrite, its pages allocated as written). It takes
// the best of three 256 MiB passes. With the AES-GCM passes (one to seal,
// one more to open what reads back) they bound the job from below.
func ioFloor(b *testing.B, dir string) (read, write float64) {
	b.Helper()
	const n = 256 << 20
	buf := make([]byte, 256<<10)
	mrand := rand.NewChaCha8([32]byte{2})
	mrand.Read(buf)
	read, write = 1e9, 1e9
	for range 3 {
		p := filepath.Join(dir, "io-floor")
		f, err := os.Create(p)
		if err != nil {
			b.Fatal(err)
		}
		c0 := cpuTime()
		for off := int64(0); off < n; off += int64(len(buf)) {
			if _, err := f.WriteAt(buf, off); err != nil {
				b.Fatal(err)
			}
		}
		c1 := cpuTime()
		for off := int64(0); off < n; off += int64(len(buf)) {
			if _, err := f.ReadAt(buf, off); err != nil {
				b.Fatal(err)
			}
		}
		c2 := cpuTime()
		f.Close()
		os.Remove(p)
		write = min(write, (c1-c0).Seconds()*(1<<30)/n)
		read = min(read, (c2-c1).Seconds()*(1<<30)/n)
	}
	return read, write
}

// copyRate copies the tree in to out (the job's default number of
// parallel files, no sync) and returns MB/s: the file-system ceiling the
// job's figures sit under.
func copyRate(b *testing.B, in, out string, total int64) float64 {
	b.Helper()
	var files []string
	filepath.WalkDir(in, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			files = append(files, p)
		}
		return nil
	})
	start := time.Now()
	work := make(chan string)
	var wg sync.WaitGroup
	for range max(4, 2*runtime.GOMAXPROCS(0)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 256<<10)
			for p := range work {
				rel, _ := filepath.Rel(in, p)
				dst := filepath.Join(out, rel)
				os.MkdirAll(filepath.Dir(dst), 0o755)
				src, err := os.Open(p)
				if err != nil {
					b.Error(err)
					continue
				}
				w, err := os.Create(dst)
				if err != nil {
					b.Error(err)
					src.Close()
					continue
				}
				io.CopyBuffer(w, src, buf)
				w.Close()
				src.Close()
			}
		}()
	}
	for _, f := range files {
		work <- f
	}
	close(work)
	wg.Wait()
	rate := float64(total) / 1e6 / time.Since(start).Seconds()
	os.RemoveAll(out)
	return rate
}

// writeFiles writes n files of size bytes (pseudo-random) in 256 per
// directory.
func writeFiles(b *testing.B, dir string, n, size int) {
	b.Helper()
	r := rand.NewChaCha8([32]byte{1})
	buf := make([]byte, min(size, 4<<20))
	for i := 0; i < n; i++ {
		d := filepath.Join(dir, fmt.Sprintf("d%04d", i/256))
		if i%256 == 0 {
			os.MkdirAll(d, 0o755)
		}
		f, err := os.Create(filepath.Join(d, fmt.Sprintf("f%06d", i)))
		if err != nil {
			b.Fatal(err)
		}
		for left := size; left > 0 && err == nil; left -= len(buf) {
			k := min(left, len(buf))
			r.Read(buf[:k])
			_, err = f.Write(buf[:k])
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			b.Fatal(err)
		}
	}
}
