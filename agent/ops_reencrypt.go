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
	if s.reEncryptInvolvesAsymmetric(r, &in) {
		return s.reEncryptAsymmetric(r, &in)
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
		k, err := s.keyFor(r, *in.SourceKeyId, true)
		if err != nil {
			return nil, err
		}
		want = k
	}
	dst, err := s.cryptoKey(r, in.DestinationKeyId, authReq{action: "ReEncryptTo", ec: in.DestinationEncryptionContext, ecOp: true, grantTokens: in.GrantTokens})
	if err != nil {
		return nil, err
	}
	if in.DryRun {
		return nil, s.dryRunOpen(r, authReq{action: "ReEncryptFrom", ec: in.SourceEncryptionContext, ecOp: true, grantTokens: in.GrantTokens}, in.CiphertextBlob, want)
	}
	src, pt, sm, err := s.open(r, authReq{action: "ReEncryptFrom", ec: in.SourceEncryptionContext, ecOp: true, grantTokens: in.GrantTokens}, in.CiphertextBlob, in.SourceEncryptionContext, want)
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
