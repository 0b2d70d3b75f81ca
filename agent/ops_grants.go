package agent

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"regexp"
	"strings"

	"github.com/google/uuid"

	"github.com/kmsd/kmsd/cluster"
)

type grantConstraintsWire struct {
	EncryptionContextSubset map[string]string `json:"EncryptionContextSubset,omitempty"`
	EncryptionContextEquals map[string]string `json:"EncryptionContextEquals,omitempty"`
}

type createGrantRequest struct {
	KeyId             *string               `json:"KeyId"`
	GranteePrincipal  *string               `json:"GranteePrincipal"`
	RetiringPrincipal *string               `json:"RetiringPrincipal"`
	Operations        []string              `json:"Operations"`
	Constraints       *grantConstraintsWire `json:"Constraints"`
	GrantTokens       []string              `json:"GrantTokens"`
	Name              *string               `json:"Name"`
	DryRun            bool                  `json:"DryRun"`
}

type createGrantResponse struct {
	GrantToken string `json:"GrantToken"`
	GrantId    string `json:"GrantId"`
}

type listGrantsRequest struct {
	Limit            *int64  `json:"Limit"`
	Marker           *string `json:"Marker"`
	KeyId            *string `json:"KeyId"`
	GrantId          *string `json:"GrantId"`
	GranteePrincipal *string `json:"GranteePrincipal"`
}

type listRetirableGrantsRequest struct {
	Limit             *int64  `json:"Limit"`
	Marker            *string `json:"Marker"`
	RetiringPrincipal *string `json:"RetiringPrincipal"`
}

type grantListEntry struct {
	KeyId             string                `json:"KeyId"`
	GrantId           string                `json:"GrantId"`
	Name              string                `json:"Name,omitempty"`
	CreationDate      epoch                 `json:"CreationDate"`
	GranteePrincipal  string                `json:"GranteePrincipal"`
	RetiringPrincipal string                `json:"RetiringPrincipal,omitempty"`
	IssuingAccount    string                `json:"IssuingAccount"`
	Operations        []string              `json:"Operations"`
	Constraints       *grantConstraintsWire `json:"Constraints,omitempty"`
}

type listGrantsResponse struct {
	Grants     []grantListEntry `json:"Grants"`
	NextMarker string           `json:"NextMarker,omitempty"`
	Truncated  bool             `json:"Truncated"`
}

type retireGrantRequest struct {
	GrantToken *string `json:"GrantToken"`
	KeyId      *string `json:"KeyId"`
	GrantId    *string `json:"GrantId"`
	DryRun     bool    `json:"DryRun"`
}

type revokeGrantRequest struct {
	KeyId   *string `json:"KeyId"`
	GrantId *string `json:"GrantId"`
	DryRun  bool    `json:"DryRun"`
}

// grantOperations is the API model's GrantOperation enum.
var grantOperations = []string{"Decrypt", "Encrypt", "GenerateDataKey", "GenerateDataKeyWithoutPlaintext",
	"ReEncryptFrom", "ReEncryptTo", "Sign", "Verify", "GetPublicKey", "CreateGrant", "RetireGrant", "DescribeKey",
	"GenerateDataKeyPair", "GenerateDataKeyPairWithoutPlaintext", "GenerateMac", "VerifyMac", "DeriveSharedSecret"}

