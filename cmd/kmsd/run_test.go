package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/kmsd/kmsd/hsmpool"
)

// startServe runs `kmsd serve` in-process on dir and returns its URL and a
// stop function that returns the exit code.
func startServe(t *testing.T, dir string, extra ...string) (string, func() int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	var stderr bytes.Buffer
	done := make(chan int, 1)
	go func() {
		code := run(ctx, append([]string{"serve", "--listen", "127.0.0.1:0", "--data-dir", dir, "--log-level", "warn"}, extra...), pw, &stderr)
		pw.Close()
		done <- code
	}()
	urlc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			if rest, ok := strings.CutPrefix(sc.Text(), "kmsd: serving the AWS KMS API on "); ok {
				urlc <- strings.Fields(rest)[0]
			}
		}
	}()
	select {
	case u := <-urlc:
		return u, func() int { cancel(); return <-done }
	case code := <-done:
		cancel()
		t.Fatalf("kmsd serve exited %d: %s", code, stderr.String())
	case <-time.After(60 * time.Second):
		cancel()
		t.Fatalf("kmsd serve did not start: %s", stderr.String())
	}
	return "", nil
}

func clientFor(t *testing.T, dir, url string) *kms.Client {
	t.Helper()
	cfg, err := config.LoadDefaultConfig(context.Background(),
		config.WithSharedCredentialsFiles([]string{filepath.Join(dir, "credentials")}),
		config.WithSharedConfigFiles([]string{}),
		config.WithRegion("us-east-1"),
	)
	if err != nil {
		t.Fatal(err)
	}
	return kms.NewFromConfig(cfg, func(o *kms.Options) { o.BaseEndpoint = aws.String(url) })
}

func TestServeRestart(t *testing.T) {
	if _, err := hsmpool.FindSoftHSM(); err != nil {
		t.Skip("SoftHSM2 not installed")
	}
	t.Setenv("SOFTHSM2_CONF", "")
	dir := t.TempDir()
	url, stop := startServe(t, dir)
	c := clientFor(t, dir, url)
	ctx := context.Background()
	key, err := c.CreateKey(ctx, &kms.CreateKeyInput{Description: aws.String("restart")})
	if err != nil {
		t.Fatal(err)
	}
	id := key.KeyMetadata.KeyId
	gdk, err := c.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: id, KeySpec: types.DataKeySpecAes256})
	if err != nil {
		t.Fatal(err)
	}
	if code := stop(); code != 0 {
		t.Fatalf("serve exited %d", code)
	}

	for _, f := range []string{"credentials", "hsm/pin"} {
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Fatalf("%s mode %v, want 0600", f, st.Mode().Perm())
		}
	}
	for _, f := range []string{"hsm/softhsm2.conf", "hsm/tokens", "raft/raft.db"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Fatalf("data dir lacks %s: %v", f, err)
		}
	}
	cred, _ := os.ReadFile(filepath.Join(dir, "credentials"))
	if !strings.HasPrefix(string(cred), "[default]\n") {
		t.Fatalf("credentials file: %q", cred)
	}

	url, stop = startServe(t, dir)
	defer stop()
	c = clientFor(t, dir, url)
	dec, err := c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: gdk.CiphertextBlob})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(dec.Plaintext, gdk.Plaintext) {
		t.Fatal("data key changed across restart")
	}
	d, err := c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: id})
	if err != nil || *d.KeyMetadata.Description != "restart" {
		t.Fatalf("describe after restart: %v", err)
	}
	cred2, _ := os.ReadFile(filepath.Join(dir, "credentials"))
	if !bytes.Equal(cred, cred2) {
		t.Fatal("credentials changed across restart")
	}

	// Admin subcommands against the running node.
	var out, errb bytes.Buffer
	snap := filepath.Join(t.TempDir(), "state.snap")
	common := []string{"--endpoint", url, "--credentials", filepath.Join(dir, "credentials")}
	if code := run(ctx, append([]string{"snapshot", "save", snap}, common...), &out, &errb); code != 0 {
		t.Fatalf("snapshot save: %d %s", code, errb.String())
	}
	if code := run(ctx, append([]string{"snapshot", "restore", snap}, common...), &out, &errb); code != 0 {
		t.Fatalf("snapshot restore: %d %s", code, errb.String())
	}
	out.Reset()
	if code := run(ctx, append([]string{"cluster", "status"}, common...), &out, &errb); code != 0 || !strings.Contains(out.String(), "node1") {
		t.Fatalf("cluster status: %d %q %s", code, out.String(), errb.String())
	}
	if _, err := c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: id}); err != nil {
		t.Fatalf("key lost across snapshot restore: %v", err)
	}
}

