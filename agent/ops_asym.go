package agent

import (
	"context"
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha512"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"

	"filippo.io/mldsa"
	"filippo.io/mldsa/mldsacrypto"
	"github.com/decred/dcrd/dcrec/secp256k1/v4"

	"github.com/kmsd/kmsd/cluster"
	"github.com/kmsd/kmsd/hsmpool"
	"github.com/kmsd/kmsd/internal/mldsamu"
	"github.com/kmsd/kmsd/quota"
)

// Sign, Verify, GetPublicKey, DeriveSharedSecret, RSA Encrypt and Decrypt,
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
)

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
)

type sigAlg struct {
	kind sigKind
	hash crypto.Hash
}

// sigAlgs are the signing algorithms kmsd runs (SM2DSA is not one).
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
}

// quotaAfterKey lists the operations whose request quota depends on the
// key (RSA, ECC or a key pair spec): the handler charges it once the key
// is known, instead of serveAPI. Encrypt, Decrypt and ReEncrypt charge the
// symmetric quota as soon as they know the key is not an RSA key.
var quotaAfterKey = map[string]bool{
	"Sign": true, "Verify": true, "GenerateDataKeyPair": true, "GenerateDataKeyPairWithoutPlaintext": true,
	"Encrypt": true, "Decrypt": true, "ReEncrypt": true,
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
// message for Ed25519ph (HashEdDSA's prehash), μ for EXTERNAL_MU.
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
	peerAny, err := x509.ParsePKIXPublicKey(in.PublicKey)
	if err != nil {
		return nil, apiErr(errValidation, "PublicKey is not a DER-encoded X.509 SubjectPublicKeyInfo of an elliptic curve key.")
	}
	peer, ok := peerAny.(*ecdsa.PublicKey)
	if !ok || peer.Curve != specs[k.KeySpec].curve {
		return nil, apiErr(errValidation, "PublicKey must be a point on the curve of %s (%s).", k.Arn, k.KeySpec)
	}
	peerECDH, err := peer.ECDH()
	if err != nil {
		return nil, apiErr(errValidation, "PublicKey is not a valid point on its curve.")
	}
	if in.DryRun {
		return nil, dryRunOK
	}
	secret, err := s.derive(r.ctx, k, peerECDH)
	if err != nil {
		return nil, err
	}
	s.usage.record(k.ID, r)
	return &deriveSharedSecretResponse{KeyId: k.Arn, SharedSecret: secret, KeyAgreementAlgorithm: "ECDH", KeyOrigin: k.Origin}, nil
}

// derive computes the ECDH shared secret of k and peer: in the HSM for
// keys made there, else with the unsealed key in Go.
func (s *Server) derive(ctx context.Context, k *cluster.Key, peer *ecdh.PublicKey) ([]byte, error) {
	if m, ok := k.CurrentMaterial(); ok && m.Form == cluster.MaterialHSMPrivate {
		size := (specs[k.KeySpec].curve.Params().BitSize + 7) / 8
		return s.pool.DeriveECDH(ctx, m.Wrapped, peer.Bytes(), size)
	}
	key, wipe, err := s.privateKey(ctx, k)
	if err != nil {
		return nil, err
	}
	defer wipe()
	priv, ok := key.(*ecdsa.PrivateKey)
	if !ok {
		return nil, apiErr(errInvalidKeyUsage, "%s cannot derive a shared secret.", k.Arn)
	}
	privECDH, err := priv.ECDH()
	if err != nil {
		return nil, err
	}
	secret, err := privECDH.ECDH(peer)
	if err != nil {
		return nil, apiErr(errValidation, "PublicKey is not a valid point on its curve.")
	}
	return secret, nil
}

// ---- RSA Encrypt and Decrypt -----------------------------------------------

// rsaEncryptionKey resolves id and reports whether it names an RSA
// ENCRYPT_DECRYPT key. Resolution errors are left to the symmetric path,
// which reports them.
func (s *Server) rsaEncryptionKey(r *request, id *string) (*cluster.Key, bool) {
	if id == nil {
		return nil, false
	}
	k, err := s.keyFor(r, *id, true)
	if err != nil || specs[k.KeySpec].family != famRSA || k.KeyUsage != usageEncryptDecrypt {
		return nil, false
	}
	return k, true
}

