package cluster

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/hashicorp/go-msgpack/v2/codec"
)

// Custom key stores (AWS_CLOUDHSM and EXTERNAL_KEY_STORE). Commands 50-59
// are reserved for them. A store is kept in the replicated meta map under
// "cks/<id>" (msgpack), so snapshots carry stores without a format change.
const (
	cmdCreateKeyStore   CmdType = 50
	cmdUpdateKeyStore   CmdType = 51
	cmdSetKeyStoreState CmdType = 52
	cmdDeleteKeyStore   CmdType = 53
	cmdCreateStoreKey   CmdType = 54
)

// MaxKeyStores is AWS's quota of custom key stores per account.
const MaxKeyStores = 10

// Custom key store types and connection states, as AWS names them.
const (
	KeyStoreCloudHSM = "AWS_CLOUDHSM"
	KeyStoreExternal = "EXTERNAL_KEY_STORE"

	StoreConnected     = "CONNECTED"
	StoreConnecting    = "CONNECTING"
	StoreDisconnected  = "DISCONNECTED"
	StoreDisconnecting = "DISCONNECTING"
	StoreFailed        = "FAILED"
)

// Sentinels of the custom key store commands.
var (
	ErrKeyStoreNotFound  = errors.New("cluster: custom key store not found")
	ErrKeyStoreNameInUse = errors.New("cluster: custom key store name in use")
	// ErrKeyStoreInUse: the HSM (cluster id) or proxy URI is already used
	// by another store.
	ErrKeyStoreInUse   = errors.New("cluster: custom key store backend in use")
	ErrKeyStoreState   = errors.New("cluster: custom key store in the wrong connection state")
	ErrKeyStoreHasKeys = errors.New("cluster: custom key store still holds KMS keys")
	ErrXksKeyInUse     = errors.New("cluster: external key already backs a KMS key in this store")
)

const keyStoreMetaPrefix = "cks/"

// CustomKeyStore is the replicated record of one custom key store.
type CustomKeyStore struct {
	ID        string
	Name      string
	AccountID string
	Type      string
	Created   int64
	State     string // connection state
	ErrorCode string // ConnectionErrorCode when State is FAILED (or last failure)

	// AWS_CLOUDHSM: the HSM kmsd is configured to reach under this id.
	CloudHsmClusterID      string
	TrustAnchorCertificate string
	SealedPassword         []byte // KeyStorePassword sealed by the HSM

	// EXTERNAL_KEY_STORE.
	XksEndpoint     string
	XksPath         string
	XksConnectivity string
	XksAccessKeyID  string
	XksSealedSecret []byte // secret access key sealed by the HSM
}

// CreateKeyStore adds a store. Fails with ErrKeyStoreNameInUse (same name
// in the account), ErrKeyStoreInUse (same cluster id, or same proxy
// endpoint and path) or ErrLimitExceeded (MaxKeyStores per account).
type CreateKeyStore struct {
	Store CustomKeyStore
}

// UpdateKeyStore replaces a store's settings (not its id, type, account,
// creation date or connection state). Changing anything but the name needs
// the store DISCONNECTED (ErrKeyStoreState), as in AWS.
type UpdateKeyStore struct {
	Store CustomKeyStore
}

// SetKeyStoreState sets a store's connection state and error code. If
// Expect is set, the store must be in one of those states
// (ErrKeyStoreState otherwise).
type SetKeyStoreState struct {
	ID        string
	State     string
	ErrorCode string
	Expect    []string
}

// DeleteKeyStore removes a DISCONNECTED store that holds no keys
// (ErrKeyStoreState, ErrKeyStoreHasKeys).
type DeleteKeyStore struct {
	ID string
}

// CreateStoreKey adds a key in a custom key store: like CreateKey, and the
// store must exist and be CONNECTED (ErrKeyStoreNotFound,
// ErrKeyStoreState); in an external key store no other key may use the same
// XksKeyID (ErrXksKeyInUse).
type CreateStoreKey struct {
	Key     *Key
	MaxKeys int
	// SharedXksKey lets several keys of the store use one external key
	// (Alibaba Cloud's HYOK model; AWS refuses it).
	SharedXksKey bool
}

func (CreateKeyStore) cmdType() CmdType   { return cmdCreateKeyStore }
func (UpdateKeyStore) cmdType() CmdType   { return cmdUpdateKeyStore }
func (SetKeyStoreState) cmdType() CmdType { return cmdSetKeyStoreState }
func (DeleteKeyStore) cmdType() CmdType   { return cmdDeleteKeyStore }
func (CreateStoreKey) cmdType() CmdType   { return cmdCreateStoreKey }

