package hsmpool

import (
	"context"
	"crypto"
	_ "crypto/sha1" // OAEP hashes
	_ "crypto/sha256"
	_ "crypto/sha512"
	"crypto/subtle"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"

	"github.com/miekg/pkcs11"
)

// Key pairs made and used in the HSM. The private key is generated as a
// sensitive session object, wrapped by the domain key (C_WrapKey with the
// pool's wrap mechanism, PKCS#8 inside) and destroyed; only the wrapped
// form leaves the HSM. At use it is unwrapped into a sensitive,
// non-extractable session object of the keeper session and cached like
// Seal's keys.

// PKCS#11 3.0 values miekg/pkcs11 does not name.
const (
	ckmECEdwardsKeyPairGen = 0x1055
	ckmEdDSA               = 0x1057
	ckkECEdwards           = 0x40
)

// ErrUnsupported: the token lacks a mechanism or curve the request needs.
var ErrUnsupported = errors.New("hsmpool: the HSM does not support this key type or mechanism")

// KeyPairType names a kind of key pair.
type KeyPairType uint8

const (
	RSA     KeyPairType = iota + 1 // RSA with public exponent 65537
	EC                             // ECDSA/ECDH on a named curve
	Ed25519                        // EdDSA on edwards25519
)

// KeyUse is what a private key may do.
type KeyUse uint8

const (
	UseSign    KeyUse = iota + 1 // C_Sign
	UseDecrypt                   // C_Decrypt (RSA-OAEP)
	UseDerive                    // C_DeriveKey (ECDH)
)

// KeyPairSpec says which key pair to make.
type KeyPairSpec struct {
	Type  KeyPairType
	Bits  int                   // RSA modulus size
	Curve asn1.ObjectIdentifier // EC named curve
	Use   KeyUse
}

// PublicKey is the public half of a key pair as the HSM gives it: N and E
// for RSA (big-endian), the uncompressed point for EC, the 32-byte point
// for Ed25519.
type PublicKey struct {
	N, E  []byte
	Point []byte
}

var oidEd25519 = asn1.ObjectIdentifier{1, 3, 101, 112}

// kind returns the unwrap kind of a private key of this spec.
func (sp KeyPairSpec) kind() (keyKind, error) {
	switch {
	case sp.Type == RSA && sp.Use == UseSign:
		return kindRSASign, nil
	case sp.Type == RSA && sp.Use == UseDecrypt:
		return kindRSADecrypt, nil
	case sp.Type == EC && sp.Use == UseSign:
		return kindECSign, nil
	case sp.Type == EC && sp.Use == UseDerive:
		return kindECDerive, nil
	case sp.Type == Ed25519 && sp.Use == UseSign:
		return kindEdSign, nil
	}
	return 0, fmt.Errorf("hsmpool: no key pair of type %d for use %d", sp.Type, sp.Use)
}

// mechanisms lists the mechanisms a spec needs: key generation and use.
func (sp KeyPairSpec) mechanisms() []uint {
	switch sp.Type {
	case RSA:
		use := uint(pkcs11.CKM_RSA_PKCS_PSS)
		if sp.Use == UseDecrypt {
			use = pkcs11.CKM_RSA_PKCS_OAEP
		}
		return []uint{pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN, pkcs11.CKM_RSA_PKCS, use}
	case EC:
		use := uint(pkcs11.CKM_ECDSA)
		if sp.Use == UseDerive {
			use = pkcs11.CKM_ECDH1_DERIVE
		}
		return []uint{pkcs11.CKM_EC_KEY_PAIR_GEN, use}
	case Ed25519:
		return []uint{ckmECEdwardsKeyPairGen, ckmEdDSA}
	}
	return nil
}

// Supports reports whether the token has the mechanisms spec needs (a
// curve may still be refused at generation: ErrUnsupported).
func (p *Pool) Supports(spec KeyPairSpec) bool {
	if _, err := spec.kind(); err != nil {
		return false
	}
	for _, m := range spec.mechanisms() {
		if !p.mechs[m] {
			return false
		}
	}
	return true
}

