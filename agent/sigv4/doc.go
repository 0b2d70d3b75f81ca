// Package sigv4 verifies AWS Signature Version 4 on incoming fasthttp requests.
//
// A [Verifier] checks the Authorization header (or, for presigned URLs, the
// X-Amz-* query parameters) the way AWS does, so that stock AWS SDKs and the
// AWS CLI can talk to kmsd with only their endpoint changed. The canonical
// request is rebuilt from the client's own SignedHeaders list; the package
// never decides which headers "should" have been signed beyond requiring host.
//
// # Concurrency
//
// Verify is safe for concurrent use by many goroutines. A Verifier must not be
// copied or have its fields changed after its first Verify call. It keeps a
// small bounded cache of derived signing keys keyed by access key id and
// date; an entry is used only when the secret Lookup returns is byte-equal to
// the one it was derived from, so rotating a secret takes effect at once.
//
// # Ownership
//
// Verify reads the request and does not modify it. The secret returned by
// Lookup is copied into the key cache; Lookup may reuse its slice afterwards.
//
// # Errors
//
// Every error Verify returns wraps exactly one of ErrMissingAuth,
// ErrIncomplete, ErrUnknownAccessKey, ErrSignatureMismatch or ErrExpired
// (use errors.Is), and its Error text is the message AWS would put in the
// response, so agent/ can pass it through unchanged. Messages may echo the
// client's Authorization header (truncated, as AWS does) but never contain a
// secret or a derived key. Verify never panics.
//
// # Imports
//
// sigv4 imports only the standard library and fasthttp. It must not import
// other kmsd packages or the AWS SDK (the SDK is used by tests only, as the
// reference signer); deps_test.go enforces this.
package sigv4
