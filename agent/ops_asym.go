package agent

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha512"
	"errors"
	"fmt"
	"strings"

	"filippo.io/mldsa"
	"filippo.io/mldsa/mldsacrypto"
	"github.com/decred/dcrd/dcrec/secp256k1/v4"
	gmecdh "github.com/emmansun/gmsm/ecdh"
	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"

	"github.com/kmsd/kmsd/cluster"
	"github.com/kmsd/kmsd/hsmpool"
	"github.com/kmsd/kmsd/internal/mldsamu"
	"github.com/kmsd/kmsd/internal/sm2pke"
	"github.com/kmsd/kmsd/quota"
)

// Sign, Verify, GetPublicKey, DeriveSharedSecret, RSA and SM2 Encrypt and Decrypt,
// GenerateDataKeyPair(WithoutPlaintext). See asymkey.go for how private
// keys are kept.

const (
	errKMSInvalidSignature = "KMSInvalidSignatureException"
	errKMSInvalidMac       = "KMSInvalidMacException"
	maxSignMessage         = 4096
	maxSignature           = 6144
	maxPublicKeyDER        = 8192
	messageRaw             = "RAW"
	messageDigest          = "DIGEST"
	messageExternalMu      = "EXTERNAL_MU"
	externalMuLen          = 64
	sm2DigestLen           = 32 // SM3
	maxSM2PKEPlaintext     = 1024
)

// sm2DefaultID is the distinguishing ID AWS KMS puts in the SM2DSA digest
// of a RAW message (GM/T 0009-2012's default; AWS takes no other).
var sm2DefaultID = []byte("1234567812345678")

var (
	signingAlgorithms = []string{"RSASSA_PSS_SHA_256", "RSASSA_PSS_SHA_384", "RSASSA_PSS_SHA_512",
		"RSASSA_PKCS1_V1_5_SHA_256", "RSASSA_PKCS1_V1_5_SHA_384", "RSASSA_PKCS1_V1_5_SHA_512",
		"ECDSA_SHA_256", "ECDSA_SHA_384", "ECDSA_SHA_512", "SM2DSA", "ML_DSA_SHAKE_256",
		"ED25519_SHA_512", "ED25519_PH_SHA_512"}
	messageTypes     = []string{messageRaw, messageDigest, messageExternalMu}
	dataKeyPairSpecs = []string{"RSA_2048", "RSA_3072", "RSA_4096", "ECC_NIST_P256", "ECC_NIST_P384",
		"ECC_NIST_P521", "ECC_SECG_P256K1", "SM2", "ECC_NIST_EDWARDS25519"}
)

// asymOps registers this file's and ops_mac.go's operations (kept out of
// ops.go's table so that parallel work on it merges cleanly). Package
// variables are initialised before ops.go's init marks the rest notYet.
var asymOps = registerOps(map[string]opFunc{
	"Sign":                                opSign,
	"Verify":                              opVerify,
	"GetPublicKey":                        opGetPublicKey,
	"DeriveSharedSecret":                  opDeriveSharedSecret,
	"GenerateDataKeyPair":                 opGenerateDataKeyPair,
	"GenerateDataKeyPairWithoutPlaintext": opGenerateDataKeyPairWithoutPlaintext,
	"GenerateMac":                         opGenerateMac,
	"VerifyMac":                           opVerifyMac,
})

func registerOps(m map[string]opFunc) bool {
	for name, fn := range m {
		operations[name] = fn
	}
	return true
}

type sigKind uint8

const (
	sigPSS sigKind = iota
	sigPKCS1
	sigECDSA
	sigEd25519
	sigEd25519ph
	sigMLDSA
	sigSM2
)

type sigAlg struct {
	kind sigKind
	hash crypto.Hash
}

// sigAlgs are the signing algorithms kmsd runs.
var sigAlgs = map[string]sigAlg{
	"RSASSA_PSS_SHA_256":        {sigPSS, crypto.SHA256},
	"RSASSA_PSS_SHA_384":        {sigPSS, crypto.SHA384},
	"RSASSA_PSS_SHA_512":        {sigPSS, crypto.SHA512},
	"RSASSA_PKCS1_V1_5_SHA_256": {sigPKCS1, crypto.SHA256},
	"RSASSA_PKCS1_V1_5_SHA_384": {sigPKCS1, crypto.SHA384},
	"RSASSA_PKCS1_V1_5_SHA_512": {sigPKCS1, crypto.SHA512},
	"ECDSA_SHA_256":             {sigECDSA, crypto.SHA256},
	"ECDSA_SHA_384":             {sigECDSA, crypto.SHA384},
	"ECDSA_SHA_512":             {sigECDSA, crypto.SHA512},
	"ED25519_SHA_512":           {sigEd25519, crypto.SHA512},
	"ED25519_PH_SHA_512":        {sigEd25519ph, crypto.SHA512},
	"ML_DSA_SHAKE_256":          {sigMLDSA, 0},
	"SM2DSA":                    {sigSM2, 0}, // SM3, see signInput and sm2Digest
}

// quotaAfterKey lists the operations whose request quota depends on the
// key (RSA, ECC or a key pair spec): the handler charges it once the key
// is known, instead of serveAPI. Encrypt, Decrypt and ReEncrypt charge the
// symmetric quota as soon as they know the key is not an RSA key.
var quotaAfterKey = map[string]bool{
	"Sign": true, "Verify": true, "GenerateDataKeyPair": true, "GenerateDataKeyPairWithoutPlaintext": true,
	"Encrypt": true, "Decrypt": true, "ReEncrypt": true, "DeriveSharedSecret": true,
}

