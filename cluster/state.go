package cluster

import (
	"sort"
	"sync"
)

// Key states, as AWS names them.
const (
	StateEnabled                = "Enabled"
	StateDisabled               = "Disabled"
	StatePendingDeletion        = "PendingDeletion"
	StatePendingReplicaDeletion = "PendingReplicaDeletion"
	StatePendingImport          = "PendingImport"
	StateUnavailable            = "Unavailable"
	StateCreating               = "Creating"
	StateUpdating               = "Updating"
)

// Limits from the AWS KMS Developer Guide.
const (
	MaxKeys         = 100000
	MaxAliasesKey   = 50
	MaxTagsPerKey   = 50
	MaxMaterialVers = 1 << 16
	// MaxOnDemandRotations is AWS's limit of on-demand rotations per key.
	MaxOnDemandRotations = 25
)

// Material is one version of a KMS key's key material, wrapped by the HSM's
// domain key. Version numbers start at 1 and only grow.
type Material struct {
	Version uint32
	Wrapped []byte
	Created int64 // unix nanos
	// RotationType is "" for a key's first material, else AUTOMATIC or
	// ON_DEMAND; Created is then the rotation date.
	RotationType string
	// Form says what Wrapped holds: "" (MaterialAES) an AES-256 key of a
	// symmetric KMS key; MaterialHSMSecret an HMAC key made in the HSM;
	// MaterialHSMPrivate a private key made in the HSM; MaterialSealed an
	// AES-256 key that seals Sealed.
	Form string
	// Sealed is the private key of an asymmetric KMS key, sealed in the
	// HSM (AES-256-GCM) under the key Wrapped holds (MaterialSealed only).
	Sealed []byte
	// Public is the DER SubjectPublicKeyInfo of an asymmetric KMS key.
	Public []byte
	// ID, when set, is the KeyMaterialId (a multi-Region replica's material
	// carries its primary's, so related keys report the same one).
	ID string
}

// Material forms (Material.Form).
const (
	MaterialAES        = ""
	MaterialHSMSecret  = "hsm-secret"
	MaterialHSMPrivate = "hsm-private"
	MaterialSealed     = "sealed"
)

// Rotation types.
const (
	RotationAutomatic = "AUTOMATIC"
	RotationOnDemand  = "ON_DEMAND"
)

// Tag is a key tag.
type Tag struct {
	Key   string
	Value string
}

// Key is the replicated metadata of one KMS key. It is immutable once
// published by the FSM.
type Key struct {
	ID           string
	Arn          string
	AccountID    string
	Created      int64 // unix nanos
	Description  string
	KeySpec      string
	KeyUsage     string
	Origin       string
	KeyManager   string
	State        string
	MultiRegion  bool
	Materials    []Material // ascending by Version; the last is current
	Tags         []Tag
	Policy       string
	DeletionDate int64 // unix nanos; 0 unless PendingDeletion
	PendingDays  int32
	// Automatic rotation: enabled, its period, and when it is next due
	// (unix nanos). The leader proposes RotateKey when it is due.
	RotationEnabled bool
	RotationDays    int32
	NextRotation    int64
	// OnDemandRotations counts RotateKeyOnDemand calls (AWS allows 25).
	OnDemandRotations int32
	// CustomKeyStoreID names the custom key store of a key in one (see
	// keystores.go); XksKeyID is its external key in an external key store.
	CustomKeyStoreID string
	XksKeyID         string
	// MR is the multi-Region configuration of a multi-Region key (see
	// multiregion.go), nil for others. PrevState is the state to return to
	// after a transient one (Updating).
	MR        *MultiRegion
	PrevState string
	// Import is the imported-material state of an EXTERNAL key (import.go);
	// nil for other keys. Immutable: commands replace it.
	Import *KeyImport
}

// CurrentMaterial returns the material new ciphertexts use.
func (k *Key) CurrentMaterial() (Material, bool) {
	if len(k.Materials) == 0 {
		return Material{}, false
	}
	return k.Materials[len(k.Materials)-1], true
}

// MaterialVersion returns the material with version v.
func (k *Key) MaterialVersion(v uint32) (Material, bool) {
	i := sort.Search(len(k.Materials), func(i int) bool { return k.Materials[i].Version >= v })
	if i < len(k.Materials) && k.Materials[i].Version == v {
		return k.Materials[i], true
	}
	return Material{}, false
}

func (k *Key) clone() *Key {
	c := *k
	c.Materials = append([]Material(nil), k.Materials...)
	c.Tags = append([]Tag(nil), k.Tags...)
	return &c
}

// Alias maps an alias name ("alias/...") to a key id.
type Alias struct {
	Name        string
	TargetKeyID string
	Created     int64
	Updated     int64
}

// Credential is an access key. The secret is sealed by the HSM (see the
// agent); the state never holds it in plaintext.
type Credential struct {
	AccessKeyID  string
	SealedSecret []byte
	Principal    string // ARN of the principal, e.g. arn:aws:iam::111122223333:root
	Created      int64
}

