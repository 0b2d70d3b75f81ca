package job

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kmsd/kmsd/batch/esdk"
)

// Mode is what a job does to each file.
type Mode int

const (
	Encrypt Mode = iota + 1
	Decrypt
	ReEncrypt
)

func (m Mode) String() string {
	switch m {
	case Encrypt:
		return "encrypt"
	case Decrypt:
		return "decrypt"
	case ReEncrypt:
		return "reencrypt"
	}
	return fmt.Sprintf("mode(%d)", int(m))
}

// SyncMode is how outputs are made durable.
type SyncMode int

const (
	// SyncBatch syncs outputs by group commit (syncfs on Linux) before
	// their journal lines, and at the end of the job.
	SyncBatch SyncMode = iota
	// SyncFile fsyncs each output before its rename.
	SyncFile
	// SyncNone leaves it to the OS (scratch disks, benchmarks of the
	// pipeline): a crash may leave empty outputs under final names.
	SyncNone
)

// Suffix is appended to the names of encrypted files.
const Suffix = ".encrypted"

// JournalName is the journal's name in the output directory.
const JournalName = ".kmsd-job.journal"

// tmpSuffix ends the temporary name of an output being written.
const tmpSuffix = ".kmsd-tmp"

// CacheConfig bounds data-key reuse (the AWS Encryption SDK caching
// materials manager's limits). Zero values mean the defaults.
type CacheConfig struct {
	Disabled    bool
	MaxAge      time.Duration // default 5m
	MaxMessages int64         // default 1000
	MaxBytes    int64         // plaintext bytes per data key; default 4 GiB
}

// RetryConfig shapes retries of throttled or unavailable KMS calls.
type RetryConfig struct {
	MaxAttempts int           // default 8
	BaseDelay   time.Duration // default 50ms
	MaxDelay    time.Duration // default 5s
}

// Config is a job. Zero values mean the defaults.
type Config struct {
	Mode Mode
	// KMS holds one client per endpoint, in failover order.
	KMS []KMS
	// KeyID: the key to encrypt or re-wrap to; for decrypt, when set, only
	// data keys wrapped by this key (ARN, key ID or alias ARN) are used.
	KeyID string
	// Context: the encryption context of new messages; for decrypt and
	// re-wrap, pairs every message's context must contain.
	Context     map[string]string
	Suite       esdk.Suite // default esdk.SuiteCommitKey
	FrameLength int        // default esdk.DefaultFrameLength
	Workers     int        // default max(4, 2*GOMAXPROCS)
	Cache       CacheConfig
	Retry       RetryConfig
	Limits      esdk.Limits
	// FailFast stops the job at the first failed file.
	FailFast bool
	// Resume continues a job whose journal is in the output directory.
	Resume bool
	// NoVerify skips reading outputs back before the rename (encrypt and
	// re-wrap; a decrypt output is always authenticated end to end).
	NoVerify bool
	// Reseal makes a re-wrap re-encrypt every message under a new data key
	// (a new body) instead of replacing its header's data keys; signed
	// messages are re-encrypted either way.
	Reseal bool
	// Mmap encrypts regular files (from 64 KiB, unsigned suite) through
	// memory mappings of the source and the output (Linux; elsewhere, or
	// where the output's file system has no fallocate, pread and pwrite).
	// It pays where a page's first mapping is cheap; not on a virtual
	// machine that shadows page tables (README "Bulk jobs").
	Mmap bool
	// Sync says how outputs are made durable before the journal (and the
	// summary) counts them: SyncBatch (default), SyncFile or SyncNone.
	Sync SyncMode
	// Progress, when set, is called every ProgressEvery (default 200ms)
	// and once at the end, from one goroutine.
	Progress      func(Progress)
	ProgressEvery time.Duration
}

