package agent

import (
	"bytes"
	"context"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/miekg/pkcs11"

	"github.com/kmsd/kmsd/cluster"
	"github.com/kmsd/kmsd/hsmpool"
	"github.com/kmsd/kmsd/hsmpool/hsmtest"
	"github.com/kmsd/kmsd/quota"
	"github.com/kmsd/kmsd/xks"
)

// testXKSProxy is `kmsd xks-proxy` in-process: xks.Server over its own
// SoftHSM2 token, HTTPS with a self-signed certificate.
type testXKSProxy struct {
	srv      *xks.Server
	keys     *xks.TokenKeys
	addr     string
	endpoint string
	id       string
	secret   string
	roots    *x509.CertPool
	certDir  string
}

func newTestXKSProxy(t *testing.T) *testXKSProxy { return newTestXKSProxyTB(t) }

func newTestXKSProxyTB(t testing.TB) *testXKSProxy {
	t.Helper()
	keys := xks.NewTokenKeys(hsmtest.NewPool(t))
	id, secret := xks.NewCredential()
	p := &testXKSProxy{keys: keys, id: id, secret: secret, certDir: t.TempDir()}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr = ln.Addr().String()
	p.endpoint = "https://" + p.addr
	pem := p.start(t, ln)
	p.roots = x509.NewCertPool()
	p.roots.AppendCertsFromPEM(pem)
	return p
}

// start serves on ln (a restart after stop reuses the certificate).
func (p *testXKSProxy) start(t testing.TB, ln net.Listener) []byte {
	t.Helper()
	srv, err := xks.NewServer(xks.ServerConfig{Keys: p.keys, Credentials: map[string]string{p.id: p.secret}})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.EnsureHealthKey(context.Background()); err != nil {
		t.Fatal(err)
	}
	cert, err := xks.SelfSignedCert(filepath.Join(p.certDir, "tls.crt"), filepath.Join(p.certDir, "tls.key"), []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln, xks.TLSConfig(cert)) }()
	p.srv = srv
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	pem, _ := os.ReadFile(filepath.Join(p.certDir, "tls.crt"))
	return pem
}

func (p *testXKSProxy) stop() { _ = p.srv.Shutdown(context.Background()) }

func (p *testXKSProxy) restart(t *testing.T) {
	t.Helper()
	var ln net.Listener
	var err error
	deadline := time.Now().Add(10 * time.Second)
	for ln, err = net.Listen("tcp", p.addr); err != nil && time.Now().Before(deadline); ln, err = net.Listen("tcp", p.addr) {
		time.Sleep(10 * time.Millisecond) // the old listener's port is being released
	}
	if err != nil {
		t.Fatal(err)
	}
	p.start(t, ln)
}

func (p *testXKSProxy) credential() *types.XksProxyAuthenticationCredentialType {
	return &types.XksProxyAuthenticationCredentialType{AccessKeyId: aws.String(p.id), RawSecretAccessKey: aws.String(p.secret)}
}

func newXKSTestServer(t *testing.T, p *testXKSProxy) *testServer {
	t.Helper()
	lib, label, pin := hsmtest.NewToken(t)
	// A generous per-call timeout for a loaded CI machine; AWS's 250 ms is
	// the default (TestXKSTimeout uses it against a silent proxy).
	return startTestServerCfg(t, t.TempDir(), tokenRef{lib, label, pin}, Config{XKSRootCAs: p.roots, XKSTimeout: 10 * time.Second})
}

func describeStore(t *testing.T, ts *testServer, id string) types.CustomKeyStoresListEntry {
	t.Helper()
	out, err := ts.client.DescribeCustomKeyStores(context.Background(), &kms.DescribeCustomKeyStoresInput{CustomKeyStoreId: aws.String(id)})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.CustomKeyStores) != 1 {
		t.Fatalf("describe %s: %d stores", id, len(out.CustomKeyStores))
	}
	return out.CustomKeyStores[0]
}

