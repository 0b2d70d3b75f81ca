package kmsplugin

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/smithy-go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	kmsapi "k8s.io/kms/apis/v2"
	"k8s.io/kms/pkg/service"
)

// Version is the KMS plugin API version Status reports.
const Version = "v2"

// DefaultKeyIDTTL is how long Encrypt reuses a key id when Config.KeyIDTTL is 0.
const DefaultKeyIDTTL = 10 * time.Second

// contextKey and contextValue form the encryption context of every
// ciphertext the plugin makes. Changing them makes existing ciphertexts
// undecryptable.
const (
	contextKey   = "kmsd.io/k8s-kms-plugin"
	contextValue = "v2"
)

// probe is what Status encrypts and decrypts to prove the endpoint works.
var probe = []byte("kmsd k8s-kms-plugin status probe")

var (
	// ErrNoMaterialID means DescribeKey returned no CurrentKeyMaterialId,
	// so rotation could not be told apart (the endpoint is too old).
	ErrNoMaterialID = errors.New("kmsplugin: DescribeKey returned no CurrentKeyMaterialId")
	// ErrSocketInUse means another process is serving on the socket path.
	ErrSocketInUse = errors.New("kmsplugin: another process is serving on the socket")
)

// API is the part of the AWS KMS API the plugin calls. *kms.Client
// implements it; tests inject faults through it.
type API interface {
	Encrypt(ctx context.Context, in *kms.EncryptInput, optFns ...func(*kms.Options)) (*kms.EncryptOutput, error)
	Decrypt(ctx context.Context, in *kms.DecryptInput, optFns ...func(*kms.Options)) (*kms.DecryptOutput, error)
	DescribeKey(ctx context.Context, in *kms.DescribeKeyInput, optFns ...func(*kms.Options)) (*kms.DescribeKeyOutput, error)
}

var _ API = (*kms.Client)(nil)

// Config configures a Plugin. Zero values mean defaults.
type Config struct {
	KMS      API           // required: the KMS endpoint's client
	KeyID    string        // required: key id, key ARN, alias name or alias ARN
	KeyIDTTL time.Duration // how long Encrypt reuses a key id; 0 = DefaultKeyIDTTL
	Logger   *slog.Logger  // nil = discard
}

// Validate reports the first field of c that is not usable.
func (c Config) Validate() error {
	switch {
	case c.KMS == nil:
		return errors.New("kmsplugin: Config.KMS is required")
	case strings.TrimSpace(c.KeyID) == "":
		return errors.New("kmsplugin: Config.KeyID is required")
	case c.KeyIDTTL < 0:
		return fmt.Errorf("kmsplugin: Config.KeyIDTTL %v is negative", c.KeyIDTTL)
	}
	return nil
}

// Plugin is a k8s.io/kms v2 Service backed by an AWS KMS key. It is safe
// for concurrent use.
type Plugin struct {
	kms API
	key string
	ttl time.Duration
	log *slog.Logger
	now func() time.Time // a seam for TTL tests

	mu  sync.Mutex
	cur keyVersion // zero until the first DescribeKey
}

var _ service.Service = (*Plugin)(nil)

// keyVersion is one DescribeKey answer.
type keyVersion struct {
	arn      string
	material string
	state    types.KeyState
	at       time.Time
}

// id is the key_id reported to the apiserver.
func (k keyVersion) id() string { return k.arn + "#" + k.material }

