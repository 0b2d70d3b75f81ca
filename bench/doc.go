// Package bench drives any KMS endpoint with an operation mix and reports
// throughput and latency.
//
// Run sends GenerateDataKey, Decrypt, Encrypt and
// GenerateDataKeyWithoutPlaintext requests, in the proportions of a Mix,
// through the AWS SDK for Go v2 (real SigV4, retries off) to one or more
// endpoints, and returns a Report: counts and throughput per operation,
// errors by AWS error code, and latency percentiles from an HdrHistogram
// (1 µs to 60 s, three significant digits). The same harness measures kmsd,
// a peer KMS, or IdealServer, the ideal twin: the same wire work as kmsd
// (JSON, base64, AES-256-GCM) with no HSM and no SigV4 check, which is the
// ceiling a run is compared with.
//
// # Load models
//
// Closed loop (Rate 0): Concurrency workers each send a request, wait for
// the answer and send the next. Latency is measured from the send.
//
// Open loop (Rate > 0): requests are due at a fixed schedule, Rate per
// second, and at most Concurrency are in flight. Latency is measured from
// the time a request was due, not the time it was sent, so a server that
// stalls is charged for the requests it kept waiting (the correction for
// coordinated omission).
//
// A run prepares the Decrypt pool first (DecryptPool blobs from
// GenerateDataKey, unmeasured), then warms up for Warmup (sent, not
// recorded), then measures for Duration. It stops by itself at the end of
// Duration or after MaxRequests, whichever comes first; requests in flight
// at the end are waited for and recorded.
//
// # Report
//
// Throughput is measured requests per second over the measured window.
// Latency percentiles count successful requests only; failed requests are
// counted under their AWS error code (smithy's ErrorCode, for example
// ThrottlingException) or "transport" when no AWS error came back.
// Report.WriteTable prints an aligned table; json.Marshal of a Report gives
// the stable field names documented on Report, OpReport and Latency.
//
// # Failover
//
// Worker i starts on endpoint i mod len(Endpoints). A transport error or an
// HTTP 5xx answer moves that worker to the next endpoint; the failed
// request is counted, not retried.
//
// # Commands
//
// cmd/kmsbench wraps Run. To compare kmsd with its ceiling on one machine:
//
//	bin/kmsbench --ideal --duration 10s
//	bin/kmsbench --endpoint http://127.0.0.1:4599 --credentials data/credentials --duration 10s
//
// # Concurrency
//
// Run may be called concurrently with different Configs. IdealServer is
// safe for concurrent use.
//
// Package bench is a client: it must not import kmsd's agent, cluster,
// hsmpool, batch or cache packages (deps_test.go keeps it so).
package bench