func TestExternalKeyStore(t *testing.T) {
	p := newTestXKSProxy(t)
	ts := newXKSTestServer(t, p)
	c := ts.client
	ctx := context.Background()

	// Wrong credentials are refused at creation (AWS checks the proxy).
	_, other := xks.NewCredential()
	_, err := c.CreateCustomKeyStore(ctx, &kms.CreateCustomKeyStoreInput{CustomKeyStoreName: aws.String("bad"),
		CustomKeyStoreType: types.CustomKeyStoreTypeExternalKeyStore, XksProxyUriEndpoint: aws.String(p.endpoint),
		XksProxyUriPath: aws.String("/kms/xks/v1"), XksProxyConnectivity: types.XksProxyConnectivityTypePublicEndpoint,
		XksProxyAuthenticationCredential: &types.XksProxyAuthenticationCredentialType{AccessKeyId: aws.String(p.id), RawSecretAccessKey: aws.String(other)}})
	wantAPIError(t, err, errXksIncorrectCredential)
	// A path the proxy does not serve.
	_, err = c.CreateCustomKeyStore(ctx, &kms.CreateCustomKeyStoreInput{CustomKeyStoreName: aws.String("bad"),
		CustomKeyStoreType: types.CustomKeyStoreTypeExternalKeyStore, XksProxyUriEndpoint: aws.String(p.endpoint),
		XksProxyUriPath: aws.String("/tenant1/kms/xks/v1"), XksProxyConnectivity: types.XksProxyConnectivityTypePublicEndpoint,
		XksProxyAuthenticationCredential: p.credential()})
	wantAPIError(t, err, errXksInvalidConfig)

	cr, err := c.CreateCustomKeyStore(ctx, &kms.CreateCustomKeyStoreInput{CustomKeyStoreName: aws.String("hyok"),
		CustomKeyStoreType: types.CustomKeyStoreTypeExternalKeyStore, XksProxyUriEndpoint: aws.String(p.endpoint),
		XksProxyUriPath: aws.String("/kms/xks/v1"), XksProxyConnectivity: types.XksProxyConnectivityTypePublicEndpoint,
		XksProxyAuthenticationCredential: p.credential()})
	if err != nil {
		t.Fatal(err)
	}
	id := *cr.CustomKeyStoreId
	e := describeStore(t, ts, id)
	if e.ConnectionState != types.ConnectionStateTypeDisconnected || e.CustomKeyStoreType != types.CustomKeyStoreTypeExternalKeyStore ||
		*e.XksProxyConfiguration.UriEndpoint != p.endpoint || *e.XksProxyConfiguration.AccessKeyId != p.id || *e.CustomKeyStoreName != "hyok" {
		t.Fatalf("new store: %+v", e)
	}
	// Same endpoint and path again: XksProxyUriInUseException; same name: NameInUse.
	_, err = c.CreateCustomKeyStore(ctx, &kms.CreateCustomKeyStoreInput{CustomKeyStoreName: aws.String("hyok2"),
		CustomKeyStoreType: types.CustomKeyStoreTypeExternalKeyStore, XksProxyUriEndpoint: aws.String(p.endpoint),
		XksProxyUriPath: aws.String("/kms/xks/v1"), XksProxyAuthenticationCredential: p.credential()})
	wantAPIError(t, err, errXksURIInUse)

	if err := p.keys.Create(ctx, "ext-key-1"); err != nil {
		t.Fatal(err)
	}
	xksKey := func(xid string) (*kms.CreateKeyOutput, error) {
		return c.CreateKey(ctx, &kms.CreateKeyInput{Origin: types.OriginTypeExternalKeyStore, CustomKeyStoreId: aws.String(id), XksKeyId: aws.String(xid)})
	}
	_, err = xksKey("ext-key-1")
	wantAPIError(t, err, errCKSInvalidState) // not connected yet

	if _, err := c.ConnectCustomKeyStore(ctx, &kms.ConnectCustomKeyStoreInput{CustomKeyStoreId: aws.String(id)}); err != nil {
		t.Fatal(err)
	}
	if e := describeStore(t, ts, id); e.ConnectionState != types.ConnectionStateTypeConnected {
		t.Fatalf("after connect: %+v", e)
	}
	kout, err := xksKey("ext-key-1")
	if err != nil {
		t.Fatal(err)
	}
	md := kout.KeyMetadata
	if md.Origin != types.OriginTypeExternalKeyStore || *md.CustomKeyStoreId != id || *md.XksKeyConfiguration.Id != "ext-key-1" || md.KeyState != types.KeyStateEnabled {
		t.Fatalf("key metadata: %+v", md)
	}
	keyID := md.KeyId
	_, err = xksKey("ext-key-1")
	wantAPIError(t, err, errXksKeyInUse)
	_, err = xksKey("no-such-key")
	wantAPIError(t, err, errXksKeyNotFound)
	_, err = c.CreateKey(ctx, &kms.CreateKeyInput{Origin: types.OriginTypeExternalKeyStore, CustomKeyStoreId: aws.String(id)})
	wantAPIError(t, err, errValidation)

	// Double encryption: the blob is the proxy's layer around kmsd's own.
	ectx := map[string]string{"app": "billing"}
	enc, err := c.Encrypt(ctx, &kms.EncryptInput{KeyId: keyID, Plaintext: []byte("card 4111"), EncryptionContext: ectx})
	if err != nil {
		t.Fatal(err)
	}
	blob := enc.CiphertextBlob
	header, bid, sealed, ok := parseStoreBlob(blob)
	if !ok || bid != *keyID {
		t.Fatalf("blob is not a store blob: %x", blob[:8])
	}
	xc, err := xks.NewClient(xks.ClientConfig{Endpoint: p.endpoint, Path: "/kms/xks/v1", AccessKeyID: p.id, SecretAccessKey: p.secret, RootCAs: p.roots, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer xc.Close()
	inner, err := xc.Decrypt(ctx, "ext-key-1", xks.RequestMetadata{AWSPrincipalArn: "t", KMSKeyArn: *md.Arn, KMSOperation: "Decrypt", KMSRequestID: "t"}, sealed, header)
	if err != nil || inner[0] != blobFormat1 || bytes.Contains(inner, []byte("card 4111")) {
		t.Fatalf("inner layer: %v", err)
	}
	// A format-1 blob of a key in a custom key store never opens alone.
	_, err = c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: inner, EncryptionContext: ectx})
	wantAPIError(t, err, errInvalidCiphertext)

	dec, err := c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: blob, EncryptionContext: ectx})
	if err != nil || string(dec.Plaintext) != "card 4111" || *dec.KeyId != *md.Arn {
		t.Fatalf("decrypt: %v", err)
	}
	_, err = c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: blob, EncryptionContext: map[string]string{"app": "other"}})
	wantAPIError(t, err, errInvalidCiphertext)
	gdk, err := c.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: keyID, KeySpec: types.DataKeySpecAes256})
	if err != nil {
		t.Fatal(err)
	}
	if d, err := c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: gdk.CiphertextBlob}); err != nil || !bytes.Equal(d.Plaintext, gdk.Plaintext) {
		t.Fatalf("data key: %v", err)
	}
	// ReEncrypt from the external key to an ordinary one and back.
	plain := ts.createKey(t)
	re, err := c.ReEncrypt(ctx, &kms.ReEncryptInput{CiphertextBlob: blob, SourceEncryptionContext: ectx, DestinationKeyId: aws.String(plain)})
	if err != nil {
		t.Fatal(err)
	}
	back, err := c.ReEncrypt(ctx, &kms.ReEncryptInput{CiphertextBlob: re.CiphertextBlob, DestinationKeyId: keyID, DestinationEncryptionContext: ectx})
	if err != nil || back.CiphertextBlob[0] != blobFormatStore {
		t.Fatalf("re-encrypt to the external key: %v", err)
	}

	_, err = c.GenerateRandom(ctx, &kms.GenerateRandomInput{CustomKeyStoreId: aws.String(id), NumberOfBytes: aws.Int32(32)})
	wantAPIError(t, err, errUnsupported)

	// Disconnected: the key is Unavailable and crypto fails with
	// KMSInvalidStateException; reconnected, old ciphertexts open again.
	if _, err := c.DisconnectCustomKeyStore(ctx, &kms.DisconnectCustomKeyStoreInput{CustomKeyStoreId: aws.String(id)}); err != nil {
		t.Fatal(err)
	}
	_, err = c.DisconnectCustomKeyStore(ctx, &kms.DisconnectCustomKeyStoreInput{CustomKeyStoreId: aws.String(id)})
	wantAPIError(t, err, errCKSInvalidState)
	if d, err := c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: keyID}); err != nil || d.KeyMetadata.KeyState != types.KeyStateUnavailable {
		t.Fatalf("describe while disconnected: %v %v", d, err)
	}
	_, err = c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: blob, EncryptionContext: ectx})
	wantAPIError(t, err, errInvalidState)
	_, err = c.Encrypt(ctx, &kms.EncryptInput{KeyId: keyID, Plaintext: []byte("x")})
	wantAPIError(t, err, errInvalidState)
	_, err = c.DeleteCustomKeyStore(ctx, &kms.DeleteCustomKeyStoreInput{CustomKeyStoreId: aws.String(id)})
	wantAPIError(t, err, errCKSHasCMKs)
	if _, err := c.ConnectCustomKeyStore(ctx, &kms.ConnectCustomKeyStoreInput{CustomKeyStoreId: aws.String(id)}); err != nil {
		t.Fatal(err)
	}
	if d, err := c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: blob, EncryptionContext: ectx}); err != nil || string(d.Plaintext) != "card 4111" {
		t.Fatalf("decrypt after reconnect: %v", err)
	}
	_, err = c.DeleteCustomKeyStore(ctx, &kms.DeleteCustomKeyStoreInput{CustomKeyStoreId: aws.String(id)})
	wantAPIError(t, err, errCKSInvalidState)
	_, err = c.UpdateCustomKeyStore(ctx, &kms.UpdateCustomKeyStoreInput{CustomKeyStoreId: aws.String(id), XksProxyUriPath: aws.String("/kms/xks/v1")})
	wantAPIError(t, err, errCKSInvalidState)
	if _, err := c.UpdateCustomKeyStore(ctx, &kms.UpdateCustomKeyStoreInput{CustomKeyStoreId: aws.String(id), NewCustomKeyStoreName: aws.String("hyok-renamed")}); err != nil {
		t.Fatalf("rename while connected: %v", err)
	}

	// Proxy down: clear errors, nothing lost once it is back.
	p.stop()
	_, err = c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: blob, EncryptionContext: ectx})
	wantAPIError(t, err, errInvalidState)
	if !strings.Contains(err.Error(), "cannot communicate with the external key store proxy") {
		t.Fatalf("proxy down message: %v", err)
	}
	p.restart(t)
	if d, err := c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: blob, EncryptionContext: ectx}); err != nil || string(d.Plaintext) != "card 4111" {
		t.Fatalf("decrypt after proxy restart: %v", err)
	}

	// The external key is deleted in the external key manager.
	if err := p.keys.Delete(ctx, "ext-key-1"); err != nil {
		t.Fatal(err)
	}
	_, err = c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: blob, EncryptionContext: ectx})
	wantAPIError(t, err, errInvalidState)
	if !strings.Contains(err.Error(), "was not found in its external key manager") {
		t.Fatalf("deleted external key message: %v", err)
	}

	// Wrong credentials set on a disconnected store: refused by the proxy check.
	if _, err := c.DisconnectCustomKeyStore(ctx, &kms.DisconnectCustomKeyStoreInput{CustomKeyStoreId: aws.String(id)}); err != nil {
		t.Fatal(err)
	}
	_, err = c.UpdateCustomKeyStore(ctx, &kms.UpdateCustomKeyStoreInput{CustomKeyStoreId: aws.String(id),
		XksProxyAuthenticationCredential: &types.XksProxyAuthenticationCredentialType{AccessKeyId: aws.String(p.id), RawSecretAccessKey: aws.String(other)}})
	wantAPIError(t, err, errXksIncorrectCredential)
	// The proxy rotates to a second credential; the store follows.
	id2, secret2 := xks.NewCredential()
	if err := p.srv.SetCredentials(map[string]string{id2: secret2}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ConnectCustomKeyStore(ctx, &kms.ConnectCustomKeyStoreInput{CustomKeyStoreId: aws.String(id)}); err != nil {
		t.Fatal(err)
	}
	if e := describeStore(t, ts, id); e.ConnectionState != types.ConnectionStateTypeFailed || e.ConnectionErrorCode != types.ConnectionErrorCodeTypeInvalidCredentials {
		t.Fatalf("connect with a stale credential: %+v", e)
	}
	_, err = c.ConnectCustomKeyStore(ctx, &kms.ConnectCustomKeyStoreInput{CustomKeyStoreId: aws.String(id)})
	wantAPIError(t, err, errCKSInvalidState) // FAILED: disconnect first
	if _, err := c.DisconnectCustomKeyStore(ctx, &kms.DisconnectCustomKeyStoreInput{CustomKeyStoreId: aws.String(id)}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.UpdateCustomKeyStore(ctx, &kms.UpdateCustomKeyStoreInput{CustomKeyStoreId: aws.String(id),
		XksProxyAuthenticationCredential: &types.XksProxyAuthenticationCredentialType{AccessKeyId: aws.String(id2), RawSecretAccessKey: aws.String(secret2)}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ConnectCustomKeyStore(ctx, &kms.ConnectCustomKeyStoreInput{CustomKeyStoreId: aws.String(id)}); err != nil {
		t.Fatal(err)
	}
	if e := describeStore(t, ts, id); e.ConnectionState != types.ConnectionStateTypeConnected || *e.XksProxyConfiguration.AccessKeyId != id2 {
		t.Fatalf("after rotation: %+v", e)
	}

	// Delete: only empty and disconnected.
	if _, err := c.ScheduleKeyDeletion(ctx, &kms.ScheduleKeyDeletionInput{KeyId: keyID, PendingWindowInDays: aws.Int32(7)}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.DisconnectCustomKeyStore(ctx, &kms.DisconnectCustomKeyStoreInput{CustomKeyStoreId: aws.String(id)}); err != nil {
		t.Fatal(err)
	}
	_, err = c.DeleteCustomKeyStore(ctx, &kms.DeleteCustomKeyStoreInput{CustomKeyStoreId: aws.String(id)})
	wantAPIError(t, err, errCKSHasCMKs) // pending deletion is still a key in the store
}

// TestXKSTimeout: a proxy that accepts connections and never answers
// gives XksProxyUriUnreachableException after the default 250 ms, and a
// FAILED connection with XKS_PROXY_TIMED_OUT.
func TestXKSTimeout(t *testing.T) {
	hang, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hang.Close()
	conns := make(chan net.Conn, 64)
	go func() {
		for {
			c, err := hang.Accept()
			if err != nil {
				close(conns)
				return
			}
			conns <- c
		}
	}()
	defer func() {
		hang.Close()
		for c := range conns {
			c.Close()
		}
	}()
	ts := newTestServer(t)
	id, secret := xks.NewCredential()
	_, err = ts.client.CreateCustomKeyStore(context.Background(), &kms.CreateCustomKeyStoreInput{CustomKeyStoreName: aws.String("slow"),
		CustomKeyStoreType: types.CustomKeyStoreTypeExternalKeyStore, XksProxyUriEndpoint: aws.String("https://" + hang.Addr().String()),
		XksProxyUriPath: aws.String("/kms/xks/v1"), XksProxyConnectivity: types.XksProxyConnectivityTypePublicEndpoint,
		XksProxyAuthenticationCredential: &types.XksProxyAuthenticationCredentialType{AccessKeyId: aws.String(id), RawSecretAccessKey: aws.String(secret)}})
	wantAPIError(t, err, errXksURIUnreachable)
	if !strings.Contains(err.Error(), "did not respond in time") {
		t.Fatalf("message: %v", err)
	}
}

func TestCustomKeyStoreValidation(t *testing.T) {
	ts := newTestServer(t)
	c := ts.client
	ctx := context.Background()
	id, secret := xks.NewCredential()
	cred := &types.XksProxyAuthenticationCredentialType{AccessKeyId: aws.String(id), RawSecretAccessKey: aws.String(secret)}
	for _, tc := range []struct {
		name string
		in   kms.CreateCustomKeyStoreInput
		code string
	}{
		{"endpoint not https", kms.CreateCustomKeyStoreInput{CustomKeyStoreName: aws.String("a"), CustomKeyStoreType: types.CustomKeyStoreTypeExternalKeyStore,
			XksProxyUriEndpoint: aws.String("http://example.com"), XksProxyUriPath: aws.String("/kms/xks/v1"), XksProxyAuthenticationCredential: cred}, errValidation},
		{"bad path", kms.CreateCustomKeyStoreInput{CustomKeyStoreName: aws.String("a"), CustomKeyStoreType: types.CustomKeyStoreTypeExternalKeyStore,
			XksProxyUriEndpoint: aws.String("https://example.com"), XksProxyUriPath: aws.String("/kms/xks/v1/../x"), XksProxyAuthenticationCredential: cred}, errValidation},
		{"short access key", kms.CreateCustomKeyStoreInput{CustomKeyStoreName: aws.String("a"), CustomKeyStoreType: types.CustomKeyStoreTypeExternalKeyStore,
			XksProxyUriEndpoint: aws.String("https://example.com"), XksProxyUriPath: aws.String("/kms/xks/v1"),
			XksProxyAuthenticationCredential: &types.XksProxyAuthenticationCredentialType{AccessKeyId: aws.String("SHORT"), RawSecretAccessKey: aws.String(secret)}}, errValidation},
		{"vpc endpoint", kms.CreateCustomKeyStoreInput{CustomKeyStoreName: aws.String("a"), CustomKeyStoreType: types.CustomKeyStoreTypeExternalKeyStore,
			XksProxyUriEndpoint: aws.String("https://example.com"), XksProxyUriPath: aws.String("/kms/xks/v1"), XksProxyAuthenticationCredential: cred,
			XksProxyConnectivity: types.XksProxyConnectivityTypeVpcEndpointService, XksProxyVpcEndpointServiceName: aws.String("com.amazonaws.vpce.x")}, errXksVpcNotFound},
		{"hsm unknown cluster", kms.CreateCustomKeyStoreInput{CustomKeyStoreName: aws.String("a"), CloudHsmClusterId: aws.String("cluster-abcdefghijk"),
			TrustAnchorCertificate: aws.String("x"), KeyStorePassword: aws.String("secret-pin")}, errHsmClusterNotFound},
		{"hsm bad cluster id", kms.CreateCustomKeyStoreInput{CustomKeyStoreName: aws.String("a"), CloudHsmClusterId: aws.String("cluster-1"),
			TrustAnchorCertificate: aws.String("x"), KeyStorePassword: aws.String("secret-pin")}, errValidation},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.CreateCustomKeyStore(ctx, &tc.in)
			wantAPIError(t, err, tc.code)
		})
	}
	_, err := c.DescribeCustomKeyStores(ctx, &kms.DescribeCustomKeyStoresInput{CustomKeyStoreId: aws.String("cks-nope")})
	wantAPIError(t, err, errCKSNotFound)
	_, err = c.ConnectCustomKeyStore(ctx, &kms.ConnectCustomKeyStoreInput{CustomKeyStoreId: aws.String("cks-nope")})
	wantAPIError(t, err, errCKSNotFound)
	_, err = c.DeleteCustomKeyStore(ctx, &kms.DeleteCustomKeyStoreInput{CustomKeyStoreId: aws.String("cks-nope")})
	wantAPIError(t, err, errCKSNotFound)
	out, err := c.DescribeCustomKeyStores(ctx, &kms.DescribeCustomKeyStoresInput{})
	if err != nil || len(out.CustomKeyStores) != 0 || out.Truncated {
		t.Fatalf("empty describe: %+v %v", out, err)
	}
}

// hsmStoreServer is a node whose config names n HSMs, all on one second
// SoftHSM2 token (another slot of the same token directory).
func hsmStoreServer(t *testing.T, n int) (*testServer, tokenRef, []string) {
	t.Helper()
	lib, label, pin := hsmtest.NewToken(t)
	slib, slabel, spin := hsmtest.NewToken(t)
	stores := map[string]HSMStoreConfig{}
	var ids []string
	for i := range n {
		cid := fmt.Sprintf("cluster-abcdefghij%c", 'a'+i)
		stores[cid] = HSMStoreConfig{Lib: slib, TokenLabel: slabel, TrustAnchorPEM: "-----BEGIN CERTIFICATE-----\nanchor\n-----END CERTIFICATE-----"}
		ids = append(ids, cid)
	}
	ts := startTestServerCfg(t, t.TempDir(), tokenRef{lib, label, pin}, Config{HSMStores: stores})
	return ts, tokenRef{slib, slabel, spin}, ids
}

const testAnchor = "-----BEGIN CERTIFICATE-----\nanchor\n-----END CERTIFICATE-----\n"

func TestHSMKeyStore(t *testing.T) {
	ts, tok, clusters := hsmStoreServer(t, 2)
	c := ts.client
	ctx := context.Background()
	_, err := c.CreateCustomKeyStore(ctx, &kms.CreateCustomKeyStoreInput{CustomKeyStoreName: aws.String("hsm"),
		CloudHsmClusterId: aws.String(clusters[0]), TrustAnchorCertificate: aws.String("another anchor"), KeyStorePassword: aws.String(tok.pin)})
	wantAPIError(t, err, errIncorrectTrustAnchor)
	cr, err := c.CreateCustomKeyStore(ctx, &kms.CreateCustomKeyStoreInput{CustomKeyStoreName: aws.String("hsm"),
		CloudHsmClusterId: aws.String(clusters[0]), TrustAnchorCertificate: aws.String(testAnchor), KeyStorePassword: aws.String(tok.pin)})
	if err != nil {
		t.Fatal(err)
	}
	id := *cr.CustomKeyStoreId
	_, err = c.CreateCustomKeyStore(ctx, &kms.CreateCustomKeyStoreInput{CustomKeyStoreName: aws.String("hsm-2"),
		CloudHsmClusterId: aws.String(clusters[0]), TrustAnchorCertificate: aws.String(testAnchor), KeyStorePassword: aws.String(tok.pin)})
	wantAPIError(t, err, errHsmClusterInUse)
	// A wrong password: connecting FAILS with INVALID_CREDENTIALS.
	bad, err := c.CreateCustomKeyStore(ctx, &kms.CreateCustomKeyStoreInput{CustomKeyStoreName: aws.String("hsm-badpin"),
		CloudHsmClusterId: aws.String(clusters[1]), TrustAnchorCertificate: aws.String(testAnchor), KeyStorePassword: aws.String("wrong-pin")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.ConnectCustomKeyStore(ctx, &kms.ConnectCustomKeyStoreInput{CustomKeyStoreId: bad.CustomKeyStoreId}); err != nil {
		t.Fatal(err)
	}
	if e := describeStore(t, ts, *bad.CustomKeyStoreId); e.ConnectionState != types.ConnectionStateTypeFailed || e.ConnectionErrorCode != types.ConnectionErrorCodeTypeInvalidCredentials {
		t.Fatalf("bad pin: %+v", e)
	}

	if _, err := c.ConnectCustomKeyStore(ctx, &kms.ConnectCustomKeyStoreInput{CustomKeyStoreId: aws.String(id)}); err != nil {
		t.Fatal(err)
	}
	kout, err := c.CreateKey(ctx, &kms.CreateKeyInput{Origin: types.OriginTypeAwsCloudhsm, CustomKeyStoreId: aws.String(id)})
	if err != nil {
		t.Fatal(err)
	}
	md := kout.KeyMetadata
	if md.Origin != types.OriginTypeAwsCloudhsm || *md.CustomKeyStoreId != id || *md.CloudHsmClusterId != clusters[0] {
		t.Fatalf("metadata: %+v", md)
	}
	// The key is a non-extractable, sensitive AES-256 token object
	// labelled with the key ARN on the store's token.
	p, err := hsmpool.New(hsmpool.Config{Lib: tok.lib, TokenLabel: tok.label, PIN: tok.pin})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	err = p.Do(ctx, func(s *hsmpool.Session) error {
		pc, sh := s.Ctx(), s.Handle()
		if err := pc.FindObjectsInit(sh, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_LABEL, *md.Arn), pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true)}); err != nil {
			return err
		}
		objs, _, err := pc.FindObjects(sh, 10)
		_ = pc.FindObjectsFinal(sh)
		if err != nil {
			return err
		}
		if len(objs) != 1 {
			return fmt.Errorf("%d token objects labelled %s", len(objs), *md.Arn)
		}
		attrs, err := pc.GetAttributeValue(sh, objs[0], []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, nil),
			pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, nil), pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, nil), pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, nil)})
		if err != nil {
			return err
		}
		if attrs[0].Value[0] != 0 || attrs[1].Value[0] != 1 || attrs[2].Value[0] != byte(pkcs11.CKK_AES) || attrs[3].Value[0] != 32 {
			return fmt.Errorf("attributes %v", attrs)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	_, err = c.EnableKeyRotation(ctx, &kms.EnableKeyRotationInput{KeyId: md.KeyId})
	wantAPIError(t, err, errUnsupported) // no rotation in a custom key store, even connected
	enc, err := c.Encrypt(ctx, &kms.EncryptInput{KeyId: md.KeyId, Plaintext: []byte("in the HSM")})
	if err != nil {
		t.Fatal(err)
	}
	if d, err := c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob}); err != nil || string(d.Plaintext) != "in the HSM" {
		t.Fatalf("decrypt: %v", err)
	}
	tampered := bytes.Clone(enc.CiphertextBlob)
	tampered[len(tampered)-1] ^= 1
	_, err = c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: tampered})
	wantAPIError(t, err, errInvalidCiphertext)

	if rnd, err := c.GenerateRandom(ctx, &kms.GenerateRandomInput{CustomKeyStoreId: aws.String(id), NumberOfBytes: aws.Int32(32)}); err != nil || len(rnd.Plaintext) != 32 {
		t.Fatalf("GenerateRandom in the HSM store: %v", err)
	}
	if _, err := c.DisconnectCustomKeyStore(ctx, &kms.DisconnectCustomKeyStoreInput{CustomKeyStoreId: aws.String(id)}); err != nil {
		t.Fatal(err)
	}
	_, err = c.GenerateRandom(ctx, &kms.GenerateRandomInput{CustomKeyStoreId: aws.String(id), NumberOfBytes: aws.Int32(32)})
	wantAPIError(t, err, errCKSInvalidState)
	if d, _ := c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: md.KeyId}); d.KeyMetadata.KeyState != types.KeyStateUnavailable {
		t.Fatalf("state while disconnected: %s", d.KeyMetadata.KeyState)
	}
	_, err = c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob})
	wantAPIError(t, err, errInvalidState)
	_, err = c.EnableKeyRotation(ctx, &kms.EnableKeyRotationInput{KeyId: md.KeyId})
	wantAPIError(t, err, errUnsupported) // [7]: custom key store
	// A new (wrong) password: the next connection FAILS; the right one again: CONNECTED.
	if _, err := c.UpdateCustomKeyStore(ctx, &kms.UpdateCustomKeyStoreInput{CustomKeyStoreId: aws.String(id), KeyStorePassword: aws.String("not-the-pin")}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ConnectCustomKeyStore(ctx, &kms.ConnectCustomKeyStoreInput{CustomKeyStoreId: aws.String(id)}); err != nil {
		t.Fatal(err)
	}
	if e := describeStore(t, ts, id); e.ConnectionState != types.ConnectionStateTypeFailed || e.ConnectionErrorCode != types.ConnectionErrorCodeTypeInvalidCredentials {
		t.Fatalf("after a wrong password: %+v", e)
	}
	_, err = c.UpdateCustomKeyStore(ctx, &kms.UpdateCustomKeyStoreInput{CustomKeyStoreId: aws.String(id), KeyStorePassword: aws.String(tok.pin)})
	wantAPIError(t, err, errCKSInvalidState) // FAILED is not DISCONNECTED
	if _, err := c.DisconnectCustomKeyStore(ctx, &kms.DisconnectCustomKeyStoreInput{CustomKeyStoreId: aws.String(id)}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.UpdateCustomKeyStore(ctx, &kms.UpdateCustomKeyStoreInput{CustomKeyStoreId: aws.String(id), KeyStorePassword: aws.String(tok.pin)}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ConnectCustomKeyStore(ctx, &kms.ConnectCustomKeyStoreInput{CustomKeyStoreId: aws.String(id)}); err != nil {
		t.Fatal(err)
	}
	if e := describeStore(t, ts, id); e.ConnectionState != types.ConnectionStateTypeConnected {
		t.Fatalf("after the right password: %+v", e)
	}
	if d, err := c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob}); err != nil || string(d.Plaintext) != "in the HSM" {
		t.Fatalf("decrypt after reconnect: %v", err)
	}
}

