package hsmpool

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
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
// key, like GenerateWrappedKey (AES keys), GenerateWrappedSecret (HMAC
// secrets) and GenerateWrappedKeyPair (RSA and EC private keys, which
// arrive as PKCS#8 and are unwrapped by the token as CKO_PRIVATE_KEY
// objects) do for generated material. With CKM_RSA_PKCS_OAEP and SHA-1 the
// material (or, for RSA_AES_KEY_WRAP, the ephemeral AES key) is unwrapped
// straight into a sensitive HSM object. Tokens that refuse OAEP with
// SHA-256 (SoftHSM2 2.6 accepts only SHA-1) get a fallback: the raw RSA
// private-key operation (CKM_RSA_X_509) runs in the HSM, the OAEP decoding
// in Go, and the decoded key is handed to the HSM at once (wrapped in Go
// under a fresh AES key that the HSM then unwraps it with) and zeroed in
// memory.
//
// An imported private key is checked in the HSM before it is accepted: its
// modulus size or curve must be the requested one, and a signature it
// makes must verify under the public key kmsd derives for it (RSA: the
// modulus and exponent of the private key object; EC: the x-coordinate of
// ECDH with the curve's generator, and the y of the two candidates that
// verifies, checked by the HSM). A key whose parts do not agree fails
// there. (A multi-prime RSA key, which AWS refuses, passes on SoftHSM2: it
// signs correctly, and its primes cannot be counted from outside the HSM.)

// ImportAlgorithm is a wrapping algorithm of imported key material.
type ImportAlgorithm uint8

const (
	ImportOAEPSHA1         ImportAlgorithm = iota + 1 // RSAES_OAEP_SHA_1
	ImportOAEPSHA256                                  // RSAES_OAEP_SHA_256
	ImportRSAAESWrapSHA1                              // RSA_AES_KEY_WRAP_SHA_1
	ImportRSAAESWrapSHA256                            // RSA_AES_KEY_WRAP_SHA_256
)

var (
	// ErrMaterialSize: imported key material unwrapped but is not of the
	// length the key needs.
	ErrMaterialSize = errors.New("hsmpool: imported key material has the wrong length")
	// ErrMaterialInvalid: an imported private key unwrapped but is not a
	// valid key of the requested type, size or curve.
	ErrMaterialInvalid = errors.New("hsmpool: imported key material is not a valid key of the requested type")
)

// ImportTarget says what imported key material must be: an AES key
// (symmetric KMS keys) or, with Secret, a generic secret (HMAC keys), of
// Size bytes; or, when Pair.Type is RSA or EC, a PKCS#8 private key of
// that modulus size (Pair.Bits) or named curve (Pair.Curve).
//
// FingerprintKey, when set, is an AES key wrapped by the domain key
// (GenerateWrappedKey) that fingerprints symmetric material: the material
// is wrapped by it too (RFC 5649, deterministic) and Imported.Fingerprint is
// the SHA-256 of that. HSMs with different domain keys that hold the same
// fingerprint key (a multi-Region key's Regions) give the same
// fingerprint for the same material, which only their HSMs can compute.
type ImportTarget struct {
	Size           int
	Secret         bool
	Pair           KeyPairSpec
	FingerprintKey []byte
}

// Imported is what ImportKeyMaterial returns.
type Imported struct {
	Wrapped     []byte    // the material, wrapped by the domain key
	Public      PublicKey // the public half of an imported private key
	Fingerprint []byte    // see ImportTarget.FingerprintKey
}

func (t ImportTarget) private() bool { return t.Pair.Type != 0 }