// Member is a node of the cluster as the API layer knows it: its raft
// address and the URL of its KMS API (where followers forward writes).
type Member struct {
	ID       string
	RaftAddr string
	APIURL   string
}

// snapshotState is the serialised form of the whole state.
type snapshotState struct {
	Version     uint8
	Keys        []*Key
	Aliases     []*Alias
	Credentials []*Credential
	Meta        map[string][]byte
	Members     []*Member
	Grants      []*Grant
	Principals  []*Principal
}

// state is the FSM's data. All access goes through mu.
type state struct {
	mu      sync.RWMutex
	keys    map[string]*Key
	keyIDs  []string // sorted, for stable pagination
	aliases map[string]*Alias
	creds   map[string]*Credential
	meta    map[string][]byte
	members map[string]*Member
	// grants by key id, then grant id; principals by ARN.
	grants     map[string]map[string]*Grant
	principals map[string]*Principal
	applied    uint64
}

func newState() *state {
	return &state{
		keys:       map[string]*Key{},
		aliases:    map[string]*Alias{},
		creds:      map[string]*Credential{},
		meta:       map[string][]byte{},
		members:    map[string]*Member{},
		grants:     map[string]map[string]*Grant{},
		principals: map[string]*Principal{},
	}
}

func (s *state) insertKeyID(id string) {
	i := sort.SearchStrings(s.keyIDs, id)
	s.keyIDs = append(s.keyIDs, "")
	copy(s.keyIDs[i+1:], s.keyIDs[i:])
	s.keyIDs[i] = id
}

func (s *state) removeKeyID(id string) {
	i := sort.SearchStrings(s.keyIDs, id)
	if i < len(s.keyIDs) && s.keyIDs[i] == id {
		s.keyIDs = append(s.keyIDs[:i], s.keyIDs[i+1:]...)
	}
}

func (s *state) aliasCount(keyID string) int {
	n := 0
	for _, a := range s.aliases {
		if a.TargetKeyID == keyID {
			n++
		}
	}
	return n
}

func (s *state) toSnapshot() *snapshotState {
	s.mu.RLock()
	defer s.mu.RUnlock()
	ss := &snapshotState{Version: 1, Meta: map[string][]byte{}}
	for _, id := range s.keyIDs {
		ss.Keys = append(ss.Keys, s.keys[id])
	}
	for _, a := range s.aliases {
		ss.Aliases = append(ss.Aliases, a)
	}
	sort.Slice(ss.Aliases, func(i, j int) bool { return ss.Aliases[i].Name < ss.Aliases[j].Name })
	for _, c := range s.creds {
		ss.Credentials = append(ss.Credentials, c)
	}
	sort.Slice(ss.Credentials, func(i, j int) bool { return ss.Credentials[i].AccessKeyID < ss.Credentials[j].AccessKeyID })
	for k, v := range s.meta {
		ss.Meta[k] = v
	}
	for _, m := range s.members {
		ss.Members = append(ss.Members, m)
	}
	sort.Slice(ss.Members, func(i, j int) bool { return ss.Members[i].ID < ss.Members[j].ID })
	for _, byKey := range s.grants {
		for _, g := range byKey {
			ss.Grants = append(ss.Grants, g)
		}
	}
	sort.Slice(ss.Grants, func(i, j int) bool {
		if ss.Grants[i].KeyID != ss.Grants[j].KeyID {
			return ss.Grants[i].KeyID < ss.Grants[j].KeyID
		}
		return ss.Grants[i].ID < ss.Grants[j].ID
	})
	for _, p := range s.principals {
		ss.Principals = append(ss.Principals, p)
	}
	sort.Slice(ss.Principals, func(i, j int) bool { return ss.Principals[i].Arn < ss.Principals[j].Arn })
	return ss
}

func (s *state) restore(ss *snapshotState) {
	n := newState()
	for _, k := range ss.Keys {
		if k == nil || k.ID == "" {
			continue
		}
		n.keys[k.ID] = k
		n.keyIDs = append(n.keyIDs, k.ID)
	}
	sort.Strings(n.keyIDs)
	for _, a := range ss.Aliases {
		if a != nil {
			n.aliases[a.Name] = a
		}
	}
	for _, c := range ss.Credentials {
		if c != nil {
			n.creds[c.AccessKeyID] = c
		}
	}
	for k, v := range ss.Meta {
		n.meta[k] = v
	}
	for _, m := range ss.Members {
		if m != nil {
			n.members[m.ID] = m
		}
	}
	for _, g := range ss.Grants {
		if g == nil || g.ID == "" || g.KeyID == "" {
			continue
		}
		if n.grants[g.KeyID] == nil {
			n.grants[g.KeyID] = map[string]*Grant{}
		}
		n.grants[g.KeyID][g.ID] = g
	}
	for _, p := range ss.Principals {
		if p != nil && p.Arn != "" {
			n.principals[p.Arn] = p
		}
	}
	s.mu.Lock()
	s.keys, s.keyIDs, s.aliases, s.creds, s.meta, s.members = n.keys, n.keyIDs, n.aliases, n.creds, n.meta, n.members
	s.grants, s.principals = n.grants, n.principals
	s.mu.Unlock()
}
