package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/smithy-go"

	"github.com/kmsd/kmsd/batch/esdk"
	"github.com/kmsd/kmsd/batch/job"
)

const jobUsage = `usage: kmsd job encrypt|decrypt|reencrypt [flags]

  kmsd job encrypt   --endpoint URL[,URL...] --key KEY --in PATH --out DIR [--context k=v ...]
  kmsd job decrypt   --endpoint URL[,URL...] --in PATH --out DIR [--context k=v ...] [--key KEY]
  kmsd job reencrypt --endpoint URL[,URL...] --key NEWKEY --in PATH --out DIR

PATH is a file, a directory tree (its structure is kept; encrypted files
are NAME.encrypted) or - (stdin, with --out -: stdout). Credentials and
region come from the standard AWS environment and shared files.
Exit status: 0 every file succeeded, 1 a file failed, 2 bad usage or the
job could not start, 130 interrupted (run again with --resume).
`

// contextFlag collects repeated --context k=v.
type contextFlag map[string]string

func (c contextFlag) String() string { return fmt.Sprint(map[string]string(c)) }

func (c contextFlag) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("want key=value, got %q", s)
	}
	c[k] = v
	return nil
}

type jobFlags struct {
	endpoints, key, in, out, suite, region, sync, policy string
	cfg                                                  job.Config
	json, quiet                                          bool
	retries                                              int
}

func newJobFlags(mode job.Mode, f *jobFlags, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("kmsd job "+mode.String(), flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, jobUsage, "\nflags:\n"); fs.PrintDefaults() }
	f.cfg.Context = map[string]string{}
	fs.StringVar(&f.endpoints, "endpoint", "", "KMS endpoint URLs, comma-separated, in failover order (default: the SDK's)")
	fs.StringVar(&f.region, "region", "", "AWS region (default: the AWS environment's, else us-east-1)")
	fs.StringVar(&f.key, "key", "", "KMS key: to encrypt or re-wrap to; for decrypt, only data keys of this key")
	fs.StringVar(&f.in, "in", "", "input file, directory, or - for stdin")
	fs.StringVar(&f.out, "out", "", "output directory, or - for stdout")
	fs.Var(contextFlag(f.cfg.Context), "context", "encryption context pair k=v (repeat); decrypt and reencrypt require these pairs")
	fs.StringVar(&f.suite, "suite", "commit-key", "algorithm suite: commit-key (0x0478) or commit-key-ecdsa-p384 (0x0578)")
	fs.StringVar(&f.policy, "commitment-policy", "require-encrypt-require-decrypt", "the AWS Encryption SDK's commitment policy: require-encrypt-require-decrypt reads key-committing (version 2) messages only; require-encrypt-allow-decrypt also reads version 1 messages (no key commitment: what the SDK wrote before 2.0). Messages the job encrypts are key-committing; a header-only re-wrap keeps a version 1 message version 1")
	fs.IntVar(&f.cfg.FrameLength, "frame-length", esdk.DefaultFrameLength, "frame length in bytes")
	fs.IntVar(&f.cfg.Workers, "workers", 0, "parallel files (default max(4, 2*GOMAXPROCS))")
	fs.BoolVar(&f.cfg.Cache.Disabled, "no-cache", false, "a fresh data key for every file")
	fs.DurationVar(&f.cfg.Cache.MaxAge, "cache-max-age", 5*time.Minute, "data-key reuse: max age")
	fs.Int64Var(&f.cfg.Cache.MaxMessages, "cache-max-messages", 1000, "data-key reuse: max messages per data key")
	fs.Int64Var(&f.cfg.Cache.MaxBytes, "cache-max-bytes", 4<<30, "data-key reuse: max plaintext bytes per data key")
	fs.IntVar(&f.retries, "retries", 8, "attempts per KMS call (throttling backs off with jitter; failover across endpoints)")
	fs.BoolVar(&f.cfg.FailFast, "fail-fast", false, "stop at the first failed file")
	fs.BoolVar(&f.cfg.Resume, "resume", false, "continue the job whose journal is in --out")
	if mode == job.ReEncrypt {
		fs.BoolVar(&f.cfg.Reseal, "reseal", false, "re-encrypt every message under a new data key (new bodies) instead of replacing its header's data keys; signed messages are re-encrypted either way")
	}
	fs.BoolVar(&f.cfg.NoVerify, "no-verify", false, "do not read outputs back before renaming them")
	fs.BoolVar(&f.cfg.Mmap, "mmap", false, "encrypt files from 64 KiB through memory mappings (Linux; pays where mapping a page is cheap, not on VMs that shadow page tables)")
	fs.StringVar(&f.sync, "sync", "batch", "durability: batch (syncfs per group of files, before the journal), file (fsync each output before its rename), none (scratch disks)")
	fs.BoolVar(&f.json, "json", false, "print a JSON summary (on stdout; on stderr with --out -)")
	fs.BoolVar(&f.quiet, "quiet", false, "no progress display")
	return fs
}

