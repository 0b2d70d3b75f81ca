package agent

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/valyala/fasthttp"

	"github.com/kmsd/kmsd/agent/audit"
	"github.com/kmsd/kmsd/hsmpool/hsmtest"
)

// signedRequest builds a signed API request once; the benchmark replays it
// into fasthttp's handler in-process (no sockets), so the figure is the
// server's own cost: SigV4, JSON, key lookup, HSM, AES-GCM.
func signedRequest(b *testing.B, ts *testServer, op string, body []byte) *fasthttp.Request {
	b.Helper()
	hr, _ := http.NewRequest("POST", ts.url+"/", bytes.NewReader(body))
	hr.Header.Set("Content-Type", "application/x-amz-json-1.1")
	hr.Header.Set("X-Amz-Target", "TrentService."+op)
	h := sha256.Sum256(body)
	creds := aws.Credentials{AccessKeyID: ts.admin.ID, SecretAccessKey: ts.admin.Secret}
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, hr, hex.EncodeToString(h[:]), "kms", "us-east-1", time.Now()); err != nil {
		b.Fatal(err)
	}
	var req fasthttp.Request
	req.Header.SetMethod("POST")
	req.SetRequestURI(ts.url + "/")
	req.Header.SetHost(hr.Host)
	for k, vs := range hr.Header {
		req.Header.Set(k, vs[0])
	}
	req.SetBody(body)
	// Round-trip through the wire form so the request looks exactly like one
	// the server parsed off a socket (fasthttp keeps some headers specially).
	var parsed fasthttp.Request
	if err := parsed.Read(bufio.NewReader(strings.NewReader(req.String()))); err != nil {
		b.Fatal(err)
	}
	return &parsed
}

func benchOp(b *testing.B, ts *testServer, op string, body []byte) {
	req := signedRequest(b, ts, op, body)
	b.ReportAllocs()
	b.SetParallelism(32) // 64 concurrent requests on 2 cores, like 64 connections
	cpu0 := processCPU()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		var ctx fasthttp.RequestCtx
		for pb.Next() {
			ctx.Request.Reset()
			req.CopyTo(&ctx.Request)
			ctx.Response.Reset()
			ts.Handler(&ctx)
			if ctx.Response.StatusCode() != 200 {
				b.Fatalf("%s: %d %s", op, ctx.Response.StatusCode(), ctx.Response.Body())
			}
		}
	})
	b.StopTimer()
	// CPU time per request (user+system, all threads, the HSM's included):
	// on a shared machine it moves far less than ns/op, which counts the
	// time other processes took.
	b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
	st := ts.batch.Stats()
	b.ReportMetric(float64(st.Items)/float64(max(st.HSMOps, 1)), "items/hsmop")
}

// processCPU is the CPU time this process has used, in nanoseconds.
func processCPU() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

func BenchmarkGenerateDataKey(b *testing.B) {
	ts := newTestServer(b)
	id := ts.createKey(b)
	benchOp(b, ts, "GenerateDataKey", []byte(`{"KeyId":"`+id+`","KeySpec":"AES_256","EncryptionContext":{"app":"bench"}}`))
}

// BenchmarkGenerateDataKeyUnbatched is BenchmarkGenerateDataKey with
// batching off (MaxBatch 1): one HSM operation per request.
func BenchmarkGenerateDataKeyUnbatched(b *testing.B) {
	lib, label, pin := hsmtest.NewToken(b)
	ts := startTestServerCfg(b, b.TempDir(), tokenRef{lib, label, pin}, Config{MaxBatch: 1})
	id := ts.createKey(b)
	benchOp(b, ts, "GenerateDataKey", []byte(`{"KeyId":"`+id+`","KeySpec":"AES_256","EncryptionContext":{"app":"bench"}}`))
}