// useAttributes allow a private key's one operation and forbid the
// others (tokens may default them to true).
func (k keyKind) useAttributes() []*pkcs11.Attribute {
	return []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_SIGN, k == kindRSASign || k == kindECSign || k == kindEdSign),
		pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, k == kindRSADecrypt),
		pkcs11.NewAttribute(pkcs11.CKA_DERIVE, k == kindECDerive),
	}
}

func (k keyKind) keyType() uint {
	switch k {
	case kindRSASign, kindRSADecrypt:
		return pkcs11.CKK_RSA
	case kindECSign, kindECDerive:
		return pkcs11.CKK_EC
	}
	return ckkECEdwards
}

// privateTemplate is the unwrap template of a private key kind.
func (k keyKind) privateTemplate(exportable bool) []*pkcs11.Attribute {
	return append([]*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, k.keyType()),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, !exportable),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, exportable),
	}, k.useAttributes()...)
}

// GenerateWrappedKeyPair makes a key pair of spec in the HSM and returns
// the private key wrapped by the domain key, and the public key. Returns
// ErrUnsupported if the token lacks the mechanism or the curve.
func (p *Pool) GenerateWrappedKeyPair(ctx context.Context, spec KeyPairSpec) ([]byte, PublicKey, error) {
	var pub PublicKey
	if !p.Supports(spec) {
		return nil, pub, ErrUnsupported
	}
	kind, _ := spec.kind()
	var mech uint
	var pubT []*pkcs11.Attribute
	switch spec.Type {
	case RSA:
		mech = pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN
		pubT = []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_MODULUS_BITS, spec.Bits),
			pkcs11.NewAttribute(pkcs11.CKA_PUBLIC_EXPONENT, []byte{1, 0, 1}),
		}
	case EC, Ed25519:
		mech = pkcs11.CKM_EC_KEY_PAIR_GEN
		curve := spec.Curve
		if spec.Type == Ed25519 {
			mech, curve = ckmECEdwardsKeyPairGen, oidEd25519
		}
		params, err := asn1.Marshal(curve)
		if err != nil {
			return nil, pub, err
		}
		pubT = []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, params)}
	}
	pubT = append(pubT, pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false))
	privT := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
		// Extractable only so that C_WrapKey accepts it.
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, true),
	}
	privT = append(privT, kind.useAttributes()...)
	var wrapped []byte
	err := p.retry(ctx, func() error {
		return p.Do(ctx, func(s *Session) error {
			dk, err := p.domainKey(s.handle)
			if err != nil {
				return err
			}
			ph, kh, err := s.ctx.GenerateKeyPair(s.handle, []*pkcs11.Mechanism{pkcs11.NewMechanism(mech, nil)}, pubT, privT)
			if err != nil {
				if code, ok := rv(err); ok && (code == pkcs11.CKR_CURVE_NOT_SUPPORTED || code == pkcs11.CKR_DOMAIN_PARAMS_INVALID ||
					code == pkcs11.CKR_MECHANISM_INVALID || code == pkcs11.CKR_ATTRIBUTE_VALUE_INVALID || code == pkcs11.CKR_TEMPLATE_INCONSISTENT) {
					return fmt.Errorf("%w: %v", ErrUnsupported, err)
				}
				return fmt.Errorf("hsmpool: generate key pair: %w", err)
			}
			defer func() {
				if s.ctx.DestroyObject(s.handle, kh) != nil || s.ctx.DestroyObject(s.handle, ph) != nil {
					s.reset = true // the objects die with the session at the latest
				}
			}()
			if pub, err = p.readPublic(s, ph, spec.Type); err != nil {
				return err
			}
			w, err := s.ctx.WrapKey(s.handle, []*pkcs11.Mechanism{pkcs11.NewMechanism(p.wrapMech, nil)}, dk, kh)
			if isRV(err, pkcs11.CKR_KEY_NOT_WRAPPABLE) {
				// SoftHSM2 2.6 cannot wrap EdDSA private keys.
				return fmt.Errorf("%w: the token cannot wrap this private key: %v", ErrUnsupported, err)
			}
			if err != nil {
				p.forgetDomainKey(err)
				return fmt.Errorf("hsmpool: wrap private key: %w", err)
			}
			wrapped = w
			return nil
		})
	})
	return wrapped, pub, err
}