// Validate names the first field that is wrong.
func (c *Config) Validate() error {
	switch {
	case c.Mode < Encrypt || c.Mode > ReEncrypt:
		return errors.New("job: Config.Mode: want Encrypt, Decrypt or ReEncrypt")
	case len(c.KMS) == 0:
		return errors.New("job: Config.KMS: at least one endpoint")
	case c.KeyID == "" && c.Mode != Decrypt:
		return fmt.Errorf("job: Config.KeyID: %v needs a key", c.Mode)
	case c.Suite != 0 && c.Suite != esdk.SuiteCommitKey && c.Suite != esdk.SuiteCommitKeyECDSAP384:
		return fmt.Errorf("job: Config.Suite: %v is not written", c.Suite)
	case c.FrameLength < 0 || c.FrameLength > 1<<24:
		return errors.New("job: Config.FrameLength: 1 byte to 16 MiB")
	case c.Sync < SyncBatch || c.Sync > SyncNone:
		return errors.New("job: Config.Sync: SyncBatch, SyncFile or SyncNone")
	case c.Workers < 0 || c.Cache.MaxMessages < 0 || c.Cache.MaxBytes < 0 || c.Cache.MaxAge < 0:
		return errors.New("job: Config.Workers and Config.Cache limits must not be negative")
	}
	for k := range c.Context {
		if strings.HasPrefix(k, "aws-crypto-") && c.Mode == Encrypt {
			return fmt.Errorf("job: Config.Context: %q: the aws-crypto- prefix is reserved for the AWS Encryption SDK", k)
		}
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.Suite == 0 {
		c.Suite = esdk.SuiteCommitKey
	}
	if c.FrameLength == 0 {
		c.FrameLength = esdk.DefaultFrameLength
	}
	if c.Workers == 0 {
		c.Workers = max(4, 2*runtime.GOMAXPROCS(0))
	}
	if c.Cache.MaxAge == 0 {
		c.Cache.MaxAge = 5 * time.Minute
	}
	if c.Cache.MaxMessages == 0 {
		c.Cache.MaxMessages = 1000
	}
	if c.Cache.MaxBytes == 0 {
		c.Cache.MaxBytes = 4 << 30
	}
	if c.Retry.MaxAttempts == 0 {
		c.Retry.MaxAttempts = 8
	}
	if c.Retry.BaseDelay == 0 {
		c.Retry.BaseDelay = 50 * time.Millisecond
	}
	if c.Retry.MaxDelay == 0 {
		c.Retry.MaxDelay = 5 * time.Second
	}
	if c.ProgressEvery == 0 {
		c.ProgressEvery = 200 * time.Millisecond
	}
	return c
}

// Failure is one file that failed.
type Failure struct {
	Path  string `json:"path"`
	Error string `json:"error"`
}

// Summary is what a job did.
type Summary struct {
	Mode      string           `json:"mode"`
	Files     int64            `json:"files"`
	Succeeded int64            `json:"succeeded"`
	Failed    int64            `json:"failed"`
	Skipped   int64            `json:"skipped"` // done in an earlier run (--resume)
	Bytes     int64            `json:"bytes"`   // input bytes of succeeded files
	OutBytes  int64            `json:"out_bytes"`
	Duration  time.Duration    `json:"-"`
	Seconds   float64          `json:"duration_seconds"`
	KMSCalls  map[string]int64 `json:"kms_calls"`
	// Resealed counts re-wrapped messages that were decrypted and
	// encrypted again (a new body): the signed ones, or all with
	// Config.Reseal.
	Resealed    int64     `json:"resealed,omitempty"`
	Interrupted bool      `json:"interrupted,omitempty"`
	Failures    []Failure `json:"failures"`
}

// OK reports whether every file succeeded and the job ran to the end.
func (s *Summary) OK() bool { return s.Failed == 0 && !s.Interrupted }

// Progress is a snapshot for a progress display.
type Progress struct {
	Done, Failed, Skipped int64 // files
	Seen                  int64 // files found so far
	Bytes, TotalBytes     int64 // input bytes done, found so far
	WalkDone              bool  // Seen and TotalBytes are final
	Elapsed               time.Duration
}

// Job runs one Config. A Job is used once.
type Job struct {
	cfg   Config
	kms   *client
	calls kmsCalls
	// resealed counts messages re-encrypted by a re-wrap.
	resealed atomic.Int64
	enc      *encCache
	dec      *decCache
	dirs     sync.Map // output directories made

	posMin   int64           // files from this size are encrypted at known positions
	onWindow func(off int64) // tests: called as a window from plaintext offset off starts (once mapped)
}

// New checks cfg and returns a job.
func New(cfg Config) (*Job, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	j := &Job{cfg: cfg, posMin: posMin}
	j.kms = &client{eps: cfg.KMS, retry: cfg.Retry, calls: &j.calls, sleepFn: sleepCtx}
	j.enc = &encCache{cfg: cfg.Cache, now: time.Now}
	j.dec = &decCache{cfg: cfg.Cache, now: time.Now, m: map[string]*decEntry{}, inflight: map[string]chan struct{}{}}
	return j, nil
}

func (j *Job) summary(s *Summary, start time.Time) {
	s.Mode = j.cfg.Mode.String()
	s.Duration = time.Since(start)
	s.Seconds = s.Duration.Seconds()
	s.KMSCalls = map[string]int64{
		"GenerateDataKey": j.calls.generate.Load(),
		"Decrypt":         j.calls.decrypt.Load(),
		"Encrypt":         j.calls.encrypt.Load(),
		"ReEncrypt":       j.calls.reencrypt.Load(),
		"retries":         j.calls.retries.Load(),
	}
	s.Resealed = j.resealed.Load()
	sort.Slice(s.Failures, func(a, b int) bool { return s.Failures[a].Path < s.Failures[b].Path })
	j.enc.close()
	j.dec.close()
}

// task is one file of a tree job.
type task struct {
	src, dst, rel string
	size          int64
	mtime         int64
}

type result struct {
	t       task
	err     error
	skipped bool
	out     int64
}

// outName maps a source name to its output name.
func (j *Job) outName(name string) string {
	switch j.cfg.Mode {
	case Encrypt:
		return name + Suffix
	case Decrypt:
		if s := strings.TrimSuffix(name, Suffix); s != name && s != "" {
			return s
		}
		return name + ".decrypted"
	}
	return name
}

// Run processes the file or directory tree in into the directory out
// (created if missing): encrypted files get Suffix, decrypted ones lose
// it, re-wrapped ones keep their names. The error is for the job as a
// whole (bad paths, a journal without Resume); per-file failures are in
// the summary.
func (j *Job) Run(ctx context.Context, in, out string) (*Summary, error) {
	start := time.Now()
	fi, err := os.Stat(in)
	if err != nil {
		return nil, fmt.Errorf("job: input: %w", err)
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return nil, fmt.Errorf("job: output: %w", err)
	}
	if fi.IsDir() {
		ain, _ := filepath.Abs(in)
		aout, _ := filepath.Abs(out)
		if aout == ain || strings.HasPrefix(aout, ain+string(filepath.Separator)) {
			return nil, fmt.Errorf("job: the output directory %s is inside the input %s", out, in)
		}
	}
	jr, err := openJournal(out, j.cfg.Resume, j.cfg.Sync)
	if err != nil {
		return nil, err
	}
	defer jr.close()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	tasks := make(chan task, 256)
	results := make(chan result, 256)
	var walkErr error
	var seen, seenBytes int64
	walkDone := make(chan struct{})
	var walkMu sync.Mutex
	go func() {
		defer close(tasks)
		defer close(walkDone)
		add := func(src, rel string, info os.FileInfo) bool {
			t := task{src: src, rel: rel, dst: filepath.Join(out, filepath.Dir(rel), j.outName(filepath.Base(rel))), size: info.Size(), mtime: info.ModTime().UnixNano()}
			walkMu.Lock()
			seen++
			seenBytes += t.size
			walkMu.Unlock()
			select {
			case tasks <- t:
				return true
			case <-ctx.Done():
				return false
			}
		}
		if !fi.IsDir() {
			add(in, filepath.Base(in), fi)
			return
		}
		walkErr = filepath.WalkDir(in, func(p string, d os.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if !d.Type().IsRegular() {
				return nil // directories are walked; links and devices are not files to encrypt
			}
			if name := d.Name(); name == JournalName || strings.HasSuffix(name, tmpSuffix) {
				return nil // a job's own bookkeeping, e.g. decrypting the output of an unfinished job
			}
			info, err := d.Info()
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(in, p)
			if !add(p, rel, info) {
				return ctx.Err()
			}
			return nil
		})
	}()

	var wg sync.WaitGroup
	for range j.cfg.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for t := range tasks {
				if ctx.Err() != nil {
					continue // drain
				}
				if j.cfg.Resume && jr.done(t) {
					if _, err := os.Stat(t.dst); err == nil {
						results <- result{t: t, skipped: true}
						continue
					}
				}
				n, err := j.file(ctx, t)
				if err != nil && j.cfg.FailFast {
					cancel() // before this worker takes another file
				}
				results <- result{t: t, err: err, out: n}
			}
		}()
	}
	go func() { wg.Wait(); close(results) }()

	s := &Summary{Failures: []Failure{}}
	var doneBytes int64
	tick := time.NewTicker(j.cfg.ProgressEvery)
	defer tick.Stop()
	report := func() {
		if j.cfg.Progress == nil {
			return
		}
		walkMu.Lock()
		p := Progress{Done: s.Succeeded, Failed: s.Failed, Skipped: s.Skipped, Seen: seen, Bytes: doneBytes, TotalBytes: seenBytes, Elapsed: time.Since(start)}
		walkMu.Unlock()
		select {
		case <-walkDone:
			p.WalkDone = true
		default:
		}
		j.cfg.Progress(p)
	}
	var jerr error