// grantOpsFor lists the grant operations a key supports (the guide: any
// other is ValidationException).
func grantOpsFor(k *cluster.Key) map[string]bool {
	ops := map[string]bool{"CreateGrant": true, "RetireGrant": true, "DescribeKey": true}
	add := func(names ...string) {
		for _, n := range names {
			ops[n] = true
		}
	}
	switch {
	case k.KeySpec == specSymmetricDefault:
		add("Decrypt", "Encrypt", "GenerateDataKey", "GenerateDataKeyWithoutPlaintext", "ReEncryptFrom", "ReEncryptTo",
			"GenerateDataKeyPair", "GenerateDataKeyPairWithoutPlaintext")
	case strings.HasPrefix(k.KeySpec, "HMAC_"):
		add("GenerateMac", "VerifyMac")
	case k.KeyUsage == "SIGN_VERIFY":
		add("Sign", "Verify", "GetPublicKey")
	case k.KeyUsage == "KEY_AGREEMENT":
		add("DeriveSharedSecret", "GetPublicKey")
	case k.KeyUsage == usageEncryptDecrypt:
		add("Encrypt", "Decrypt", "ReEncryptFrom", "ReEncryptTo", "GetPublicKey")
	}
	return ops
}

var (
	principalPattern = regexp.MustCompile(`^[\w+=,.@:/-]+$`)
	grantNamePattern = regexp.MustCompile(`^[a-zA-Z0-9:/_-]+$`)
)

// checkPrincipal validates a grantee or retiring principal: an IAM or STS
// ARN, an account id, or a service principal.
func checkPrincipal(field, p string) error {
	if len(p) < 1 || len(p) > 256 {
		return validationLength(field, 1, 256)
	}
	if !principalPattern.MatchString(p) {
		return apiErr(errValidation, "1 validation error detected: Value '%s' at '%s' failed to satisfy constraint: Member must satisfy regular expression pattern: ^[\\w+=,.@:/-]+$", p, field)
	}
	switch {
	case len(p) == 12 && isDigits(p), strings.HasSuffix(p, ".amazonaws.com"):
		return nil
	case strings.HasPrefix(p, "arn:"):
		parts := strings.SplitN(p, ":", 6)
		if len(parts) == 6 && (parts[2] == "iam" || parts[2] == "sts") && len(parts[4]) == 12 && isDigits(parts[4]) && parts[5] != "" {
			return nil
		}
	}
	return apiErr(errValidation, "Invalid principal: %s is not an IAM or STS principal ARN, an account id or a service principal.", p)
}

// grantToken is what a grant token carries: enough for any node to know
// the grant exists (once it has applied Index). Grant tokens are not
// secret (AWS: "a unique, non-secret ... string").
type grantToken struct {
	GrantID string `json:"g"`
	KeyID   string `json:"k"`
	Index   uint64 `json:"i"`
}

const grantTokenPrefix = "kmsd1"

func makeGrantToken(t grantToken) string {
	b, _ := json.Marshal(t)
	return grantTokenPrefix + base64.RawURLEncoding.EncodeToString(b)
}

func parseGrantToken(s string) (grantToken, error) {
	var t grantToken
	rest, ok := strings.CutPrefix(s, grantTokenPrefix)
	if !ok {
		return t, apiErr(errInvalidGrantToken, "The grant token is not valid.")
	}
	b, err := base64.RawURLEncoding.DecodeString(rest)
	if err != nil || json.Unmarshal(b, &t) != nil || t.GrantID == "" || t.KeyID == "" {
		return t, apiErr(errInvalidGrantToken, "The grant token is not valid.")
	}
	return t, nil
}

