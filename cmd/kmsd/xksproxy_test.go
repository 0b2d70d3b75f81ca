package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/x509"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/kmsd/kmsd/hsmpool"
	"github.com/kmsd/kmsd/xks"
)

// TestXKSProxyChild is the child process of TestXKSProxyCommand (SoftHSM2
// reads its config once per process, so each kmsd runs in its own).
func TestXKSProxyChild(t *testing.T) {
	if os.Getenv("KMSD_XKS_CHILD") != "1" {
		t.Skip("child process of TestXKSProxyCommand")
	}
	args := strings.Split(os.Getenv("KMSD_XKS_ARGS"), "\x1f")
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, args, os.Stdout, os.Stderr))
}

func kmsdChild(t *testing.T, args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^TestXKSProxyChild$")
	cmd.Env = append(os.Environ(), "KMSD_XKS_CHILD=1", "KMSD_XKS_ARGS="+strings.Join(args, "\x1f"), "SOFTHSM2_CONF=")
	return cmd
}

func TestXKSProxyCommand(t *testing.T) {
	if _, err := hsmpool.FindSoftHSM(); err != nil {
		t.Skip("SoftHSM2 not installed")
	}
	dir := t.TempDir()
	out, err := kmsdChild(t, "xks-proxy", "create-key", "--data-dir", dir, "--label", "app-1").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "app-1\n") {
		t.Fatalf("create-key: %v %s", err, out)
	}
	if out, err := kmsdChild(t, "xks-proxy", "create-key", "--data-dir", dir, "--label", "bad id").CombinedOutput(); err == nil {
		t.Fatalf("create-key accepted a bad id: %s", out)
	}
	srv := kmsdChild(t, "xks-proxy", "--data-dir", dir, "--listen", "127.0.0.1:0")
	var stderr bytes.Buffer
	srv.Stderr = &stderr
	stdout, err := srv.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = srv.Process.Signal(syscall.SIGTERM)
		_ = srv.Wait()
	}()
	sc := bufio.NewScanner(stdout)
	var url string
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "kmsd xks-proxy: serving https://"); ok {
			url = "https://" + strings.Fields(rest)[0]
			break
		}
	}
	if url == "" {
		t.Fatalf("proxy did not start: %s", stderr.String())
	}
	for _, f := range []string{"tls.crt", "tls.key", "xks-credentials"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Fatalf("data dir lacks %s", f)
		}
	}
	if fi, _ := os.Stat(filepath.Join(dir, "xks-credentials")); fi.Mode().Perm() != 0o600 {
		t.Fatalf("xks-credentials mode %v", fi.Mode().Perm())
	}
	creds, err := xks.ReadCredentials(filepath.Join(dir, "xks-credentials"))
	if err != nil {
		t.Fatal(err)
	}
	pem, _ := os.ReadFile(filepath.Join(dir, "tls.crt"))
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	var id, secret string
	for id, secret = range creds {
	}
	c, err := xks.NewClient(xks.ClientConfig{Endpoint: strings.TrimSuffix(url, "/kms/xks/v1"), Path: "/kms/xks/v1",
		AccessKeyID: id, SecretAccessKey: secret, RootCAs: roots, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	md := xks.RequestMetadata{AWSPrincipalArn: "arn:aws:iam::111122223333:root", KMSKeyArn: "arn:aws:kms:us-east-1:111122223333:key/x",
		KMSOperation: "Encrypt", KMSRequestID: "1"}
	if h, err := c.Health(ctx, md); err != nil || !h.Available() {
		t.Fatalf("health: %+v %v", h, err)
	}
	s, err := c.Encrypt(ctx, "app-1", md, []byte("hello"), []byte("ctx"))
	if err != nil {
		t.Fatal(err)
	}
	pt, err := c.Decrypt(ctx, "app-1", md, s, []byte("ctx"))
	if err != nil || string(pt) != "hello" {
		t.Fatalf("decrypt: %q %v", pt, err)
	}
	// A key made while the proxy runs is served at once.
	if out, err := kmsdChild(t, "xks-proxy", "create-key", "--data-dir", dir, "--label", "app-2").CombinedOutput(); err != nil {
		t.Fatalf("create-key while the proxy runs: %v %s", err, out)
	}
	if m, err := c.Metadata(ctx, "app-2", md); err != nil || m.KeyStatus != "ENABLED" {
		t.Fatalf("metadata of a key made while serving: %+v %v", m, err)
	}

	// kmsd serve (its own process and token) uses the proxy as an external
	// key store, trusting its self-signed certificate with --xks-ca-file.
	sdir := t.TempDir()
	node := kmsdChild(t, "serve", "--data-dir", sdir, "--listen", "127.0.0.1:0", "--log-level", "warn",
		"--xks-ca-file", filepath.Join(dir, "tls.crt"))
	var nerr bytes.Buffer
	node.Stderr = &nerr
	nout, err := node.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := node.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = node.Process.Signal(syscall.SIGTERM)
		_ = node.Wait()
	}()
	sc = bufio.NewScanner(nout)
	var api string
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "kmsd: serving the AWS KMS API on "); ok {
			api = strings.Fields(rest)[0]
			break
		}
	}
	if api == "" {
		t.Fatalf("kmsd serve did not start: %s", nerr.String())
	}
	go func() { _, _ = io.Copy(io.Discard, nout) }()
	kc := clientFor(t, sdir, api)
	cs, err := kc.CreateCustomKeyStore(ctx, &kms.CreateCustomKeyStoreInput{CustomKeyStoreName: aws.String("hyok"),
		CustomKeyStoreType: types.CustomKeyStoreTypeExternalKeyStore, XksProxyUriEndpoint: aws.String(strings.TrimSuffix(url, "/kms/xks/v1")),
		XksProxyUriPath: aws.String("/kms/xks/v1"), XksProxyConnectivity: types.XksProxyConnectivityTypePublicEndpoint,
		XksProxyAuthenticationCredential: &types.XksProxyAuthenticationCredentialType{AccessKeyId: aws.String(id), RawSecretAccessKey: aws.String(secret)}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kc.ConnectCustomKeyStore(ctx, &kms.ConnectCustomKeyStoreInput{CustomKeyStoreId: cs.CustomKeyStoreId}); err != nil {
		t.Fatal(err)
	}
	key, err := kc.CreateKey(ctx, &kms.CreateKeyInput{Origin: types.OriginTypeExternalKeyStore, CustomKeyStoreId: cs.CustomKeyStoreId, XksKeyId: aws.String("app-1")})
	if err != nil {
		t.Fatal(err)
	}
	enc, err := kc.Encrypt(ctx, &kms.EncryptInput{KeyId: key.KeyMetadata.KeyId, Plaintext: []byte("hyok")})
	if err != nil {
		t.Fatal(err)
	}
	dec, err := kc.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob})
	if err != nil || string(dec.Plaintext) != "hyok" {
		t.Fatalf("decrypt through the proxy: %v", err)
	}
}