// template is the unwrap template of the material: extractable only so
// that the domain key can wrap it; an imported private key may sign (and
// decrypt or derive) only for the checks, the session object is destroyed
// once wrapped and the use attributes are set anew at every unwrap.
func (t ImportTarget) template() []*pkcs11.Attribute {
	if !t.private() && !t.Secret {
		return materialTemplate(false)
	}
	class, kt := uint(pkcs11.CKO_SECRET_KEY), uint(pkcs11.CKK_GENERIC_SECRET)
	use := []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_SIGN, false)}
	switch t.Pair.Type {
	case RSA:
		class, kt = pkcs11.CKO_PRIVATE_KEY, pkcs11.CKK_RSA
		use = []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_SIGN, true), pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, true)}
	case EC:
		class, kt = pkcs11.CKO_PRIVATE_KEY, pkcs11.CKK_EC
		use = []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_SIGN, true), pkcs11.NewAttribute(pkcs11.CKA_DERIVE, true)}
	}
	return append([]*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, class),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, kt),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, true),
	}, use...)
}

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
// of wrappedPriv) in the HSM and returns the key material it holds, of the
// kind target says, wrapped by the domain key (and, for a private key, its
// public half). Material that does not unwrap (wrong wrapping key,
// algorithm or padding, tampered, not PKCS#8 of the key type) gives
// ErrAuthFailed; symmetric material of another length than target.Size
// gives ErrMaterialSize; a private key of another size or curve, or one
// whose parts do not agree, gives ErrMaterialInvalid. The same symmetric
// material always gives the same wrapped bytes (RFC 5649 is
// deterministic), which is what lets callers recognise a re-import.
func (p *Pool) ImportKeyMaterial(ctx context.Context, wrappedPriv []byte, alg ImportAlgorithm, encrypted []byte, target ImportTarget) (Imported, error) {
	var out Imported
	if alg < ImportOAEPSHA1 || alg > ImportRSAAESWrapSHA256 {
		return out, fmt.Errorf("hsmpool: unknown import algorithm %d", alg)
	}
	switch {
	case target.Pair.Type == RSA && (target.Pair.Bits < 2048 || target.Pair.Bits > 4096),
		target.Pair.Type == EC && ecCurve(target.Pair.Curve) == nil,
		target.Pair.Type != 0 && target.Pair.Type != RSA && target.Pair.Type != EC,
		!target.private() && (target.Size < 1 || target.Size > 128):
		return out, fmt.Errorf("hsmpool: import target %+v not supported", target)
	}
	if len(wrappedPriv) == 0 || len(wrappedPriv) > 8192 || len(encrypted) == 0 || len(encrypted) > 8192 {
		return out, fmt.Errorf("%w: import input of invalid length", ErrAuthFailed)
	}
	err := p.retry(ctx, func() error {
		return p.Do(ctx, func(s *Session) error {
			var err error
			out, err = p.importOn(s, wrappedPriv, alg, encrypted, target)
			return err
		})
	})
	return out, err
}

func (p *Pool) importOn(s *Session, wrappedPriv []byte, alg ImportAlgorithm, encrypted []byte, target ImportTarget) (Imported, error) {
	var out Imported
	dk, err := p.domainKey(s.handle)
	if err != nil {
		return out, err
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
			return out, fmt.Errorf("hsmpool: unwrap import private key: %w", err)
		}
		return out, fmt.Errorf("%w: import private key rejected (%v)", ErrAuthFailed, err)
	}
	defer s.destroy(priv)
	mod, err := s.ctx.GetAttributeValue(s.handle, priv, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_MODULUS, nil)})
	if err != nil {
		return out, fmt.Errorf("hsmpool: read import key modulus: %w", err)
	}
	k := len(new(big.Int).SetBytes(mod[0].Value).Bytes())
	sha256Alg := alg == ImportOAEPSHA256 || alg == ImportRSAAESWrapSHA256

	var material pkcs11.ObjectHandle
	switch alg {
	case ImportOAEPSHA1, ImportOAEPSHA256:
		if len(encrypted) != k {
			return out, fmt.Errorf("%w: encrypted material is %d bytes, the wrapping key's modulus %d", ErrAuthFailed, len(encrypted), k)
		}
		material, err = p.oaepUnwrap(s, priv, sha256Alg, encrypted, target.template())
		if err != nil {
			return out, err
		}
	default:
		// RSA-OAEP(ephemeral AES key) || RFC 5649 wrap of the material.
		if len(encrypted) <= k+8 {
			return out, fmt.Errorf("%w: encrypted material is too short for RSA_AES_KEY_WRAP", ErrAuthFailed)
		}
		eph, err := p.oaepUnwrap(s, priv, sha256Alg, encrypted[:k], materialTemplate(true))
		if err != nil {
			return out, err
		}
		defer s.destroy(eph)
		material, err = s.ctx.UnwrapKey(s.handle, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_WRAP_PAD, nil)},
			eph, encrypted[k:], target.template())
		if err != nil {
			return out, fmt.Errorf("%w: AES key wrap of the material does not open, or holds no key of the type (%v)", ErrAuthFailed, err)
		}
	}
	defer s.destroy(material)
	w, err := s.ctx.WrapKey(s.handle, []*pkcs11.Mechanism{pkcs11.NewMechanism(p.wrapMech, nil)}, dk, material)
	if err != nil {
		p.forgetDomainKey(err)
		return out, fmt.Errorf("hsmpool: wrap imported material: %w", err)
	}
	out.Wrapped = w
	if len(target.FingerprintKey) > 0 && !target.private() {
		if out.Fingerprint, err = p.fingerprint(s, dk, target.FingerprintKey, material); err != nil {
			return out, err
		}
	}
	if target.private() {
		out.Public, err = p.checkImportedPrivate(s, material, target.Pair)
		return out, err
	}
	return out, p.checkMaterialSize(s, dk, material, w, target.Size)
}

