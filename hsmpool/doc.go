// Package hsmpool lends PKCS#11 sessions on one token to concurrent callers.
//
// A Pool opens a fixed number of sessions on one token, logs in once and
// lends them through Do. On top of Do it offers the few HSM operations kmsd
// needs: a non-extractable AES-256 domain key on the token
// (EnsureDomainKey), fresh AES-256 key material generated in the HSM and
// returned only wrapped by the domain key (GenerateWrappedKey), AES-256-GCM
// with such wrapped material (Seal, Open), and random bytes (Random). HMAC
// secrets (GenerateWrappedSecret, HMAC, VerifyHMAC) and RSA, EC and Ed25519
// key pairs (GenerateWrappedKeyPair, SignRSA, SignECDSA, SignEd25519,
// DecryptOAEP, DeriveECDH) are made in the HSM and kept the same way: only
// wrapped by the domain key outside it, unwrapped into cached
// non-extractable session objects for use. Supports reports which key pairs
// the token's mechanisms allow. A wrapped key carries no usage: the caller
// picks the operation and must enforce the key's usage itself.
// with such wrapped material (Seal, Open), and random bytes (Random).
// Between tokens with different domain keys it moves key material under
// RSA-OAEP only (rewrap.go: PeerTransportKey, ExportMaterial,
// ImportMaterial; multi-Region keys) and transfers the domain key itself
// (transfer.go).
// InitToken, TokenExists, FindSoftHSM and WriteSoftHSMConfig provision
// SoftHSM2 tokens for tests and single-node deployments.
//
// # Concurrency
//
// Every Pool method, and Do, is safe for concurrent use. Do waits for a free
// session at most until ctx is done. Pools in one process that name the
// same PKCS#11 library share one module context (C_Initialize runs once, and
// C_Finalize only when the last Pool, InitToken or TokenExists call on that
// library is done), so any number of Pools, on different tokens or on the
// same one, may live side by side.
//
// # Ownership
//
// A *Session is lent to the function given to Do and must not be used,
// stored or closed after that function returns. The Pool owns its sessions;
// if fn closes one, or the token logs out or resets, the Pool re-opens it
// (and logs in again) before lending it next. Key material unwrapped for
// Seal and Open lives in the HSM as non-extractable session objects held by
// a dedicated session that is never lent; their handles are cached
// (bounded by Config.MaxKeyHandles) and destroyed on eviction, Forget and
// Close. Plaintext key material never leaves the HSM; byte slices passed to
// Seal and returned by Open belong to the caller.
//
// # Errors
//
// Failures come back as one of the sentinels below, wrapped with %w and
// context, or as a wrapped pkcs11.Error. ErrExhausted means no session was
// free before ctx was done; it also wraps ctx's error. ErrAuthFailed covers
// every rejected ciphertext or wrapped key, whatever the HSM's return code.
// Error messages never carry key material, PINs or plaintext. Nothing in
// this package panics on any input.
//
// # Imports
//
// hsmpool imports only the standard library and github.com/miekg/pkcs11
// (deps_test.go enforces this). It reads no flags and no environment:
// SOFTHSM2_CONF is set by cmd/ (or hsmtest) before the first Pool is made.
package hsmpool
