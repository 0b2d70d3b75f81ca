package sigv4

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"
)

const (
	algorithm         = "AWS4-HMAC-SHA256"
	scopeTerminator   = "aws4_request"
	unsignedPayload   = "UNSIGNED-PAYLOAD"
	amzDateLayout     = "20060102T150405Z"
	httpDateLayout    = "Mon, 02 Jan 2006 15:04:05 GMT" // RFC 1123 as HTTP sends it
	defaultService    = "kms"
	defaultMaxSkew    = 5 * time.Minute
	maxPresignExpires = 604800 // seconds; AWS's limit for X-Amz-Expires
)

// Lookup returns the secret access key for an access key id, or ok=false if
// the id is unknown. It is called once per verified request (after the cheap
// structural and clock checks) and must be safe for concurrent use. Verify
// copies the secret before retaining it.
type Lookup func(accessKeyID string) (secret []byte, ok bool)

// Verifier verifies SigV4-signed requests for one region and service. Zero
// values of the optional fields mean defaults. A Verifier must not be copied
// after first use; Verify is safe for concurrent use.
type Verifier struct {
	Region  string           // required; the only region accepted in the credential scope
	Service string           // "" = "kms"
	Lookup  Lookup           // required
	MaxSkew time.Duration    // 0 = 5 * time.Minute; allowed distance of the request date from Now
	Now     func() time.Time // nil = time.Now

	keys keyCache
}

// Result describes a request whose signature verified.
type Result struct {
	AccessKeyID  string    // from the credential scope
	Date         time.Time // signing time (X-Amz-Date), UTC
	SessionToken string    // X-Amz-Security-Token as sent, unvalidated; "" if absent
}

// Validate reports a configuration error, naming the field. Verify does not
// call it: a Verifier with no Lookup rejects every key, one with no Region
// rejects every scope.
func (v *Verifier) Validate() error {
	switch {
	case v.Region == "":
		return errors.New("sigv4: Verifier.Region is required")
	case v.Lookup == nil:
		return errors.New("sigv4: Verifier.Lookup is required")
	case v.MaxSkew < 0:
		return errors.New("sigv4: Verifier.MaxSkew must not be negative")
	}
	return nil
}

func (v *Verifier) service() string {
	if v.Service == "" {
		return defaultService
	}
	return v.Service
}

func (v *Verifier) maxSkew() time.Duration {
	if v.MaxSkew <= 0 {
		return defaultMaxSkew
	}
	return v.MaxSkew
}

func (v *Verifier) now() time.Time {
	if v.Now == nil {
		return time.Now()
	}
	return v.Now()
}

// authParams are views into one request's bytes; valid only during Verify.
type authParams struct {
	authz       []byte // Authorization header; nil for presigned requests
	presigned   bool
	credential  []byte
	signedHdrs  []byte
	signature   []byte
	amzDate     []byte // X-Amz-Date header or query parameter
	httpDate    []byte // Date header (fallback)
	contentHash []byte // X-Amz-Content-Sha256 header
	hasHash     bool
	token       []byte // X-Amz-Security-Token
	expires     []byte // X-Amz-Expires (presigned only)
}

