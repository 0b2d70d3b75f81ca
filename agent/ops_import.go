package agent

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"regexp"
	"slices"
	"strconv"
	"time"

	"github.com/kmsd/kmsd/cluster"
	"github.com/kmsd/kmsd/hsmpool"
)

// Imported key material (Origin EXTERNAL): GetParametersForImport,
// ImportKeyMaterial, DeleteImportedKeyMaterial and the leader's expiry.
//
// Where the import private key lives: GetParametersForImport makes the RSA
// wrapping key pair in the serving node's HSM and stores the private half
// in the replicated state wrapped by the HSM domain key, which every node's
// HSM holds. ImportKeyMaterial can then run on any node: that node's HSM
// unwraps the private key into a session object and the customer's material
// with it, and wraps the material with the domain key again. No request is
// pinned to one node and a restart loses nothing; the private key exists in
// plaintext only inside HSMs, and its wrapped form is dropped from the state
// once its 24 hours are over (PruneImportParams, the leader's timer).

// AWS error types of imported material.
const (
	errExpiredImportToken   = "ExpiredImportTokenException"
	errInvalidImportToken   = "InvalidImportTokenException"
	errIncorrectKeyMaterial = "IncorrectKeyMaterialException"
)

const (
	importParamsValid     = 24 * time.Hour
	maxImportValidTo      = 365 * day
	maxImportBlob         = 6144 // CiphertextType
	symmetricMaterialSize = 32   // bytes
	importTokenVersion    = 1
	tokenIDLen            = 16
)

var (
	wrappingAlgorithms = []string{"RSAES_PKCS1_V1_5", "RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256",
		"RSA_AES_KEY_WRAP_SHA_1", "RSA_AES_KEY_WRAP_SHA_256", "SM2PKE"}
	wrappingKeySpecs = []string{"RSA_2048", "RSA_3072", "RSA_4096", "SM2"}
	expirationModels = []string{cluster.ExpirationExpires, cluster.ExpirationDoesNotExpire}
	importTypes      = []string{"NEW_KEY_MATERIAL", "EXISTING_KEY_MATERIAL"}
	importAlgs       = map[string]hsmpool.ImportAlgorithm{
		"RSAES_OAEP_SHA_1":         hsmpool.ImportOAEPSHA1,
		"RSAES_OAEP_SHA_256":       hsmpool.ImportOAEPSHA256,
		"RSA_AES_KEY_WRAP_SHA_1":   hsmpool.ImportRSAAESWrapSHA1,
		"RSA_AES_KEY_WRAP_SHA_256": hsmpool.ImportRSAAESWrapSHA256,
	}
	wrappingBits         = map[string]int{"RSA_2048": 2048, "RSA_3072": 3072, "RSA_4096": 4096}
	materialIDPattern    = regexp.MustCompile(`^[a-f0-9]{64}$`)
	materialDescPattern  = regexp.MustCompile(`^[a-zA-Z0-9:/_\s.-]+$`)
	errNoImportToken     = apiErr(errInvalidImportToken, "The import token is invalid or was not issued for this KMS key.")
	errImportTokenExpiry = apiErr(errExpiredImportToken, "The import token has expired. Call GetParametersForImport for a new public key and import token.")
)

type getParametersForImportRequest struct {
	KeyId             *string `json:"KeyId"`
	WrappingAlgorithm *string `json:"WrappingAlgorithm"`
	WrappingKeySpec   *string `json:"WrappingKeySpec"`
}

type getParametersForImportResponse struct {
	KeyId             string `json:"KeyId"`
	ImportToken       []byte `json:"ImportToken"`
	PublicKey         []byte `json:"PublicKey"`
	ParametersValidTo epoch  `json:"ParametersValidTo"`
}

type importKeyMaterialRequest struct {
	KeyId                  *string  `json:"KeyId"`
	ImportToken            []byte   `json:"ImportToken"`
	EncryptedKeyMaterial   []byte   `json:"EncryptedKeyMaterial"`
	ValidTo                *float64 `json:"ValidTo"`
	ExpirationModel        *string  `json:"ExpirationModel"`
	ImportType             *string  `json:"ImportType"`
	KeyMaterialDescription *string  `json:"KeyMaterialDescription"`
	KeyMaterialId          *string  `json:"KeyMaterialId"`
}

type deleteImportedKeyMaterialRequest struct {
	KeyId         *string `json:"KeyId"`
	KeyMaterialId *string `json:"KeyMaterialId"`
}

