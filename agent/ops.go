package agent

// operations maps X-Amz-Target operation names to handlers. An operation of
// the AWS KMS API that this build does not implement answers
// UnsupportedOperationException naming it (see notYet); a name outside the
// API answers UnknownOperationException, as AWS does.
var operations = map[string]opFunc{
	"CreateKey":                       opCreateKey,
	"DescribeKey":                     opDescribeKey,
	"ListKeys":                        opListKeys,
	"Encrypt":                         opEncrypt,
	"Decrypt":                         opDecrypt,
	"GenerateDataKey":                 opGenerateDataKey,
	"GenerateDataKeyWithoutPlaintext": opGenerateDataKeyWithoutPlaintext,
	"GenerateRandom":                  opGenerateRandom,
	"CreateAlias":                     opCreateAlias,
	"DeleteAlias":                     opDeleteAlias,
	"UpdateAlias":                     opUpdateAlias,
	"ListAliases":                     opListAliases,
	"EnableKey":                       opEnableKey,
	"DisableKey":                      opDisableKey,
	"ScheduleKeyDeletion":             opScheduleKeyDeletion,
	"CancelKeyDeletion":               opCancelKeyDeletion,
	"UpdateKeyDescription":            opUpdateKeyDescription,
	"TagResource":                     opTagResource,
	"UntagResource":                   opUntagResource,
	"ListResourceTags":                opListResourceTags,
	"EnableKeyRotation":               opEnableKeyRotation,
	"DisableKeyRotation":              opDisableKeyRotation,
	"GetKeyRotationStatus":            opGetKeyRotationStatus,
	"RotateKeyOnDemand":               opRotateKeyOnDemand,
	"ListKeyRotations":                opListKeyRotations,
	"ReEncrypt":                       opReEncrypt,
	"GetKeyLastUsage":                 opGetKeyLastUsage,
	"GetKeyPolicy":                    opGetKeyPolicy,
	"PutKeyPolicy":                    opPutKeyPolicy,
	"ListKeyPolicies":                 opListKeyPolicies,
	"CreateGrant":                     opCreateGrant,
	"ListGrants":                      opListGrants,
	"ListRetirableGrants":             opListRetirableGrants,
	"RetireGrant":                     opRetireGrant,
	"RevokeGrant":                     opRevokeGrant,
	"CreateCustomKeyStore":            opCreateCustomKeyStore,
	"DescribeCustomKeyStores":         opDescribeCustomKeyStores,
	"UpdateCustomKeyStore":            opUpdateCustomKeyStore,
	"ConnectCustomKeyStore":           opConnectCustomKeyStore,
	"DisconnectCustomKeyStore":        opDisconnectCustomKeyStore,
	"DeleteCustomKeyStore":            opDeleteCustomKeyStore,
	"ReplicateKey":                    opReplicateKey,
	"UpdatePrimaryRegion":             opUpdatePrimaryRegion,
	"GetParametersForImport":          opGetParametersForImport,
	"ImportKeyMaterial":               opImportKeyMaterial,
	"DeleteImportedKeyMaterial":       opDeleteImportedKeyMaterial,
}

// allOperations is the AWS KMS API (botocore kms 2014-11-01, 54 operations).
var allOperations = []string{
	"CancelKeyDeletion", "ConnectCustomKeyStore", "CreateAlias", "CreateCustomKeyStore", "CreateGrant",
	"CreateKey", "Decrypt", "DeleteAlias", "DeleteCustomKeyStore", "DeleteImportedKeyMaterial",
	"DeriveSharedSecret", "DescribeCustomKeyStores", "DescribeKey", "DisableKey", "DisableKeyRotation",
	"DisconnectCustomKeyStore", "EnableKey", "EnableKeyRotation", "Encrypt", "GenerateDataKey",
	"GenerateDataKeyPair", "GenerateDataKeyPairWithoutPlaintext", "GenerateDataKeyWithoutPlaintext",
	"GenerateMac", "GenerateRandom", "GetKeyLastUsage", "GetKeyPolicy", "GetKeyRotationStatus",
	"GetParametersForImport", "GetPublicKey", "ImportKeyMaterial", "ListAliases", "ListGrants",
	"ListKeyPolicies", "ListKeyRotations", "ListKeys", "ListResourceTags", "ListRetirableGrants",
	"PutKeyPolicy", "ReEncrypt", "ReplicateKey", "RetireGrant", "RevokeGrant", "RotateKeyOnDemand",
	"ScheduleKeyDeletion", "Sign", "TagResource", "UntagResource", "UpdateAlias", "UpdateCustomKeyStore",
	"UpdateKeyDescription", "UpdatePrimaryRegion", "Verify", "VerifyMac",
}

// unimplemented lists the operations answered by notYet.
var unimplemented = map[string]bool{}

func init() {
	for _, name := range allOperations {
		if _, ok := operations[name]; !ok {
			operations[name] = notYet(name)
			unimplemented[name] = true
		}
	}
}

// notYet answers an AWS KMS operation this build does not implement.
func notYet(name string) opFunc {
	return func(s *Server, r *request) (any, error) {
		return nil, apiErr(errUnsupported, "kmsd does not implement %s yet; see the status table in the README.", name)
	}
}

// wipeResponse zeroes plaintext held by a response after it was encoded.
func wipeResponse(v any) {
	switch r := v.(type) {
	case *decryptResponse:
		clear(r.Plaintext)
	case *generateDataKeyResponse:
		clear(r.Plaintext)
	case *generateRandomResponse:
		clear(r.Plaintext)
	case interface{ wipe() }:
		r.wipe()
	}
}