// New returns a Plugin for cfg. It makes no call: the endpoint may come up
// after the plugin, and Status says so meanwhile.
func New(cfg Config) (*Plugin, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	p := &Plugin{kms: cfg.KMS, key: cfg.KeyID, ttl: cfg.KeyIDTTL, log: cfg.Logger, now: time.Now}
	if p.ttl == 0 {
		p.ttl = DefaultKeyIDTTL
	}
	if p.log == nil {
		p.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return p, nil
}

// GRPCServer returns a gRPC server with the KMS v2 service of p registered.
// The caller serves it on a listener (see Listen) and stops it.
func (p *Plugin) GRPCServer(opts ...grpc.ServerOption) *grpc.Server {
	s := grpc.NewServer(opts...)
	// The address and timeout of NewGRPCService only matter to its own
	// ListenAndServe, which is not used: the caller owns the listener.
	kmsapi.RegisterKeyManagementServiceServer(s, service.NewGRPCService("", 0, p))
	return s
}

func encryptionContext() map[string]string { return map[string]string{contextKey: contextValue} }

// Encrypt encrypts data (the apiserver's DEK or DEK seed) under the
// configured key and reports the key_id of the key's current material.
func (p *Plugin) Encrypt(ctx context.Context, uid string, data []byte) (*service.EncryptResponse, error) {
	p.log.Debug("encrypt", "uid", uid, "bytes", len(data))
	kv, err := p.current(ctx)
	if err != nil {
		return nil, rpcError("DescribeKey", err)
	}
	out, err := p.kms.Encrypt(ctx, &kms.EncryptInput{
		KeyId:             aws.String(p.key),
		Plaintext:         data,
		EncryptionContext: encryptionContext(),
	})
	if err != nil {
		return nil, rpcError("Encrypt", err)
	}
	if aws.ToString(out.KeyId) != kv.arn {
		// The alias now names another key: the cached id is stale.
		if kv, err = p.refresh(ctx); err != nil {
			return nil, rpcError("DescribeKey", err)
		}
	}
	return &service.EncryptResponse{Ciphertext: out.CiphertextBlob, KeyID: kv.id()}, nil
}

// Decrypt decrypts a ciphertext made by Encrypt, under whichever material
// version made it. The key ARN in req.KeyID, when there is one, must name
// the key of the blob (IncorrectKeyException otherwise).
func (p *Plugin) Decrypt(ctx context.Context, uid string, req *service.DecryptRequest) ([]byte, error) {
	p.log.Debug("decrypt", "uid", uid, "key_id", req.KeyID)
	in := &kms.DecryptInput{CiphertextBlob: req.Ciphertext, EncryptionContext: encryptionContext()}
	if arn, _, ok := strings.Cut(req.KeyID, "#"); ok && strings.HasPrefix(arn, "arn:") {
		in.KeyId = aws.String(arn)
	}
	out, err := p.kms.Decrypt(ctx, in)
	if err != nil {
		return nil, rpcError("Decrypt", err)
	}
	return out.Plaintext, nil
}

// Status reports "ok" only if the key is Enabled and an Encrypt + Decrypt
// round trip through the endpoint succeeds; otherwise healthz is the
// reason. It never returns an error.
func (p *Plugin) Status(ctx context.Context) (*service.StatusResponse, error) {
	res := &service.StatusResponse{Version: Version, Healthz: "ok"}
	kv, err := p.refresh(ctx)
	if err != nil {
		res.KeyID = p.lastKeyID()
		res.Healthz = "DescribeKey: " + err.Error()
		p.log.Warn("status", "healthz", res.Healthz)
		return res, nil
	}
	res.KeyID = kv.id()
	if kv.state != types.KeyStateEnabled {
		res.Healthz = fmt.Sprintf("key %s is %s", kv.arn, kv.state)
		p.log.Warn("status", "healthz", res.Healthz)
		return res, nil
	}
	if err := p.roundTrip(ctx); err != nil {
		res.Healthz = err.Error()
		p.log.Warn("status", "healthz", res.Healthz)
	}
	return res, nil
}

func (p *Plugin) roundTrip(ctx context.Context) error {
	enc, err := p.kms.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(p.key), Plaintext: probe, EncryptionContext: encryptionContext()})
	if err != nil {
		return fmt.Errorf("Encrypt: %w", err)
	}
	dec, err := p.kms.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob, KeyId: enc.KeyId, EncryptionContext: encryptionContext()})
	if err != nil {
		return fmt.Errorf("Decrypt: %w", err)
	}
	if !bytes.Equal(dec.Plaintext, probe) {
		return errors.New("Decrypt returned other bytes than were encrypted")
	}
	return nil
}

