package cluster

import (
	"errors"
	"fmt"
)

// Imported key material (keys of Origin EXTERNAL). Commands 40-49 are
// reserved for it.
const (
	cmdPutImportParams      CmdType = 40
	cmdImportMaterial       CmdType = 41
	cmdDeleteImportMaterial CmdType = 42
	cmdPruneImportParams    CmdType = 43
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
type ImportMaterial struct {
	KeyID           string
	TokenID         string
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
type DeleteImportedMaterial struct {
	KeyID         string
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

func (PutImportParams) cmdType() CmdType        { return cmdPutImportParams }
func (ImportMaterial) cmdType() CmdType         { return cmdImportMaterial }
func (DeleteImportedMaterial) cmdType() CmdType { return cmdDeleteImportMaterial }
func (PruneImportParams) cmdType() CmdType      { return cmdPruneImportParams }

func init() {
	commandTable[cmdPutImportParams] = func() Command { return &PutImportParams{} }
	commandTable[cmdImportMaterial] = func() Command { return &ImportMaterial{} }
	commandTable[cmdDeleteImportMaterial] = func() Command { return &DeleteImportedMaterial{} }
	commandTable[cmdPruneImportParams] = func() Command { return &PruneImportParams{} }
}

// importChangedKey names the key whose cached secrets an import command
// makes stale.
func importChangedKey(c Command) string {
	switch c := c.(type) {
	case *ImportMaterial:
		return c.KeyID
	case *DeleteImportedMaterial:
		return c.KeyID
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
			if im.MaterialID != "" && im.MaterialID != c.MaterialID {
				return fmt.Errorf("%w: %s", ErrIncorrectMaterial, k.Arn)
			}
			im.Params = append([]ImportParams(nil), im.Params...)
			im.MaterialID, im.ExpirationModel, im.ValidTo = c.MaterialID, c.ExpirationModel, c.ValidTo
			im.Description, im.Imported = c.Description, c.Now
			k.Import = &im
			created := c.Now
			if m, had := k.CurrentMaterial(); had {
				created = m.Created
			}
			k.Materials = []Material{{Version: 1, Wrapped: append([]byte(nil), c.Wrapped...), Created: created,
				Form: c.Form, Public: append([]byte(nil), c.Public...), ID: c.ReportedID}}
			if k.State == StatePendingImport {
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
			if c.Expire && (len(k.Materials) == 0 || im.ExpirationModel != ExpirationExpires ||
				im.ValidTo != c.ExpectValidTo || im.ValidTo > c.Now) {
				return fmt.Errorf("%w: %s material is not due to expire", ErrInvalidState, k.Arn)
			}
			im.ExpirationModel, im.ValidTo = "", 0
			k.Import = &im
			k.Materials = nil
			if !pendingDeletion(k) {
				k.State = StatePendingImport
			}
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
