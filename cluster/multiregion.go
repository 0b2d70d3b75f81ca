package cluster

import (
	"fmt"
	"slices"
	"sort"
)

// Multi-Region keys: the configuration a key shares with its related keys
// in other clusters (Regions), and the commands that change it. Commands
// 60-69 are reserved for it.
const (
	cmdSetMultiRegion     CmdType = 60
	cmdAddReplica         CmdType = 61
	cmdRemoveReplica      CmdType = 62
	cmdScheduleMRDeletion CmdType = 63
)

// Multi-Region key types, as AWS names them.
const (
	MultiRegionPrimary = "PRIMARY"
	MultiRegionReplica = "REPLICA"
)

// nanosPerDay converts a waiting period in days to unix nanos.
const nanosPerDay = 24 * 60 * 60 * 1_000_000_000

// RegionKey names one key of a set of related multi-Region keys.
type RegionKey struct {
	Region string
	Arn    string
}

// MultiRegion is a multi-Region key's configuration: its type, the primary
// key and the replicas. A published value is never modified; a change
// replaces it whole (so Key.clone may copy the pointer).
type MultiRegion struct {
	Type     string
	Primary  RegionKey
	Replicas []RegionKey // in the order they were added
	// Gen grows with every change the primary makes; a replica takes a
	// configuration only with a higher Gen than the one it holds, so a late
	// or repeated sync never rolls it back.
	Gen uint64
}

// HasRegion reports whether region holds one of the related keys.
func (m *MultiRegion) HasRegion(region string) bool {
	if m == nil {
		return false
	}
	if m.Primary.Region == region {
		return true
	}
	for _, r := range m.Replicas {
		if r.Region == region {
			return true
		}
	}
	return false
}

// IsReplica reports whether k is a multi-Region replica key.
func (k *Key) IsReplica() bool { return k.MR != nil && k.MR.Type == MultiRegionReplica }

// IsPrimary reports whether k is a multi-Region primary key.
func (k *Key) IsPrimary() bool { return k.MR != nil && k.MR.Type == MultiRegionPrimary }

// RotationSync carries the primary's automatic rotation settings to a
// replica (a shared property).
type RotationSync struct {
	Enabled bool
	Days    int32
	Next    int64
}

// SetMultiRegion changes what a multi-Region key shares with its related
// keys, and the transient states around it. In order:
//   - ExpectState, when set, must be the key's state (else ErrInvalidState);
//   - Config replaces the key's configuration when its Gen is higher than
//     the key's (or the key has none); otherwise it is ignored;
//   - each of Materials whose Version is the key's last version + 1 is
//     appended; others (already held) are ignored;
//   - Rotation, when set, replaces the rotation settings;
//   - ImportMaterialID, when set, is the primary's imported-material
//     fingerprint (KeyImport.MaterialID); an EXTERNAL key that has none
//     takes it (a replica learns which material it may import);
//   - ImportVersions, when longer than the EXTERNAL key's own versions,
//     appends the versions it lacks (the primary's on-demand rotations of
//     imported material): a version whose material the key holds as
//     pending (imported with NEW_KEY_MATERIAL, same fingerprint) becomes
//     that version, others are added without material and the key is
//     PendingImport until that material is imported;
//   - Activate moves a Creating key to Enabled, or to PendingImport if it
//     is an EXTERNAL key without material;
//   - SavePrev stores the state in PrevState before State (when set)
//     replaces it, unless the key is in State already; RestorePrev returns
//     to PrevState and clears it (an Updating key with none saved becomes
//     Enabled).
type SetMultiRegion struct {
	KeyID            string
	ExpectState      string
	Config           *MultiRegion
	Materials        []Material
	Rotation         *RotationSync
	ImportMaterialID string
	// ImportVersions is the primary's list of imported material versions
	// once its material has been rotated (applyImportVersions).
	ImportVersions []ImportVersionSync
	Activate       bool
	State          string
	SavePrev       bool
	RestorePrev    bool
}

// ImportVersionSync is one imported material version of a primary key as
// its replicas learn it: which material (its fingerprint), when it became
// current and how. The material itself is never synced: each Region
// imports it.
type ImportVersionSync struct {
	MaterialID   string
	Created      int64
	RotationType string
}

// AddReplica records a replica on a primary key. A Region that already
// holds a related key gives ErrKeyExists; a key that is not a primary,
// ErrInvalidState.
type AddReplica struct {
	KeyID   string
	Replica RegionKey
}

