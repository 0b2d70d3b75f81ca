package policy

import "strings"

// Decision is the outcome of evaluating a policy for one request.
type Decision uint8

const (
	// NoMatch: no statement allows or denies the request (an implicit
	// deny, unless another policy or a grant allows it).
	NoMatch Decision = iota
	// Allow: a statement allows the request and none denies it.
	Allow
	// Deny: a statement explicitly denies the request; nothing overrides it.
	Deny
)

func (d Decision) String() string {
	switch d {
	case Allow:
		return "Allow"
	case Deny:
		return "Deny"
	}
	return "NoMatch"
}

// Request is what a policy is evaluated against.
type Request struct {
	// Principal is the caller's ARN: arn:aws:iam::111122223333:root (the
	// account itself), :user/alice, :role/r, or an assumed-role session
	// arn:aws:sts::111122223333:assumed-role/r/session; or a service
	// principal name such as "cloudtrail.amazonaws.com".
	Principal string
	// Account is the caller's account id; if empty it is taken from
	// Principal.
	Account string
	// Action is the permission, "kms:Encrypt"; matched case-insensitively.
	Action string
	// Resource is the key ARN, or "*" for operations on no key (CreateKey,
	// ListKeys). In a key policy, Resource "*" means the key itself and
	// matches any Resource.
	Resource string
	// Context holds the condition keys, lower-cased, each with its values
	// (one for single-valued keys such as "kms:calleraccount", several for
	// "kms:encryptioncontextkeys"). An absent or empty entry means the key
	// is not in the request.
	Context map[string][]string
}

// Result is the detailed outcome of Check.
type Result struct {
	// Decision counts statements that name the caller directly: its ARN,
	// its role (for an assumed-role session), "*", or, for the account root
	// caller, its account. Deny also counts statements naming the caller's
	// account: they deny every principal of that account.
	Decision Decision
	// Account is true when, with no Deny, an Allow statement naming the
	// caller's account (arn:aws:iam::ACCOUNT:root or ACCOUNT) applies: the
	// key policy delegates the request to the account's identity policies,
	// so the request is allowed if one of those allows it.
	Account bool
	// Sid is the Sid of the statement that decided (the Deny, or the first
	// Allow), if it has one.
	Sid string
}

// Evaluate returns the key policy's decision for r; see Result.Decision.
// An Allow statement that names the caller's account (not the caller
// itself) does not make Evaluate return Allow: use Check or
// AllowsAccountRoot for that.
func (p *Policy) Evaluate(r *Request) Decision { return p.Check(r).Decision }

// AllowsAccountRoot reports whether an Allow statement naming the caller's
// account applies to r and no statement denies it: with the default key
// policy this is true for every caller of the key's account, and the
// request is then allowed if the caller's identity policy allows it.
func (p *Policy) AllowsAccountRoot(r *Request) bool {
	res := p.Check(r)
	return res.Decision != Deny && res.Account
}

// Check evaluates every statement against r: an applicable Deny wins at
// once; otherwise Allow if a statement naming the caller applies, and
// Account if one naming the caller's account applies. It does not
// allocate unless a policy variable must be expanded. A nil policy allows
// nothing; r must not be nil.
func (p *Policy) Check(r *Request) Result {
	if p == nil {
		return Result{}
	}
	c := parseCaller(r)
	var res Result
	for i := range p.statements {
		st := &p.statements[i]
		m := matchDirect
		if !p.identity {
			m = st.matchPrincipal(&c)
			if m == matchNone {
				continue
			}
		}
		if !st.matchAction(r.Action) || !st.matchResource(r) || !st.matchConditions(r.Context) {
			continue
		}
		if st.deny {
			return Result{Decision: Deny, Sid: st.sid}
		}
		switch m {
		case matchDirect:
			if res.Decision != Allow {
				res.Decision, res.Sid = Allow, st.sid
			}
		case matchAccount:
			res.Account = true
		}
	}
	return res
}

type principalMatch uint8

const (
	matchNone    principalMatch = iota
	matchAccount                // the statement names the caller's account
	matchDirect                 // the statement names the caller
)

// caller is the Request's principal, split once per evaluation.
type caller struct {
	arn       string
	account   string
	partition string
	root      bool   // arn:...:iam::ACCOUNT:root
	role      string // the role name of an assumed-role session
}

func parseCaller(r *Request) caller {
	c := caller{arn: r.Principal, account: r.Account}
	a, ok := splitARN(r.Principal)
	if !ok {
		return c
	}
	if c.account == "" {
		c.account = a.account
	}
	c.partition = a.partition
	switch {
	case a.service == "iam" && a.resource == "root":
		c.root = a.account == c.account
	case a.service == "sts" && strings.HasPrefix(a.resource, "assumed-role/"):
		rest := a.resource[len("assumed-role/"):]
		if i := strings.IndexByte(rest, '/'); i > 0 {
			c.role = rest[:i]
		}
	}
	return c
}

func (st *statement) matchPrincipal(c *caller) principalMatch {
	best := matchNone
	for i := range st.principals {
		if m := st.principals[i].match(c); m > best {
			best = m
		}
	}
	if !st.notPrincipal {
		return best
	}
	// NotPrincipal applies to every caller it does not name. An account
	// entry names only the account root, not the account's users.
	if best == matchDirect {
		return matchNone
	}
	return matchDirect
}

func (pr *principal) match(c *caller) principalMatch {
	switch pr.kind {
	case principalAny:
		return matchDirect
	case principalAccount:
		if c.account == "" || pr.account != c.account {
			return matchNone
		}
		if c.root {
			return matchDirect
		}
		return matchAccount
	case principalARN:
		if pr.arn == c.arn {
			return matchDirect
		}
		if pr.role != "" && c.role == pr.role && pr.account == c.account && strings.HasPrefix(pr.arn, "arn:"+c.partition+":") {
			return matchDirect
		}
	case principalService:
		if pr.arn == c.arn {
			return matchDirect
		}
	}
	return matchNone
}

func (st *statement) matchAction(action string) bool {
	if st.actions == nil {
		return false
	}
	hit := false
	for _, a := range st.actions {
		if a == "*" || globMatch(a, action, true) {
			hit = true
			break
		}
	}
	return hit != st.notAction
}

func (st *statement) matchResource(r *Request) bool {
	if st.resources == nil {
		return false
	}
	hit := false
	for _, pat := range st.resources {
		if st.resourceVars && strings.Contains(pat, "${") {
			exp, ok := expand(pat, r.Context, true)
			if !ok {
				continue
			}
			pat = exp
		}
		if pat == "*" || globMatch(pat, r.Resource, false) {
			hit = true
			break
		}
	}
	return hit != st.notResource
}

func (st *statement) matchConditions(ctx map[string][]string) bool {
	for i := range st.conditions {
		if !st.conditions[i].eval(ctx) {
			return false
		}
	}
	return true
}

// AddEncryptionContext puts a request's encryption context into a
// condition-key context: kms:encryptioncontext:<key> (key lower-cased, as
// condition keys are case-insensitive) with its value, and every key, as
// given, under kms:encryptioncontextkeys. An empty context adds nothing, so
// both keys are then absent, as in KMS.
func AddEncryptionContext(ctx map[string][]string, ec map[string]string) {
	for k, v := range ec {
		ck := "kms:encryptioncontext:" + strings.ToLower(k)
		ctx[ck] = append(ctx[ck], v)
		ctx["kms:encryptioncontextkeys"] = append(ctx["kms:encryptioncontextkeys"], k)
	}
}
