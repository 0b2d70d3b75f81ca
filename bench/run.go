package bench

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"math"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/smithy-go"
)

// ErrInvalidResponse is counted (as "InvalidResponse") when a request
// succeeds but its answer is not what was asked for, such as a data key of
// the wrong length.
var ErrInvalidResponse = errors.New("bench: invalid response")

// codeTransport counts failures that carry no AWS error code: refused or
// reset connections, timeouts, unreadable answers.
const codeTransport = "transport"

// Run drives cfg.Endpoints as cfg describes and returns the report. It
// returns an error only when the run cannot start (bad Config, no
// credentials, a Decrypt pool that cannot be made); failed requests are in
// the report. If ctx ends, Run stops sending, waits for requests in flight
// and reports what was measured so far.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	clients, closeIdle, err := newClients(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer closeIdle()

	r := &runner{cfg: cfg, clients: clients}
	for i, w := range cfg.Mix.weights() {
		r.total += w
		r.cum[i] = r.total
	}
	if cfg.Mix.Decrypt > 0 && cfg.DecryptPool > 0 {
		if r.pool, err = r.preparePool(ctx); err != nil {
			return nil, err
		}
	}
	if cfg.Raw {
		if r.raw, err = r.prepareRaw(ctx); err != nil {
			return nil, err
		}
	}
	return r.run(ctx), nil
}

