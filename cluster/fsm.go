package cluster

import (
	"fmt"
	"io"
	"sync/atomic"

	"github.com/hashicorp/go-msgpack/v2/codec"
	"github.com/hashicorp/raft"
)

var _ raft.FSM = (*fsm)(nil)

// fsm applies commands to state. Apply is deterministic: its result depends
// only on the state and the command.
type fsm struct {
	st *state
	// keyChanged, when set, is called (outside locks) after a command that
	// changed or removed a key was applied, with that key's id.
	keyChanged atomic.Pointer[func(keyID string)]
}

func (f *fsm) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	cmd, err := DecodeCommand(l.Data)
	var resp any
	if err != nil {
		resp = err
	} else {
		resp = f.st.apply(cmd)
	}
	f.st.mu.Lock()
	f.st.applied = l.Index
	f.st.mu.Unlock()
	if fn := f.keyChanged.Load(); fn != nil && err == nil {
		if _, failed := resp.(error); !failed {
			if id := changedKey(cmd); id != "" {
				(*fn)(id)
			}
		}
	}
	return resp
}

// changedKey names the key a command changes in a way that must drop
// cached secrets of it (state, material, existence), or "".
func changedKey(c Command) string {
	switch c := c.(type) {
	case *SetKeyEnabled:
		return c.KeyID
	case *ScheduleDeletion:
		return c.KeyID
	case *CancelDeletion:
		return c.KeyID
	case *DeleteKey:
		return c.KeyID
	case *RotateKey:
		return c.KeyID
	}
	return importChangedKey(c)
}

