package agent

import (
	"context"
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"math/big"

	"filippo.io/mldsa"
	mldsax509 "filippo.io/mldsa/x509"
	"github.com/decred/dcrd/dcrec/secp256k1/v4"
	secpecdsa "github.com/decred/dcrd/dcrec/secp256k1/v4/ecdsa"
	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"

	"github.com/kmsd/kmsd/cluster"
	"github.com/kmsd/kmsd/hsmpool"
)

// Asymmetric and HMAC KMS keys (README "Asymmetric, HMAC and
// key-agreement keys").
//
// HMAC keys are made in the HSM and used there: Material.Wrapped is the
// secret wrapped by the domain key (hsmpool.GenerateWrappedSecret), and
// GenerateMac runs CKM_SHA*_HMAC on an unwrapped session object.
//
// Private keys of RSA, NIST-curve and secp256k1 KMS keys are made in the
// HSM where the token can (hsmpool.GenerateWrappedKeyPair): Material.Wrapped
// is the private key wrapped by the domain key, and every private-key
// operation runs in the HSM on an unwrapped session object.
//
// The other private keys (Ed25519, ML-DSA, SM2, and any the token cannot
// make or wrap) are generated in Go and stored sealed: Material.Wrapped is an AES-256 key made in the HSM and wrapped by
// the domain key (as for symmetric keys), Material.Sealed is the PKCS#8 DER
// private key sealed under it by the HSM's AES-GCM with the key id as AAD.
// An operation that needs the private key unseals it in the HSM, uses it in
// Go and zeroes the plaintext. Material.Public is the DER
// SubjectPublicKeyInfo; Verify, Encrypt and GetPublicKey use only that.

const (
	usageSignVerify   = "SIGN_VERIFY"
	usageMAC          = "GENERATE_VERIFY_MAC"
	usageKeyAgreement = "KEY_AGREEMENT"
)

type keyFamily uint8

const (
	famSymmetric keyFamily = iota
	famRSA
	famNIST      // ECC_NIST_P256/P384/P521
	famSECP256K1 // ECC_SECG_P256K1
	famEd25519
	famMLDSA
	famHMAC
	famSM2 // SM2 (sm2p256v1; github.com/emmansun/gmsm)
)

// specInfo describes one KeySpec: its key usages and, per usage, the
// algorithms AWS lists for it (DescribeKey, GetPublicKey).
type specInfo struct {
	family  keyFamily
	usages  []string
	bits    int            // RSA
	curve   elliptic.Curve // NIST curves and SM2
	sigAlgs []string
	encAlgs []string
	macAlgs []string
	mldsa   func() mldsa.Parameters
	hmac    int // hsmpool hash (SHA224...) of HMAC keys
	keyLen  int // HMAC key bytes
}

var (
	rsaSigAlgs = []string{"RSASSA_PSS_SHA_256", "RSASSA_PSS_SHA_384", "RSASSA_PSS_SHA_512",
		"RSASSA_PKCS1_V1_5_SHA_256", "RSASSA_PKCS1_V1_5_SHA_384", "RSASSA_PKCS1_V1_5_SHA_512"}
	rsaEncAlgs    = []string{"RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256"}
	ecdhAlgs      = []string{"ECDH"}
	usagesRSA     = []string{usageEncryptDecrypt, usageSignVerify}
	usagesNIST    = []string{usageSignVerify, usageKeyAgreement}
	usagesSign    = []string{usageSignVerify}
	usagesMAC     = []string{usageMAC}
	usagesSM2     = []string{usageEncryptDecrypt, usageSignVerify, usageKeyAgreement}
	usagesSymOnly = []string{usageEncryptDecrypt}
)