func TestCustomKeyStoreLimitAndPaging(t *testing.T) {
	ts, tok, clusters := hsmStoreServer(t, cluster.MaxKeyStores+1)
	c := ts.client
	ctx := context.Background()
	var ids []string
	for i, cid := range clusters {
		out, err := c.CreateCustomKeyStore(ctx, &kms.CreateCustomKeyStoreInput{CustomKeyStoreName: aws.String(fmt.Sprintf("s%02d", i)),
			CloudHsmClusterId: aws.String(cid), TrustAnchorCertificate: aws.String(testAnchor), KeyStorePassword: aws.String(tok.pin)})
		if i == len(clusters)-1 {
			wantAPIError(t, err, errLimitExceeded)
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, *out.CustomKeyStoreId)
	}
	_, err := c.UpdateCustomKeyStore(ctx, &kms.UpdateCustomKeyStoreInput{CustomKeyStoreId: aws.String(ids[0]), NewCustomKeyStoreName: aws.String("s01")})
	wantAPIError(t, err, errCKSNameInUse)
	var seen []string
	in := &kms.DescribeCustomKeyStoresInput{Limit: aws.Int32(3)}
	for {
		out, err := c.DescribeCustomKeyStores(ctx, in)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range out.CustomKeyStores {
			seen = append(seen, *e.CustomKeyStoreId)
		}
		if !out.Truncated {
			break
		}
		in.Marker = out.NextMarker
	}
	if len(seen) != len(ids) {
		t.Fatalf("paged %d stores, want %d", len(seen), len(ids))
	}
	if out, err := c.DescribeCustomKeyStores(ctx, &kms.DescribeCustomKeyStoresInput{CustomKeyStoreName: aws.String("s03")}); err != nil || len(out.CustomKeyStores) != 1 {
		t.Fatalf("by name: %v", err)
	}
	_, err = c.DescribeCustomKeyStores(ctx, &kms.DescribeCustomKeyStoresInput{Marker: aws.String("bogus")})
	wantAPIError(t, err, errInvalidMarker)
	// Empty and disconnected: deleted.
	if _, err := c.DeleteCustomKeyStore(ctx, &kms.DeleteCustomKeyStoreInput{CustomKeyStoreId: aws.String(ids[0])}); err != nil {
		t.Fatal(err)
	}
	_, err = c.DescribeCustomKeyStores(ctx, &kms.DescribeCustomKeyStoresInput{CustomKeyStoreId: aws.String(ids[0])})
	wantAPIError(t, err, errCKSNotFound)
}