// apply runs one command under the write lock and returns its response
// (an error, a value, or nil).
func (s *state) apply(c Command) any {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch c := c.(type) {
	case *CreateKey:
		k := c.Key
		if k == nil || k.ID == "" {
			return fmt.Errorf("%w: CreateKey without key", ErrBadCommand)
		}
		if _, ok := s.keys[k.ID]; ok {
			return fmt.Errorf("%w: %s", ErrKeyExists, k.ID)
		}
		limit := c.MaxKeys
		if limit <= 0 {
			limit = MaxKeys
		}
		if len(s.keys) >= limit {
			return fmt.Errorf("%w: %d keys", ErrLimitExceeded, limit)
		}
		s.keys[k.ID] = k.clone()
		s.insertKeyID(k.ID)
		return nil
	case *CreateAlias:
		a := c.Alias
		if _, ok := s.aliases[a.Name]; ok {
			return fmt.Errorf("%w: %s", ErrAliasExists, a.Name)
		}
		k, ok := s.keys[a.TargetKeyID]
		if !ok {
			return fmt.Errorf("%w: %s", ErrKeyNotFound, a.TargetKeyID)
		}
		if k.State == StatePendingDeletion || k.State == StatePendingReplicaDeletion {
			return fmt.Errorf("%w: %s is pending deletion", ErrInvalidState, k.Arn)
		}
		if s.aliasCount(a.TargetKeyID) >= MaxAliasesKey {
			return fmt.Errorf("%w: %d aliases per key", ErrLimitExceeded, MaxAliasesKey)
		}
		s.aliases[a.Name] = &a
		return nil
	case *UpdateAlias:
		a, ok := s.aliases[c.Name]
		if !ok {
			return fmt.Errorf("%w: %s", ErrAliasNotFound, c.Name)
		}
		k, ok := s.keys[c.TargetKeyID]
		if !ok {
			return fmt.Errorf("%w: %s", ErrKeyNotFound, c.TargetKeyID)
		}
		if k.State == StatePendingDeletion || k.State == StatePendingReplicaDeletion {
			return fmt.Errorf("%w: %s is pending deletion", ErrInvalidState, k.Arn)
		}
		if a.TargetKeyID != c.TargetKeyID && s.aliasCount(c.TargetKeyID) >= MaxAliasesKey {
			return fmt.Errorf("%w: %d aliases per key", ErrLimitExceeded, MaxAliasesKey)
		}
		n := *a
		n.TargetKeyID, n.Updated = c.TargetKeyID, c.Updated
		s.aliases[c.Name] = &n
		return nil
	case *DeleteAlias:
		if _, ok := s.aliases[c.Name]; !ok {
			return fmt.Errorf("%w: %s", ErrAliasNotFound, c.Name)
		}
		delete(s.aliases, c.Name)
		return nil
	case *PutCredential:
		cr := c.Credential
		if cr.AccessKeyID == "" {
			return fmt.Errorf("%w: PutCredential without access key id", ErrBadCommand)
		}
		if _, ok := s.creds[cr.AccessKeyID]; ok {
			return fmt.Errorf("%w: %s", ErrCredExists, cr.AccessKeyID)
		}
		s.creds[cr.AccessKeyID] = &cr
		return nil
	case *PutMeta:
		if v, ok := s.meta[c.Name]; ok {
			return v
		}
		s.meta[c.Name] = c.Value
		return c.Value
	case *PutMember:
		if c.Member.ID == "" {
			return fmt.Errorf("%w: PutMember without id", ErrBadCommand)
		}
		m := c.Member
		s.members[m.ID] = &m
		return nil
	case *RemoveMember:
		delete(s.members, c.ID)
		return nil
	case *SetKeyEnabled:
		return s.updateKey(c.KeyID, func(k *Key) error {
			if k.State != StateEnabled && k.State != StateDisabled {
				return fmt.Errorf("%w: %s is %s", ErrInvalidState, k.Arn, k.State)
			}
			k.State = StateDisabled
			if c.Enabled {
				k.State = StateEnabled
			}
			return nil
		})
	case *ScheduleDeletion:
		return s.updateKey(c.KeyID, func(k *Key) error {
			if k.State == StatePendingDeletion || k.State == StatePendingReplicaDeletion || k.State == StateUpdating {
				return fmt.Errorf("%w: %s is %s", ErrInvalidState, k.Arn, k.State)
			}
			k.State, k.DeletionDate, k.PendingDays = StatePendingDeletion, c.DeletionDate, c.PendingDays
			return nil
		})
	case *CancelDeletion:
		return s.updateKey(c.KeyID, func(k *Key) error {
			if k.State != StatePendingDeletion && k.State != StatePendingReplicaDeletion {
				return fmt.Errorf("%w: %s is not pending deletion", ErrInvalidState, k.Arn)
			}
			k.State, k.DeletionDate, k.PendingDays = StateDisabled, 0, 0
			if k.Origin == OriginExternal && len(k.Materials) == 0 {
				k.State = StatePendingImport // imported material deleted or never imported
			}
			return nil
		})
	case *DeleteKey:
		k, ok := s.keys[c.KeyID]
		if !ok {
			return fmt.Errorf("%w: %s", ErrKeyNotFound, c.KeyID)
		}
		if k.State != StatePendingDeletion || k.DeletionDate > c.Now {
			return fmt.Errorf("%w: %s is not due for deletion", ErrInvalidState, k.Arn)
		}
		delete(s.keys, c.KeyID)
		s.removeKeyID(c.KeyID)
		for name, a := range s.aliases {
			if a.TargetKeyID == c.KeyID {
				delete(s.aliases, name)
			}
		}
		delete(s.grants, c.KeyID)
		return nil
	case *UpdateDescription:
		return s.updateKey(c.KeyID, func(k *Key) error {
			if k.State == StatePendingDeletion || k.State == StatePendingReplicaDeletion {
				return fmt.Errorf("%w: %s is pending deletion", ErrInvalidState, k.Arn)
			}
			k.Description = c.Description
			return nil
		})
	case *TagKey:
		return s.updateKey(c.KeyID, func(k *Key) error {
			if k.State == StatePendingDeletion || k.State == StatePendingReplicaDeletion {
				return fmt.Errorf("%w: %s is pending deletion", ErrInvalidState, k.Arn)
			}
			for _, t := range c.Tags {
				found := false
				for i := range k.Tags {
					if k.Tags[i].Key == t.Key {
						k.Tags[i].Value, found = t.Value, true
						break
					}
				}
				if !found {
					k.Tags = append(k.Tags, t)
				}
			}
			if len(k.Tags) > MaxTagsPerKey {
				return fmt.Errorf("%w: %d tags per key", ErrLimitExceeded, MaxTagsPerKey)
			}
			return nil
		})
	case *UntagKey:
		return s.updateKey(c.KeyID, func(k *Key) error {
			if k.State == StatePendingDeletion || k.State == StatePendingReplicaDeletion {
				return fmt.Errorf("%w: %s is pending deletion", ErrInvalidState, k.Arn)
			}
			drop := map[string]bool{}
			for _, key := range c.Keys {
				drop[key] = true
			}
			kept := k.Tags[:0]
			for _, t := range k.Tags {
				if !drop[t.Key] {
					kept = append(kept, t)
				}
			}
			k.Tags = kept
			return nil
		})
	case *SetRotation:
		return s.updateKey(c.KeyID, func(k *Key) error {
			if !k.usable() {
				return fmt.Errorf("%w: %s is %s", ErrInvalidState, k.Arn, k.State)
			}
			k.RotationEnabled = c.Enabled
			if c.Enabled {
				k.RotationDays, k.NextRotation = c.Days, c.NextRotation
			} else {
				k.NextRotation = 0
			}
			return nil
		})
	case *RotateKey:
		return s.updateKey(c.KeyID, func(k *Key) error {
			if !k.usable() || len(k.Materials) == 0 { // no material: EXTERNAL, not imported
				return fmt.Errorf("%w: %s is %s", ErrInvalidState, k.Arn, k.State)
			}
			if len(c.Material.Wrapped) == 0 {
				return fmt.Errorf("%w: RotateKey without material", ErrBadCommand)
			}
			if len(k.Materials) >= MaxMaterialVers {
				return fmt.Errorf("%w: %d material versions", ErrLimitExceeded, MaxMaterialVers)
			}
			switch c.Material.RotationType {
			case RotationAutomatic:
				if !k.RotationEnabled || k.NextRotation != c.ExpectNext {
					return fmt.Errorf("%w: %s rotation already applied or disabled", ErrInvalidState, k.Arn)
				}
				k.NextRotation = c.NextRotation
			case RotationOnDemand:
				if k.OnDemandRotations >= MaxOnDemandRotations {
					return fmt.Errorf("%w: %d on-demand rotations per key", ErrLimitExceeded, MaxOnDemandRotations)
				}
				k.OnDemandRotations++
			default:
				return fmt.Errorf("%w: rotation type %q", ErrBadCommand, c.Material.RotationType)
			}
			m := c.Material
			m.Version = k.Materials[len(k.Materials)-1].Version + 1
			k.Materials = append(k.Materials, m)
			return nil
		})
	}
	if resp, ok := s.applyAccess(c); ok {
		return resp
	}
	if resp, ok := s.applyKeyStores(c); ok {
		return resp
	}
	if resp, ok := s.applyMultiRegion(c); ok {
		return resp
	}
	if resp, ok := s.applyImport(c); ok {
		return resp
	}
	return fmt.Errorf("%w: %T", ErrUnknownCommand, c)
}