// allowKeyQuota charges the quota of op on a key (or key pair) of spec.
func (s *Server) allowKeyQuota(op, spec string) error {
	if s.quota == nil {
		return nil
	}
	return s.quota.Allow(s.cfg.AccountID, quota.GroupFor(op, spec)...)
}

// usageKey resolves the key of an operation that needs KeyUsage usage,
// authorizes the caller and checks the key's state and usage.
func (s *Server) usageKey(r *request, id *string, usage string, grantTokens []string) (*cluster.Key, error) {
	op := r.op
	if id == nil {
		return nil, validationRequired("keyId")
	}
	k, err := s.keyFor(r, *id, true)
	if err != nil {
		return nil, err
	}
	if err := s.authorize(r, authReq{action: op, key: k, grantTokens: grantTokens}); err != nil {
		return nil, err
	}
	if err := s.checkKeyState(op, k); err != nil {
		return nil, err
	}
	if k.KeyUsage != usage {
		return nil, apiErr(errInvalidKeyUsage, "%s key usage is %s which is not valid for %s.", k.Arn, k.KeyUsage, op)
	}
	return k, nil
}

type signRequest struct {
	KeyId            *string  `json:"KeyId"`
	Message          []byte   `json:"Message"`
	MessageType      *string  `json:"MessageType"`
	Signature        []byte   `json:"Signature"` // Verify only
	GrantTokens      []string `json:"GrantTokens"`
	SigningAlgorithm *string  `json:"SigningAlgorithm"`
	DryRun           bool     `json:"DryRun"`
}

type signResponse struct {
	KeyId            string `json:"KeyId"`
	Signature        []byte `json:"Signature"`
	SigningAlgorithm string `json:"SigningAlgorithm"`
}

type verifyResponse struct {
	KeyId            string `json:"KeyId"`
	SignatureValid   bool   `json:"SignatureValid"`
	SigningAlgorithm string `json:"SigningAlgorithm"`
}

// signSetup validates a Sign or Verify request and returns its key,
// algorithm, message type and the value the algorithm signs: the digest
// for RSA and ECDSA, the message for Ed25519 and ML-DSA, SHA-512 of the
// message for Ed25519ph (HashEdDSA's prehash), μ for EXTERNAL_MU, and for
// SM2DSA e = SM3(Z || M) (or the given e with DIGEST).
func (s *Server) signSetup(r *request, in *signRequest, verify bool) (*cluster.Key, sigAlg, string, []byte, error) {
	var zero sigAlg
	if in.KeyId == nil {
		return nil, zero, "", nil, validationRequired("keyId")
	}
	if in.Message == nil {
		return nil, zero, "", nil, validationRequired("message")
	}
	if len(in.Message) < 1 || len(in.Message) > maxSignMessage {
		return nil, zero, "", nil, validationLength("message", 1, maxSignMessage)
	}
	if verify {
		if in.Signature == nil {
			return nil, zero, "", nil, validationRequired("signature")
		}
		if len(in.Signature) < 1 || len(in.Signature) > maxSignature {
			return nil, zero, "", nil, validationLength("signature", 1, maxSignature)
		}
	}
	if in.SigningAlgorithm == nil {
		return nil, zero, "", nil, validationRequired("signingAlgorithm")
	}
	algName := *in.SigningAlgorithm
	if !oneOf(algName, signingAlgorithms) {
		return nil, zero, "", nil, validationEnum("signingAlgorithm", algName, strings.Join(signingAlgorithms, ", "))
	}
	mt := messageRaw
	if in.MessageType != nil {
		mt = *in.MessageType
		if !oneOf(mt, messageTypes) {
			return nil, zero, "", nil, validationEnum("messageType", mt, strings.Join(messageTypes, ", "))
		}
	}
	if err := checkGrantTokens(in.GrantTokens); err != nil {
		return nil, zero, "", nil, err
	}
	k, err := s.usageKey(r, in.KeyId, usageSignVerify, in.GrantTokens)
	if err != nil {
		return nil, zero, "", nil, err
	}
	if !oneOf(algName, specs[k.KeySpec].sigAlgs) {
		return nil, zero, "", nil, apiErr(errInvalidKeyUsage, "Algorithm %s is incompatible with key spec %s.", algName, k.KeySpec)
	}
	if err := s.allowKeyQuota(r.op, k.KeySpec); err != nil {
		return nil, zero, "", nil, err
	}
	alg := sigAlgs[algName]
	input, err := signInput(algName, alg, mt, in.Message)
	if err != nil {
		return nil, zero, "", nil, err
	}
	if alg.kind == sigSM2 && mt == messageRaw {
		if input, err = s.sm2Digest(k, input); err != nil {
			return nil, zero, "", nil, err
		}
	}
	return k, alg, mt, input, nil
}

