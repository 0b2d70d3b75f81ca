package sm2pke

import (
	"crypto/ecdsa"
	"crypto/subtle"
	"encoding/asn1"
	"errors"
	"io"
	"math/big"

	"github.com/emmansun/gmsm/sm2/sm2ec"
	"github.com/emmansun/gmsm/sm3"
)

const (
	coordLen = 32 // bytes of a coordinate and of a scalar on sm2p256v1
	// maxTries bounds step A5's retries (t all zero: 2^-8 per plaintext
	// byte at worst).
	maxTries = 64
)

var (
	// ErrDecrypt: the ciphertext is malformed, its point is not on the
	// curve, or it does not decrypt under the key.
	ErrDecrypt = errors.New("sm2pke: ciphertext does not decrypt")
	// ErrKey: the key is not an SM2 key (or the private scalar is out of
	// range).
	ErrKey = errors.New("sm2pke: not an sm2p256v1 key")
)

// Encrypt encrypts msg (at least one byte) to pub, a point on
// sm2p256v1, and returns the ASN.1 DER ciphertext. random supplies the
// ephemeral scalars (crypto/rand.Reader in production).
func Encrypt(random io.Reader, pub *ecdsa.PublicKey, msg []byte) ([]byte, error) {
	curve := sm2ec.P256()
	if pub == nil || pub.Curve == nil || pub.Curve.Params().Name != curve.Params().Name || !curve.IsOnCurve(pub.X, pub.Y) {
		return nil, ErrKey
	}
	if len(msg) == 0 {
		return nil, errors.New("sm2pke: empty plaintext")
	}
	n := curve.Params().N
	k := make([]byte, coordLen)
	defer clear(k)
	for try := 0; try < maxTries; try++ {
		// A1: k in [1, n-1], by rejection sampling.
		if _, err := io.ReadFull(random, k); err != nil {
			return nil, err
		}
		if kn := new(big.Int).SetBytes(k); kn.Sign() == 0 || kn.Cmp(n) >= 0 {
			continue
		}
		// A2: C1 = [k]G. A4: (x2, y2) = [k]PB (h = 1, so A3 holds for
		// any point on the curve).
		x1, y1 := curve.ScalarBaseMult(k)
		x2, y2 := curve.ScalarMult(pub.X, pub.Y, k)
		z := point(x2, y2)
		// A5: t = KDF(x2 || y2, klen); all zero means another k.
		t := sm3.Kdf(z, len(msg))
		if allZero(t) {
			clear(z)
			continue
		}
		// A6: C2 = M xor t. A7: C3 = SM3(x2 || M || y2).
		subtle.XORBytes(t, msg, t)
		c3 := hashC3(z, msg)
		clear(z)
		return marshal(x1, y1, c3, t)
	}
	return nil, errors.New("sm2pke: no usable ephemeral key")
}

// Decrypt decrypts an ASN.1 DER SM2 ciphertext with the private scalar d
// (big-endian, at most 32 bytes) of a key on sm2p256v1. Every failure of
// the ciphertext is ErrDecrypt.
func Decrypt(d []byte, ct []byte) ([]byte, error) {
	curve := sm2ec.P256()
	params := curve.Params()
	dn := new(big.Int).SetBytes(d)
	defer clear(dn.Bits()) // the private scalar
	if len(d) > coordLen || dn.Sign() == 0 || dn.Cmp(params.N) >= 0 {
		return nil, ErrKey
	}
	x1, y1, c3, c2, err := Unmarshal(ct)
	if err != nil {
		return nil, err
	}
	// B1: C1 must be on the curve (IsOnCurve also rejects coordinates of
	// p or more and the point at infinity).
	if !curve.IsOnCurve(x1, y1) {
		return nil, ErrDecrypt
	}
	// B3: (x2, y2) = [dB]C1.
	scalar := dn.FillBytes(make([]byte, coordLen))
	x2, y2 := curve.ScalarMult(x1, y1, scalar)
	clear(scalar)
	z := point(x2, y2)
	defer clear(z)
	// B4: t = KDF(x2 || y2, klen), not all zero.
	t := sm3.Kdf(z, len(c2))
	if allZero(t) {
		clear(t)
		return nil, ErrDecrypt
	}
	// B5: M' = C2 xor t. B6: u = SM3(x2 || M' || y2) must equal C3.
	subtle.XORBytes(t, c2, t)
	if subtle.ConstantTimeCompare(hashC3(z, t), c3) != 1 {
		clear(t)
		return nil, ErrDecrypt
	}
	return t, nil
}

// Unmarshal parses an ASN.1 DER SM2 ciphertext: C1's coordinates, C3
// (32 bytes) and C2 (at least one byte). It checks the encoding only, not
// that C1 is on the curve. Malformed input is ErrDecrypt.
func Unmarshal(ct []byte) (x1, y1 *big.Int, c3, c2 []byte, err error) {
	var c ciphertext
	rest, err := asn1.Unmarshal(ct, &c)
	if err != nil || len(rest) != 0 || c.X.Sign() < 0 || c.Y.Sign() < 0 || len(c.C3) != sm3.Size || len(c.C2) == 0 {
		return nil, nil, nil, nil, ErrDecrypt
	}
	return c.X, c.Y, c.C3, c.C2, nil
}

// ciphertext is GM/T 0009-2012's SM2Cipher.
type ciphertext struct {
	X, Y   *big.Int
	C3, C2 []byte
}

func marshal(x1, y1 *big.Int, c3, c2 []byte) ([]byte, error) {
	return asn1.Marshal(ciphertext{X: x1, Y: y1, C3: c3, C2: c2})
}

// point is x || y, each 32 bytes.
func point(x, y *big.Int) []byte {
	z := make([]byte, 2*coordLen)
	x.FillBytes(z[:coordLen])
	y.FillBytes(z[coordLen:])
	return z
}

func hashC3(z, msg []byte) []byte {
	h := sm3.New()
	h.Write(z[:coordLen])
	h.Write(msg)
	h.Write(z[coordLen:])
	return h.Sum(nil)
}

func allZero(b []byte) bool { return subtle.ConstantTimeCompare(b, make([]byte, len(b))) == 1 }
