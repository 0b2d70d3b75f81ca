// Package kmsplugin serves the Kubernetes KMS v2 gRPC API (k8s.io/kms) on
// top of any AWS-KMS-compatible endpoint, so that a kube-apiserver can
// encrypt Secrets with a kmsd key.
//
// Plugin implements k8s.io/kms/pkg/service.Service: Encrypt and Decrypt
// become AWS KMS Encrypt and Decrypt calls on one configured key (key id,
// key ARN, alias name or alias ARN) made through the AWS SDK for Go v2, so
// the plugin works against any kmsd node (or AWS KMS itself). GRPCServer
// returns a *grpc.Server with the service registered; Listen opens the unix
// socket the kube-apiserver dials.
//
// # Key ids and rotation
//
// The key_id reported by Encrypt and Status is "<key ARN>#<material id>",
// the material id being DescribeKey's CurrentKeyMaterialId. It changes when
// the KMS key rotates (automatically or with RotateKeyOnDemand) or when the
// alias is pointed at another key, which is what tells the kube-apiserver
// to rotate its DEK seeds. Encrypt uses a copy of it cached for Config.KeyIDTTL;
// Status always asks DescribeKey afresh and refreshes the cache, so the
// key_id Encrypt reports lags a rotation by at most the TTL (the ciphertext
// itself always uses the newest material; the lag only delays the
// apiserver's re-encryption). Decrypt never depends on the cache: every
// material version stays in the KMS key, so old ciphertexts keep
// decrypting after any number of rotations.
//
// Every ciphertext is bound to a fixed encryption context
// ({"kmsd.io/k8s-kms-plugin": "v2"}), so blobs made by other clients of the
// same key are not decryptable through the plugin and vice versa. The
// request uid is logged, never put in the context: the apiserver sends a
// different uid on Decrypt than it did on Encrypt.
//
// # Health
//
// Status answers healthz "ok" only when DescribeKey finds the key Enabled
// and a real Encrypt + Decrypt round trip through the endpoint succeeds, so
// it reflects the endpoint's HSM, raft state and credentials, not merely
// that the plugin process is up. Otherwise healthz carries the reason and
// the error is not returned as a gRPC failure (the apiserver shows healthz
// in its own /healthz output).
//
// # Errors
//
// Errors from the KMS endpoint come back as gRPC status errors: key state
// errors (DisabledException, KMSInvalidStateException, NotFoundException)
// as FailedPrecondition, bad ciphertexts as InvalidArgument, throttling as
// ResourceExhausted, transport failures and KMSInternalException as
// Unavailable. Messages carry the AWS error, never plaintext.
//
// # Concurrency
//
// Plugin is safe for concurrent use; the only shared mutable state is the
// cached key id, guarded by a mutex that is never held across a call.
//
// Package kmsplugin is a client of the KMS API, like bench: it must not
// import agent, cluster, hsmpool, batch or cache (deps_test.go keeps it so).
package kmsplugin
