package cluster

import (
	"fmt"
	"maps"
	"slices"
	"sort"
)

// Access control state: key policies (on Key.Policy), grants, and the
// principals that hold access keys. Commands 18-29 are reserved for it.
const (
	cmdSetKeyPolicy     CmdType = 18
	cmdCreateGrant      CmdType = 19
	cmdRemoveGrant      CmdType = 20
	cmdDeleteCredential CmdType = 21
	cmdPutPrincipal     CmdType = 22
)

// Limits of grants, from the AWS KMS Developer Guide.
const (
	MaxGrantsPerKey = 50000
)

// Grant gives a grantee principal permission to use a key for some
// operations, optionally only with a matching encryption context.
type Grant struct {
	ID                string
	KeyID             string
	Name              string
	GranteePrincipal  string
	RetiringPrincipal string
	IssuingAccount    string
	Operations        []string
	// Constraints; nil maps mean no constraint of that kind.
	EncryptionContextEquals map[string]string
	EncryptionContextSubset map[string]string
	Created                 int64 // unix nanos
}

// sameTerms reports whether g and o grant the same thing (AWS's test for an
// idempotent CreateGrant retry with the same Name).
func (g *Grant) sameTerms(o *Grant) bool {
	return g.KeyID == o.KeyID && g.Name == o.Name && g.GranteePrincipal == o.GranteePrincipal &&
		g.RetiringPrincipal == o.RetiringPrincipal && slices.Equal(sortedCopy(g.Operations), sortedCopy(o.Operations)) &&
		maps.Equal(g.EncryptionContextEquals, o.EncryptionContextEquals) &&
		maps.Equal(g.EncryptionContextSubset, o.EncryptionContextSubset) &&
		(g.EncryptionContextEquals == nil) == (o.EncryptionContextEquals == nil) &&
		(g.EncryptionContextSubset == nil) == (o.EncryptionContextSubset == nil)
}

func sortedCopy(s []string) []string {
	c := slices.Clone(s)
	sort.Strings(c)
	return c
}

// Principal is an IAM-style principal (account root, user or role) known to
// the cluster, with its identity policy: the IAM policy that, together with
// key policies that delegate to the account, says what it may do. The
// account root needs no record: it may do everything a key policy lets the
// account do.
type Principal struct {
	Arn    string
	Policy string // IAM policy JSON; "" = no identity permissions
	// ViaService, when set, is the AWS service this principal's calls are
	// made through (the kms:ViaService condition key), e.g.
	// "s3.us-east-1.amazonaws.com".
	ViaService string
	Created    int64
}

// SetKeyPolicy replaces a key's policy.
type SetKeyPolicy struct {
	KeyID  string
	Policy string
}

// CreateGrant adds a grant. If the key already has a grant with the same
// Name and the same terms, nothing changes and the response is that grant's
// id (AWS's idempotent retry); otherwise the response is Grant.ID. More than
// MaxGrantsPerKey grants on a key gives ErrLimitExceeded.
type CreateGrant struct {
	Grant Grant
}

// RemoveGrant deletes a grant (RetireGrant, RevokeGrant). An unknown grant
// gives ErrGrantNotFound.
type RemoveGrant struct {
	KeyID   string
	GrantID string
}

// DeleteCredential removes an access key. An unknown one gives
// ErrCredNotFound.
type DeleteCredential struct {
	AccessKeyID string
}

// PutPrincipal creates or replaces a principal and its identity policy.
type PutPrincipal struct {
	Principal Principal
}

func (SetKeyPolicy) cmdType() CmdType     { return cmdSetKeyPolicy }
func (CreateGrant) cmdType() CmdType      { return cmdCreateGrant }
func (RemoveGrant) cmdType() CmdType      { return cmdRemoveGrant }
func (DeleteCredential) cmdType() CmdType { return cmdDeleteCredential }
func (PutPrincipal) cmdType() CmdType     { return cmdPutPrincipal }

func init() {
	commandTable[cmdSetKeyPolicy] = func() Command { return &SetKeyPolicy{} }
	commandTable[cmdCreateGrant] = func() Command { return &CreateGrant{} }
	commandTable[cmdRemoveGrant] = func() Command { return &RemoveGrant{} }
	commandTable[cmdDeleteCredential] = func() Command { return &DeleteCredential{} }
	commandTable[cmdPutPrincipal] = func() Command { return &PutPrincipal{} }
}