func (p *Pool) readPublic(s *Session, h pkcs11.ObjectHandle, t KeyPairType) (PublicKey, error) {
	var pub PublicKey
	if t == RSA {
		a, err := s.ctx.GetAttributeValue(s.handle, h, []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_MODULUS, nil), pkcs11.NewAttribute(pkcs11.CKA_PUBLIC_EXPONENT, nil)})
		if err != nil || len(a) != 2 {
			return pub, fmt.Errorf("hsmpool: read RSA public key: %v", err)
		}
		pub.N, pub.E = a[0].Value, a[1].Value
		return pub, nil
	}
	a, err := s.ctx.GetAttributeValue(s.handle, h, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_EC_POINT, nil)})
	if err != nil || len(a) != 1 {
		return pub, fmt.Errorf("hsmpool: read EC public key: %v", err)
	}
	// CKA_EC_POINT is a DER OCTET STRING holding the point (SoftHSM2 does
	// so for Edwards keys too); accept a bare point as well.
	var point []byte
	if rest, err := asn1.Unmarshal(a[0].Value, &point); err == nil && len(rest) == 0 {
		pub.Point = point
	} else {
		pub.Point = a[0].Value
	}
	return pub, nil
}

// withPrivate runs fn with the unwrapped private key of wrapped bound to
// nothing yet; fn must start and finish its operation on s.
func (p *Pool) withPrivate(ctx context.Context, wrapped []byte, spec KeyPairSpec, fn func(s *Session, h pkcs11.ObjectHandle) error) error {
	kind, err := spec.kind()
	if err != nil {
		return err
	}
	if ctx == nil {
		ctx = context.Background()
	}
	return p.withKeyKind(ctx, wrapped, kind, func(s *Session, e *keyEntry) error {
		p.genMu.RLock()
		defer p.genMu.RUnlock()
		if e.gen != p.gen {
			return errStale
		}
		return fn(s, e.h)
	})
}

func (p *Pool) sign(ctx context.Context, wrapped []byte, spec KeyPairSpec, mech *pkcs11.Mechanism, data []byte) ([]byte, error) {
	var out []byte
	err := p.withPrivate(ctx, wrapped, spec, func(s *Session, h pkcs11.ObjectHandle) error {
		if err := s.ctx.SignInit(s.handle, []*pkcs11.Mechanism{mech}, h); err != nil {
			return fmt.Errorf("hsmpool: sign: %w", err)
		}
		sig, err := s.ctx.Sign(s.handle, data)
		if err != nil {
			return fmt.Errorf("hsmpool: sign: %w", err)
		}
		out = sig
		return nil
	})
	return out, err
}

// DigestInfo prefixes of PKCS #1 v1.5 signatures (RFC 8017 §9.2).
var digestInfo = map[crypto.Hash][]byte{
	crypto.SHA256: {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20},
	crypto.SHA384: {0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00, 0x04, 0x30},
	crypto.SHA512: {0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03, 0x05, 0x00, 0x04, 0x40},
}

var hashMechs = map[crypto.Hash][2]uint{
	crypto.SHA1:   {pkcs11.CKM_SHA_1, pkcs11.CKG_MGF1_SHA1},
	crypto.SHA256: {pkcs11.CKM_SHA256, pkcs11.CKG_MGF1_SHA256},
	crypto.SHA384: {pkcs11.CKM_SHA384, pkcs11.CKG_MGF1_SHA384},
	crypto.SHA512: {pkcs11.CKM_SHA512, pkcs11.CKG_MGF1_SHA512},
}

