package sigv4

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/valyala/fasthttp"
)

const (
	testRegion = "eu-west-1"
	testAKID   = "AKIDEXAMPLE000000001"
	testSecret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
	testDate   = "20260123T141500Z"
)

var testTime = time.Date(2026, 1, 23, 14, 15, 0, 0, time.UTC)

var sentinels = []error{ErrMissingAuth, ErrIncomplete, ErrUnknownAccessKey, ErrSignatureMismatch, ErrExpired}

// newTestVerifier returns a Verifier for testRegion/kms whose clock reads now
// and which knows testAKID (and any extra id -> secret pairs).
func newTestVerifier(t testing.TB, now time.Time, extra ...string) *Verifier {
	t.Helper()
	keys := map[string][]byte{testAKID: []byte(testSecret)}
	for i := 0; i+1 < len(extra); i += 2 {
		keys[extra[i]] = []byte(extra[i+1])
	}
	v := &Verifier{
		Region: testRegion,
		Lookup: func(id string) ([]byte, bool) { s, ok := keys[id]; return s, ok },
		Now:    func() time.Time { return now },
	}
	if err := v.Validate(); err != nil {
		t.Fatal(err)
	}
	return v
}

// signOpts describes one request for the SDK's v4 signer.
type signOpts struct {
	method, url string
	header      http.Header
	body        []byte
	akid        string
	secret      string
	token       string
	service     string
	region      string
	at          time.Time
}

func (o signOpts) withDefaults() signOpts {
	if o.method == "" {
		o.method = http.MethodPost
	}
	if o.url == "" {
		o.url = "http://127.0.0.1:8080/"
	}
	if o.akid == "" {
		o.akid = testAKID
	}
	if o.secret == "" {
		o.secret = testSecret
	}
	if o.service == "" {
		o.service = "kms"
	}
	if o.region == "" {
		o.region = testRegion
	}
	if o.at.IsZero() {
		o.at = testTime
	}
	return o
}

// kmsOpts is a typical KMS call as the Go SDK v2 would build it.
func kmsOpts() signOpts {
	h := http.Header{}
	h.Set("Content-Type", "application/x-amz-json-1.1")
	h.Set("X-Amz-Target", "TrentService.Encrypt")
	h.Set("Amz-Sdk-Invocation-Id", "4b0c6b44-8f9d-4a5d-9e2f-3f0e6c1c9a11")
	h.Set("Amz-Sdk-Request", "attempt=1; max=3")
	return signOpts{header: h, body: []byte(`{"KeyId":"alias/app","Plaintext":"aGVsbG8gd29ybGQ="}`)}
}

// sdkSign signs o with aws-sdk-go-v2's v4 signer and returns the request as
// it goes on the wire.
func sdkSign(t testing.TB, o signOpts) []byte {
	t.Helper()
	o = o.withDefaults()
	r, err := http.NewRequest(o.method, o.url, bytes.NewReader(o.body))
	if err != nil {
		t.Fatal(err)
	}
	if len(o.body) == 0 {
		r.Body, r.GetBody, r.ContentLength = http.NoBody, nil, 0
	}
	for k, vs := range o.header {
		for _, v := range vs {
			r.Header.Add(k, v)
		}
	}
	sum := sha256.Sum256(o.body)
	creds := aws.Credentials{AccessKeyID: o.akid, SecretAccessKey: o.secret, SessionToken: o.token}
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, r, hex.EncodeToString(sum[:]), o.service, o.region, o.at); err != nil {
		t.Fatal(err)
	}
	return wire(t, r, o.body)
}

func wire(t testing.TB, r *http.Request, body []byte) []byte {
	t.Helper()
	r.Body = io.NopCloser(bytes.NewReader(body))
	if len(body) == 0 {
		r.Body = http.NoBody
	}
	var buf bytes.Buffer
	if err := r.Write(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// parse reads raw as a fasthttp server would.
func parse(raw []byte) (*fasthttp.Request, error) {
	req := &fasthttp.Request{}
	if err := req.Read(bufio.NewReader(bytes.NewReader(raw))); err != nil {
		return nil, err
	}
	return req, nil
}

func mustParse(t testing.TB, raw []byte) *fasthttp.Request {
	t.Helper()
	req, err := parse(raw)
	if err != nil {
		t.Fatalf("parse: %v\n%s", err, raw)
	}
	return req
}

// checkSentinel fails unless err wraps exactly one known sentinel.
func checkSentinel(t testing.TB, err error) {
	t.Helper()
	n := 0
	for _, s := range sentinels {
		if errors.Is(err, s) {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("error %q (%T) wraps %d sentinels, want 1", err, err, n)
	}
	if bytes.Contains([]byte(err.Error()), []byte(testSecret)) {
		t.Fatalf("error message contains the secret: %q", err)
	}
}

// replaceHeader returns raw with the value of header name replaced (or the
// header removed if value is "\x00").
func replaceHeader(raw []byte, name, value string) []byte {
	head, body, _ := bytes.Cut(raw, []byte("\r\n\r\n"))
	lines := bytes.Split(head, []byte("\r\n"))
	var out [][]byte
	for i, l := range lines {
		if i > 0 {
			if k, _, ok := bytes.Cut(l, []byte(":")); ok && bytes.EqualFold(k, []byte(name)) {
				if value != "\x00" {
					out = append(out, []byte(name+": "+value))
				}
				continue
			}
		}
		out = append(out, l)
	}
	res := append(bytes.Join(out, []byte("\r\n")), "\r\n\r\n"...)
	return append(res, body...)
}

func headerValue(raw []byte, name string) string {
	head, _, _ := bytes.Cut(raw, []byte("\r\n\r\n"))
	for _, l := range bytes.Split(head, []byte("\r\n"))[1:] {
		if k, v, ok := bytes.Cut(l, []byte(":")); ok && bytes.EqualFold(k, []byte(name)) {
			return string(bytes.TrimSpace(v))
		}
	}
	return ""
}

func awsCreds(akid, secret, token string) aws.Credentials {
	return aws.Credentials{AccessKeyID: akid, SecretAccessKey: secret, SessionToken: token}
}

func sdkSigner() *v4.Signer { return v4.NewSigner() }

func bufioReader(raw []byte) *bufio.Reader { return bufio.NewReader(bytes.NewReader(raw)) }
