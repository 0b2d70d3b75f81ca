package agent

import "github.com/kmsd/kmsd/cluster"

// The key-state table of the AWS KMS Developer Guide ("Key states of AWS
// KMS keys" / キーステータスの表), one row per operation, one cell per state.
// Footnote numbers are the guide's.
type stateRule uint8

const (
	ok_ stateRule = iota // allowed
	r1                   // [1] DisabledException: <arn> is disabled.
	r3                   // [3] KMSInvalidStateException: <arn> is pending deletion.
	r4                   // [4] KMSInvalidStateException: <arn> is not pending deletion.
	r5                   // [5] KMSInvalidStateException: <arn> is pending import.
	r6                   // [6] UnsupportedOperationException: origin is EXTERNAL.
	r7                   // [7] UnsupportedOperationException: imported material or custom key store.
	r8                   // [8] KMSInvalidStateException: a key with imported material is pending deletion.
	r9                   // [9] UnsupportedOperationException: the key does not or cannot have imported material.
	r11                  // [11] KMSInvalidStateException: <arn> is unavailable.
	r14                  // [14] KMSInvalidStateException: <arn> is creating.
	r15                  // [15] KMSInvalidStateException: <arn> is updating.
	rNA                  // not applicable to such keys: KMSInvalidStateException naming the state
)

// Columns of the table.
const (
	colEnabled = iota
	colDisabled
	colPendingDeletion // also PendingReplicaDeletion
	colPendingImport
	colUnavailable
	colCreating
	colUpdating
	numCols
)

func column(state string) int {
	switch state {
	case cluster.StateEnabled:
		return colEnabled
	case cluster.StateDisabled:
		return colDisabled
	case cluster.StatePendingDeletion, cluster.StatePendingReplicaDeletion:
		return colPendingDeletion
	case cluster.StatePendingImport:
		return colPendingImport
	case cluster.StateUnavailable:
		return colUnavailable
	case cluster.StateCreating:
		return colCreating
	case cluster.StateUpdating:
		return colUpdating
	}
	return -1
}

var (
	rowCrypto = [numCols]stateRule{ok_, r1, r3, r5, r11, r14, ok_}
	// rowKeyUse: operations whose Unavailable cell is N/A (keys no custom key store holds).
	rowKeyUse   = [numCols]stateRule{ok_, r1, r3, r5, rNA, r14, ok_}
	rowAnyState = [numCols]stateRule{ok_, ok_, ok_, ok_, ok_, ok_, ok_}
	rowTagLike  = [numCols]stateRule{ok_, ok_, r3, ok_, ok_, ok_, ok_}
	rowEnable   = [numCols]stateRule{ok_, ok_, r3, r5, ok_, r14, r15}
	rowRotation = [numCols]stateRule{ok_, r1, r3, r6, r7, r14, ok_}
)

