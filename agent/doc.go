// Package agent serves the AWS KMS API (JSON 1.1, SigV4) on fasthttp.
//
// A request is parsed (X-Amz-Target: TrentService.<Op>), authenticated
// with SigV4 against access keys held sealed in the replicated state,
// dispatched to an operation, and answered in AWS's wire shapes. Crypto
// operations read the node's applied state (no raft round trip) and use the
// HSM through hsmpool; metadata writes go through cluster.Node.Apply.
//
// # Concurrency
//
// Server is safe for concurrent use; every handler runs on its own
// goroutine and shares only the cluster node, the HSM pool and the
// credential cache, which are all safe for concurrent use.
//
// # Errors
//
// Lower packages return sentinel errors; apiErrorFrom is the one place that
// turns them into the API's error type (__type, message, HTTP status).
// Unknown errors become KMSInternalException and are logged. Messages never
// carry key material or secrets.
//
// Package agent may import cluster, hsmpool, batch, cache and quota; none of
// those may import agent.
package agent