// fingerprint wraps material with the fingerprint key fpWrapped (see
// ImportTarget) and returns the SHA-256 of the result.
func (p *Pool) fingerprint(s *Session, dk pkcs11.ObjectHandle, fpWrapped []byte, material pkcs11.ObjectHandle) ([]byte, error) {
	fp, err := s.ctx.UnwrapKey(s.handle, []*pkcs11.Mechanism{pkcs11.NewMechanism(p.wrapMech, nil)}, dk, fpWrapped, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
		pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, false),
		pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, false),
		pkcs11.NewAttribute(pkcs11.CKA_WRAP, true),
	})
	if err != nil {
		if sessionBad(err) {
			return nil, fmt.Errorf("hsmpool: unwrap fingerprint key: %w", err)
		}
		return nil, fmt.Errorf("%w: fingerprint key rejected (%v)", ErrAuthFailed, err)
	}
	defer s.destroy(fp)
	w, err := s.ctx.WrapKey(s.handle, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_WRAP_PAD, nil)}, fp, material)
	if err != nil {
		return nil, fmt.Errorf("hsmpool: fingerprint imported material: %w", err)
	}
	sum := sha256.Sum256(w)
	clear(w)
	return sum[:], nil
}

// checkMaterialSize checks that the unwrapped material is size bytes.
// SoftHSM2 leaves CKA_VALUE_LEN unset on unwrapped keys, so the length
// comes from the RFC 5649 wrap w (8 + size rounded up to 8) and, for sizes
// that are multiples of 8, from an RFC 3394 wrap, which a token that
// refuses to wrap other lengths only passes with a multiple of 8 bytes.
// SoftHSM2 2.6 zero-pads a generic secret for RFC 3394, so with it the
// length of HMAC material is pinned only to its block of 8 (25 to 32 bytes
// for HMAC_224 and HMAC_256): PKCS#11 offers no way to learn a sensitive
// object's exact length that SoftHSM2 implements.
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
	return p.createViaWrap(s, key, tmpl)
}

// createViaWrap puts key (plaintext in memory: the OAEP fallback's output)
// into the HSM as an object of tmpl: it wraps key under a fresh AES key in
// Go (RFC 5649), creates that AES key in the HSM as a sensitive unwrapping
// key and unwraps there, so the token parses the key as it parses any
// unwrapped one (a PKCS#8 private key too). The caller zeroes key.
func (p *Pool) createViaWrap(s *Session, key []byte, tmpl []*pkcs11.Attribute) (pkcs11.ObjectHandle, error) {
	kek := make([]byte, 32)
	defer clear(kek)
	if _, err := rand.Read(kek); err != nil {
		return 0, fmt.Errorf("hsmpool: random: %w", err)
	}
	wrapped, err := WrapPad(kek, key)
	if err != nil {
		return 0, fmt.Errorf("%w: %v", ErrAuthFailed, err)
	}
	t := append(materialTemplate(true), pkcs11.NewAttribute(pkcs11.CKA_VALUE, kek))
	ek, err := s.ctx.CreateObject(s.handle, t)
	clear(t[len(t)-1].Value)
	if err != nil {
		return 0, fmt.Errorf("hsmpool: create import key-wrapping key: %w", err)
	}
	defer s.destroy(ek)
	h, err := s.ctx.UnwrapKey(s.handle, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_WRAP_PAD, nil)}, ek, wrapped, tmpl)
	if err != nil {
		if sessionBad(err) {
			return 0, fmt.Errorf("hsmpool: create imported key object: %w", err)
		}
		return 0, fmt.Errorf("%w: imported key refused by the token (%v)", ErrAuthFailed, err)
	}
	return h, nil
}
