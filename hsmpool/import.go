package hsmpool

import (
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"

	"github.com/miekg/pkcs11"
)

// Imported key material (AWS KMS GetParametersForImport/ImportKeyMaterial).
//
// GenerateImportKey makes an RSA wrapping key pair in the HSM and returns
// the public half and the private half wrapped by the domain key
// (CKM_AES_KEY_WRAP_PAD over the token's PKCS#8 encoding). The wrapped
// private key goes into the replicated state, so that every node, each
// with its own HSM holding the same domain key, can unwrap it into a
// short-lived session object: the private key never exists outside an HSM.
//
// ImportKeyMaterial unwraps the customer's encrypted material with that
// private key inside the HSM and returns the material wrapped by the domain
// key, like GenerateWrappedKey does for generated material. With
// CKM_RSA_PKCS_OAEP and SHA-1 the material (or, for RSA_AES_KEY_WRAP, the
// ephemeral AES key) is unwrapped straight into a sensitive HSM object.
// Tokens that refuse OAEP with SHA-256 (SoftHSM2 2.6 accepts only SHA-1)
// get a fallback: the raw RSA private-key operation (CKM_RSA_X_509) runs in
// the HSM, the OAEP decoding in Go, and the decoded key is handed to the
// HSM as a sensitive session object at once and zeroed in memory.

// ImportAlgorithm is a wrapping algorithm of imported key material.
type ImportAlgorithm uint8

const (
	ImportOAEPSHA1         ImportAlgorithm = iota + 1 // RSAES_OAEP_SHA_1
	ImportOAEPSHA256                                  // RSAES_OAEP_SHA_256
	ImportRSAAESWrapSHA1                              // RSA_AES_KEY_WRAP_SHA_1
	ImportRSAAESWrapSHA256                            // RSA_AES_KEY_WRAP_SHA_256
)

// ErrMaterialSize: imported key material unwrapped but is not of the
// length the key needs.
var ErrMaterialSize = errors.New("hsmpool: imported key material has the wrong length")

// GenerateImportKey makes an RSA key pair of bits (2048, 3072 or 4096) in
// the HSM and returns its public half (DER SubjectPublicKeyInfo) and its
// private half wrapped by the domain key. Both HSM objects are destroyed
// before it returns.
func (p *Pool) GenerateImportKey(ctx context.Context, bits int) (pubDER, wrappedPriv []byte, err error) {
	if bits != 2048 && bits != 3072 && bits != 4096 {
		return nil, nil, fmt.Errorf("hsmpool: import key of %d bits", bits)
	}
	if p.wrapMech != pkcs11.CKM_AES_KEY_WRAP_PAD {
		return nil, nil, errors.New("hsmpool: imported key material needs CKM_AES_KEY_WRAP_PAD")
	}
	err = p.retry(ctx, func() error {
		return p.Do(ctx, func(s *Session) error {
			dk, err := p.domainKey(s.handle)
			if err != nil {
				return err
			}
			pubT := []*pkcs11.Attribute{
				pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false),
				pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, true),
				pkcs11.NewAttribute(pkcs11.CKA_MODULUS_BITS, bits),
				pkcs11.NewAttribute(pkcs11.CKA_PUBLIC_EXPONENT, []byte{1, 0, 1}),
			}
			privT := []*pkcs11.Attribute{
				pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false),
				pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
				pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
				// Extractable only so that C_WrapKey accepts it.
				pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, true),
				pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, true),
				pkcs11.NewAttribute(pkcs11.CKA_UNWRAP, true),
			}
			pub, priv, err := s.ctx.GenerateKeyPair(s.handle,
				[]*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN, nil)}, pubT, privT)
			if err != nil {
				return fmt.Errorf("hsmpool: generate import key: %w", err)
			}
			defer s.destroy(pub)
			defer s.destroy(priv)
			attrs, err := s.ctx.GetAttributeValue(s.handle, pub, []*pkcs11.Attribute{
				pkcs11.NewAttribute(pkcs11.CKA_MODULUS, nil), pkcs11.NewAttribute(pkcs11.CKA_PUBLIC_EXPONENT, nil)})
			if err != nil {
				return fmt.Errorf("hsmpool: read import public key: %w", err)
			}
			pk := &rsa.PublicKey{N: new(big.Int).SetBytes(attrs[0].Value), E: int(new(big.Int).SetBytes(attrs[1].Value).Int64())}
			der, err := x509.MarshalPKIXPublicKey(pk)
			if err != nil {
				return fmt.Errorf("hsmpool: encode import public key: %w", err)
			}
			w, err := s.ctx.WrapKey(s.handle, []*pkcs11.Mechanism{pkcs11.NewMechanism(p.wrapMech, nil)}, dk, priv)
			if err != nil {
				p.forgetDomainKey(err)
				return fmt.Errorf("hsmpool: wrap import private key: %w", err)
			}
			pubDER, wrappedPriv = der, w
			return nil
		})
	})
	return pubDER, wrappedPriv, err
}

