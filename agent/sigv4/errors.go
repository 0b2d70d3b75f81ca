package sigv4

import "errors"

// Sentinels. The text of each is the message AWS sends for that class of
// failure; errors returned by Verify wrap one of them.
var (
	// ErrMissingAuth: no Authorization header and no X-Amz-Algorithm query
	// parameter (AWS: MissingAuthenticationTokenException).
	ErrMissingAuth = errors.New("Missing Authentication Token")
	// ErrIncomplete: malformed Authorization, missing or malformed date, bad
	// credential scope, wrong service or region, host not signed (AWS:
	// IncompleteSignatureException / InvalidSignatureException).
	ErrIncomplete = errors.New("incomplete signature")
	// ErrUnknownAccessKey: Lookup does not know the access key id (AWS:
	// UnrecognizedClientException).
	ErrUnknownAccessKey = errors.New("The security token included in the request is invalid.")
	// ErrSignatureMismatch: the signature does not verify, or the payload
	// hash header does not match the body (AWS: InvalidSignatureException).
	ErrSignatureMismatch = errors.New("The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.")
	// ErrExpired: the request date is more than MaxSkew away from now, or a
	// presigned URL has expired (AWS: InvalidSignatureException).
	ErrExpired = errors.New("Signature expired")
)

// authError carries an AWS-style message and the sentinel it belongs to.
type authError struct {
	msg  string
	kind error
}

func (e *authError) Error() string { return e.msg }
func (e *authError) Unwrap() error { return e.kind }

func incomplete(msg string) error { return &authError{msg: msg, kind: ErrIncomplete} }

// badScope is a well-formed credential scope that names another date,
// region or service: AWS answers InvalidSignatureException for these.
func badScope(msg string) error { return &authError{msg: msg, kind: ErrSignatureMismatch} }

// maxEcho bounds how much of the client's Authorization header an error
// message repeats.
const maxEcho = 256

// echo returns b as printable ASCII, truncated to maxEcho bytes.
func echo(b []byte) string {
	n := min(len(b), maxEcho)
	out := make([]byte, 0, n+3)
	for _, c := range b[:n] {
		if c < 0x20 || c > 0x7e {
			c = '?'
		}
		out = append(out, c)
	}
	if len(b) > maxEcho {
		out = append(out, "..."...)
	}
	return string(out)
}