// signInput applies the MessageType rules of the AWS API model.
func signInput(name string, alg sigAlg, mt string, msg []byte) ([]byte, error) {
	switch alg.kind {
	case sigPSS, sigPKCS1, sigECDSA:
		switch mt {
		case messageRaw:
			return hashOf(alg.hash, msg), nil
		case messageDigest:
			if len(msg) != alg.hash.Size() {
				return nil, apiErr(errValidation, "Digest is invalid length for algorithm %s.", name)
			}
			return msg, nil
		}
	case sigEd25519:
		if mt == messageRaw {
			return msg, nil
		}
		return nil, apiErr(errValidation, "Signing algorithm %s requires MessageType RAW.", name)
	case sigEd25519ph:
		if mt != messageDigest {
			return nil, apiErr(errValidation, "Signing algorithm %s requires MessageType DIGEST.", name)
		}
		if len(msg) != sha512.Size {
			return nil, apiErr(errValidation, "Digest is invalid length for algorithm %s.", name)
		}
		d := sha512.Sum512(msg)
		return d[:], nil
	case sigMLDSA:
		switch mt {
		case messageRaw:
			return msg, nil
		case messageExternalMu:
			if len(msg) != externalMuLen {
				return nil, apiErr(errValidation, "With MessageType EXTERNAL_MU the message must be %d bytes.", externalMuLen)
			}
			return msg, nil
		}
		return nil, apiErr(errValidation, "Signing algorithm %s does not accept MessageType %s; use RAW or EXTERNAL_MU.", name, mt)
	case sigSM2:
		switch mt {
		case messageRaw:
			return msg, nil // the caller hashes it with Z: sm2Digest
		case messageDigest:
			if len(msg) != sm2DigestLen {
				return nil, apiErr(errValidation, "Digest is invalid length for algorithm %s.", name)
			}
			return msg, nil
		}
	}
	return nil, apiErr(errValidation, "MessageType %s is valid only with ML_DSA_SHAKE_256.", mt)
}

func opSign(s *Server, r *request) (any, error) {
	var in signRequest
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	k, alg, mt, input, err := s.signSetup(r, &in, false)
	if err != nil {
		return nil, err
	}
	if in.DryRun {
		return nil, dryRunOK
	}
	sig, err := s.sign(r.ctx, k, alg, mt, input)
	if err != nil {
		return nil, err
	}
	s.usage.record(k.ID, r)
	return &signResponse{KeyId: k.Arn, Signature: sig, SigningAlgorithm: *in.SigningAlgorithm}, nil
}

// sign signs input with k's private key: in the HSM for keys made there,
// else with the unsealed key in Go.
func (s *Server) sign(ctx context.Context, k *cluster.Key, alg sigAlg, mt string, input []byte) ([]byte, error) {
	if m, ok := k.CurrentMaterial(); ok && m.Form == cluster.MaterialHSMPrivate {
		switch alg.kind {
		case sigPSS, sigPKCS1:
			return s.pool.SignRSA(ctx, m.Wrapped, specs[k.KeySpec].bits, alg.hash, alg.kind == sigPSS, input)
		case sigECDSA:
			return s.pool.SignECDSA(ctx, m.Wrapped, input)
		}
		return nil, fmt.Errorf("agent: no HSM signature of kind %d", alg.kind)
	}
	key, wipe, err := s.privateKey(ctx, k)
	if err != nil {
		return nil, err
	}
	defer wipe()
	var opts crypto.SignerOpts = alg.hash
	switch alg.kind {
	case sigPSS:
		opts = &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: alg.hash}
	case sigEd25519:
		opts = crypto.Hash(0)
	case sigEd25519ph:
		opts = &ed25519.Options{Hash: crypto.SHA512}
	case sigMLDSA:
		opts = &mldsa.Options{}
		if mt == messageExternalMu {
			opts = mldsacrypto.MLDSAMu
		}
	}
	return key.Sign(rand.Reader, input, opts)
}

func opVerify(s *Server, r *request) (any, error) {
	var in signRequest
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	k, alg, mt, input, err := s.signSetup(r, &in, true)
	if err != nil {
		return nil, err
	}
	if in.DryRun {
		return nil, dryRunOK
	}
	pub, err := s.publicKey(k)
	if err != nil {
		return nil, err
	}
	var valid bool
	if alg.kind == sigMLDSA && mt == messageExternalMu {
		// filippo.io/mldsa verifies only messages; mldsamu takes μ.
		if p, ok := pub.(*mldsa.PublicKey); ok {
			if valid, err = mldsamu.Verify(p.Bytes(), input, in.Signature); err != nil {
				return nil, fmt.Errorf("agent: verify external mu: %w", err)
			}
		}
	} else {
		valid = verifySignature(pub, alg, input, in.Signature)
	}
	if !valid {
		return nil, apiErr(errKMSInvalidSignature, "The signature is not valid for this key, message and signing algorithm.")
	}
	s.usage.record(k.ID, r)
	return &verifyResponse{KeyId: k.Arn, SignatureValid: true, SigningAlgorithm: *in.SigningAlgorithm}, nil
}

// sm2Digest is SM2DSA's e = SM3(Z || msg) for k's public key, with Z made
// from the default distinguishing ID (GM/T 0003.2 §5.5, GM/T 0009 §8): what
// AWS KMS signs for MessageType RAW, and what DIGEST expects.
func (s *Server) sm2Digest(k *cluster.Key, msg []byte) ([]byte, error) {
	pub, err := s.publicKey(k)
	if err != nil {
		return nil, err
	}
	p, ok := pub.(*ecdsa.PublicKey)
	if !ok || !sm2.IsSM2PublicKey(p) {
		return nil, fmt.Errorf("agent: %s has no SM2 public key", k.ID)
	}
	return sm2.CalculateSM2Hash(p, msg, sm2DefaultID)
}

