package hsmpool

import (
	"bytes"
	"crypto"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/asn1"
	"fmt"
	"math/big"

	"github.com/miekg/pkcs11"
)

// Checks of imported private keys (see import.go).

// importCheckDigest is what an imported private key signs to show that it
// belongs to the public key derived for it.
var importCheckDigest = sha256.Sum256([]byte("kmsd: imported private key check"))

// ecCurveInfo is what the checks need of a named curve: y² = x³ + a·x + b
// over the prime p (a is -3 or 0), its generator and its field size.
type ecCurveInfo struct {
	p, b, gx, gy *big.Int
	aIsMinus3    bool
	size         int
}

var (
	oidNISTP256  = asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 7}
	oidNISTP384  = asn1.ObjectIdentifier{1, 3, 132, 0, 34}
	oidNISTP521  = asn1.ObjectIdentifier{1, 3, 132, 0, 35}
	oidSECP256K1 = asn1.ObjectIdentifier{1, 3, 132, 0, 10}
)

func hexInt(s string) *big.Int {
	n, _ := new(big.Int).SetString(s, 16)
	return n
}

// ecCurve returns the curve of an EC key pair spec's OID, or nil.
func ecCurve(oid asn1.ObjectIdentifier) *ecCurveInfo {
	nist := func(c elliptic.Curve) *ecCurveInfo {
		cp := c.Params()
		return &ecCurveInfo{p: cp.P, b: cp.B, gx: cp.Gx, gy: cp.Gy, aIsMinus3: true, size: (cp.BitSize + 7) / 8}
	}
	switch {
	case oid.Equal(oidNISTP256):
		return nist(elliptic.P256())
	case oid.Equal(oidNISTP384):
		return nist(elliptic.P384())
	case oid.Equal(oidNISTP521):
		return nist(elliptic.P521())
	case oid.Equal(oidSECP256K1): // SEC 2 §2.4.1
		return &ecCurveInfo{
			p:    hexInt("fffffffffffffffffffffffffffffffffffffffffffffffffffffffefffffc2f"),
			b:    big.NewInt(7),
			gx:   hexInt("79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"),
			gy:   hexInt("483ada7726a3c4655da4fbfc0e1108a8fd17b448a68554199c47d08ffb10d4b8"),
			size: 32,
		}
	}
	return nil
}

// point encodes (x, y) uncompressed.
func (c *ecCurveInfo) point(x, y *big.Int) []byte {
	out := make([]byte, 1+2*c.size)
	out[0] = 4
	x.FillBytes(out[1 : 1+c.size])
	y.FillBytes(out[1+c.size:])
	return out
}

// checkImportedPrivate checks the imported private key h against spec
// and returns its public key (see import.go).
func (p *Pool) checkImportedPrivate(s *Session, h pkcs11.ObjectHandle, spec KeyPairSpec) (PublicKey, error) {
	if spec.Type == RSA {
		return p.checkImportedRSA(s, h, spec.Bits)
	}
	return p.checkImportedEC(s, h, spec.Curve)
}

func (p *Pool) checkImportedRSA(s *Session, h pkcs11.ObjectHandle, bits int) (PublicKey, error) {
	pub, err := p.readPublic(s, h, RSA)
	if err != nil {
		return pub, err
	}
	n, e := new(big.Int).SetBytes(pub.N), new(big.Int).SetBytes(pub.E)
	if n.BitLen() != bits {
		return pub, fmt.Errorf("%w: a %d-bit RSA key, want %d bits", ErrMaterialInvalid, n.BitLen(), bits)
	}
	if !e.IsInt64() || e.Int64() < 3 || e.Int64() > 1<<31-1 || e.Bit(0) == 0 {
		return pub, fmt.Errorf("%w: RSA public exponent out of range", ErrMaterialInvalid)
	}
	msg := append(append([]byte{}, digestInfo[crypto.SHA256]...), importCheckDigest[:]...)
	sig, err := p.signWith(s, h, pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS, nil), msg)
	if err != nil {
		return pub, err
	}
	if rsa.VerifyPKCS1v15(&rsa.PublicKey{N: n, E: int(e.Int64())}, crypto.SHA256, importCheckDigest[:], sig) != nil {
		return pub, fmt.Errorf("%w: the RSA private key does not match its modulus", ErrMaterialInvalid)
	}
	return pub, nil
}