// Verify checks the SigV4 signature of req. It returns the caller's identity
// on success. Errors wrap one of the package sentinels and carry the message
// AWS would send. Verify reads req (headers, URI, body) and does not modify
// it; it is safe for concurrent use and never panics.
func (v *Verifier) Verify(req *fasthttp.Request) (Result, error) {
	var p authParams
	p.scanHeaders(&req.Header)
	if len(p.authz) == 0 {
		if err := p.fromQuery(req.URI()); err != nil {
			return Result{}, err
		}
	} else if err := p.parseAuthorization(); err != nil {
		return Result{}, err
	}

	// Signing time.
	var t time.Time
	var amzDate [len(amzDateLayout)]byte
	switch {
	case len(p.amzDate) > 0:
		var ok bool
		if t, ok = parseAmzDate(p.amzDate); !ok {
			return Result{}, incomplete(fmt.Sprintf("Date must be in ISO-8601 'basic format'. Got '%s'. See http://en.wikipedia.org/wiki/ISO_8601", echo(p.amzDate)))
		}
		copy(amzDate[:], p.amzDate)
	case len(p.httpDate) > 0:
		var err error
		if t, err = time.Parse(httpDateLayout, string(p.httpDate)); err != nil {
			return Result{}, incomplete(fmt.Sprintf("Date must be in RFC 1123 format (%s). Got '%s'.", httpDateLayout, echo(p.httpDate)))
		}
		t = t.UTC()
		t.AppendFormat(amzDate[:0], amzDateLayout)
	default:
		// parseAuthorization reports a missing date together with missing
		// parameters; this is reached only by presigned requests.
		return Result{}, incomplete("Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.")
	}

	// Credential scope: AKID/yyyymmdd/region/service/aws4_request.
	akid, scope, err := v.checkScope(p.credential, amzDate[:])
	if err != nil {
		return Result{}, err
	}
	if !hasSignedHost(p.signedHdrs) {
		return Result{}, incomplete("'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.")
	}

	// Clock.
	now := v.now().UTC()
	skew := v.maxSkew()
	if p.presigned {
		if err := checkPresignExpiry(p.expires, t, now, skew); err != nil {
			return Result{}, err
		}
	} else if t.Before(now.Add(-skew)) {
		return Result{}, &authError{kind: ErrExpired, msg: fmt.Sprintf("Signature expired: %s is now earlier than %s (%s - %s)",
			string(amzDate[:]), now.Add(-skew).Format(amzDateLayout), now.Format(amzDateLayout), fmtSkew(skew))}
	}
	if t.After(now.Add(skew)) {
		return Result{}, &authError{kind: ErrExpired, msg: fmt.Sprintf("Signature not yet current: %s is still later than %s (%s + %s)",
			string(amzDate[:]), now.Add(skew).Format(amzDateLayout), now.Format(amzDateLayout), fmtSkew(skew))}
	}

	// Identity.
	if v.Lookup == nil || len(akid) == 0 {
		return Result{}, ErrUnknownAccessKey
	}
	id := string(akid)
	secret, ok := v.Lookup(id)
	if !ok {
		return Result{}, ErrUnknownAccessKey
	}

	// Payload.
	body := sha256.Sum256(req.Body())
	var bodyHex [2 * sha256.Size]byte
	hex.Encode(bodyHex[:], body[:])
	if p.hasHash && !bytes.Equal(p.contentHash, bodyHex[:]) {
		// Includes UNSIGNED-PAYLOAD and STREAMING-*: KMS signs its payload.
		return Result{}, ErrSignatureMismatch
	}

	// Signature.
	key := v.keys.get(id, scope, secret, v.Region, v.service())
	s := getScratch()
	defer putScratch(s)
	path := req.URI().PathOriginal()
	in := canonicalInput{
		req:        req,
		path:       path,
		query:      req.URI().QueryString(),
		presigned:  p.presigned,
		signedHdrs: p.signedHdrs,
		payload:    bodyHex[:],
		amzDate:    amzDate[:],
		scope:      scope,
	}
	match := hmac.Equal(s.signature(&key, &in), p.signature)
	if !match {
		// Some signers (botocore) sign the RFC 3986 dot-segment-removed,
		// slash-collapsed path while sending the path as is.
		if np, changed := normalizePath(path); changed {
			in.path = np
			match = hmac.Equal(s.signature(&key, &in), p.signature)
		}
	}
	clear(key[:])
	if !match {
		return Result{}, ErrSignatureMismatch
	}
	res := Result{AccessKeyID: id, Date: t}
	if len(p.token) > 0 {
		res.SessionToken = string(p.token)
	}
	return res, nil
}

