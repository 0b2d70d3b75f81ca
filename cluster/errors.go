package cluster

import "errors"

var (
	ErrNotLeader      = errors.New("cluster: not the leader")
	ErrClosed         = errors.New("cluster: node closed")
	ErrTimeout        = errors.New("cluster: timed out waiting for raft")
	ErrKeyExists      = errors.New("cluster: key already exists")
	ErrKeyNotFound    = errors.New("cluster: key not found")
	ErrAliasExists    = errors.New("cluster: alias already exists")
	ErrAliasNotFound  = errors.New("cluster: alias not found")
	ErrLimitExceeded  = errors.New("cluster: limit exceeded")
	ErrBadCommand     = errors.New("cluster: malformed command")
	ErrUnknownCommand = errors.New("cluster: unknown command type")
	ErrCredExists     = errors.New("cluster: access key already exists")
	ErrInvalidState   = errors.New("cluster: invalid key state for this change")
)
