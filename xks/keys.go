package xks

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"

	"github.com/miekg/pkcs11"

	"github.com/kmsd/kmsd/hsmpool"
)

// GCM sizes used by TokenKeys.
const (
	IVSize  = 12
	TagSize = 16
	keySize = 32
)

// TokenKeys keeps AES-256 keys as token objects on one PKCS#11 token, one
// per label, and runs AES-GCM with them in the HSM. Keys are generated in
// the HSM sensitive and non-extractable: their value never leaves it.
// Object handles are cached by label (FindObjects costs about 50 us on
// SoftHSM2) and looked up again when the HSM says a handle is gone.
type TokenKeys struct {
	pool *hsmpool.Pool

	mu      sync.Mutex
	handles map[string]pkcs11.ObjectHandle
}

// NewTokenKeys returns TokenKeys on pool's token. The pool stays the
// caller's.
func NewTokenKeys(pool *hsmpool.Pool) *TokenKeys {
	return &TokenKeys{pool: pool, handles: map[string]pkcs11.ObjectHandle{}}
}

// KeyInfo describes a token key.
type KeyInfo struct {
	Label   string
	Encrypt bool // CKA_ENCRYPT
	Decrypt bool // CKA_DECRYPT
	Wrap    bool // CKA_WRAP
	Unwrap  bool // CKA_UNWRAP
	Bits    int  // CKA_VALUE_LEN * 8
}

func findTemplate(label string) []*pkcs11.Attribute {
	return []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
	}
}

// find looks label up on the token with s.
func find(s *hsmpool.Session, label string) ([]pkcs11.ObjectHandle, error) {
	c, sh := s.Ctx(), s.Handle()
	if err := c.FindObjectsInit(sh, findTemplate(label)); err != nil {
		return nil, fmt.Errorf("xks: C_FindObjectsInit: %w", err)
	}
	objs, _, err := c.FindObjects(sh, 2)
	if ferr := c.FindObjectsFinal(sh); err == nil && ferr != nil {
		err = ferr
	}
	if err != nil {
		return nil, fmt.Errorf("xks: C_FindObjects: %w", err)
	}
	return objs, nil
}

// Create generates a new AES-256 token key labelled label. A second key
// with the same label gives ErrKeyExists.
func (t *TokenKeys) Create(ctx context.Context, label string) error {
	if label == "" || len(label) > 2048 {
		return fmt.Errorf("xks: key label must be 1 to 2048 bytes")
	}
	return t.pool.Do(ctx, func(s *hsmpool.Session) error {
		// Serialise find-then-create in this process.
		t.mu.Lock()
		defer t.mu.Unlock()
		objs, err := find(s, label)
		if err != nil {
			return err
		}
		if len(objs) > 0 {
			return fmt.Errorf("%w: %q", ErrKeyExists, label)
		}
		tmpl := []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
			pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
			pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, keySize),
			pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
			pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
			pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
			pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
			pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, true),
			pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, true),
			pkcs11.NewAttribute(pkcs11.CKA_WRAP, false),
			pkcs11.NewAttribute(pkcs11.CKA_UNWRAP, false),
			pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
			pkcs11.NewAttribute(pkcs11.CKA_ID, []byte(label)),
		}
		h, err := s.Ctx().GenerateKey(s.Handle(), []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_GEN, nil)}, tmpl)
		if err != nil {
			return fmt.Errorf("xks: C_GenerateKey: %w", err)
		}
		t.handles[label] = h
		return nil
	})
}

// Delete destroys the token key labelled label.
func (t *TokenKeys) Delete(ctx context.Context, label string) error {
	return t.pool.Do(ctx, func(s *hsmpool.Session) error {
		t.mu.Lock()
		defer t.mu.Unlock()
		delete(t.handles, label)
		objs, err := find(s, label)
		if err != nil {
			return err
		}
		if len(objs) == 0 {
			return fmt.Errorf("%w: %q", ErrKeyNotFound, label)
		}
		for _, h := range objs {
			if err := s.Ctx().DestroyObject(s.Handle(), h); err != nil {
				return fmt.Errorf("xks: C_DestroyObject: %w", err)
			}
		}
		return nil
	})
}

// handle returns label's object handle, from the cache or the token.
func (t *TokenKeys) handle(s *hsmpool.Session, label string) (pkcs11.ObjectHandle, error) {
	t.mu.Lock()
	h, ok := t.handles[label]
	t.mu.Unlock()
	if ok {
		return h, nil
	}
	objs, err := find(s, label)
	if err != nil {
		return 0, err
	}
	switch len(objs) {
	case 0:
		return 0, fmt.Errorf("%w: %q", ErrKeyNotFound, label)
	case 1:
	default:
		return 0, fmt.Errorf("xks: more than one token key labelled %q", label)
	}
	t.mu.Lock()
	t.handles[label] = objs[0]
	t.mu.Unlock()
	return objs[0], nil
}

func (t *TokenKeys) forget(label string) {
	t.mu.Lock()
	delete(t.handles, label)
	t.mu.Unlock()
}

// withKey runs op with label's handle, looking the key up again once if
// the cached handle turns out to be gone (key deleted, token re-inserted).
func (t *TokenKeys) withKey(ctx context.Context, label string, op func(s *hsmpool.Session, h pkcs11.ObjectHandle) error) error {
	var err error
	for attempt := 0; attempt < 2; attempt++ {
		err = t.pool.Do(ctx, func(s *hsmpool.Session) error {
			h, err := t.handle(s, label)
			if err != nil {
				return err
			}
			return op(s, h)
		})
		if !handleGone(err) {
			return err
		}
		t.forget(label)
	}
	if handleGone(err) {
		return fmt.Errorf("%w: %q", ErrKeyNotFound, label)
	}
	return err
}

