package policy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// MaxSize is the largest key policy document KMS accepts, in bytes (a quota
// that cannot be raised).
const MaxSize = 32768

// maxWireSize is the API model's length limit on the Policy parameter.
const maxWireSize = 131072

// Error codes, the AWS exception names Parse uses.
const (
	CodeMalformed     = "MalformedPolicyDocumentException"
	CodeLimitExceeded = "LimitExceededException"
	CodeValidation    = "ValidationException"
)

// Error is a rejected policy document. Code is the AWS exception name the
// API should answer with; Message is the text for the client.
type Error struct {
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Message }

func malformed(format string, args ...any) *Error {
	return &Error{Code: CodeMalformed, Message: fmt.Sprintf(format, args...)}
}

// Policy is a parsed policy document. It is immutable and safe for
// concurrent use.
type Policy struct {
	Version    string // "2012-10-17" or "2008-10-17"
	ID         string // the optional Id element
	identity   bool   // parsed by ParseIdentity: no Principal element
	vars       bool   // Version 2012-10-17: ${...} policy variables are expanded
	statements []statement
}

// Statements returns the number of statements.
func (p *Policy) Statements() int { return len(p.statements) }

type statement struct {
	sid          string
	deny         bool
	notPrincipal bool
	principals   []principal // nil for identity policies
	notAction    bool
	actions      []string // lower-cased patterns; nil: no Action element, the statement never applies
	notResource  bool
	resources    []string // patterns; nil: no Resource element, the statement never applies
	resourceVars bool     // some resource pattern holds ${...} policy variables
	conditions   []condition
}

type principalKind uint8

const (
	principalAny     principalKind = iota // "*" or {"AWS":"*"}
	principalAccount                      // arn:aws:iam::ACCOUNT:root or ACCOUNT
	principalARN                          // a user, role, assumed-role session or federated user
	principalService                      // {"Service": "cloudtrail.amazonaws.com"}
	principalOther                        // Federated, CanonicalUser: accepted, never matches a caller
)

type principal struct {
	kind    principalKind
	account string // principalAccount, principalARN
	arn     string // principalARN: the ARN as written; principalService: the service name
	role    string // principalARN naming a role: the role name (last path segment)
}

// Parse checks a key policy document as AWS KMS does and returns it parsed.
// Every statement must have a Principal or NotPrincipal. A statement
// without Action or Resource is accepted, as KMS accepts it, and never
// applies. Errors are *Error.
func Parse(doc string) (*Policy, error) { return parse(doc, false) }

// ParseIdentity parses an identity (IAM) policy: the same language without
// Principal elements, whose statements apply to whoever the policy is
// attached to.
func ParseIdentity(doc string) (*Policy, error) { return parse(doc, true) }