func opCreateGrant(s *Server, r *request) (any, error) {
	var in createGrantRequest
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	if in.KeyId == nil {
		return nil, validationRequired("keyId")
	}
	if in.GranteePrincipal == nil {
		return nil, validationRequired("granteePrincipal")
	}
	if in.Operations == nil {
		return nil, validationRequired("operations")
	}
	if err := checkPrincipal("granteePrincipal", *in.GranteePrincipal); err != nil {
		return nil, err
	}
	retiring := ""
	if in.RetiringPrincipal != nil {
		if err := checkPrincipal("retiringPrincipal", *in.RetiringPrincipal); err != nil {
			return nil, err
		}
		retiring = *in.RetiringPrincipal
	}
	if len(in.Operations) == 0 {
		return nil, apiErr(errValidation, "1 validation error detected: Value '[]' at 'operations' failed to satisfy constraint: Member must have length greater than or equal to 1")
	}
	for _, op := range in.Operations {
		if !oneOf(op, grantOperations) {
			return nil, validationEnum("operations", op, strings.Join(grantOperations, ", "))
		}
	}
	name := ""
	if in.Name != nil {
		name = *in.Name
		if len(name) < 1 || len(name) > 256 {
			return nil, validationLength("name", 1, 256)
		}
		if !grantNamePattern.MatchString(name) {
			return nil, apiErr(errValidation, "1 validation error detected: Value '%s' at 'name' failed to satisfy constraint: Member must satisfy regular expression pattern: ^[a-zA-Z0-9:/_-]+$", name)
		}
	}
	if err := checkGrantTokens(in.GrantTokens); err != nil {
		return nil, err
	}
	k, err := s.resolveKey(*in.KeyId, false)
	if err != nil {
		return nil, err
	}
	ops := grantOpsFor(k)
	for _, op := range in.Operations {
		if !ops[op] {
			return nil, apiErr(errValidation, "Grant operation %s is not valid for %s (KeySpec %s, KeyUsage %s).", op, k.Arn, k.KeySpec, k.KeyUsage)
		}
	}
	var equals, subset map[string]string
	constraintType := []string{}
	if in.Constraints != nil {
		if k.KeySpec != specSymmetricDefault {
			return nil, apiErr(errValidation, "Grant constraints are valid only for symmetric encryption KMS keys; %s is %s.", k.Arn, k.KeySpec)
		}
		if in.Constraints.EncryptionContextEquals != nil {
			if err := checkContext(in.Constraints.EncryptionContextEquals); err != nil {
				return nil, err
			}
			equals = in.Constraints.EncryptionContextEquals
			constraintType = append(constraintType, "EncryptionContextEquals")
		}
		if in.Constraints.EncryptionContextSubset != nil {
			if err := checkContext(in.Constraints.EncryptionContextSubset); err != nil {
				return nil, err
			}
			subset = in.Constraints.EncryptionContextSubset
			constraintType = append(constraintType, "EncryptionContextSubset")
		}
	}
	conds := map[string][]string{
		"kms:grantoperations":       in.Operations,
		"kms:granteeprincipal":      {*in.GranteePrincipal},
		"kms:grantisforawsresource": {"false"},
		"kms:grantconstrainttype":   constraintType,
	}
	if retiring != "" {
		conds["kms:retiringprincipal"] = []string{retiring}
	}
	if len(constraintType) == 0 {
		delete(conds, "kms:grantconstrainttype")
	}
	if err := s.authorize(r, authReq{action: "CreateGrant", key: k, grantTokens: in.GrantTokens, conds: conds}); err != nil {
		return nil, err
	}
	if err := s.checkKeyState(r.op, k); err != nil {
		return nil, err
	}
	if in.DryRun {
		return nil, dryRunOK
	}
	g := cluster.Grant{
		ID: uuid.NewString(), KeyID: k.ID, Name: name, GranteePrincipal: *in.GranteePrincipal,
		RetiringPrincipal: retiring, IssuingAccount: s.rootArn(), Operations: in.Operations,
		EncryptionContextEquals: equals, EncryptionContextSubset: subset, Created: s.cfg.Now().UnixNano(),
	}
	// The grant id is random, so it doubles as the token's uniqueness.
	v, err := s.apply(r.ctx, &cluster.CreateGrant{Grant: g})
	if errors.Is(err, cluster.ErrLimitExceeded) {
		return nil, apiErr(errLimitExceeded, "The request was rejected because %s has reached its quota of %d grants.", k.Arn, cluster.MaxGrantsPerKey)
	}
	if err != nil {
		return nil, err
	}
	id, _ := v.(string)
	if id == "" {
		id = g.ID
	}
	return &createGrantResponse{GrantId: id, GrantToken: makeGrantToken(grantToken{GrantID: id, KeyID: k.ID, Index: s.node.AppliedIndex()})}, nil
}

