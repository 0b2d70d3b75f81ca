package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
)

func checkLatency(t *testing.T, name string, l Latency) {
	t.Helper()
	if l.Count == 0 {
		t.Errorf("%s: no latency samples", name)
		return
	}
	if !(l.P50 >= 1 && l.P50 <= l.P90 && l.P90 <= l.P99 && l.P99 <= l.P999 && l.P999 <= l.Max) {
		t.Errorf("%s: percentiles out of order: %+v", name, l)
	}
}

func TestRunIdealClosedLoop(t *testing.T) {
	url, accepted := newTestIdealCounting(t)
	cfg := testConfig(url)
	cfg.Mix = Mix{GenerateDataKey: 1, Decrypt: 1, Encrypt: 1, GenerateDataKeyWithoutPlaintext: 1}
	var progress bytes.Buffer
	cfg.Progress = &progress
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Requests == 0 || rep.Errors != 0 || len(rep.ErrorsByCode) != 0 {
		t.Fatalf("requests %d, errors %d %v", rep.Requests, rep.Errors, rep.ErrorsByCode)
	}
	if rep.Mode != "closed" || rep.Throughput <= 0 || rep.ElapsedSeconds <= 0 || rep.DecryptPool != 16 || rep.DecryptReuse <= 0 {
		t.Errorf("summary: %+v", rep)
	}
	if len(rep.Ops) != 4 {
		t.Fatalf("ops: %+v", rep.Ops)
	}
	var sum int64
	for i, o := range rep.Ops {
		if o.Op != ops[i] || o.Requests == 0 || o.Errors != 0 {
			t.Errorf("op %d: %+v", i, o)
		}
		checkLatency(t, o.Op, o.Latency)
		sum += o.Requests
	}
	if sum != rep.Requests || rep.Latency.Count != rep.Requests {
		t.Errorf("total %d (latency count %d), ops sum to %d", rep.Requests, rep.Latency.Count, sum)
	}
	checkLatency(t, "total", rep.Latency)
	// Keep-alive: connections are reused (net/http may dial a few extra
	// when a worker is quicker than the pool).
	if n := accepted.Load(); n > rep.Requests/20 {
		t.Errorf("%d connections for %d workers and %d requests", n, cfg.Concurrency, rep.Requests)
	}

	// JSON: round trip, and the documented names are there.
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&back, rep) {
		t.Errorf("JSON round trip:\n got %+v\nwant %+v", back, *rep)
	}
	for _, name := range []string{`"endpoints"`, `"mode"`, `"mix"`, `"concurrency"`, `"target_rate"`, `"decrypt_pool"`,
		`"decrypt_reuse"`, `"warmup_seconds"`, `"duration_seconds"`, `"elapsed_seconds"`, `"requests"`, `"errors"`,
		`"throughput_rps"`, `"errors_by_code"`, `"failovers"`, `"latency_us"`, `"ops"`, `"op"`,
		`"count"`, `"mean"`, `"p50"`, `"p90"`, `"p99"`, `"p999"`, `"max"`} {
		if !bytes.Contains(b, []byte(name)) {
			t.Errorf("JSON lacks %s: %s", name, b)
		}
	}

	var table bytes.Buffer
	if err := rep.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	for _, want := range append([]string{"total", "p99.9 µs", "closed loop, 4 workers"}, ops[:]...) {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
	if !strings.Contains(progress.String(), "req/s") {
		t.Errorf("no progress line: %q", progress.String())
	}
}

func TestRunOpenLoopRate(t *testing.T) {
	cfg := testConfig(newTestIdeal(t))
	cfg.Rate = 200
	cfg.Warmup = 0
	cfg.Duration = time.Second
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Mode != "open" || rep.TargetRate != 200 || rep.Errors != 0 {
		t.Fatalf("report: %+v", rep)
	}
	// The schedule holds 200 slots in the second; a noisy machine may
	// answer late but not skip or add any. Loose bounds all the same.
	if rep.Requests < 100 || rep.Requests > 300 {
		t.Errorf("open loop at 200/s for 1s sent %d requests", rep.Requests)
	}
	checkLatency(t, "total", rep.Latency)
}

func TestRunMaxRequests(t *testing.T) {
	for _, rate := range []float64{0, 1000} {
		cfg := testConfig(newTestIdeal(t))
		cfg.Rate = rate
		cfg.Warmup = 0
		cfg.Duration = time.Minute // MaxRequests ends the run
		cfg.MaxRequests = 50
		rep, err := Run(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		if rep.Requests != 50 || rep.Errors != 0 {
			t.Errorf("rate %g: %d requests, %d errors; want 50, 0", rate, rep.Requests, rep.Errors)
		}
	}
}

func TestRunFailover(t *testing.T) {
	cfg := testConfig(closedPort(t), newTestIdeal(t))
	cfg.Warmup = 0
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Requests-rep.Errors <= 0 {
		t.Fatalf("no request succeeded: %+v", rep)
	}
	// Each worker that starts on the dead endpoint fails once, then stays
	// on the live one.
	if rep.Errors > int64(cfg.Concurrency) || rep.Errors != rep.ErrorsByCode["transport"] {
		t.Errorf("errors %d %v, want at most %d transport errors", rep.Errors, rep.ErrorsByCode, cfg.Concurrency)
	}
	if rep.Failovers != rep.Errors {
		t.Errorf("failovers %d, errors %d", rep.Failovers, rep.Errors)
	}
}

// kmsErrorServer answers every request with an AWS JSON error.
func kmsErrorServer(t *testing.T, status int, typ string) string {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		w.WriteHeader(status)
		w.Write([]byte(`{"__type":"` + typ + `","message":"Rate exceeded"}`))
	}))
	t.Cleanup(s.Close)
	return s.URL
}