func init() {
	commandTable[cmdCreateKeyStore] = func() Command { return &CreateKeyStore{} }
	commandTable[cmdUpdateKeyStore] = func() Command { return &UpdateKeyStore{} }
	commandTable[cmdSetKeyStoreState] = func() Command { return &SetKeyStoreState{} }
	commandTable[cmdDeleteKeyStore] = func() Command { return &DeleteKeyStore{} }
	commandTable[cmdCreateStoreKey] = func() Command { return &CreateStoreKey{} }
	for code, err := range map[string]error{
		"KeyStoreNotFound": ErrKeyStoreNotFound, "KeyStoreNameInUse": ErrKeyStoreNameInUse,
		"KeyStoreInUse": ErrKeyStoreInUse, "KeyStoreState": ErrKeyStoreState,
		"KeyStoreHasKeys": ErrKeyStoreHasKeys, "XksKeyInUse": ErrXksKeyInUse,
	} {
		errorCodes[code] = err
	}
}

func encodeStore(cs *CustomKeyStore) []byte {
	var b []byte
	if err := codec.NewEncoderBytes(&b, msgpackHandle).Encode(cs); err != nil {
		return nil // unreachable: plain struct
	}
	return b
}

func decodeStore(b []byte) (*CustomKeyStore, bool) {
	cs := &CustomKeyStore{}
	if err := codec.NewDecoderBytes(b, msgpackHandle).Decode(cs); err != nil || cs.ID == "" {
		return nil, false
	}
	return cs, true
}