func TestRunUsage(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run(context.Background(), nil, &out, &errb); code != 2 {
		t.Fatalf("no args: exit %d", code)
	}
	if code := run(context.Background(), []string{"bogus"}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "unknown command") {
		t.Fatalf("bogus: exit %d %q", code, errb.String())
	}
	errb.Reset()
	if code := run(context.Background(), []string{"serve", "--listen"}, &out, &errb); code != 2 {
		t.Fatalf("bad flag: exit %d", code)
	}
	errb.Reset()
	if code := run(context.Background(), []string{"serve", "--data-dir", t.TempDir(), "--bootstrap"}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "--cluster-addr") {
		t.Fatalf("--bootstrap without --cluster-addr: exit %d %q", code, errb.String())
	}
	errb.Reset()
	if code := run(context.Background(), []string{"serve", "--data-dir", t.TempDir(), "--pkcs11-lib", "/nonexistent.so"}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "PIN") {
		t.Fatalf("pkcs11 without pin: exit %d %q", code, errb.String())
	}
}

// TestCredentialsCommand: `kmsd credentials create|list|delete` against a
// running node; the new key works (within its identity policy) until it is
// deleted; the node's audit log under DIR/audit records the calls.
func TestCredentialsCommand(t *testing.T) {
	if _, err := hsmpool.FindSoftHSM(); err != nil {
		t.Skip("SoftHSM2 not installed")
	}
	t.Setenv("SOFTHSM2_CONF", "")
	dir := t.TempDir()
	url, stopServe := startServe(t, dir)
	var once sync.Once
	code := 0
	stop := func() int { once.Do(func() { code = stopServe() }); return code }
	defer stop()
	ctx := context.Background()
	root := clientFor(t, dir, url)
	key, err := root.CreateKey(ctx, &kms.CreateKeyInput{})
	if err != nil {
		t.Fatal(err)
	}
	common := []string{"--endpoint", url, "--credentials", filepath.Join(dir, "credentials")}
	pol := filepath.Join(t.TempDir(), "app.json")
	os.WriteFile(pol, []byte(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"kms:GenerateDataKey","Resource":"*"}]}`), 0o600)
	appDir := t.TempDir()
	var out, errb bytes.Buffer
	args := append([]string{"credentials", "create", "--principal", "role/app", "--policy", pol, "--out", filepath.Join(appDir, "credentials")}, common...)
	if code := run(ctx, args, &out, &errb); code != 0 {
		t.Fatalf("credentials create: %d %s", code, errb.String())
	}
	akid := strings.Fields(out.String())[0]
	app := clientFor(t, appDir, url)
	if _, err := app.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: key.KeyMetadata.KeyId, KeySpec: types.DataKeySpecAes256}); err != nil {
		t.Fatalf("app GenerateDataKey: %v", err)
	}
	if _, err := app.Encrypt(ctx, &kms.EncryptInput{KeyId: key.KeyMetadata.KeyId, Plaintext: []byte("x")}); err == nil {
		t.Fatal("app may Encrypt beyond its identity policy")
	}
	out.Reset()
	if code := run(ctx, append([]string{"credentials", "list"}, common...), &out, &errb); code != 0 ||
		!strings.Contains(out.String(), akid) || !strings.Contains(out.String(), "arn:aws:iam::111122223333:role/app") {
		t.Fatalf("credentials list: %d %q %s", code, out.String(), errb.String())
	}
	if code := run(ctx, append([]string{"credentials", "delete", akid}, common...), &out, &errb); code != 0 {
		t.Fatalf("credentials delete: %d %s", code, errb.String())
	}
	if _, err := app.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: key.KeyMetadata.KeyId, KeySpec: types.DataKeySpecAes256}); err == nil ||
		!strings.Contains(err.Error(), "UnrecognizedClientException") {
		t.Fatalf("deleted key still works: %v", err)
	}
	if stop() != 0 {
		t.Fatal("serve exit code")
	}
	log, err := os.ReadFile(filepath.Join(dir, "audit", "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"eventName":"CreateKey"`, `"eventName":"KmsdCluster.CreateCredential"`,
		`"errorCode":"AccessDeniedException"`, `"arn":"arn:aws:iam::111122223333:role/app"`} {
		if !strings.Contains(string(log), want) {
			t.Errorf("audit log lacks %s", want)
		}
	}
}

// TestQuotaFlag: --quota GROUP=RPS sets one group's rate; an unknown group
// is refused at start.
func TestQuotaFlag(t *testing.T) {
	if _, err := hsmpool.FindSoftHSM(); err != nil {
		t.Skip("SoftHSM2 not installed")
	}
	t.Setenv("SOFTHSM2_CONF", "")
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"serve", "--data-dir", t.TempDir(), "--listen", "127.0.0.1:0", "--quota", "op:Dance=3"}, &out, &errb); code == 0 ||
		!strings.Contains(errb.String(), "no such quota group") {
		t.Fatalf("unknown group: exit %d, %s", code, errb.String())
	}
	dir := t.TempDir()
	url, stop := startServe(t, dir, "--quota", "op:CreateKey=1")
	defer stop()
	c := clientFor(t, dir, url)
	throttled := 0
	for range 5 {
		if _, err := c.CreateKey(context.Background(), &kms.CreateKeyInput{}, func(o *kms.Options) { o.RetryMaxAttempts = 1 }); err != nil {
			if !strings.Contains(err.Error(), "ThrottlingException") {
				t.Fatal(err)
			}
			throttled++
		}
	}
	if throttled == 0 {
		t.Fatal("5 CreateKey calls at once under op:CreateKey=1 were all accepted")
	}
}