func (s *Server) grantEntry(g *cluster.Grant) grantListEntry {
	e := grantListEntry{
		KeyId: s.keyArn(g.KeyID), GrantId: g.ID, Name: g.Name, CreationDate: epoch(g.Created),
		GranteePrincipal: g.GranteePrincipal, RetiringPrincipal: g.RetiringPrincipal,
		IssuingAccount: g.IssuingAccount, Operations: g.Operations,
	}
	if g.EncryptionContextEquals != nil || g.EncryptionContextSubset != nil {
		e.Constraints = &grantConstraintsWire{EncryptionContextEquals: g.EncryptionContextEquals, EncryptionContextSubset: g.EncryptionContextSubset}
	}
	return e
}

// grantList is a ListGrants or ListRetirableGrants response; marker names
// the last grant for the next page.
func (s *Server) grantList(gs []*cluster.Grant, more bool, marker func(*cluster.Grant) string) *listGrantsResponse {
	out := &listGrantsResponse{Grants: make([]grantListEntry, 0, len(gs)), Truncated: more}
	for _, g := range gs {
		out.Grants = append(out.Grants, s.grantEntry(g))
	}
	if more {
		out.NextMarker = marker(gs[len(gs)-1])
	}
	return out
}

func checkMarker(m *string) (string, error) {
	if m == nil {
		return "", nil
	}
	if len(*m) < 1 || len(*m) > 1024 {
		return "", validationLength("marker", 1, 1024)
	}
	return *m, nil
}

func opListGrants(s *Server, r *request) (any, error) {
	var in listGrantsRequest
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	if in.KeyId == nil {
		return nil, validationRequired("keyId")
	}
	limit, err := pageLimit(in.Limit)
	if err != nil {
		return nil, err
	}
	after, err := checkMarker(in.Marker)
	if err != nil {
		return nil, err
	}
	grantID, grantee := "", ""
	if in.GrantId != nil {
		if len(*in.GrantId) < 1 || len(*in.GrantId) > 128 {
			return nil, validationLength("grantId", 1, 128)
		}
		grantID = *in.GrantId
	}
	if in.GranteePrincipal != nil {
		if err := checkPrincipal("granteePrincipal", *in.GranteePrincipal); err != nil {
			return nil, err
		}
		grantee = *in.GranteePrincipal
	}
	k, err := s.resolveKey(*in.KeyId, false)
	if err != nil {
		return nil, err
	}
	if err := s.authorize(r, authReq{action: "ListGrants", key: k, conds: map[string][]string{"kms:grantisforawsresource": {"false"}}}); err != nil {
		return nil, err
	}
	if after != "" {
		if _, ok := s.node.Grant(k.ID, after); !ok && !looksLikeKeyID(after) {
			return nil, apiErr(errInvalidMarker, "The marker %q is not one this service returned.", after)
		}
	}
	gs, more := s.node.ListGrants(k.ID, grantID, grantee, after, limit)
	return s.grantList(gs, more, func(g *cluster.Grant) string { return g.ID }), nil
}

func opListRetirableGrants(s *Server, r *request) (any, error) {
	var in listRetirableGrantsRequest
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	if in.RetiringPrincipal == nil {
		return nil, validationRequired("retiringPrincipal")
	}
	if err := checkPrincipal("retiringPrincipal", *in.RetiringPrincipal); err != nil {
		return nil, err
	}
	limit, err := pageLimit(in.Limit)
	if err != nil {
		return nil, err
	}
	after, err := checkMarker(in.Marker)
	if err != nil {
		return nil, err
	}
	if err := s.authorize(r, authReq{action: "ListRetirableGrants"}); err != nil {
		return nil, err
	}
	gs, more := s.node.ListRetirableGrants(*in.RetiringPrincipal, after, limit)
	return s.grantList(gs, more, func(g *cluster.Grant) string { return g.KeyID + "/" + g.ID }), nil
}

