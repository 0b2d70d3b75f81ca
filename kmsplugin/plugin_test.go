package kmsplugin

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/smithy-go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/kms/pkg/service"
)

const fakeARN = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"

// fakeKMS is an API whose key state and failures the test sets; its
// "ciphertext" is the plaintext prefixed with the key ARN.
type fakeKMS struct {
	mu        sync.Mutex
	arn       string
	material  string
	state     types.KeyState
	fail      error // returned by every call when set
	describes int
}

func (f *fakeKMS) set(fn func(f *fakeKMS)) { f.mu.Lock(); fn(f); f.mu.Unlock() }

func (f *fakeKMS) DescribeKey(ctx context.Context, in *kms.DescribeKeyInput, _ ...func(*kms.Options)) (*kms.DescribeKeyOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.describes++
	if f.fail != nil {
		return nil, f.fail
	}
	return &kms.DescribeKeyOutput{KeyMetadata: &types.KeyMetadata{Arn: aws.String(f.arn), KeyId: aws.String("k"),
		KeyState: f.state, CurrentKeyMaterialId: aws.String(f.material)}}, nil
}

func (f *fakeKMS) Encrypt(ctx context.Context, in *kms.EncryptInput, _ ...func(*kms.Options)) (*kms.EncryptOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return nil, f.fail
	}
	if f.state != types.KeyStateEnabled {
		return nil, &types.DisabledException{Message: aws.String(f.arn + " is disabled.")}
	}
	if in.EncryptionContext[contextKey] != contextValue {
		return nil, errors.New("fake: missing encryption context")
	}
	return &kms.EncryptOutput{KeyId: aws.String(f.arn), CiphertextBlob: append([]byte(f.arn+"|"), in.Plaintext...)}, nil
}

func (f *fakeKMS) Decrypt(ctx context.Context, in *kms.DecryptInput, _ ...func(*kms.Options)) (*kms.DecryptOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return nil, f.fail
	}
	arn, pt, ok := strings.Cut(string(in.CiphertextBlob), "|")
	if !ok || in.EncryptionContext[contextKey] != contextValue {
		return nil, &types.InvalidCiphertextException{Message: aws.String("bad blob")}
	}
	if in.KeyId != nil && *in.KeyId != arn {
		return nil, &types.IncorrectKeyException{Message: aws.String("wrong key")}
	}
	return &kms.DecryptOutput{KeyId: aws.String(arn), Plaintext: []byte(pt)}, nil
}

// newTestPlugin returns a Plugin on a fake enabled key and a settable clock.
func newTestPlugin(t testing.TB) (*Plugin, *fakeKMS, *time.Time) {
	t.Helper()
	f := &fakeKMS{arn: fakeARN, material: "m1", state: types.KeyStateEnabled}
	p, err := New(Config{KMS: f, KeyID: "alias/k8s", KeyIDTTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_700_000_000, 0)
	p.now = func() time.Time { return now }
	return p, f, &now
}

func TestConfigValidate(t *testing.T) {
	f := &fakeKMS{}
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{KeyID: "k"}, "Config.KMS"},
		{Config{KMS: f, KeyID: " "}, "Config.KeyID"},
		{Config{KMS: f, KeyID: "k", KeyIDTTL: -1}, "Config.KeyIDTTL"},
	} {
		if _, err := New(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v) = %v, want an error naming %s", tc.cfg, err, tc.want)
		}
	}
}

func TestKeyIDCacheAndRotation(t *testing.T) {
	p, f, now := newTestPlugin(t)
	ctx := context.Background()
	enc, err := p.Encrypt(ctx, "uid-1", []byte("dek"))
	if err != nil {
		t.Fatal(err)
	}
	if want := fakeARN + "#m1"; enc.KeyID != want {
		t.Fatalf("key_id %q, want %q", enc.KeyID, want)
	}

	// Rotation: within the TTL Encrypt still reports the cached id...
	f.set(func(f *fakeKMS) { f.material = "m2" })
	if enc, _ := p.Encrypt(ctx, "uid-2", []byte("dek")); !strings.HasSuffix(enc.KeyID, "#m1") || f.describes != 1 {
		t.Fatalf("within the TTL: key_id %q after %d DescribeKey calls", enc.KeyID, f.describes)
	}
	// ...after it, the new one.
	*now = now.Add(time.Minute)
	enc2, err := p.Encrypt(ctx, "uid-3", []byte("dek"))
	if err != nil || !strings.HasSuffix(enc2.KeyID, "#m2") {
		t.Fatalf("after the TTL: %+v, %v", enc2, err)
	}
	// Status always asks afresh, and Encrypt then reuses its answer.
	f.set(func(f *fakeKMS) { f.material = "m3" })
	st, _ := p.Status(ctx)
	if st.Healthz != "ok" || st.Version != "v2" || !strings.HasSuffix(st.KeyID, "#m3") {
		t.Fatalf("status %+v", st)
	}
	if enc, _ := p.Encrypt(ctx, "uid-4", []byte("dek")); !strings.HasSuffix(enc.KeyID, "#m3") {
		t.Fatalf("after Status: key_id %q", enc.KeyID)
	}
	// The first ciphertext still decrypts, with its key_id.
	pt, err := p.Decrypt(ctx, "uid-5", &service.DecryptRequest{Ciphertext: enc.Ciphertext, KeyID: enc.KeyID})
	if err != nil || string(pt) != "dek" {
		t.Fatalf("Decrypt = %q, %v", pt, err)
	}
}