func (p *Pool) checkImportedEC(s *Session, h pkcs11.ObjectHandle, oid asn1.ObjectIdentifier) (PublicKey, error) {
	var pub PublicKey
	c := ecCurve(oid)
	want, err := asn1.Marshal(oid)
	if c == nil || err != nil {
		return pub, fmt.Errorf("hsmpool: curve %v not supported", oid)
	}
	a, err := s.ctx.GetAttributeValue(s.handle, h, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, nil)})
	if err != nil || len(a) != 1 {
		return pub, fmt.Errorf("hsmpool: read EC params: %v", err)
	}
	if !bytes.Equal(a[0].Value, want) {
		return pub, fmt.Errorf("%w: the EC key is not on the named curve %v", ErrMaterialInvalid, oid)
	}
	// x of d·G: ECDH with the generator. It is the public key's, not secret.
	mech := pkcs11.NewMechanism(pkcs11.CKM_ECDH1_DERIVE, pkcs11.NewECDH1DeriveParams(pkcs11.CKD_NULL, nil, c.point(c.gx, c.gy)))
	xh, err := s.ctx.DeriveKey(s.handle, []*pkcs11.Mechanism{mech}, h, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_GENERIC_SECRET),
		pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, c.size),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, false),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, true),
	})
	if err != nil {
		if sessionBad(err) {
			return pub, fmt.Errorf("hsmpool: derive public point: %w", err)
		}
		return pub, fmt.Errorf("%w: the EC key cannot derive its public point (%v)", ErrMaterialInvalid, err)
	}
	defer s.destroy(xh)
	xa, err := s.ctx.GetAttributeValue(s.handle, xh, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_VALUE, nil)})
	if err != nil || len(xa) != 1 {
		return pub, fmt.Errorf("hsmpool: read public x: %v", err)
	}
	x := new(big.Int).SetBytes(xa[0].Value)
	// y² = x³ + a·x + b
	rhs := new(big.Int).Exp(x, big.NewInt(3), c.p)
	if c.aIsMinus3 {
		rhs.Sub(rhs, new(big.Int).Mul(x, big.NewInt(3)))
	}
	rhs.Add(rhs, c.b).Mod(rhs, c.p)
	y := new(big.Int).ModSqrt(rhs, c.p)
	if x.Cmp(c.p) >= 0 || y == nil {
		return pub, fmt.Errorf("%w: the derived x is not on the curve", ErrMaterialInvalid)
	}
	sig, err := p.signWith(s, h, pkcs11.NewMechanism(pkcs11.CKM_ECDSA, nil), importCheckDigest[:])
	if err != nil {
		return pub, err
	}
	for _, yy := range []*big.Int{y, new(big.Int).Sub(c.p, y)} {
		pt := c.point(x, yy)
		ok, err := p.verifyECDSA(s, want, pt, importCheckDigest[:], sig)
		if err != nil {
			return pub, err
		}
		if ok {
			pub.Point = pt
			return pub, nil
		}
	}
	return pub, fmt.Errorf("%w: the EC private key's signature verifies under neither point", ErrMaterialInvalid)
}

// signWith signs data with h on s (an imported key's check).
func (p *Pool) signWith(s *Session, h pkcs11.ObjectHandle, mech *pkcs11.Mechanism, data []byte) ([]byte, error) {
	if err := s.ctx.SignInit(s.handle, []*pkcs11.Mechanism{mech}, h); err != nil {
		if sessionBad(err) {
			return nil, fmt.Errorf("hsmpool: sign: %w", err)
		}
		return nil, fmt.Errorf("%w: the imported key cannot sign (%v)", ErrMaterialInvalid, err)
	}
	sig, err := s.ctx.Sign(s.handle, data)
	if err != nil {
		if sessionBad(err) {
			return nil, fmt.Errorf("hsmpool: sign: %w", err)
		}
		return nil, fmt.Errorf("%w: the imported key cannot sign (%v)", ErrMaterialInvalid, err)
	}
	return sig, nil
}

// verifyECDSA reports whether sig (r‖s, as CKM_ECDSA makes it) verifies
// digest under the public point pt, in the HSM (a session object).
func (p *Pool) verifyECDSA(s *Session, params, pt, digest, sig []byte) (bool, error) {
	ptDER, err := asn1.Marshal(pt)
	if err != nil {
		return false, err
	}
	ph, err := s.ctx.CreateObject(s.handle, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PUBLIC_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_EC),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false),
		pkcs11.NewAttribute(pkcs11.CKA_VERIFY, true),
		pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, params),
		pkcs11.NewAttribute(pkcs11.CKA_EC_POINT, ptDER),
	})
	if err != nil {
		return false, fmt.Errorf("hsmpool: create public key object: %w", err)
	}
	defer s.destroy(ph)
	if err := s.ctx.VerifyInit(s.handle, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_ECDSA, nil)}, ph); err != nil {
		return false, fmt.Errorf("hsmpool: verify: %w", err)
	}
	err = s.ctx.Verify(s.handle, digest, sig)
	switch {
	case err == nil:
		return true, nil
	case isRV(err, pkcs11.CKR_SIGNATURE_INVALID), isRV(err, pkcs11.CKR_SIGNATURE_LEN_RANGE):
		return false, nil
	}
	return false, fmt.Errorf("hsmpool: verify: %w", err)
}
