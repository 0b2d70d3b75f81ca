package cluster

import (
	"errors"
	"fmt"
	"sort"
)

// Imported key material (keys of Origin EXTERNAL). Commands 40-49 are
// reserved for it.
const (
	cmdPutImportParams      CmdType = 40
	cmdImportMaterial       CmdType = 41
	cmdDeleteImportMaterial CmdType = 42
	cmdPruneImportParams    CmdType = 43
	cmdRotateImported       CmdType = 44
)

// OriginExternal is the Origin of keys whose material is imported.
const OriginExternal = "EXTERNAL"

// Expiration models of imported material, as AWS names them.
const (
	ExpirationExpires       = "KEY_MATERIAL_EXPIRES"
	ExpirationDoesNotExpire = "KEY_MATERIAL_DOES_NOT_EXPIRE"
)

// MaxImportParams is how many unexpired GetParametersForImport answers a
// key keeps; a newer one pushes out the oldest.
const MaxImportParams = 10

var (
	// ErrImportToken: the import token names no parameters of the key.
	ErrImportToken = errors.New("cluster: import token does not match the key")
	// ErrImportTokenExpired: the import token's parameters have expired.
	ErrImportTokenExpired = errors.New("cluster: import token expired")
	// ErrIncorrectMaterial: the key had other material than the import.
	ErrIncorrectMaterial = errors.New("cluster: imported material differs from the key's")
)

// ImportParams is one answer of GetParametersForImport: the wrapping key
// pair's private half, wrapped by the HSM domain key (it is usable in
// every node's HSM, never in plaintext outside one), and what it is for.
type ImportParams struct {
	TokenID           string // random; the import token names it
	WrappingAlgorithm string
	WrappingKeySpec   string
	WrappedPrivateKey []byte
	ValidTo           int64 // unix nanos
}

// KeyImport is the import state of an EXTERNAL key. It is immutable once
// published: commands replace it whole.
type KeyImport struct {
	Params []ImportParams // oldest first
	// MaterialID is the keyed fingerprint of the material imported first
	// (hex SHA-256 of the material wrapped by the domain key; RFC 5649 is
	// deterministic, so the same material gives the same value). It stays
	// after the material is deleted so that only that material may come
	// back. "" until the first import.
	MaterialID string
	// Of the current material (none while PendingImport):
	ExpirationModel string
	ValidTo         int64 // unix nanos; 0 unless KEY_MATERIAL_EXPIRES
	Description     string
	Imported        int64 // unix nanos of the last import
	// FingerprintKey is an AES key wrapped by the domain key that
	// fingerprints the symmetric or HMAC material of a multi-Region key
	// (hsmpool.ImportTarget.FingerprintKey): every related key holds it,
	// so MaterialID is the same in every Region and a replica can tell the
	// primary's material from other material. Nil for single-Region keys,
	// whose MaterialID is the SHA-256 of the domain-key-wrapped material,
	// and for key pairs, whose MaterialID is the SHA-256 of the public key.
	FingerprintKey []byte
	// Versions is the import record of every material version, index =
	// version - 1, once a key has been rotated (symmetric keys,
	// NEW_KEY_MATERIAL then RotateKeyOnDemand); nil before, when the
	// fields above describe the one version. Key.Materials holds the
	// versions whose material is imported; the key is PendingImport while
	// any version's is not.
	Versions []VersionImport
	// Pending is material imported with NEW_KEY_MATERIAL that
	// RotateKeyOnDemand has not made current yet (PENDING_ROTATION).
	Pending *PendingMaterial
}

// VersionImport is the import record of one material version.
type VersionImport struct {
	MaterialID      string
	Imported        bool // its material is in Key.Materials
	ExpirationModel string
	ValidTo         int64
	Description     string
	Created         int64  // of the Material (the rotation date for versions > 1)
	RotationType    string // "" for version 1
}

// PendingMaterial is imported material waiting for RotateKeyOnDemand.
type PendingMaterial struct {
	Wrapped         []byte
	MaterialID      string
	ExpirationModel string
	ValidTo         int64
	Description     string
	Imported        int64
}

// importVersions returns k's import records, made from the single-version
// fields for a key never rotated (a copy: the caller may change it).
func (k *Key) importVersions() []VersionImport {
	im := k.importState()
	if len(im.Versions) > 0 {
		return append([]VersionImport(nil), im.Versions...)
	}
	if im.MaterialID == "" {
		return nil
	}
	v := VersionImport{MaterialID: im.MaterialID, Imported: len(k.Materials) > 0, ExpirationModel: im.ExpirationModel,
		ValidTo: im.ValidTo, Description: im.Description}
	if m, ok := k.CurrentMaterial(); ok {
		v.Created = m.Created
	}
	return []VersionImport{v}
}