// stores returns every store, in id order. Caller holds s.mu.
func (s *state) stores() []*CustomKeyStore {
	var out []*CustomKeyStore
	for k, v := range s.meta {
		if strings.HasPrefix(k, keyStoreMetaPrefix) {
			if cs, ok := decodeStore(v); ok {
				out = append(out, cs)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func (s *state) store(id string) (*CustomKeyStore, bool) {
	v, ok := s.meta[keyStoreMetaPrefix+id]
	if !ok {
		return nil, false
	}
	return decodeStore(v)
}

func (s *state) putStore(cs *CustomKeyStore) { s.meta[keyStoreMetaPrefix+cs.ID] = encodeStore(cs) }

// conflict reports why cs cannot coexist with the other stores.
func (s *state) conflict(cs *CustomKeyStore) error {
	for _, o := range s.stores() {
		if o.ID == cs.ID {
			continue
		}
		if o.AccountID == cs.AccountID && o.Name == cs.Name {
			return fmt.Errorf("%w: %s", ErrKeyStoreNameInUse, cs.Name)
		}
		if cs.Type == KeyStoreCloudHSM && o.Type == KeyStoreCloudHSM && o.CloudHsmClusterID == cs.CloudHsmClusterID {
			return fmt.Errorf("%w: cluster %s", ErrKeyStoreInUse, cs.CloudHsmClusterID)
		}
		if cs.Type == KeyStoreExternal && o.Type == KeyStoreExternal && o.XksEndpoint == cs.XksEndpoint && o.XksPath == cs.XksPath {
			return fmt.Errorf("%w: %s%s", ErrKeyStoreInUse, cs.XksEndpoint, cs.XksPath)
		}
	}
	return nil
}

func (s *state) storeKeys(id string) int {
	n := 0
	for _, k := range s.keys {
		if k.CustomKeyStoreID == id {
			n++
		}
	}
	return n
}

// applyKeyStores applies the custom key store commands; ok is false for
// any other command. Caller holds s.mu.
func (s *state) applyKeyStores(c Command) (resp any, ok bool) {
	switch c := c.(type) {
	case *CreateKeyStore:
		cs := c.Store
		if cs.ID == "" {
			return fmt.Errorf("%w: CreateKeyStore without id", ErrBadCommand), true
		}
		if _, dup := s.store(cs.ID); dup {
			return fmt.Errorf("%w: key store %s exists", ErrBadCommand, cs.ID), true
		}
		if err := s.conflict(&cs); err != nil {
			return err, true
		}
		n := 0
		for _, o := range s.stores() {
			if o.AccountID == cs.AccountID {
				n++
			}
		}
		if n >= MaxKeyStores {
			return fmt.Errorf("%w: %d custom key stores per account", ErrLimitExceeded, MaxKeyStores), true
		}
		s.putStore(&cs)
		return nil, true
	case *UpdateKeyStore:
		old, found := s.store(c.Store.ID)
		if !found {
			return fmt.Errorf("%w: %s", ErrKeyStoreNotFound, c.Store.ID), true
		}
		cs := c.Store
		cs.AccountID, cs.Type, cs.Created, cs.State, cs.ErrorCode = old.AccountID, old.Type, old.Created, old.State, old.ErrorCode
		renamed := *old
		renamed.Name = cs.Name
		if string(encodeStore(&renamed)) != string(encodeStore(&cs)) && old.State != StoreDisconnected {
			return fmt.Errorf("%w: %s is %s; disconnect it first", ErrKeyStoreState, old.ID, old.State), true
		}
		if err := s.conflict(&cs); err != nil {
			return err, true
		}
		s.putStore(&cs)
		return nil, true
	case *SetKeyStoreState:
		cs, found := s.store(c.ID)
		if !found {
			return fmt.Errorf("%w: %s", ErrKeyStoreNotFound, c.ID), true
		}
		if len(c.Expect) > 0 {
			okState := false
			for _, e := range c.Expect {
				okState = okState || e == cs.State
			}
			if !okState {
				return fmt.Errorf("%w: %s is %s", ErrKeyStoreState, cs.ID, cs.State), true
			}
		}
		cs.State, cs.ErrorCode = c.State, c.ErrorCode
		s.putStore(cs)
		return nil, true
	case *DeleteKeyStore:
		cs, found := s.store(c.ID)
		if !found {
			return fmt.Errorf("%w: %s", ErrKeyStoreNotFound, c.ID), true
		}
		if cs.State != StoreDisconnected {
			return fmt.Errorf("%w: %s is %s; disconnect it first", ErrKeyStoreState, cs.ID, cs.State), true
		}
		if n := s.storeKeys(cs.ID); n > 0 {
			return fmt.Errorf("%w: %d keys", ErrKeyStoreHasKeys, n), true
		}
		delete(s.meta, keyStoreMetaPrefix+cs.ID)
		return nil, true
	case *CreateStoreKey:
		k := c.Key
		if k == nil || k.ID == "" || k.CustomKeyStoreID == "" {
			return fmt.Errorf("%w: CreateStoreKey without key or store", ErrBadCommand), true
		}
		cs, found := s.store(k.CustomKeyStoreID)
		if !found {
			return fmt.Errorf("%w: %s", ErrKeyStoreNotFound, k.CustomKeyStoreID), true
		}
		if cs.State != StoreConnected {
			return fmt.Errorf("%w: %s is %s", ErrKeyStoreState, cs.ID, cs.State), true
		}
		if _, dup := s.keys[k.ID]; dup {
			return fmt.Errorf("%w: %s", ErrKeyExists, k.ID), true
		}
		if k.XksKeyID != "" && !c.SharedXksKey {
			for _, o := range s.keys {
				if o.CustomKeyStoreID == cs.ID && o.XksKeyID == k.XksKeyID {
					return fmt.Errorf("%w: %s", ErrXksKeyInUse, k.XksKeyID), true
				}
			}
		}
		limit := c.MaxKeys
		if limit <= 0 {
			limit = MaxKeys
		}
		if len(s.keys) >= limit {
			return fmt.Errorf("%w: %d keys", ErrLimitExceeded, limit), true
		}
		s.keys[k.ID] = k.clone()
		s.insertKeyID(k.ID)
		return nil, true
	}
	return nil, false
}

// KeyStore returns a custom key store by id.
func (n *Node) KeyStore(id string) (*CustomKeyStore, bool) {
	n.st.mu.RLock()
	defer n.st.mu.RUnlock()
	return n.st.store(id)
}

// KeyStores returns the account's custom key stores, in id order.
func (n *Node) KeyStores(accountID string) []*CustomKeyStore {
	n.st.mu.RLock()
	defer n.st.mu.RUnlock()
	var out []*CustomKeyStore
	for _, cs := range n.st.stores() {
		if cs.AccountID == accountID {
			out = append(out, cs)
		}
	}
	return out
}

// StoreKeys returns the keys in a custom key store, in id order.
func (n *Node) StoreKeys(storeID string) []*Key {
	n.st.mu.RLock()
	defer n.st.mu.RUnlock()
	var out []*Key
	for _, id := range n.st.keyIDs {
		if k := n.st.keys[id]; k.CustomKeyStoreID == storeID {
			out = append(out, k)
		}
	}
	return out
}
