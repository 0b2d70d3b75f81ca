// Package batch coalesces concurrent HSM work so that one HSM operation
// serves many requests.
//
// A KMS ciphertext blob is rooted in the HSM through a batch key (DESIGN.md
// §4): the HSM seals a fresh 32-byte batch key under the KMS key's material,
// and Go's AES-GCM seals each request's plaintext under the batch key.
// NewKey hands one freshly sealed batch key to every request for the same
// key and material that is waiting when the HSM becomes free (group commit,
// as raft's leader loop does it): the first caller leads, takes what is
// queued up to MaxBatch, makes one HSM call, hands each waiter its share and
// passes the lead on. A lone request is a batch of one: there is no timer on
// the idle path. OpenKey does the same for Decrypt: callers that need the
// same sealed batch key share one HSM unseal.
//
// # Concurrency
//
// Batcher is safe for concurrent use. Batches of different groups (keys or
// material versions) run in parallel, bounded by the HSM pool.
//
// # Ownership
//
// Every returned batch key is the caller's own copy: the caller must zero
// it when done. The batcher zeroes its own copies.
//
// # Errors
//
// An HSM error fails the batch it belongs to (every waiter gets it); for
// OpenKey all waiters share identical input, so a bad blob fails alone. A
// caller whose context ends while it waits gets the context's error.
//
// Package batch must not import agent, cluster or cache.
package batch
