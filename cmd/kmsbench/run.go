package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/kmsd/kmsd/bench"
)

const usage = `usage: kmsbench [flags]

Drives a KMS endpoint with an operation mix for a bounded time and prints
throughput and latency (a table, or JSON with --json). Progress goes to stderr.

  kmsbench --ideal --duration 10s
  kmsbench --endpoint http://127.0.0.1:4599 --credentials data/credentials --duration 10s

Exit status: 0 if any measured request succeeded, 1 if none did or the run
could not start, 2 for bad flags.

flags:
`

type options struct {
	endpoints   string
	region      string
	credentials string
	profile     string
	key         string
	mix         string
	context     string
	concurrency int
	rate        float64
	duration    time.Duration
	warmup      time.Duration
	maxRequests int64
	decryptPool int
	timeout     time.Duration
	json        bool
	ideal       bool
	raw         bool
}

func parseFlags(args []string, stderr io.Writer) (*options, bench.Config, error) {
	var o options
	fs := flag.NewFlagSet("kmsbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	fs.StringVar(&o.endpoints, "endpoint", "http://127.0.0.1:4599", "endpoint `URL`s, comma-separated; a worker moves to the next on a connection error or 5xx")
	fs.StringVar(&o.region, "region", bench.DefaultRegion, "SigV4 signing region")
	fs.StringVar(&o.credentials, "credentials", "", "AWS shared credentials `file` (kmsd writes DIR/credentials); empty = the AWS default chain")
	fs.StringVar(&o.profile, "profile", "default", "profile in --credentials")
	fs.StringVar(&o.key, "key", "", "`KEYID` or alias/NAME to use; empty = CreateKey one first")
	fs.StringVar(&o.mix, "mix", "gdk=1,decrypt=1,encrypt=0,gdkwp=0", "operation weights: gdk (GenerateDataKey), decrypt, encrypt, gdkwp (GenerateDataKeyWithoutPlaintext)")
	fs.StringVar(&o.context, "context", "", "encryption context sent with every request, `k=v,...`")
	fs.IntVar(&o.concurrency, "concurrency", bench.DefaultConcurrency, "workers (closed loop) or the bound on requests in flight (open loop)")
	fs.Float64Var(&o.rate, "rate", 0, "open loop: target requests/s, latency measured from the scheduled time; 0 = closed loop")
	fs.DurationVar(&o.duration, "duration", bench.DefaultDuration, "measured window")
	fs.DurationVar(&o.warmup, "warmup", 2*time.Second, "warm-up before the measured window (sent, not recorded)")
	fs.Int64Var(&o.maxRequests, "max-requests", 0, "stop after this many requests (warm-up included); 0 = no bound but --duration")
	fs.IntVar(&o.decryptPool, "decrypt-pool", bench.DefaultDecryptPool, "distinct blobs made up front for Decrypt to reuse")
	fs.DurationVar(&o.timeout, "timeout", bench.DefaultTimeout, "per-request timeout")
	fs.BoolVar(&o.json, "json", false, "print the report as JSON instead of a table")
	fs.BoolVar(&o.raw, "raw", false, "replay requests SigV4-signed once, over fasthttp, instead of calling through the AWS SDK (takes the SDK's CPU cost out of the measurement; runs up to 4m)")
	fs.BoolVar(&o.ideal, "ideal", false, "bench the ideal twin (no HSM, no SigV4 check), started in-process on 127.0.0.1:0, instead of --endpoint")
	if err := fs.Parse(args); err != nil {
		return nil, bench.Config{}, err
	}
	if fs.NArg() > 0 {
		return nil, bench.Config{}, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	mix, err := bench.ParseMix(o.mix)
	if err != nil {
		return nil, bench.Config{}, err
	}
	if mix == (bench.Mix{}) {
		return nil, bench.Config{}, fmt.Errorf("--mix %q: every weight is 0", o.mix)
	}
	ectx, err := parseContext(o.context)
	if err != nil {
		return nil, bench.Config{}, err
	}
	if o.concurrency < 1 {
		return nil, bench.Config{}, fmt.Errorf("--concurrency must be at least 1")
	}
	if o.duration <= 0 {
		return nil, bench.Config{}, fmt.Errorf("--duration must be positive")
	}
	if o.decryptPool < 1 {
		return nil, bench.Config{}, fmt.Errorf("--decrypt-pool must be at least 1")
	}
	if o.timeout <= 0 {
		return nil, bench.Config{}, fmt.Errorf("--timeout must be positive")
	}
	cfg := bench.Config{
		Region:            o.region,
		CredentialsFile:   o.credentials,
		Profile:           o.profile,
		KeyID:             o.key,
		Mix:               mix,
		DecryptPool:       o.decryptPool,
		EncryptionContext: ectx,
		Concurrency:       o.concurrency,
		Rate:              o.rate,
		Warmup:            o.warmup,
		Duration:          o.duration,
		MaxRequests:       o.maxRequests,
		Timeout:           o.timeout,
		Raw:               o.raw,
		Progress:          stderr,
	}
	for _, e := range strings.Split(o.endpoints, ",") {
		if e = strings.TrimSpace(e); e != "" {
			cfg.Endpoints = append(cfg.Endpoints, e)
		}
	}
	return &o, cfg, nil
}

func parseContext(s string) (map[string]string, error) {
	if s == "" {
		return nil, nil
	}
	m := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--context %q: want k=v,...", s)
		}
		m[k] = v
	}
	return m, nil
}

