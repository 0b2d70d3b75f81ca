package agent

import (
	"crypto/rand"

	"github.com/kmsd/kmsd/cluster"
)

var dryRunOK = &APIError{Type: errDryRun, Status: 400, Message: "The request would have succeeded, but the DryRun option is set."}

// cryptoKey resolves the key of a symmetric crypto operation, authorizes
// a (its action defaults to the operation) and checks the key's state and
// usage.
func (s *Server) cryptoKey(r *request, id *string, a authReq) (*cluster.Key, error) {
	if id == nil {
		return nil, validationRequired("keyId")
	}
	k, err := s.keyFor(r, *id, true)
	if err != nil {
		return nil, err
	}
	if a.action == "" {
		a.action = r.op
	}
	a.key = k
	if err := s.authorize(r, a); err != nil {
		return nil, err
	}
	if err := s.checkKeyState(r.op, k); err != nil {
		return nil, err
	}
	withStoreRequest(r, k)
	if k.KeyUsage != usageEncryptDecrypt || k.KeySpec != specSymmetricDefault {
		return nil, apiErr(errInvalidKeyUsage, "%s key usage is %s and key spec is %s; this operation needs a symmetric ENCRYPT_DECRYPT key.", k.Arn, k.KeyUsage, k.KeySpec)
	}
	return k, nil
}

func checkSymmetricAlgorithm(a *string) error {
	if a == nil || *a == specSymmetricDefault {
		return nil
	}
	switch *a {
	case "RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256", "SM2PKE":
		return apiErr(errInvalidKeyUsage, "The encryption algorithm %s is not valid for a symmetric key.", *a)
	}
	return validationEnum("encryptionAlgorithm", *a, "SYMMETRIC_DEFAULT, RSAES_OAEP_SHA_1, RSAES_OAEP_SHA_256, SM2PKE")
}

func opEncrypt(s *Server, r *request) (any, error) {
	var in encryptRequest
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	defer clear(in.Plaintext)
	if in.Plaintext == nil {
		return nil, validationRequired("plaintext")
	}
	if len(in.Plaintext) < 1 || len(in.Plaintext) > maxPlaintext {
		return nil, validationLength("plaintext", 1, maxPlaintext)
	}
	if err := checkGrantTokens(in.GrantTokens); err != nil {
		return nil, err
	}
	if err := checkContext(in.EncryptionContext); err != nil {
		return nil, err
	}
	if k, ok := s.asymEncryptionKey(r, in.KeyId); ok {
		return s.encryptAsymmetric(r, &in, k)
	}
	if err := s.allowKeyQuota(r.op, specSymmetricDefault); err != nil {
		return nil, err
	}
	k, err := s.cryptoKey(r, in.KeyId, authReq{ec: in.EncryptionContext, ecOp: true, grantTokens: in.GrantTokens})
	if err != nil {
		return nil, err
	}
	if err := checkSymmetricAlgorithm(in.EncryptionAlgorithm); err != nil {
		return nil, err
	}
	if in.DryRun {
		return nil, dryRunOK
	}
	blob, _, err := s.seal(r.ctx, k, in.Plaintext, in.EncryptionContext)
	if err != nil {
		return nil, err
	}
	s.usage.record(k.ID, r)
	return &encryptResponse{CiphertextBlob: blob, KeyId: k.Arn, EncryptionAlgorithm: specSymmetricDefault}, nil
}