func (s *Server) publicKey(k *cluster.Key) (crypto.PublicKey, error) {
	m, ok := k.CurrentMaterial()
	if !ok || len(m.Public) == 0 {
		return nil, apiErr(errUnsupported, "%s has no public key.", k.Arn)
	}
	return parsePublicKey(k.KeySpec, m.Public)
}

func verifySignature(pub crypto.PublicKey, alg sigAlg, input, sig []byte) bool {
	switch p := pub.(type) {
	case *rsa.PublicKey:
		switch alg.kind {
		case sigPSS:
			return rsa.VerifyPSS(p, alg.hash, input, sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash}) == nil
		case sigPKCS1:
			return rsa.VerifyPKCS1v15(p, alg.hash, input, sig) == nil
		}
	case *ecdsa.PublicKey:
		if sm2.IsSM2PublicKey(p) {
			return alg.kind == sigSM2 && sm2.VerifyASN1(p, input, sig)
		}
		return alg.kind == sigECDSA && ecdsa.VerifyASN1(p, input, sig)
	case *secp256k1.PublicKey:
		return alg.kind == sigECDSA && secpVerify(p, input, sig)
	case ed25519.PublicKey:
		switch alg.kind {
		case sigEd25519:
			return ed25519.Verify(p, input, sig)
		case sigEd25519ph:
			return ed25519.VerifyWithOptions(p, input, sig, &ed25519.Options{Hash: crypto.SHA512}) == nil
		}
	case *mldsa.PublicKey:
		return alg.kind == sigMLDSA && mldsa.Verify(p, input, sig, nil) == nil
	}
	return false
}

// ---- GetPublicKey ----------------------------------------------------------

type getPublicKeyRequest struct {
	KeyId       *string  `json:"KeyId"`
	GrantTokens []string `json:"GrantTokens"`
}

type getPublicKeyResponse struct {
	KeyId                  string   `json:"KeyId"`
	PublicKey              []byte   `json:"PublicKey"`
	CustomerMasterKeySpec  string   `json:"CustomerMasterKeySpec"`
	KeySpec                string   `json:"KeySpec"`
	KeyUsage               string   `json:"KeyUsage"`
	EncryptionAlgorithms   []string `json:"EncryptionAlgorithms,omitempty"`
	SigningAlgorithms      []string `json:"SigningAlgorithms,omitempty"`
	KeyAgreementAlgorithms []string `json:"KeyAgreementAlgorithms,omitempty"`
}

func opGetPublicKey(s *Server, r *request) (any, error) {
	var in getPublicKeyRequest
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	k, err := s.grantableKey(r, in.KeyId, in.GrantTokens)
	if err != nil {
		return nil, err
	}
	if err := s.checkKeyState(r.op, k); err != nil {
		return nil, err
	}
	m, ok := k.CurrentMaterial()
	if !isAsymmetric(k.KeySpec) || !ok || len(m.Public) == 0 {
		return nil, apiErr(errUnsupported, "%s is not an asymmetric KMS key; it has no public key.", k.Arn)
	}
	out := &getPublicKeyResponse{KeyId: k.Arn, PublicKey: m.Public, CustomerMasterKeySpec: k.KeySpec, KeySpec: k.KeySpec, KeyUsage: k.KeyUsage}
	var mac []string
	setAlgorithms(k.KeySpec, k.KeyUsage, &out.EncryptionAlgorithms, &out.SigningAlgorithms, &mac, &out.KeyAgreementAlgorithms)
	return out, nil
}

// ---- DeriveSharedSecret ----------------------------------------------------

type deriveSharedSecretRequest struct {
	KeyId                 *string   `json:"KeyId"`
	KeyAgreementAlgorithm *string   `json:"KeyAgreementAlgorithm"`
	PublicKey             []byte    `json:"PublicKey"`
	GrantTokens           []string  `json:"GrantTokens"`
	DryRun                bool      `json:"DryRun"`
	Recipient             *struct{} `json:"Recipient"`
}

type deriveSharedSecretResponse struct {
	KeyId                 string `json:"KeyId"`
	SharedSecret          []byte `json:"SharedSecret"`
	KeyAgreementAlgorithm string `json:"KeyAgreementAlgorithm"`
	KeyOrigin             string `json:"KeyOrigin"`
}

func (r *deriveSharedSecretResponse) wipe() { clear(r.SharedSecret) }

func opDeriveSharedSecret(s *Server, r *request) (any, error) {
	var in deriveSharedSecretRequest
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	if in.KeyId == nil {
		return nil, validationRequired("keyId")
	}
	if in.KeyAgreementAlgorithm == nil {
		return nil, validationRequired("keyAgreementAlgorithm")
	}
	if *in.KeyAgreementAlgorithm != "ECDH" {
		return nil, validationEnum("keyAgreementAlgorithm", *in.KeyAgreementAlgorithm, "ECDH")
	}
	if in.PublicKey == nil {
		return nil, validationRequired("publicKey")
	}
	if len(in.PublicKey) < 1 || len(in.PublicKey) > maxPublicKeyDER {
		return nil, validationLength("publicKey", 1, maxPublicKeyDER)
	}
	if err := checkGrantTokens(in.GrantTokens); err != nil {
		return nil, err
	}
	if in.Recipient != nil {
		return nil, apiErr(errUnsupported, "Recipient (Nitro Enclaves attestation) is not supported by kmsd.")
	}
	k, err := s.usageKey(r, in.KeyId, usageKeyAgreement, in.GrantTokens)
	if err != nil {
		return nil, err
	}
	if err := s.allowKeyQuota(r.op, k.KeySpec); err != nil {
		return nil, err
	}
	peer, err := peerPoint(k, in.PublicKey)
	if err != nil {
		return nil, err
	}
	if in.DryRun {
		return nil, dryRunOK
	}
	secret, err := s.derive(r.ctx, k, peer)
	if err != nil {
		return nil, err
	}
	s.usage.record(k.ID, r)
	return &deriveSharedSecretResponse{KeyId: k.Arn, SharedSecret: secret, KeyAgreementAlgorithm: "ECDH", KeyOrigin: k.Origin}, nil
}

