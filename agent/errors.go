package agent

import (
	"errors"
	"fmt"

	"github.com/kmsd/kmsd/agent/sigv4"
	"github.com/kmsd/kmsd/cluster"
	"github.com/kmsd/kmsd/hsmpool"
	"github.com/kmsd/kmsd/quota"
)

// APIError is the one error type the API sends: {"__type": Type,
// "message": Message} with HTTP status Status.
type APIError struct {
	Type    string
	Message string
	Status  int
}

func (e *APIError) Error() string { return e.Type + ": " + e.Message }

func apiErr(typ, format string, args ...any) *APIError {
	return &APIError{Type: typ, Message: fmt.Sprintf(format, args...), Status: 400}
}

// AWS error type names used by this package.
const (
	errValidation         = "ValidationException"
	errSerialization      = "SerializationException"
	errUnknownOperation   = "UnknownOperationException"
	errNotFound           = "NotFoundException"
	errDisabled           = "DisabledException"
	errInvalidState       = "KMSInvalidStateException"
	errInvalidCiphertext  = "InvalidCiphertextException"
	errIncorrectKey       = "IncorrectKeyException"
	errInvalidKeyUsage    = "InvalidKeyUsageException"
	errInternal           = "KMSInternalException"
	errUnsupported        = "UnsupportedOperationException"
	errLimitExceeded      = "LimitExceededException"
	errAlreadyExists      = "AlreadyExistsException"
	errInvalidArn         = "InvalidArnException"
	errInvalidMarker      = "InvalidMarkerException"
	errInvalidAliasName   = "InvalidAliasNameException"
	errTag                = "TagException"
	errMalformedPolicy    = "MalformedPolicyDocumentException"
	errDryRun             = "DryRunOperationException"
	errInvalidGrantToken  = "InvalidGrantTokenException"
	errDependencyTimeout  = "DependencyTimeoutException"
	errMissingAuth        = "MissingAuthenticationTokenException"
	errIncompleteSig      = "IncompleteSignatureException"
	errUnrecognizedClient = "UnrecognizedClientException"
	errInvalidSignature   = "InvalidSignatureException"
	errAccessDenied       = "AccessDeniedException"
	errThrottling         = "ThrottlingException"
)

// apiErrorFrom maps any error to the API error to send. It is the only
// place sentinels of lower packages become AWS error types. The second
// result reports whether the error was unexpected (and should be logged).
func apiErrorFrom(err error) (*APIError, bool) {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae, ae.Status >= 500
	}
	for _, m := range errorTable {
		if errors.Is(err, m.sentinel) {
			msg := m.message
			if msg == "" {
				msg = err.Error()
			}
			return &APIError{Type: m.typ, Message: msg, Status: m.status}, m.status >= 500
		}
	}
	return &APIError{Type: errInternal, Message: "The request was rejected because of an internal error.", Status: 500}, true
}

// errorTable lists every sentinel the agent knows, with the AWS error it
// becomes. An empty message means the error's own text is sent (sigv4 errors
// carry AWS's exact wording). Cluster errors that reach here unhandled by an
// operation get a generic message so no internal detail leaks.
var errorTable = []struct {
	sentinel error
	typ      string
	status   int
	message  string
}{
	{sigv4.ErrMissingAuth, errMissingAuth, 400, "Missing Authentication Token"},
	{sigv4.ErrIncomplete, errIncompleteSig, 400, ""},
	{sigv4.ErrUnknownAccessKey, errUnrecognizedClient, 400, "The security token included in the request is invalid."},
	{sigv4.ErrSignatureMismatch, errInvalidSignature, 400, ""},
	{sigv4.ErrExpired, errInvalidSignature, 400, ""},
	{quota.ErrThrottled, errThrottling, 400, "You have exceeded the rate at which you may call KMS. Reduce the frequency of your calls."},
	{hsmpool.ErrAuthFailed, errInvalidCiphertext, 400, "The ciphertext is invalid or was not made by this key."},
	{hsmpool.ErrExhausted, errInternal, 500, "No HSM session was free in time. Retry the request."},
	{hsmpool.ErrClosed, errInternal, 500, "The HSM is not available."},
	{hsmpool.ErrUnsupported, errInternal, 500, "This node's HSM does not support the key's mechanism."},
	{cluster.ErrNotLeader, errInternal, 500, "The cluster has no leader for metadata writes. Retry the request."},
	{cluster.ErrTimeout, errDependencyTimeout, 500, "The replicated state did not answer in time."},
	{cluster.ErrClosed, errInternal, 500, "The node is shutting down."},
	{cluster.ErrLimitExceeded, errLimitExceeded, 400, ""},
	{cluster.ErrKeyNotFound, errNotFound, 400, ""},
	{cluster.ErrAliasNotFound, errNotFound, 400, ""},
	{cluster.ErrAliasExists, errAlreadyExists, 400, ""},
	{cluster.ErrKeyExists, errAlreadyExists, 400, ""},
	{cluster.ErrInvalidState, errInvalidState, 400, ""},
}
