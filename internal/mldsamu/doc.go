// Package mldsamu verifies ML-DSA signatures of an external μ: FIPS 204
// Algorithm 8 (ML-DSA.Verify_internal) with μ given directly, for
// ML-DSA-44, ML-DSA-65 and ML-DSA-87.
//
// filippo.io/mldsa, which kmsd uses for keys and signing, can sign an
// external μ but verifies only messages; this package fills that gap and
// nothing more. It is written from the FIPS 204 text (plain arithmetic mod
// q, no Montgomery form) and is tested against filippo.io/mldsa signatures.
//
// Constant time: not attempted. Verification handles only public data (the
// public key, μ and the signature).
//
// Concurrency: Verify is safe for concurrent use; it keeps no state.
//
// Errors: Verify returns an error only for a malformed public key (a length
// that is not one of the three encodings) or a μ that is not 64 bytes. A
// signature that does not verify for any reason, including a wrong length
// or a malformed hint, is (false, nil). Nothing here panics on any input.
//
// Imports: the standard library only.
package mldsamu
