package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/kms"

	"github.com/kmsd/kmsd/batch/esdk"
	"github.com/kmsd/kmsd/batch/job"
	"github.com/kmsd/kmsd/internal/kmsdproc"
)

// jobEnv is one real kmsd process (its own SoftHSM2 token) and two keys,
// shared by the subtests of TestJob; the job reaches it through the AWS
// SDK for Go v2 with credentials and region from the AWS environment.
type jobEnv struct {
	bin, url     string
	key1, key2   string // ARNs
	client       *kms.Client
	dataDir, tmp string
}

func newJobEnv(t testing.TB) *jobEnv {
	t.Helper()
	bin := kmsdproc.Build(t)
	dataDir := filepath.Join(t.TempDir(), "data")
	url := kmsdproc.Start(t, bin, dataDir)
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dataDir, "credentials"))
	t.Setenv("AWS_CONFIG_FILE", os.DevNull)
	t.Setenv("AWS_REGION", "us-east-1")
	for _, v := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"} {
		t.Setenv(v, "")
		os.Unsetenv(v)
	}
	e := &jobEnv{bin: bin, url: url, dataDir: dataDir, tmp: t.TempDir()}
	cfg, err := config.LoadDefaultConfig(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	e.client = kms.NewFromConfig(cfg, func(o *kms.Options) { o.BaseEndpoint = aws.String(url) })
	for _, k := range []*string{&e.key1, &e.key2} {
		out, err := e.client.CreateKey(context.Background(), &kms.CreateKeyInput{})
		if err != nil {
			t.Fatal(err)
		}
		*k = aws.ToString(out.KeyMetadata.Arn)
	}
	return e
}

// job runs `kmsd job ARGS --endpoint URL` in-process.
func (e *jobEnv) job(t testing.TB, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	args = append(append([]string{"job"}, args...), "--endpoint", e.url)
	code := run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func decodeSummary(t testing.TB, s string) job.Summary {
	t.Helper()
	var sum job.Summary
	if err := json.Unmarshal([]byte(s), &sum); err != nil {
		t.Fatalf("summary: %v\n%s", err, s)
	}
	return sum
}

// makeTree writes files of the given sizes (random content) under dir,
// some in subdirectories, and returns name -> sha256.
func makeTree(t *testing.T, dir string, sizes ...int) map[string][32]byte {
	t.Helper()
	sums := map[string][32]byte{}
	for i, n := range sizes {
		rel := fmt.Sprintf("f%03d", i)
		if i%3 == 1 {
			rel = filepath.Join("sub", fmt.Sprintf("deep%d", i%2), rel)
		}
		b := make([]byte, n)
		rand.Read(b)
		p := filepath.Join(dir, rel)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		sums[rel] = sha256.Sum256(b)
	}
	return sums
}

// treeSums hashes every regular file under dir, with a name mapping.
func treeSums(t *testing.T, dir string, rename func(string) string) map[string][32]byte {
	t.Helper()
	sums := map[string][32]byte{}
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		if d.Type().IsRegular() {
			b, _ := os.ReadFile(p)
			rel, _ := filepath.Rel(dir, p)
			sums[rename(rel)] = sha256.Sum256(b)
		}
		return nil
	})
	return sums
}

func sameSums(t *testing.T, what string, got, want map[string][32]byte) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d files, want %d", what, len(got), len(want))
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("%s: %s differs or is missing", what, k)
		}
	}
}

// TestRunJobUsage: bad invocations exit 2 before any KMS call.
func TestRunJobUsage(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{
		{"job"},
		{"job", "frob"},
		{"job", "encrypt", "--key", "k", "--in", dir},
		{"job", "encrypt", "--key", "k", "--in", "-", "--out", dir},
		{"job", "encrypt", "--key", "k", "--in", dir, "--out", t.TempDir(), "--suite", "0x0178"},
		{"job", "encrypt", "--key", "k", "--in", dir, "--out", t.TempDir(), "--sync", "sometimes"},
		{"job", "encrypt", "--in", dir, "--out", t.TempDir()},
		{"job", "encrypt", "--key", "k", "--in", dir, "--out", t.TempDir(), "--context", "novalue"},
		{"job", "encrypt", "--key", "k", "--in", dir, "--out", t.TempDir(), "--context", "aws-crypto-x=1"},
		{"job", "encrypt", "--key", "k", "--in", dir, "--out", filepath.Join(dir, "inside")},
		{"job", "decrypt", "--in", filepath.Join(dir, "missing"), "--out", t.TempDir()},
	} {
		var out, errb bytes.Buffer
		if code := run(context.Background(), append(args, "--endpoint", "http://127.0.0.1:1"), &out, &errb); code != 2 {
			t.Errorf("%v: exit %d, want 2\n%s", args, code, errb.String())
		}
	}
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"job", "encrypt", "-h"}, &out, &errb); code != 0 || !strings.Contains(errb.String(), "-cache-max-messages") {
		t.Errorf("-h: exit %d\n%s", code, errb.String())
	}
}