// applyAccess applies the access-control commands; ok is false for any
// other command. Caller holds s.mu.
func (s *state) applyAccess(c Command) (resp any, ok bool) {
	switch c := c.(type) {
	case *SetKeyPolicy:
		return s.updateKey(c.KeyID, func(k *Key) error {
			k.Policy = c.Policy
			return nil
		}), true
	case *CreateGrant:
		g := c.Grant
		if g.ID == "" || g.KeyID == "" {
			return fmt.Errorf("%w: CreateGrant without ids", ErrBadCommand), true
		}
		k, found := s.keys[g.KeyID]
		if !found {
			return fmt.Errorf("%w: %s", ErrKeyNotFound, g.KeyID), true
		}
		if k.State == StatePendingDeletion || k.State == StatePendingReplicaDeletion {
			return fmt.Errorf("%w: %s is pending deletion", ErrInvalidState, k.Arn), true
		}
		byKey := s.grants[g.KeyID]
		if g.Name != "" {
			for _, o := range byKey {
				if o.Name == g.Name && o.sameTerms(&g) {
					return o.ID, true
				}
			}
		}
		if _, dup := byKey[g.ID]; dup {
			return fmt.Errorf("%w: grant %s exists", ErrBadCommand, g.ID), true
		}
		if len(byKey) >= MaxGrantsPerKey {
			return fmt.Errorf("%w: %d grants per key", ErrLimitExceeded, MaxGrantsPerKey), true
		}
		if byKey == nil {
			byKey = map[string]*Grant{}
			s.grants[g.KeyID] = byKey
		}
		g.Operations = slices.Clone(g.Operations)
		byKey[g.ID] = &g
		return g.ID, true
	case *RemoveGrant:
		byKey := s.grants[c.KeyID]
		if _, found := byKey[c.GrantID]; !found {
			return fmt.Errorf("%w: %s", ErrGrantNotFound, c.GrantID), true
		}
		delete(byKey, c.GrantID)
		if len(byKey) == 0 {
			delete(s.grants, c.KeyID)
		}
		return nil, true
	case *DeleteCredential:
		if _, found := s.creds[c.AccessKeyID]; !found {
			return fmt.Errorf("%w: %s", ErrCredNotFound, c.AccessKeyID), true
		}
		delete(s.creds, c.AccessKeyID)
		return nil, true
	case *PutPrincipal:
		if c.Principal.Arn == "" {
			return fmt.Errorf("%w: PutPrincipal without ARN", ErrBadCommand), true
		}
		p := c.Principal
		s.principals[p.Arn] = &p
		return nil, true
	}
	return nil, false
}

// Grant returns a grant of keyID by id.
func (n *Node) Grant(keyID, grantID string) (*Grant, bool) {
	n.st.mu.RLock()
	defer n.st.mu.RUnlock()
	g, ok := n.st.grants[keyID][grantID]
	return g, ok
}

// FindGrant returns a grant by id whatever its key.
func (n *Node) FindGrant(grantID string) (*Grant, bool) {
	n.st.mu.RLock()
	defer n.st.mu.RUnlock()
	for _, byKey := range n.st.grants {
		if g, ok := byKey[grantID]; ok {
			return g, true
		}
	}
	return nil, false
}

// GrantsFor calls fn for each grant of keyID whose grantee is principal,
// until fn returns true. Grants must not be modified.
func (n *Node) GrantsFor(keyID, principal string, fn func(g *Grant) bool) {
	n.st.mu.RLock()
	defer n.st.mu.RUnlock()
	for _, g := range n.st.grants[keyID] {
		if g.GranteePrincipal == principal && fn(g) {
			return
		}
	}
}

// ListGrants returns keyID's grants in id order (optionally only grantID or
// only those of grantee), up to limit after the id after, and whether more
// follow.
func (n *Node) ListGrants(keyID, grantID, grantee, after string, limit int) ([]*Grant, bool) {
	n.st.mu.RLock()
	var all []*Grant
	for _, g := range n.st.grants[keyID] {
		if (grantID == "" || g.ID == grantID) && (grantee == "" || g.GranteePrincipal == grantee) && g.ID > after {
			all = append(all, g)
		}
	}
	n.st.mu.RUnlock()
	return pageGrants(all, limit)
}

// ListRetirableGrants returns the grants whose retiring principal is p, in
// (key, id) order, after the marker "keyID/grantID", and whether more follow.
func (n *Node) ListRetirableGrants(p, after string, limit int) ([]*Grant, bool) {
	n.st.mu.RLock()
	var all []*Grant
	for _, byKey := range n.st.grants {
		for _, g := range byKey {
			if g.RetiringPrincipal == p && g.KeyID+"/"+g.ID > after {
				all = append(all, g)
			}
		}
	}
	n.st.mu.RUnlock()
	sort.Slice(all, func(i, j int) bool { return all[i].KeyID+"/"+all[i].ID < all[j].KeyID+"/"+all[j].ID })
	if len(all) > limit {
		return all[:limit], true
	}
	return all, false
}

func pageGrants(all []*Grant, limit int) ([]*Grant, bool) {
	sort.Slice(all, func(i, j int) bool { return all[i].ID < all[j].ID })
	if len(all) > limit {
		return all[:limit], true
	}
	return all, false
}

// Principal returns a principal record by ARN.
func (n *Node) Principal(arn string) (*Principal, bool) {
	n.st.mu.RLock()
	defer n.st.mu.RUnlock()
	p, ok := n.st.principals[arn]
	return p, ok
}
