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
	ErrGrantNotFound  = errors.New("cluster: grant not found")
	ErrCredNotFound   = errors.New("cluster: access key not found")
)

// errorCodes names the sentinels that cross the wire when a follower
// forwards a write to the leader, so the follower can rebuild them.
var errorCodes = map[string]error{
	"NotLeader": ErrNotLeader, "Closed": ErrClosed, "Timeout": ErrTimeout,
	"KeyExists": ErrKeyExists, "KeyNotFound": ErrKeyNotFound, "AliasExists": ErrAliasExists,
	"AliasNotFound": ErrAliasNotFound, "LimitExceeded": ErrLimitExceeded, "BadCommand": ErrBadCommand,
	"UnknownCommand": ErrUnknownCommand, "CredExists": ErrCredExists, "InvalidState": ErrInvalidState,
	"GrantNotFound": ErrGrantNotFound, "CredNotFound": ErrCredNotFound,
}

// ErrorCode names the sentinel err wraps, or "" for any other error.
func ErrorCode(err error) string {
	for code, s := range errorCodes {
		if errors.Is(err, s) {
			return code
		}
	}
	return ""
}

// ErrorFromCode rebuilds an error named by ErrorCode, with msg as its text;
// an unknown code gives a plain error.
func ErrorFromCode(code, msg string) error {
	if s, ok := errorCodes[code]; ok {
		return &codedError{msg: msg, err: s}
	}
	return errors.New(msg)
}

type codedError struct {
	msg string
	err error
}

func (e *codedError) Error() string { return e.msg }
func (e *codedError) Unwrap() error { return e.err }
