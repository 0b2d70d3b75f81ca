// Package quota enforces AWS KMS request quotas with token buckets.
//
// AWS KMS limits the requests per second an account may make, per quota:
// one shared quota for symmetric cryptographic operations, one for RSA and
// one for ECC operations, one per key pair spec for GenerateDataKeyPair, and
// one per management operation (KMS-NOTES §4). Each quota is independent:
// CreateKey is not slowed by CreateAlias, and the symmetric, RSA and ECC
// quotas add up. GroupFor names the buckets (a Group) a call counts
// against; DefaultRates gives AWS's default rates for a region; a Limiter
// keeps one token bucket per account and group and refuses what exceeds
// them. A cross-account call is charged to the caller's account.
//
// In a cluster each node enforces its share of the account's rate: with N
// live nodes the caller sets Share (or calls SetShare) to 1/N, and every
// bucket's rate and burst scale together.
//
// # Concurrency
//
// Limiter is safe for concurrent use. Allow takes a read lock and the
// buckets' own mutexes, and a write lock only to make a bucket on first use.
// It allocates nothing when a call counts against one group or is refused
// up front; a call against several groups allocates one reservation per
// group but the last, to give tokens back if a later group refuses.
// Buckets are never removed: their number is accounts times groups used.
//
// # Errors
//
// Allow returns an error wrapping ErrThrottled, naming the group that
// refused; agent maps it to ThrottlingException (HTTP 400) with AWS's
// message, which ErrThrottled carries verbatim. Config.Validate and New
// return errors naming the offending field.
//
// # Imports
//
// Package quota is a leaf: it must not import any other kmsd package
// (deps_test.go checks this).
package quota