type importKeyMaterialResponse struct {
	KeyId         string `json:"KeyId"`
	KeyMaterialId string `json:"KeyMaterialId,omitempty"`
}

// importKey resolves the key of an import operation (key id or ARN),
// authorizes the caller, refuses keys that cannot have imported material
// ([9]) and checks the key-state table.
func (s *Server) importKey(r *request, id *string, conds map[string][]string) (*cluster.Key, error) {
	if id == nil {
		return nil, validationRequired("keyId")
	}
	k, err := s.resolveKey(*id, false)
	if err != nil {
		return nil, err
	}
	if err := s.authorize(r, authReq{action: r.op, key: k, conds: conds}); err != nil {
		return nil, err
	}
	if k.Origin != cluster.OriginExternal {
		return nil, stateError(r9, k)
	}
	if err := s.checkKeyState(r.op, k); err != nil {
		return nil, err
	}
	return k, nil
}

// importTarget is what imported material of a key of spec and usage must
// be, as the guide's "Requirements for imported key material" says: 256
// bits for SYMMETRIC_DEFAULT, the spec's length for HMAC keys, a PKCS#8
// private key of the spec's modulus size or named curve for RSA and ECC
// keys. ok is false for the specs AWS imports nothing into (Ed25519,
// ML-DSA; SM2 only in the China Regions).
func importTarget(spec, usage string) (t hsmpool.ImportTarget, ok bool) {
	info := specs[spec]
	switch info.family {
	case famSymmetric:
		return hsmpool.ImportTarget{Size: symmetricMaterialSize}, spec == specSymmetricDefault
	case famHMAC:
		return hsmpool.ImportTarget{Size: info.keyLen, Secret: true}, true
	case famRSA, famNIST, famSECP256K1:
		hs, ok := hsmSpec(spec, usage)
		return hsmpool.ImportTarget{Pair: hs}, ok
	}
	return t, false
}

// checkImportSpec answers CreateKey with Origin EXTERNAL for a spec that
// cannot have imported material.
func checkImportSpec(spec, usage string) error {
	if _, ok := importTarget(spec, usage); !ok {
		return apiErr(errUnsupported, "KeySpec %s does not support imported key material (Origin EXTERNAL).", spec)
	}
	return nil
}

// checkWrapping applies the guide's "Select a wrapping algorithm" rules
// that depend on the key: RSA private keys need an RSA_AES_KEY_WRAP
// algorithm; ECC_NIST_P521 material does not fit RSAES_OAEP under an
// RSA_2048 wrapping key.
func checkWrapping(k *cluster.Key, alg, wrapSpec string) error {
	direct := alg == "RSAES_OAEP_SHA_1" || alg == "RSAES_OAEP_SHA_256"
	switch {
	case direct && specs[k.KeySpec].family == famRSA:
		return apiErr(errUnsupported, "%s cannot wrap RSA private key material (%s is %s); use RSA_AES_KEY_WRAP_SHA_256 or RSA_AES_KEY_WRAP_SHA_1.", alg, k.Arn, k.KeySpec)
	case direct && k.KeySpec == "ECC_NIST_P521" && wrapSpec == "RSA_2048":
		return apiErr(errUnsupported, "You cannot use an RSA_2048 wrapping key with %s to wrap ECC_NIST_P521 key material; use a larger wrapping key or an RSA_AES_KEY_WRAP algorithm.", alg)
	}
	return nil
}