func opDecrypt(s *Server, r *request) (any, error) {
	var in decryptRequest
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	if in.CiphertextBlob == nil {
		return nil, validationRequired("ciphertextBlob")
	}
	if len(in.CiphertextBlob) < 1 || len(in.CiphertextBlob) > maxCiphertext {
		return nil, validationLength("ciphertextBlob", 1, maxCiphertext)
	}
	if err := checkGrantTokens(in.GrantTokens); err != nil {
		return nil, err
	}
	if k, ok := s.asymEncryptionKey(r, in.KeyId); ok {
		return s.decryptAsymmetric(r, &in, k)
	}
	if err := s.allowKeyQuota(r.op, specSymmetricDefault); err != nil {
		return nil, err
	}
	if err := checkSymmetricAlgorithm(in.EncryptionAlgorithm); err != nil {
		return nil, err
	}
	if in.Recipient != nil {
		return nil, apiErr(errUnsupported, "Recipient (Nitro Enclaves attestation) is not supported by kmsd.")
	}
	var want *cluster.Key
	if in.KeyId != nil {
		k, err := s.keyFor(r, *in.KeyId, true)
		if err != nil {
			return nil, err
		}
		want = k
	}
	if in.DryRun {
		return nil, s.dryRunOpen(r, authReq{ec: in.EncryptionContext, ecOp: true, grantTokens: in.GrantTokens}, in.CiphertextBlob, want)
	}
	k, pt, m, err := s.open(r, authReq{ec: in.EncryptionContext, ecOp: true, grantTokens: in.GrantTokens}, in.CiphertextBlob, in.EncryptionContext, want)
	if err != nil {
		return nil, err
	}
	s.usage.record(k.ID, r)
	return &decryptResponse{KeyId: k.Arn, Plaintext: pt, EncryptionAlgorithm: specSymmetricDefault, KeyMaterialId: materialID(m)}, nil
}

// dataKeySize validates GenerateDataKey's KeySpec xor NumberOfBytes.
func dataKeySize(spec *string, n *int64) (int, error) {
	switch {
	case spec != nil && n != nil:
		return 0, apiErr(errValidation, "Please specify either number of bytes or key spec.")
	case spec != nil:
		switch *spec {
		case "AES_256":
			return 32, nil
		case "AES_128":
			return 16, nil
		}
		return 0, validationEnum("keySpec", *spec, "AES_256, AES_128")
	case n != nil:
		if *n < 1 || *n > maxDataKeySize {
			return 0, validationRange("numberOfBytes", *n, 1, maxDataKeySize)
		}
		return int(*n), nil
	}
	return 0, apiErr(errValidation, "Please specify either number of bytes or key spec.")
}

func (s *Server) generateDataKey(r *request, withPlaintext bool) (any, error) {
	var in generateDataKeyRequest
	if err := decode(r, &in); err != nil {
		return nil, err
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
	n, err := dataKeySize(in.KeySpec, in.NumberOfBytes)
	if err != nil {
		return nil, err
	}
	if in.DryRun {
		return nil, dryRunOK
	}
	dk := make([]byte, n)
	if _, err := rand.Read(dk); err != nil {
		return nil, err
	}
	blob, m, err := s.seal(r.ctx, k, dk, in.EncryptionContext)
	if err != nil {
		clear(dk)
		return nil, err
	}
	s.usage.record(k.ID, r)
	out := &generateDataKeyResponse{CiphertextBlob: blob, KeyId: k.Arn, KeyMaterialId: materialID(m)}
	if withPlaintext {
		out.Plaintext = dk
	} else {
		clear(dk)
	}
	return out, nil
}

func opGenerateDataKey(s *Server, r *request) (any, error) { return s.generateDataKey(r, true) }

func opGenerateDataKeyWithoutPlaintext(s *Server, r *request) (any, error) {
	return s.generateDataKey(r, false)
}

func opGenerateRandom(s *Server, r *request) (any, error) {
	var in generateRandomRequest
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	if in.Recipient != nil {
		return nil, apiErr(errUnsupported, "Recipient (Nitro Enclaves attestation) is not supported by kmsd.")
	}
	if in.NumberOfBytes == nil {
		return nil, validationRequired("numberOfBytes")
	}
	if err := s.authorize(r, authReq{action: r.op}); err != nil {
		return nil, err
	}
	if n := *in.NumberOfBytes; n < 1 || n > maxDataKeySize {
		return nil, validationRange("numberOfBytes", n, 1, maxDataKeySize)
	}
	if in.CustomKeyStoreId != nil {
		return s.storeRandom(r, in.CustomKeyStoreId, int(*in.NumberOfBytes))
	}
	b, err := s.pool.Random(r.ctx, int(*in.NumberOfBytes))
	if err != nil {
		return nil, err
	}
	return &generateRandomResponse{Plaintext: b}, nil
}