// current returns the cached key version if it is younger than the TTL,
// otherwise a fresh one.
func (p *Plugin) current(ctx context.Context) (keyVersion, error) {
	p.mu.Lock()
	kv := p.cur
	p.mu.Unlock()
	if kv.arn != "" && p.now().Sub(kv.at) < p.ttl {
		return kv, nil
	}
	return p.refresh(ctx)
}

// refresh asks DescribeKey and caches the answer. Concurrent refreshes may
// each call DescribeKey; the newest answer wins.
func (p *Plugin) refresh(ctx context.Context) (keyVersion, error) {
	at := p.now()
	out, err := p.kms.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(p.key)})
	if err != nil {
		return keyVersion{}, err
	}
	md := out.KeyMetadata
	if md == nil || aws.ToString(md.Arn) == "" {
		return keyVersion{}, errors.New("kmsplugin: DescribeKey returned no KeyMetadata.Arn")
	}
	if aws.ToString(md.CurrentKeyMaterialId) == "" {
		return keyVersion{}, ErrNoMaterialID
	}
	kv := keyVersion{arn: *md.Arn, material: *md.CurrentKeyMaterialId, state: md.KeyState, at: at}
	p.mu.Lock()
	if !kv.at.Before(p.cur.at) {
		if p.cur.arn != "" && p.cur.id() != kv.id() {
			p.log.Info("key_id changed", "from", p.cur.id(), "to", kv.id())
		}
		p.cur = kv
	}
	p.mu.Unlock()
	return kv, nil
}

func (p *Plugin) lastKeyID() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cur.arn == "" {
		// The apiserver rejects an empty key_id; this one is never healthy.
		return "unknown"
	}
	return p.cur.id()
}

// rpcCodes maps AWS KMS error codes to gRPC codes; anything else from the
// endpoint is Internal, and anything that is not an AWS error (transport)
// is Unavailable.
var rpcCodes = map[string]codes.Code{
	"DisabledException":           codes.FailedPrecondition,
	"KMSInvalidStateException":    codes.FailedPrecondition,
	"NotFoundException":           codes.FailedPrecondition,
	"KeyUnavailableException":     codes.FailedPrecondition,
	"InvalidKeyUsageException":    codes.FailedPrecondition,
	"InvalidCiphertextException":  codes.InvalidArgument,
	"IncorrectKeyException":       codes.InvalidArgument,
	"ValidationException":         codes.InvalidArgument,
	"ThrottlingException":         codes.ResourceExhausted,
	"LimitExceededException":      codes.ResourceExhausted,
	"KMSInternalException":        codes.Unavailable,
	"DependencyTimeoutException":  codes.Unavailable,
	"UnrecognizedClientException": codes.Unauthenticated,
	"InvalidSignatureException":   codes.Unauthenticated,
	"AccessDeniedException":       codes.PermissionDenied,
}

// rpcError turns an error of KMS operation op into a gRPC status error.
func rpcError(op string, err error) error {
	code := codes.Unavailable
	var api smithy.APIError
	switch {
	case errors.As(err, &api):
		if c, ok := rpcCodes[api.ErrorCode()]; ok {
			code = c
		} else {
			code = codes.Internal
		}
	case errors.Is(err, ErrNoMaterialID):
		code = codes.FailedPrecondition
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	}
	return status.Errorf(code, "kmsd %s: %v", op, err)
}

// Listen opens the unix socket at path for the apiserver, owner-only (mode
// 0600; the directory should be private too, as the socket is created
// before its mode is set). A stale socket left by a process that died is
// removed; a socket another process still serves on is ErrSocketInUse, and
// any other file at path is an error. The socket is removed when the
// listener is closed.
func Listen(path string) (net.Listener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("kmsplugin: %s exists and is not a socket", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("%w: %s", ErrSocketInUse, path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("kmsplugin: removing stale socket: %w", err)
		}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("kmsplugin: socket directory: %w", err)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("kmsplugin: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("kmsplugin: %w", err)
	}
	return ln, nil
}
