package agent

import (
	"context"
	"maps"
	"strings"
	"sync"
	"time"

	"github.com/kmsd/kmsd/cluster"
)

// Authorization follows AWS KMS (Developer Guide, "Authentication and
// access control"): a request on a key is allowed when nothing denies it
// explicitly and
//   - the key policy allows the caller itself, or
//   - the key policy allows the caller's account (the account root, which
//     delegates to identity policies) and the caller's identity policy
//     allows the action (the account root needs none), or
//   - a grant on the key for the caller allows the operation and its
//     encryption-context constraints hold.
//
// Account-level actions (CreateKey, ListKeys, ...) have no key policy: the
// account root may do them, other principals when their identity policy
// allows them.

// authReq is what one request asks of one resource.
type authReq struct {
	action string       // the KMS action without "kms:", e.g. "Encrypt", "ReEncryptFrom"
	key    *cluster.Key // nil for account-level actions
	// resource is the ARN checked when key is nil ("" = "*").
	resource string
	// ec is the request's encryption context; ecOp says the operation takes
	// one (grant constraints apply only then).
	ec          map[string]string
	ecOp        bool
	grantTokens []string
	// conds adds request-specific condition keys (lower case).
	conds map[string][]string
}

// authCache keeps parsed policies: key policies by key id and identity
// policies by principal ARN, each with the text it was parsed from.
type authCache struct {
	mu   sync.Mutex
	keys map[string]*parsedPolicy
	ids  map[string]*parsedPolicy
}

type parsedPolicy struct {
	text string
	pol  *compiledPolicy
	// aliases reports whether the policy mentions kms:ResourceAliases, so
	// the key's aliases are looked up only when they matter.
	aliases bool
}

func (c *authCache) get(m *map[string]*parsedPolicy, id, text string, identity bool) *parsedPolicy {
	c.mu.Lock()
	defer c.mu.Unlock()
	if *m == nil {
		*m = map[string]*parsedPolicy{}
	}
	if p, ok := (*m)[id]; ok && p.text == text {
		return p
	}
	compile := compileKeyPolicy
	if identity {
		compile = compileIdentityPolicy
	}
	pol, err := compile(text)
	if err != nil {
		// A stored policy was checked when it was set; one that no longer
		// parses (an older build's) allows nothing.
		pol = nil
	}
	p := &parsedPolicy{text: text, pol: pol, aliases: strings.Contains(strings.ToLower(text), "kms:resourcealiases")}
	(*m)[id] = p
	return p
}

// forget drops parsed policies of keys that no longer exist.
func (c *authCache) forget(keyID string) {
	c.mu.Lock()
	delete(c.keys, keyID)
	c.mu.Unlock()
}

func (s *Server) rootArn() string { return "arn:" + s.partition + ":iam::" + s.cfg.AccountID + ":root" }

// accountOf returns the account id in a principal ARN
// (arn:aws:iam::111122223333:user/x), or "".
func accountOf(arn string) string {
	f, n := arnFields(arn)
	if n < 6 {
		return ""
	}
	return f[4]
}

// arnResource is what follows an ARN's fifth colon (the whole string
// when it has fewer), as the last of strings.SplitN(arn, ":", 6).
func arnResource(arn string) string {
	f, n := arnFields(arn)
	return f[n-1]
}

// arnFields splits arn as strings.SplitN(arn, ":", 6) does, without
// allocating; n is how many of f are set.
func arnFields(arn string) (f [6]string, n int) {
	for n < 5 {
		i := strings.IndexByte(arn, ':')
		if i < 0 {
			break
		}
		f[n], arn = arn[:i], arn[i+1:]
		n++
	}
	f[n] = arn
	return f, n + 1
}

// authorize returns nil when r's principal may do a, else
// AccessDeniedException in AWS's words.
func (s *Server) authorize(r *request, a authReq) error {
	if s.cfg.Audit != nil && a.key != nil && (len(r.resources) == 0 || r.resources[len(r.resources)-1] != a.key.Arn) {
		r.resources = append(r.resources, a.key.Arn)
	}
	root := s.rootArn()
	// The common case costs nothing: the account root on a key with the
	// default key policy (which allows the root everything).
	if r.principal == root && (a.key == nil || a.key.Policy == s.defaultPolicyText) {
		return nil
	}
	action := "kms:" + a.action
	resource := a.resource
	if a.key != nil {
		resource = a.key.Arn
	}
	if resource == "" {
		resource = "*"
	}
	identity := s.identityPolicy(r.principal)
	conds := s.conditions(r, a, identity)

	account := accountOf(r.principal)
	// Identity policy: the root needs none; others have theirs or nothing.
	idDecision := decisionAllow
	if r.principal != root {
		idDecision = decisionNone
		if identity != nil {
			idDecision, _ = identity.pol.check(r.principal, account, action, resource, conds)
		}
	}
	if idDecision == decisionDeny {
		return s.denied(r, action, resource, "with an explicit deny in an identity-based policy")
	}
	if a.key == nil {
		if idDecision == decisionAllow {
			return nil
		}
		return s.denied(r, action, resource, "because no identity-based policy allows the "+action+" action")
	}

	kp := s.authz.get(&s.authz.keys, a.key.ID, a.key.Policy, false)
	if kp.aliases {
		if _, ok := conds["kms:resourcealiases"]; !ok {
			conds = withResourceAliases(s, a.key, conds)
		}
	}
	kpDecision, delegates := kp.pol.check(r.principal, account, action, resource, conds)
	if kpDecision == decisionDeny {
		return s.denied(r, action, resource, "with an explicit deny in a resource-based policy")
	}
	if kpDecision == decisionAllow {
		return nil
	}
	// The key policy may delegate to the account's identity policies.
	if delegates && idDecision == decisionAllow && account == s.cfg.AccountID {
		return nil
	}
	if ok, err := s.grantAllows(r, a); err != nil {
		return err
	} else if ok {
		return nil
	}
	return s.denied(r, action, resource, "because no resource-based policy allows the "+action+" action")
}