// ImportVersions is k's import record per material version (see
// KeyImport.Versions); nil before the first import.
func (k *Key) ImportVersions() []VersionImport { return k.importVersions() }

// setVersions stores vs in im and keeps the single-version fields on the
// current (last) version, which DescribeKey and the expiry read.
func setVersions(im *KeyImport, vs []VersionImport) {
	im.Versions = vs
	if len(vs) == 1 && vs[0].RotationType == "" {
		im.Versions = nil // never rotated: the single-version fields say it all
	}
	if len(vs) == 0 {
		return
	}
	cur := vs[len(vs)-1]
	im.MaterialID = vs[0].MaterialID
	im.ExpirationModel, im.ValidTo, im.Description = "", 0, cur.Description
	if cur.Imported {
		im.ExpirationModel, im.ValidTo = cur.ExpirationModel, cur.ValidTo
	}
}

// allImported reports whether every version's material is imported.
func allImported(vs []VersionImport) bool {
	for _, v := range vs {
		if !v.Imported {
			return false
		}
	}
	return len(vs) > 0
}

// PutImportParams records new import parameters for an EXTERNAL key that
// is not pending deletion, dropping those expired at Now and the oldest
// beyond MaxImportParams.
type PutImportParams struct {
	KeyID  string
	Params ImportParams
	Now    int64
}

// ImportMaterial puts imported material (wrapped by the domain key) into
// an EXTERNAL key. TokenID must name unexpired parameters of the key
// (ErrImportToken, ErrImportTokenExpired); MaterialID must equal the key's
// fingerprint if it has one (ErrIncorrectMaterial). A PendingImport key
// becomes Enabled; an Enabled or Disabled key keeps its state (a re-import
// sets the expiration anew). A key pending deletion gives ErrInvalidState.
//
// Form and Public are those of the new Material (an HMAC secret, a private
// key and its public key); ReportedID, when set, is its Material.ID (the
// KeyMaterialId reported when it is not the fingerprint).
//
// A rotated key's material goes back to the version whose MaterialID it
// has; with NewMaterial, material that is no version's becomes the key's
// Pending material (replacing a pending one only of the same MaterialID).
type ImportMaterial struct {
	KeyID           string
	TokenID         string
	NewMaterial     bool
	Wrapped         []byte
	Form            string
	Public          []byte
	ReportedID      string
	MaterialID      string
	ExpirationModel string
	ValidTo         int64
	Description     string
	Now             int64
}

// DeleteImportedMaterial removes an EXTERNAL key's material: the key
// becomes PendingImport (a key pending deletion stays so). With Expire set
// it is the leader's expiry: it applies only if the material still expires
// at ExpectValidTo and that is at or before Now, so a second proposal
// changes nothing (ErrInvalidState).
//
// Version, when not 0, names the version whose material goes (else the
// current one); Pending deletes the pending material instead (the key's
// state does not change).
type DeleteImportedMaterial struct {
	KeyID         string
	Version       uint32
	Pending       bool
	Expire        bool
	ExpectValidTo int64
	Now           int64
}

// PruneImportParams drops a key's import parameters that expired at Now
// (the leader's timer), so wrapped private keys do not outlive them.
type PruneImportParams struct {
	KeyID string
	Now   int64
}

// RotateImported makes an Enabled key's pending imported material its new
// current version (RotateKeyOnDemand; it counts as an on-demand rotation).
type RotateImported struct {
	KeyID string
	Now   int64
}

func (RotateImported) cmdType() CmdType         { return cmdRotateImported }
func (PutImportParams) cmdType() CmdType        { return cmdPutImportParams }
func (ImportMaterial) cmdType() CmdType         { return cmdImportMaterial }
func (DeleteImportedMaterial) cmdType() CmdType { return cmdDeleteImportMaterial }
func (PruneImportParams) cmdType() CmdType      { return cmdPruneImportParams }

func init() {
	commandTable[cmdPutImportParams] = func() Command { return &PutImportParams{} }
	commandTable[cmdImportMaterial] = func() Command { return &ImportMaterial{} }
	commandTable[cmdDeleteImportMaterial] = func() Command { return &DeleteImportedMaterial{} }
	commandTable[cmdPruneImportParams] = func() Command { return &PruneImportParams{} }
	commandTable[cmdRotateImported] = func() Command { return &RotateImported{} }
}