// specs lists every KeySpec kmsd makes.
var specs = map[string]specInfo{
	specSymmetricDefault:    {family: famSymmetric, usages: usagesSymOnly, encAlgs: []string{specSymmetricDefault}},
	"RSA_2048":              {family: famRSA, usages: usagesRSA, bits: 2048, sigAlgs: rsaSigAlgs, encAlgs: rsaEncAlgs},
	"RSA_3072":              {family: famRSA, usages: usagesRSA, bits: 3072, sigAlgs: rsaSigAlgs, encAlgs: rsaEncAlgs},
	"RSA_4096":              {family: famRSA, usages: usagesRSA, bits: 4096, sigAlgs: rsaSigAlgs, encAlgs: rsaEncAlgs},
	"ECC_NIST_P256":         {family: famNIST, usages: usagesNIST, curve: elliptic.P256(), sigAlgs: []string{"ECDSA_SHA_256"}},
	"ECC_NIST_P384":         {family: famNIST, usages: usagesNIST, curve: elliptic.P384(), sigAlgs: []string{"ECDSA_SHA_384"}},
	"ECC_NIST_P521":         {family: famNIST, usages: usagesNIST, curve: elliptic.P521(), sigAlgs: []string{"ECDSA_SHA_512"}},
	"ECC_SECG_P256K1":       {family: famSECP256K1, usages: usagesSign, sigAlgs: []string{"ECDSA_SHA_256"}},
	"ECC_NIST_EDWARDS25519": {family: famEd25519, usages: usagesSign, sigAlgs: []string{"ED25519_SHA_512", "ED25519_PH_SHA_512"}},
	"ML_DSA_44":             {family: famMLDSA, usages: usagesSign, sigAlgs: []string{"ML_DSA_SHAKE_256"}, mldsa: mldsa.MLDSA44},
	"ML_DSA_65":             {family: famMLDSA, usages: usagesSign, sigAlgs: []string{"ML_DSA_SHAKE_256"}, mldsa: mldsa.MLDSA65},
	"ML_DSA_87":             {family: famMLDSA, usages: usagesSign, sigAlgs: []string{"ML_DSA_SHAKE_256"}, mldsa: mldsa.MLDSA87},
	"HMAC_224":              {family: famHMAC, usages: usagesMAC, macAlgs: []string{"HMAC_SHA_224"}, hmac: hsmpool.SHA224, keyLen: 28},
	"HMAC_256":              {family: famHMAC, usages: usagesMAC, macAlgs: []string{"HMAC_SHA_256"}, hmac: hsmpool.SHA256, keyLen: 32},
	"HMAC_384":              {family: famHMAC, usages: usagesMAC, macAlgs: []string{"HMAC_SHA_384"}, hmac: hsmpool.SHA384, keyLen: 48},
	"HMAC_512":              {family: famHMAC, usages: usagesMAC, macAlgs: []string{"HMAC_SHA_512"}, hmac: hsmpool.SHA512, keyLen: 64},
	"SM2":                   {family: famSM2, usages: usagesSM2, curve: sm2.P256(), sigAlgs: []string{"SM2DSA"}, encAlgs: []string{"SM2PKE"}},
}

// checkSpecUsage validates a CreateKey's KeySpec and KeyUsage pair.
func checkSpecUsage(spec, usage string) error {
	info, ok := specs[spec]
	if !ok {
		return apiErr(errUnsupported, "KeySpec %s is not supported by kmsd (see the README).", spec)
	}
	if !oneOf(usage, info.usages) {
		return apiErr(errValidation, "KeyUsage %s is not compatible with KeySpec %s.", usage, spec)
	}
	return nil
}

// setAlgorithms fills the algorithm lists AWS reports for a key of spec
// and usage (DescribeKey's KeyMetadata and GetPublicKey).
func setAlgorithms(spec, usage string, enc, sig, mac, ka *[]string) {
	info := specs[spec]
	switch usage {
	case usageEncryptDecrypt:
		*enc = info.encAlgs
	case usageSignVerify:
		*sig = info.sigAlgs
	case usageMAC:
		*mac = info.macAlgs
	case usageKeyAgreement:
		*ka = ecdhAlgs
	}
}