func (s *Server) denied(r *request, action, resource, why string) error {
	return &APIError{Type: errAccessDenied, Status: 400,
		Message: "User: " + r.principal + " is not authorized to perform: " + action + " on resource: " + resource + " " + why}
}

func (s *Server) identityPolicy(principal string) *parsedPolicy {
	p, ok := s.node.Principal(principal)
	if !ok || p.Policy == "" {
		return nil
	}
	return s.authz.get(&s.authz.ids, principal, p.Policy, true)
}

// conditions builds the condition keys of a request (lower-case names).
func (s *Server) conditions(r *request, a authReq, identity *parsedPolicy) map[string][]string {
	c := make(map[string][]string, 8+len(a.ec)+len(a.conds))
	c["aws:principalarn"] = []string{r.principal}
	c["aws:principalaccount"] = []string{accountOf(r.principal)}
	c["kms:calleraccount"] = []string{accountOf(r.principal)}
	if ip := r.remoteIP(); ip != "" {
		c["aws:sourceip"] = []string{ip}
	}
	if r.viaService != "" {
		c["kms:viaservice"] = []string{r.viaService}
	}
	if r.alias != "" {
		c["kms:requestalias"] = []string{r.alias}
	}
	if a.key != nil {
		c["kms:keyspec"] = []string{a.key.KeySpec}
		c["kms:keyusage"] = []string{a.key.KeyUsage}
		c["kms:keyorigin"] = []string{a.key.Origin}
		if a.key.MultiRegion {
			c["kms:multiregion"] = []string{"true"}
			if a.key.MR != nil {
				c["kms:multiregionkeytype"] = []string{a.key.MR.Type}
			}
		} else {
			c["kms:multiregion"] = []string{"false"}
		}
	}
	if a.ecOp {
		keys := make([]string, 0, len(a.ec))
		for k, v := range a.ec {
			c["kms:encryptioncontext:"+strings.ToLower(k)] = []string{v}
			keys = append(keys, k)
		}
		if len(keys) > 0 {
			c["kms:encryptioncontextkeys"] = keys
		}
	}
	for k, v := range a.conds {
		c[k] = v
	}
	if identity != nil && identity.aliases && a.key != nil {
		c = withResourceAliases(s, a.key, c)
	}
	return c
}

func withResourceAliases(s *Server, k *cluster.Key, c map[string][]string) map[string][]string {
	aliases, _ := s.node.ListAliases(k.ID, "", cluster.MaxAliasesKey)
	if len(aliases) == 0 {
		return c
	}
	names := make([]string, len(aliases))
	for i, al := range aliases {
		names[i] = al.Name
	}
	c["kms:resourcealiases"] = names
	return c
}

// grantAllows reports whether a grant on a.key lets r's principal do
// a.action. Grant tokens name grants the node may not have applied yet: it
// waits (briefly) until it has, so a new grant works at once anywhere.
func (s *Server) grantAllows(r *request, a authReq) (bool, error) {
	for _, t := range a.grantTokens {
		tok, err := parseGrantToken(t)
		if err != nil {
			return false, err
		}
		if tok.Index > s.node.AppliedIndex() {
			wctx, cancel := context.WithTimeout(r.ctx, 5*time.Second)
			err := s.node.WaitApplied(wctx, tok.Index)
			cancel()
			if err != nil {
				return false, apiErr(errInvalidGrantToken, "The grant token is not valid yet on this node; retry the request.")
			}
		}
	}
	op := a.action
	found := false
	s.node.GrantsFor(a.key.ID, r.principal, func(g *cluster.Grant) bool {
		if !grantHasOp(g, op) {
			return false
		}
		if a.ecOp && !constraintsHold(g, a.ec) {
			return false
		}
		found = true
		return true
	})
	return found, nil
}

func grantHasOp(g *cluster.Grant, op string) bool {
	for _, o := range g.Operations {
		if o == op {
			return true
		}
	}
	return false
}

// constraintsHold checks a grant's encryption-context constraints against
// a request's context, case-sensitively as AWS does.
func constraintsHold(g *cluster.Grant, ec map[string]string) bool {
	if g.EncryptionContextEquals != nil && !maps.Equal(g.EncryptionContextEquals, ec) {
		return false
	}
	for k, v := range g.EncryptionContextSubset {
		if got, ok := ec[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// dryRunOpen answers a DryRun Decrypt or ReEncrypt: the real error the
// call would meet (malformed blob, wrong key, access, key state), else
// DryRunOperationException. Nothing is decrypted.
func (s *Server) dryRunOpen(r *request, a authReq, b []byte, want *cluster.Key) error {
	p, err := parseBlob(b)
	if err != nil {
		return invalidCiphertext
	}
	if want != nil && want.ID != p.keyID {
		return apiErr(errIncorrectKey, "The key ID in the request does not identify a KMS key that can perform this operation.")
	}
	k, ok := s.node.Key(p.keyID)
	if !ok {
		return invalidCiphertext
	}
	if a.action == "" {
		a.action = r.op
	}
	a.key = k
	if err := s.authorize(r, a); err != nil {
		return err
	}
	if err := s.checkKeyState(r.op, k); err != nil {
		return err
	}
	return dryRunOK
}