func runJob(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, jobUsage)
		return 2
	}
	var mode job.Mode
	switch args[0] {
	case "encrypt":
		mode = job.Encrypt
	case "decrypt":
		mode = job.Decrypt
	case "reencrypt":
		mode = job.ReEncrypt
	case "-h", "--help", "help":
		fmt.Fprint(stdout, jobUsage)
		return 0
	default:
		fmt.Fprintf(stderr, "kmsd job: unknown mode %q\n%s", args[0], jobUsage)
		return 2
	}
	var f jobFlags
	fs := newJobFlags(mode, &f, stderr)
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "kmsd job: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if f.in == "" || f.out == "" {
		fmt.Fprintln(stderr, "kmsd job: --in and --out are required")
		return 2
	}
	if (f.in == "-") != (f.out == "-") {
		fmt.Fprintln(stderr, "kmsd job: --in - goes with --out - (a stream); files and trees go to a directory")
		return 2
	}
	switch f.suite {
	case "commit-key", "0x0478":
		f.cfg.Suite = esdk.SuiteCommitKey
	case "commit-key-ecdsa-p384", "0x0578":
		f.cfg.Suite = esdk.SuiteCommitKeyECDSAP384
	default:
		fmt.Fprintf(stderr, "kmsd job: --suite %q: want commit-key or commit-key-ecdsa-p384\n", f.suite)
		return 2
	}
	switch f.policy {
	case "require-encrypt-require-decrypt":
	case "require-encrypt-allow-decrypt":
		f.cfg.Limits.AllowUncommitted = true
	case "forbid-encrypt-allow-decrypt":
		fmt.Fprintln(stderr, "kmsd job: --commitment-policy forbid-encrypt-allow-decrypt: the job encrypts key-committing messages only (require-encrypt-allow-decrypt reads version 1 messages)")
		return 2
	default:
		fmt.Fprintf(stderr, "kmsd job: --commitment-policy %q: want require-encrypt-require-decrypt or require-encrypt-allow-decrypt\n", f.policy)
		return 2
	}
	switch f.sync {
	case "batch":
		f.cfg.Sync = job.SyncBatch
	case "file":
		f.cfg.Sync = job.SyncFile
	case "none":
		f.cfg.Sync = job.SyncNone
	default:
		fmt.Fprintf(stderr, "kmsd job: --sync %q: want batch, file or none\n", f.sync)
		return 2
	}
	f.cfg.Mode = mode
	f.cfg.KeyID = f.key
	f.cfg.Retry.MaxAttempts = f.retries
	clients, err := newJobKMS(ctx, f.endpoints, f.region)
	if err != nil {
		fmt.Fprintf(stderr, "kmsd job: %v\n", err)
		return 2
	}
	f.cfg.KMS = clients
	summaryOut := stdout
	if f.out == "-" {
		summaryOut = stderr
	}
	var pr *job.Printer
	if !f.quiet && f.out != "-" {
		pr = &job.Printer{W: stderr, Terminal: isTerminal(stderr)}
		f.cfg.Progress = pr.Print
	}
	j, err := job.New(f.cfg)
	if err != nil {
		fmt.Fprintf(stderr, "kmsd job: %v\n", err)
		return 2
	}
	var s *job.Summary
	if f.in == "-" {
		s, err = j.Stream(ctx, os.Stdin, stdout)
	} else {
		s, err = j.Run(ctx, f.in, f.out)
	}
	if pr != nil {
		pr.Done()
	}
	if err != nil && s == nil {
		fmt.Fprintf(stderr, "kmsd job: %v\n", err)
		return 2
	}
	uncommitted := false
	for _, fl := range s.Failures {
		fmt.Fprintf(stderr, "kmsd job: FAILED %s: %s\n", fl.Path, fl.Error)
		uncommitted = uncommitted || strings.Contains(fl.Error, esdk.ErrUncommitted.Error())
	}
	if uncommitted {
		fmt.Fprintln(stderr, "kmsd job: version 1 messages (no key commitment) are read with --commitment-policy require-encrypt-allow-decrypt")
	}
	if err != nil {
		fmt.Fprintf(stderr, "kmsd job: %v\n", err)
	}
	if f.json {
		enc := json.NewEncoder(summaryOut)
		enc.SetIndent("", "  ")
		enc.Encode(s)
	} else {
		fmt.Fprintf(stderr, "kmsd job %s: %d files, %d succeeded, %d failed, %d skipped, %d bytes in %.2fs; KMS calls %v\n",
			s.Mode, s.Files, s.Succeeded, s.Failed, s.Skipped, s.Bytes, s.Seconds, s.KMSCalls)
		if s.Resealed > 0 {
			fmt.Fprintf(stderr, "kmsd job: %d messages were re-encrypted (a new data key and a new body; signed ones also a new signing key)\n", s.Resealed)
		}
	}
	if mode == job.ReEncrypt && s.Succeeded > s.Resealed {
		fmt.Fprintln(stderr, "kmsd job: a re-wrapped version 2 message keeps its original's message key and header IV: whoever holds both files can forge frames of either, so keep the originals as safe as the data or delete them (--reseal re-encrypts the bodies instead)")
	}
	switch {
	case s.Interrupted:
		fmt.Fprintln(stderr, "kmsd job: interrupted; run again with --resume to continue")
		return 130
	case !s.OK() || err != nil:
		return 1
	}
	return 0
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// sdkKMS adapts the AWS SDK for Go v2 KMS client to job.KMS, sorting its
// errors into throttled, unavailable and final.
type sdkKMS struct{ c *kms.Client }