func parse(doc string, identity bool) (*Policy, error) {
	if err := checkWire(doc); err != nil {
		return nil, err
	}
	if len(doc) > MaxSize {
		return nil, &Error{Code: CodeLimitExceeded, Message: fmt.Sprintf("Policy document is %d bytes; the key policy size quota is %d bytes.", len(doc), MaxSize)}
	}
	dec := json.NewDecoder(strings.NewReader(doc))
	dec.UseNumber()
	var top map[string]json.RawMessage
	if err := dec.Decode(&top); err != nil || top == nil {
		return nil, malformed("The policy is not valid JSON: %s", jsonErr(err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, malformed("The policy is not valid JSON: unexpected data after the top-level object.")
	}
	if err := checkDuplicates(json.NewDecoder(strings.NewReader(doc)), 0); err != nil {
		return nil, err
	}
	p := &Policy{Version: "2008-10-17", identity: identity}
	for k, v := range top {
		switch k {
		case "Version":
			s, ok := asString(v)
			if !ok || (s != "2012-10-17" && s != "2008-10-17") {
				return nil, malformed("The policy document version %s is not supported; use \"2012-10-17\".", compact(v))
			}
			p.Version = s
		case "Id":
			s, ok := asString(v)
			if !ok {
				return nil, malformed("Id must be a string.")
			}
			p.ID = s
		case "Statement":
		default:
			return nil, malformed("Policy contains an unknown element %q.", k)
		}
	}
	p.vars = p.Version == "2012-10-17"
	raw, ok := top["Statement"]
	if !ok {
		return nil, malformed("Policy is missing required element - 'Statement'.")
	}
	var list []json.RawMessage
	switch firstByte(raw) {
	case '{':
		list = []json.RawMessage{raw}
	case '[':
		if err := json.Unmarshal(raw, &list); err != nil {
			return nil, malformed("Statement must be an object or an array of objects.")
		}
	default:
		return nil, malformed("Statement must be an object or an array of objects.")
	}
	if len(list) == 0 {
		return nil, malformed("Policy must contain at least one statement.")
	}
	sids := map[string]bool{}
	for i, r := range list {
		st, err := parseStatement(r, identity, p.vars, i)
		if err != nil {
			return nil, err
		}
		if st.sid != "" {
			if sids[st.sid] {
				return nil, malformed("Statement IDs (SID) in a single policy must be unique.")
			}
			sids[st.sid] = true
		}
		p.statements = append(p.statements, st)
	}
	return p, nil
}

// checkWire applies the API model's constraints on the Policy parameter:
// length 1..131072 and the characters [\t\n\r\x20-\xFF].
func checkWire(doc string) error {
	const prefix = "1 validation error detected: Value at 'policy' failed to satisfy constraint: "
	if len(doc) == 0 {
		return &Error{Code: CodeValidation, Message: prefix + "Member must have length greater than or equal to 1"}
	}
	if len(doc) > maxWireSize {
		return &Error{Code: CodeValidation, Message: prefix + "Member must have length less than or equal to 131072"}
	}
	for _, r := range doc {
		if r == '\t' || r == '\n' || r == '\r' || (r >= 0x20 && r <= 0xFF) {
			continue
		}
		return &Error{Code: CodeValidation, Message: prefix + `Member must satisfy regular expression pattern: [\u0009\u000A\u000D\u0020-\u00FF]+`}
	}
	return nil
}

func parseStatement(raw json.RawMessage, identity, vars bool, i int) (statement, error) {
	var st statement
	var m map[string]json.RawMessage
	if firstByte(raw) != '{' || json.Unmarshal(raw, &m) != nil {
		return st, malformed("Statement %d must be an object.", i)
	}
	var hasEffect, hasPrincipal bool
	for k, v := range m {
		var err error
		switch k {
		case "Sid":
			s, ok := asString(v)
			if !ok {
				return st, malformed("Sid must be a string.")
			}
			st.sid = s
		case "Effect":
			s, _ := asString(v)
			switch s {
			case "Allow":
			case "Deny":
				st.deny = true
			default:
				return st, malformed("Effect must be \"Allow\" or \"Deny\", not %s.", compact(v))
			}
			hasEffect = true
		case "Principal", "NotPrincipal":
			if identity {
				return st, malformed("Policy document should not specify a principal.")
			}
			if hasPrincipal {
				return st, malformed("Statement cannot have both Principal and NotPrincipal.")
			}
			hasPrincipal = true
			st.notPrincipal = k == "NotPrincipal"
			st.principals, err = parsePrincipals(v)
		case "Action", "NotAction":
			if st.actions != nil {
				return st, malformed("Statement cannot have both Action and NotAction.")
			}
			st.notAction = k == "NotAction"
			st.actions, err = parseActions(v)
		case "Resource", "NotResource":
			if st.resources != nil {
				return st, malformed("Statement cannot have both Resource and NotResource.")
			}
			st.notResource = k == "NotResource"
			st.resources, err = parseResources(v)
			st.resourceVars = vars && hasVars(st.resources)
		case "Condition":
			st.conditions, err = parseConditions(v, vars)
		default:
			return st, malformed("Policy contains a statement with an unknown element %q.", k)
		}
		if err != nil {
			return st, err
		}
	}
	if !hasEffect {
		return st, malformed("Policy contains a statement with no Effect.")
	}
	if !identity && !hasPrincipal {
		return st, malformed("Policy contains a statement with no principal.")
	}
	return st, nil
}

func parsePrincipals(v json.RawMessage) ([]principal, error) {
	if s, ok := asString(v); ok {
		if s == "*" {
			return []principal{{kind: principalAny}}, nil
		}
		return nil, malformed("Policy contains a statement with one or more invalid principals.")
	}
	var m map[string]json.RawMessage
	if firstByte(v) != '{' || json.Unmarshal(v, &m) != nil || len(m) == 0 {
		return nil, malformed("Policy contains a statement with one or more invalid principals.")
	}
	var out []principal
	for k, raw := range m {
		vals, ok := stringList(raw)
		if !ok || len(vals) == 0 {
			return nil, malformed("Policy contains a statement with one or more invalid principals.")
		}
		for _, s := range vals {
			var pr principal
			switch k {
			case "AWS":
				pr, ok = parseAWSPrincipal(s)
			case "Service":
				pr, ok = principal{kind: principalService, arn: s}, s != "" && !strings.ContainsAny(s, "*?")
			case "Federated", "CanonicalUser":
				pr, ok = principal{kind: principalOther}, s != ""
			default:
				ok = false
			}
			if !ok {
				return nil, malformed("Policy contains a statement with one or more invalid principals.")
			}
			out = append(out, pr)
		}
	}
	return out, nil
}

// parseAWSPrincipal accepts "*", a 12-digit account id, and IAM/STS ARNs of
// an account root, user, role, assumed-role session or federated user.
// Wildcards inside an ARN are not allowed, as in AWS.
func parseAWSPrincipal(s string) (principal, bool) {
	if s == "*" {
		return principal{kind: principalAny}, true
	}
	if isAccountID(s) {
		return principal{kind: principalAccount, account: s}, true
	}
	a, ok := splitARN(s)
	if !ok || !isAccountID(a.account) || a.region != "" || strings.ContainsAny(s, "*?") {
		return principal{}, false
	}
	switch {
	case a.service == "iam" && a.resource == "root":
		return principal{kind: principalAccount, account: a.account}, true
	case a.service == "iam" && strings.HasPrefix(a.resource, "user/") && len(a.resource) > len("user/"):
		return principal{kind: principalARN, account: a.account, arn: s}, true
	case a.service == "iam" && strings.HasPrefix(a.resource, "role/") && len(a.resource) > len("role/"):
		name := a.resource[strings.LastIndexByte(a.resource, '/')+1:]
		if name == "" {
			return principal{}, false
		}
		return principal{kind: principalARN, account: a.account, arn: s, role: name}, true
	case a.service == "sts" && (strings.HasPrefix(a.resource, "assumed-role/") || strings.HasPrefix(a.resource, "federated-user/")):
		return principal{kind: principalARN, account: a.account, arn: s}, true
	}
	return principal{}, false
}

func parseActions(v json.RawMessage) ([]string, error) {
	vals, ok := stringList(v)
	if !ok {
		return nil, malformed("Action must be a string or an array of strings.")
	}
	out := make([]string, 0, len(vals))
	for _, a := range vals {
		if a != "*" {
			vendor, name, ok := strings.Cut(a, ":")
			if !ok || vendor == "" || name == "" {
				return nil, malformed("Actions/Conditions must be prefaced by a vendor, e.g., iam, sdb, ec2, etc. (%q)", a)
			}
			if strings.Contains(name, ":") {
				return nil, malformed("Actions/Condition can contain only one colon. (%q)", a)
			}
		}
		out = append(out, strings.ToLower(a))
	}
	return out, nil
}

func parseResources(v json.RawMessage) ([]string, error) {
	vals, ok := stringList(v)
	if !ok {
		return nil, malformed("Resource must be a string or an array of strings.")
	}
	for _, r := range vals {
		if r != "*" && !strings.HasPrefix(r, "arn:") {
			return nil, malformed("Resource %s must be in ARN format or \"*\".", r)
		}
	}
	if vals == nil {
		vals = []string{}
	}
	return vals, nil
}

// stringList decodes a string or an array of strings.
func stringList(v json.RawMessage) ([]string, bool) {
	if s, ok := asString(v); ok {
		return []string{s}, true
	}
	var list []string
	if firstByte(v) != '[' || json.Unmarshal(v, &list) != nil {
		return nil, false
	}
	return list, true
}

// scalarList decodes a condition value: a string, boolean or number, or an
// array of them, each as its JSON text (strings unquoted).
func scalarList(v json.RawMessage) ([]string, bool) {
	one := func(r json.RawMessage) (string, bool) {
		r = bytes.TrimSpace(r)
		switch firstByte(r) {
		case '"':
			return asString(r)
		case 't', 'f':
			var b bool
			if json.Unmarshal(r, &b) != nil {
				return "", false
			}
			return strconv.FormatBool(b), true
		case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
			var n json.Number
			if json.Unmarshal(r, &n) != nil {
				return "", false
			}
			return n.String(), true
		}
		return "", false
	}
	if firstByte(v) != '[' {
		s, ok := one(v)
		if !ok {
			return nil, false
		}
		return []string{s}, true
	}
	var list []json.RawMessage
	if json.Unmarshal(v, &list) != nil {
		return nil, false
	}
	out := make([]string, 0, len(list))
	for _, r := range list {
		s, ok := one(r)
		if !ok {
			return nil, false
		}
		out = append(out, s)
	}
	return out, true
}

func asString(v json.RawMessage) (string, bool) {
	if firstByte(v) != '"' {
		return "", false
	}
	var s string
	if json.Unmarshal(v, &s) != nil {
		return "", false
	}
	return s, true
}

func firstByte(v []byte) byte {
	v = bytes.TrimLeft(v, " \t\r\n")
	if len(v) == 0 {
		return 0
	}
	return v[0]
}

func compact(v json.RawMessage) string {
	var b bytes.Buffer
	if json.Compact(&b, v) != nil {
		return string(v)
	}
	return b.String()
}

func jsonErr(err error) string {
	if err == nil {
		return "the document is not a JSON object."
	}
	return err.Error()
}

func isAccountID(s string) bool {
	if len(s) != 12 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

type arn struct {
	partition, service, region, account, resource string
}

// splitARN splits arn:partition:service:region:account:resource; the
// resource may contain colons.
func splitARN(s string) (arn, bool) {
	var a arn
	rest, ok := strings.CutPrefix(s, "arn:")
	if !ok {
		return a, false
	}
	parts := [4]*string{&a.partition, &a.service, &a.region, &a.account}
	for _, p := range parts {
		i := strings.IndexByte(rest, ':')
		if i < 0 {
			return a, false
		}
		*p, rest = rest[:i], rest[i+1:]
	}
	a.resource = rest
	return a, a.partition != "" && a.service != ""
}

// maxDepth bounds the nesting checkDuplicates follows; a policy needs 6.
const maxDepth = 64

// checkDuplicates walks the next JSON value and refuses an object that
// names one element twice (encoding/json would silently keep the last).
// Syntax errors are left to the decoding that follows.
func checkDuplicates(dec *json.Decoder, depth int) error {
	if depth > maxDepth {
		return malformed("The policy nests JSON values more than %d deep.", maxDepth)
	}
	tok, err := dec.Token()
	if err != nil {
		return nil
	}
	switch tok {
	case json.Delim('{'):
		seen := map[string]bool{}
		for dec.More() {
			k, err := dec.Token()
			if err != nil {
				return nil
			}
			key, _ := k.(string)
			if seen[key] {
				return malformed("Policy contains a duplicate element %q.", key)
			}
			seen[key] = true
			if err := checkDuplicates(dec, depth+1); err != nil {
				return err
			}
		}
		dec.Token() // '}'
	case json.Delim('['):
		for dec.More() {
			if err := checkDuplicates(dec, depth+1); err != nil {
				return err
			}
		}
		dec.Token() // ']'
	}
	return nil
}
