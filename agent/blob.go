package agent

import (
	"encoding/binary"
	"errors"
	"sort"
)

// Ciphertext blob, format 1 (README "Ciphertext blob"):
//
//	header  = 0x01 | len(keyID) (1 byte, 1..255) | keyID (ASCII) | material version (uint32 BE)
//	wrapped = iv(12) | HSM AES-256-GCM(material, batch key 32 bytes) | tag(16)   AAD = header
//	nonce   = 12 bytes
//	body    = Go AES-256-GCM(batch key, plaintext) | tag(16)   AAD = header | canonical context
//
// The HSM holds the root (the key material never leaves it); the batch key
// is fresh per batch (per request without batching) and never reaches disk.
const (
	blobFormat1    = 0x01
	batchKeyLen    = 32
	gcmIVLen       = 12
	gcmTagLen      = 16
	wrappedKeyLen  = gcmIVLen + batchKeyLen + gcmTagLen // 60
	blobMinSuffix  = wrappedKeyLen + gcmIVLen + gcmTagLen
	maxBlobKeyID   = 255
	maxCiphertext  = 6144
	maxPlaintext   = 4096
	maxDataKeySize = 1024
)

var errBadBlob = errors.New("agent: malformed ciphertext blob")

// blob is a parsed ciphertext blob. Its slices alias the input.
type blob struct {
	header  []byte
	keyID   string
	version uint32
	wrapped []byte // batch key sealed by the HSM
	nonce   []byte
	sealed  []byte // ciphertext | tag
}

// parseBlob splits b into its parts. It never panics; any malformed input
// gives errBadBlob.
func parseBlob(b []byte) (blob, error) {
	if len(b) < 2 || b[0] != blobFormat1 {
		return blob{}, errBadBlob
	}
	n := int(b[1])
	hlen := 2 + n + 4
	if n == 0 || len(b) < hlen+blobMinSuffix {
		return blob{}, errBadBlob
	}
	id := b[2 : 2+n]
	for _, c := range id {
		if c < 0x21 || c > 0x7e {
			return blob{}, errBadBlob
		}
	}
	p := blob{
		header:  b[:hlen],
		keyID:   string(id),
		version: binary.BigEndian.Uint32(b[2+n : hlen]),
	}
	rest := b[hlen:]
	p.wrapped, rest = rest[:wrappedKeyLen], rest[wrappedKeyLen:]
	p.nonce, p.sealed = rest[:gcmIVLen], rest[gcmIVLen:]
	return p, nil
}

// appendHeader appends a format-1 header for keyID and version to dst.
func appendHeader(dst []byte, keyID string, version uint32) []byte {
	dst = append(dst, blobFormat1, byte(len(keyID)))
	dst = append(dst, keyID...)
	return binary.BigEndian.AppendUint32(dst, version)
}

// appendContext appends the canonical form of an encryption context: the
// pair count, then each pair sorted by key, every string length-prefixed
// (uvarint) UTF-8. Two contexts are equal exactly when their forms are.
func appendContext(dst []byte, ctx map[string]string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(ctx)))
	if len(ctx) == 0 {
		return dst
	}
	var small [8]string
	keys := small[:0]
	for k := range ctx {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := ctx[k]
		dst = binary.AppendUvarint(dst, uint64(len(k)))
		dst = append(dst, k...)
		dst = binary.AppendUvarint(dst, uint64(len(v)))
		dst = append(dst, v...)
	}
	return dst
}