// NewClient returns a kms client for endpoint configured as Run configures
// its own (credentials, region, no retries); kmsbench uses it for set-up
// calls such as CreateKey.
func NewClient(ctx context.Context, cfg Config, endpoint string) (*kms.Client, error) {
	cfg = cfg.withDefaults()
	cfg.Endpoints = []string{endpoint}
	clients, _, err := newClients(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return clients[0], nil
}

// CreateKey creates a symmetric KMS key on the first endpoint of cfg that
// answers and returns its key id.
func CreateKey(ctx context.Context, cfg Config, description string) (string, error) {
	cfg = cfg.withDefaults()
	if len(cfg.Endpoints) == 0 {
		return "", fmt.Errorf("bench: Config.Endpoints: at least one endpoint is required")
	}
	clients, closeIdle, err := newClients(ctx, cfg)
	if err != nil {
		return "", err
	}
	defer closeIdle()
	var errs []error
	for i, c := range clients {
		out, err := c.CreateKey(ctx, &kms.CreateKeyInput{Description: aws.String(description)})
		if err == nil && out.KeyMetadata != nil && out.KeyMetadata.KeyId != nil {
			return *out.KeyMetadata.KeyId, nil
		}
		if err == nil {
			err = ErrInvalidResponse
		}
		errs = append(errs, fmt.Errorf("%s: %w", cfg.Endpoints[i], err))
	}
	return "", fmt.Errorf("bench: CreateKey: %w", errors.Join(errs...))
}

// newClients builds one kms client per endpoint sharing one HTTP transport
// sized for cfg.Concurrency keep-alive connections per endpoint. The
// returned func closes idle connections.
func newClients(ctx context.Context, cfg Config) ([]*kms.Client, func(), error) {
	// A BuildableClient, so that the SDK can still apply AWS_CA_BUNDLE and
	// its defaults; frozen below so every endpoint shares one pool.
	hc := awshttp.NewBuildableClient().
		WithTransportOptions(func(tr *http.Transport) {
			// Room for twice the workers: net/http returns a connection to
			// the pool just after the answer is read, so a worker that is
			// quicker dials an extra one; keeping it stops the churn.
			tr.MaxIdleConns = 2 * cfg.Concurrency * len(cfg.Endpoints)
			tr.MaxIdleConnsPerHost = 2 * cfg.Concurrency
			tr.IdleConnTimeout = 90 * time.Second
			tr.DisableCompression = true
		}).
		WithDialerOptions(func(d *net.Dialer) { d.Timeout = 5 * time.Second }).
		WithTimeout(cfg.Timeout)

	opts := []func(*config.LoadOptions) error{
		config.WithRegion(cfg.Region),
		config.WithHTTPClient(hc),
		config.WithRetryMaxAttempts(1),
	}
	switch {
	case cfg.Credentials != nil:
		opts = append(opts, config.WithCredentialsProvider(cfg.Credentials))
	case cfg.CredentialsFile != "":
		// Only this file: the environment's keys must not win over it.
		sc, err := config.LoadSharedConfigProfile(ctx, cfg.Profile, func(o *config.LoadSharedConfigOptions) {
			o.CredentialsFiles = []string{cfg.CredentialsFile}
			o.ConfigFiles = []string{}
		})
		if err != nil {
			return nil, nil, fmt.Errorf("bench: Config.CredentialsFile: %w", err)
		}
		if !sc.Credentials.HasKeys() {
			return nil, nil, fmt.Errorf("bench: Config.CredentialsFile: profile %q in %s has no access key", cfg.Profile, cfg.CredentialsFile)
		}
		opts = append(opts, config.WithCredentialsProvider(credentials.StaticCredentialsProvider{Value: sc.Credentials}))
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("bench: loading AWS config: %w", err)
	}
	if bc, ok := awsCfg.HTTPClient.(*awshttp.BuildableClient); ok {
		awsCfg.HTTPClient = bc.Freeze()
	}
	closeIdle := func() {}
	if c, ok := awsCfg.HTTPClient.(interface{ CloseIdleConnections() }); ok {
		closeIdle = c.CloseIdleConnections
	}
	clients := make([]*kms.Client, len(cfg.Endpoints))
	for i, ep := range cfg.Endpoints {
		clients[i] = kms.NewFromConfig(awsCfg, func(o *kms.Options) {
			o.BaseEndpoint = aws.String(ep)
			o.Retryer = aws.NopRetryer{}
			o.RetryMaxAttempts = 1
		})
	}
	return clients, closeIdle, nil
}

// runner holds one run's shared state. Workers only touch the atomics;
// everything else is read-only while they run.
type runner struct {
	cfg     Config
	clients []*kms.Client
	pool    [][]byte
	raw     []*rawEndpoint // per endpoint, when cfg.Raw
	cum     [len(ops)]int  // cumulative Mix weights
	total   int

	start, measureStart, end time.Time

	sent      atomic.Int64 // tickets taken: MaxRequests and the open-loop schedule
	issued    atomic.Int64 // requests sent, every phase
	done      atomic.Int64 // answers, every phase (progress)
	failed    atomic.Int64 // errors, every phase (progress)
	failovers atomic.Int64
}

// preparePool makes cfg.DecryptPool blobs with GenerateDataKey, trying each
// endpoint in turn before giving up on a blob.
func (r *runner) preparePool(ctx context.Context) ([][]byte, error) {
	pool := make([][]byte, r.cfg.DecryptPool)
	var next atomic.Int64
	var firstErr error
	var mu sync.Mutex
	var wg sync.WaitGroup
	n := min(r.cfg.Concurrency, len(pool))
	for w := range n {
		wg.Go(func() {
			ep := w % len(r.clients)
			for {
				i := int(next.Add(1)) - 1
				if i >= len(pool) || ctx.Err() != nil {
					return
				}
				var err error
				for range r.clients {
					var out *kms.GenerateDataKeyOutput
					out, err = r.clients[ep].GenerateDataKey(ctx, r.gdkInput())
					if err == nil && len(out.CiphertextBlob) > 0 {
						pool[i] = out.CiphertextBlob
						break
					}
					if err == nil {
						err = ErrInvalidResponse
					}
					ep = (ep + 1) % len(r.clients)
				}
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					next.Store(int64(len(pool))) // stop the others
					return
				}
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return nil, fmt.Errorf("bench: preparing the Decrypt pool with GenerateDataKey: %w", firstErr)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return pool, nil
}

func (r *runner) gdkInput() *kms.GenerateDataKeyInput {
	return &kms.GenerateDataKeyInput{
		KeyId:             &r.cfg.KeyID,
		KeySpec:           types.DataKeySpecAes256,
		EncryptionContext: r.cfg.EncryptionContext,
	}
}

func (r *runner) run(ctx context.Context) *Report {
	r.start = time.Now()
	r.measureStart = r.start.Add(r.cfg.Warmup)
	r.end = r.measureStart.Add(r.cfg.Duration)

	workers := make([]*worker, r.cfg.Concurrency)
	var wg sync.WaitGroup
	for i := range workers {
		w := &worker{r: r, ep: i % len(r.clients), rng: mrand.New(mrand.NewPCG(mrand.Uint64(), uint64(i)))}
		w.plaintext = make([]byte, r.cfg.PlaintextSize)
		rand.Read(w.plaintext)
		workers[i] = w
		wg.Go(func() {
			defer w.closeRaw()
			if r.cfg.Rate > 0 {
				w.openLoop(ctx)
			} else {
				w.closedLoop(ctx)
			}
		})
	}
	stopProgress := r.progress()
	wg.Wait()
	stopProgress()
	return r.report(workers)
}

// progress prints a line per second to cfg.Progress, and one for the last
// partial second when the returned func is called.
func (r *runner) progress() func() {
	if r.cfg.Progress == nil {
		return func() {}
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		var lastDone, lastFailed int64
		last := r.start
		line := func(now time.Time) {
			d, f := r.done.Load(), r.failed.Load()
			phase := ""
			if now.Before(r.measureStart) {
				phase = "  (warm-up)"
			}
			fmt.Fprintf(r.cfg.Progress, "kmsbench: %5.1fs  %8.0f req/s  %6d errors%s\n",
				now.Sub(r.start).Seconds(), float64(d-lastDone)/now.Sub(last).Seconds(), f-lastFailed, phase)
			lastDone, lastFailed, last = d, f, now
		}
		for {
			select {
			case <-stop:
				// The last, partial second, unless it is a sliver.
				if now := time.Now(); now.Sub(last) >= 100*time.Millisecond {
					line(now)
				}
				return
			case now := <-t.C:
				line(now)
			}
		}
	}()
	return func() { close(stop); <-done }
}

// worker is one request loop. Its fields are its own; the runner reads
// them after the worker has returned.
type worker struct {
	r         *runner
	ep        int
	rng       *mrand.Rand
	plaintext []byte
	conns     []*rawConn // per endpoint, when cfg.Raw (dialed on first use)

	hist     [len(ops)]*hdrhistogram.Histogram
	count    [len(ops)]int64
	errs     [len(ops)]map[string]int64
	first    time.Time // earliest measured start
	lastDone time.Time // latest measured answer
}

// closedLoop sends one request at a time until the end of the run.
func (w *worker) closedLoop(ctx context.Context) {
	limit := w.r.cfg.MaxRequests
	for ctx.Err() == nil {
		if limit > 0 && w.r.sent.Add(1) > limit {
			return
		}
		now := time.Now()
		if !now.Before(w.r.end) {
			return
		}
		w.do(ctx, now)
	}
}

// openLoop takes the next slot of the schedule (start + n/Rate), waits for
// it and sends; latency counts from the slot, so a backlog shows.
func (w *worker) openLoop(ctx context.Context) {
	limit := w.r.cfg.MaxRequests
	perReq := float64(time.Second) / w.r.cfg.Rate
	var timer *time.Timer
	for ctx.Err() == nil {
		n := w.r.sent.Add(1) - 1
		if limit > 0 && n >= limit {
			return
		}
		due := w.r.start.Add(time.Duration(float64(n) * perReq))
		if !due.Before(w.r.end) || !time.Now().Before(w.r.end) {
			return // the schedule is over, or the run is (slots left are unsent)
		}
		if d := time.Until(due); d > 0 {
			if timer == nil {
				timer = time.NewTimer(d)
			} else {
				timer.Reset(d)
			}
			select {
			case <-ctx.Done():
				timer.Stop()
				return
			case <-timer.C:
			}
		}
		w.do(ctx, due)
	}
}

// do sends one request chosen by the Mix and records it if it was due
// after the warm-up. intended is when the latency clock starts.
func (w *worker) do(ctx context.Context, intended time.Time) {
	r := w.r
	op := w.pick()
	r.issued.Add(1)
	err := w.call(ctx, op)
	doneAt := time.Now()
	r.done.Add(1)
	if err != nil && ctx.Err() != nil {
		return // the run was cancelled: not the server's failure
	}
	var code string
	if err != nil {
		r.failed.Add(1)
		var failover bool
		code, failover = classify(err)
		if failover && len(r.clients) > 1 {
			w.ep = (w.ep + 1) % len(r.clients)
			r.failovers.Add(1)
		}
	}
	if intended.Before(r.measureStart) {
		return
	}
	if w.first.IsZero() || intended.Before(w.first) {
		w.first = intended
	}
	if doneAt.After(w.lastDone) {
		w.lastDone = doneAt
	}
	w.count[op]++
	if err != nil {
		if w.errs[op] == nil {
			w.errs[op] = make(map[string]int64)
		}
		w.errs[op][code]++
		return
	}
	if w.hist[op] == nil {
		w.hist[op] = newHistogram()
	}
	us := doneAt.Sub(intended).Microseconds()
	w.hist[op].RecordValue(min(max(us, minLatencyMicros), maxLatencyMicros))
}

func (w *worker) pick() int {
	x := w.rng.IntN(w.r.total)
	for i, c := range w.r.cum {
		if x < c {
			return i
		}
	}
	return len(ops) - 1
}

// call sends one request of operation op to the worker's endpoint.
func (w *worker) call(ctx context.Context, op int) error {
	r := w.r
	if r.raw != nil {
		return w.callRaw(op)
	}
	c := r.clients[w.ep]
	switch ops[op] {
	case OpGenerateDataKey:
		out, err := c.GenerateDataKey(ctx, r.gdkInput())
		if err == nil && (len(out.Plaintext) != 32 || len(out.CiphertextBlob) == 0) {
			err = ErrInvalidResponse
		}
		return err
	case OpDecrypt:
		out, err := c.Decrypt(ctx, &kms.DecryptInput{
			CiphertextBlob:    r.pool[w.rng.IntN(len(r.pool))],
			KeyId:             &r.cfg.KeyID,
			EncryptionContext: r.cfg.EncryptionContext,
		})
		if err == nil && len(out.Plaintext) != 32 {
			err = ErrInvalidResponse
		}
		return err
	case OpEncrypt:
		out, err := c.Encrypt(ctx, &kms.EncryptInput{
			KeyId:             &r.cfg.KeyID,
			Plaintext:         w.plaintext,
			EncryptionContext: r.cfg.EncryptionContext,
		})
		if err == nil && len(out.CiphertextBlob) == 0 {
			err = ErrInvalidResponse
		}
		return err
	default:
		out, err := c.GenerateDataKeyWithoutPlaintext(ctx, &kms.GenerateDataKeyWithoutPlaintextInput{
			KeyId:             &r.cfg.KeyID,
			KeySpec:           types.DataKeySpecAes256,
			EncryptionContext: r.cfg.EncryptionContext,
		})
		if err == nil && len(out.CiphertextBlob) == 0 {
			err = ErrInvalidResponse
		}
		return err
	}
}

// classify names a failed request's error (the AWS error code, or
// "transport") and says whether the worker should fail over: on a
// transport error or an HTTP 5xx.
func classify(err error) (code string, failover bool) {
	if errors.Is(err, ErrInvalidResponse) {
		return "InvalidResponse", false
	}
	status := 0
	var re interface{ HTTPStatusCode() int }
	if errors.As(err, &re) {
		status = re.HTTPStatusCode()
	}
	var ae smithy.APIError
	if errors.As(err, &ae) && ae.ErrorCode() != "" {
		return ae.ErrorCode(), status >= 500
	}
	return codeTransport, true
}

// report merges the workers' records.
func (r *runner) report(workers []*worker) *Report {
	rep := &Report{
		Endpoints:       r.cfg.Endpoints,
		Mode:            "closed",
		Mix:             r.cfg.Mix.String(),
		Concurrency:     r.cfg.Concurrency,
		TargetRate:      r.cfg.Rate,
		DecryptPool:     len(r.pool),
		WarmupSeconds:   r.cfg.Warmup.Seconds(),
		DurationSeconds: r.cfg.Duration.Seconds(),
		ErrorsByCode:    map[string]int64{},
		Failovers:       r.failovers.Load(),
	}
	if r.cfg.Rate > 0 {
		rep.Mode = "open"
		// Slots due before the end (or the cancellation) that no worker
		// got to: the server was slower than the schedule.
		stop := time.Now()
		if r.end.Before(stop) {
			stop = r.end
		}
		slots := int64(math.Ceil(float64(stop.Sub(r.start)) / (float64(time.Second) / r.cfg.Rate)))
		if r.cfg.MaxRequests > 0 {
			slots = min(slots, r.cfg.MaxRequests)
		}
		rep.Unsent = max(0, slots-r.issued.Load())
	}
	var first, last time.Time
	for _, w := range workers {
		if !w.first.IsZero() && (first.IsZero() || w.first.Before(first)) {
			first = w.first
		}
		if w.lastDone.After(last) {
			last = w.lastDone
		}
	}
	if !first.IsZero() {
		rep.ElapsedSeconds = last.Sub(first).Seconds()
	}
	rate := func(n int64) float64 {
		if rep.ElapsedSeconds <= 0 {
			return 0
		}
		return float64(n) / rep.ElapsedSeconds
	}

	total := newHistogram()
	weights := r.cfg.Mix.weights()
	for op, name := range ops {
		if weights[op] == 0 {
			continue
		}
		h := newHistogram()
		o := OpReport{Op: name, ErrorsByCode: map[string]int64{}}
		for _, w := range workers {
			o.Requests += w.count[op]
			for c, n := range w.errs[op] {
				o.ErrorsByCode[c] += n
				o.Errors += n
				rep.ErrorsByCode[c] += n
			}
			if w.hist[op] != nil {
				h.Merge(w.hist[op])
			}
		}
		total.Merge(h)
		o.Throughput = rate(o.Requests)
		o.Latency = latencyOf(h)
		rep.Requests += o.Requests
		rep.Errors += o.Errors
		rep.Ops = append(rep.Ops, o)
		if name == OpDecrypt && len(r.pool) > 0 {
			rep.DecryptReuse = float64(o.Requests) / float64(len(r.pool))
		}
	}
	rep.Throughput = rate(rep.Requests)
	rep.Latency = latencyOf(total)
	return rep
}
