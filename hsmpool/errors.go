package hsmpool

import (
	"errors"

	"github.com/miekg/pkcs11"
)

var (
	// ErrExhausted: no session became free before the caller's ctx was done.
	ErrExhausted = errors.New("hsmpool: no free HSM session before the deadline")
	// ErrClosed: the Pool has been closed.
	ErrClosed = errors.New("hsmpool: pool closed")
	// ErrAuthFailed: a sealed ciphertext or a wrapped key failed
	// authentication or is malformed.
	ErrAuthFailed = errors.New("hsmpool: ciphertext failed authentication")
	// ErrTokenNotFound: no initialized token matches the Config.
	ErrTokenNotFound = errors.New("hsmpool: token not found")
	// ErrLogin: the user PIN was rejected.
	ErrLogin = errors.New("hsmpool: login failed")
	// ErrNoDomainKey: the token holds no domain key (see EnsureDomainKey).
	ErrNoDomainKey = errors.New("hsmpool: domain key not found")
)

// errStale reports a cached unwrapped-key handle that belonged to a keeper
// session that has since been re-opened. It is always retried.
var errStale = errors.New("hsmpool: stale key handle")

// rv returns the PKCS#11 return value inside err, if any.
func rv(err error) (uint, bool) {
	var e pkcs11.Error
	if errors.As(err, &e) {
		return uint(e), true
	}
	return 0, false
}

// sessionBad reports errors after which a session must be closed and
// opened again (and the user logged in again) before it is lent out.
func sessionBad(err error) bool {
	code, ok := rv(err)
	if !ok {
		return false
	}
	switch code {
	case pkcs11.CKR_SESSION_HANDLE_INVALID,
		pkcs11.CKR_SESSION_CLOSED,
		pkcs11.CKR_DEVICE_REMOVED,
		pkcs11.CKR_TOKEN_NOT_PRESENT,
		pkcs11.CKR_USER_NOT_LOGGED_IN,
		pkcs11.CKR_OPERATION_ACTIVE,
		pkcs11.CKR_CRYPTOKI_NOT_INITIALIZED:
		return true
	}
	return false
}

// handleBad reports errors that mean a cached object handle is gone.
func handleBad(err error) bool {
	code, ok := rv(err)
	if !ok {
		return false
	}
	switch code {
	case pkcs11.CKR_KEY_HANDLE_INVALID,
		pkcs11.CKR_OBJECT_HANDLE_INVALID,
		pkcs11.CKR_WRAPPING_KEY_HANDLE_INVALID,
		pkcs11.CKR_UNWRAPPING_KEY_HANDLE_INVALID:
		return true
	}
	return false
}

// retryable reports errors for which a high-level operation is worth one
// more attempt: the pool has already repaired the session or dropped the
// handle that caused them.
func retryable(err error) bool {
	return errors.Is(err, errStale) || sessionBad(err) || handleBad(err)
}

// authFailure reports return values that mean "this ciphertext or wrapped
// key is not genuine". SoftHSM2 2.6 returns CKR_GENERAL_ERROR both for a
// GCM tag mismatch and for an RFC 3394/5649 integrity check failure, so the
// callers only consult this right after a successful *Init on the data's
// own operation.
func authFailure(err error) bool {
	code, ok := rv(err)
	if !ok {
		return false
	}
	switch code {
	case pkcs11.CKR_ENCRYPTED_DATA_INVALID,
		pkcs11.CKR_ENCRYPTED_DATA_LEN_RANGE,
		pkcs11.CKR_DATA_INVALID,
		pkcs11.CKR_DATA_LEN_RANGE,
		pkcs11.CKR_WRAPPED_KEY_INVALID,
		pkcs11.CKR_WRAPPED_KEY_LEN_RANGE,
		pkcs11.CKR_GENERAL_ERROR,
		pkcs11.CKR_FUNCTION_FAILED:
		return true
	}
	return false
}
