package hsmtest

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"hash"

	"github.com/kmsd/kmsd/hsmpool"
)

// WrapForImport encrypts key material for import under the wrapping public
// key pubDER (DER SubjectPublicKeyInfo, as GetParametersForImport returns
// it) the way a KMS client does, with Go's crypto only: RSA-OAEP for the
// RSAES algorithms; for RSA_AES_KEY_WRAP, a fresh AES-256 key wraps the
// material (RFC 5649) and RSA-OAEP wraps that key.
func WrapForImport(pubDER []byte, alg hsmpool.ImportAlgorithm, material []byte) ([]byte, error) {
	k, err := x509.ParsePKIXPublicKey(pubDER)
	if err != nil {
		return nil, err
	}
	pk, ok := k.(*rsa.PublicKey)
	if !ok {
		return nil, errors.New("hsmtest: wrapping key is not RSA")
	}
	var h hash.Hash = sha1.New()
	if alg == hsmpool.ImportOAEPSHA256 || alg == hsmpool.ImportRSAAESWrapSHA256 {
		h = sha256.New()
	}
	switch alg {
	case hsmpool.ImportOAEPSHA1, hsmpool.ImportOAEPSHA256:
		return rsa.EncryptOAEP(h, rand.Reader, pk, material, nil)
	case hsmpool.ImportRSAAESWrapSHA1, hsmpool.ImportRSAAESWrapSHA256:
		eph := make([]byte, 32)
		rand.Read(eph)
		defer clear(eph)
		head, err := rsa.EncryptOAEP(h, rand.Reader, pk, eph, nil)
		if err != nil {
			return nil, err
		}
		tail, err := WrapPad(eph, material)
		if err != nil {
			return nil, err
		}
		return append(head, tail...), nil
	}
	return nil, errors.New("hsmtest: unknown wrapping algorithm")
}

// WrapPad is AES key wrap with padding (RFC 5649) of plaintext under kek.
func WrapPad(kek, plaintext []byte) ([]byte, error) { return hsmpool.WrapPad(kek, plaintext) }