// peerPoint parses a DeriveSharedSecret peer key (DER SubjectPublicKeyInfo)
// and returns its uncompressed point, checked to lie on k's curve (a NIST
// curve or SM2's sm2p256v1).
func peerPoint(k *cluster.Key, der []byte) ([]byte, error) {
	// smx509 reads the NIST curves as crypto/x509 does, and SM2's.
	peerAny, err := smx509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, apiErr(errValidation, "PublicKey is not a DER-encoded X.509 SubjectPublicKeyInfo of an elliptic curve key.")
	}
	peer, ok := peerAny.(*ecdsa.PublicKey)
	if !ok || peer.Curve != specs[k.KeySpec].curve {
		return nil, apiErr(errValidation, "PublicKey must be a point on the curve of %s (%s).", k.Arn, k.KeySpec)
	}
	var point interface{ Bytes() []byte }
	if specs[k.KeySpec].family == famSM2 {
		point, err = sm2.PublicKeyToECDH(peer)
	} else {
		point, err = peer.ECDH()
	}
	if err != nil {
		return nil, apiErr(errValidation, "PublicKey is not a valid point on its curve.")
	}
	return point.Bytes(), nil
}

// derive computes the ECDH shared secret (the x-coordinate) of k and the
// peer's uncompressed point: in the HSM for keys made there, else with the
// unsealed key in Go (crypto/ecdh, or gmsm's ecdh for SM2).
func (s *Server) derive(ctx context.Context, k *cluster.Key, peer []byte) ([]byte, error) {
	if m, ok := k.CurrentMaterial(); ok && m.Form == cluster.MaterialHSMPrivate {
		size := (specs[k.KeySpec].curve.Params().BitSize + 7) / 8
		return s.pool.DeriveECDH(ctx, m.Wrapped, peer, size)
	}
	key, wipe, err := s.privateKey(ctx, k)
	if err != nil {
		return nil, err
	}
	defer wipe()
	var secret []byte
	switch priv := key.(type) {
	case *sm2.PrivateKey:
		mine, e := priv.ECDH()
		secret, err = ecdhSecret(mine, e, gmecdh.P256().NewPublicKey, peer)
	case *ecdsa.PrivateKey:
		mine, e := priv.ECDH()
		secret, err = ecdhSecret(mine, e, ecdhCurve(k.KeySpec).NewPublicKey, peer)
	default:
		return nil, apiErr(errInvalidKeyUsage, "%s cannot derive a shared secret.", k.Arn)
	}
	return secret, err
}

// ecdhSecret is mine's ECDH secret with the peer's uncompressed point, for
// crypto/ecdh keys and gmsm's (SM2) alike. err is the error of making mine
// and comes back as it is; a peer point the curve refuses is
// ValidationException.
func ecdhSecret[Pub any, Priv interface{ ECDH(Pub) ([]byte, error) }](mine Priv, err error, newPublic func([]byte) (Pub, error), peer []byte) ([]byte, error) {
	if err != nil {
		return nil, err
	}
	if theirs, err := newPublic(peer); err == nil {
		if secret, err := mine.ECDH(theirs); err == nil {
			return secret, nil
		}
	}
	return nil, apiErr(errValidation, "PublicKey is not a valid point on its curve.")
}

// ---- RSA and SM2 Encrypt and Decrypt ----------------------------------------

// asymEncryptionKey resolves id and reports whether it names an RSA or SM2
// ENCRYPT_DECRYPT key. Resolution errors are left to the symmetric path,
// which reports them.
func (s *Server) asymEncryptionKey(r *request, id *string) (*cluster.Key, bool) {
	if id == nil {
		return nil, false
	}
	k, err := s.keyFor(r, *id, true)
	if err != nil || k.KeyUsage != usageEncryptDecrypt {
		return nil, false
	}
	f := specs[k.KeySpec].family
	return k, f == famRSA || f == famSM2
}

// encAlg is an asymmetric encryption algorithm: RSAES_OAEP_SHA_1 or
// RSAES_OAEP_SHA_256 (hash is the OAEP and MGF1 hash) or SM2PKE (hash 0).
type encAlg struct {
	name string
	hash crypto.Hash
}

