package bench

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// IdealServer is the ideal twin of a kmsd node: a fasthttp server that does
// the wire work kmsd does for the operations kmsbench sends (X-Amz-Target
// dispatch, JSON decode, base64, AES-256-GCM, JSON encode) with an
// in-process key, no HSM and no SigV4 check. Its throughput is the ceiling a
// kmsd run is compared with.
//
// It answers GenerateDataKey, GenerateDataKeyWithoutPlaintext, Encrypt,
// Decrypt, CreateKey and DescribeKey. Every key id exists; an alias is
// treated as a key id. Blobs are
//
//	0x01 | len(keyId) (1 byte) | keyId | nonce (12) | AES-256-GCM ciphertext | tag (16)
//
// with AAD = header (0x01 | len | keyId) | the canonical encryption context (as
// kmsd's). Requests need an Authorization header but any value passes.
//
// An IdealServer is safe for concurrent use. After Close it must not be used.
type IdealServer struct {
	aead   cipher.AEAD
	srv    *fasthttp.Server
	reqID  atomic.Uint64
	prefix string // request id prefix, random per server

	mu     sync.Mutex
	closed bool
	lns    []net.Listener
}

// ErrServerClosed is returned by Serve after Close.
var ErrServerClosed = errors.New("bench: ideal server closed")

const (
	idealRegion  = "us-east-1"
	idealAccount = "111122223333"
	idealARN     = "arn:aws:kms:" + idealRegion + ":" + idealAccount + ":key/"
	blobFormat   = 0x01
	nonceSize    = 12
	tagSize      = 16
)

// NewIdealServer returns an IdealServer with a fresh random AES-256 key.
func NewIdealServer() *IdealServer {
	key := make([]byte, 32)
	rand.Read(key)
	block, err := aes.NewCipher(key)
	if err != nil {
		panic(err) // a 32-byte key cannot fail
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		panic(err)
	}
	var p [4]byte
	rand.Read(p[:])
	s := &IdealServer{aead: aead, prefix: strconv.FormatUint(uint64(binary.BigEndian.Uint32(p[:])), 16) + "-"}
	s.srv = &fasthttp.Server{
		Handler:               s.Handler,
		Name:                  "kmsbench-ideal",
		NoDefaultServerHeader: true,
		ReadTimeout:           time.Minute,
		IdleTimeout:           time.Minute,
	}
	return s
}

// Serve answers connections from ln until Close, and closes ln. It returns
// nil when Close stops it, ErrServerClosed (at once) if Close came first.
func (s *IdealServer) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	s.lns = append(s.lns, ln)
	s.mu.Unlock()
	err := s.srv.Serve(ln)
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return nil
	}
	return err
}

// Close stops the listeners and closes connections, waiting up to five
// seconds for requests in flight.
func (s *IdealServer) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	lns := s.lns
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.srv.ShutdownWithContext(ctx)
	for _, ln := range lns {
		ln.Close() // may already be closed by Shutdown
	}
	return err
}

// Wire types, with AWS's field names. []byte fields are base64 on the wire.
type (
	idealGDKRequest struct {
		KeyId             string            `json:"KeyId"`
		KeySpec           string            `json:"KeySpec"`
		NumberOfBytes     *int              `json:"NumberOfBytes"`
		EncryptionContext map[string]string `json:"EncryptionContext"`
		GrantTokens       []string          `json:"GrantTokens"`
		DryRun            bool              `json:"DryRun"`
	}
	idealGDKResponse struct {
		CiphertextBlob []byte `json:"CiphertextBlob"`
		Plaintext      []byte `json:"Plaintext,omitempty"`
		KeyId          string `json:"KeyId"`
	}
	idealEncryptRequest struct {
		KeyId               string            `json:"KeyId"`
		Plaintext           []byte            `json:"Plaintext"`
		EncryptionContext   map[string]string `json:"EncryptionContext"`
		EncryptionAlgorithm string            `json:"EncryptionAlgorithm"`
		GrantTokens         []string          `json:"GrantTokens"`
		DryRun              bool              `json:"DryRun"`
	}
	idealEncryptResponse struct {
		CiphertextBlob      []byte `json:"CiphertextBlob"`
		KeyId               string `json:"KeyId"`
		EncryptionAlgorithm string `json:"EncryptionAlgorithm"`
	}
	idealDecryptRequest struct {
		CiphertextBlob      []byte            `json:"CiphertextBlob"`
		KeyId               string            `json:"KeyId"`
		EncryptionContext   map[string]string `json:"EncryptionContext"`
		EncryptionAlgorithm string            `json:"EncryptionAlgorithm"`
		GrantTokens         []string          `json:"GrantTokens"`
		DryRun              bool              `json:"DryRun"`
	}
	idealDecryptResponse struct {
		KeyId               string `json:"KeyId"`
		Plaintext           []byte `json:"Plaintext"`
		EncryptionAlgorithm string `json:"EncryptionAlgorithm"`
	}
	idealKeyRequest struct {
		KeyId       string `json:"KeyId"`
		Description string `json:"Description"`
	}
	idealKeyMetadata struct {
		AWSAccountId          string   `json:"AWSAccountId"`
		KeyId                 string   `json:"KeyId"`
		Arn                   string   `json:"Arn"`
		CreationDate          float64  `json:"CreationDate"`
		Enabled               bool     `json:"Enabled"`
		Description           string   `json:"Description"`
		KeyUsage              string   `json:"KeyUsage"`
		KeyState              string   `json:"KeyState"`
		Origin                string   `json:"Origin"`
		KeyManager            string   `json:"KeyManager"`
		CustomerMasterKeySpec string   `json:"CustomerMasterKeySpec"`
		KeySpec               string   `json:"KeySpec"`
		EncryptionAlgorithms  []string `json:"EncryptionAlgorithms"`
		MultiRegion           bool     `json:"MultiRegion"`
	}
	idealKeyResponse struct {
		KeyMetadata idealKeyMetadata `json:"KeyMetadata"`
	}
	idealError struct {
		Type    string `json:"__type"`
		Message string `json:"message"`
	}
)