func handleGone(err error) bool {
	var e pkcs11.Error
	if !errors.As(err, &e) {
		return false
	}
	switch uint(e) {
	case pkcs11.CKR_KEY_HANDLE_INVALID, pkcs11.CKR_OBJECT_HANDLE_INVALID:
		return true
	}
	return false
}

// Info reads label's attributes. An unknown label gives ErrKeyNotFound.
func (t *TokenKeys) Info(ctx context.Context, label string) (KeyInfo, error) {
	var ki KeyInfo
	err := t.withKey(ctx, label, func(s *hsmpool.Session, h pkcs11.ObjectHandle) error {
		attrs, err := s.Ctx().GetAttributeValue(s.Handle(), h, []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, nil),
			pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, nil),
			pkcs11.NewAttribute(pkcs11.CKA_WRAP, nil),
			pkcs11.NewAttribute(pkcs11.CKA_UNWRAP, nil),
			pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, nil),
		})
		if err != nil {
			return fmt.Errorf("xks: C_GetAttributeValue: %w", err)
		}
		ki = KeyInfo{Label: label}
		for _, a := range attrs {
			on := len(a.Value) == 1 && a.Value[0] != 0
			switch a.Type {
			case pkcs11.CKA_ENCRYPT:
				ki.Encrypt = on
			case pkcs11.CKA_DECRYPT:
				ki.Decrypt = on
			case pkcs11.CKA_WRAP:
				ki.Wrap = on
			case pkcs11.CKA_UNWRAP:
				ki.Unwrap = on
			case pkcs11.CKA_VALUE_LEN:
				n := 0
				for i := len(a.Value) - 1; i >= 0; i-- { // CK_ULONG, host byte order (little endian here)
					n = n<<8 | int(a.Value[i])
				}
				ki.Bits = n * 8
			}
		}
		return nil
	})
	return ki, err
}

// Encrypt runs AES-256-GCM in the HSM with label's key over plaintext,
// authenticating aad, with a fresh random 12-byte IV.
func (t *TokenKeys) Encrypt(ctx context.Context, label string, plaintext, aad []byte) (iv, ciphertext, tag []byte, err error) {
	err = t.withKey(ctx, label, func(s *hsmpool.Session, h pkcs11.ObjectHandle) error {
		iv = make([]byte, IVSize)
		_, _ = rand.Read(iv)
		params := pkcs11.NewGCMParams(iv, aad, TagSize*8)
		defer params.Free()
		if err := s.Ctx().EncryptInit(s.Handle(), []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_GCM, params)}, h); err != nil {
			return fmt.Errorf("xks: C_EncryptInit: %w", err)
		}
		out, err := s.Ctx().Encrypt(s.Handle(), plaintext)
		if err != nil {
			return fmt.Errorf("xks: C_Encrypt: %w", err)
		}
		if len(out) != len(plaintext)+TagSize {
			return fmt.Errorf("xks: HSM returned %d bytes for %d", len(out), len(plaintext))
		}
		if got := params.IV(); len(got) == IVSize {
			copy(iv, got)
		}
		ciphertext, tag = out[:len(plaintext):len(plaintext)], out[len(plaintext):]
		return nil
	})
	if err != nil {
		return nil, nil, nil, err
	}
	return iv, ciphertext, tag, nil
}

// Decrypt authenticates and decrypts in the HSM. Any mismatch (key, IV,
// AAD, tag, ciphertext) gives an error wrapping ErrAuthFailed. The
// plaintext belongs to the caller.
func (t *TokenKeys) Decrypt(ctx context.Context, label string, iv, ciphertext, tag, aad []byte) ([]byte, error) {
	if len(tag) != TagSize || (len(iv) != 12 && len(iv) != 16) {
		return nil, fmt.Errorf("%w: IV must be 12 or 16 bytes and the tag 16", ErrAuthFailed)
	}
	var pt []byte
	err := t.withKey(ctx, label, func(s *hsmpool.Session, h pkcs11.ObjectHandle) error {
		params := pkcs11.NewGCMParams(iv, aad, TagSize*8)
		defer params.Free()
		if err := s.Ctx().DecryptInit(s.Handle(), []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_GCM, params)}, h); err != nil {
			return fmt.Errorf("xks: C_DecryptInit: %w", err)
		}
		in := make([]byte, 0, len(ciphertext)+TagSize)
		in = append(append(in, ciphertext...), tag...)
		out, err := s.Ctx().Decrypt(s.Handle(), in)
		if err != nil {
			if handleGone(err) {
				return err
			}
			var e pkcs11.Error
			if errors.As(err, &e) {
				switch uint(e) {
				case pkcs11.CKR_ENCRYPTED_DATA_INVALID, pkcs11.CKR_ENCRYPTED_DATA_LEN_RANGE, pkcs11.CKR_DATA_INVALID,
					pkcs11.CKR_DATA_LEN_RANGE, pkcs11.CKR_GENERAL_ERROR, pkcs11.CKR_FUNCTION_FAILED:
					// SoftHSM2 answers CKR_GENERAL_ERROR for a tag mismatch.
					return fmt.Errorf("%w (%v)", ErrAuthFailed, err)
				}
			}
			return fmt.Errorf("xks: C_Decrypt: %w", err)
		}
		if len(out) != len(ciphertext) {
			clear(out)
			return fmt.Errorf("xks: HSM returned %d bytes for %d", len(out), len(ciphertext))
		}
		pt = out
		return nil
	})
	if err != nil {
		return nil, err
	}
	return pt, nil
}
