package job

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kmsd/kmsd/batch/esdk"
)

// These tests cover the job's own logic (retries, failover, cache limits,
// journal) through the KMS seam; the whole pipeline against a real kmsd
// and the AWS SDK is tested in cmd/kmsd (job_test.go).

const testARN = "arn:aws:kms:us-east-1:111122223333:key/00000000-0000-0000-0000-000000000001"

// sealKMS wraps data keys with AES-GCM under one local key: the KMS side
// of the seam, with a hook that may fail a call first (fault injection).
type sealKMS struct {
	aead  cipher.AEAD
	fail  func(op string) error
	mu    sync.Mutex
	calls map[string]int
}

func newSealKMS(t testing.TB) *sealKMS {
	t.Helper()
	k := make([]byte, 32)
	rand.Read(k)
	b, _ := aes.NewCipher(k)
	g, _ := cipher.NewGCM(b)
	return &sealKMS{aead: g, calls: map[string]int{}}
}

func (s *sealKMS) hook(op string) error {
	s.mu.Lock()
	s.calls[op]++
	s.mu.Unlock()
	if s.fail != nil {
		return s.fail(op)
	}
	return nil
}

func (s *sealKMS) count(op string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[op]
}

// ecAAD binds a blob to its encryption context, as KMS does.
func ecAAD(ec map[string]string) []byte {
	keys := make([]string, 0, len(ec))
	for k := range ec {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b []byte
	for _, k := range keys {
		b = fmt.Appendf(b, "%q=%q;", k, ec[k])
	}
	return b
}

func (s *sealKMS) seal(pt []byte, ec map[string]string) []byte {
	iv := make([]byte, 12)
	rand.Read(iv)
	return s.aead.Seal(iv, iv, pt, ecAAD(ec))
}

func (s *sealKMS) GenerateDataKey(ctx context.Context, keyID string, ec map[string]string) ([]byte, []byte, string, error) {
	if err := s.hook("GenerateDataKey"); err != nil {
		return nil, nil, "", err
	}
	dk := make([]byte, 32)
	rand.Read(dk)
	return dk, s.seal(dk, ec), testARN, nil
}

func (s *sealKMS) Decrypt(ctx context.Context, keyID string, blob []byte, ec map[string]string) ([]byte, string, error) {
	if err := s.hook("Decrypt"); err != nil {
		return nil, "", err
	}
	if len(blob) < 12 {
		return nil, "", errors.New("InvalidCiphertextException")
	}
	pt, err := s.aead.Open(nil, blob[:12], blob[12:], ecAAD(ec))
	if err != nil {
		return nil, "", errors.New("InvalidCiphertextException")
	}
	return pt, testARN, nil
}

func (s *sealKMS) Encrypt(ctx context.Context, keyID string, pt []byte, ec map[string]string) ([]byte, string, error) {
	if err := s.hook("Encrypt"); err != nil {
		return nil, "", err
	}
	return s.seal(pt, ec), testARN, nil
}

func (s *sealKMS) ReEncrypt(ctx context.Context, src string, blob []byte, ec map[string]string, dst string) ([]byte, string, error) {
	if err := s.hook("ReEncrypt"); err != nil {
		return nil, "", err
	}
	pt, _, err := s.Decrypt(ctx, src, blob, ec)
	if err != nil {
		return nil, "", err
	}
	return s.seal(pt, ec), testARN, nil
}

var _ KMS = (*sealKMS)(nil)

func newTestJob(t testing.TB, cfg Config) *Job {
	t.Helper()
	j, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	j.kms.sleepFn = func(context.Context, time.Duration) error { return nil }
	return j
}

// TestRetryThrottled: throttled calls back off (within MaxDelay) and
// succeed; a final error is not retried; attempts are bounded.
func TestRetryThrottled(t *testing.T) {
	k := newSealKMS(t)
	var n atomic.Int32
	k.fail = func(string) error {
		if n.Add(1) <= 3 {
			return fmt.Errorf("%w: ThrottlingException", ErrThrottled)
		}
		return nil
	}
	j := newTestJob(t, Config{Mode: Encrypt, KMS: []KMS{k}, KeyID: "k", Retry: RetryConfig{MaxDelay: 80 * time.Millisecond}})
	var slept []time.Duration
	j.kms.sleepFn = func(_ context.Context, d time.Duration) error { slept = append(slept, d); return nil }
	if _, err := j.newMaterials(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(slept) != 3 || j.calls.retries.Load() != 3 || j.calls.generate.Load() != 4 {
		t.Fatalf("slept %v, retries %d, calls %d", slept, j.calls.retries.Load(), j.calls.generate.Load())
	}
	for _, d := range slept {
		if d <= 0 || d > 80*time.Millisecond {
			t.Fatalf("backoff %v outside (0, MaxDelay]", d)
		}
	}

	k.fail = func(string) error { return errors.New("AccessDeniedException") }
	j = newTestJob(t, Config{Mode: Encrypt, KMS: []KMS{k}, KeyID: "k"})
	if _, err := j.newMaterials(context.Background()); err == nil || j.calls.generate.Load() != 1 {
		t.Fatalf("final error: %v after %d calls", err, j.calls.generate.Load())
	}

	k.fail = func(string) error { return ErrThrottled }
	j = newTestJob(t, Config{Mode: Encrypt, KMS: []KMS{k}, KeyID: "k", Retry: RetryConfig{MaxAttempts: 5}})
	if _, err := j.newMaterials(context.Background()); !errors.Is(err, ErrThrottled) || j.calls.generate.Load() != 5 {
		t.Fatalf("always throttled: %v after %d calls", err, j.calls.generate.Load())
	}
}

// TestFailover: an unavailable endpoint gives way to the next at once,
// and later calls stay on the one that works.
func TestFailover(t *testing.T) {
	down := newSealKMS(t)
	down.fail = func(string) error { return fmt.Errorf("%w: connection refused", ErrUnavailable) }
	up := newSealKMS(t)
	j := newTestJob(t, Config{Mode: Encrypt, KMS: []KMS{down, up}, KeyID: "k", Cache: CacheConfig{Disabled: true}})
	var slept int
	j.kms.sleepFn = func(context.Context, time.Duration) error { slept++; return nil }
	for i := 0; i < 3; i++ {
		if _, err := j.newMaterials(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if down.count("GenerateDataKey") != 1 || up.count("GenerateDataKey") != 3 || slept != 0 {
		t.Fatalf("down %d, up %d, slept %d", down.count("GenerateDataKey"), up.count("GenerateDataKey"), slept)
	}
	// Both down: back off after each round, then give up.
	up.fail = down.fail
	if _, err := j.newMaterials(context.Background()); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("all down: %v", err)
	}
}

// TestCacheLimits: data keys are reused within max messages, max bytes
// and max age, and not at all when disabled or for unknown sizes.
func TestCacheLimits(t *testing.T) {
	now := time.Unix(1e9, 0)
	cases := []struct {
		name  string
		cache CacheConfig
		sizes []int64
		step  time.Duration
		want  int
	}{
		{"messages", CacheConfig{MaxMessages: 3}, []int64{1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, 0, 4},
		{"bytes", CacheConfig{MaxBytes: 100}, []int64{40, 40, 40, 40, 40}, 0, 3},
		{"larger than max bytes", CacheConfig{MaxBytes: 100}, []int64{200, 200}, 0, 2},
		{"age", CacheConfig{MaxAge: time.Minute}, []int64{1, 1, 1, 1}, 40 * time.Second, 2},
		{"disabled", CacheConfig{Disabled: true}, []int64{1, 1, 1}, 0, 3},
		{"unknown size", CacheConfig{}, []int64{-1, -1}, 0, 2},
		{"defaults", CacheConfig{}, make([]int64, 1000), 0, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			k := newSealKMS(t)
			j := newTestJob(t, Config{Mode: Encrypt, KMS: []KMS{k}, KeyID: "k", Cache: c.cache})
			clock := now
			j.enc.now = func() time.Time { return clock }
			for _, sz := range c.sizes {
				m, err := j.materials(context.Background(), sz)
				if err != nil {
					t.Fatal(err)
				}
				clear(m.dataKey)
				clock = clock.Add(c.step)
			}
			if got := k.count("GenerateDataKey"); got != c.want {
				t.Fatalf("%d GenerateDataKey calls, want %d", got, c.want)
			}
		})
	}
}

// TestRunJournal: a tree job records finished files; a second run
// without Resume refuses the journal left by a failure; with Resume it
// skips what is done and retries what failed.
func TestRunJournal(t *testing.T) {
	in, out := t.TempDir(), t.TempDir()
	for i := 0; i < 20; i++ {
		os.WriteFile(filepath.Join(in, fmt.Sprintf("f%02d", i)), []byte(fmt.Sprint("content ", i)), 0o644)
	}
	k := newSealKMS(t)
	var n atomic.Int32
	k.fail = func(string) error {
		if n.Add(1) == 5 {
			return errors.New("AccessDeniedException: once")
		}
		return nil
	}
	cfg := Config{Mode: Encrypt, KMS: []KMS{k}, KeyID: "k", Cache: CacheConfig{Disabled: true}, Workers: 1, Sync: SyncNone}
	s, err := newTestJob(t, cfg).Run(context.Background(), in, out)
	if err != nil {
		t.Fatal(err)
	}
	if s.Succeeded != 19 || s.Failed != 1 || len(s.Failures) != 1 || s.OK() {
		t.Fatalf("first run %+v", s)
	}
	if _, err := newTestJob(t, cfg).Run(context.Background(), in, out); err == nil {
		t.Fatal("a journal without Resume was accepted")
	}
	cfg.Resume = true
	s, err = newTestJob(t, cfg).Run(context.Background(), in, out)
	if err != nil {
		t.Fatal(err)
	}
	if s.Skipped != 19 || s.Succeeded != 1 || !s.OK() {
		t.Fatalf("resume %+v", s)
	}
	if _, err := os.Stat(filepath.Join(out, JournalName)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("journal left after a complete job: %v", err)
	}
	// Decrypt it all back through the same seam; a journal or temporary
	// file in the input (an unfinished job's output) is not a message.
	os.WriteFile(filepath.Join(out, JournalName), []byte("{}\n"), 0o600)
	os.WriteFile(filepath.Join(out, ".f00.encrypted"+tmpSuffix), []byte("partial"), 0o600)
	dec := t.TempDir()
	s, err = newTestJob(t, Config{Mode: Decrypt, KMS: []KMS{k}, Sync: SyncNone}).Run(context.Background(), out, dec)
	if err != nil || !s.OK() || s.Succeeded != 20 {
		t.Fatalf("decrypt %+v %v", s, err)
	}
	for i := 0; i < 20; i++ {
		b, err := os.ReadFile(filepath.Join(dec, fmt.Sprintf("f%02d", i)))
		if err != nil || string(b) != fmt.Sprint("content ", i) {
			t.Fatalf("f%02d: %q %v", i, b, err)
		}
	}
}

func TestValidate(t *testing.T) {
	k := newSealKMS(t)
	cases := []struct {
		cfg  Config
		want string
	}{
		{Config{KMS: []KMS{k}, KeyID: "k"}, "Config.Mode"},
		{Config{Mode: Encrypt, KeyID: "k"}, "Config.KMS"},
		{Config{Mode: Encrypt, KMS: []KMS{k}}, "Config.KeyID"},
		{Config{Mode: Encrypt, KMS: []KMS{k}, KeyID: "k", Suite: 0x0178}, "Config.Suite"},
		{Config{Mode: Encrypt, KMS: []KMS{k}, KeyID: "k", FrameLength: 1 << 25}, "Config.FrameLength"},
		{Config{Mode: Encrypt, KMS: []KMS{k}, KeyID: "k", Context: map[string]string{esdk.PublicKeyContextKey: "x"}}, "Config.Context"},
	}
	for _, c := range cases {
		if err := c.cfg.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %s", c.cfg, err, c.want)
		}
	}
}

// TestCheckedWriter: each write is read back from where it went, so a
// write that lands elsewhere (the file offset moved under the writer) is
// caught at once, and bytes beyond the writes fail the size check.
func TestCheckedWriter(t *testing.T) {
	f, err := os.OpenFile(filepath.Join(t.TempDir(), "out"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c := &checkedWriter{f: f}
	a, b := make([]byte, 300<<10), make([]byte, 5000) // more than one read-back chunk
	rand.Read(a)
	rand.Read(b)
	if _, err := c.Write(a); err != nil {
		t.Fatal(err)
	}
	if err := c.size(f); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Seek(100, 0); err != nil { // the next write lands at 100, not at len(a)
		t.Fatal(err)
	}
	if _, err := c.Write(b); !errors.Is(err, ErrVerify) {
		t.Fatalf("a misplaced write: %v, want ErrVerify", err)
	}
	c = &checkedWriter{f: f, off: 0, end: int64(len(a))}
	f.WriteAt([]byte("extra"), int64(len(a)+len(b))) // the file is longer than what was written
	if err := c.size(f); !errors.Is(err, ErrVerify) {
		t.Fatalf("extra bytes: %v, want ErrVerify", err)
	}
	if err := (&checkedWriter{f: f, noCheck: true}).size(f); err != nil {
		t.Fatalf("--no-verify: %v", err)
	}
}