// importChangedKey names the key whose cached secrets an import command
// makes stale.
func importChangedKey(c Command) string {
	switch c := c.(type) {
	case *ImportMaterial:
		return c.KeyID
	case *DeleteImportedMaterial:
		return c.KeyID
	case *RotateImported:
		return c.KeyID
	}
	return ""
}

// reportedID is the Material.ID of imported material whose fingerprint is
// materialID: a multi-Region key's (keyed by its fingerprint key, the same
// in every Region) is reported as it is; a single-Region key's material
// needs none (its fingerprint is the SHA-256 of the wrapped material,
// which is what is reported without an ID).
func reportedID(im *KeyImport, materialID string) string {
	if len(im.FingerprintKey) > 0 {
		return materialID
	}
	return ""
}

func (k *Key) importState() KeyImport {
	if k.Import == nil {
		return KeyImport{}
	}
	return *k.Import
}

func unexpired(ps []ImportParams, now int64) []ImportParams {
	out := make([]ImportParams, 0, len(ps)+1)
	for _, p := range ps {
		if p.ValidTo > now {
			out = append(out, p)
		}
	}
	return out
}

func pendingDeletion(k *Key) bool {
	return k.State == StatePendingDeletion || k.State == StatePendingReplicaDeletion
}

// applyImport applies the import commands; ok is false for any other
// command. Caller holds s.mu.
func (s *state) applyImport(c Command) (resp any, ok bool) {
	switch c := c.(type) {
	case *PutImportParams:
		if c.Params.TokenID == "" || len(c.Params.WrappedPrivateKey) == 0 {
			return fmt.Errorf("%w: PutImportParams without token or key", ErrBadCommand), true
		}
		return s.updateKey(c.KeyID, func(k *Key) error {
			if k.Origin != OriginExternal {
				return fmt.Errorf("%w: %s origin is %s", ErrInvalidState, k.Arn, k.Origin)
			}
			if pendingDeletion(k) {
				return fmt.Errorf("%w: %s is pending deletion", ErrInvalidState, k.Arn)
			}
			im := k.importState()
			im.Params = append(unexpired(im.Params, c.Now), c.Params)
			if n := len(im.Params); n > MaxImportParams {
				im.Params = im.Params[n-MaxImportParams:]
			}
			k.Import = &im
			return nil
		}), true
	case *ImportMaterial:
		if len(c.Wrapped) == 0 || c.MaterialID == "" {
			return fmt.Errorf("%w: ImportMaterial without material", ErrBadCommand), true
		}
		return s.updateKey(c.KeyID, func(k *Key) error {
			if k.Origin != OriginExternal {
				return fmt.Errorf("%w: %s origin is %s", ErrInvalidState, k.Arn, k.Origin)
			}
			if pendingDeletion(k) {
				return fmt.Errorf("%w: %s is pending deletion", ErrInvalidState, k.Arn)
			}
			im := k.importState()
			found := false
			for _, p := range im.Params {
				if p.TokenID == c.TokenID {
					if p.ValidTo <= c.Now {
						return fmt.Errorf("%w: %s", ErrImportTokenExpired, k.Arn)
					}
					found = true
				}
			}
			if !found {
				return fmt.Errorf("%w: %s", ErrImportToken, k.Arn)
			}
			vs := k.importVersions()
			at := -1
			for i, v := range vs {
				if v.MaterialID == c.MaterialID {
					at = i
				}
			}
			im.Params = append([]ImportParams(nil), im.Params...)
			switch {
			case at < 0 && len(vs) > 0 && c.NewMaterial && k.KeySpec == "SYMMETRIC_DEFAULT":
				// Only symmetric keys rotate imported material (a
				// multi-Region replica's pending material becomes a
				// version when its primary's rotation reaches it); for the
				// others (also when two first imports race past the
				// agent's check) other material is not theirs.
				if im.Pending != nil && im.Pending.MaterialID != c.MaterialID {
					return fmt.Errorf("%w: %s already has pending key material", ErrInvalidState, k.Arn)
				}
				im.Pending = &PendingMaterial{Wrapped: append([]byte(nil), c.Wrapped...), MaterialID: c.MaterialID,
					ExpirationModel: c.ExpirationModel, ValidTo: c.ValidTo, Description: c.Description, Imported: c.Now}
				k.Import = &im
				return nil
			case at < 0 && len(vs) > 0:
				return fmt.Errorf("%w: %s", ErrIncorrectMaterial, k.Arn)
			case at < 0:
				vs, at = []VersionImport{{MaterialID: c.MaterialID, Created: c.Now}}, 0
			}
			v := &vs[at]
			if v.Created == 0 {
				v.Created = c.Now
			}
			v.Imported, v.ExpirationModel, v.ValidTo, v.Description = true, c.ExpirationModel, c.ValidTo, c.Description
			m := Material{Version: uint32(at + 1), Wrapped: append([]byte(nil), c.Wrapped...), Created: v.Created,
				RotationType: v.RotationType, Form: c.Form, Public: append([]byte(nil), c.Public...), ID: c.ReportedID}
			ms := make([]Material, 0, len(k.Materials)+1)
			for _, old := range k.Materials {
				if old.Version != m.Version {
					ms = append(ms, old)
				}
			}
			ms = append(ms, m)
			sort.Slice(ms, func(i, j int) bool { return ms[i].Version < ms[j].Version })
			k.Materials = ms
			setVersions(&im, vs)
			im.Imported = c.Now
			k.Import = &im
			if k.State == StatePendingImport && allImported(vs) {
				k.State = StateEnabled
			}
			return nil
		}), true
	case *DeleteImportedMaterial:
		return s.updateKey(c.KeyID, func(k *Key) error {
			if k.Origin != OriginExternal {
				return fmt.Errorf("%w: %s origin is %s", ErrInvalidState, k.Arn, k.Origin)
			}
			im := k.importState()
			if c.Pending {
				if im.Pending == nil || (c.Expire && (im.Pending.ExpirationModel != ExpirationExpires ||
					im.Pending.ValidTo != c.ExpectValidTo || im.Pending.ValidTo > c.Now)) {
					return fmt.Errorf("%w: %s has no such pending material", ErrInvalidState, k.Arn)
				}
				im.Pending = nil
				k.Import = &im
				return nil
			}
			vs := k.importVersions()
			i := len(vs) - 1
			if c.Version != 0 {
				i = int(c.Version) - 1
			}
			if i < 0 || i >= len(vs) {
				if c.Expire || c.Version != 0 {
					return fmt.Errorf("%w: %s has no material version %d", ErrInvalidState, k.Arn, c.Version)
				}
			} else {
				v := &vs[i]
				if c.Expire && (!v.Imported || v.ExpirationModel != ExpirationExpires || v.ValidTo != c.ExpectValidTo || v.ValidTo > c.Now) {
					return fmt.Errorf("%w: %s material is not due to expire", ErrInvalidState, k.Arn)
				}
				v.Imported, v.ExpirationModel, v.ValidTo = false, "", 0
				ms := make([]Material, 0, len(k.Materials))
				for _, m := range k.Materials {
					if m.Version != uint32(i+1) {
						ms = append(ms, m)
					}
				}
				k.Materials = ms
				setVersions(&im, vs)
			}
			k.Import = &im
			if !pendingDeletion(k) {
				k.State = StatePendingImport
			}
			return nil
		}), true
	case *RotateImported:
		return s.updateKey(c.KeyID, func(k *Key) error {
			im := k.importState()
			vs := k.importVersions()
			switch {
			case k.Origin != OriginExternal || im.Pending == nil:
				return fmt.Errorf("%w: %s has no pending key material", ErrInvalidState, k.Arn)
			case !k.usable() || !allImported(vs):
				return fmt.Errorf("%w: %s is %s", ErrInvalidState, k.Arn, k.State)
			case k.OnDemandRotations >= MaxOnDemandRotations:
				return fmt.Errorf("%w: %d on-demand rotations per key", ErrLimitExceeded, MaxOnDemandRotations)
			case len(vs) >= MaxMaterialVers:
				return fmt.Errorf("%w: %d material versions", ErrLimitExceeded, MaxMaterialVers)
			}
			p := im.Pending
			vs = append(vs, VersionImport{MaterialID: p.MaterialID, Imported: true, ExpirationModel: p.ExpirationModel,
				ValidTo: p.ValidTo, Description: p.Description, Created: c.Now, RotationType: RotationOnDemand})
			k.Materials = append(append([]Material(nil), k.Materials...), Material{Version: uint32(len(vs)), Wrapped: p.Wrapped,
				Created: c.Now, RotationType: RotationOnDemand, ID: reportedID(&im, p.MaterialID)})
			im.Pending = nil
			setVersions(&im, vs)
			k.Import = &im
			k.OnDemandRotations++
			return nil
		}), true
	case *PruneImportParams:
		return s.updateKey(c.KeyID, func(k *Key) error {
			if k.Import == nil {
				return nil
			}
			im := *k.Import
			im.Params = unexpired(im.Params, c.Now)
			k.Import = &im
			return nil
		}), true
	}
	return nil, false
}
