// Package esdk reads and writes the AWS Encryption SDK message format,
// version 2 (key commitment), from its public specification
// (github.com/awslabs/aws-encryption-sdk-specification, data-format/).
//
// A message is a header (suite, message ID, encryption context, encrypted
// data keys, content type, frame length, commitment key), a header
// authentication tag, a framed body and, for signed suites, a footer with
// an ECDSA P-384 signature over everything before it. Two suites are
// written: SuiteCommitKey (0x0478, ALG_AES_256_GCM_HKDF_SHA512_COMMIT_KEY,
// the default) and SuiteCommitKeyECDSAP384 (0x0578). Both are read, framed
// or non-framed. Version 1 messages (no key commitment; nine suites,
// AES-128/192/256-GCM with no KDF, HKDF-SHA256 or HKDF-SHA384, two of them
// signed with ECDSA P-256 or P-384) are read with Limits.AllowUncommitted
// (the SDK's REQUIRE_ENCRYPT_ALLOW_DECRYPT policy) and refused without it
// (ErrUncommitted); they are never written.
//
// The package knows nothing of KMS: the caller supplies the plaintext data
// key (from GenerateDataKey or Decrypt of one of the header's encrypted
// data keys) and the package derives the message key with HKDF-SHA512
// (salt: message ID; info: suite ID || "DERIVEKEY") and checks the
// commitment key (info "COMMITKEY") before anything else.
//
// # Streaming
//
// A Reader holds one frame at a time and a Writer one batch of frames
// (256 KiB, or one frame if that is larger; two with Materials.Parallel),
// so memory is bounded whatever the message size. Frame buffers are
// pooled. Reader returns a frame's plaintext only after its tag verifies;
// for signed suites the signature is checked at the end, so a caller that
// must not act on unsigned data (a file written under a temporary name,
// say) waits for io.EOF. A Writer with Materials.Verify opens each batch
// again with a Reader of its own before writing it (ErrVerify).
//
// A Sealer writes a message of an unsigned suite whose plaintext length
// is known up front: its layout is then fixed, and Framers (one per
// goroutine) seal any window of whole frames straight into its place (a
// buffer written at its offset, or a mapped file), check it from where it
// lies (Materials.Verify) or from bytes read back (Framer.Check).
//
// # Concurrency
//
// Writer and Reader are not safe for concurrent use; distinct values are
// independent. A Writer with Materials.Parallel runs a second goroutine
// (checking, signing and writing), which Close or Abort ends. A Sealer is
// safe for concurrent use, its Framers are not. ParseHeader
// and the encoders are pure.
//
// # Ownership
//
// Data keys passed in are copied where kept and the copies zeroed on
// Close; the caller zeroes its own.
//
// # Errors
//
// Malformed input is ErrFormat, an authentication failure (header tag,
// frame tag, commitment, signature) is ErrAuth, an input beyond Limits is
// ErrLimit, a version or suite not implemented is ErrUnsupported, and a
// Writer's batch that does not read back (Materials.Verify) ErrVerify; all
// wrapped with %w and a message that says which field.
//
// Package esdk imports only the standard library.
package esdk