func TestJob(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts kmsd")
	}
	e := newJobEnv(t)
	t.Run("RoundTrip", e.testRoundTrip)
	t.Run("ReEncrypt", e.testReEncrypt)
	t.Run("Failures", e.testFailures)
	t.Run("Caching", e.testCaching)
	t.Run("Failover", e.testFailover)
	t.Run("Throttled", e.testThrottled)
	t.Run("Stream", e.testStream)
	t.Run("ResumeAfterKill", func(t *testing.T) { e.testResume(t, syscall.SIGKILL) })
	t.Run("ResumeAfterInterrupt", func(t *testing.T) { e.testResume(t, syscall.SIGINT) })
	t.Run("BoundedMemory", e.testBoundedMemory)
	t.Run("InteropJS", e.testInteropJS)
}

// testRoundTrip: a tree (empty, sub-frame, frame-edge and multi-frame
// files) encrypts and decrypts back, both suites; the source is untouched.
func (e *jobEnv) testRoundTrip(t *testing.T) {
	for _, suite := range []string{"commit-key", "commit-key-ecdsa-p384"} {
		t.Run(suite, func(t *testing.T) {
			in, enc, dec := t.TempDir(), filepath.Join(t.TempDir(), "enc"), filepath.Join(t.TempDir(), "dec")
			want := makeTree(t, in, 0, 1, 999, 1000, 1001, 4096, 1<<20+3, 77)
			before := treeSums(t, in, func(s string) string { return s })
			code, out, errOut := e.job(t, "encrypt", "--key", e.key1, "--in", in, "--out", enc, "--context", "app=test", "--context", "tier=gold",
				"--suite", suite, "--frame-length", "1000", "--json", "--quiet")
			if code != 0 {
				t.Fatalf("encrypt exit %d\n%s", code, errOut)
			}
			s := decodeSummary(t, out)
			if s.Succeeded != int64(len(want)) || s.Failed != 0 || s.KMSCalls["GenerateDataKey"] != 1 {
				t.Fatalf("encrypt summary %+v", s)
			}
			for rel := range want {
				if _, err := os.Stat(filepath.Join(enc, rel+job.Suffix)); err != nil {
					t.Fatalf("missing output: %v", err)
				}
			}
			if _, err := os.Stat(filepath.Join(enc, job.JournalName)); err == nil {
				t.Fatal("journal left after a complete job")
			}
			code, out, errOut = e.job(t, "decrypt", "--in", enc, "--out", dec, "--context", "app=test", "--json", "--quiet")
			if code != 0 {
				t.Fatalf("decrypt exit %d\n%s", code, errOut)
			}
			if s := decodeSummary(t, out); s.Succeeded != int64(len(want)) || s.KMSCalls["Decrypt"] != 1 {
				t.Fatalf("decrypt summary %+v", s)
			}
			sameSums(t, "decrypted", treeSums(t, dec, func(s string) string { return s }), want)
			sameSums(t, "source after the jobs", treeSums(t, in, func(s string) string { return s }), before)
		})
	}
}

