package hsmpool

import (
	"crypto/aes"
	"encoding/binary"
	"errors"
)

// WrapPad is AES key wrap with padding (RFC 5649) of plaintext under kek,
// in Go. ImportKeyMaterial's OAEP fallback uses it to hand a decoded key to
// the HSM (which unwraps it); tests use it to wrap material the way a KMS
// client does.
func WrapPad(kek, plaintext []byte) ([]byte, error) {
	blk, err := aes.NewCipher(kek)
	if err != nil {
		return nil, err
	}
	if len(plaintext) == 0 {
		return nil, errors.New("hsmpool: key wrap of an empty plaintext")
	}
	var aiv [8]byte
	copy(aiv[:4], []byte{0xA6, 0x59, 0x59, 0xA6})
	binary.BigEndian.PutUint32(aiv[4:], uint32(len(plaintext)))
	p := make([]byte, (len(plaintext)+7)/8*8)
	defer clear(p)
	copy(p, plaintext)
	if len(p) == 8 {
		out := make([]byte, 16)
		copy(out, aiv[:])
		copy(out[8:], p)
		blk.Encrypt(out, out)
		return out, nil
	}
	n := len(p) / 8
	a := aiv
	var b [16]byte
	defer clear(b[:])
	for j := 0; j < 6; j++ {
		for i := 0; i < n; i++ {
			copy(b[:8], a[:])
			copy(b[8:], p[i*8:i*8+8])
			blk.Encrypt(b[:], b[:])
			t := uint64(n*j + i + 1)
			binary.BigEndian.PutUint64(a[:], binary.BigEndian.Uint64(b[:8])^t)
			copy(p[i*8:], b[8:])
		}
	}
	return append(a[:], p...), nil
}