// destroy destroys a session object; a failure marks the session for
// reset (the object dies with the session at the latest).
func (s *Session) destroy(h pkcs11.ObjectHandle) {
	if err := s.ctx.DestroyObject(s.handle, h); err != nil {
		s.reset = true
	}
}

// ImportKeyMaterial unwraps encrypted (made with alg under the public half
// of wrappedPriv) in the HSM and returns the AES key material it holds,
// wrapped by the domain key. Material that does not unwrap (wrong wrapping
// key, algorithm or padding, tampered) gives ErrAuthFailed; material of
// another length than size bytes gives ErrMaterialSize. The same material
// always gives the same wrapped bytes (RFC 5649 is deterministic), which
// is what lets callers recognise a re-import.
func (p *Pool) ImportKeyMaterial(ctx context.Context, wrappedPriv []byte, alg ImportAlgorithm, encrypted []byte, size int) ([]byte, error) {
	if alg < ImportOAEPSHA1 || alg > ImportRSAAESWrapSHA256 {
		return nil, fmt.Errorf("hsmpool: unknown import algorithm %d", alg)
	}
	if len(wrappedPriv) == 0 || len(wrappedPriv) > 8192 || len(encrypted) == 0 || len(encrypted) > 8192 {
		return nil, fmt.Errorf("%w: import input of invalid length", ErrAuthFailed)
	}
	var out []byte
	err := p.retry(ctx, func() error {
		return p.Do(ctx, func(s *Session) error {
			w, err := p.importOn(s, wrappedPriv, alg, encrypted, size)
			out = w
			return err
		})
	})
	return out, err
}

func (p *Pool) importOn(s *Session, wrappedPriv []byte, alg ImportAlgorithm, encrypted []byte, size int) ([]byte, error) {
	dk, err := p.domainKey(s.handle)
	if err != nil {
		return nil, err
	}
	priv, err := s.ctx.UnwrapKey(s.handle, []*pkcs11.Mechanism{pkcs11.NewMechanism(p.wrapMech, nil)}, dk, wrappedPriv, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_RSA),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
		pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, true),
		pkcs11.NewAttribute(pkcs11.CKA_UNWRAP, true),
	})
	if err != nil {
		if handleBad(err) {
			p.forgetDomainKey(err)
			return nil, fmt.Errorf("hsmpool: unwrap import private key: %w", err)
		}
		return nil, fmt.Errorf("%w: import private key rejected (%v)", ErrAuthFailed, err)
	}
	defer s.destroy(priv)
	mod, err := s.ctx.GetAttributeValue(s.handle, priv, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_MODULUS, nil)})
	if err != nil {
		return nil, fmt.Errorf("hsmpool: read import key modulus: %w", err)
	}
	k := len(new(big.Int).SetBytes(mod[0].Value).Bytes())
	sha256Alg := alg == ImportOAEPSHA256 || alg == ImportRSAAESWrapSHA256

	var material pkcs11.ObjectHandle
	switch alg {
	case ImportOAEPSHA1, ImportOAEPSHA256:
		if len(encrypted) != k {
			return nil, fmt.Errorf("%w: encrypted material is %d bytes, the wrapping key's modulus %d", ErrAuthFailed, len(encrypted), k)
		}
		material, err = p.oaepUnwrap(s, priv, sha256Alg, encrypted, materialTemplate(false))
		if err != nil {
			return nil, err
		}
	default:
		// RSA-OAEP(ephemeral AES key) || RFC 5649 wrap of the material.
		if len(encrypted) <= k+8 {
			return nil, fmt.Errorf("%w: encrypted material is too short for RSA_AES_KEY_WRAP", ErrAuthFailed)
		}
		eph, err := p.oaepUnwrap(s, priv, sha256Alg, encrypted[:k], materialTemplate(true))
		if err != nil {
			return nil, err
		}
		defer s.destroy(eph)
		material, err = s.ctx.UnwrapKey(s.handle, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_WRAP_PAD, nil)},
			eph, encrypted[k:], materialTemplate(false))
		if err != nil {
			return nil, fmt.Errorf("%w: AES key wrap of the material does not open (%v)", ErrAuthFailed, err)
		}
	}
	defer s.destroy(material)
	w, err := s.ctx.WrapKey(s.handle, []*pkcs11.Mechanism{pkcs11.NewMechanism(p.wrapMech, nil)}, dk, material)
	if err != nil {
		p.forgetDomainKey(err)
		return nil, fmt.Errorf("hsmpool: wrap imported material: %w", err)
	}
	if err := p.checkMaterialSize(s, dk, material, w, size); err != nil {
		return nil, err
	}
	return w, nil
}