// testReEncrypt: re-wrap to key2 changes the header only; the result
// decrypts with key2 and no longer names key1.
func (e *jobEnv) testReEncrypt(t *testing.T) {
	in, enc, re, dec := t.TempDir(), filepath.Join(t.TempDir(), "e"), filepath.Join(t.TempDir(), "r"), filepath.Join(t.TempDir(), "d")
	want := makeTree(t, in, 10, 5000, 100000)
	if code, _, errOut := e.job(t, "encrypt", "--key", e.key1, "--in", in, "--out", enc, "--quiet"); code != 0 {
		t.Fatalf("encrypt: %s", errOut)
	}
	code, out, errOut := e.job(t, "reencrypt", "--key", e.key2, "--in", enc, "--out", re, "--json", "--quiet")
	if code != 0 {
		t.Fatalf("reencrypt exit %d: %s", code, errOut)
	}
	if s := decodeSummary(t, out); s.Succeeded != 3 || s.KMSCalls["ReEncrypt"] != 1 || s.KMSCalls["Decrypt"] != 1 || s.Resealed != 0 {
		t.Fatalf("reencrypt summary %+v", s)
	}
	if !strings.Contains(errOut, "whoever holds both files can forge frames") {
		t.Fatalf("a header-only re-wrap does not warn about the originals:\n%s", errOut)
	}
	for rel := range want {
		a, _ := os.ReadFile(filepath.Join(enc, rel+job.Suffix))
		b, _ := os.ReadFile(filepath.Join(re, rel+job.Suffix))
		if !bytes.Contains(b, []byte(e.key2)) || bytes.Contains(b, []byte(e.key1)) {
			t.Fatalf("%s: the re-wrapped header does not name only key2", rel)
		}
		body := 10 // the last bytes are body: unchanged
		if !bytes.Equal(a[len(a)-body:], b[len(b)-body:]) {
			t.Fatalf("%s: body changed", rel)
		}
	}
	if code, _, errOut := e.job(t, "decrypt", "--key", e.key2, "--in", re, "--out", dec, "--quiet"); code != 0 {
		t.Fatalf("decrypt with key2: %s", errOut)
	}
	sameSums(t, "re-wrapped", treeSums(t, dec, func(s string) string { return s }), want)

	// --reseal: every message re-encrypted (a new message ID, data key and
	// body), decrypting with key2 only; no warning.
	rs, dec2 := filepath.Join(t.TempDir(), "rs"), filepath.Join(t.TempDir(), "d2")
	code, out, errOut = e.job(t, "reencrypt", "--key", e.key2, "--in", enc, "--out", rs, "--reseal", "--json", "--quiet")
	if s := decodeSummary(t, out); code != 0 || s.Succeeded != 3 || s.Resealed != 3 || s.KMSCalls["ReEncrypt"] != 0 || s.KMSCalls["GenerateDataKey"] == 0 {
		t.Fatalf("reencrypt --reseal: exit %d %+v\n%s", code, s, errOut)
	}
	if strings.Contains(errOut, "forge") {
		t.Fatalf("--reseal warns:\n%s", errOut)
	}
	for rel := range want {
		a, _ := os.ReadFile(filepath.Join(enc, rel+job.Suffix))
		b, _ := os.ReadFile(filepath.Join(rs, rel+job.Suffix))
		ha, _ := esdk.ReadHeader(bufio.NewReader(bytes.NewReader(a)), esdk.Limits{})
		hb, err := esdk.ReadHeader(bufio.NewReader(bytes.NewReader(b)), esdk.Limits{})
		if err != nil || bytes.Equal(ha.MessageID, hb.MessageID) || bytes.Equal(a[len(a)-10:], b[len(b)-10:]) || hb.Suite != esdk.SuiteCommitKey || !bytes.Contains(b, []byte(e.key2)) || bytes.Contains(b, []byte(e.key1)) {
			t.Fatalf("%s: the resealed message (%v) keeps its message ID or body, or names key1", rel, err)
		}
	}
	if code, _, errOut := e.job(t, "decrypt", "--key", e.key2, "--in", rs, "--out", dec2, "--quiet"); code != 0 {
		t.Fatalf("decrypt of resealed messages with key2: %s", errOut)
	}
	sameSums(t, "resealed", treeSums(t, dec2, func(s string) string { return s }), want)
}