var _ job.KMS = sdkKMS{}

func newJobKMS(ctx context.Context, endpoints, region string) ([]job.KMS, error) {
	opts := []func(*config.LoadOptions) error{config.WithRetryMaxAttempts(1)}
	if region != "" {
		opts = append(opts, config.WithRegion(region))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("loading the AWS configuration: %w", err)
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1" // kmsd ignores it; the SDK needs one to sign
	}
	var urls []string
	for _, u := range strings.Split(endpoints, ",") {
		if u = strings.TrimSpace(u); u != "" {
			urls = append(urls, u)
		}
	}
	if len(urls) == 0 {
		urls = []string{""}
	}
	var out []job.KMS
	for _, u := range urls {
		out = append(out, sdkKMS{kms.NewFromConfig(cfg, func(o *kms.Options) {
			if u != "" {
				o.BaseEndpoint = aws.String(u)
			}
			o.Retryer = aws.NopRetryer{} // the job retries, across endpoints
		})})
	}
	return out, nil
}

// classify wraps err in job.ErrThrottled or job.ErrUnavailable when a
// retry (or another endpoint) may help.
func classify(err error) error {
	if err == nil {
		return nil
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		switch ae.ErrorCode() {
		case "ThrottlingException", "LimitExceededException", "RequestLimitExceeded", "TooManyRequestsException":
			return fmt.Errorf("%w: %v", job.ErrThrottled, err)
		case "KMSInternalException", "DependencyTimeoutException", "ServiceUnavailable", "ServiceUnavailableException":
			return fmt.Errorf("%w: %v", job.ErrUnavailable, err)
		}
		var re *awshttp.ResponseError
		if errors.As(err, &re) && re.HTTPStatusCode() >= 500 {
			return fmt.Errorf("%w: %v", job.ErrUnavailable, err)
		}
		if errors.As(err, &re) && re.HTTPStatusCode() == 429 {
			return fmt.Errorf("%w: %v", job.ErrThrottled, err)
		}
		return err
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return fmt.Errorf("%w: %v", job.ErrUnavailable, err) // no answer: transport
}

func (k sdkKMS) GenerateDataKey(ctx context.Context, keyID string, ec map[string]string) ([]byte, []byte, string, error) {
	out, err := k.c.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: aws.String(keyID), EncryptionContext: ec, NumberOfBytes: aws.Int32(esdk.DataKeyLen)})
	if err != nil {
		return nil, nil, "", classify(err)
	}
	return out.Plaintext, out.CiphertextBlob, aws.ToString(out.KeyId), nil
}

func (k sdkKMS) Decrypt(ctx context.Context, keyID string, blob []byte, ec map[string]string) ([]byte, string, error) {
	in := &kms.DecryptInput{CiphertextBlob: blob, EncryptionContext: ec}
	if keyID != "" {
		in.KeyId = aws.String(keyID)
	}
	out, err := k.c.Decrypt(ctx, in)
	if err != nil {
		return nil, "", classify(err)
	}
	return out.Plaintext, aws.ToString(out.KeyId), nil
}

func (k sdkKMS) Encrypt(ctx context.Context, keyID string, pt []byte, ec map[string]string) ([]byte, string, error) {
	out, err := k.c.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(keyID), Plaintext: pt, EncryptionContext: ec})
	if err != nil {
		return nil, "", classify(err)
	}
	return out.CiphertextBlob, aws.ToString(out.KeyId), nil
}

func (k sdkKMS) ReEncrypt(ctx context.Context, srcKeyID string, blob []byte, ec map[string]string, dstKeyID string) ([]byte, string, error) {
	in := &kms.ReEncryptInput{CiphertextBlob: blob, SourceEncryptionContext: ec, DestinationEncryptionContext: ec, DestinationKeyId: aws.String(dstKeyID)}
	if srcKeyID != "" {
		in.SourceKeyId = aws.String(srcKeyID)
	}
	out, err := k.c.ReEncrypt(ctx, in)
	if err != nil {
		return nil, "", classify(err)
	}
	return out.CiphertextBlob, aws.ToString(out.KeyId), nil
}