// checkMaterialSize checks that the unwrapped material is size bytes.
// SoftHSM2 leaves CKA_VALUE_LEN unset on unwrapped keys, so the length
// comes from the RFC 5649 wrap w (8 + size rounded up to 8) and, for sizes
// that are multiples of 8, from an RFC 3394 wrap, which only a multiple of
// 8 bytes passes: together they pin the length exactly.
func (p *Pool) checkMaterialSize(s *Session, dk, material pkcs11.ObjectHandle, w []byte, size int) error {
	vl, err := s.ctx.GetAttributeValue(s.handle, material, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, nil)})
	if err == nil && len(vl) == 1 {
		if n := new(big.Int).SetBytes(reverse(vl[0].Value)).Int64(); n != 0 && n != int64(size) {
			return fmt.Errorf("%w: %d bytes, want %d", ErrMaterialSize, n, size)
		}
	}
	if len(w) != 8+(size+7)/8*8 {
		return fmt.Errorf("%w: want %d bytes", ErrMaterialSize, size)
	}
	if size%8 == 0 {
		kw, err := s.ctx.WrapKey(s.handle, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_WRAP, nil)}, dk, material)
		clear(kw)
		if err != nil || len(kw) != size+8 {
			return fmt.Errorf("%w: want %d bytes", ErrMaterialSize, size)
		}
	}
	return nil
}

// materialTemplate is the template of an unwrapped AES key: imported
// material (extractable only under wrapping, to be wrapped by the domain
// key) or an ephemeral key-wrapping key.
func materialTemplate(unwrapper bool) []*pkcs11.Attribute {
	return []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, !unwrapper),
		pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, false),
		pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, false),
		pkcs11.NewAttribute(pkcs11.CKA_UNWRAP, unwrapper),
	}
}

// oaepUnwrap unwraps an RSA-OAEP ciphertext (MGF1 with the same hash, empty
// label) into a session object made from tmpl: with CKM_RSA_PKCS_OAEP when
// the token takes the parameters, else by the raw-RSA fallback.
func (p *Pool) oaepUnwrap(s *Session, priv pkcs11.ObjectHandle, useSHA256 bool, ct []byte, tmpl []*pkcs11.Attribute) (pkcs11.ObjectHandle, error) {
	params := pkcs11.NewOAEPParams(pkcs11.CKM_SHA_1, pkcs11.CKG_MGF1_SHA1, pkcs11.CKZ_DATA_SPECIFIED, nil)
	if useSHA256 {
		params = pkcs11.NewOAEPParams(pkcs11.CKM_SHA256, pkcs11.CKG_MGF1_SHA256, pkcs11.CKZ_DATA_SPECIFIED, nil)
	}
	h, err := s.ctx.UnwrapKey(s.handle, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS_OAEP, params)}, priv, ct, tmpl)
	if err == nil {
		return h, nil
	}
	if code, ok := rv(err); !ok || (code != pkcs11.CKR_ARGUMENTS_BAD && code != pkcs11.CKR_MECHANISM_PARAM_INVALID && code != pkcs11.CKR_MECHANISM_INVALID) {
		if sessionBad(err) {
			return 0, fmt.Errorf("hsmpool: unwrap imported key: %w", err)
		}
		return 0, fmt.Errorf("%w: RSA-OAEP unwrap failed (%v)", ErrAuthFailed, err)
	}
	// The token does not do this OAEP hash: raw RSA in the HSM, OAEP
	// decoding here.
	if err := s.ctx.DecryptInit(s.handle, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_RSA_X_509, nil)}, priv); err != nil {
		return 0, fmt.Errorf("hsmpool: raw RSA decrypt init: %w", err)
	}
	em, err := s.ctx.Decrypt(s.handle, ct)
	if err != nil {
		if sessionBad(err) {
			return 0, fmt.Errorf("hsmpool: raw RSA decrypt: %w", err)
		}
		return 0, fmt.Errorf("%w: RSA decrypt failed (%v)", ErrAuthFailed, err)
	}
	defer clear(em)
	hf := crypto.SHA1
	if useSHA256 {
		hf = crypto.SHA256
	}
	if len(em) < len(ct) { // a raw RSA result may come without its leading zeros
		em = append(make([]byte, len(ct)-len(em)), em...)
		defer clear(em)
	}
	key, err := oaepDecode(hf, em)
	if err != nil {
		return 0, fmt.Errorf("%w: RSA-OAEP padding is invalid", ErrAuthFailed)
	}
	defer clear(key)
	t := make([]*pkcs11.Attribute, 0, len(tmpl)+1)
	t = append(t, tmpl...)
	t = append(t, pkcs11.NewAttribute(pkcs11.CKA_VALUE, key))
	h, err = s.ctx.CreateObject(s.handle, t)
	clear(t[len(t)-1].Value)
	if err != nil {
		if sessionBad(err) {
			return 0, fmt.Errorf("hsmpool: create imported key object: %w", err)
		}
		return 0, fmt.Errorf("%w: imported key refused by the token (%v)", ErrAuthFailed, err)
	}
	return h, nil
}