// testFailures: a tampered file, a wrong key and a bad context each name
// the file and exit 1; other files still succeed unless --fail-fast.
func (e *jobEnv) testFailures(t *testing.T) {
	in, enc := t.TempDir(), filepath.Join(t.TempDir(), "e")
	want := makeTree(t, in, 3000, 3000, 3000)
	if code, _, errOut := e.job(t, "encrypt", "--key", e.key1, "--in", in, "--out", enc, "--context", "app=x", "--quiet"); code != 0 {
		t.Fatalf("encrypt: %s", errOut)
	}
	tampered := filepath.Join(enc, "f002"+job.Suffix)
	b, _ := os.ReadFile(tampered)
	b[len(b)-100] ^= 1
	os.WriteFile(tampered, b, 0o644)

	code, out, errOut := e.job(t, "decrypt", "--in", enc, "--out", filepath.Join(t.TempDir(), "d"), "--json", "--quiet")
	s := decodeSummary(t, out)
	if code != 1 || s.Failed != 1 || s.Succeeded != 2 || !strings.Contains(errOut, "FAILED "+tampered) || !strings.Contains(errOut, "authentication failed") {
		t.Fatalf("tampered: exit %d %+v\n%s", code, s, errOut)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(out), "f002")); err == nil {
		t.Fatal("a tampered file was written out")
	}

	code, _, errOut = e.job(t, "decrypt", "--key", e.key2, "--in", enc, "--out", filepath.Join(t.TempDir(), "d"), "--quiet")
	if code != 1 || strings.Count(errOut, "FAILED") != 3 || !strings.Contains(errOut, "f000"+job.Suffix+": job: no usable encrypted data key") {
		t.Fatalf("wrong key: exit %d\n%s", code, errOut)
	}

	code, _, errOut = e.job(t, "decrypt", "--context", "app=y", "--in", enc, "--out", filepath.Join(t.TempDir(), "d"), "--quiet", "--fail-fast", "--workers", "1")
	if code != 1 || strings.Count(errOut, "FAILED") != 1 || !strings.Contains(errOut, "encryption context mismatch: the message's encryption context lacks app=y") {
		t.Fatalf("bad context, fail-fast: exit %d\n%s", code, errOut)
	}

	// KMS itself refuses a data key whose context was changed (the header
	// would fail too, but KMS answers first).
	notESDK := filepath.Join(t.TempDir(), "plain.encrypted")
	os.WriteFile(notESDK, []byte("not a message"), 0o644)
	code, _, errOut = e.job(t, "decrypt", "--in", notESDK, "--out", t.TempDir(), "--quiet")
	if code != 1 || !strings.Contains(errOut, "FAILED "+notESDK+": esdk: malformed message") {
		t.Fatalf("not a message: exit %d\n%s", code, errOut)
	}

	// Never overwrite: a second encrypt into the same directory fails per file.
	code, _, errOut = e.job(t, "encrypt", "--key", e.key1, "--in", in, "--out", enc, "--quiet")
	if code != 1 || !strings.Contains(errOut, "output exists") {
		t.Fatalf("overwrite: exit %d\n%s", code, errOut)
	}
	if code, _, _ := e.job(t, "encrypt", "--in", in, "--out", t.TempDir()); code != 2 {
		t.Fatalf("no --key: exit %d", code)
	}

	// A signed message cannot be re-wrapped (its signature covers the
	// header): re-wrap re-encrypts it under a new data key of the new key,
	// with the same context and frame length and a new signing key, and
	// says so in the summary; a tampered one fails and leaves no output.
	signed, resigned := filepath.Join(t.TempDir(), "s"), filepath.Join(t.TempDir(), "r")
	if code, _, errOut := e.job(t, "encrypt", "--key", e.key1, "--in", filepath.Join(in, "f002"), "--out", signed, "--suite", "commit-key-ecdsa-p384", "--frame-length", "1024", "--context", "who=me", "--quiet"); code != 0 {
		t.Fatalf("signed encrypt: %s", errOut)
	}
	code, out, errOut = e.job(t, "reencrypt", "--key", e.key2, "--in", signed, "--out", resigned, "--json", "--quiet")
	if code != 0 {
		t.Fatalf("re-wrap of a signed message: exit %d\n%s", code, errOut)
	}
	if s := decodeSummary(t, out); s.Succeeded != 1 || s.Resealed != 1 || s.KMSCalls["GenerateDataKey"] != 1 || s.KMSCalls["ReEncrypt"] != 0 {
		t.Fatalf("re-wrap of a signed message: summary %+v", s)
	}
	a, _ := os.ReadFile(filepath.Join(signed, "f002"+job.Suffix))
	b, _ = os.ReadFile(filepath.Join(resigned, "f002"+job.Suffix))
	if !bytes.Contains(b, []byte(e.key2)) || bytes.Contains(b, []byte(e.key1)) || bytes.Equal(a[len(a)-200:], b[len(b)-200:]) {
		t.Fatal("the re-encrypted signed message does not name only key2, or its end did not change")
	}
	h, err := esdk.ReadHeader(bufio.NewReader(bytes.NewReader(b)), esdk.Limits{})
	if err != nil || h.Suite != esdk.SuiteCommitKeyECDSAP384 || h.FrameLength != 1024 || h.Context["who"] != "me" {
		t.Fatalf("re-encrypted header: %v %+v", err, h)
	}
	dec := filepath.Join(t.TempDir(), "d")
	if code, _, errOut := e.job(t, "decrypt", "--key", e.key2, "--in", resigned, "--out", dec, "--context", "who=me", "--quiet"); code != 0 {
		t.Fatalf("decrypt of the re-encrypted signed message: %s", errOut)
	}
	if got, _ := os.ReadFile(filepath.Join(dec, "f002")); sha256.Sum256(got) != want["f002"] {
		t.Fatal("the re-encrypted signed message decrypts differently")
	}
	for _, tc := range []struct {
		at   int
		want string
	}{{len(a) - 300, "message authentication failed: frame"}, {len(a) - 1, "message authentication failed: signature"}} {
		m := bytes.Clone(a) // a frame (its tag), then the signature itself (every frame verifies)
		m[tc.at] ^= 1
		os.WriteFile(filepath.Join(signed, "f002"+job.Suffix), m, 0o644)
		bad := filepath.Join(t.TempDir(), "b")
		code, _, errOut = e.job(t, "reencrypt", "--key", e.key2, "--in", signed, "--out", bad, "--quiet")
		if code != 1 || !strings.Contains(errOut, tc.want) {
			t.Fatalf("re-wrap of a tampered signed message: exit %d, want %q\n%s", code, tc.want, errOut)
		}
		if ents, _ := os.ReadDir(bad); len(ents) != 1 || ents[0].Name() != job.JournalName { // the journal stays, for --resume
			t.Fatalf("a tampered signed message left %v", ents)
		}
	}
}

