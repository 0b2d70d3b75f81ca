package mldsamu

import (
	"bytes"
	"crypto/sha3"
	"errors"
)

var (
	// ErrPublicKey: the public key is not the FIPS 204 encoding of an
	// ML-DSA-44, -65 or -87 key (1312, 1952 or 2592 bytes).
	ErrPublicKey = errors.New("mldsamu: public key length is not that of ML-DSA-44, -65 or -87")
	// ErrMu: μ is not 64 bytes.
	ErrMu = errors.New("mldsamu: mu must be 64 bytes")
)

const (
	n     = 256
	q     = 8380417
	d     = 13
	zeta  = 1753    // 512th root of unity mod q
	nInv  = 8347681 // 256⁻¹ mod q
	muLen = 64
)

// params is one ML-DSA parameter set (FIPS 204 Table 1).
type params struct {
	name      string
	k, l      int
	eta       int
	gamma1Bit int   // γ1 = 2^gamma1Bit
	gamma2    int64 // γ2
	lambda    int
	tau       int
	omega     int
}

var paramSets = []params{
	{name: "ML-DSA-44", k: 4, l: 4, eta: 2, gamma1Bit: 17, gamma2: (q - 1) / 88, lambda: 128, tau: 39, omega: 80},
	{name: "ML-DSA-65", k: 6, l: 5, eta: 4, gamma1Bit: 19, gamma2: (q - 1) / 32, lambda: 192, tau: 49, omega: 55},
	{name: "ML-DSA-87", k: 8, l: 7, eta: 2, gamma1Bit: 19, gamma2: (q - 1) / 32, lambda: 256, tau: 60, omega: 75},
}

func (p *params) pkLen() int { return 32 + p.k*n*10/8 }

func (p *params) sigLen() int { return p.lambda/4 + p.l*n*(p.gamma1Bit+1)/8 + p.omega + p.k }

// poly is a polynomial of Z_q[X]/(X^256+1), coefficients in [0, q), either
// in the normal or the NTT domain.
type poly [n]int64

// zetas[i] = ζ^brv8(i) mod q (FIPS 204 Appendix B).
var zetas = func() (z [n]int64) {
	for i := range n {
		var r int
		for b := range 8 {
			r |= (i >> b & 1) << (7 - b)
		}
		z[i] = powMod(zeta, r)
	}
	return z
}()

func powMod(b int64, e int) int64 {
	r := int64(1)
	for ; e > 0; e >>= 1 {
		if e&1 == 1 {
			r = r * b % q
		}
		b = b * b % q
	}
	return r
}

func mod(a int64) int64 {
	a %= q
	if a < 0 {
		a += q
	}
	return a
}

// ntt is FIPS 204 Algorithm 41.
func ntt(w poly) poly {
	m := 0
	for length := 128; length >= 1; length /= 2 {
		for start := 0; start < n; start += 2 * length {
			m++
			z := zetas[m]
			for j := start; j < start+length; j++ {
				t := z * w[j+length] % q
				w[j+length] = mod(w[j] - t)
				w[j] = mod(w[j] + t)
			}
		}
	}
	return w
}

// invNTT is FIPS 204 Algorithm 42.
func invNTT(w poly) poly {
	m := n
	for length := 1; length < n; length *= 2 {
		for start := 0; start < n; start += 2 * length {
			m--
			z := q - zetas[m]
			for j := start; j < start+length; j++ {
				t := w[j]
				w[j] = mod(t + w[j+length])
				w[j+length] = mod(t - w[j+length])
				w[j+length] = z * w[j+length] % q
			}
		}
	}
	for j := range w {
		w[j] = w[j] * nInv % q
	}
	return w
}

// rejNTTPoly is FIPS 204 Algorithm 30 on the seed ρ ‖ s ‖ r.
func rejNTTPoly(rho []byte, s, r byte) poly {
	h := sha3.NewSHAKE128()
	h.Write(rho)
	h.Write([]byte{s, r})
	var a poly
	var buf [168]byte // one SHAKE128 block, a multiple of 3
	for j := 0; j < n; {
		h.Read(buf[:])
		for i := 0; i < len(buf) && j < n; i += 3 {
			c := int64(buf[i]) | int64(buf[i+1])<<8 | int64(buf[i+2]&0x7f)<<16
			if c < q {
				a[j] = c
				j++
			}
		}
	}
	return a
}

// sampleInBall is FIPS 204 Algorithm 29.
func sampleInBall(ct []byte, tau int) poly {
	h := sha3.NewSHAKE256()
	h.Write(ct)
	var s [8]byte
	h.Read(s[:])
	var c poly
	var b [1]byte
	for i := n - tau; i < n; i++ {
		for {
			h.Read(b[:])
			if int(b[0]) <= i {
				break
			}
		}
		j := int(b[0])
		c[i] = c[j]
		bit := i + tau - n
		if s[bit/8]>>(bit%8)&1 == 1 {
			c[j] = q - 1
		} else {
			c[j] = 1
		}
	}
	return c
}