// run is the whole program; main only wires the process to it. It starts
// the ideal twin if asked, creates a key if none is given, runs the bench,
// prints the report and stops the twin.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, cfg, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "kmsbench: %v\n", err)
		return 2
	}

	if o.ideal {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			fmt.Fprintf(stderr, "kmsbench: ideal twin: %v\n", err)
			return 1
		}
		srv := bench.NewIdealServer()
		served := make(chan error, 1)
		go func() { served <- srv.Serve(ln) }()
		defer func() {
			srv.Close()
			<-served
		}()
		cfg.Endpoints = []string{"http://" + ln.Addr().String()}
		if o.credentials == "" {
			// The twin checks no signature, but the SDK signs anyway.
			cfg.Credentials = credentials.NewStaticCredentialsProvider("AKIDKMSBENCHIDEAL", "ideal", "")
		}
		fmt.Fprintf(stderr, "kmsbench: ideal twin (no HSM, no SigV4 check) on %s\n", cfg.Endpoints[0])
	}

	if cfg.KeyID == "" {
		id, err := bench.CreateKey(ctx, cfg, "kmsbench "+time.Now().UTC().Format(time.RFC3339))
		if err != nil {
			fmt.Fprintf(stderr, "kmsbench: %v\n", err)
			return 1
		}
		cfg.KeyID = id
		fmt.Fprintf(stderr, "kmsbench: created key %s\n", id)
	}

	if cfg.Mix.Decrypt > 0 {
		fmt.Fprintf(stderr, "kmsbench: preparing %d Decrypt blobs\n", cfg.DecryptPool)
	}
	rep, err := bench.Run(ctx, cfg)
	if err != nil {
		fmt.Fprintf(stderr, "kmsbench: %v\n", err)
		return 1
	}
	if o.json {
		b, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			fmt.Fprintf(stderr, "kmsbench: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "%s\n", b)
	} else if err := rep.WriteTable(stdout); err != nil {
		fmt.Fprintf(stderr, "kmsbench: %v\n", err)
		return 1
	}
	if rep.Requests == 0 || rep.Errors == rep.Requests {
		fmt.Fprintf(stderr, "kmsbench: no request succeeded (%d sent)\n", rep.Requests)
		return 1
	}
	return 0
}