// keyStateTable: operation -> cells. Operations missing here take no key.
var keyStateTable = map[string][numCols]stateRule{
	"Encrypt":                             rowCrypto,
	"Decrypt":                             rowCrypto,
	"ReEncrypt":                           rowCrypto,
	"GenerateDataKey":                     rowCrypto,
	"GenerateDataKeyWithoutPlaintext":     rowCrypto,
	"GenerateDataKeyPair":                 rowCrypto,
	"GenerateDataKeyPairWithoutPlaintext": rowCrypto,
	"CreateGrant":                         {ok_, r1, r3, r5, ok_, r14, ok_},
	"Sign":                                rowKeyUse,
	"Verify":                              rowKeyUse,
	"GenerateMac":                         rowKeyUse,
	"VerifyMac":                           rowKeyUse,
	"GetPublicKey":                        rowKeyUse,
	"DeriveSharedSecret":                  rowKeyUse,
	"DescribeKey":                         rowAnyState,
	"GetKeyPolicy":                        rowAnyState,
	"PutKeyPolicy":                        rowAnyState,
	"ListAliases":                         rowAnyState,
	"ListGrants":                          rowAnyState,
	"ListKeyPolicies":                     rowAnyState,
	"ListResourceTags":                    rowAnyState,
	"RetireGrant":                         rowAnyState,
	"RevokeGrant":                         rowAnyState,
	"DeleteAlias":                         rowAnyState,
	"GetKeyLastUsage":                     rowAnyState,
	"ListKeyRotations":                    {ok_, ok_, ok_, ok_, r7, ok_, ok_}, // PendingImport: the current API lists ImportState PENDING_IMPORT
	"CreateAlias":                         rowTagLike,
	"TagResource":                         rowTagLike,
	"UntagResource":                       rowTagLike,
	"UpdateKeyDescription":                rowTagLike,
	"UpdateAlias":                         rowTagLike, // [10]: checked on the target key
	"EnableKey":                           rowEnable,
	"DisableKey":                          rowEnable,
	"EnableKeyRotation":                   rowRotation,
	"DisableKeyRotation":                  rowRotation,
	"RotateKeyOnDemand":                   rowRotation,
	"GetKeyRotationStatus":                {ok_, ok_, ok_, r6, r7, ok_, ok_},
	"ScheduleKeyDeletion":                 {ok_, ok_, r3, ok_, ok_, ok_, r15},
	"CancelKeyDeletion":                   {r4, r4, ok_, r4, r4, r4, r4},
	"ReplicateKey":                        {ok_, r1, r3, r5, rNA, r14, r15},
	"UpdatePrimaryRegion":                 rowKeyUse,
	// [9] for keys that are not EXTERNAL is checked before the table.
	"GetParametersForImport":    {ok_, ok_, r8, ok_, r9, r14, r15},
	"ImportKeyMaterial":         {ok_, ok_, r8, ok_, r9, r14, ok_},
	"DeleteImportedKeyMaterial": {ok_, ok_, ok_, ok_, rNA, r14, r15},
}

// checkKeyState returns the AWS error for running op on k in its current
// state, or nil.
func (s *Server) checkKeyState(op string, k *cluster.Key) error {
	row, ok := keyStateTable[op]
	if !ok {
		return nil
	}
	if k.CustomKeyStoreID != "" && storeUnsupported[op] {
		return stateError(r7, k)
	}
	k = s.storeView(k)
	col := column(k.State)
	if col < 0 {
		return apiErr(errInvalidState, "%s is in an unknown state %s.", k.Arn, k.State)
	}
	return stateError(row[col], k)
}

func stateError(r stateRule, k *cluster.Key) error {
	arn := k.Arn
	switch r {
	case r1:
		return apiErr(errDisabled, "%s is disabled.", arn)
	case r3:
		return apiErr(errInvalidState, "%s is pending deletion.", arn)
	case r4:
		return apiErr(errInvalidState, "%s is not pending deletion.", arn)
	case r5:
		return apiErr(errInvalidState, "%s is pending import.", arn)
	case r6:
		return apiErr(errUnsupported, "%s origin is EXTERNAL which is not valid for this operation.", arn)
	case r7:
		return apiErr(errUnsupported, "%s has imported key material or is in a custom key store; this operation is not valid for it.", arn)
	case r8:
		return apiErr(errInvalidState, "%s is pending deletion.", arn)
	case r9:
		return apiErr(errUnsupported, "%s does not have imported key material and cannot have it: its origin is %s, not EXTERNAL.", arn, k.Origin)
	case r11:
		return apiErr(errInvalidState, "%s is unavailable.", arn)
	case r14:
		return apiErr(errInvalidState, "%s is creating.", arn)
	case r15:
		return apiErr(errInvalidState, "%s is updating.", arn)
	case rNA:
		return apiErr(errInvalidState, "%s is %s, which does not apply to this operation.", arn, k.State)
	}
	return nil
}
