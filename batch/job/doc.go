// Package job runs bulk envelope-encryption jobs: it encrypts files,
// directory trees or a stream into AWS Encryption SDK messages (package
// esdk) with data keys from KMS, decrypts them, and re-wraps their data
// keys to another KMS key without touching the payload.
//
// A job walks its input and hands files to parallel workers; each worker
// streams one file frame by frame (memory bounded by the frame length
// and I/O buffers, whatever the file size). Data keys are reused across
// files within the AWS Encryption SDK caching limits (max age, messages,
// bytes); decrypt and re-wrap cache the data keys they open the same way.
// KMS calls go through a small interface (KMS) with retries: throttling
// backs off exponentially with full jitter, an unavailable endpoint gives
// way to the next.
//
// # Never lose data
//
// The source is only read. Each output is written under a temporary name
// in its final directory, synced, verified (encrypt and re-wrap read it
// back and decrypt it, comparing with the source; decrypt only writes
// authenticated frames and fails unless the whole message verifies), and
// renamed. A journal in the output directory records finished files;
// Resume skips them after a crash or an interrupt. A finished job without
// failures removes its journal.
//
// # Concurrency
//
// A Job is used once, by one goroutine; it runs its own workers. Config.Progress
// is called from one goroutine.
//
// # Errors
//
// Run and Stream return an error only for the job as a whole; each failed
// file is a Failure (its path and why) in the Summary. Sentinels (ErrX)
// are wrapped with %w.
//
// Package job imports esdk, x/sys/unix (syncfs) and the standard library; it knows no SDK
// (cmd/kmsd adapts the AWS SDK for Go v2 to KMS).
package job