// asymEncAlg returns k's algorithm named by alg: one of the key spec's, else
// InvalidKeyUsageException for a known name and ValidationException for
// an unknown one.
func asymEncAlg(k *cluster.Key, alg *string) (encAlg, error) {
	name := specSymmetricDefault
	if alg != nil {
		name = *alg
	}
	if oneOf(name, specs[k.KeySpec].encAlgs) {
		switch name {
		case "RSAES_OAEP_SHA_1":
			return encAlg{name, crypto.SHA1}, nil
		case "RSAES_OAEP_SHA_256":
			return encAlg{name, crypto.SHA256}, nil
		}
		return encAlg{name: name}, nil
	}
	switch name {
	case specSymmetricDefault, "RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256", "SM2PKE":
		return encAlg{}, apiErr(errInvalidKeyUsage, "Algorithm %s is incompatible with key spec %s.", name, k.KeySpec)
	}
	return encAlg{}, validationEnum("encryptionAlgorithm", name, "SYMMETRIC_DEFAULT, RSAES_OAEP_SHA_1, RSAES_OAEP_SHA_256, SM2PKE")
}

// maxOAEPPlaintext is the guide's plaintext limit: k - 2·hLen - 2 bytes
// (RSA_2048: 214 with SHA-1, 190 with SHA-256).
func maxOAEPPlaintext(bits int, h crypto.Hash) int { return bits/8 - 2*h.Size() - 2 }

// maxAsymPlaintext is the Encrypt plaintext limit of a key of spec with a:
// the OAEP limit for RSA, 1024 bytes for SM2PKE (API model).
func maxAsymPlaintext(spec string, a encAlg) int {
	if specs[spec].family == famSM2 {
		return maxSM2PKEPlaintext
	}
	return maxOAEPPlaintext(specs[spec].bits, a.hash)
}

// asymCiphertextWellFormed checks what can be checked of a ciphertext
// without the private key: an RSA ciphertext is as long as the modulus, an
// SM2PKE one is GM/T 0009's ASN.1 SEQUENCE (C1C3C2), as AWS takes it.
func asymCiphertextWellFormed(spec string, ct []byte) bool {
	if specs[spec].family == famSM2 {
		_, _, _, _, err := sm2pke.Unmarshal(ct)
		return err == nil
	}
	return len(ct) == specs[spec].bits/8
}

// asymEncrypt encrypts pt with k's public key.
func (s *Server) asymEncrypt(k *cluster.Key, a encAlg, pt []byte) ([]byte, error) {
	pubAny, err := s.publicKey(k)
	if err != nil {
		return nil, err
	}
	switch pub := pubAny.(type) {
	case *rsa.PublicKey:
		if a.hash != 0 {
			return rsa.EncryptOAEP(a.hash.New(), rand.Reader, pub, pt, nil)
		}
	case *ecdsa.PublicKey:
		if a.name == "SM2PKE" {
			return sm2pke.Encrypt(rand.Reader, pub, pt)
		}
	}
	return nil, apiErr(errInvalidKeyUsage, "Algorithm %s is incompatible with key spec %s.", a.name, k.KeySpec)
}

func (s *Server) encryptAsymmetric(r *request, in *encryptRequest, k *cluster.Key) (any, error) {
	if err := s.allowKeyQuota(r.op, k.KeySpec); err != nil {
		return nil, err
	}
	if err := s.authorize(r, authReq{action: r.op, key: k, grantTokens: in.GrantTokens}); err != nil {
		return nil, err
	}
	if err := s.checkKeyState(r.op, k); err != nil {
		return nil, err
	}
	a, err := asymEncAlg(k, in.EncryptionAlgorithm)
	if err != nil {
		return nil, err
	}
	if len(in.EncryptionContext) > 0 {
		return nil, apiErr(errValidation, "EncryptionContext is not supported with asymmetric KMS keys.")
	}
	if n := maxAsymPlaintext(k.KeySpec, a); len(in.Plaintext) > n {
		return nil, apiErr(errValidation, "Plaintext is %d bytes; %s with %s encrypts at most %d.", len(in.Plaintext), k.KeySpec, a.name, n)
	}
	if in.DryRun {
		return nil, dryRunOK
	}
	ct, err := s.asymEncrypt(k, a, in.Plaintext)
	if err != nil {
		return nil, err
	}
	s.usage.record(k.ID, r)
	return &encryptResponse{CiphertextBlob: ct, KeyId: k.Arn, EncryptionAlgorithm: a.name}, nil
}

func (s *Server) decryptAsymmetric(r *request, in *decryptRequest, k *cluster.Key) (any, error) {
	if err := s.allowKeyQuota(r.op, k.KeySpec); err != nil {
		return nil, err
	}
	if err := s.authorize(r, authReq{action: r.op, key: k, grantTokens: in.GrantTokens}); err != nil {
		return nil, err
	}
	if err := s.checkKeyState(r.op, k); err != nil {
		return nil, err
	}
	a, err := asymEncAlg(k, in.EncryptionAlgorithm)
	if err != nil {
		return nil, err
	}
	if len(in.EncryptionContext) > 0 {
		return nil, apiErr(errValidation, "EncryptionContext is not supported with asymmetric KMS keys.")
	}
	if in.Recipient != nil {
		return nil, apiErr(errUnsupported, "Recipient (Nitro Enclaves attestation) is not supported by kmsd.")
	}
	if !asymCiphertextWellFormed(k.KeySpec, in.CiphertextBlob) {
		return nil, invalidCiphertext
	}
	if in.DryRun {
		return nil, dryRunOK
	}
	pt, err := s.asymDecrypt(r.ctx, k, a, in.CiphertextBlob)
	if err != nil {
		return nil, err
	}
	s.usage.record(k.ID, r)
	return &decryptResponse{KeyId: k.Arn, Plaintext: pt, EncryptionAlgorithm: a.name}, nil
}

