package agent

import (
	"errors"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/kmsd/kmsd/agent/policy"
	"github.com/kmsd/kmsd/cluster"
)

const (
	specSymmetricDefault = "SYMMETRIC_DEFAULT"
	usageEncryptDecrypt  = "ENCRYPT_DECRYPT"
	originAWSKMS         = "AWS_KMS"
	maxPolicyBytes       = 32768
	maxDescription       = 8192
)

var keySpecs = []string{"RSA_2048", "RSA_3072", "RSA_4096", "ECC_NIST_P256", "ECC_NIST_P384", "ECC_NIST_P521",
	"ECC_SECG_P256K1", "SYMMETRIC_DEFAULT", "HMAC_224", "HMAC_256", "HMAC_384", "HMAC_512", "SM2",
	"ML_DSA_44", "ML_DSA_65", "ML_DSA_87", "ECC_NIST_EDWARDS25519"}

var keyUsages = []string{"SIGN_VERIFY", "ENCRYPT_DECRYPT", "GENERATE_VERIFY_MAC", "KEY_AGREEMENT"}
var origins = []string{"AWS_KMS", "EXTERNAL", "AWS_CLOUDHSM", "EXTERNAL_KEY_STORE"}

func oneOf(v string, set []string) bool {
	for _, s := range set {
		if s == v {
			return true
		}
	}
	return false
}

func opCreateKey(s *Server, r *request) (any, error) {
	var in createKeyRequest
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	spec := specSymmetricDefault
	switch {
	case in.KeySpec != nil && in.CustomerMasterKeySpec != nil:
		return nil, apiErr(errValidation, "You cannot specify KeySpec and CustomerMasterKeySpec in the same request. CustomerMasterKeySpec is deprecated.")
	case in.KeySpec != nil:
		spec = *in.KeySpec
	case in.CustomerMasterKeySpec != nil:
		spec = *in.CustomerMasterKeySpec
	}
	if !oneOf(spec, keySpecs) {
		return nil, validationEnum("keySpec", spec, strings.Join(keySpecs, ", "))
	}
	usage := usageEncryptDecrypt
	if in.KeyUsage != nil {
		usage = *in.KeyUsage
		if !oneOf(usage, keyUsages) {
			return nil, validationEnum("keyUsage", usage, strings.Join(keyUsages, ", "))
		}
	}
	origin := originAWSKMS
	if in.Origin != nil {
		origin = *in.Origin
		if !oneOf(origin, origins) {
			return nil, validationEnum("origin", origin, strings.Join(origins, ", "))
		}
	}
	if err := checkSpecUsage(spec, usage); err != nil {
		return nil, err
	}
	if origin == cluster.OriginExternal {
		switch {
		case checkImportSpec(spec, usage) != nil:
			return nil, checkImportSpec(spec, usage)
		case in.CustomKeyStoreId != nil || in.XksKeyId != nil:
			return nil, apiErr(errUnsupported, "Origin EXTERNAL keys cannot be in a custom key store.")
		}
	}
	desc := ""
	if in.Description != nil {
		desc = *in.Description
		if utf8.RuneCountInString(desc) > maxDescription {
			return nil, validationLength("description", 0, maxDescription)
		}
	}
	tags, err := checkTags(in.Tags)
	if err != nil {
		return nil, err
	}
	conds := map[string][]string{"kms:keyspec": {spec}, "kms:keyusage": {usage}, "kms:keyorigin": {origin},
		"kms:multiregion": {"false"}}
	if in.MultiRegion {
		conds["kms:multiregion"], conds["kms:multiregionkeytype"] = []string{"true"}, []string{cluster.MultiRegionPrimary}
	}
	if err := s.authorize(r, authReq{action: r.op, conds: conds}); err != nil {
		return nil, err
	}
	id := uuid.NewString()
	if in.MultiRegion {
		id = newMultiRegionKeyID()
	}
	policy := s.defaultPolicyText
	if in.Policy != nil {
		if err := s.checkKeyPolicy(r, *in.Policy, s.keyArn(id), in.BypassPolicyLockoutSafetyCheck); err != nil {
			return nil, err
		}
		policy = *in.Policy
	}
	var plan *storeKeyPlan // a key in a custom key store (keystore_crypto.go)
	if in.CustomKeyStoreId != nil || in.XksKeyId != nil || (origin != originAWSKMS && origin != cluster.OriginExternal) {
		var err error
		if plan, err = s.planStoreKey(r, origin, in.CustomKeyStoreId, in.XksKeyId); err != nil {
			return nil, err
		}
	}

	now := s.cfg.Now().UnixNano()
	k := &cluster.Key{
		ID: id, Arn: s.keyArn(id), AccountID: s.cfg.AccountID, Created: now,
		Description: desc, KeySpec: spec, KeyUsage: usage, Origin: origin, KeyManager: "CUSTOMER",
		State: cluster.StateEnabled, Tags: tags, Policy: policy,
	}
	if origin == cluster.OriginExternal { // material comes with ImportKeyMaterial
		k.State, k.Import = cluster.StatePendingImport, &cluster.KeyImport{}
		if t, _ := importTarget(spec, usage); in.MultiRegion && t.Pair.Type == 0 {
			fp, err := s.pool.GenerateWrappedKey(r.ctx) // see cluster.KeyImport.FingerprintKey
			if err != nil {
				return nil, err
			}
			k.Import.FingerprintKey = fp
		}
	} else {
		material, err := s.newMaterial(r.ctx, id, spec, usage, now)
		if err != nil {
			return nil, err
		}
		k.Materials = []cluster.Material{material}
	}
	if in.MultiRegion {
		k.MultiRegion = true
		k.MR = &cluster.MultiRegion{Type: cluster.MultiRegionPrimary, Primary: cluster.RegionKey{Region: s.cfg.Region, Arn: k.Arn}, Gen: 1}
	}
	if plan != nil {
		if err := s.createStoreKey(r, plan, k); err != nil {
			return nil, err
		}
		return &keyMetadataResponse{KeyMetadata: s.metadata(k)}, nil
	}
	_, err = s.apply(r.ctx, &cluster.CreateKey{Key: k, MaxKeys: s.cfg.MaxKeys})
	if errors.Is(err, cluster.ErrLimitExceeded) {
		return nil, apiErr(errLimitExceeded, "The request was rejected because the account has reached its quota of KMS keys.")
	}
	if err != nil {
		return nil, err
	}
	return &keyMetadataResponse{KeyMetadata: s.metadata(k)}, nil
}