loop:
	for {
		select {
		case r, ok := <-results:
			if !ok {
				break loop
			}
			s.Files++
			doneBytes += r.t.size
			switch {
			case r.skipped:
				s.Skipped++
			case r.err != nil:
				if errors.Is(r.err, context.Canceled) && ctx.Err() != nil {
					s.Files-- // not attempted to the end: interrupted
					continue
				}
				s.Failed++
				s.Failures = append(s.Failures, Failure{Path: r.t.src, Error: r.err.Error()})
				if j.cfg.FailFast {
					cancel()
				}
			default:
				s.Succeeded++
				s.Bytes += r.t.size
				s.OutBytes += r.out
				if err := jr.record(r.t); err != nil && jerr == nil {
					jerr = err
				}
			}
		case <-tick.C:
			report()
			if err := jr.tick(); err != nil && jerr == nil {
				jerr = err
			}
		}
	}
	report()
	if err := jr.commit(); err != nil && jerr == nil {
		jerr = err
	}
	if ctx.Err() != nil && !(j.cfg.FailFast && s.Failed > 0) {
		s.Interrupted = true
	}
	if walkErr != nil && !errors.Is(walkErr, context.Canceled) {
		s.Failed++
		s.Failures = append(s.Failures, Failure{Path: in, Error: walkErr.Error()})
	}
	if j.cfg.FailFast && s.Failed > 0 {
		s.Interrupted = false
	}
	j.summary(s, start)
	if s.OK() && jerr == nil {
		jr.remove() // the job is complete: nothing to resume
	}
	return s, jerr
}

