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
)

// cmdVersion is the body version written by this build. Decoders accept
// every version they know.
const cmdVersion uint8 = 1

// Command is a typed state change. Every field the FSM needs (ids, times,
// wrapped material) is set by the proposer.
type Command interface {
	cmdType() CmdType
}

// CreateKey adds a new key. Fails with ErrKeyExists or ErrLimitExceeded.
type CreateKey struct {
	Key *Key
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

func (CreateKey) cmdType() CmdType     { return cmdCreateKey }
func (CreateAlias) cmdType() CmdType   { return cmdCreateAlias }
func (UpdateAlias) cmdType() CmdType   { return cmdUpdateAlias }
func (DeleteAlias) cmdType() CmdType   { return cmdDeleteAlias }
func (PutCredential) cmdType() CmdType { return cmdPutCredential }
func (PutMeta) cmdType() CmdType       { return cmdPutMeta }

// commandTable maps a type byte to a constructor of an empty command.
var commandTable = map[CmdType]func() Command{
	cmdCreateKey:     func() Command { return &CreateKey{} },
	cmdCreateAlias:   func() Command { return &CreateAlias{} },
	cmdUpdateAlias:   func() Command { return &UpdateAlias{} },
	cmdDeleteAlias:   func() Command { return &DeleteAlias{} },
	cmdPutCredential: func() Command { return &PutCredential{} },
	cmdPutMeta:       func() Command { return &PutMeta{} },
}

var msgpackHandle = func() *codec.MsgpackHandle {
	h := &codec.MsgpackHandle{}
	h.RawToString = true
	h.WriteExt = true
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