func opGetParametersForImport(s *Server, r *request) (any, error) {
	var in getParametersForImportRequest
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	if in.WrappingAlgorithm == nil {
		return nil, validationRequired("wrappingAlgorithm")
	}
	if in.WrappingKeySpec == nil {
		return nil, validationRequired("wrappingKeySpec")
	}
	alg, spec := *in.WrappingAlgorithm, *in.WrappingKeySpec
	if !oneOf(alg, wrappingAlgorithms) {
		return nil, validationEnum("wrappingAlgorithm", alg, "RSAES_PKCS1_V1_5, RSAES_OAEP_SHA_1, RSAES_OAEP_SHA_256, RSA_AES_KEY_WRAP_SHA_1, RSA_AES_KEY_WRAP_SHA_256, SM2PKE")
	}
	if !oneOf(spec, wrappingKeySpecs) {
		return nil, validationEnum("wrappingKeySpec", spec, "RSA_2048, RSA_3072, RSA_4096, SM2")
	}
	k, err := s.importKey(r, in.KeyId, map[string][]string{"kms:wrappingalgorithm": {alg}, "kms:wrappingkeyspec": {spec}})
	if err != nil {
		return nil, err
	}
	if _, ok := importAlgs[alg]; !ok {
		return nil, apiErr(errUnsupported, "WrappingAlgorithm %s is not supported; use RSAES_OAEP_SHA_1, RSAES_OAEP_SHA_256, RSA_AES_KEY_WRAP_SHA_1 or RSA_AES_KEY_WRAP_SHA_256.", alg)
	}
	bits, ok := wrappingBits[spec]
	if !ok {
		return nil, apiErr(errUnsupported, "WrappingKeySpec %s is not supported; use RSA_2048, RSA_3072 or RSA_4096.", spec)
	}
	if err := checkWrapping(k, alg, spec); err != nil {
		return nil, err
	}
	pub, wrappedPriv, err := s.pool.GenerateImportKey(r.ctx, bits)
	if err != nil {
		return nil, err
	}
	var tid [tokenIDLen]byte
	rand.Read(tid[:])
	now := s.cfg.Now()
	validTo := now.Add(importParamsValid).UnixNano()
	p := cluster.ImportParams{TokenID: hex.EncodeToString(tid[:]), WrappingAlgorithm: alg, WrappingKeySpec: spec,
		WrappedPrivateKey: wrappedPriv, ValidTo: validTo}
	if err := s.applyKeyChange(r, k, &cluster.PutImportParams{KeyID: k.ID, Params: p, Now: now.UnixNano()}); err != nil {
		return nil, err
	}
	return &getParametersForImportResponse{KeyId: k.Arn, ImportToken: encodeImportToken(tid, validTo, s.node.AppliedIndex(), k.ID),
		PublicKey: pub, ParametersValidTo: epoch(validTo)}, nil
}