// TestStoreQuota: a store's own bucket (1,800/s, as AWS) refuses a burst
// beyond it with ThrottlingException, independently of other stores.
func TestStoreQuota(t *testing.T) {
	lib, label, pin := hsmtest.NewToken(t)
	ts := startTestServerCfg(t, t.TempDir(), tokenRef{lib, label, pin},
		Config{Quotas: quota.Config{Rates: map[quota.Group]float64{quota.Symmetric: 1e9}}})
	throttled := 0
	for range 2 * StoreRate {
		if err := ts.allowStore("cks-a"); err != nil {
			if ae, ok := err.(*APIError); !ok || ae.Type != errThrottling {
				t.Fatalf("error %v", err)
			}
			throttled++
		}
	}
	if throttled == 0 {
		t.Fatal("a burst of twice the store quota was never throttled")
	}
	if err := ts.allowStore("cks-b"); err != nil {
		t.Fatalf("another store throttled: %v", err)
	}
}

// TestXKSSharedKeys: with Config.XKSSharedKeys one external key backs
// several KMS keys (Alibaba Cloud's model), and their ciphertexts stay
// bound to their own KMS key.
func TestXKSSharedKeys(t *testing.T) {
	p := newTestXKSProxy(t)
	lib, label, pin := hsmtest.NewToken(t)
	ts := startTestServerCfg(t, t.TempDir(), tokenRef{lib, label, pin}, Config{XKSRootCAs: p.roots, XKSTimeout: 10 * time.Second, XKSSharedKeys: true})
	c := ts.client
	ctx := context.Background()
	cr, err := c.CreateCustomKeyStore(ctx, &kms.CreateCustomKeyStoreInput{CustomKeyStoreName: aws.String("hyok"),
		CustomKeyStoreType: types.CustomKeyStoreTypeExternalKeyStore, XksProxyUriEndpoint: aws.String(p.endpoint),
		XksProxyUriPath: aws.String("/kms/xks/v1"), XksProxyAuthenticationCredential: p.credential()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.ConnectCustomKeyStore(ctx, &kms.ConnectCustomKeyStoreInput{CustomKeyStoreId: cr.CustomKeyStoreId}); err != nil {
		t.Fatal(err)
	}
	if err := p.keys.Create(ctx, "shared"); err != nil {
		t.Fatal(err)
	}
	var ids []*string
	for range 2 {
		k, err := c.CreateKey(ctx, &kms.CreateKeyInput{Origin: types.OriginTypeExternalKeyStore, CustomKeyStoreId: cr.CustomKeyStoreId, XksKeyId: aws.String("shared")})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, k.KeyMetadata.KeyId)
	}
	enc, err := c.Encrypt(ctx, &kms.EncryptInput{KeyId: ids[0], Plaintext: []byte("a")})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob, KeyId: ids[1]})
	wantAPIError(t, err, errIncorrectKey)
	if d, err := c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob, KeyId: ids[0]}); err != nil || string(d.Plaintext) != "a" {
		t.Fatalf("decrypt: %v", err)
	}
}

