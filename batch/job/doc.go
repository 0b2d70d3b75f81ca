// Package job runs bulk envelope-encryption jobs: it encrypts files,
// directory trees or a stream into AWS Encryption SDK messages (package
// esdk) with data keys from KMS, decrypts them, and re-wraps their data
// keys to another KMS key without touching the payload.
//
// A job walks its input and hands files to parallel workers; each worker
// streams one file a batch of frames at a time (memory bounded by the
// batch and I/O buffers, whatever the file size); a file from 4 MiB, and
// a stream, is sealed in two stages on two goroutines. On Linux a regular
// file from 64 KiB under an unsigned suite is instead sealed through
// memory mappings: its output's size is reserved (fallocate) and frames
// go from the source's page cache straight into the output's, a window
// (8 MiB) at a time on up to two goroutines, each window unmapped when
// done; a fault on a mapping (a source truncated meanwhile) fails the
// file (runtime/debug.SetPanicOnFault), not the process. Data keys are reused across
// files within the AWS Encryption SDK caching limits (max age, messages,
// bytes); decrypt and re-wrap cache the data keys they open the same way.
// KMS calls go through a small interface (KMS) with retries: throttling
// backs off exponentially with full jitter, an unavailable endpoint gives
// way to the next.
//
// # Never lose data
//
// The source is only read. Each output is written under a temporary name
// in its final directory, synced, verified, and renamed. Encrypt verifies
// while writing: each batch of frames is opened again and compared with
// the source bytes before it is written (esdk Materials.Verify), each
// write is read back from the file and compared with the bytes written,
// and the file's size is checked. Through mappings, each batch is opened
// from the output's mapping (the file's page cache) and compared with the
// source's, so no separate read-back is needed. Re-wrap reads its output back and
// decrypts it. Decrypt only writes authenticated frames and fails unless
// the whole message verifies. A journal in the output directory records finished files;
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
// Package job imports esdk, x/sys/unix (syncfs, mmap, fallocate, madvise) and the standard library; it knows no SDK
// (cmd/kmsd adapts the AWS SDK for Go v2 to KMS).
package job