// keyType is the key type UpdateAlias compares: symmetric, asymmetric
// (any key pair spec) or HMAC (any HMAC spec).
func keyType(spec string) string {
	switch specs[spec].family {
	case famSymmetric:
		return "symmetric"
	case famHMAC:
		return "hmac"
	}
	return "asymmetric"
}

// isAsymmetric reports whether spec names a key pair.
func isAsymmetric(spec string) bool {
	f := specs[spec].family
	return f != famSymmetric && f != famHMAC && spec != ""
}

// newMaterial makes the first key material of a new key id of spec and
// usage: in the HSM where the token can make and wrap that key pair
// (hsmSpec), else in Go, sealed by the HSM.
func (s *Server) newMaterial(ctx context.Context, id, spec, usage string, now int64) (cluster.Material, error) {
	info := specs[spec]
	switch info.family {
	case famSymmetric:
		w, err := s.pool.GenerateWrappedKey(ctx)
		return cluster.Material{Version: 1, Wrapped: w, Created: now}, err
	case famHMAC:
		w, err := s.pool.GenerateWrappedSecret(ctx, info.keyLen)
		return cluster.Material{Version: 1, Wrapped: w, Created: now, Form: cluster.MaterialHSMSecret}, err
	}
	if hs, ok := hsmSpec(spec, usage); ok && !s.cfg.SealKeyPairs && s.pool.Supports(hs) {
		w, pub, err := s.pool.GenerateWrappedKeyPair(ctx, hs)
		if err == nil {
			der, err := hsmPublicDER(spec, pub)
			if err != nil {
				return cluster.Material{}, err
			}
			return cluster.Material{Version: 1, Wrapped: w, Created: now, Form: cluster.MaterialHSMPrivate, Public: der}, nil
		}
		if !errors.Is(err, hsmpool.ErrUnsupported) {
			return cluster.Material{}, err
		}
		// The token has the mechanisms but refused the curve or the
		// wrap: make the key in Go, sealed by the HSM.
	}
	priv, pub, err := generateKeyPair(spec)
	if err != nil {
		return cluster.Material{}, err
	}
	defer clear(priv)
	w, err := s.pool.GenerateWrappedKey(ctx)
	if err != nil {
		return cluster.Material{}, err
	}
	sealed, err := s.pool.Seal(ctx, w, priv, privateKeyAAD(id))
	if err != nil {
		return cluster.Material{}, err
	}
	return cluster.Material{Version: 1, Wrapped: w, Created: now, Form: cluster.MaterialSealed, Sealed: sealed, Public: pub}, nil
}

var (
	oidP256 = asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 7}
	oidP384 = asn1.ObjectIdentifier{1, 3, 132, 0, 34}
	oidP521 = asn1.ObjectIdentifier{1, 3, 132, 0, 35}
)

// hsmSpec is the HSM key pair of a key spec and usage, for the specs whose
// private key can live in the HSM: RSA, the NIST curves and secp256k1.
// Ed25519 (SoftHSM2 2.6 cannot wrap EdDSA keys), ML-DSA and SM2 (no
// PKCS#11 mechanism) always take the Go path.
func hsmSpec(spec, usage string) (hsmpool.KeyPairSpec, bool) {
	info := specs[spec]
	use := hsmpool.UseSign
	switch usage {
	case usageEncryptDecrypt:
		use = hsmpool.UseDecrypt
	case usageKeyAgreement:
		use = hsmpool.UseDerive
	}
	switch info.family {
	case famRSA:
		return hsmpool.KeyPairSpec{Type: hsmpool.RSA, Bits: info.bits, Use: use}, true
	case famNIST:
		oid := map[string]asn1.ObjectIdentifier{"ECC_NIST_P256": oidP256, "ECC_NIST_P384": oidP384, "ECC_NIST_P521": oidP521}[spec]
		return hsmpool.KeyPairSpec{Type: hsmpool.EC, Curve: oid, Use: use}, true
	case famSECP256K1:
		return hsmpool.KeyPairSpec{Type: hsmpool.EC, Curve: oidSecp256k1, Use: use}, true
	}
	return hsmpool.KeyPairSpec{}, false
}