func TestAliasRetargetRefreshesKeyID(t *testing.T) {
	p, f, _ := newTestPlugin(t)
	ctx := context.Background()
	if _, err := p.Encrypt(ctx, "u", []byte("dek")); err != nil {
		t.Fatal(err)
	}
	other := strings.Replace(fakeARN, "1234abcd", "5678efab", 1)
	f.set(func(f *fakeKMS) { f.arn, f.material = other, "x1" })
	enc, err := p.Encrypt(ctx, "u", []byte("dek"))
	if err != nil || enc.KeyID != other+"#x1" {
		t.Fatalf("Encrypt after the alias moved: %+v, %v", enc, err)
	}
}

func TestStatusUnhealthy(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		set   func(f *fakeKMS)
		want  string
		keyID string
	}{
		{"disabled", func(f *fakeKMS) { f.state = types.KeyStateDisabled }, "is Disabled", fakeARN + "#m1"},
		{"pending deletion", func(f *fakeKMS) { f.state = types.KeyStatePendingDeletion }, "is PendingDeletion", fakeARN + "#m1"},
		{"endpoint down", func(f *fakeKMS) { f.fail = errors.New("connection refused") }, "DescribeKey: connection refused", "unknown"},
		{"no material id", func(f *fakeKMS) { f.material = "" }, "CurrentKeyMaterialId", "unknown"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, f, _ := newTestPlugin(t)
			f.set(tc.set)
			st, err := p.Status(ctx)
			if err != nil || st.Healthz == "ok" || !strings.Contains(st.Healthz, tc.want) || st.KeyID != tc.keyID || st.Version != "v2" {
				t.Fatalf("Status = %+v, %v; want healthz containing %q, key_id %q", st, err, tc.want, tc.keyID)
			}
		})
	}
}

func TestRPCError(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want codes.Code
	}{
		{&types.DisabledException{Message: aws.String("x")}, codes.FailedPrecondition},
		{&types.KMSInvalidStateException{}, codes.FailedPrecondition},
		{&types.NotFoundException{}, codes.FailedPrecondition},
		{&types.InvalidCiphertextException{}, codes.InvalidArgument},
		{&types.IncorrectKeyException{}, codes.InvalidArgument},
		{&smithy.GenericAPIError{Code: "ThrottlingException"}, codes.ResourceExhausted},
		{&types.KMSInternalException{}, codes.Unavailable},
		{&types.DependencyTimeoutException{}, codes.Unavailable},
		{&smithy.GenericAPIError{Code: "UnrecognizedClientException"}, codes.Unauthenticated},
		{&smithy.GenericAPIError{Code: "SomethingNew"}, codes.Internal},
		{errors.New("dial tcp: connection refused"), codes.Unavailable},
		{ErrNoMaterialID, codes.FailedPrecondition},
		{context.DeadlineExceeded, codes.DeadlineExceeded},
		{context.Canceled, codes.Canceled},
	} {
		if got := status.Code(rpcError("Encrypt", tc.err)); got != tc.want {
			t.Errorf("rpcError(%T %v) = %v, want %v", tc.err, tc.err, got, tc.want)
		}
	}
}

func TestListen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "kms.sock")
	ln, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode: %v, %v", fi, err)
	}
	if _, err := Listen(path); !errors.Is(err, ErrSocketInUse) {
		t.Fatalf("second Listen on a served socket: %v", err)
	}
	ln.Close()
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("socket left after Close: %v", err)
	}

	// A stale socket (its listener gone without unlinking) is replaced.
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()
	ln, err = Listen(path)
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	ln.Close()

	// Any other file is left alone.
	regular := filepath.Join(dir, "file")
	os.WriteFile(regular, nil, 0o600)
	if _, err := Listen(regular); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("Listen on a regular file: %v", err)
	}
}
