package agent

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"sync"

	"github.com/kmsd/kmsd/cluster"
	"github.com/kmsd/kmsd/hsmpool"
)

// invalidCiphertext is the one answer to every blob that does not open:
// tampered, truncated, foreign, wrong context. It says nothing more, so it
// is no oracle.
var invalidCiphertext = &APIError{Type: errInvalidCiphertext, Status: 400,
	Message: "The ciphertext is invalid, was not made by a key of this service, or the encryption context does not match."}

// seal encrypts plaintext under k's current material into a ciphertext
// blob (format 1). One HSM operation seals a fresh batch key; the
// plaintext is sealed by Go's AES-GCM under the batch key.
func (s *Server) seal(ctx context.Context, k *cluster.Key, plaintext []byte, ectx map[string]string) ([]byte, cluster.Material, error) {
	m, ok := k.CurrentMaterial()
	if !ok {
		return nil, m, errors.New("agent: key has no material")
	}
	out := make([]byte, 0, 2+len(k.ID)+4+blobMinSuffix+len(plaintext)+64)
	out = appendHeader(out, k.ID, m.Version)
	hlen := len(out)

	// The batch key may be shared with concurrent requests for the same key
	// and material (batch/), and with it the AES-GCM instance made from it;
	// index is unique among them, so the nonce derived from it never repeats
	// under one batch key.
	aead, wrapped, index, err := s.batch.NewAEAD(ctx, m.Wrapped, out[:hlen])
	if err != nil {
		return nil, m, err
	}
	if len(wrapped) != wrappedKeyLen {
		return nil, m, errors.New("agent: HSM returned a sealed batch key of unexpected size")
	}
	out = append(out, wrapped...)
	nonceAt := len(out)
	out = append(out, 0, 0, 0, 0, 0, 0, 0, 0)
	out = binary.BigEndian.AppendUint32(out, index)
	aad := appendContext(append(make([]byte, 0, hlen+64), out[:hlen]...), ectx)
	out = aead.Seal(out, out[nonceAt:nonceAt+gcmIVLen], plaintext, aad)
	if k.CustomKeyStoreID != "" {
		out, err = s.sealStore(ctx, k, out)
	}
	return out, m, err
}

// open decrypts a ciphertext blob. want, when non-nil, is the key the
// caller named: a blob of another key is IncorrectKeyException. Every
// malformed or unauthentic blob is InvalidCiphertextException.
//
// The caller of the blob's key is authorized with a (action defaults to
// the operation) once the key is known.
func (s *Server) open(r *request, a authReq, b []byte, ectx map[string]string, want *cluster.Key) (*cluster.Key, []byte, cluster.Material, error) {
	ctx, op := r.ctx, r.op
	layered := len(b) > 0 && b[0] == blobFormatStore
	if layered {
		inner, sk, err := s.openStore(r, a, b, want)
		if err != nil {
			return nil, nil, cluster.Material{}, err
		}
		b, want = inner, sk
	}
	p, err := parseBlob(b)
	if err != nil {
		return nil, nil, cluster.Material{}, invalidCiphertext
	}
	if want != nil && want.ID != p.keyID {
		return nil, nil, cluster.Material{}, apiErr(errIncorrectKey,
			"The key ID in the request does not identify a KMS key that can perform this operation.")
	}
	k, ok := s.node.Key(p.keyID)
	if !ok || (k.CustomKeyStoreID != "") != layered {
		// A key in a custom key store opens only through its store's layer.
		return nil, nil, cluster.Material{}, invalidCiphertext
	}
	if a.action == "" {
		a.action = op
	}
	a.key = k
	if err := s.authorize(r, a); err != nil {
		return nil, nil, cluster.Material{}, err
	}
	if err := s.checkKeyState(op, k); err != nil {
		return nil, nil, cluster.Material{}, err
	}
	if k.KeyUsage != usageEncryptDecrypt || k.KeySpec != specSymmetricDefault {
		return nil, nil, cluster.Material{}, invalidCiphertext
	}
	m, ok := k.MaterialVersion(p.version)
	if !ok {
		return nil, nil, cluster.Material{}, invalidCiphertext
	}
	bk, err := s.openBatchKey(ctx, k, m, p)
	if err != nil {
		if errors.Is(err, hsmpool.ErrAuthFailed) {
			return nil, nil, m, invalidCiphertext
		}
		return nil, nil, m, err
	}
	defer clear(bk)
	aead, err := newGCM(bk)
	if err != nil {
		return nil, nil, m, invalidCiphertext
	}
	aad := appendContext(append(make([]byte, 0, len(p.header)+64), p.header...), ectx)
	pt, err := aead.Open(nil, p.nonce, p.sealed, aad)
	if err != nil {
		return nil, nil, m, invalidCiphertext
	}
	return k, pt, m, nil
}

// openBatchKey returns the batch key of blob p: from the cache of unwrapped
// batch keys when it holds it, else from the HSM (coalesced by batch/).
// The caller owns the result and zeroes it.
//
// The cache is keyed by the blob's header and sealed batch key (so a hit
// needs the same blob prefix the HSM would have unsealed) and owned by the
// key, so a state change purges it; callers have already checked the key's
// state, and the body's GCM tag (with the caller's context) is still checked
// after a hit: a caller never gets what the HSM path would refuse it.
func (s *Server) openBatchKey(ctx context.Context, k *cluster.Key, m cluster.Material, p blob) ([]byte, error) {
	ck := make([]byte, 0, len(p.header)+len(p.wrapped))
	ck = append(append(ck, p.header...), p.wrapped...)
	if bk, ok := s.keyCache.Get(ck); ok {
		return bk, nil
	}
	bk, err := s.batch.OpenKey(ctx, m.Wrapped, p.wrapped, p.header)
	if err != nil {
		return nil, err
	}
	s.keyCache.Set(k.ID, ck, bk)
	return bk, nil
}

func newGCM(key []byte) (cipher.AEAD, error) {
	blk, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(blk)
}

// materialID is the KeyMaterialId AWS reports: 64 hex digits that name one
// version of a key's material without revealing it.
func materialID(m cluster.Material) string {
	if m.ID != "" { // a multi-Region replica reports its primary's id
		return m.ID
	}
	materialIDs.RLock()
	id, ok := materialIDs.m[string(m.Wrapped)]
	materialIDs.RUnlock()
	if ok {
		return id
	}
	h := sha256.Sum256(m.Wrapped)
	id = hex.EncodeToString(h[:])
	materialIDs.Lock()
	if len(materialIDs.m) >= maxMaterialIDs {
		clear(materialIDs.m)
	}
	materialIDs.m[string(m.Wrapped)] = id
	materialIDs.Unlock()
	return id
}

// materialIDs remembers materialID by wrapped material (not secret: the
// domain key wraps it), so the hot operations hash it once, not per
// request. It is a bounded memo: emptied when full.
var materialIDs = struct {
	sync.RWMutex
	m map[string]string
}{m: map[string]string{}}

const maxMaterialIDs = 4096