// RemoveReplica forgets a deleted replica on a primary key (absent: no
// change). A primary in PendingReplicaDeletion whose last replica goes
// moves to PendingDeletion, its waiting period starting at Now.
type RemoveReplica struct {
	KeyID  string
	Region string
	Now    int64
}

// ScheduleMRDeletion schedules deletion like ScheduleDeletion, except that
// a primary key with replicas goes to PendingReplicaDeletion (its waiting
// period starts when the last replica is gone). The response is the state
// the key is in afterwards (string).
type ScheduleMRDeletion struct {
	KeyID       string
	Now         int64
	PendingDays int32
}

func (SetMultiRegion) cmdType() CmdType     { return cmdSetMultiRegion }
func (AddReplica) cmdType() CmdType         { return cmdAddReplica }
func (RemoveReplica) cmdType() CmdType      { return cmdRemoveReplica }
func (ScheduleMRDeletion) cmdType() CmdType { return cmdScheduleMRDeletion }

func init() {
	commandTable[cmdSetMultiRegion] = func() Command { return &SetMultiRegion{} }
	commandTable[cmdAddReplica] = func() Command { return &AddReplica{} }
	commandTable[cmdRemoveReplica] = func() Command { return &RemoveReplica{} }
	commandTable[cmdScheduleMRDeletion] = func() Command { return &ScheduleMRDeletion{} }
}

// applyMultiRegion applies the multi-Region commands; ok is false for any
// other command. Caller holds s.mu.
func (s *state) applyMultiRegion(c Command) (resp any, ok bool) {
	switch c := c.(type) {
	case *SetMultiRegion:
		return s.updateKey(c.KeyID, func(k *Key) error {
			if c.ExpectState != "" && k.State != c.ExpectState {
				return fmt.Errorf("%w: %s is %s", ErrInvalidState, k.Arn, k.State)
			}
			if c.Config != nil && (k.MR == nil || c.Config.Gen > k.MR.Gen) {
				if c.Config.Type != MultiRegionPrimary && c.Config.Type != MultiRegionReplica {
					return fmt.Errorf("%w: multi-Region type %q", ErrBadCommand, c.Config.Type)
				}
				mr := *c.Config
				mr.Replicas = slices.Clone(c.Config.Replicas)
				k.MR, k.MultiRegion = &mr, true
			}
			for _, m := range c.Materials {
				last := uint32(0)
				if n := len(k.Materials); n > 0 {
					last = k.Materials[n-1].Version
				}
				if m.Version != last+1 {
					continue
				}
				if len(m.Wrapped) == 0 {
					return fmt.Errorf("%w: material without key", ErrBadCommand)
				}
				if len(k.Materials) >= MaxMaterialVers {
					return fmt.Errorf("%w: %d material versions", ErrLimitExceeded, MaxMaterialVers)
				}
				k.Materials = append(k.Materials, m)
			}
			if r := c.Rotation; r != nil {
				k.RotationEnabled, k.RotationDays, k.NextRotation = r.Enabled, r.Days, r.Next
			}
			if c.ImportMaterialID != "" && k.Origin == OriginExternal && (k.Import == nil || k.Import.MaterialID == "") {
				im := k.importState()
				im.MaterialID = c.ImportMaterialID
				k.Import = &im
			}
			applyImportVersions(k, c.ImportVersions)
			switch {
			case c.Activate && k.State == StateCreating && len(k.Materials) > 0:
				k.State = StateEnabled
			case c.Activate && k.State == StateCreating && k.Origin == OriginExternal:
				k.State = StatePendingImport
			}
			if c.State != "" {
				if c.SavePrev && k.State != c.State { // already there: keep the state to return to
					k.PrevState = k.State
				}
				k.State = c.State
			}
			if c.RestorePrev {
				switch {
				case k.PrevState != "":
					k.State, k.PrevState = k.PrevState, ""
				case k.State == StateUpdating: // nothing saved: never stay Updating
					k.State = StateEnabled
				}
			}
			return nil
		}), true
	case *AddReplica:
		return s.updateKey(c.KeyID, func(k *Key) error {
			if !k.IsPrimary() {
				return fmt.Errorf("%w: %s is not a multi-Region primary key", ErrInvalidState, k.Arn)
			}
			if c.Replica.Region == "" || c.Replica.Arn == "" {
				return fmt.Errorf("%w: AddReplica without region", ErrBadCommand)
			}
			if k.MR.HasRegion(c.Replica.Region) {
				return fmt.Errorf("%w: %s already has a related key in %s", ErrKeyExists, k.Arn, c.Replica.Region)
			}
			mr := *k.MR
			mr.Replicas = append(slices.Clone(k.MR.Replicas), c.Replica)
			mr.Gen++
			k.MR = &mr
			return nil
		}), true
	case *RemoveReplica:
		return s.updateKey(c.KeyID, func(k *Key) error {
			if k.MR == nil {
				return nil
			}
			i := slices.IndexFunc(k.MR.Replicas, func(r RegionKey) bool { return r.Region == c.Region })
			if i >= 0 {
				mr := *k.MR
				mr.Replicas = slices.Delete(slices.Clone(k.MR.Replicas), i, i+1)
				mr.Gen++
				k.MR = &mr
			}
			if k.State == StatePendingReplicaDeletion && len(k.MR.Replicas) == 0 {
				k.State, k.DeletionDate = StatePendingDeletion, c.Now+int64(k.PendingDays)*nanosPerDay
			}
			return nil
		}), true
	case *ScheduleMRDeletion:
		var st string
		err := s.updateKey(c.KeyID, func(k *Key) error {
			if k.State == StatePendingDeletion || k.State == StatePendingReplicaDeletion || k.State == StateUpdating {
				return fmt.Errorf("%w: %s is %s", ErrInvalidState, k.Arn, k.State)
			}
			k.PendingDays = c.PendingDays
			if k.IsPrimary() && len(k.MR.Replicas) > 0 {
				k.State, k.DeletionDate = StatePendingReplicaDeletion, 0
			} else {
				k.State, k.DeletionDate = StatePendingDeletion, c.Now+int64(c.PendingDays)*nanosPerDay
			}
			st = k.State
			return nil
		})
		if err != nil {
			return err, true
		}
		return st, true
	}
	return nil, false
}

