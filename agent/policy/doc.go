// Package policy parses and evaluates AWS KMS key policies (the IAM JSON
// policy language) without any I/O: Parse checks a document as KMS does
// and returns a *Policy; Evaluate decides one request against it.
//
// A key policy statement that names an account (arn:aws:iam::ACCOUNT:root
// or the bare account id) does not grant anything to that account's users
// and roles: it delegates to the account's identity (IAM) policies. Check
// reports this separately (Result.Account), so the caller can combine key
// policy, identity policies and grants the way AWS does: an explicit Deny
// anywhere wins; otherwise a request is allowed when the key policy allows
// the caller directly, or allows its account and an identity policy allows
// the caller. The account root itself is matched directly by an account
// principal. A caller from another account than the key's needs both: the
// key policy must allow it (directly or through its account) and its own
// identity policy must allow it too; the caller compares the accounts.
//
// Condition keys are case-insensitive; Request.Context must hold them
// lower-cased ("kms:encryptioncontext:dept", "aws:sourceip"). An absent key
// means "not in the request".
//
// # Concurrency
//
// A *Policy is immutable after Parse and safe for concurrent use. Evaluate
// and Check do not retain the Request.
//
// # Errors
//
// Parse returns *Error, whose Code is the AWS exception name
// (MalformedPolicyDocumentException, LimitExceededException or
// ValidationException) and whose message is shaped like AWS's. Evaluate
// never fails: a condition value that cannot be compared (a malformed
// number, date or address) simply does not match.
//
// # Imports
//
// Package policy imports only the standard library (deps_test.go checks
// this), so agent and cluster can both use it.
package policy