// oaep returns the hash of an RSAES_OAEP algorithm (also used for MGF1).
func oaep(k *cluster.Key, alg *string) (crypto.Hash, string, error) {
	name := specSymmetricDefault
	if alg != nil {
		name = *alg
	}
	switch name {
	case "RSAES_OAEP_SHA_1":
		return crypto.SHA1, name, nil
	case "RSAES_OAEP_SHA_256":
		return crypto.SHA256, name, nil
	case specSymmetricDefault, "SM2PKE":
		return 0, "", apiErr(errInvalidKeyUsage, "Algorithm %s is incompatible with key spec %s.", name, k.KeySpec)
	}
	return 0, "", validationEnum("encryptionAlgorithm", name, "SYMMETRIC_DEFAULT, RSAES_OAEP_SHA_1, RSAES_OAEP_SHA_256, SM2PKE")
}

// maxOAEPPlaintext is the guide's plaintext limit: k - 2·hLen - 2 bytes
// (RSA_2048: 214 with SHA-1, 190 with SHA-256).
func maxOAEPPlaintext(bits int, h crypto.Hash) int { return bits/8 - 2*h.Size() - 2 }

func (s *Server) encryptRSA(r *request, in *encryptRequest, k *cluster.Key) (any, error) {
	if err := s.allowKeyQuota(r.op, k.KeySpec); err != nil {
		return nil, err
	}
	if err := s.authorize(r, authReq{action: r.op, key: k, grantTokens: in.GrantTokens}); err != nil {
		return nil, err
	}
	if err := s.checkKeyState(r.op, k); err != nil {
		return nil, err
	}
	h, name, err := oaep(k, in.EncryptionAlgorithm)
	if err != nil {
		return nil, err
	}
	if len(in.EncryptionContext) > 0 {
		return nil, apiErr(errValidation, "EncryptionContext is not supported with asymmetric KMS keys.")
	}
	if n := maxOAEPPlaintext(specs[k.KeySpec].bits, h); len(in.Plaintext) > n {
		return nil, apiErr(errValidation, "Plaintext is %d bytes; %s with %s encrypts at most %d.", len(in.Plaintext), k.KeySpec, name, n)
	}
	if in.DryRun {
		return nil, dryRunOK
	}
	pubAny, err := s.publicKey(k)
	if err != nil {
		return nil, err
	}
	pub, ok := pubAny.(*rsa.PublicKey)
	if !ok {
		return nil, apiErr(errInvalidKeyUsage, "%s is not an RSA key.", k.Arn)
	}
	ct, err := rsa.EncryptOAEP(h.New(), rand.Reader, pub, in.Plaintext, nil)
	if err != nil {
		return nil, err
	}
	s.usage.record(k.ID, r)
	return &encryptResponse{CiphertextBlob: ct, KeyId: k.Arn, EncryptionAlgorithm: name}, nil
}

func (s *Server) decryptRSA(r *request, in *decryptRequest, k *cluster.Key) (any, error) {
	if err := s.allowKeyQuota(r.op, k.KeySpec); err != nil {
		return nil, err
	}
	if err := s.authorize(r, authReq{action: r.op, key: k, grantTokens: in.GrantTokens}); err != nil {
		return nil, err
	}
	if err := s.checkKeyState(r.op, k); err != nil {
		return nil, err
	}
	h, name, err := oaep(k, in.EncryptionAlgorithm)
	if err != nil {
		return nil, err
	}
	if len(in.EncryptionContext) > 0 {
		return nil, apiErr(errValidation, "EncryptionContext is not supported with asymmetric KMS keys.")
	}
	if in.Recipient != nil {
		return nil, apiErr(errUnsupported, "Recipient (Nitro Enclaves attestation) is not supported by kmsd.")
	}
	if len(in.CiphertextBlob) != specs[k.KeySpec].bits/8 {
		return nil, invalidCiphertext
	}
	if in.DryRun {
		return nil, dryRunOK
	}
	pt, err := s.decryptOAEP(r.ctx, k, h, in.CiphertextBlob)
	if errors.Is(err, hsmpool.ErrAuthFailed) {
		return nil, invalidCiphertext
	}
	if err != nil {
		return nil, err
	}
	s.usage.record(k.ID, r)
	return &decryptResponse{KeyId: k.Arn, Plaintext: pt, EncryptionAlgorithm: name}, nil
}

// decryptOAEP decrypts ct with k's private key: in the HSM for keys made
// there, else with the unsealed key in Go. A ciphertext that does not
// decrypt is hsmpool.ErrAuthFailed either way.
func (s *Server) decryptOAEP(ctx context.Context, k *cluster.Key, h crypto.Hash, ct []byte) ([]byte, error) {
	if m, ok := k.CurrentMaterial(); ok && m.Form == cluster.MaterialHSMPrivate {
		return s.pool.DecryptOAEP(ctx, m.Wrapped, specs[k.KeySpec].bits, h, ct)
	}
	key, wipe, err := s.privateKey(ctx, k)
	if err != nil {
		return nil, err
	}
	defer wipe()
	priv, ok := key.(*rsa.PrivateKey)
	if !ok {
		return nil, hsmpool.ErrAuthFailed
	}
	pt, err := rsa.DecryptOAEP(h.New(), nil, priv, ct, nil)
	if err != nil {
		return nil, hsmpool.ErrAuthFailed
	}
	return pt, nil
}