func TestRunErrorClassification(t *testing.T) {
	for _, tc := range []struct {
		status   int
		typ      string
		failover bool
	}{
		{400, "ThrottlingException", false},
		{400, "NotFoundException", false},
		{500, "KMSInternalException", true},
	} {
		t.Run(tc.typ, func(t *testing.T) {
			cfg := testConfig(kmsErrorServer(t, tc.status, tc.typ), kmsErrorServer(t, tc.status, tc.typ))
			cfg.Mix = Mix{GenerateDataKey: 1} // no Decrypt pool to prepare
			cfg.Warmup = 0
			cfg.MaxRequests = 40
			rep, err := Run(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			if rep.Requests != 40 || rep.Errors != 40 || rep.ErrorsByCode[tc.typ] != 40 || len(rep.ErrorsByCode) != 1 {
				t.Errorf("requests %d errors %d by code %v; want all 40 under %s", rep.Requests, rep.Errors, rep.ErrorsByCode, tc.typ)
			}
			if rep.Latency.Count != 0 {
				t.Errorf("failed requests recorded latency: %+v", rep.Latency)
			}
			if got := rep.Failovers > 0; got != tc.failover {
				t.Errorf("failovers %d, want failover %v", rep.Failovers, tc.failover)
			}
		})
	}
}

func TestRunCancel(t *testing.T) {
	cfg := testConfig(newTestIdeal(t))
	cfg.Warmup = 0
	cfg.Duration = time.Minute
	ctx, cancel := context.WithCancel(context.Background())
	var progress lineWriter
	progress.fn = func() { cancel() } // cancel after the first progress line
	cfg.Progress = &progress
	rep, err := Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Errors != 0 || rep.Requests == 0 {
		t.Errorf("cancelled run: requests %d errors %d %v", rep.Requests, rep.Errors, rep.ErrorsByCode)
	}
}

type lineWriter struct{ fn func() }

func (w *lineWriter) Write(p []byte) (int, error) { w.fn(); return len(p), nil }

func TestDecryptPoolFailsClearly(t *testing.T) {
	cfg := testConfig(kmsErrorServer(t, 400, "NotFoundException"))
	_, err := Run(context.Background(), cfg)
	if err == nil || !strings.Contains(err.Error(), "Decrypt pool") || !strings.Contains(err.Error(), "NotFoundException") {
		t.Fatalf("err = %v", err)
	}
}

func TestCreateKeyIdeal(t *testing.T) {
	cfg := testConfig(closedPort(t), newTestIdeal(t))
	id, err := CreateKey(context.Background(), cfg, "kmsbench")
	if err != nil || len(id) != 36 {
		t.Fatalf("CreateKey = %q, %v", id, err)
	}
}

// TestIdealServerWire checks the ideal twin answers like a KMS through the
// SDK: round trips, and the errors a broken blob or context gets.
func TestIdealServerWire(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig()
	c, err := NewClient(ctx, cfg, newTestIdeal(t))
	if err != nil {
		t.Fatal(err)
	}
	ectx := map[string]string{"b": "2", "a": "1"}
	enc, err := c.Encrypt(ctx, &kms.EncryptInput{KeyId: &cfg.KeyID, Plaintext: []byte("hello"), EncryptionContext: ectx})
	if err != nil {
		t.Fatal(err)
	}
	if *enc.KeyId != idealARN+cfg.KeyID {
		t.Errorf("KeyId %q", *enc.KeyId)
	}
	dec, err := c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob, EncryptionContext: ectx})
	if err != nil || string(dec.Plaintext) != "hello" || *dec.KeyId != idealARN+cfg.KeyID {
		t.Fatalf("Decrypt = %+v, %v", dec, err)
	}
	gdk, err := c.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: &cfg.KeyID, NumberOfBytes: ptr[int32](64)})
	if err != nil || len(gdk.Plaintext) != 64 {
		t.Fatalf("GenerateDataKey = %+v, %v", gdk, err)
	}
	desc, err := c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: &cfg.KeyID})
	if err != nil || desc.KeyMetadata.KeyState != types.KeyStateEnabled {
		t.Fatalf("DescribeKey = %+v, %v", desc, err)
	}

	tampered := append([]byte(nil), enc.CiphertextBlob...)
	tampered[len(tampered)-1] ^= 1
	for name, in := range map[string]*kms.DecryptInput{
		"wrong context": {CiphertextBlob: enc.CiphertextBlob, EncryptionContext: map[string]string{"a": "1"}},
		"tampered":      {CiphertextBlob: tampered, EncryptionContext: ectx},
		"truncated":     {CiphertextBlob: enc.CiphertextBlob[:20], EncryptionContext: ectx},
	} {
		_, err := c.Decrypt(ctx, in)
		if code, _ := classify(err); code != "InvalidCiphertextException" {
			t.Errorf("%s: error %v (code %q)", name, err, code)
		}
	}
}

func ptr[T any](v T) *T { return &v }

func FuzzIdealOpen(f *testing.F) {
	s := NewIdealServer()
	f.Add(s.seal("k", []byte("plaintext"), nil))
	f.Add([]byte{1, 200})
	f.Fuzz(func(t *testing.T, blob []byte) {
		s.open(blob, map[string]string{"a": "b"})
		s.open(blob, nil)
	})
}