// asymDecrypt decrypts ct with k's private key: in the HSM for keys made
// there, else with the unsealed key in Go (RSA-OAEP, or SM2PKE with
// internal/sm2pke). A ciphertext that does not decrypt is
// InvalidCiphertextException either way.
func (s *Server) asymDecrypt(ctx context.Context, k *cluster.Key, a encAlg, ct []byte) ([]byte, error) {
	var pt []byte
	var err error
	if m, ok := k.CurrentMaterial(); ok && m.Form == cluster.MaterialHSMPrivate {
		pt, err = s.pool.DecryptOAEP(ctx, m.Wrapped, specs[k.KeySpec].bits, a.hash, ct)
	} else {
		pt, err = s.decryptSealed(ctx, k, a, ct)
	}
	if errors.Is(err, hsmpool.ErrAuthFailed) || errors.Is(err, sm2pke.ErrDecrypt) {
		return nil, invalidCiphertext
	}
	return pt, err
}

func (s *Server) decryptSealed(ctx context.Context, k *cluster.Key, a encAlg, ct []byte) ([]byte, error) {
	key, wipe, err := s.privateKey(ctx, k)
	if err != nil {
		return nil, err
	}
	defer wipe()
	switch priv := key.(type) {
	case *rsa.PrivateKey:
		if a.hash != 0 {
			pt, err := rsa.DecryptOAEP(a.hash.New(), nil, priv, ct, nil)
			if err != nil {
				return nil, hsmpool.ErrAuthFailed
			}
			return pt, nil
		}
	case *sm2.PrivateKey:
		if a.name == "SM2PKE" {
			d := priv.D.FillBytes(make([]byte, sm2DigestLen))
			defer clear(d)
			return sm2pke.Decrypt(d, ct)
		}
	}
	return nil, hsmpool.ErrAuthFailed
}

// reEncryptInvolvesAsymmetric reports whether the source or destination
// key of a ReEncrypt is an RSA or SM2 ENCRYPT_DECRYPT key.
func (s *Server) reEncryptInvolvesAsymmetric(r *request, in *reEncryptRequest) bool {
	_, src := s.asymEncryptionKey(r, in.SourceKeyId)
	_, dst := s.asymEncryptionKey(r, in.DestinationKeyId)
	return src || dst
}

// reEncryptAsymmetric is ReEncrypt where the source or the destination (or
// both) is an RSA or SM2 key: an asymmetric source needs SourceKeyId and
// SourceEncryptionAlgorithm, an asymmetric destination
// DestinationEncryptionAlgorithm, and neither takes an encryption context,
// as in AWS. The plaintext never leaves the server.
func (s *Server) reEncryptAsymmetric(r *request, in *reEncryptRequest) (any, error) {
	srcAsym, isSrcAsym := s.asymEncryptionKey(r, in.SourceKeyId)
	dstAsym, isDstAsym := s.asymEncryptionKey(r, in.DestinationKeyId)
	// ReEncrypt counts against the quota of each key's spec.
	if s.quota != nil {
		srcSpec, dstSpec := specSymmetricDefault, specSymmetricDefault
		if isSrcAsym {
			srcSpec = srcAsym.KeySpec
		}
		if isDstAsym {
			dstSpec = dstAsym.KeySpec
		}
		groups := append(append([]quota.Group(nil), quota.GroupFor(r.op, srcSpec)...), quota.GroupFor(r.op, dstSpec)...)
		if err := s.quota.Allow(s.cfg.AccountID, groups...); err != nil {
			return nil, err
		}
	}
	var srcAlg, dstAlg encAlg
	var src, dst *cluster.Key
	var err error
	if isSrcAsym {
		src = srcAsym
		if err := s.authorize(r, authReq{action: "ReEncryptFrom", key: src, grantTokens: in.GrantTokens}); err != nil {
			return nil, err
		}
		if err := s.checkKeyState(r.op, src); err != nil {
			return nil, err
		}
		if srcAlg, err = asymEncAlg(src, in.SourceEncryptionAlgorithm); err != nil {
			return nil, err
		}
		if len(in.SourceEncryptionContext) > 0 {
			return nil, apiErr(errValidation, "EncryptionContext is not supported with asymmetric KMS keys.")
		}
	} else {
		if err := checkSymmetricAlgorithm(in.SourceEncryptionAlgorithm); err != nil {
			return nil, err
		}
		if in.SourceKeyId != nil {
			if src, err = s.cryptoKey(r, in.SourceKeyId, authReq{action: "ReEncryptFrom", ec: in.SourceEncryptionContext, ecOp: true, grantTokens: in.GrantTokens}); err != nil {
				return nil, err
			}
		}
		srcAlg.name = specSymmetricDefault
	}
	if isDstAsym {
		dst = dstAsym
		if err := s.authorize(r, authReq{action: "ReEncryptTo", key: dst, grantTokens: in.GrantTokens}); err != nil {
			return nil, err
		}
		if err := s.checkKeyState(r.op, dst); err != nil {
			return nil, err
		}
		if dstAlg, err = asymEncAlg(dst, in.DestinationEncryptionAlgorithm); err != nil {
			return nil, err
		}
		if len(in.DestinationEncryptionContext) > 0 {
			return nil, apiErr(errValidation, "EncryptionContext is not supported with asymmetric KMS keys.")
		}
	} else {
		if err := checkSymmetricAlgorithm(in.DestinationEncryptionAlgorithm); err != nil {
			return nil, err
		}
		if dst, err = s.cryptoKey(r, in.DestinationKeyId, authReq{action: "ReEncryptTo", ec: in.DestinationEncryptionContext, ecOp: true, grantTokens: in.GrantTokens}); err != nil {
			return nil, err
		}
		dstAlg.name = specSymmetricDefault
	}
	if isSrcAsym && !asymCiphertextWellFormed(src.KeySpec, in.CiphertextBlob) {
		return nil, invalidCiphertext
	}
	if in.DryRun {
		return nil, dryRunOK
	}
	out := &reEncryptResponse{SourceEncryptionAlgorithm: srcAlg.name, DestinationEncryptionAlgorithm: dstAlg.name}
	var pt []byte
	if isSrcAsym {
		if pt, err = s.asymDecrypt(r.ctx, src, srcAlg, in.CiphertextBlob); err != nil {
			return nil, err
		}
	} else {
		var m cluster.Material
		src, pt, m, err = s.open(r, authReq{action: "ReEncryptFrom", ec: in.SourceEncryptionContext, ecOp: true, grantTokens: in.GrantTokens}, in.CiphertextBlob, in.SourceEncryptionContext, src)
		if err != nil {
			return nil, err
		}
		out.SourceKeyMaterialId = materialID(m)
	}
	defer clear(pt)
	if isDstAsym {
		if n := maxAsymPlaintext(dst.KeySpec, dstAlg); len(pt) > n {
			return nil, apiErr(errValidation, "The plaintext is %d bytes; %s with %s encrypts at most %d.", len(pt), dst.KeySpec, dstAlg.name, n)
		}
		if out.CiphertextBlob, err = s.asymEncrypt(dst, dstAlg, pt); err != nil {
			return nil, err
		}
	} else {
		blob, m, err := s.seal(r.ctx, dst, pt, in.DestinationEncryptionContext)
		if err != nil {
			return nil, err
		}
		out.CiphertextBlob, out.DestinationKeyMaterialId = blob, materialID(m)
	}
	s.usage.record(src.ID, r)
	out.SourceKeyId, out.KeyId = src.Arn, dst.Arn
	return out, nil
}