// updateKey applies fn to a copy of the key and publishes the copy if fn
// succeeds, so readers never see a half-changed key. Caller holds s.mu.
func (s *state) updateKey(id string, fn func(k *Key) error) any {
	k, ok := s.keys[id]
	if !ok {
		return fmt.Errorf("%w: %s", ErrKeyNotFound, id)
	}
	c := k.clone()
	if err := fn(c); err != nil {
		return err
	}
	s.keys[id] = c
	return nil
}

func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	return &fsmSnapshot{ss: f.st.toSnapshot()}, nil
}

func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	ss, err := decodeSnapshot(rc)
	if err != nil {
		return err
	}
	f.st.restore(ss)
	return nil
}

func decodeSnapshot(r io.Reader) (ss *snapshotState, err error) {
	defer func() {
		if p := recover(); p != nil {
			ss, err = nil, fmt.Errorf("%w: snapshot: %v", ErrBadCommand, p)
		}
	}()
	ss = &snapshotState{}
	if err := codec.NewDecoder(r, msgpackHandle).Decode(ss); err != nil {
		return nil, fmt.Errorf("%w: snapshot: %v", ErrBadCommand, err)
	}
	if ss.Version != 1 {
		return nil, fmt.Errorf("%w: snapshot version %d", ErrBadCommand, ss.Version)
	}
	return ss, nil
}

type fsmSnapshot struct{ ss *snapshotState }

func (s *fsmSnapshot) encode(w io.Writer) error {
	return codec.NewEncoder(w, msgpackHandle).Encode(s.ss)
}

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := s.encode(sink); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() {}