// scanHeaders picks the authentication headers in one pass. Names are matched
// case-insensitively so servers that disable header-name normalising work too.
func (p *authParams) scanHeaders(h *fasthttp.RequestHeader) {
	for k, val := range h.All() {
		switch {
		case eqFold(k, "Authorization"):
			if p.authz == nil {
				p.authz = val
			}
		case eqFold(k, "X-Amz-Date"):
			p.amzDate = val
		case eqFold(k, "Date"):
			p.httpDate = val
		case eqFold(k, "X-Amz-Content-Sha256"):
			p.contentHash, p.hasHash = val, true
		case eqFold(k, "X-Amz-Security-Token"):
			p.token = val
		}
	}
}

// parseAuthorization splits
// "AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...".
func (p *authParams) parseAuthorization() error {
	h := p.authz
	algo, rest, _ := bytes.Cut(trimSpace(h), []byte{' '})
	if string(algo) != algorithm {
		return incomplete(fmt.Sprintf("Unsupported Authorization type '%s': only %s is supported. Authorization=%s", echo(algo), algorithm, echo(h)))
	}
	for len(rest) > 0 {
		var part []byte
		part, rest, _ = bytes.Cut(rest, []byte{','})
		part = trimSpace(part)
		if len(part) == 0 {
			continue
		}
		k, val, ok := bytes.Cut(part, []byte{'='})
		if !ok {
			return incomplete(fmt.Sprintf("'%s' not a valid key=value pair (missing equal-sign) in Authorization header: '%s'.", echo(part), echo(h)))
		}
		switch string(trimSpace(k)) {
		case "Credential":
			p.credential = trimSpace(val)
		case "SignedHeaders":
			p.signedHdrs = trimSpace(val)
		case "Signature":
			p.signature = trimSpace(val)
		}
	}
	if len(p.credential) > 0 && len(p.signature) > 0 && len(p.signedHdrs) > 0 && (len(p.amzDate) > 0 || len(p.httpDate) > 0) {
		return nil
	}
	var msg []byte
	if len(p.credential) == 0 {
		msg = append(msg, "Authorization header requires 'Credential' parameter. "...)
	}
	if len(p.signature) == 0 {
		msg = append(msg, "Authorization header requires 'Signature' parameter. "...)
	}
	if len(p.signedHdrs) == 0 {
		msg = append(msg, "Authorization header requires 'SignedHeaders' parameter. "...)
	}
	if len(p.amzDate) == 0 && len(p.httpDate) == 0 {
		msg = append(msg, "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. "...)
	}
	msg = append(msg, "Authorization="...)
	msg = append(msg, echo(h)...)
	return incomplete(string(msg))
}

// fromQuery reads presigned-URL parameters, or reports ErrMissingAuth when
// there are none.
func (p *authParams) fromQuery(u *fasthttp.URI) error {
	if !bytes.Contains(u.QueryString(), []byte("X-Amz-Algorithm")) {
		return ErrMissingAuth
	}
	args := u.QueryArgs()
	if !args.Has("X-Amz-Algorithm") {
		return ErrMissingAuth
	}
	p.presigned = true
	p.credential = args.Peek("X-Amz-Credential")
	p.signedHdrs = args.Peek("X-Amz-SignedHeaders")
	p.signature = args.Peek("X-Amz-Signature")
	p.amzDate = args.Peek("X-Amz-Date")
	p.expires = args.Peek("X-Amz-Expires")
	if tok := args.Peek("X-Amz-Security-Token"); len(tok) > 0 {
		p.token = tok
	}
	if algo := args.Peek("X-Amz-Algorithm"); string(algo) != algorithm {
		return incomplete(fmt.Sprintf("X-Amz-Algorithm only supports \"%s\"", algorithm))
	}
	if len(p.credential) == 0 || len(p.signedHdrs) == 0 || len(p.signature) == 0 || len(p.amzDate) == 0 || len(p.expires) == 0 {
		return incomplete("AWS query-string parameters must include 'X-Amz-Algorithm', 'X-Amz-Credential', 'X-Amz-Signature', 'X-Amz-Date', 'X-Amz-SignedHeaders', and 'X-Amz-Expires'. Re-examine the query-string parameters.")
	}
	return nil
}