// ---- GenerateDataKeyPair ---------------------------------------------------

type generateDataKeyPairRequest struct {
	KeyId             *string           `json:"KeyId"`
	KeyPairSpec       *string           `json:"KeyPairSpec"`
	EncryptionContext map[string]string `json:"EncryptionContext"`
	GrantTokens       []string          `json:"GrantTokens"`
	Recipient         *struct{}         `json:"Recipient"`
	DryRun            bool              `json:"DryRun"`
}

type generateDataKeyPairResponse struct {
	PrivateKeyCiphertextBlob []byte `json:"PrivateKeyCiphertextBlob"`
	PrivateKeyPlaintext      []byte `json:"PrivateKeyPlaintext,omitempty"`
	PublicKey                []byte `json:"PublicKey"`
	KeyId                    string `json:"KeyId"`
	KeyPairSpec              string `json:"KeyPairSpec"`
	KeyMaterialId            string `json:"KeyMaterialId,omitempty"`
}

func (r *generateDataKeyPairResponse) wipe() { clear(r.PrivateKeyPlaintext) }

func (s *Server) generateDataKeyPair(r *request, withPlaintext bool) (any, error) {
	var in generateDataKeyPairRequest
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	if in.KeyPairSpec == nil {
		return nil, validationRequired("keyPairSpec")
	}
	spec := *in.KeyPairSpec
	if !oneOf(spec, dataKeyPairSpecs) {
		return nil, validationEnum("keyPairSpec", spec, strings.Join(dataKeyPairSpecs, ", "))
	}
	if err := checkGrantTokens(in.GrantTokens); err != nil {
		return nil, err
	}
	if err := checkContext(in.EncryptionContext); err != nil {
		return nil, err
	}
	if in.Recipient != nil {
		return nil, apiErr(errUnsupported, "Recipient (Nitro Enclaves attestation) is not supported by kmsd.")
	}
	k, err := s.cryptoKey(r, in.KeyId, authReq{ec: in.EncryptionContext, ecOp: true, grantTokens: in.GrantTokens})
	if err != nil {
		return nil, err
	}
	if err := s.allowKeyQuota(r.op, spec); err != nil {
		return nil, err
	}
	if in.DryRun {
		return nil, dryRunOK
	}
	priv, pub, err := generateKeyPair(spec)
	if err != nil {
		return nil, err
	}
	blob, m, err := s.seal(r.ctx, k, priv, in.EncryptionContext)
	if err != nil {
		clear(priv)
		return nil, err
	}
	s.usage.record(k.ID, r)
	out := &generateDataKeyPairResponse{PrivateKeyCiphertextBlob: blob, PublicKey: pub, KeyId: k.Arn, KeyPairSpec: spec, KeyMaterialId: materialID(m)}
	if withPlaintext {
		out.PrivateKeyPlaintext = priv
	} else {
		clear(priv)
	}
	return out, nil
}

func opGenerateDataKeyPair(s *Server, r *request) (any, error) { return s.generateDataKeyPair(r, true) }

func opGenerateDataKeyPairWithoutPlaintext(s *Server, r *request) (any, error) {
	return s.generateDataKeyPair(r, false)
}
