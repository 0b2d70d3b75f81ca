package agent

import (
	"github.com/kmsd/kmsd/cluster"
)

// opReEncrypt decrypts a blob under its key and encrypts the plaintext under
// the destination key, inside the server: the plaintext never leaves it.
func opReEncrypt(s *Server, r *request) (any, error) {
	var in reEncryptRequest
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	if in.CiphertextBlob == nil {
		return nil, validationRequired("ciphertextBlob")
	}
	if len(in.CiphertextBlob) < 1 || len(in.CiphertextBlob) > maxCiphertext {
		return nil, validationLength("ciphertextBlob", 1, maxCiphertext)
	}
	if in.DestinationKeyId == nil {
		return nil, validationRequired("destinationKeyId")
	}
	if err := checkGrantTokens(in.GrantTokens); err != nil {
		return nil, err
	}
	if s.reEncryptInvolvesRSA(&in) {
		return s.reEncryptRSA(r, &in)
	}
	if err := s.allowKeyQuota(r.op, specSymmetricDefault); err != nil {
		return nil, err
	}
	if err := checkSymmetricAlgorithm(in.SourceEncryptionAlgorithm); err != nil {
		return nil, err
	}
	if err := checkSymmetricAlgorithm(in.DestinationEncryptionAlgorithm); err != nil {
		return nil, err
	}
	if err := checkContext(in.DestinationEncryptionContext); err != nil {
		return nil, err
	}
	var want *cluster.Key
	if in.SourceKeyId != nil {
		k, err := s.cryptoKey(r.op, in.SourceKeyId)
		if err != nil {
			return nil, err
		}
		want = k
	}
	dst, err := s.cryptoKey(r.op, in.DestinationKeyId)
	if err != nil {
		return nil, err
	}
	if in.DryRun {
		if _, err := parseBlob(in.CiphertextBlob); err != nil {
			return nil, invalidCiphertext
		}
		return nil, dryRunOK
	}
	src, pt, sm, err := s.open(r.ctx, r.op, in.CiphertextBlob, in.SourceEncryptionContext, want)
	if err != nil {
		return nil, err
	}
	defer clear(pt)
	blob, dm, err := s.seal(r.ctx, dst, pt, in.DestinationEncryptionContext)
	if err != nil {
		return nil, err
	}
	s.usage.record(src.ID, r)
	return &reEncryptResponse{
		CiphertextBlob: blob, SourceKeyId: src.Arn, KeyId: dst.Arn,
		SourceEncryptionAlgorithm: specSymmetricDefault, DestinationEncryptionAlgorithm: specSymmetricDefault,
		SourceKeyMaterialId: materialID(sm), DestinationKeyMaterialId: materialID(dm),
	}, nil
}