// checkScope validates the credential against the request date and the
// Verifier's region and service. It returns the access key id and the scope
// "yyyymmdd/region/service/aws4_request", both views into cred.
func (v *Verifier) checkScope(cred, amzDate []byte) (akid, scope []byte, err error) {
	var parts [5][]byte
	rest := cred
	for i := range 4 {
		var ok bool
		if parts[i], rest, ok = bytes.Cut(rest, []byte{'/'}); !ok {
			return nil, nil, incomplete(fmt.Sprintf("Credential should be of the form '<AccessKeyId>/<yyyymmdd>/<region>/<service>/aws4_request', not '%s'.", echo(cred)))
		}
	}
	parts[4] = rest
	akid, date, region, service, term := parts[0], parts[1], parts[2], parts[3], parts[4]
	scope = cred[len(akid)+1:]
	if string(term) != scopeTerminator {
		return nil, nil, incomplete(fmt.Sprintf("Credential should be scoped with a valid terminator: '%s', not '%s'.", scopeTerminator, echo(term)))
	}
	if !bytes.Equal(date, amzDate[:8]) {
		return nil, nil, badScope(fmt.Sprintf("Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '%s' != '%s', from '%s'.", echo(date), string(amzDate[:8]), string(amzDate)))
	}
	if string(region) != v.Region || v.Region == "" {
		return nil, nil, badScope("Credential should be scoped to a valid region.")
	}
	if string(service) != v.service() {
		return nil, nil, badScope(fmt.Sprintf("Credential should be scoped to correct service: '%s'.", v.service()))
	}
	return akid, scope, nil
}

func hasSignedHost(list []byte) bool {
	for len(list) > 0 {
		var name []byte
		name, list, _ = bytes.Cut(list, []byte{';'})
		if eqFold(name, "host") {
			return true
		}
	}
	return false
}

func checkPresignExpiry(expires []byte, t, now time.Time, skew time.Duration) error {
	n, err := strconv.ParseInt(string(expires), 10, 64)
	switch {
	case err != nil:
		return incomplete("X-Amz-Expires should be a number")
	case n < 0:
		return incomplete("X-Amz-Expires must be non-negative")
	case n > maxPresignExpires:
		return incomplete("X-Amz-Expires must be less than a week (in seconds) that is 604800")
	}
	if now.After(t.Add(time.Duration(n) * time.Second)) {
		return &authError{kind: ErrExpired, msg: "Request has expired"}
	}
	return nil
}

func fmtSkew(d time.Duration) string {
	if d%time.Minute == 0 {
		return strconv.FormatInt(int64(d/time.Minute), 10) + " min."
	}
	return d.String() + "."
}

// parseAmzDate parses "yyyymmddThhmmssZ" without allocating.
func parseAmzDate(b []byte) (time.Time, bool) {
	if len(b) != len(amzDateLayout) || b[8] != 'T' || b[15] != 'Z' {
		return time.Time{}, false
	}
	num := func(s []byte) (int, bool) {
		n := 0
		for _, c := range s {
			if c < '0' || c > '9' {
				return 0, false
			}
			n = n*10 + int(c-'0')
		}
		return n, true
	}
	y, ok1 := num(b[0:4])
	mo, ok2 := num(b[4:6])
	d, ok3 := num(b[6:8])
	h, ok4 := num(b[9:11])
	mi, ok5 := num(b[11:13])
	s, ok6 := num(b[13:15])
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) {
		return time.Time{}, false
	}
	t := time.Date(y, time.Month(mo), d, h, mi, s, 0, time.UTC)
	// Reject out-of-range fields that time.Date would normalise.
	if t.Year() != y || int(t.Month()) != mo || t.Day() != d || t.Hour() != h || t.Minute() != mi || t.Second() != s {
		return time.Time{}, false
	}
	return t, true
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// eqFold reports whether b equals s ignoring ASCII case.
func eqFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		if lower(b[i]) != lower(s[i]) {
			return false
		}
	}
	return true
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + ('a' - 'A')
	}
	return c
}
