package xks

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/kmsd/kmsd/hsmpool/hsmtest"
)

type testProxy struct {
	srv    *Server
	keys   *TokenKeys
	url    string
	id     string
	secret string
	roots  *x509.CertPool
}

// newTestProxy serves a Server over HTTPS on 127.0.0.1 with a real
// SoftHSM2 token and a self-signed certificate written to a temp dir.
func newTestProxy(t testing.TB) *testProxy {
	t.Helper()
	pool := hsmtest.NewPool(t)
	keys := NewTokenKeys(pool)
	id, secret := NewCredential()
	dir := t.TempDir()
	srv, err := NewServer(ServerConfig{Keys: keys, Credentials: map[string]string{id: secret}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := srv.EnsureHealthKey(ctx); err != nil {
		t.Fatal(err)
	}
	cert, err := SelfSignedCert(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), []string{"localhost", "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln, TLSConfig(cert)) }()
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	pem, err := os.ReadFile(filepath.Join(dir, "tls.crt"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	return &testProxy{srv: srv, keys: keys, url: "https://" + ln.Addr().String(), id: id, secret: secret, roots: roots}
}

func (p *testProxy) client(t testing.TB, mod func(*ClientConfig)) *Client {
	t.Helper()
	cfg := ClientConfig{Endpoint: p.url, Path: "/kms/xks/v1", AccessKeyID: p.id, SecretAccessKey: p.secret,
		RootCAs: p.roots, Timeout: 10 * time.Second}
	if mod != nil {
		mod(&cfg)
	}
	c, err := NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

var md = RequestMetadata{AWSPrincipalArn: "arn:aws:iam::111122223333:root", KMSKeyArn: "arn:aws:kms:us-east-1:111122223333:key/k",
	KMSOperation: "Encrypt", KMSRequestID: "4112f4d6-db54-4af4-ae30-c55a22a8dfae"}

func proxyErrName(err error) string {
	var pe *ProxyError
	if errors.As(err, &pe) {
		return pe.Name
	}
	return ""
}

func TestProxyRoundTrip(t *testing.T) {
	p := newTestProxy(t)
	c := p.client(t, nil)
	ctx := context.Background()
	h, err := c.Health(ctx, RequestMetadata{KMSRequestID: "r", KMSOperation: "ConnectCustomKeyStore"})
	if err != nil || !h.Available() || h.EKMFleetDetails[0].HealthStatus != "ACTIVE" {
		t.Fatalf("health = %+v, %v", h, err)
	}
	if err := p.keys.Create(ctx, "app-key-1"); err != nil {
		t.Fatal(err)
	}
	if err := p.keys.Create(ctx, "app-key-1"); !errors.Is(err, ErrKeyExists) {
		t.Fatalf("second create: %v", err)
	}
	m, err := c.Metadata(ctx, "app-key-1", md)
	if err != nil || m.KeySpec != "AES_256" || m.KeyStatus != "ENABLED" || len(m.KeyUsage) != 2 {
		t.Fatalf("metadata = %+v, %v", m, err)
	}
	pt := bytes.Repeat([]byte("x"), 4300)
	aad := []byte("project=nile")
	s, err := c.Encrypt(ctx, "app-key-1", md, pt, aad)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(s.Ciphertext, pt) || len(s.IV) != 12 || len(s.Tag) != 16 {
		t.Fatalf("sealed = %+v", s)
	}
	got, err := c.Decrypt(ctx, "app-key-1", md, s, aad)
	if err != nil || !bytes.Equal(got, pt) {
		t.Fatalf("decrypt: %v", err)
	}
	// Wrong AAD, a flipped tag, a foreign key: InvalidCiphertextException.
	if _, err := c.Decrypt(ctx, "app-key-1", md, s, []byte("project=other")); proxyErrName(err) != ErrNameInvalidCiphertext {
		t.Fatalf("wrong aad: %v", err)
	}
	bad := *s
	bad.Tag = append([]byte(nil), s.Tag...)
	bad.Tag[0] ^= 1
	if _, err := c.Decrypt(ctx, "app-key-1", md, &bad, aad); proxyErrName(err) != ErrNameInvalidCiphertext {
		t.Fatalf("flipped tag: %v", err)
	}
	// Moving AAD into ciphertextMetadata must not verify (length-prefixed AAD).
	moved := *s
	moved.CiphertextMetadata = aad
	if _, err := c.Decrypt(ctx, "app-key-1", md, &moved, nil); proxyErrName(err) != ErrNameInvalidCiphertext {
		t.Fatalf("aad moved to metadata: %v", err)
	}
	if _, err := c.Metadata(ctx, "no-such-key", md); proxyErrName(err) != ErrNameKeyNotFound {
		t.Fatalf("unknown key: %v", err)
	}
	// A deleted key (its handle cached) is KeyNotFoundException too.
	if err := p.keys.Delete(ctx, "app-key-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Encrypt(ctx, "app-key-1", md, pt, aad); proxyErrName(err) != ErrNameKeyNotFound {
		t.Fatalf("deleted key: %v", err)
	}
}

func TestProxyAuthentication(t *testing.T) {
	p := newTestProxy(t)
	ctx := context.Background()
	_, other := NewCredential()
	c := p.client(t, func(c *ClientConfig) { c.SecretAccessKey = other })
	if _, err := c.Health(ctx, RequestMetadata{KMSRequestID: "r", KMSOperation: "x"}); proxyErrName(err) != ErrNameAuthenticationFailed {
		t.Fatalf("wrong secret: %v", err)
	}
	c = p.client(t, func(c *ClientConfig) { c.Region = "eu-west-1" })
	if _, err := c.Health(ctx, RequestMetadata{KMSRequestID: "r", KMSOperation: "x"}); proxyErrName(err) != ErrNameAuthenticationFailed {
		t.Fatalf("wrong region: %v", err)
	}
	// Rotation: a second credential is accepted once set.
	id2, s2 := NewCredential()
	if err := p.srv.SetCredentials(map[string]string{p.id: p.secret, id2: s2}); err != nil {
		t.Fatal(err)
	}
	c = p.client(t, func(c *ClientConfig) { c.AccessKeyID, c.SecretAccessKey = id2, s2 })
	if _, err := c.Health(ctx, RequestMetadata{KMSRequestID: "r", KMSOperation: "x"}); err != nil {
		t.Fatalf("rotated credential: %v", err)
	}
}

// rawCall sends a signed request with any method, path and body.
func rawCall(t *testing.T, p *testProxy, method, path, body string) (int, string) {
	t.Helper()
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.roots}}
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequest(method, p.url+path, bytes.NewReader([]byte(body)))
	sum := sha256.Sum256([]byte(body))
	if err := v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: p.id, SecretAccessKey: p.secret},
		req, hex.EncodeToString(sum[:]), SigV4Service, "us-east-1", time.Now()); err != nil {
		t.Fatal(err)
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String()
}

func TestProxyErrors(t *testing.T) {
	p := newTestProxy(t)
	if err := p.keys.Create(context.Background(), "k1"); err != nil {
		t.Fatal(err)
	}
	meta := `"requestMetadata":{"awsPrincipalArn":"a","kmsKeyArn":"k","kmsOperation":"Encrypt","kmsRequestId":"r"}`
	pt := base64.StdEncoding.EncodeToString([]byte("hi"))
	for _, tc := range []struct {
		name, method, path, body string
		status                   int
		errName                  string
	}{
		{"get", "GET", "/kms/xks/v1/keys/k1/metadata", "", 405, ""},
		{"bad path", "POST", "/kms/xks/v2/health", `{}`, 404, ErrNameInvalidURIPath},
		{"bad op", "POST", "/kms/xks/v1/keys/k1/sign", `{}`, 404, ErrNameInvalidURIPath},
		{"bad key id", "POST", "/kms/xks/v1/keys/a%20b/metadata", `{}`, 404, ErrNameInvalidURIPath},
		{"not json", "POST", "/kms/xks/v1/keys/k1/metadata", `{`, 400, ErrNameValidation},
		{"no metadata", "POST", "/kms/xks/v1/keys/k1/metadata", `{}`, 400, ErrNameValidation},
		{"bad algorithm", "POST", "/kms/xks/v1/keys/k1/encrypt", `{` + meta + `,"plaintext":"` + pt + `","encryptionAlgorithm":"AES_CBC"}`, 400, ErrNameValidation},
		{"bad base64", "POST", "/kms/xks/v1/keys/k1/encrypt", `{` + meta + `,"plaintext":"!!","encryptionAlgorithm":"AES_GCM"}`, 400, ErrNameValidation},
		{"short iv", "POST", "/kms/xks/v1/keys/k1/decrypt", `{` + meta + `,"ciphertext":"` + pt + `","initializationVector":"AAAA","authenticationTag":"AAAAAAAAAAAAAAAAAAAAAA==","encryptionAlgorithm":"AES_GCM"}`, 400, ErrNameInvalidCiphertext},
		{"unknown kmsOperation accepted", "POST", "/kms/xks/v1/keys/k1/metadata", `{"requestMetadata":{"awsPrincipalArn":"a","kmsOperation":"BulkDescribeKey","kmsRequestId":"r"}}`, 200, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body := rawCall(t, p, tc.method, tc.path, tc.body)
			if status != tc.status || !bytes.Contains([]byte(body), []byte(tc.errName)) {
				t.Fatalf("got %d %s, want %d %s", status, body, tc.status, tc.errName)
			}
		})
	}
}

func TestProxyTLS(t *testing.T) {
	p := newTestProxy(t)
	ctx := context.Background()
	// Without the proxy's certificate as a root: ErrTLS.
	c := p.client(t, func(c *ClientConfig) { c.RootCAs = x509.NewCertPool() })
	if _, err := c.Health(ctx, RequestMetadata{KMSRequestID: "r", KMSOperation: "x"}); !errors.Is(err, ErrTLS) {
		t.Fatalf("untrusted cert: %v", err)
	}
	// TLS 1.1 is refused.
	conn, err := tls.Dial("tcp", p.url[len("https://"):], &tls.Config{RootCAs: p.roots, MaxVersion: tls.VersionTLS11, ServerName: "127.0.0.1"})
	if err == nil {
		conn.Close()
		t.Fatal("TLS 1.1 handshake succeeded")
	}
	// Plain HTTP gets no answer.
	resp, err := http.Post("http"+p.url[len("https"):]+"/kms/xks/v1/health", "application/json", nil)
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Fatal("plain HTTP served")
		}
	}
}