// hsmPublicDER encodes the public key the HSM returned as a DER
// SubjectPublicKeyInfo, checking that it is a valid key of spec.
func hsmPublicDER(spec string, pub hsmpool.PublicKey) ([]byte, error) {
	info := specs[spec]
	switch info.family {
	case famRSA:
		e := new(big.Int).SetBytes(pub.E)
		if !e.IsInt64() || e.Int64() < 3 || e.Int64() > 1<<31 {
			return nil, errors.New("agent: HSM returned a bad RSA exponent")
		}
		k := &rsa.PublicKey{N: new(big.Int).SetBytes(pub.N), E: int(e.Int64())}
		if k.N.BitLen() != info.bits {
			return nil, fmt.Errorf("agent: HSM returned a %d-bit modulus for %s", k.N.BitLen(), spec)
		}
		return x509.MarshalPKIXPublicKey(k)
	case famNIST:
		k, err := ecdhCurve(spec).NewPublicKey(pub.Point)
		if err != nil {
			return nil, fmt.Errorf("agent: HSM returned a bad point: %w", err)
		}
		return x509.MarshalPKIXPublicKey(k)
	case famSECP256K1:
		k, err := secp256k1.ParsePubKey(pub.Point)
		if err != nil {
			return nil, fmt.Errorf("agent: HSM returned a bad point: %w", err)
		}
		return marshalPublic(k)
	}
	return nil, fmt.Errorf("agent: no HSM key pair for %s", spec)
}

func ecdhCurve(spec string) ecdh.Curve {
	switch spec {
	case "ECC_NIST_P384":
		return ecdh.P384()
	case "ECC_NIST_P521":
		return ecdh.P521()
	}
	return ecdh.P256()
}

func privateKeyAAD(keyID string) []byte { return []byte("kmsd private key v1 " + keyID) }

// privateKey unseals k's current private key in the HSM and parses it. The
// caller must call the returned wipe when done; it zeroes what it can of
// the plaintext (the DER bytes always; the parsed key's big integers and
// byte slices best effort: Go's crypto packages keep copies of their own
// that cannot be reached).
func (s *Server) privateKey(ctx context.Context, k *cluster.Key) (crypto.Signer, func(), error) {
	m, ok := k.CurrentMaterial()
	if !ok || m.Form != cluster.MaterialSealed {
		return nil, nil, errors.New("agent: key has no sealed private key")
	}
	der, err := s.pool.Open(ctx, m.Wrapped, m.Sealed, privateKeyAAD(k.ID))
	if err != nil {
		return nil, nil, err
	}
	defer clear(der)
	key, err := parsePrivateKey(k.KeySpec, der)
	if err != nil {
		return nil, nil, err
	}
	return key, func() { wipePrivate(key) }, nil
}

// wipePrivate zeroes the secret fields of a parsed private key, best effort.
func wipePrivate(k crypto.Signer) {
	zero := func(x *big.Int) {
		if x != nil {
			clear(x.Bits())
		}
	}
	switch k := k.(type) {
	case *rsa.PrivateKey:
		zero(k.D)
		for _, p := range k.Primes {
			zero(p)
		}
		zero(k.Precomputed.Dp)
		zero(k.Precomputed.Dq)
		zero(k.Precomputed.Qinv)
	case *ecdsa.PrivateKey:
		zero(k.D)
	case ed25519.PrivateKey:
		clear(k)
	case *secpKey:
		k.priv.Zero()
	case *sm2.PrivateKey:
		zero(k.D)
	}
}

// ---- key generation and encodings -----------------------------------------

