package kmsplugin

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	kmsapi "k8s.io/kms/apis/v2"

	"github.com/kmsd/kmsd/internal/kmsdproc"
)

// TestPluginAgainstKmsd builds bin/kmsd, serves it from a temporary data
// dir, serves the plugin on a unix socket in front of it and drives it with
// the k8s.io/kms v2 gRPC client, as a kube-apiserver would: Status, an
// Encrypt/Decrypt round trip, RotateKeyOnDemand (a new key_id, the old
// ciphertext still decrypts) and DisableKey (Status unhealthy, Encrypt
// fails).
func TestPluginAgainstKmsd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts kmsd")
	}
	url, creds := newTestKmsd(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := newTestKMSClient(t, url, creds)
	key, err := c.CreateKey(ctx, &kms.CreateKeyInput{Description: aws.String("k8s secrets")})
	if err != nil {
		t.Fatal(err)
	}
	keyARN := *key.KeyMetadata.Arn
	if _, err := c.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String("alias/k8s"), TargetKeyId: key.KeyMetadata.KeyId}); err != nil {
		t.Fatal(err)
	}
	// A TTL longer than the test: every key_id change Encrypt reports
	// must come from Status's refresh.
	p, err := New(Config{KMS: c, KeyID: "alias/k8s", KeyIDTTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	api := newTestServer(t, p)

	st, err := api.Status(ctx, &kmsapi.StatusRequest{})
	if err != nil || st.Healthz != "ok" || st.Version != "v2" || !strings.HasPrefix(st.KeyId, keyARN+"#") {
		t.Fatalf("Status = %+v, %v", st, err)
	}
	oldID := st.KeyId
	dek := bytes.Repeat([]byte{7}, 32)
	enc, err := api.Encrypt(ctx, &kmsapi.EncryptRequest{Plaintext: dek, Uid: "enc-1"})
	if err != nil || enc.KeyId != oldID || len(enc.Ciphertext) == 0 || len(enc.Ciphertext) > 1024 {
		t.Fatalf("Encrypt = %+v, %v (key_id want %s; the apiserver allows 1 KiB of ciphertext)", enc, err, oldID)
	}
	dec, err := api.Decrypt(ctx, &kmsapi.DecryptRequest{Ciphertext: enc.Ciphertext, KeyId: enc.KeyId, Uid: "dec-1"})
	if err != nil || !bytes.Equal(dec.Plaintext, dek) {
		t.Fatalf("Decrypt = %+v, %v", dec, err)
	}

	// Rotation: a new key_id, old ciphertexts still decrypt.
	if _, err := c.RotateKeyOnDemand(ctx, &kms.RotateKeyOnDemandInput{KeyId: aws.String(keyARN)}); err != nil {
		t.Fatal(err)
	}
	st, err = api.Status(ctx, &kmsapi.StatusRequest{})
	if err != nil || st.Healthz != "ok" || st.KeyId == oldID || !strings.HasPrefix(st.KeyId, keyARN+"#") {
		t.Fatalf("Status after rotation = %+v, %v (old key_id %s)", st, err, oldID)
	}
	newID := st.KeyId
	enc2, err := api.Encrypt(ctx, &kmsapi.EncryptRequest{Plaintext: dek, Uid: "enc-2"})
	if err != nil || enc2.KeyId != newID {
		t.Fatalf("Encrypt after rotation = %+v, %v (want key_id %s)", enc2, err, newID)
	}
	for _, e := range []*kmsapi.EncryptResponse{enc, enc2} {
		dec, err := api.Decrypt(ctx, &kmsapi.DecryptRequest{Ciphertext: e.Ciphertext, KeyId: e.KeyId, Uid: "dec-2"})
		if err != nil || !bytes.Equal(dec.Plaintext, dek) {
			t.Fatalf("Decrypt of a %s ciphertext after rotation = %+v, %v", e.KeyId, dec, err)
		}
	}
	// A tampered ciphertext is the caller's error, not the service's.
	bad := bytes.Clone(enc2.Ciphertext)
	bad[len(bad)-1] ^= 1
	if _, err := api.Decrypt(ctx, &kmsapi.DecryptRequest{Ciphertext: bad, KeyId: enc2.KeyId, Uid: "dec-3"}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("Decrypt of a tampered blob: %v", err)
	}

	// A disabled key: Status unhealthy (with a key_id), Encrypt refused.
	if _, err := c.DisableKey(ctx, &kms.DisableKeyInput{KeyId: aws.String(keyARN)}); err != nil {
		t.Fatal(err)
	}
	st, err = api.Status(ctx, &kmsapi.StatusRequest{})
	if err != nil || st.Healthz == "ok" || !strings.Contains(st.Healthz, "Disabled") || st.KeyId == "" {
		t.Fatalf("Status of a disabled key = %+v, %v", st, err)
	}
	if _, err := api.Encrypt(ctx, &kmsapi.EncryptRequest{Plaintext: dek, Uid: "enc-3"}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("Encrypt with a disabled key: %v", err)
	}
	if _, err := c.EnableKey(ctx, &kms.EnableKeyInput{KeyId: aws.String(keyARN)}); err != nil {
		t.Fatal(err)
	}
	if st, err := api.Status(ctx, &kmsapi.StatusRequest{}); err != nil || st.Healthz != "ok" || st.KeyId != newID {
		t.Fatalf("Status after EnableKey = %+v, %v", st, err)
	}
}

// newTestServer serves p on a unix socket in a temporary directory and
// returns a k8s.io/kms v2 client connected to it.
func newTestServer(t *testing.T, p *Plugin) kmsapi.KeyManagementServiceClient {
	t.Helper()
	// Unix socket paths are limited to ~108 bytes; t.TempDir can be long.
	dir, err := os.MkdirTemp("", "kmsplugin")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "kms.sock")
	ln, err := Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := p.GRPCServer()
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		srv.GracefulStop()
		if err := <-done; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			t.Errorf("grpc Serve: %v", err)
		}
	})
	return kmsapi.NewKeyManagementServiceClient(conn)
}

func newTestKMSClient(t *testing.T, url, credsFile string) *kms.Client {
	t.Helper()
	sc, err := config.LoadSharedConfigProfile(context.Background(), "default", func(o *config.LoadSharedConfigOptions) {
		o.CredentialsFiles = []string{credsFile}
		o.ConfigFiles = []string{}
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.LoadDefaultConfig(context.Background(), config.WithRegion("us-east-1"),
		config.WithCredentialsProvider(credentials.StaticCredentialsProvider{Value: sc.Credentials}))
	if err != nil {
		t.Fatal(err)
	}
	return kms.NewFromConfig(cfg, func(o *kms.Options) { o.BaseEndpoint = aws.String(url) })
}

// newTestKmsd builds and starts a real kmsd (internal/kmsdproc) and
// returns its URL and credentials file.
func newTestKmsd(t *testing.T) (url, credsFile string) {
	t.Helper()
	dataDir := filepath.Join(t.TempDir(), "data")
	return kmsdproc.Start(t, kmsdproc.Build(t), dataDir), filepath.Join(dataDir, "credentials")
}
