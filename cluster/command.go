package cluster

import (
	"bytes"
	"fmt"

	"github.com/hashicorp/go-msgpack/v2/codec"
)

// CmdType identifies a command on the raft log. Values are never reused.
type CmdType uint8

const (
	cmdCreateKey     CmdType = 1
	cmdCreateAlias   CmdType = 2
	cmdUpdateAlias   CmdType = 3
	cmdDeleteAlias   CmdType = 4
	cmdPutCredential CmdType = 5
	cmdPutMeta       CmdType = 6
	cmdSetKeyEnabled CmdType = 7
	cmdScheduleDel   CmdType = 8
	cmdCancelDel     CmdType = 9
	cmdDeleteKey     CmdType = 10
	cmdUpdateDesc    CmdType = 11
	cmdTagKey        CmdType = 12
	cmdUntagKey      CmdType = 13
	cmdSetRotation   CmdType = 14
	cmdRotateKey     CmdType = 15
	cmdPutMember     CmdType = 16
	cmdRemoveMember  CmdType = 17
)

// cmdVersion is the body version written by this build. Decoders accept
// every version they know.
const cmdVersion uint8 = 1

// Command is a typed state change. Every field the FSM needs (ids, times,
// wrapped material) is set by the proposer.
type Command interface {
	cmdType() CmdType
}

// CreateKey adds a new key. Fails with ErrKeyExists, or ErrLimitExceeded
// when the state already holds MaxKeys keys (0 = the package's MaxKeys).
type CreateKey struct {
	Key     *Key
	MaxKeys int
}

// CreateAlias adds an alias. Fails with ErrAliasExists, ErrKeyNotFound or
// ErrLimitExceeded (50 aliases per key).
type CreateAlias struct {
	Alias Alias
}

// UpdateAlias points an existing alias at another key.
type UpdateAlias struct {
	Name        string
	TargetKeyID string
	Updated     int64
}

// DeleteAlias removes an alias. Fails with ErrAliasNotFound.
type DeleteAlias struct {
	Name string
}

// PutCredential adds an access key. Fails with ErrCredExists.
type PutCredential struct {
	Credential Credential
}

// PutMeta sets a system value once: if Name is already set the command
// changes nothing. The response is the value in force afterwards ([]byte),
// so concurrent proposers agree on one winner.
type PutMeta struct {
	Name  string
	Value []byte
}

// SetKeyEnabled moves a key between Enabled and Disabled. A key pending
// deletion (or in another state that forbids it) gives ErrInvalidState.
type SetKeyEnabled struct {
	KeyID   string
	Enabled bool
}

// ScheduleDeletion puts a key in PendingDeletion until DeletionDate.
type ScheduleDeletion struct {
	KeyID        string
	DeletionDate int64
	PendingDays  int32
}

// CancelDeletion moves a key pending deletion to Disabled.
type CancelDeletion struct {
	KeyID string
}

// DeleteKey removes a key pending deletion whose DeletionDate is at or
// before Now, and its aliases. It is what the leader's timer proposes; a
// second proposal for the same key gives ErrKeyNotFound and changes nothing.
type DeleteKey struct {
	KeyID string
	Now   int64
}

// UpdateDescription sets a key's description.
type UpdateDescription struct {
	KeyID       string
	Description string
}

// TagKey adds or overwrites tags; more than MaxTagsPerKey in all gives
// ErrLimitExceeded.
type TagKey struct {
	KeyID string
	Tags  []Tag
}

// UntagKey removes tags by key; absent keys are ignored.
type UntagKey struct {
	KeyID string
	Keys  []string
}

// SetRotation enables (with a period and the next due date) or disables
// automatic rotation.
type SetRotation struct {
	KeyID        string
	Enabled      bool
	Days         int32
	NextRotation int64
}

// RotateKey appends new material (made and wrapped by the proposer's HSM).
// For automatic rotation, ExpectNext must equal the key's NextRotation, so
// a rotation proposed twice (by two leaders) applies once; NextRotation is
// then the following due date. The key must be Enabled.
type RotateKey struct {
	KeyID        string
	Material     Material
	ExpectNext   int64
	NextRotation int64
}

// PutMember records (or updates) a node's addresses.
type PutMember struct {
	Member Member
}

// RemoveMember forgets a node.
type RemoveMember struct {
	ID string
}