// Handler serves one request. It is exported so that benchmarks can call it
// in-process, without sockets.
func (s *IdealServer) Handler(ctx *fasthttp.RequestCtx) {
	ctx.Response.Header.SetContentType("application/x-amz-json-1.1")
	ctx.Response.Header.Set("x-amzn-RequestId", s.prefix+strconv.FormatUint(s.reqID.Add(1), 16))
	if len(ctx.Request.Header.Peek("Authorization")) == 0 {
		s.fail(ctx, 400, "MissingAuthenticationTokenException", "Missing Authentication Token")
		return
	}
	target := ctx.Request.Header.Peek("X-Amz-Target")
	op, ok := bytes.CutPrefix(target, []byte("TrentService."))
	if !ctx.IsPost() || !ok {
		s.fail(ctx, 400, "UnknownOperationException", "")
		return
	}
	switch string(op) {
	case OpGenerateDataKey:
		s.generateDataKey(ctx, true)
	case OpGenerateDataKeyWithoutPlaintext:
		s.generateDataKey(ctx, false)
	case OpEncrypt:
		s.encrypt(ctx)
	case OpDecrypt:
		s.decrypt(ctx)
	case "CreateKey", "DescribeKey":
		s.describeKey(ctx, string(op) == "CreateKey")
	default:
		s.fail(ctx, 400, "UnknownOperationException", "")
	}
}

func (s *IdealServer) fail(ctx *fasthttp.RequestCtx, status int, typ, msg string) {
	ctx.SetStatusCode(status)
	b, _ := json.Marshal(idealError{Type: typ, Message: msg})
	ctx.SetBody(b)
}

func (s *IdealServer) decode(ctx *fasthttp.RequestCtx, v any) bool {
	if err := json.Unmarshal(ctx.PostBody(), v); err != nil {
		s.fail(ctx, 400, "SerializationException", "Start of structure or map found where not expected.")
		return false
	}
	return true
}

func (s *IdealServer) reply(ctx *fasthttp.RequestCtx, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		s.fail(ctx, 500, "KMSInternalException", "")
		return
	}
	ctx.SetBody(b)
}

// keyIDOf returns the key id in a key ARN, or id itself.
func keyIDOf(id string) string {
	if i := strings.Index(id, ":key/"); i >= 0 && strings.HasPrefix(id, "arn:") {
		return id[i+len(":key/"):]
	}
	return id
}

func (s *IdealServer) generateDataKey(ctx *fasthttp.RequestCtx, withPlaintext bool) {
	var in idealGDKRequest
	if !s.decode(ctx, &in) {
		return
	}
	n := 0
	switch {
	case in.KeySpec != "" && in.NumberOfBytes != nil:
		s.fail(ctx, 400, "ValidationException", "KeySpec and NumberOfBytes are mutually exclusive")
		return
	case in.KeySpec == "AES_256":
		n = 32
	case in.KeySpec == "AES_128":
		n = 16
	case in.NumberOfBytes != nil && *in.NumberOfBytes >= 1 && *in.NumberOfBytes <= 1024:
		n = *in.NumberOfBytes
	default:
		s.fail(ctx, 400, "ValidationException", "1 validation error detected: KeySpec or NumberOfBytes is required")
		return
	}
	id := keyIDOf(in.KeyId)
	if !validKeyID(id) {
		s.fail(ctx, 400, "ValidationException", "1 validation error detected: Value at 'keyId' failed to satisfy constraint")
		return
	}
	dk := make([]byte, n)
	rand.Read(dk)
	out := idealGDKResponse{CiphertextBlob: s.seal(id, dk, in.EncryptionContext), KeyId: idealARN + id}
	if withPlaintext {
		out.Plaintext = dk
	}
	s.reply(ctx, &out)
}