var (
	oidECPublicKey = asn1.ObjectIdentifier{1, 2, 840, 10045, 2, 1}
	oidSecp256k1   = asn1.ObjectIdentifier{1, 3, 132, 0, 10}
)

type algorithmIdentifier struct {
	Algorithm  asn1.ObjectIdentifier
	Parameters asn1.ObjectIdentifier
}

type subjectPublicKeyInfo struct {
	Algorithm algorithmIdentifier
	PublicKey asn1.BitString
}

type pkcs8Key struct {
	Version    int
	Algorithm  algorithmIdentifier
	PrivateKey []byte
}

// ecPrivateKey is RFC 5915's ECPrivateKey (parameters omitted: PKCS#8
// names the curve).
type ecPrivateKey struct {
	Version    int
	PrivateKey []byte
	PublicKey  asn1.BitString `asn1:"optional,explicit,tag:1"`
}

// generateKeyPair makes a key pair of spec in Go and returns the PKCS#8
// DER private key (the caller zeroes it) and the DER SubjectPublicKeyInfo.
func generateKeyPair(spec string) (priv, pub []byte, err error) {
	info, ok := specs[spec]
	if !ok {
		return nil, nil, fmt.Errorf("agent: no key pair of spec %s", spec)
	}
	var key crypto.Signer
	switch info.family {
	case famRSA:
		key, err = rsa.GenerateKey(rand.Reader, info.bits)
	case famNIST:
		key, err = ecdsa.GenerateKey(info.curve, rand.Reader)
	case famEd25519:
		_, key, err = ed25519.GenerateKey(rand.Reader)
	case famSECP256K1:
		var sk *secp256k1.PrivateKey
		sk, err = secp256k1.GeneratePrivateKey()
		if err == nil {
			key = &secpKey{priv: sk}
		}
	case famMLDSA:
		key, err = mldsa.GenerateKey(info.mldsa())
	case famSM2:
		key, err = sm2.GenerateKey(rand.Reader)
	default:
		return nil, nil, fmt.Errorf("agent: no key pair of spec %s", spec)
	}
	if err != nil {
		return nil, nil, err
	}
	defer wipePrivate(key)
	if priv, err = marshalPKCS8(key); err != nil {
		return nil, nil, err
	}
	if pub, err = marshalPublic(key.Public()); err != nil {
		clear(priv)
		return nil, nil, err
	}
	return priv, pub, nil
}

func marshalPKCS8(key crypto.Signer) ([]byte, error) {
	if k, ok := key.(*secpKey); ok {
		d := k.priv.Key.Bytes()
		defer clear(d[:])
		inner, err := asn1.Marshal(ecPrivateKey{Version: 1, PrivateKey: d[:],
			PublicKey: asn1.BitString{Bytes: k.priv.PubKey().SerializeUncompressed(), BitLength: 65 * 8}})
		if err != nil {
			return nil, err
		}
		defer clear(inner)
		return asn1.Marshal(pkcs8Key{Algorithm: algorithmIdentifier{oidECPublicKey, oidSecp256k1}, PrivateKey: inner})
	}
	if k, ok := key.(*sm2.PrivateKey); ok {
		// id-ecPublicKey with the sm2p256v1 curve (1.2.156.10197.1.301),
		// as OpenSSL writes SM2 keys.
		return smx509.MarshalPKCS8PrivateKey(k)
	}
	return mldsax509.MarshalPKCS8PrivateKey(key)
}

func marshalPublic(pub crypto.PublicKey) ([]byte, error) {
	if p, ok := pub.(*secp256k1.PublicKey); ok {
		return asn1.Marshal(subjectPublicKeyInfo{Algorithm: algorithmIdentifier{oidECPublicKey, oidSecp256k1},
			PublicKey: asn1.BitString{Bytes: p.SerializeUncompressed(), BitLength: 65 * 8}})
	}
	if p, ok := pub.(*ecdsa.PublicKey); ok && sm2.IsSM2PublicKey(p) {
		return smx509.MarshalPKIXPublicKey(p)
	}
	return mldsax509.MarshalPKIXPublicKey(pub)
}

