package agent

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/kms"
)

// rawCall sends a hand-made request so tests control every header and byte.
// sign=false sends it unsigned; at is the signing time.
func (ts *testServer) rawCall(t testing.TB, target, body string, sign bool, secret string, at time.Time) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest("POST", ts.url+"/", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-amz-json-1.1")
	if target != "" {
		req.Header.Set("X-Amz-Target", target)
	}
	if sign {
		h := sha256.Sum256([]byte(body))
		creds := aws.Credentials{AccessKeyID: ts.admin.ID, SecretAccessKey: secret}
		if err := v4.NewSigner().SignHTTP(context.Background(), creds, req, hex.EncodeToString(h[:]), "kms", "us-east-1", at); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if len(b) > 0 {
		if err := json.Unmarshal(b, &out); err != nil {
			t.Fatalf("response is not JSON: %q", b)
		}
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/x-amz-json-1.1" {
		t.Fatalf("content type %q", ct)
	}
	if resp.Header.Get("x-amzn-RequestId") == "" {
		t.Fatal("no x-amzn-RequestId")
	}
	return resp.StatusCode, out
}

func TestProtocolAndAuth(t *testing.T) {
	ts := newTestServer(t)
	now := time.Now()
	cases := []struct {
		name         string
		target, body string
		sign         bool
		secret       string
		at           time.Time
		status       int
		wantType     string
	}{
		{"ok", "TrentService.ListKeys", "{}", true, ts.admin.Secret, now, 200, ""},
		{"empty body is {}", "TrentService.ListKeys", "", true, ts.admin.Secret, now, 200, ""},
		{"unsigned", "TrentService.ListKeys", "{}", false, "", now, 400, "MissingAuthenticationTokenException"},
		{"wrong secret", "TrentService.ListKeys", "{}", true, "wrong" + ts.admin.Secret, now, 400, "InvalidSignatureException"},
		{"skew past", "TrentService.ListKeys", "{}", true, ts.admin.Secret, now.Add(-6 * time.Minute), 400, "InvalidSignatureException"},
		{"skew future", "TrentService.ListKeys", "{}", true, ts.admin.Secret, now.Add(6 * time.Minute), 400, "InvalidSignatureException"},
		{"unknown op", "TrentService.Frobnicate", "{}", true, ts.admin.Secret, now, 400, "UnknownOperationException"},
		{"no target", "", "{}", true, ts.admin.Secret, now, 400, "UnknownOperationException"},
		{"other service", "DynamoDB_20120810.ListTables", "{}", true, ts.admin.Secret, now, 400, "UnknownOperationException"},
		{"malformed json", "TrentService.ListKeys", "{", true, ts.admin.Secret, now, 400, "SerializationException"},
		{"wrong type", "TrentService.ListKeys", `{"Limit":"ten"}`, true, ts.admin.Secret, now, 400, "SerializationException"},
		{"bad base64", "TrentService.Decrypt", `{"CiphertextBlob":"!!!"}`, true, ts.admin.Secret, now, 400, "SerializationException"},
		{"json array", "TrentService.Encrypt", `[]`, true, ts.admin.Secret, now, 400, "SerializationException"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			status, out := ts.rawCall(t, c.target, c.body, c.sign, c.secret, c.at)
			if status != c.status {
				t.Fatalf("status %d, want %d (%v)", status, c.status, out)
			}
			if c.wantType != "" && out["__type"] != c.wantType {
				t.Fatalf("__type %v, want %s (%v)", out["__type"], c.wantType, out)
			}
			if msg, _ := out["message"].(string); strings.Contains(msg, ts.admin.Secret) {
				t.Fatal("error message carries the secret")
			}
		})
	}

	// Unknown access key id.
	_, err := ts.newClient("AKIAUNKNOWNUNKNOWN00", "x").ListKeys(context.Background(), nil)
	wantAPIError(t, err, "UnrecognizedClientException")
}

func TestHealthAndReady(t *testing.T) {
	ts := newTestServer(t)
	for _, p := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get(ts.url + p)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", p, resp.StatusCode, b)
		}
	}
	// Health endpoints need no credentials but the API does.
	resp, err := http.Post(ts.url+"/healthz", "application/json", bytes.NewReader(nil))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Fatalf("POST /healthz: %d", resp.StatusCode)
	}
}

// TestErrorTable checks that every sentinel maps to its AWS error and that
// anything unknown is KMSInternalException with a generic message.
func TestErrorTable(t *testing.T) {
	for _, m := range errorTable {
		ae, unexpected := apiErrorFrom(fmtWrap(m.sentinel))
		if ae.Type != m.typ || ae.Status != m.status || unexpected != (m.status >= 500) {
			t.Errorf("%v -> %+v, want %s/%d", m.sentinel, ae, m.typ, m.status)
		}
		if ae.Message == "" {
			t.Errorf("%v -> empty message", m.sentinel)
		}
	}
	ae, unexpected := apiErrorFrom(io.ErrUnexpectedEOF)
	if ae.Type != "KMSInternalException" || ae.Status != 500 || !unexpected || strings.Contains(ae.Message, "EOF") {
		t.Errorf("unknown error -> %+v", ae)
	}
	ae, _ = apiErrorFrom(fmtWrap(apiErr(errNotFound, "x")))
	if ae.Type != errNotFound || ae.Message != "x" {
		t.Errorf("wrapped APIError -> %+v", ae)
	}
}

func fmtWrap(err error) error { return &wrapErr{err} }

type wrapErr struct{ err error }

func (w *wrapErr) Error() string { return "wrapped: " + w.err.Error() }
func (w *wrapErr) Unwrap() error { return w.err }

func TestMetrics(t *testing.T) {
	ts := newTestServer(t)
	id := ts.createKey(t)
	ts.client.Encrypt(context.Background(), &kms.EncryptInput{KeyId: &id, Plaintext: []byte("x")})
	ts.client.Encrypt(context.Background(), &kms.EncryptInput{KeyId: aws.String("alias/none"), Plaintext: []byte("x")})
	ts.principal(t, "user/nobody", "").Encrypt(context.Background(), &kms.EncryptInput{KeyId: &id, Plaintext: []byte("x")})
	b := scrape(t, ts)
	for _, want := range []string{
		`kmsd_access_denied_total{op="Encrypt"} 1`, `kmsd_raft_state{state="Leader"} 1`, "kmsd_raft_leader 1",
		"kmsd_raft_members 1", "kmsd_raft_applied_index",
		`kmsd_requests_total{code="ok",op="Encrypt"} 1`,
		`kmsd_requests_total{code="NotFoundException",op="Encrypt"} 1`,
		`kmsd_requests_total{code="ok",op="CreateKey"} 1`,
		"kmsd_batch_hsm_ops_total", "kmsd_hsm_sessions ", "kmsd_request_seconds_bucket",
		"kmsd_hsm_op_seconds_count", "kmsd_decrypt_cache_hits_total",
	} {
		if !strings.Contains(b, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if strings.Contains(b, ts.admin.Secret) {
		t.Fatal("/metrics carries a secret")
	}
}

// scrape returns the node's /metrics page.
func scrape(t *testing.T, ts *testServer) string {
	t.Helper()
	resp, err := http.Get(ts.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