// SignRSA signs digest (made with hash) with the RSA private key wrapped
// in wrapped: RSASSA-PSS with a salt as long as the digest when pss, else
// RSASSA-PKCS1-v1_5.
func (p *Pool) SignRSA(ctx context.Context, wrapped []byte, bits int, hash crypto.Hash, pss bool, digest []byte) ([]byte, error) {
	hm, ok := hashMechs[hash]
	if !ok || len(digest) != hash.Size() {
		return nil, fmt.Errorf("hsmpool: SignRSA: bad hash or digest length")
	}
	spec := KeyPairSpec{Type: RSA, Bits: bits, Use: UseSign}
	if pss {
		return p.sign(ctx, wrapped, spec, pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS_PSS, pkcs11.NewPSSParams(hm[0], hm[1], uint(hash.Size()))), digest)
	}
	di, ok := digestInfo[hash]
	if !ok {
		return nil, fmt.Errorf("hsmpool: SignRSA: no DigestInfo for %v", hash)
	}
	return p.sign(ctx, wrapped, spec, pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS, nil), append(append([]byte{}, di...), digest...))
}

// SignECDSA signs digest with the EC private key wrapped in wrapped and
// returns the signature DER-encoded (RFC 3279: SEQUENCE of r and s).
func (p *Pool) SignECDSA(ctx context.Context, wrapped []byte, digest []byte) ([]byte, error) {
	rs, err := p.sign(ctx, wrapped, KeyPairSpec{Type: EC, Use: UseSign}, pkcs11.NewMechanism(pkcs11.CKM_ECDSA, nil), digest)
	if err != nil {
		return nil, err
	}
	if len(rs) == 0 || len(rs)%2 != 0 {
		return nil, fmt.Errorf("hsmpool: ECDSA signature of %d bytes", len(rs))
	}
	n := len(rs) / 2
	return asn1.Marshal(struct{ R, S *big.Int }{new(big.Int).SetBytes(rs[:n]), new(big.Int).SetBytes(rs[n:])})
}

// SignEd25519 signs msg with pure Ed25519 (RFC 8032) with the private key
// wrapped in wrapped.
func (p *Pool) SignEd25519(ctx context.Context, wrapped []byte, msg []byte) ([]byte, error) {
	return p.sign(ctx, wrapped, KeyPairSpec{Type: Ed25519, Use: UseSign}, pkcs11.NewMechanism(ckmEdDSA, nil), msg)
}

// DecryptOAEP decrypts an RSAES-OAEP ciphertext (MGF1 with the same hash,
// empty label) with the RSA private key wrapped in wrapped. Where the token
// refuses CKM_RSA_PKCS_OAEP with hash (SoftHSM2 2.6 knows only SHA-1), the
// HSM does the raw RSA decryption (CKM_RSA_X_509) and the OAEP decoding is
// done here. A ciphertext that does not decrypt gives ErrAuthFailed.
func (p *Pool) DecryptOAEP(ctx context.Context, wrapped []byte, bits int, hash crypto.Hash, ct []byte) ([]byte, error) {
	hm, ok := hashMechs[hash]
	if !ok {
		return nil, fmt.Errorf("hsmpool: DecryptOAEP: no OAEP with %v", hash)
	}
	k := (bits + 7) / 8
	if len(ct) != k {
		return nil, fmt.Errorf("%w: ciphertext of %d bytes for a %d-bit key", ErrAuthFailed, len(ct), bits)
	}
	var out []byte
	err := p.withPrivate(ctx, wrapped, KeyPairSpec{Type: RSA, Bits: bits, Use: UseDecrypt}, func(s *Session, h pkcs11.ObjectHandle) error {
		raw := false
		params := pkcs11.NewOAEPParams(hm[0], hm[1], pkcs11.CKZ_DATA_SPECIFIED, nil)
		err := s.ctx.DecryptInit(s.handle, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS_OAEP, params)}, h)
		if code, ok := rv(err); ok && (code == pkcs11.CKR_MECHANISM_PARAM_INVALID || code == pkcs11.CKR_ARGUMENTS_BAD) && p.mechs[pkcs11.CKM_RSA_X_509] {
			raw = true
			err = s.ctx.DecryptInit(s.handle, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_RSA_X_509, nil)}, h)
		}
		if err != nil {
			return fmt.Errorf("hsmpool: decrypt: %w", err)
		}
		pt, err := s.ctx.Decrypt(s.handle, ct)
		switch {
		case err == nil:
		case authFailure(err):
			return fmt.Errorf("%w (%v)", ErrAuthFailed, err)
		default:
			return fmt.Errorf("hsmpool: decrypt: %w", err)
		}
		if raw {
			em := make([]byte, k)
			if len(pt) > k {
				clear(pt)
				return fmt.Errorf("%w: raw RSA output too long", ErrAuthFailed)
			}
			copy(em[k-len(pt):], pt)
			clear(pt)
			pt, err = oaepDecode(hash, em)
			clear(em)
			if err != nil {
				return err
			}
		}
		out = pt
		return nil
	})
	return out, err
}