func opRetireGrant(s *Server, r *request) (any, error) {
	var in retireGrantRequest
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	var g *cluster.Grant
	switch {
	case in.GrantToken != nil:
		if len(*in.GrantToken) < 1 || len(*in.GrantToken) > 8192 {
			return nil, validationLength("grantToken", 1, 8192)
		}
		tok, err := parseGrantToken(*in.GrantToken)
		if err != nil {
			return nil, err
		}
		if tok.Index > s.node.AppliedIndex() {
			if err := s.node.WaitApplied(r.ctx, tok.Index); err != nil {
				return nil, err
			}
		}
		found, ok := s.node.Grant(tok.KeyID, tok.GrantID)
		if !ok {
			return nil, apiErr(errNotFound, "Grant %s does not exist.", tok.GrantID)
		}
		g = found
	case in.KeyId != nil && in.GrantId != nil:
		k, err := s.resolveKey(*in.KeyId, false)
		if err != nil {
			return nil, err
		}
		found, ok := s.node.Grant(k.ID, *in.GrantId)
		if !ok {
			return nil, apiErr(errNotFound, "Grant %s does not exist on %s.", *in.GrantId, k.Arn)
		}
		g = found
	default:
		return nil, apiErr(errValidation, "Specify either GrantToken, or both KeyId and GrantId.")
	}
	// Who may retire: the retiring principal, a grantee whose grant allows
	// RetireGrant, or the account that issued the grant.
	allowed := r.principal == g.RetiringPrincipal && g.RetiringPrincipal != "" ||
		r.principal == g.GranteePrincipal && grantHasOp(g, "RetireGrant") ||
		r.principal == g.IssuingAccount
	if !allowed {
		return nil, s.denied(r, "kms:RetireGrant", s.keyArn(g.KeyID), "because the caller is neither the grant's retiring principal, its grantee with RetireGrant, nor its issuing account")
	}
	if in.DryRun {
		return nil, dryRunOK
	}
	if _, err := s.apply(r.ctx, &cluster.RemoveGrant{KeyID: g.KeyID, GrantID: g.ID}); err != nil {
		if errors.Is(err, cluster.ErrGrantNotFound) {
			return nil, apiErr(errNotFound, "Grant %s does not exist.", g.ID)
		}
		return nil, err
	}
	return struct{}{}, nil
}

func opRevokeGrant(s *Server, r *request) (any, error) {
	var in revokeGrantRequest
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	if in.KeyId == nil {
		return nil, validationRequired("keyId")
	}
	if in.GrantId == nil {
		return nil, validationRequired("grantId")
	}
	if len(*in.GrantId) < 1 || len(*in.GrantId) > 128 {
		return nil, validationLength("grantId", 1, 128)
	}
	k, err := s.resolveKey(*in.KeyId, false)
	if err != nil {
		return nil, err
	}
	if err := s.authorize(r, authReq{action: "RevokeGrant", key: k, conds: map[string][]string{"kms:grantisforawsresource": {"false"}}}); err != nil {
		return nil, err
	}
	if _, ok := s.node.Grant(k.ID, *in.GrantId); !ok {
		return nil, apiErr(errNotFound, "Grant %s does not exist on %s.", *in.GrantId, k.Arn)
	}
	if in.DryRun {
		return nil, dryRunOK
	}
	if _, err := s.apply(r.ctx, &cluster.RemoveGrant{KeyID: k.ID, GrantID: *in.GrantId}); err != nil {
		if errors.Is(err, cluster.ErrGrantNotFound) {
			return nil, apiErr(errNotFound, "Grant %s does not exist on %s.", *in.GrantId, k.Arn)
		}
		return nil, err
	}
	return struct{}{}, nil
}