// testCaching: KMS calls per 1,000 small files with data-key caching on
// and off (the README's figure).
func (e *jobEnv) testCaching(t *testing.T) {
	in := t.TempDir()
	sizes := make([]int, 1000)
	for i := range sizes {
		sizes[i] = 64
	}
	makeTree(t, in, sizes...)
	calls := map[string]int64{}
	for _, mode := range []string{"on", "off"} {
		args := []string{"encrypt", "--key", e.key1, "--in", in, "--out", filepath.Join(t.TempDir(), mode), "--json", "--quiet"}
		if mode == "off" {
			args = append(args, "--no-cache")
		}
		code, out, errOut := e.job(t, args...)
		if code != 0 {
			t.Fatalf("cache %s: %s", mode, errOut)
		}
		calls[mode] = decodeSummary(t, out).KMSCalls["GenerateDataKey"]
	}
	t.Logf("GenerateDataKey calls per 1,000 small files: caching on %d, off %d", calls["on"], calls["off"])
	if calls["on"] != 1 || calls["off"] != 1000 {
		t.Fatalf("calls %v, want on 1 (max 1000 messages per data key), off 1000", calls)
	}
	code, out, _ := e.job(t, "encrypt", "--key", e.key1, "--in", in, "--out", filepath.Join(t.TempDir(), "m"), "--json", "--quiet", "--cache-max-messages", "100")
	if s := decodeSummary(t, out); code != 0 || s.KMSCalls["GenerateDataKey"] != 10 {
		t.Fatalf("--cache-max-messages 100: %+v", s)
	}
}

// testFailover: the first endpoint refuses connections; the job moves to
// the second and succeeds.
func (e *jobEnv) testFailover(t *testing.T) {
	in := t.TempDir()
	makeTree(t, in, 10, 20)
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"job", "encrypt", "--endpoint", "http://127.0.0.1:1," + e.url, "--key", e.key1,
		"--in", in, "--out", t.TempDir(), "--json", "--quiet"}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, errb.String())
	}
	if s := decodeSummary(t, out.String()); s.Succeeded != 2 || s.KMSCalls["retries"] < 1 {
		t.Fatalf("summary %+v", s)
	}
}

// testThrottled: a second kmsd with a symmetric quota of 20 requests/s
// answers ThrottlingException to a job that wants a data key per file;
// the job backs off, retries, and every file succeeds.
func (e *jobEnv) testThrottled(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	url := kmsdproc.Start(t, e.bin, dataDir, "--quota-symmetric", "20")
	cfg, err := config.LoadDefaultConfig(context.Background(), config.WithSharedCredentialsFiles([]string{filepath.Join(dataDir, "credentials")}))
	if err != nil {
		t.Fatal(err)
	}
	ck, err := kms.NewFromConfig(cfg, func(o *kms.Options) { o.BaseEndpoint = aws.String(url) }).CreateKey(context.Background(), &kms.CreateKeyInput{})
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dataDir, "credentials"))
	in := t.TempDir()
	sizes := make([]int, 120)
	makeTree(t, in, sizes...)
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"job", "encrypt", "--endpoint", url, "--key", aws.ToString(ck.KeyMetadata.Arn),
		"--in", in, "--out", t.TempDir(), "--no-cache", "--workers", "8", "--retries", "30", "--json", "--quiet"}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, errb.String())
	}
	s := decodeSummary(t, out.String())
	t.Logf("120 files at 20 requests/s: %d GenerateDataKey calls, %d retries, %.1fs", s.KMSCalls["GenerateDataKey"], s.KMSCalls["retries"], s.Seconds)
	if s.Succeeded != 120 || s.KMSCalls["retries"] == 0 {
		t.Fatalf("summary %+v: want every file, after throttled retries", s)
	}
}