func (s *IdealServer) encrypt(ctx *fasthttp.RequestCtx) {
	var in idealEncryptRequest
	if !s.decode(ctx, &in) {
		return
	}
	id := keyIDOf(in.KeyId)
	if !validKeyID(id) || len(in.Plaintext) < 1 || len(in.Plaintext) > 4096 {
		s.fail(ctx, 400, "ValidationException", "1 validation error detected: Value at 'plaintext' or 'keyId' failed to satisfy constraint")
		return
	}
	s.reply(ctx, &idealEncryptResponse{
		CiphertextBlob:      s.seal(id, in.Plaintext, in.EncryptionContext),
		KeyId:               idealARN + id,
		EncryptionAlgorithm: "SYMMETRIC_DEFAULT",
	})
}

func (s *IdealServer) decrypt(ctx *fasthttp.RequestCtx) {
	var in idealDecryptRequest
	if !s.decode(ctx, &in) {
		return
	}
	if len(in.CiphertextBlob) < 1 || len(in.CiphertextBlob) > 6144 {
		s.fail(ctx, 400, "ValidationException", "1 validation error detected: Value at 'ciphertextBlob' failed to satisfy constraint")
		return
	}
	id, pt, ok := s.open(in.CiphertextBlob, in.EncryptionContext)
	if !ok {
		s.fail(ctx, 400, "InvalidCiphertextException", "")
		return
	}
	s.reply(ctx, &idealDecryptResponse{KeyId: idealARN + id, Plaintext: pt, EncryptionAlgorithm: "SYMMETRIC_DEFAULT"})
}

func (s *IdealServer) describeKey(ctx *fasthttp.RequestCtx, create bool) {
	var in idealKeyRequest
	if !s.decode(ctx, &in) {
		return
	}
	id := keyIDOf(in.KeyId)
	if create {
		id = newUUID()
	} else if !validKeyID(id) {
		s.fail(ctx, 400, "ValidationException", "1 validation error detected: Value at 'keyId' failed to satisfy constraint")
		return
	}
	s.reply(ctx, &idealKeyResponse{KeyMetadata: idealKeyMetadata{
		AWSAccountId:          idealAccount,
		KeyId:                 id,
		Arn:                   idealARN + id,
		CreationDate:          float64(time.Now().UnixMilli()) / 1e3,
		Enabled:               true,
		Description:           in.Description,
		KeyUsage:              "ENCRYPT_DECRYPT",
		KeyState:              "Enabled",
		Origin:                "AWS_KMS",
		KeyManager:            "CUSTOMER",
		CustomerMasterKeySpec: "SYMMETRIC_DEFAULT",
		KeySpec:               "SYMMETRIC_DEFAULT",
		EncryptionAlgorithms:  []string{"SYMMETRIC_DEFAULT"},
	}})
}

func validKeyID(id string) bool { return len(id) >= 1 && len(id) <= 255 }

// seal returns a blob of plaintext under the server's key.
func (s *IdealServer) seal(keyID string, plaintext []byte, ectx map[string]string) []byte {
	hlen := 2 + len(keyID)
	blob := make([]byte, hlen+nonceSize, hlen+nonceSize+len(plaintext)+tagSize)
	blob[0], blob[1] = blobFormat, byte(len(keyID))
	copy(blob[2:], keyID)
	nonce := blob[hlen : hlen+nonceSize]
	rand.Read(nonce)
	return s.aead.Seal(blob, nonce, plaintext, appendContext(blob[:hlen:hlen], ectx))
}

// open returns the key id and plaintext of blob, or false if the blob is
// malformed, tampered with, or the context differs.
func (s *IdealServer) open(blob []byte, ectx map[string]string) (string, []byte, bool) {
	if len(blob) < 2 || blob[0] != blobFormat {
		return "", nil, false
	}
	hlen := 2 + int(blob[1])
	if len(blob) < hlen+nonceSize+tagSize {
		return "", nil, false
	}
	aad := appendContext(append([]byte(nil), blob[:hlen]...), ectx)
	pt, err := s.aead.Open(nil, blob[hlen:hlen+nonceSize], blob[hlen+nonceSize:], aad)
	if err != nil {
		return "", nil, false
	}
	return string(blob[2:hlen]), pt, true
}

// appendContext appends the canonical encryption context, as kmsd does:
// the pair count, then the pairs sorted by key, each string uvarint-length
// prefixed.
func appendContext(dst []byte, ectx map[string]string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(ectx)))
	if len(ectx) == 0 {
		return dst
	}
	keys := make([]string, 0, len(ectx))
	for k := range ectx {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := ectx[k]
		dst = binary.AppendUvarint(dst, uint64(len(k)))
		dst = append(dst, k...)
		dst = binary.AppendUvarint(dst, uint64(len(v)))
		dst = append(dst, v...)
	}
	return dst
}

// newUUID returns a random (version 4) UUID string.
func newUUID() string {
	var u [16]byte
	rand.Read(u[:])
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	const hex = "0123456789abcdef"
	b := make([]byte, 0, 36)
	for i, c := range u {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			b = append(b, '-')
		}
		b = append(b, hex[c>>4], hex[c&0x0f])
	}
	return string(b)
}