// bitUnpack reads n coefficients of bits bits each, little-endian, from b.
func bitUnpack(b []byte, bits int) (out [n]int64) {
	var acc uint64
	var have, pos int
	for i := range n {
		for have < bits {
			acc |= uint64(b[pos]) << have
			pos++
			have += 8
		}
		out[i] = int64(acc & (1<<bits - 1))
		acc >>= bits
		have -= bits
	}
	return out
}

// decompose is FIPS 204 Algorithm 36 for r in [0, q).
func decompose(r, gamma2 int64) (r1, r0 int64) {
	r0 = r % (2 * gamma2)
	if r0 > gamma2 {
		r0 -= 2 * gamma2
	}
	if r-r0 == q-1 {
		return 0, r0 - 1
	}
	return (r - r0) / (2 * gamma2), r0
}

// useHint is FIPS 204 Algorithm 40.
func useHint(h bool, r, gamma2 int64) int64 {
	m := (q - 1) / (2 * gamma2)
	r1, r0 := decompose(r, gamma2)
	switch {
	case h && r0 > 0:
		return (r1 + 1) % m
	case h:
		return (r1 - 1 + m) % m
	}
	return r1
}

// hintUnpack is FIPS 204 Algorithm 21; false means the encoding is
// malformed (⊥).
func hintUnpack(y []byte, p *params) ([][n]bool, bool) {
	h := make([][n]bool, p.k)
	index := 0
	for i := range p.k {
		limit := int(y[p.omega+i])
		if limit < index || limit > p.omega {
			return nil, false
		}
		first := index
		for index < limit {
			if index > first && y[index-1] >= y[index] {
				return nil, false
			}
			h[i][y[index]] = true
			index++
		}
	}
	for _, b := range y[index:p.omega] {
		if b != 0 {
			return nil, false
		}
	}
	return h, true
}

// Verify reports whether sig is a valid ML-DSA signature of the external μ
// mu under pubKey, the FIPS 204 public key encoding (pkEncode; what
// mldsa.PublicKey.Bytes returns). The parameter set is the one whose public
// key length matches. It is FIPS 204 ML-DSA.Verify_internal (Algorithm 8)
// with μ as input instead of tr ‖ M′.
func Verify(pubKey, mu, sig []byte) (bool, error) {
	var p *params
	for i := range paramSets {
		if len(pubKey) == paramSets[i].pkLen() {
			p = &paramSets[i]
		}
	}
	if p == nil {
		return false, ErrPublicKey
	}
	if len(mu) != muLen {
		return false, ErrMu
	}
	if len(sig) != p.sigLen() {
		return false, nil
	}

	// sigDecode (Algorithm 27): c̃, z, h.
	ct := sig[:p.lambda/4]
	rest := sig[p.lambda/4:]
	gamma1 := int64(1) << p.gamma1Bit
	bound := gamma1 - int64(p.tau*p.eta) // γ1 − β
	zLen := n * (p.gamma1Bit + 1) / 8
	zHat := make([]poly, p.l)
	for i := range p.l {
		raw := bitUnpack(rest[i*zLen:], p.gamma1Bit+1)
		var z poly
		for j, v := range raw {
			c := gamma1 - v // in (−γ1, γ1]
			if c >= bound || -c >= bound {
				return false, nil
			}
			z[j] = mod(c)
		}
		zHat[i] = ntt(z)
	}
	h, ok := hintUnpack(rest[p.l*zLen:], p)
	if !ok {
		return false, nil
	}

	// pkDecode (Algorithm 23): ρ, t1.
	rho := pubKey[:32]
	cHat := ntt(sampleInBall(ct, p.tau))

	hw := sha3.NewSHAKE256()
	hw.Write(mu)
	w1Bits := 4
	if p.gamma2 == (q-1)/88 {
		w1Bits = 6
	}
	enc := make([]byte, n*w1Bits/8)
	for i := range p.k {
		t1 := bitUnpack(pubKey[32+i*n*10/8:], 10)
		var t poly
		for j, v := range t1 {
			t[j] = v << d // t1·2^d < q
		}
		tHat := ntt(t)
		// Â·NTT(z) − NTT(c)·NTT(t1·2^d), row i.
		var acc poly
		for j := range p.l {
			a := rejNTTPoly(rho, byte(j), byte(i))
			for x := range n {
				acc[x] = (acc[x] + a[x]*zHat[j][x]) % q
			}
		}
		for x := range n {
			acc[x] = mod(acc[x] - cHat[x]*tHat[x]%q)
		}
		w := invNTT(acc)
		// w1Encode (Algorithm 28) of UseHint(h, w'_Approx).
		clear(enc)
		for x := range n {
			v := uint(useHint(h[i][x], w[x], p.gamma2))
			bit := x * w1Bits
			enc[bit/8] |= byte(v << (bit % 8))
			if bit%8+w1Bits > 8 {
				enc[bit/8+1] |= byte(v >> (8 - bit%8))
			}
		}
		hw.Write(enc)
	}
	ct2 := make([]byte, p.lambda/4)
	hw.Read(ct2)
	return bytes.Equal(ct, ct2), nil
}