func (PutMember) cmdType() CmdType         { return cmdPutMember }
func (RemoveMember) cmdType() CmdType      { return cmdRemoveMember }
func (CreateKey) cmdType() CmdType         { return cmdCreateKey }
func (SetKeyEnabled) cmdType() CmdType     { return cmdSetKeyEnabled }
func (ScheduleDeletion) cmdType() CmdType  { return cmdScheduleDel }
func (CancelDeletion) cmdType() CmdType    { return cmdCancelDel }
func (DeleteKey) cmdType() CmdType         { return cmdDeleteKey }
func (UpdateDescription) cmdType() CmdType { return cmdUpdateDesc }
func (TagKey) cmdType() CmdType            { return cmdTagKey }
func (UntagKey) cmdType() CmdType          { return cmdUntagKey }
func (SetRotation) cmdType() CmdType       { return cmdSetRotation }
func (RotateKey) cmdType() CmdType         { return cmdRotateKey }
func (CreateAlias) cmdType() CmdType       { return cmdCreateAlias }
func (UpdateAlias) cmdType() CmdType       { return cmdUpdateAlias }
func (DeleteAlias) cmdType() CmdType       { return cmdDeleteAlias }
func (PutCredential) cmdType() CmdType     { return cmdPutCredential }
func (PutMeta) cmdType() CmdType           { return cmdPutMeta }

// commandTable maps a type byte to a constructor of an empty command.
var commandTable = map[CmdType]func() Command{
	cmdCreateKey:     func() Command { return &CreateKey{} },
	cmdCreateAlias:   func() Command { return &CreateAlias{} },
	cmdUpdateAlias:   func() Command { return &UpdateAlias{} },
	cmdDeleteAlias:   func() Command { return &DeleteAlias{} },
	cmdPutCredential: func() Command { return &PutCredential{} },
	cmdPutMeta:       func() Command { return &PutMeta{} },
	cmdSetKeyEnabled: func() Command { return &SetKeyEnabled{} },
	cmdScheduleDel:   func() Command { return &ScheduleDeletion{} },
	cmdCancelDel:     func() Command { return &CancelDeletion{} },
	cmdDeleteKey:     func() Command { return &DeleteKey{} },
	cmdUpdateDesc:    func() Command { return &UpdateDescription{} },
	cmdTagKey:        func() Command { return &TagKey{} },
	cmdUntagKey:      func() Command { return &UntagKey{} },
	cmdSetRotation:   func() Command { return &SetRotation{} },
	cmdRotateKey:     func() Command { return &RotateKey{} },
	cmdPutMember:     func() Command { return &PutMember{} },
	cmdRemoveMember:  func() Command { return &RemoveMember{} },
}

var msgpackHandle = func() *codec.MsgpackHandle {
	h := &codec.MsgpackHandle{}
	h.RawToString = true
	h.WriteExt = true
	h.Canonical = true // sorted map keys: equal states encode equally (StateDigest)
	return h
}()

// EncodeCommand serialises c as type byte, version byte, msgpack body.
func EncodeCommand(c Command) ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteByte(byte(c.cmdType()))
	buf.WriteByte(cmdVersion)
	if err := codec.NewEncoder(&buf, msgpackHandle).Encode(c); err != nil {
		return nil, fmt.Errorf("cluster: encode command: %w", err)
	}
	return buf.Bytes(), nil
}

// DecodeCommand parses what EncodeCommand wrote. It never panics; bad input
// gives an error wrapping ErrBadCommand or ErrUnknownCommand.
func DecodeCommand(b []byte) (c Command, err error) {
	if len(b) < 2 {
		return nil, fmt.Errorf("%w: %d bytes", ErrBadCommand, len(b))
	}
	mk, ok := commandTable[CmdType(b[0])]
	if !ok {
		return nil, fmt.Errorf("%w: %d", ErrUnknownCommand, b[0])
	}
	if b[1] == 0 || b[1] > cmdVersion {
		return nil, fmt.Errorf("%w: type %d version %d", ErrBadCommand, b[0], b[1])
	}
	c = mk()
	defer func() {
		if r := recover(); r != nil { // the codec may panic on hostile input
			c, err = nil, fmt.Errorf("%w: %v", ErrBadCommand, r)
		}
	}()
	dec := codec.NewDecoderBytes(b[2:], msgpackHandle)
	if err := dec.Decode(c); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadCommand, err)
	}
	return c, nil
}