// oaepDecode is EME-OAEP decoding (RFC 8017 §7.1.2 step 3) with an empty
// label. Its running time does not depend on where the check fails.
func oaepDecode(hash crypto.Hash, em []byte) ([]byte, error) {
	hLen := hash.Size()
	k := len(em)
	if k < 2*hLen+2 {
		return nil, ErrAuthFailed
	}
	lh := hash.New()
	lHash := lh.Sum(nil)
	firstByteIsZero := subtle.ConstantTimeByteEq(em[0], 0)
	seed := em[1 : hLen+1]
	db := em[hLen+1:]
	mgf1XOR(seed, hash, db)
	mgf1XOR(db, hash, seed)
	lHash2Good := subtle.ConstantTimeCompare(lHash, db[:hLen])
	// db = lHash' || PS || 0x01 || M, PS zero bytes.
	var lookingForIndex, index, invalid int
	lookingForIndex = 1
	rest := db[hLen:]
	for i := 0; i < len(rest); i++ {
		equals0 := subtle.ConstantTimeByteEq(rest[i], 0)
		equals1 := subtle.ConstantTimeByteEq(rest[i], 1)
		index = subtle.ConstantTimeSelect(lookingForIndex&equals1, i, index)
		lookingForIndex = subtle.ConstantTimeSelect(equals1, 0, lookingForIndex)
		invalid = subtle.ConstantTimeSelect(lookingForIndex&^equals0, 1, invalid)
	}
	if firstByteIsZero&lHash2Good&^invalid&^lookingForIndex != 1 {
		return nil, ErrAuthFailed
	}
	return append([]byte(nil), rest[index+1:]...), nil
}

// mgf1XOR XORs out with MGF1(seed) using hash.
func mgf1XOR(out []byte, hash crypto.Hash, seed []byte) {
	var counter [4]byte
	done := 0
	for done < len(out) {
		h := hash.New()
		h.Write(seed)
		h.Write(counter[:])
		digest := h.Sum(nil)
		for i := 0; i < len(digest) && done < len(out); i++ {
			out[done] ^= digest[i]
			done++
		}
		for i := 3; i >= 0; i-- {
			counter[i]++
			if counter[i] != 0 {
				break
			}
		}
	}
}

// DeriveECDH derives the ECDH shared secret (the x-coordinate, size bytes)
// of the EC private key wrapped in wrapped and the peer's uncompressed
// point. The secret leaves the HSM: it is the operation's result.
func (p *Pool) DeriveECDH(ctx context.Context, wrapped []byte, peerPoint []byte, size int) ([]byte, error) {
	var out []byte
	err := p.withPrivate(ctx, wrapped, KeyPairSpec{Type: EC, Use: UseDerive}, func(s *Session, h pkcs11.ObjectHandle) error {
		mech := pkcs11.NewMechanism(pkcs11.CKM_ECDH1_DERIVE, pkcs11.NewECDH1DeriveParams(pkcs11.CKD_NULL, nil, peerPoint))
		sh, err := s.ctx.DeriveKey(s.handle, []*pkcs11.Mechanism{mech}, h, []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
			pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_GENERIC_SECRET),
			pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, size),
			pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false),
			pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, false),
			pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, true),
		})
		if err != nil {
			return fmt.Errorf("hsmpool: derive: %w", err)
		}
		defer func() {
			if s.ctx.DestroyObject(s.handle, sh) != nil {
				s.reset = true
			}
		}()
		a, err := s.ctx.GetAttributeValue(s.handle, sh, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_VALUE, nil)})
		if err != nil || len(a) != 1 {
			return fmt.Errorf("hsmpool: read derived secret: %v", err)
		}
		out = a[0].Value
		return nil
	})
	return out, err
}