func TestClientUnreachable(t *testing.T) {
	ctx := context.Background()
	// A port nobody listens on.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	id, secret := NewCredential()
	c, err := NewClient(ClientConfig{Endpoint: "https://" + addr, Path: "/kms/xks/v1", AccessKeyID: id, SecretAccessKey: secret})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Health(ctx, RequestMetadata{KMSRequestID: "r", KMSOperation: "x"}); !errors.Is(err, ErrUnreachable) || errors.Is(err, ErrTimeout) {
		t.Fatalf("closed port: %v", err)
	}
	// A proxy that accepts and never answers: ErrTimeout after the 250 ms.
	hang, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hang.Close()
	go func() {
		for {
			conn, err := hang.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { conn.Close() })
		}
	}()
	c, err = NewClient(ClientConfig{Endpoint: "https://" + hang.Addr().String(), Path: "/kms/xks/v1", AccessKeyID: id, SecretAccessKey: secret})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Health(ctx, RequestMetadata{KMSRequestID: "r", KMSOperation: "x"}); !errors.Is(err, ErrTimeout) {
		t.Fatalf("silent proxy: %v", err)
	}
}

// TestCDIVSpecVector checks CDIV against the spec's Appendix C example.
func TestCDIVSpecVector(t *testing.T) {
	d := func(s string) []byte { b, _ := base64.StdEncoding.DecodeString(s); return b }
	s := &Sealed{Ciphertext: d("ghxkK1txeDNn3q8Y"), CiphertextMetadata: d("a2V5X3ZlcnNpb249MQ=="),
		IV: d("HMrlRw85cAJUd5Ax"), Tag: d("vBxN2ncH1oEkR8WVXpmyYQ==")}
	got := base64.StdEncoding.EncodeToString(CDIV([]byte("project=nile,department=marketing"), s))
	if got != "qHA/ImC9h5HsLRXqCyPmWgYx7tzyoTplzILbP0fPXsc=" {
		t.Fatalf("CDIV = %s", got)
	}
}

func TestCredentialsFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "xks-credentials")
	id, secret := NewCredential()
	if err := CheckCredential(id, secret); err != nil {
		t.Fatal(err)
	}
	if err := WriteCredentials(path, id, secret); err != nil {
		t.Fatal(err)
	}
	got, err := ReadCredentials(path)
	if err != nil || got[id] != secret || len(got) != 1 {
		t.Fatalf("read back %v, %v", got, err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", fi.Mode())
	}
	for _, bad := range [][2]string{{"short", secret}, {"abcdefghijklmnopqrstuvwxyz", secret}, {id, "short"}, {id, secret[:42] + "!"}} {
		if CheckCredential(bad[0], bad[1]) == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

func FuzzRoute(f *testing.F) {
	s := &Server{base: "/p/kms/xks/v1/"}
	for _, seed := range []string{"/p/kms/xks/v1/health", "/p/kms/xks/v1/keys/a/encrypt", "/p/kms/xks/v1/keys//x", "/kms/xks/v1/keys/a/b/c"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, path string) {
		r := s.route(path)
		if r.op != "" && r.op != "health" && !ValidKeyID(r.keyID) {
			t.Fatalf("route %q gave invalid key id %q", path, r.keyID)
		}
	})
}
