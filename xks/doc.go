// Package xks speaks the AWS KMS External Key Store (XKS) Proxy API, version
// 1, on both sides: Server is an XKS proxy over AES-256 keys held as token
// objects in a PKCS#11 HSM (kmsd xks-proxy), and Client is what kmsd uses to
// call any XKS proxy for keys in an external key store. TokenKeys, the
// HSM-side half of the server, also serves kmsd's HSM key store (keys that
// live only as token objects labelled with the key ARN).
//
// The wire format, error names, SigV4 service name ("kms-xks-proxy") and the
// AAD construction follow the AWS specification
// (github.com/aws/aws-kms-xksproxy-api-spec, xks_proxy_api_spec.md).
//
// # Concurrency
//
// Server, Client and TokenKeys are safe for concurrent use once made. A
// Server's credentials may be replaced while it serves (SetCredentials).
//
// # Ownership
//
// Plaintext passed to Encrypt and returned by Decrypt belongs to the caller;
// the server zeroes the plaintext it decoded or produced after each request
// and never logs it. Key material never leaves the HSM: keys are created
// sensitive and non-extractable.
//
// # Errors
//
// The server answers every failure with the spec's {"errorName",
// "errorMessage"} body and status. The client returns *ProxyError for such
// answers, and errors wrapping ErrUnreachable (no TCP or TLS connection,
// timeout) or ErrInvalidResponse (anything it cannot interpret); agent/
// maps them to the KMS exceptions AWS uses. TokenKeys returns
// ErrKeyNotFound, ErrKeyExists, ErrAuthFailed or wrapped hsmpool/PKCS#11
// errors. Nothing in this package panics on any input.
//
// # Imports
//
// xks imports hsmpool, agent/sigv4 (to verify callers), fasthttp and the
// AWS SDK's v4 signer; it must not import agent or cluster.
package xks