func (s *Server) metadata(k *cluster.Key) keyMetadata {
	k = s.storeView(k)
	md := keyMetadata{
		AWSAccountId: k.AccountID, KeyId: k.ID, Arn: k.Arn, CreationDate: epoch(k.Created),
		Enabled: k.State == cluster.StateEnabled, Description: k.Description, KeyUsage: k.KeyUsage,
		KeyState: k.State, Origin: k.Origin, KeyManager: k.KeyManager,
		CustomerMasterKeySpec: k.KeySpec, KeySpec: k.KeySpec, MultiRegion: k.MultiRegion,
	}
	setAlgorithms(k.KeySpec, k.KeyUsage, &md.EncryptionAlgorithms, &md.SigningAlgorithms, &md.MacAlgorithms, &md.KeyAgreementAlgorithms)
	// AWS reports CurrentKeyMaterialId for symmetric encryption keys only.
	if m, ok := k.CurrentMaterial(); ok && k.KeySpec == specSymmetricDefault {
		md.CurrentKeyMaterialId = materialID(m)
	}
	s.storeMetadata(k, &md)
	importMetadata(&md, k)
	if k.State == cluster.StatePendingDeletion {
		d, w := epoch(k.DeletionDate), k.PendingDays
		md.DeletionDate, md.PendingDeletionWindowInDays = &d, &w
	}
	if k.State == cluster.StatePendingReplicaDeletion { // the waiting period has not started
		w := k.PendingDays
		md.PendingDeletionWindowInDays = &w
	}
	md.MultiRegionConfiguration = multiRegionConfig(k.MR)
	return md
}