// parsePrivateKey parses the PKCS#8 DER private key of a key of spec.
func parsePrivateKey(spec string, der []byte) (crypto.Signer, error) {
	if specs[spec].family == famSECP256K1 {
		var p pkcs8Key
		if rest, err := asn1.Unmarshal(der, &p); err != nil || len(rest) != 0 || !p.Algorithm.Parameters.Equal(oidSecp256k1) {
			return nil, errors.New("agent: bad secp256k1 PKCS#8 key")
		}
		var ec ecPrivateKey
		if _, err := asn1.Unmarshal(p.PrivateKey, &ec); err != nil || len(ec.PrivateKey) != 32 {
			return nil, errors.New("agent: bad secp256k1 private key")
		}
		k := secp256k1.PrivKeyFromBytes(ec.PrivateKey)
		clear(ec.PrivateKey)
		return &secpKey{priv: k}, nil
	}
	if specs[spec].family == famSM2 {
		k, err := smx509.ParsePKCS8PrivateKey(der)
		if p, ok := k.(*sm2.PrivateKey); err == nil && ok {
			return p, nil
		}
		return nil, errors.New("agent: bad SM2 PKCS#8 key")
	}
	k, err := mldsax509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, err
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return nil, errors.New("agent: private key is not a signer")
	}
	return signer, nil
}

// parsePublicKey parses a DER SubjectPublicKeyInfo of a key of spec.
func parsePublicKey(spec string, der []byte) (crypto.PublicKey, error) {
	if specs[spec].family == famSECP256K1 {
		var spki subjectPublicKeyInfo
		if rest, err := asn1.Unmarshal(der, &spki); err != nil || len(rest) != 0 || !spki.Algorithm.Parameters.Equal(oidSecp256k1) {
			return nil, errors.New("agent: bad secp256k1 public key")
		}
		return secp256k1.ParsePubKey(spki.PublicKey.RightAlign())
	}
	if specs[spec].family == famSM2 {
		k, err := smx509.ParsePKIXPublicKey(der)
		if p, ok := k.(*ecdsa.PublicKey); err == nil && ok && sm2.IsSM2PublicKey(p) {
			return p, nil
		}
		return nil, errors.New("agent: bad SM2 public key")
	}
	return mldsax509.ParsePKIXPublicKey(der)
}

// secpKey adapts a secp256k1 private key to crypto.Signer (ECDSA over a
// 32-byte digest, DER signature, RFC 6979 nonces).
type secpKey struct{ priv *secp256k1.PrivateKey }

func (k *secpKey) Public() crypto.PublicKey { return k.priv.PubKey() }

func (k *secpKey) Sign(_ io.Reader, digest []byte, _ crypto.SignerOpts) ([]byte, error) {
	if len(digest) != sha256.Size {
		return nil, errors.New("agent: secp256k1 signs 32-byte digests")
	}
	return secpecdsa.Sign(k.priv, digest).Serialize(), nil
}

// secpVerify verifies a DER ECDSA signature over a 32-byte digest.
func secpVerify(pub *secp256k1.PublicKey, digest, sig []byte) bool {
	s, err := secpecdsa.ParseDERSignature(sig)
	return err == nil && s.Verify(digest, pub)
}

// hashOf returns the digest of msg with h (SHA-256, -384 or -512).
func hashOf(h crypto.Hash, msg []byte) []byte {
	switch h {
	case crypto.SHA256:
		d := sha256.Sum256(msg)
		return d[:]
	case crypto.SHA384:
		d := sha512.Sum384(msg)
		return d[:]
	case crypto.SHA512:
		d := sha512.Sum512(msg)
		return d[:]
	}
	return nil
}
