package sigv4

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"
)

// testServer is a fasthttp server on an in-memory listener that verifies
// every request and answers like KMS would for ListKeys/Encrypt.
type testServer struct {
	mu     sync.Mutex
	signed []string // SignedHeaders of each verified request
}

func newTestServer(t *testing.T, v *Verifier) (*testServer, *http.Client) {
	t.Helper()
	ts := &testServer{}
	ln := fasthttputil.NewInmemoryListener()
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		_, err := v.Verify(&ctx.Request)
		ctx.SetContentType("application/x-amz-json-1.1")
		if err != nil {
			typ := "InvalidSignatureException"
			switch {
			case errors.Is(err, ErrUnknownAccessKey):
				typ = "UnrecognizedClientException"
			case errors.Is(err, ErrMissingAuth):
				typ = "MissingAuthenticationTokenException"
			case errors.Is(err, ErrIncomplete):
				typ = "IncompleteSignatureException"
			}
			ctx.SetStatusCode(http.StatusBadRequest)
			ctx.SetBodyString(`{"__type":"` + typ + `","message":"` + strings.ReplaceAll(err.Error(), `"`, `'`) + `"}`)
			return
		}
		authz := string(ctx.Request.Header.Peek("Authorization"))
		_, sh, _ := strings.Cut(authz, "SignedHeaders=")
		sh, _, _ = strings.Cut(sh, ",")
		ts.mu.Lock()
		ts.signed = append(ts.signed, sh)
		ts.mu.Unlock()
		switch string(ctx.Request.Header.Peek("X-Amz-Target")) {
		case "TrentService.ListKeys":
			ctx.SetBodyString(`{"Keys":[],"Truncated":false}`)
		default:
			ctx.SetBodyString(`{"CiphertextBlob":"AQID","KeyId":"k","EncryptionAlgorithm":"SYMMETRIC_DEFAULT"}`)
		}
	}}
	go srv.Serve(ln) //nolint:errcheck // ends with Shutdown
	t.Cleanup(func() { _ = srv.Shutdown() })
	hc := &http.Client{Transport: &http.Transport{
		DialContext: func(context.Context, string, string) (net.Conn, error) { return ln.Dial() },
	}}
	return ts, hc
}

func newKMSClient(hc *http.Client, akid, secret, token string) *kms.Client {
	return kms.New(kms.Options{
		Region:           testRegion,
		BaseEndpoint:     aws.String("http://kms.test:8080"),
		Credentials:      credentials.NewStaticCredentialsProvider(akid, secret, token),
		HTTPClient:       hc,
		RetryMaxAttempts: 1,
	})
}

// TestKMSClient: the real aws-sdk-go-v2 KMS client, pointed at a fasthttp
// server, passes Verify; a client with the wrong secret or key id does not.
func TestKMSClient(t *testing.T) {
	v := newTestVerifier(t, time.Time{}, "ASIATEMPORARY0000001", "temp-secret")
	v.Now = nil // the SDK signs with the real clock
	ts, hc := newTestServer(t, v)
	ctx := t.Context()

	c := newKMSClient(hc, testAKID, testSecret, "")
	if _, err := c.ListKeys(ctx, &kms.ListKeysInput{}); err != nil {
		t.Fatalf("ListKeys: %v", err)
	}
	if _, err := c.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String("alias/app"), Plaintext: []byte("hello")}); err != nil {
		t.Fatalf("Encrypt: %v", err)
	}
	sc := newKMSClient(hc, "ASIATEMPORARY0000001", "temp-secret", "session-token")
	if _, err := sc.ListKeys(ctx, &kms.ListKeysInput{}); err != nil {
		t.Fatalf("ListKeys with session token: %v", err)
	}
	for _, sh := range ts.signed {
		t.Logf("Go SDK v2 SignedHeaders=%s", sh)
	}

	_, err := newKMSClient(hc, testAKID, "wrong", "").ListKeys(ctx, &kms.ListKeysInput{})
	if err == nil || !strings.Contains(err.Error(), "InvalidSignatureException") || !strings.Contains(err.Error(), "does not match") {
		t.Fatalf("wrong secret: %v", err)
	}
	_, err = newKMSClient(hc, "AKIDUNKNOWN", "x", "").ListKeys(ctx, &kms.ListKeysInput{})
	if err == nil || !strings.Contains(err.Error(), "UnrecognizedClientException") {
		t.Fatalf("unknown key: %v", err)
	}
}

// TestBotocoreLive regenerates the botocore vectors with the installed
// botocore and verifies them (the checked-in ones run without python).
func TestBotocoreLive(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not installed")
	}
	if exec.Command(py, "-c", "import botocore").Run() != nil {
		t.Skip("botocore not installed")
	}
	out, err := exec.Command(py, "testdata/gen_botocore.py").Output()
	if err != nil {
		t.Fatalf("gen_botocore.py: %v", err)
	}
	vs, err := decodeBotocore(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, bv := range vs {
		if _, err := bv.verifier(t).Verify(mustParse(t, bv.raw(t))); err != nil {
			t.Errorf("%s: %v", bv.Name, err)
		}
	}
}