// BenchmarkEncryptXKS is BenchmarkEncrypt's twin for a key in an external
// key store: kmsd's own layer, then an XKS call to an in-process proxy over
// HTTPS. The ratio between the two is the cost of the external layer.
func BenchmarkEncryptXKS(b *testing.B) {
	p := newTestXKSProxyTB(b)
	lib, label, pin := hsmtest.NewToken(b)
	ts := startTestServerCfg(b, b.TempDir(), tokenRef{lib, label, pin}, Config{XKSRootCAs: p.roots, XKSTimeout: 10 * time.Second})
	ctx := context.Background()
	cr, err := ts.client.CreateCustomKeyStore(ctx, &kms.CreateCustomKeyStoreInput{CustomKeyStoreName: aws.String("b"),
		CustomKeyStoreType: types.CustomKeyStoreTypeExternalKeyStore, XksProxyUriEndpoint: aws.String(p.endpoint),
		XksProxyUriPath: aws.String("/kms/xks/v1"), XksProxyAuthenticationCredential: p.credential()})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := ts.client.ConnectCustomKeyStore(ctx, &kms.ConnectCustomKeyStoreInput{CustomKeyStoreId: cr.CustomKeyStoreId}); err != nil {
		b.Fatal(err)
	}
	if err := p.keys.Create(ctx, "bench"); err != nil {
		b.Fatal(err)
	}
	k, err := ts.client.CreateKey(ctx, &kms.CreateKeyInput{Origin: types.OriginTypeExternalKeyStore, CustomKeyStoreId: cr.CustomKeyStoreId, XksKeyId: aws.String("bench")})
	if err != nil {
		b.Fatal(err)
	}
	benchOp(b, ts, "Encrypt", []byte(`{"KeyId":"`+*k.KeyMetadata.KeyId+`","Plaintext":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}`))
}