// testStream: stdin to stdout through the binary, both ways.
func (e *jobEnv) testStream(t *testing.T) {
	pt := make([]byte, 300000)
	rand.Read(pt)
	enc := exec.Command(e.bin, "job", "encrypt", "--endpoint", e.url, "--key", e.key1, "--in", "-", "--out", "-", "--context", "s=1", "--json")
	enc.Stdin = bytes.NewReader(pt)
	var encErr bytes.Buffer
	enc.Stderr = &encErr
	msg, err := enc.Output()
	if err != nil {
		t.Fatalf("encrypt: %v\n%s", err, encErr.String())
	}
	if !strings.Contains(encErr.String(), `"succeeded": 1`) {
		t.Fatalf("summary on stderr: %s", encErr.String())
	}
	dec := exec.Command(e.bin, "job", "decrypt", "--endpoint", e.url, "--in", "-", "--out", "-", "--context", "s=1")
	dec.Stdin = bytes.NewReader(msg)
	got, err := dec.Output()
	if err != nil || !bytes.Equal(got, pt) {
		t.Fatalf("decrypt: %v, equal %v", err, bytes.Equal(got, pt))
	}
	// A truncated stream fails with exit 1.
	dec = exec.Command(e.bin, "job", "decrypt", "--endpoint", e.url, "--in", "-", "--out", "-")
	dec.Stdin = bytes.NewReader(msg[:len(msg)-1])
	var decErr bytes.Buffer
	dec.Stderr = &decErr
	dec.Stdout = io.Discard
	if err := dec.Run(); err == nil || dec.ProcessState.ExitCode() != 1 || !strings.Contains(decErr.String(), "FAILED -: esdk: malformed message: truncated") {
		t.Fatalf("truncated: %v\n%s", err, decErr.String())
	}
}

// testResume: stop a job part way with sig (SIGKILL: as a crash;
// SIGINT: Ctrl-C, exit 130, no temporary file left); --resume skips what
// the journal says is done, redoes the rest, and every output decrypts.
func (e *jobEnv) testResume(t *testing.T, sig syscall.Signal) {
	in, enc, dec := t.TempDir(), filepath.Join(t.TempDir(), "e"), filepath.Join(t.TempDir(), "d")
	sizes := make([]int, 1200)
	for i := range sizes {
		sizes[i] = 2000 + i
	}
	want := makeTree(t, in, sizes...)
	cmd := exec.Command(e.bin, "job", "encrypt", "--endpoint", e.url, "--key", e.key1, "--in", in, "--out", enc, "--no-cache", "--workers", "2", "--quiet")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	journal := filepath.Join(enc, job.JournalName)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if b, err := os.ReadFile(journal); err == nil && bytes.Count(b, []byte("\n")) >= 1 {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatal("the job wrote no journal")
		}
		time.Sleep(time.Millisecond)
	}
	cmd.Process.Signal(sig)
	cmd.Wait()
	if code := cmd.ProcessState.ExitCode(); sig == syscall.SIGINT && code != 130 {
		t.Fatalf("interrupted job: exit %d, want 130", code)
	}
	if sig == syscall.SIGINT {
		filepath.WalkDir(enc, func(p string, d fs.DirEntry, err error) error {
			if strings.HasSuffix(p, ".kmsd-tmp") {
				t.Errorf("temporary file left by an interrupted job: %s", p)
			}
			return nil
		})
	}
	b, err := os.ReadFile(journal)
	if err != nil {
		t.Fatalf("the job finished before it was killed: %v", err)
	}
	doneBefore := bytes.Count(b, []byte("\n"))
	if code, _, _ := e.job(t, "encrypt", "--key", e.key1, "--in", in, "--out", enc, "--quiet"); code != 2 {
		t.Fatalf("a journal without --resume: exit %d, want 2", code)
	}
	code, out, errOut := e.job(t, "encrypt", "--key", e.key1, "--in", in, "--out", enc, "--resume", "--json", "--quiet")
	if code != 0 {
		t.Fatalf("resume exit %d\n%s", code, errOut)
	}
	s := decodeSummary(t, out)
	if s.Skipped < int64(doneBefore) || s.Skipped+s.Succeeded != 1200 || s.Skipped == 1200 {
		t.Fatalf("resume summary %+v (journal had %d)", s, doneBefore)
	}
	t.Logf("%v after %d journaled files; resume skipped %d, did %d", sig, doneBefore, s.Skipped, s.Succeeded)
	filepath.WalkDir(enc, func(p string, d fs.DirEntry, err error) error {
		if strings.HasSuffix(p, ".kmsd-tmp") {
			t.Errorf("temporary file left: %s", p)
		}
		return nil
	})
	if code, _, errOut := e.job(t, "decrypt", "--in", enc, "--out", dec, "--quiet"); code != 0 {
		t.Fatalf("decrypt: %s", errOut)
	}
	sameSums(t, "after resume", treeSums(t, dec, func(s string) string { return s }), want)
}

