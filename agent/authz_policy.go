package agent

import "github.com/kmsd/kmsd/agent/policy"

// The adapter between authorization and the policy language (agent/policy).

type decision = policy.Decision

const (
	decisionNone  = policy.NoMatch
	decisionAllow = policy.Allow
	decisionDeny  = policy.Deny
)

// compiledPolicy is a parsed key policy or identity policy.
type compiledPolicy struct{ p *policy.Policy }

func compileKeyPolicy(text string) (*compiledPolicy, error) {
	p, err := policy.Parse(text)
	if err != nil {
		return nil, err
	}
	return &compiledPolicy{p}, nil
}

func compileIdentityPolicy(text string) (*compiledPolicy, error) {
	p, err := policy.ParseIdentity(text)
	if err != nil {
		return nil, err
	}
	return &compiledPolicy{p}, nil
}

// check evaluates the policy for principal doing action on resource. A nil
// policy (one that no longer parses) decides nothing. account reports that
// an Allow naming the caller's account applies (a key policy delegating to
// identity policies).
func (c *compiledPolicy) check(principal, account, action, resource string, conds map[string][]string) (d decision, viaAccount bool) {
	if c == nil {
		return decisionNone, false
	}
	res := c.p.Check(&policy.Request{Principal: principal, Account: account, Action: action, Resource: resource, Context: conds})
	return res.Decision, res.Account
}

// policyAPIError turns a policy parse error into the API's error.
func policyAPIError(err error) error {
	if pe, ok := err.(*policy.Error); ok {
		return &APIError{Type: pe.Code, Message: pe.Message, Status: 400}
	}
	return apiErr(errMalformedPolicy, "%s", err.Error())
}
