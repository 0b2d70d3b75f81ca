// Package cluster replicates kmsd's key metadata with hashicorp/raft.
//
// The state model (keys and their HSM-wrapped material, aliases, access
// keys) lives here as plain types. Every change to it is a typed, versioned
// Command that goes through raft and is applied by a deterministic FSM: the
// proposer puts ids, timestamps and wrapped material in the command; Apply
// never reads the clock, randomness or the HSM. A single node is a cluster
// of one.
//
// # Concurrency
//
// Node is safe for concurrent use. Readers (Key, Alias, ListKeys...) see the
// node's applied state without a raft round trip. Values handed out (*Key,
// *Alias, *Credential) are immutable snapshots: Apply replaces them, never
// mutates them, so callers may keep them but must not modify them.
//
// # Errors
//
// Lower-level failures wrap one of the sentinels in errors.go; the agent
// maps them to AWS error types. Apply returns the FSM's own error for a
// rejected command (for example ErrAliasExists) after the command was
// committed, so a rejected command changes nothing on any node.
//
// Package cluster must not import agent or hsmpool.
package cluster
