package xks

import (
	"errors"
	"fmt"
)

// Sentinels.
var (
	// ErrKeyNotFound: no token key has that label (or external key id).
	ErrKeyNotFound = errors.New("xks: key not found")
	// ErrKeyExists: a token key with that label exists already.
	ErrKeyExists = errors.New("xks: key already exists")
	// ErrAuthFailed: a ciphertext, IV, tag or AAD did not authenticate.
	ErrAuthFailed = errors.New("xks: ciphertext failed authentication")
	// ErrUnreachable: the client could not reach the proxy (TCP, TLS, or no
	// answer before the deadline).
	ErrUnreachable = errors.New("xks: proxy unreachable")
	// ErrTimeout wraps ErrUnreachable: the proxy did not answer in time.
	ErrTimeout = fmt.Errorf("%w: timed out", ErrUnreachable)
	// ErrTLS wraps ErrUnreachable: no TLS connection could be made.
	ErrTLS = fmt.Errorf("%w: TLS handshake failed", ErrUnreachable)
	// ErrInvalidResponse: the proxy answered something the client cannot
	// interpret (no JSON error body, missing or malformed fields).
	ErrInvalidResponse = errors.New("xks: invalid response from the proxy")
)

// Error names of the XKS Proxy API specification.
const (
	ErrNameValidation           = "ValidationException"
	ErrNameInvalidState         = "InvalidStateException"
	ErrNameInvalidCiphertext    = "InvalidCiphertextException"
	ErrNameInvalidKeyUsage      = "InvalidKeyUsageException"
	ErrNameAuthenticationFailed = "AuthenticationFailedException"
	ErrNameAccessDenied         = "AccessDeniedException"
	ErrNameKeyNotFound          = "KeyNotFoundException"
	ErrNameInvalidURIPath       = "InvalidUriPathException"
	ErrNameThrottling           = "ThrottlingException"
	ErrNameUnsupported          = "UnsupportedOperationException"
	ErrNameDependencyTimeout    = "DependencyTimeoutException"
	ErrNameInternal             = "InternalException"
)

// errorStatus is the HTTP status the spec gives each error name.
var errorStatus = map[string]int{
	ErrNameValidation:           400,
	ErrNameInvalidState:         400,
	ErrNameInvalidCiphertext:    400,
	ErrNameInvalidKeyUsage:      400,
	ErrNameAuthenticationFailed: 401,
	ErrNameAccessDenied:         403,
	ErrNameKeyNotFound:          404,
	ErrNameInvalidURIPath:       404,
	ErrNameThrottling:           429,
	ErrNameUnsupported:          501,
	ErrNameDependencyTimeout:    503,
	ErrNameInternal:             500,
}

// ProxyError is an error answer of an XKS proxy: {"errorName",
// "errorMessage"} with an HTTP status.
type ProxyError struct {
	Status  int
	Name    string
	Message string
}

func (e *ProxyError) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("xks proxy: %d %s", e.Status, e.Name)
	}
	return fmt.Sprintf("xks proxy: %d %s: %s", e.Status, e.Name, e.Message)
}

// proxyErr makes the server's answer for name.
func proxyErr(name, format string, args ...any) *ProxyError {
	return &ProxyError{Status: errorStatus[name], Name: name, Message: printable(fmt.Sprintf(format, args...))}
}

// printable keeps what the spec allows in errorMessage: printable ASCII,
// under 512 characters.
func printable(s string) string {
	b := make([]byte, 0, min(len(s), 511))
	for i := 0; i < len(s) && len(b) < 511; i++ {
		c := s[i]
		if c < 0x20 || c > 0x7e {
			c = '?'
		}
		b = append(b, c)
	}
	return string(b)
}