// Stream processes one message from r to w (stdin to stdout). Encrypt
// writes frames as it reads; decrypt writes each frame once it
// authenticates, so on a failure w has received a verified prefix and the
// error says the message is bad (for signed suites the final frame is
// held until the signature verifies). Data keys are not cached.
func (j *Job) Stream(ctx context.Context, r io.Reader, w io.Writer) (*Summary, error) {
	start := time.Now()
	s := &Summary{Files: 1, Failures: []Failure{}}
	cr := &countReader{r: r}
	bw := bufio.NewWriterSize(w, ioBuf)
	cw := &countWriter{w: bw}
	var err error
	var resealed bool
	switch j.cfg.Mode {
	case Encrypt:
		var verify func(*os.File) error
		verify, err = j.encryptStream(ctx, struct{ io.Reader }{cr}, cw, -1)
		if verify != nil {
			verify(nil)
		}
	case Decrypt:
		err = j.decryptStream(ctx, cr, cw)
	case ReEncrypt:
		var verify func(*os.File) error
		verify, err = j.rewrapStream(ctx, cr, cw, &resealed)
		if verify != nil {
			verify(nil)
		}
	}
	if ferr := bw.Flush(); err == nil {
		err = ferr
	}
	if err != nil {
		s.Failed = 1
		s.Failures = []Failure{{Path: "-", Error: err.Error()}}
	} else {
		s.Succeeded = 1
		s.Bytes = cr.n
		if resealed {
			j.resealed.Add(1)
		}
	}
	s.OutBytes = cw.n
	j.summary(s, start)
	return s, nil
}

type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