// reEncryptInvolvesRSA reports whether the source or destination key of a
// ReEncrypt is an RSA ENCRYPT_DECRYPT key.
func (s *Server) reEncryptInvolvesRSA(r *request, in *reEncryptRequest) bool {
	_, src := s.rsaEncryptionKey(r, in.SourceKeyId)
	_, dst := s.rsaEncryptionKey(r, in.DestinationKeyId)
	return src || dst
}

// reEncryptRSA is ReEncrypt where the source or the destination (or both)
// is an RSA key: an RSA source needs SourceKeyId and
// SourceEncryptionAlgorithm, an RSA destination DestinationEncryptionAlgorithm,
// and neither takes an encryption context, as in AWS. The plaintext never
// leaves the server.
func (s *Server) reEncryptRSA(r *request, in *reEncryptRequest) (any, error) {
	srcRSA, isSrcRSA := s.rsaEncryptionKey(r, in.SourceKeyId)
	dstRSA, isDstRSA := s.rsaEncryptionKey(r, in.DestinationKeyId)
	// ReEncrypt counts against the quota of each key's spec.
	if s.quota != nil {
		srcSpec, dstSpec := specSymmetricDefault, specSymmetricDefault
		if isSrcRSA {
			srcSpec = srcRSA.KeySpec
		}
		if isDstRSA {
			dstSpec = dstRSA.KeySpec
		}
		groups := append(append([]quota.Group(nil), quota.GroupFor(r.op, srcSpec)...), quota.GroupFor(r.op, dstSpec)...)
		if err := s.quota.Allow(s.cfg.AccountID, groups...); err != nil {
			return nil, err
		}
	}
	var srcHash, dstHash crypto.Hash
	var srcAlg, dstAlg string
	var src, dst *cluster.Key
	var err error
	if isSrcRSA {
		src = srcRSA
		if err := s.authorize(r, authReq{action: "ReEncryptFrom", key: src, grantTokens: in.GrantTokens}); err != nil {
			return nil, err
		}
		if err := s.checkKeyState(r.op, src); err != nil {
			return nil, err
		}
		if srcHash, srcAlg, err = oaep(src, in.SourceEncryptionAlgorithm); err != nil {
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
		srcAlg = specSymmetricDefault
	}
	if isDstRSA {
		dst = dstRSA
		if err := s.authorize(r, authReq{action: "ReEncryptTo", key: dst, grantTokens: in.GrantTokens}); err != nil {
			return nil, err
		}
		if err := s.checkKeyState(r.op, dst); err != nil {
			return nil, err
		}
		if dstHash, dstAlg, err = oaep(dst, in.DestinationEncryptionAlgorithm); err != nil {
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
		dstAlg = specSymmetricDefault
	}
	if isSrcRSA && len(in.CiphertextBlob) != specs[src.KeySpec].bits/8 {
		return nil, invalidCiphertext
	}
	if in.DryRun {
		return nil, dryRunOK
	}
	out := &reEncryptResponse{SourceEncryptionAlgorithm: srcAlg, DestinationEncryptionAlgorithm: dstAlg}
	var pt []byte
	if isSrcRSA {
		pt, err = s.decryptOAEP(r.ctx, src, srcHash, in.CiphertextBlob)
		if errors.Is(err, hsmpool.ErrAuthFailed) {
			return nil, invalidCiphertext
		}
		if err != nil {
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
	if isDstRSA {
		if n := maxOAEPPlaintext(specs[dst.KeySpec].bits, dstHash); len(pt) > n {
			return nil, apiErr(errValidation, "The plaintext is %d bytes; %s with %s encrypts at most %d.", len(pt), dst.KeySpec, dstAlg, n)
		}
		pubAny, err := s.publicKey(dst)
		if err != nil {
			return nil, err
		}
		pub, ok := pubAny.(*rsa.PublicKey)
		if !ok {
			return nil, apiErr(errInvalidKeyUsage, "%s is not an RSA key.", dst.Arn)
		}
		if out.CiphertextBlob, err = rsa.EncryptOAEP(dstHash.New(), rand.Reader, pub, pt, nil); err != nil {
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
	if spec == "SM2" {
		return nil, apiErr(errUnsupported, "KeyPairSpec SM2 is not supported by kmsd.")
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