// testBoundedMemory: a 512 MiB file encrypts and decrypts through the
// binary with a peak RSS far below its size (streaming frames).
func (e *jobEnv) testBoundedMemory(t *testing.T) {
	const size = 512 << 20
	in := filepath.Join(t.TempDir(), "big")
	f, err := os.Create(in)
	if err != nil {
		t.Fatal(err)
	}
	f.Truncate(size) // sparse: reads as zeros, costs no disk
	f.Close()
	enc, dec := filepath.Join(t.TempDir(), "e"), filepath.Join(t.TempDir(), "d")
	for _, args := range [][]string{
		{"encrypt", "--key", e.key1, "--in", in, "--out", enc + "-mmap", "--frame-length", "65536", "--mmap"}, // 8 MiB windows, unmapped as they are done
		{"encrypt", "--key", e.key1, "--in", in, "--out", enc, "--frame-length", "65536"},
		{"decrypt", "--in", filepath.Join(enc, "big"+job.Suffix), "--out", dec},
	} {
		cmd := exec.Command(e.bin, append(append([]string{"job"}, args...), "--endpoint", e.url, "--quiet")...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// The peak RSS of the exec'd image (VmHWM), polled until it exits:
		// wait4's maxrss would count the forking test process's size.
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		var rss int64
		status := fmt.Sprintf("/proc/%d/status", cmd.Process.Pid)
	poll:
		for {
			if b, err := os.ReadFile(status); err == nil {
				for _, line := range strings.Split(string(b), "\n") {
					if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
						var kb int64
						fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), &kb)
						rss = max(rss, kb<<10)
					}
				}
			}
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("%s: %v\n%s", args[0], err, out.String())
				}
				break poll
			case <-time.After(5 * time.Millisecond):
			}
		}
		t.Logf("%s of %d MiB: peak RSS %d MiB", args[0], size>>20, rss>>20)
		if rss == 0 {
			t.Fatal("no VmHWM read from /proc")
		}
		if rss > 128<<20 {
			t.Fatalf("%s: peak RSS %d MiB for a %d MiB file", args[0], rss>>20, size>>20)
		}
	}
	fi, err := os.Stat(filepath.Join(dec, "big"))
	if err != nil || fi.Size() != size {
		t.Fatalf("decrypted: %v %v", fi, err)
	}
	os.RemoveAll(enc)
	os.RemoveAll(enc + "-mmap")
	os.RemoveAll(dec)
}

