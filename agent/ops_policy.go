package agent

import (
	"github.com/kmsd/kmsd/cluster"
)

const policyNameDefault = "default"

type getKeyPolicyRequest struct {
	KeyId      *string `json:"KeyId"`
	PolicyName *string `json:"PolicyName"`
}

type getKeyPolicyResponse struct {
	Policy     string `json:"Policy"`
	PolicyName string `json:"PolicyName"`
}

type putKeyPolicyRequest struct {
	KeyId                          *string `json:"KeyId"`
	PolicyName                     *string `json:"PolicyName"`
	Policy                         *string `json:"Policy"`
	BypassPolicyLockoutSafetyCheck bool    `json:"BypassPolicyLockoutSafetyCheck"`
}

type listKeyPoliciesRequest struct {
	KeyId  *string `json:"KeyId"`
	Limit  *int64  `json:"Limit"`
	Marker *string `json:"Marker"`
}

type listKeyPoliciesResponse struct {
	PolicyNames []string `json:"PolicyNames"`
	NextMarker  string   `json:"NextMarker,omitempty"`
	Truncated   bool     `json:"Truncated"`
}

// checkPolicyName accepts the one policy name a key has.
func checkPolicyName(n *string) error {
	if n == nil {
		return nil
	}
	if len(*n) < 1 || len(*n) > 128 {
		return validationLength("policyName", 1, 128)
	}
	if *n != policyNameDefault {
		return apiErr(errNotFound, "No such policy exists: %s. A KMS key has one key policy, named default.", *n)
	}
	return nil
}

// checkKeyPolicy parses a key policy for CreateKey or PutKeyPolicy and,
// unless bypass, checks AWS's lockout safety rule: the caller must still be
// allowed to call PutKeyPolicy on the key afterwards.
func (s *Server) checkKeyPolicy(r *request, text, keyArn string, bypass bool) error {
	pol, err := compileKeyPolicy(text)
	if err != nil {
		return policyAPIError(err)
	}
	if bypass {
		return nil
	}
	const action = "kms:PutKeyPolicy"
	account := accountOf(r.principal)
	conds := map[string][]string{"aws:principalarn": {r.principal}, "kms:calleraccount": {account}}
	d, delegates := pol.check(r.principal, account, action, keyArn, conds)
	switch {
	case d == decisionAllow:
		return nil
	case d == decisionDeny || !delegates:
		return lockoutError
	case r.principal == s.rootArn():
		return nil
	}
	if id := s.identityPolicy(r.principal); id != nil {
		if d, _ := id.pol.check(r.principal, account, action, keyArn, conds); d == decisionAllow {
			return nil
		}
	}
	return lockoutError
}

var lockoutError = &APIError{Type: errMalformedPolicy, Status: 400,
	Message: "The new key policy will not allow you to update the key policy in the future."}

func opGetKeyPolicy(s *Server, r *request) (any, error) {
	var in getKeyPolicyRequest
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	if in.KeyId == nil {
		return nil, validationRequired("keyId")
	}
	k, err := s.resolveKey(*in.KeyId, false)
	if err != nil {
		return nil, err
	}
	if err := s.authorize(r, authReq{action: "GetKeyPolicy", key: k}); err != nil {
		return nil, err
	}
	if err := checkPolicyName(in.PolicyName); err != nil {
		return nil, err
	}
	return &getKeyPolicyResponse{Policy: k.Policy, PolicyName: policyNameDefault}, nil
}

func opPutKeyPolicy(s *Server, r *request) (any, error) {
	var in putKeyPolicyRequest
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	if in.KeyId == nil {
		return nil, validationRequired("keyId")
	}
	if in.Policy == nil {
		return nil, validationRequired("policy")
	}
	k, err := s.resolveKey(*in.KeyId, false)
	if err != nil {
		return nil, err
	}
	if err := s.authorize(r, authReq{action: "PutKeyPolicy", key: k}); err != nil {
		return nil, err
	}
	if err := checkPolicyName(in.PolicyName); err != nil {
		return nil, err
	}
	if err := s.checkKeyPolicy(r, *in.Policy, k.Arn, in.BypassPolicyLockoutSafetyCheck); err != nil {
		return nil, err
	}
	if _, err := s.apply(r.ctx, &cluster.SetKeyPolicy{KeyID: k.ID, Policy: *in.Policy}); err != nil {
		return nil, err
	}
	return struct{}{}, nil
}

func opListKeyPolicies(s *Server, r *request) (any, error) {
	var in listKeyPoliciesRequest
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	if in.KeyId == nil {
		return nil, validationRequired("keyId")
	}
	if _, err := pageLimit(in.Limit); err != nil {
		return nil, err
	}
	if _, err := checkMarker(in.Marker); err != nil {
		return nil, err
	}
	k, err := s.resolveKey(*in.KeyId, false)
	if err != nil {
		return nil, err
	}
	if err := s.authorize(r, authReq{action: "ListKeyPolicies", key: k}); err != nil {
		return nil, err
	}
	return &listKeyPoliciesResponse{PolicyNames: []string{policyNameDefault}}, nil
}
