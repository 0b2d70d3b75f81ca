// Package audit writes kmsd's audit log: one JSON line per API request in
// the shape of an AWS CloudTrail event for KMS.
//
// The API server builds an Event per request (who, when, from where, the
// operation, its error) and fills requestParameters, responseElements and
// additionalEventData with RequestParameters, ResponseElements (then
// WithKeyARN) and AdditionalEventData, or (its hot path) with Event.SetCall,
// which writes the same bytes without building maps. They keep only what
// CloudTrail would record: an
// allowlist per operation generated from botocore's KMS model
// (allowlist.go; model_test.go holds the rule and keeps it current). No
// plaintext, ciphertext, data key, private key, message, signature, MAC,
// public key, import token or material, password, credential or grant
// token is ever recorded, and the filters never copy such values out of the
// body.
//
// Log hands the event to one writer goroutine through a bounded queue
// (Config.Buffer). The writer takes the first event blocking, drains what
// else is queued, encodes the lot and gives it to the sink in one write
// (group commit); it fsyncs every Config.SyncInterval when something was
// written, before a rotation, and on Close. The default sink appends to
// Dir/audit.log (mode 0600) and rotates it by size to
// Dir/audit-<UTC time>.log, keeping Config.MaxFiles rotated files.
//
// # Full or slow disk
//
// A failed write (ENOSPC, EIO) is counted in WriteErrors and retried, from
// the first byte the sink did not take, on the next event or after
// Config.RetryInterval; no record is lost or written twice by it. While the
// sink fails, encoded records wait in memory up to Config.MaxPendingBytes;
// then the writer stops taking events and the queue fills. What Log does
// with a full queue is Config.OnFull: Drop (the default) counts the event
// in Dropped and returns at once, so a full or stalled disk never slows a
// request; Block waits for room, so no event is lost and request latency
// absorbs the disk's, without bound if the disk stalls. Every event is
// either written (Written) or counted in Dropped, never lost silently.
//
// # Concurrency
//
// Log, Dropped, Written and WriteErrors are safe for concurrent use, and so
// is Close (once closed, Log counts events as dropped). All methods of a nil
// *Logger are no-ops, so the server can run without an audit log.
// RequestParameters, ResponseElements, AdditionalEventData and ReadOnly are
// pure functions.
//
// # Ownership
//
// Log takes ownership of the Event: the caller must not touch it afterwards.
// The filters' results share nothing with the body they read, which the
// caller may zero at once.
//
// # Errors
//
// Config.Validate and Open return errors naming the offending field. Close
// returns the sink's close error, or ErrCloseTimeout when the sink stalled
// beyond Config.CloseTimeout. Write and sync failures are counted, not
// returned.
//
// # Imports
//
// Package audit imports the standard library only and no other kmsd
// package (deps_test.go checks this); agent imports it.
package audit