// testInteropJS: files the job writes decrypt with the AWS Encryption SDK
// for JavaScript pointed at kmsd, and its messages decrypt with the job
// (test/interop/js/job.mjs; `make test-deps` installs the SDK).
func (e *jobEnv) testInteropJS(t *testing.T) {
	jsDir, _ := filepath.Abs("../../test/interop/js")
	if _, err := os.Stat(filepath.Join(jsDir, "node_modules", "@aws-crypto", "client-node")); err != nil {
		if os.Getenv("KMSD_REQUIRE_HSM") != "" {
			t.Fatal("the AWS Encryption SDK for JavaScript is not installed: make test-deps")
		}
		t.Skip("the AWS Encryption SDK for JavaScript is not installed (make test-deps)")
	}
	node := func(args ...string) error {
		cmd := exec.Command("node", append([]string{filepath.Join(jsDir, "job.mjs")}, args...)...)
		cmd.Env = append(os.Environ(), "KMSD_URL="+e.url, "KMSD_KEY_ARN="+e.key1, "NODE_NO_WARNINGS=1")
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v\n%s", err, out)
		}
		return nil
	}
	in := t.TempDir()
	want := makeTree(t, in, 0, 5000, 70000, 5<<20+3) // streamed, then at known positions (one window; six on two goroutines)
	for _, suite := range []string{"commit-key", "commit-key --mmap", "commit-key-ecdsa-p384"} {
		enc := filepath.Join(t.TempDir(), "e")
		args := []string{"encrypt", "--key", e.key1, "--in", in, "--out", enc, "--suite", strings.Fields(suite)[0], "--context", "who=kmsd", "--quiet"}
		if code, _, errOut := e.job(t, append(args, strings.Fields(suite)[1:]...)...); code != 0 {
			t.Fatalf("encrypt: %s", errOut)
		}
		for rel, sum := range want {
			out := filepath.Join(t.TempDir(), "pt")
			if err := node("decrypt", filepath.Join(enc, rel+job.Suffix), out, "who=kmsd"); err != nil {
				t.Fatalf("%s: JS decrypt of %s: %v", suite, rel, err)
			}
			b, _ := os.ReadFile(out)
			if sha256.Sum256(b) != sum {
				t.Fatalf("%s: JS decrypted %s differently", suite, rel)
			}
		}
	}
	for _, suite := range []string{"0x0478", "0x0578"} {
		jsOut := t.TempDir()
		for rel := range want {
			dst := filepath.Join(jsOut, rel+job.Suffix)
			os.MkdirAll(filepath.Dir(dst), 0o755)
			if err := node("encrypt", filepath.Join(in, rel), dst, suite, "1024", "who=js"); err != nil {
				t.Fatalf("JS encrypt %s: %v", suite, err)
			}
		}
		dec := filepath.Join(t.TempDir(), "d")
		if code, _, errOut := e.job(t, "decrypt", "--in", jsOut, "--out", dec, "--context", "who=js", "--quiet"); code != 0 {
			t.Fatalf("decrypt of JS %s messages: %s", suite, errOut)
		}
		sameSums(t, "JS "+suite, treeSums(t, dec, func(s string) string { return s }), want)
	}
	// Version 1 messages (no key commitment), one per suite, as the SDK
	// writes them with FORBID_ENCRYPT_ALLOW_DECRYPT: refused by the default
	// commitment policy (the file named, a hint), read with
	// require-encrypt-allow-decrypt; re-wrapped, the unsigned ones stay
	// version 1, the signed ones are re-encrypted (version 2, signed), and
	// the SDK reads them all.
	v1In := t.TempDir()
	src := filepath.Join(in, "f002") // 70000 bytes: 69 frames of 1024
	wantV1 := map[string][32]byte{}
	for _, suite := range []string{"0x0014", "0x0046", "0x0078", "0x0114", "0x0146", "0x0178", "0x0214", "0x0346", "0x0378"} {
		if err := node("encrypt-v1", src, filepath.Join(v1In, suite+job.Suffix), suite, "1024", "who=js"); err != nil {
			t.Fatalf("JS encrypt %s (version 1): %v", suite, err)
		}
		wantV1[suite] = want["f002"]
	}
	dec := filepath.Join(t.TempDir(), "d")
	code, _, errOut := e.job(t, "decrypt", "--in", v1In, "--out", dec, "--context", "who=js", "--quiet")
	if code != 1 || strings.Count(errOut, "FAILED") != 9 || !strings.Contains(errOut, "no key commitment") || !strings.Contains(errOut, "--commitment-policy require-encrypt-allow-decrypt") {
		t.Fatalf("version 1 messages under the default policy: exit %d\n%s", code, errOut)
	}
	dec = filepath.Join(t.TempDir(), "d")
	if code, _, errOut := e.job(t, "decrypt", "--in", v1In, "--out", dec, "--context", "who=js", "--commitment-policy", "require-encrypt-allow-decrypt", "--quiet"); code != 0 {
		t.Fatalf("decrypt of JS version 1 messages: %s", errOut)
	}
	sameSums(t, "JS version 1", treeSums(t, dec, func(s string) string { return s }), wantV1)
	re := filepath.Join(t.TempDir(), "r")
	code, stdout, errOut := e.job(t, "reencrypt", "--key", e.key1, "--in", v1In, "--out", re, "--context", "who=js", "--commitment-policy", "require-encrypt-allow-decrypt", "--json", "--quiet")
	if code != 0 {
		t.Fatalf("re-wrap of version 1 messages: exit %d\n%s", code, errOut)
	}
	if s := decodeSummary(t, stdout); s.Succeeded != 9 || s.Resealed != 3 {
		t.Fatalf("re-wrap of version 1 messages: %+v (want the 3 signed ones re-encrypted)", s)
	}
	for suite := range wantV1 {
		b, _ := os.ReadFile(filepath.Join(re, suite+job.Suffix))
		h, err := esdk.ReadHeader(bufio.NewReader(bytes.NewReader(b)), esdk.Limits{AllowUncommitted: true})
		signed := suite == "0x0214" || suite == "0x0346" || suite == "0x0378"
		if err != nil || signed && (h.Version != 2 || h.Suite != esdk.SuiteCommitKeyECDSAP384) || !signed && (h.Version != 1 || fmt.Sprintf("0x%04x", uint16(h.Suite)) != suite) {
			t.Fatalf("re-wrapped %s: %v, version %d, %v (want the signed ones re-encrypted as 0x0578, the others as they were)", suite, err, h.Version, h.Suite)
		}
		out := filepath.Join(t.TempDir(), "pt")
		if err := node("decrypt-v1", filepath.Join(re, suite+job.Suffix), out, "who=js"); err != nil {
			t.Fatalf("JS decrypt of the re-wrapped %s: %v", suite, err)
		}
		if b, _ := os.ReadFile(out); sha256.Sum256(b) != want["f002"] {
			t.Fatalf("JS decrypted the re-wrapped %s differently", suite)
		}
	}
}