// The import token: version (1) | token id (16, random) | valid-to (8,
// unix nanos, big-endian) | raft index (8, big-endian) | key id. It is not
// secret and needs no MAC: it only names parameters that the replicated
// state holds for that key. The index is where they were applied, so a
// node that has not applied it yet waits for it instead of refusing a
// token another node has just issued.
func encodeImportToken(tid [tokenIDLen]byte, validTo int64, index uint64, keyID string) []byte {
	b := make([]byte, 0, importTokenMin+len(keyID))
	b = append(b, importTokenVersion)
	b = append(b, tid[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(validTo))
	b = binary.BigEndian.AppendUint64(b, index)
	return append(b, keyID...)
}

const importTokenMin = 1 + tokenIDLen + 8 + 8

func parseImportToken(b []byte) (tok importToken, ok bool) {
	if len(b) < importTokenMin+1 || b[0] != importTokenVersion {
		return tok, false
	}
	tok.id = hex.EncodeToString(b[1 : 1+tokenIDLen])
	tok.validTo = int64(binary.BigEndian.Uint64(b[1+tokenIDLen:]))
	tok.index = binary.BigEndian.Uint64(b[1+tokenIDLen+8:])
	tok.keyID = string(b[importTokenMin:])
	return tok, true
}

type importToken struct {
	id      string
	validTo int64
	index   uint64
	keyID   string
}

func opImportKeyMaterial(s *Server, r *request) (any, error) {
	var in importKeyMaterialRequest
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	if in.ImportToken == nil {
		return nil, validationRequired("importToken")
	}
	if in.EncryptedKeyMaterial == nil {
		return nil, validationRequired("encryptedKeyMaterial")
	}
	if n := len(in.ImportToken); n < 1 || n > maxImportBlob {
		return nil, validationLength("importToken", 1, maxImportBlob)
	}
	if n := len(in.EncryptedKeyMaterial); n < 1 || n > maxImportBlob {
		return nil, validationLength("encryptedKeyMaterial", 1, maxImportBlob)
	}
	model := cluster.ExpirationExpires
	if in.ExpirationModel != nil {
		model = *in.ExpirationModel
		if !oneOf(model, expirationModels) {
			return nil, validationEnum("expirationModel", model, "KEY_MATERIAL_EXPIRES, KEY_MATERIAL_DOES_NOT_EXPIRE")
		}
	}
	now := s.cfg.Now()
	var validTo int64
	conds := map[string][]string{"kms:expirationmodel": {model}}
	switch {
	case model == cluster.ExpirationExpires && in.ValidTo == nil:
		return nil, apiErr(errValidation, "ValidTo is required when ExpirationModel is KEY_MATERIAL_EXPIRES.")
	case model == cluster.ExpirationDoesNotExpire && in.ValidTo != nil:
		return nil, apiErr(errValidation, "ValidTo must be omitted when ExpirationModel is KEY_MATERIAL_DOES_NOT_EXPIRE.")
	case in.ValidTo != nil:
		validTo = int64(*in.ValidTo * 1e9)
		if validTo <= now.UnixNano() || validTo > now.Add(maxImportValidTo).UnixNano() {
			return nil, apiErr(errValidation, "ValidTo must be in the future and at most 365 days from now.")
		}
		conds["kms:validto"] = []string{strconv.FormatInt(validTo/1e9, 10)}
	}
	importType := ""
	if in.ImportType != nil {
		importType = *in.ImportType
		if !oneOf(importType, importTypes) {
			return nil, validationEnum("importType", importType, "NEW_KEY_MATERIAL, EXISTING_KEY_MATERIAL")
		}
	}
	if d := in.KeyMaterialDescription; d != nil && (len(*d) > 256 || (*d != "" && !materialDescPattern.MatchString(*d))) {
		return nil, apiErr(errValidation, "1 validation error detected: Value at 'keyMaterialDescription' failed to satisfy constraint: Member must have length less than or equal to 256 and match pattern ^[a-zA-Z0-9:/_\\s.-]+$")
	}
	if id := in.KeyMaterialId; id != nil {
		if !materialIDPattern.MatchString(*id) {
			return nil, apiErr(errValidation, "1 validation error detected: Value at 'keyMaterialId' failed to satisfy constraint: Member must be 64 lower-case hex digits")
		}
		if importType == "NEW_KEY_MATERIAL" {
			return nil, apiErr(errValidation, "You cannot specify a KeyMaterialId with ImportType NEW_KEY_MATERIAL.")
		}
	}
	tok, tokOK := parseImportToken(in.ImportToken)
	if tokOK && tok.index > s.node.AppliedIndex() {
		// Issued by a node ahead of this one: wait (briefly) to catch up.
		wctx, cancel := context.WithTimeout(r.ctx, 5*time.Second)
		_ = s.node.WaitApplied(wctx, tok.index)
		cancel()
	}
	k, err := s.importKey(r, in.KeyId, conds)
	if err != nil {
		return nil, err
	}
	target, ok := importTarget(k.KeySpec, k.KeyUsage)
	switch {
	case !ok:
		return nil, checkImportSpec(k.KeySpec, k.KeyUsage)
	case k.KeySpec != specSymmetricDefault && (in.ImportType != nil || in.KeyMaterialDescription != nil || in.KeyMaterialId != nil):
		return nil, apiErr(errValidation, "ImportType, KeyMaterialDescription and KeyMaterialId are only usable with symmetric encryption keys; %s is %s.", k.Arn, k.KeySpec)
	case target.Pair.Type != 0 && !s.pool.Supports(target.Pair):
		return nil, apiErr(errUnsupported, "This kmsd's HSM cannot hold %s private keys, so it cannot import them.", k.KeySpec)
	}
	var im cluster.KeyImport
	if k.Import != nil {
		im = *k.Import
	}
	if k.IsReplica() && im.MaterialID == "" {
		// The guide's order: the primary first, then the same material
		// into each replica; until the primary's material is known here
		// there is nothing to compare with.
		return nil, apiErr(errUnsupported, "%s is a multi-Region replica key: import key material into its primary key (%s) first, then the same key material here.", k.Arn, k.MR.Primary.Arn)
	}
	target.FingerprintKey = im.FingerprintKey
	versions := k.ImportVersions()
	switch {
	case importType == "EXISTING_KEY_MATERIAL" && len(versions) == 0:
		return nil, apiErr(errValidation, "No key material has been imported into %s yet; use ImportType NEW_KEY_MATERIAL.", k.Arn)
	}

	if !tokOK || tok.keyID != k.ID {
		return nil, errNoImportToken
	}
	var params *cluster.ImportParams
	for i := range im.Params {
		if im.Params[i].TokenID == tok.id {
			params = &im.Params[i]
		}
	}
	switch {
	case params == nil && tok.validTo <= now.UnixNano():
		return nil, errImportTokenExpiry // its parameters were already pruned
	case params == nil:
		return nil, errNoImportToken
	case params.ValidTo <= now.UnixNano():
		return nil, errImportTokenExpiry
	}
	imported, err := s.pool.ImportKeyMaterial(r.ctx, params.WrappedPrivateKey, importAlgs[params.WrappingAlgorithm], in.EncryptedKeyMaterial, target)
	switch {
	case errors.Is(err, hsmpool.ErrMaterialSize):
		return nil, apiErr(errInvalidCiphertext, "The key material of a %s key must be %d bits (%d bytes).", k.KeySpec, 8*target.Size, target.Size)
	case errors.Is(err, hsmpool.ErrMaterialInvalid):
		return nil, apiErr(errInvalidCiphertext, "The key material is not a valid %s private key: it must be a PKCS#8 key of the key spec's modulus size or named curve whose parts agree.", k.KeySpec)
	case errors.Is(err, hsmpool.ErrAuthFailed) && target.Pair.Type != 0:
		return nil, apiErr(errInvalidCiphertext, "The encrypted key material could not be decrypted with the wrapping key and algorithm of this import token, or is not a PKCS#8 %s private key.", k.KeySpec)
	case errors.Is(err, hsmpool.ErrAuthFailed):
		return nil, apiErr(errInvalidCiphertext, "The encrypted key material could not be decrypted with the wrapping key and algorithm of this import token.")
	case err != nil:
		return nil, err
	}
	cmd := &cluster.ImportMaterial{KeyID: k.ID, TokenID: tok.id, Wrapped: imported.Wrapped}
	switch {
	case target.Pair.Type != 0:
		der, err := hsmPublicDER(k.KeySpec, imported.Public)
		if err != nil {
			return nil, err
		}
		// The key pair's identity is its public key: the same private key
		// gives the same fingerprint whatever its encoding, and it is
		// public anyway (GetPublicKey).
		sum := sha256.Sum256(der)
		cmd.Form, cmd.Public, cmd.ReportedID = cluster.MaterialHSMPrivate, der, hex.EncodeToString(sum[:])
	case target.Secret:
		cmd.Form = cluster.MaterialHSMSecret
	}
	if len(target.FingerprintKey) > 0 && target.Pair.Type == 0 {
		cmd.ReportedID = hex.EncodeToString(imported.Fingerprint)
	}
	mid := materialID(cluster.Material{Wrapped: cmd.Wrapped, ID: cmd.ReportedID})
	known := slices.ContainsFunc(versions, func(v cluster.VersionImport) bool { return v.MaterialID == mid })
	pending := im.Pending != nil && im.Pending.MaterialID == mid
	switch {
	case importType == "NEW_KEY_MATERIAL" && known:
		return nil, apiErr(errValidation, "This key material is already associated with %s; re-import it with ImportType EXISTING_KEY_MATERIAL.", k.Arn)
	case importType == "NEW_KEY_MATERIAL" && len(versions) > 0 && im.Pending != nil && !pending:
		return nil, apiErr(errValidation, "%s already has key material pending rotation (%s): rotate to it (RotateKeyOnDemand) or delete it first.", k.Arn, im.Pending.MaterialID)
	case importType != "NEW_KEY_MATERIAL" && len(versions) > 0 && !known && !pending,
		in.KeyMaterialId != nil && *in.KeyMaterialId != mid:
		return nil, apiErr(errIncorrectKeyMaterial, "The key material is not the key material previously imported into %s.", k.Arn)
	}
	cmd.NewMaterial = importType == "NEW_KEY_MATERIAL" || pending
	desc := im.Description
	if in.KeyMaterialDescription != nil {
		desc = *in.KeyMaterialDescription
	}
	cmd.MaterialID, cmd.ExpirationModel, cmd.ValidTo, cmd.Description, cmd.Now = mid, model, validTo, desc, now.UnixNano()
	err = s.applyKeyChange(r, k, cmd)
	switch {
	case errors.Is(err, cluster.ErrImportToken):
		return nil, errNoImportToken
	case errors.Is(err, cluster.ErrImportTokenExpired):
		return nil, errImportTokenExpiry
	case errors.Is(err, cluster.ErrIncorrectMaterial):
		return nil, apiErr(errIncorrectKeyMaterial, "The key material is not the key material previously imported into %s.", k.Arn)
	case errors.Is(err, cluster.ErrInvalidState) && cmd.NewMaterial:
		return nil, apiErr(errValidation, "%s already has other key material pending rotation: rotate to it (RotateKeyOnDemand) or delete it first.", k.Arn)
	case err != nil:
		return nil, err
	}
	return &importKeyMaterialResponse{KeyId: k.Arn, KeyMaterialId: mid}, nil
}

func opDeleteImportedKeyMaterial(s *Server, r *request) (any, error) {
	var in deleteImportedKeyMaterialRequest
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	if id := in.KeyMaterialId; id != nil && !materialIDPattern.MatchString(*id) {
		return nil, apiErr(errValidation, "1 validation error detected: Value at 'keyMaterialId' failed to satisfy constraint: Member must be 64 lower-case hex digits")
	}
	k, err := s.importKey(r, in.KeyId, nil)
	if err != nil {
		return nil, err
	}
	out := &importKeyMaterialResponse{KeyId: k.Arn}
	cmd := &cluster.DeleteImportedMaterial{KeyID: k.ID, Now: s.cfg.Now().UnixNano()}
	versions := k.ImportVersions()
	var gone []byte // the wrapped material whose HSM handle goes
	switch {
	case in.KeyMaterialId != nil && k.Import != nil && k.Import.Pending != nil && k.Import.Pending.MaterialID == *in.KeyMaterialId:
		cmd.Pending, out.KeyMaterialId, gone = true, *in.KeyMaterialId, k.Import.Pending.Wrapped
	case in.KeyMaterialId != nil:
		i := slices.IndexFunc(versions, func(v cluster.VersionImport) bool { return v.MaterialID == *in.KeyMaterialId })
		if i < 0 {
			return nil, apiErr(errNotFound, "Key material %s is not key material of %s.", *in.KeyMaterialId, k.Arn)
		}
		cmd.Version, out.KeyMaterialId = uint32(i+1), *in.KeyMaterialId
	case len(versions) > 0:
		cmd.Version, out.KeyMaterialId = uint32(len(versions)), versions[len(versions)-1].MaterialID
	}
	if m, ok := k.MaterialVersion(cmd.Version); ok && !cmd.Pending {
		gone = m.Wrapped
	}
	if err := s.applyKeyChange(r, k, cmd); err != nil {
		return nil, err
	}
	if gone != nil {
		s.pool.Forget(gone)
	}
	return out, nil
}

// importMetadata fills DescribeKey's fields of imported material.
func importMetadata(md *keyMetadata, k *cluster.Key) {
	if k.Import == nil || len(k.Materials) == 0 {
		return
	}
	md.ExpirationModel = k.Import.ExpirationModel
	if k.Import.ExpirationModel == cluster.ExpirationExpires {
		v := epoch(k.Import.ValidTo)
		md.ValidTo = &v
	}
}

// importTick is the leader's timer work for one key: it deletes imported
// material whose ValidTo has come and drops expired import parameters.
// Both proposals are idempotent in the FSM.
func (s *Server) importTick(ctx context.Context, k *cluster.Key, now int64) error {
	im := k.Import
	if im == nil {
		return nil
	}
	var errs []error
	expire := func(c *cluster.DeleteImportedMaterial, wrapped []byte) {
		_, err := s.apply(ctx, c)
		switch {
		case err == nil:
			s.pool.Forget(wrapped)
			s.log.Info("deleted expired imported key material", "key", k.Arn, "version", c.Version, "pending", c.Pending)
			s.auditServiceEvent("DeleteExpiredKeyMaterial", k)
		case !errors.Is(err, cluster.ErrInvalidState) && !errors.Is(err, cluster.ErrKeyNotFound):
			errs = append(errs, err)
		}
	}
	for i, v := range k.ImportVersions() {
		if m, ok := k.MaterialVersion(uint32(i + 1)); ok && v.Imported && v.ExpirationModel == cluster.ExpirationExpires && v.ValidTo <= now {
			expire(&cluster.DeleteImportedMaterial{KeyID: k.ID, Version: uint32(i + 1), Expire: true, ExpectValidTo: v.ValidTo, Now: now}, m.Wrapped)
		}
	}
	if p := im.Pending; p != nil && p.ExpirationModel == cluster.ExpirationExpires && p.ValidTo <= now {
		expire(&cluster.DeleteImportedMaterial{KeyID: k.ID, Pending: true, Expire: true, ExpectValidTo: p.ValidTo, Now: now}, p.Wrapped)
	}
	for _, p := range im.Params {
		if p.ValidTo <= now {
			if _, err := s.apply(ctx, &cluster.PruneImportParams{KeyID: k.ID, Now: now}); err != nil && !errors.Is(err, cluster.ErrKeyNotFound) {
				errs = append(errs, err)
			}
			break
		}
	}
	return errors.Join(errs...)
}