// usable reports whether k's material may be rotated and its rotation
// settings changed: Enabled, or Updating (UpdatePrimaryRegion) from
// Enabled, as the key-state table allows.
func (k *Key) usable() bool {
	return k.State == StateEnabled || k.State == StateUpdating && k.PrevState == StateEnabled
}

// applyImportVersions appends to the EXTERNAL key k the primary's material
// versions it lacks (SetMultiRegion.ImportVersions). A list that
// disagrees with k's own versions (ImportVersionsDiverge) changes
// nothing, and the rest of the sync still applies.
func applyImportVersions(k *Key, pvs []ImportVersionSync) {
	if k.Origin != OriginExternal || len(pvs) == 0 || len(pvs) > MaxMaterialVers || ImportVersionsDiverge(k, pvs) {
		return
	}
	im := k.importState()
	vs := k.importVersions()
	if len(pvs) <= len(vs) {
		return
	}
	ms := append([]Material(nil), k.Materials...)
	for i := len(vs); i < len(pvs); i++ {
		pv := pvs[i]
		v := VersionImport{MaterialID: pv.MaterialID, Created: pv.Created, RotationType: pv.RotationType}
		if p := im.Pending; p != nil && p.MaterialID == pv.MaterialID {
			v.Imported, v.ExpirationModel, v.ValidTo, v.Description = true, p.ExpirationModel, p.ValidTo, p.Description
			ms = append(ms, Material{Version: uint32(i + 1), Wrapped: p.Wrapped, Created: pv.Created, RotationType: pv.RotationType,
				ID: reportedID(&im, pv.MaterialID)})
			im.Imported = p.Imported
			im.Pending = nil
		}
		vs = append(vs, v)
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].Version < ms[j].Version })
	k.Materials = ms
	setVersions(&im, vs)
	k.Import = &im
	if allImported(vs) {
		return
	}
	// A version without its material: PendingImport until it is imported,
	// as when a version's material is deleted (a transient Updating
	// returns there instead).
	switch {
	case k.State == StateUpdating:
		k.PrevState = StatePendingImport
	case k.State != StateCreating && !pendingDeletion(k):
		k.State = StatePendingImport
	}
}

// ImportVersionsDiverge reports whether a primary's list of imported
// material versions disagrees with the EXTERNAL key k's own (a version
// with another fingerprint, or one without any): the two Regions would
// decrypt a version's ciphertexts with different material.
func ImportVersionsDiverge(k *Key, pvs []ImportVersionSync) bool {
	if k.Origin != OriginExternal || len(pvs) == 0 {
		return false
	}
	vs := k.importVersions()
	for i, pv := range pvs {
		if pv.MaterialID == "" || i < len(vs) && vs[i].MaterialID != pv.MaterialID {
			return true
		}
	}
	return false
}