// defaultPolicy is the guide's default key policy: the account root has
// full access, so IAM-style access control can take over.
func (s *Server) defaultPolicy() string {
	return strings.Replace(policy.DefaultKeyPolicy(s.cfg.AccountID), "arn:aws:iam::", "arn:"+s.partition+":iam::", 1)
}

func checkTags(in []tagWire) ([]cluster.Tag, error) {
	if len(in) > cluster.MaxTagsPerKey {
		return nil, apiErr(errTag, "Too many tags: a KMS key can have at most %d tags.", cluster.MaxTagsPerKey)
	}
	seen := map[string]bool{}
	out := make([]cluster.Tag, 0, len(in))
	for _, t := range in {
		if n := utf8.RuneCountInString(t.TagKey); n < 1 || n > 128 {
			return nil, validationLength("tags.member.tagKey", 1, 128)
		}
		if utf8.RuneCountInString(t.TagValue) > 256 {
			return nil, validationLength("tags.member.tagValue", 0, 256)
		}
		if !tagChars(t.TagKey) || !tagChars(t.TagValue) {
			return nil, apiErr(errTag, "Tag keys and values may contain only letters, digits, white space and _ . : / = + - @")
		}
		if strings.HasPrefix(strings.ToLower(t.TagKey), "aws:") {
			return nil, apiErr(errTag, "Tags beginning with aws: are reserved")
		}
		if seen[t.TagKey] {
			return nil, apiErr(errTag, "Duplicate tag key %s", t.TagKey)
		}
		seen[t.TagKey] = true
		out = append(out, cluster.Tag{Key: t.TagKey, Value: t.TagValue})
	}
	return out, nil
}

func tagChars(s string) bool {
	for _, c := range s {
		if !(unicode.IsLetter(c) || unicode.IsDigit(c) || unicode.IsSpace(c) || strings.ContainsRune("_.:/=+-@", c)) {
			return false
		}
	}
	return true
}

func opDescribeKey(s *Server, r *request) (any, error) {
	var in describeKeyRequest
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	k, err := s.grantableKey(r, in.KeyId, in.GrantTokens)
	if err != nil {
		return nil, err
	}
	return &keyMetadataResponse{KeyMetadata: s.metadata(k)}, nil
}

// grantableKey resolves the KeyId (id, ARN or alias) of an operation that
// takes GrantTokens, checks them and authorizes the caller for r.op.
func (s *Server) grantableKey(r *request, id *string, grantTokens []string) (*cluster.Key, error) {
	if id == nil {
		return nil, validationRequired("keyId")
	}
	if err := checkGrantTokens(grantTokens); err != nil {
		return nil, err
	}
	k, err := s.keyFor(r, *id, true)
	if err != nil {
		return nil, err
	}
	if err := s.authorize(r, authReq{action: r.op, key: k, grantTokens: grantTokens}); err != nil {
		return nil, err
	}
	return k, nil
}

// pageLimit validates an AWS Limit (1..1000, default 100).
func pageLimit(l *int64) (int, error) {
	if l == nil {
		return 100, nil
	}
	if *l < 1 || *l > 1000 {
		return 0, validationRange("limit", *l, 1, 1000)
	}
	return int(*l), nil
}

func opListKeys(s *Server, r *request) (any, error) {
	var in listKeysRequest
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	limit, err := pageLimit(in.Limit)
	if err != nil {
		return nil, err
	}
	if err := s.authorize(r, authReq{action: r.op}); err != nil {
		return nil, err
	}
	after := ""
	if in.Marker != nil {
		after = *in.Marker
		if !looksLikeKeyID(after) {
			return nil, apiErr(errInvalidMarker, "The marker %q is not one this service returned.", after)
		}
	}
	keys, more := s.node.ListKeys(after, limit)
	out := &listKeysResponse{Keys: make([]keyListEntry, 0, len(keys)), Truncated: more}
	for _, k := range keys {
		out.Keys = append(out.Keys, keyListEntry{KeyId: k.ID, KeyArn: k.Arn})
	}
	if more {
		out.NextMarker = keys[len(keys)-1].ID
	}
	return out, nil
}
