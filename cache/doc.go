// Package cache keeps unwrapped secrets for a short, bounded time and
// forgets them on demand.
//
// agent keeps two caches of this one type: Decrypt results, keyed by a hash
// of (caller, ciphertext blob, encryption context), and, where a key opts
// in, data keys reused by GenerateDataKey under the AWS Encryption SDK's
// limits (MaxAge, MaxUses as its "max messages"). Each entry is owned by
// one KMS key; Purge(owner) makes every entry of that key unreachable at
// once, for DisableKey, ScheduleKeyDeletion, rotation and grant revocation.
//
// The cache is built on ristretto, whose sharp edges it hides: ristretto
// keeps only a hash of the key, so every entry carries its full key, which
// Get compares; ristretto may drop a Set, so correctness never depends on a
// hit; and ristretto applies Sets asynchronously, so tests call Wait after
// Set. Entries are bounded by MaxAge (by Config.Now), MaxUses and the total
// cost MaxBytes (key + value + a fixed per-entry overhead).
//
// # Concurrency
//
// Cache is safe for concurrent use, except that Close must not run
// concurrently with other calls; after Close every call is a harmless
// no-op. A Get concurrent with Purge may still return the purged entry;
// once Purge has returned, no Get returns an entry Set before Purge began.
//
// # Ownership
//
// Set copies key and value; Get returns a copy of the value, which the
// caller owns and should zero when done. The cache zeroes its own copy of a
// value when ristretto evicts or rejects it, when Get finds it expired,
// used up or purged, when Purge drops it, and on Close. Keys are lookup
// hashes, not secrets, and are not zeroed. Expired entries nobody asks for
// are zeroed by ristretto's TTL sweep, a few seconds after MaxAge.
//
// # Errors
//
// Only Config.Validate and New return errors, naming the offending field.
// A miss is not an error.
//
// # Imports
//
// Package cache is a leaf: it imports ristretto and no kmsd package
// (deps_test.go checks this).
package cache