// TestCustomKeyStoresInCluster: store writes made through a follower are
// forwarded; every node uses the stores (it unseals the proxy secret or
// HSM PIN from the replicated state and connects on first use).
func TestCustomKeyStoresInCluster(t *testing.T) {
	p := newTestXKSProxy(t)
	lib, label, pin := hsmtest.NewToken(t)
	slib, slabel, spin := hsmtest.NewToken(t)
	cfg := Config{XKSRootCAs: p.roots, XKSTimeout: 10 * time.Second,
		HSMStores: map[string]HSMStoreConfig{"cluster-abcdefghijk": {Lib: slib, TokenLabel: slabel}}}
	var nodes []*testServer
	for i := range 2 {
		dir := t.TempDir()
		ccfg := cluster.Config{NodeID: fmt.Sprintf("node%d", i+1), DataDir: dir, BindAddr: "127.0.0.1:0",
			Bootstrap: i == 0, HeartbeatTimeout: time.Second}
		var join *testServer
		if i > 0 {
			join = nodes[0]
		}
		nodes = append(nodes, startNode(t, dir, tokenRef{lib, label, pin}, cfg, ccfg, join))
	}
	waitMembers(t, nodes)
	leader, follower := nodes[0].client, nodes[1].client
	ctx := context.Background()

	// External key store, managed through the follower.
	cr, err := follower.CreateCustomKeyStore(ctx, &kms.CreateCustomKeyStoreInput{CustomKeyStoreName: aws.String("hyok"),
		CustomKeyStoreType: types.CustomKeyStoreTypeExternalKeyStore, XksProxyUriEndpoint: aws.String(p.endpoint),
		XksProxyUriPath: aws.String("/kms/xks/v1"), XksProxyAuthenticationCredential: p.credential()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := follower.ConnectCustomKeyStore(ctx, &kms.ConnectCustomKeyStoreInput{CustomKeyStoreId: cr.CustomKeyStoreId}); err != nil {
		t.Fatal(err)
	}
	if err := p.keys.Create(ctx, "ext"); err != nil {
		t.Fatal(err)
	}
	xk, err := follower.CreateKey(ctx, &kms.CreateKeyInput{Origin: types.OriginTypeExternalKeyStore, CustomKeyStoreId: cr.CustomKeyStoreId, XksKeyId: aws.String("ext")})
	if err != nil {
		t.Fatal(err)
	}
	// HSM key store, managed through the leader.
	hr, err := leader.CreateCustomKeyStore(ctx, &kms.CreateCustomKeyStoreInput{CustomKeyStoreName: aws.String("hsm"),
		CloudHsmClusterId: aws.String("cluster-abcdefghijk"), TrustAnchorCertificate: aws.String(testAnchor), KeyStorePassword: aws.String(spin)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := leader.ConnectCustomKeyStore(ctx, &kms.ConnectCustomKeyStoreInput{CustomKeyStoreId: hr.CustomKeyStoreId}); err != nil {
		t.Fatal(err)
	}
	hk, err := leader.CreateKey(ctx, &kms.CreateKeyInput{Origin: types.OriginTypeAwsCloudhsm, CustomKeyStoreId: hr.CustomKeyStoreId})
	if err != nil {
		t.Fatal(err)
	}
	for _, kid := range []*string{xk.KeyMetadata.KeyId, hk.KeyMetadata.KeyId} {
		for _, pair := range [][2]*kms.Client{{follower, leader}, {leader, follower}} {
			// A node answers from its applied state: poll until the other
			// node has applied what was written through this one.
			var enc *kms.EncryptOutput
			for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
				if enc, err = pair[0].Encrypt(ctx, &kms.EncryptInput{KeyId: kid, Plaintext: []byte("replicated")}); err == nil || time.Now().After(deadline) {
					break
				}
			}
			if err != nil {
				t.Fatalf("encrypt %s: %v", *kid, err)
			}
			var dec *kms.DecryptOutput
			for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
				if dec, err = pair[1].Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob}); err == nil || time.Now().After(deadline) {
					break
				}
			}
			if err != nil || string(dec.Plaintext) != "replicated" {
				t.Fatalf("decrypt %s on the other node: %v", *kid, err)
			}
		}
	}
}
