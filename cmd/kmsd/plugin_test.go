package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	kmsapi "k8s.io/kms/apis/v2"

	"github.com/kmsd/kmsd/hsmpool"
)

// TestRunPlugin runs `kmsd serve` and `kmsd k8s-kms-plugin` in-process and
// makes the kube-apiserver's calls over the socket: Status, Encrypt,
// Decrypt. Rotation and key states are tested in kmsplugin.
func TestRunPlugin(t *testing.T) {
	if _, err := hsmpool.FindSoftHSM(); err != nil {
		t.Skip("SoftHSM2 not installed")
	}
	t.Setenv("SOFTHSM2_CONF", "")
	dir := t.TempDir()
	url, stop := startServe(t, dir)
	defer stop()
	ctx := context.Background()
	key, err := clientFor(t, dir, url).CreateKey(ctx, &kms.CreateKeyInput{Description: aws.String("k8s")})
	if err != nil {
		t.Fatal(err)
	}

	sockDir, err := os.MkdirTemp("", "kmsd-plugin") // short: unix socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(sockDir)
	sock := filepath.Join(sockDir, "run", "kms.sock")
	pctx, cancel := context.WithCancel(ctx)
	pr, pw := io.Pipe()
	var stderr bytes.Buffer
	done := make(chan int, 1)
	go func() {
		code := runPlugin(pctx, []string{"--socket", sock, "--endpoint", url, "--key", *key.KeyMetadata.Arn,
			"--credentials", filepath.Join(dir, "credentials"), "--log-level", "warn"}, pw, &stderr)
		pw.Close()
		done <- code
	}()
	serving := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "serving the Kubernetes KMS v2 API on unix://"+sock) {
				serving <- sc.Text()
			}
		}
	}()
	select {
	case <-serving:
	case code := <-done:
		cancel()
		t.Fatalf("k8s-kms-plugin exited %d: %s", code, stderr.String())
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatal("k8s-kms-plugin did not start")
	}

	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	api := kmsapi.NewKeyManagementServiceClient(conn)
	cctx, ccancel := context.WithTimeout(ctx, 30*time.Second)
	defer ccancel()
	st, err := api.Status(cctx, &kmsapi.StatusRequest{})
	if err != nil || st.Healthz != "ok" || st.Version != "v2" || !strings.HasPrefix(st.KeyId, *key.KeyMetadata.Arn+"#") {
		t.Fatalf("Status = %+v, %v", st, err)
	}
	enc, err := api.Encrypt(cctx, &kmsapi.EncryptRequest{Plaintext: []byte("0123456789abcdef0123456789abcdef"), Uid: "u1"})
	if err != nil || enc.KeyId != st.KeyId {
		t.Fatalf("Encrypt = %+v, %v", enc, err)
	}
	dec, err := api.Decrypt(cctx, &kmsapi.DecryptRequest{Ciphertext: enc.Ciphertext, KeyId: enc.KeyId, Uid: "u2"})
	if err != nil || string(dec.Plaintext) != "0123456789abcdef0123456789abcdef" {
		t.Fatalf("Decrypt = %+v, %v", dec, err)
	}

	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("k8s-kms-plugin exited %d: %s", code, stderr.String())
	}
	if _, err := os.Lstat(sock); !os.IsNotExist(err) {
		t.Errorf("socket left behind after shutdown: %v", err)
	}
}

func TestRunPluginUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{}, 2, "--key is required"},
		{[]string{"--key", "k", "extra"}, 2, "unexpected argument"},
		{[]string{"--nope"}, 2, "flag provided but not defined"},
		{[]string{"--key", "k", "--credentials", "/nonexistent/credentials", "--socket", "/tmp/x.sock"}, 1, "--credentials"},
	} {
		var out, errb bytes.Buffer
		if code := runPlugin(context.Background(), tc.args, &out, &errb); code != tc.code || !strings.Contains(errb.String(), tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want %d and %q", tc.args, code, errb.String(), tc.code, tc.want)
		}
	}
}

func TestRunHealthcheck(t *testing.T) {
	var ready atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/healthz":
			io.WriteString(w, "ok")
		case r.URL.Path == "/readyz" && ready.Load():
			io.WriteString(w, "ready")
		default:
			http.Error(w, "not ready", http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	check := func(args ...string) int {
		var out, errb bytes.Buffer
		return runHealthcheck(context.Background(), args, &out, &errb)
	}
	if code := check("--url", srv.URL); code != 0 {
		t.Errorf("healthz: exit %d", code)
	}
	if code := check("--url", srv.URL+"/", "--ready"); code != 1 {
		t.Errorf("readyz while not ready: exit %d", code)
	}
	ready.Store(true)
	if code := check("--url", srv.URL, "--ready"); code != 0 {
		t.Errorf("readyz when ready: exit %d", code)
	}
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	if code := check("--url", closed.URL, "--timeout", "1s"); code != 1 {
		t.Errorf("nothing listening: exit %d", code)
	}
	if code := check("--bogus"); code != 1 {
		t.Errorf("bad flag: exit %d (must be 1: Docker reserves 2)", code)
	}
}

// TestServeK8sKMSSocket: `kmsd serve --k8s-kms-socket --k8s-kms-key` also
// serves the Kubernetes KMS v2 API, through its own KMS API.
func TestServeK8sKMSSocket(t *testing.T) {
	if _, err := hsmpool.FindSoftHSM(); err != nil {
		t.Skip("SoftHSM2 not installed")
	}
	t.Setenv("SOFTHSM2_CONF", "")
	dir := t.TempDir()
	sock := filepath.Join(t.TempDir(), "kms.sock")
	url, stop := startServe(t, dir, "--k8s-kms-socket", sock, "--k8s-kms-key", "alias/k8s")
	defer stop()
	ctx := context.Background()
	c := clientFor(t, dir, url)
	key, err := c.CreateKey(ctx, &kms.CreateKeyInput{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String("alias/k8s"), TargetKeyId: key.KeyMetadata.KeyId}); err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	api := kmsapi.NewKeyManagementServiceClient(conn)
	var st *kmsapi.StatusResponse
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		st, err = api.Status(ctx, &kmsapi.StatusRequest{})
		if err == nil && st.Healthz == "ok" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("plugin never healthy: %v %+v", err, st)
		}
	}
	enc, err := api.Encrypt(ctx, &kmsapi.EncryptRequest{Plaintext: []byte("dek seed"), Uid: "1"})
	if err != nil {
		t.Fatal(err)
	}
	dec, err := api.Decrypt(ctx, &kmsapi.DecryptRequest{Ciphertext: enc.Ciphertext, KeyId: enc.KeyId, Uid: "2"})
	if err != nil || string(dec.Plaintext) != "dek seed" {
		t.Fatalf("decrypt through the serve socket: %v", err)
	}
}
