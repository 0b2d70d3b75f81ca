package agent

import "github.com/kmsd/kmsd/cluster"

// The key-state table of the AWS KMS Developer Guide ("Key states"), for the
// operations this build serves. A missing cell means the operation is
// allowed in that state. Footnote numbers are the guide's.
type stateRule int

const (
	ruleOK            stateRule = iota
	ruleDisabled                // [1] DisabledException: <arn> is disabled.
	rulePendingDelete           // [3] KMSInvalidStateException: <arn> is pending deletion.
	rulePendingImport           // [5] KMSInvalidStateException: <arn> is pending import.
	ruleUnavailable             // [11] KMSInvalidStateException: <arn> is unavailable.
	ruleCreating                // [14] KMSInvalidStateException: <arn> is creating.
	ruleUpdating                // [15] KMSInvalidStateException: <arn> is updating.
	ruleNotPendingDel           // [4] KMSInvalidStateException: <arn> is not pending deletion.
)

type opGroup int

const (
	groupCrypto   opGroup = iota // Encrypt, Decrypt, ReEncrypt, GenerateDataKey*
	groupAnyState                // DescribeKey, ListAliases, ...: every state
	groupAlias                   // CreateAlias target, TagResource, UpdateKeyDescription
)

var keyStateTable = map[opGroup]map[string]stateRule{
	groupCrypto: {
		cluster.StateDisabled:               ruleDisabled,
		cluster.StatePendingDeletion:        rulePendingDelete,
		cluster.StatePendingReplicaDeletion: rulePendingDelete,
		cluster.StatePendingImport:          rulePendingImport,
		cluster.StateUnavailable:            ruleUnavailable,
		cluster.StateCreating:               ruleCreating,
	},
	groupAnyState: {},
	groupAlias: {
		cluster.StatePendingDeletion:        rulePendingDelete,
		cluster.StatePendingReplicaDeletion: rulePendingDelete,
	},
}

// checkKeyState returns the AWS error for running an operation of group g on
// k in its current state, or nil.
func (s *Server) checkKeyState(g opGroup, k *cluster.Key) error {
	arn := k.Arn
	switch keyStateTable[g][k.State] {
	case ruleDisabled:
		return apiErr(errDisabled, "%s is disabled.", arn)
	case rulePendingDelete:
		return apiErr(errInvalidState, "%s is pending deletion.", arn)
	case rulePendingImport:
		return apiErr(errInvalidState, "%s is pending import.", arn)
	case ruleUnavailable:
		return apiErr(errInvalidState, "%s is unavailable.", arn)
	case ruleCreating:
		return apiErr(errInvalidState, "%s is creating.", arn)
	case ruleUpdating:
		return apiErr(errInvalidState, "%s is updating.", arn)
	case ruleNotPendingDel:
		return apiErr(errInvalidState, "%s is not pending deletion.", arn)
	}
	return nil
}
