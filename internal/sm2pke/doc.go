// Package sm2pke is SM2 public-key encryption (GB/T 32918.4-2016, GM/T
// 0003.4-2012) on the sm2p256v1 curve, with the ciphertext in the ASN.1
// form AWS KMS takes and returns for SM2PKE (GM/T 0009-2012:
// SEQUENCE { INTEGER x1, INTEGER y1, OCTET STRING C3, OCTET STRING C2 },
// C1C3C2; what OpenSSL 3's pkeyutl -encrypt writes).
//
// github.com/emmansun/gmsm, which kmsd uses for SM2 keys, signatures and
// ECDH, has SM2 encryption too, but v0.30.1 gets two corner cases wrong:
// when the KDF output t is all zero (step A5) its retry reuses a public
// point it has already overwritten, producing a ciphertext nobody can
// decrypt, and its Decrypt refuses a ciphertext whose C2 (not t) is all
// zero. Both happen for about 1 in 256 one-byte plaintexts. This package
// does the same steps with gmsm's constant-time curve (sm2/sm2ec) and SM3,
// and tests the corner cases against OpenSSL.
//
// Constant time: the scalar multiplications are gmsm's constant-time
// ones; the C3 comparison is constant time; Decrypt reports every failure
// as the one ErrDecrypt.
//
// Concurrency: Encrypt and Decrypt are safe for concurrent use; they keep
// no state.
//
// Ownership: Decrypt's result belongs to the caller, who zeroes it.
//
// Imports: the standard library and gmsm's sm2/sm2ec and sm3.
package sm2pke