// BenchmarkGenerateDataKeyAudited is BenchmarkGenerateDataKey with the
// audit log on (as bin/kmsd serves by default), its records written to a
// sink that discards them: the request path's audit cost and the writer
// goroutine's encoding are in the figure, the disk is not.
func BenchmarkGenerateDataKeyAudited(b *testing.B) {
	ts := newAuditedBenchServer(b, Config{})
	id := ts.createKey(b)
	benchOp(b, ts, "GenerateDataKey", []byte(`{"KeyId":"`+id+`","KeySpec":"AES_256","EncryptionContext":{"app":"bench"}}`))
}

func BenchmarkDecryptAudited(b *testing.B) {
	ts := newAuditedBenchServer(b, Config{})
	benchDecrypt(b, ts)
}

func BenchmarkEncryptAudited(b *testing.B) {
	ts := newAuditedBenchServer(b, Config{})
	id := ts.createKey(b)
	benchOp(b, ts, "Encrypt", []byte(`{"KeyId":"`+id+`","Plaintext":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}`))
}

// newAuditedBenchServer starts a node whose audit log (Block, so nothing is
// dropped) goes to a discarding sink.
func newAuditedBenchServer(b *testing.B, cfg Config) *testServer {
	lg, err := audit.Open(audit.Config{Sink: discardSink{}, OnFull: audit.Block})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { lg.Close() })
	cfg.Audit = lg
	lib, label, pin := hsmtest.NewToken(b)
	return startTestServerCfg(b, b.TempDir(), tokenRef{lib, label, pin}, cfg)
}

// discardSink takes every audit record at once.
type discardSink struct{}

func (discardSink) Write(p []byte) (int, error) { return len(p), nil }
func (discardSink) Sync() error                 { return nil }
func (discardSink) Close() error                { return nil }

func BenchmarkEncrypt(b *testing.B) {
	ts := newTestServer(b)
	id := ts.createKey(b)
	benchOp(b, ts, "Encrypt", []byte(`{"KeyId":"`+id+`","Plaintext":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}`))
}

func BenchmarkDecrypt(b *testing.B) { benchDecrypt(b, newTestServer(b)) }

func benchDecrypt(b *testing.B, ts *testServer) {
	id := ts.createKey(b)
	k, _ := ts.node.Key(id)
	blob, _, err := ts.seal(context.Background(), k, make([]byte, 32), nil)
	if err != nil {
		b.Fatal(err)
	}
	body, _ := json.Marshal(map[string]any{"CiphertextBlob": blob})
	benchOp(b, ts, "Decrypt", body)
}

// BenchmarkBaselineIdealGDK is the baseline twin of BenchmarkGenerateDataKey:
// an ideal in-process GenerateDataKey (fasthttp handler, JSON in and out, Go
// AES-GCM, no HSM, no SigV4). The ratio between the two is the cost of the
// HSM and authentication.
func BenchmarkBaselineIdealGDK(b *testing.B) {
	key := make([]byte, 32)
	rand.Read(key)
	aead, _ := newGCM(key)
	handler := func(ctx *fasthttp.RequestCtx) {
		var in generateDataKeyRequest
		if err := json.Unmarshal(ctx.PostBody(), &in); err != nil {
			ctx.SetStatusCode(400)
			return
		}
		dk := make([]byte, 32)
		rand.Read(dk)
		nonce := make([]byte, 12)
		rand.Read(nonce)
		out, _ := json.Marshal(&generateDataKeyResponse{CiphertextBlob: aead.Seal(nonce, nonce, dk, nil), Plaintext: dk, KeyId: "k"})
		ctx.SetBody(out)
	}
	var req fasthttp.Request
	req.Header.SetMethod("POST")
	req.SetBody([]byte(`{"KeyId":"k","KeySpec":"AES_256","EncryptionContext":{"app":"bench"}}`))
	b.ReportAllocs()
	b.SetParallelism(32)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		var ctx fasthttp.RequestCtx
		for pb.Next() {
			ctx.Request.Reset()
			req.CopyTo(&ctx.Request)
			ctx.Response.Reset()
			handler(&ctx)
		}
	})
}
