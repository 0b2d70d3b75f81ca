package mldsamu

import (
	"bytes"
	"crypto/sha3"
	"fmt"
	"testing"

	"filippo.io/mldsa"
	"filippo.io/mldsa/mldsacrypto"
)

var allParams = []struct {
	name   string
	params mldsa.Parameters
}{
	{"ML-DSA-44", mldsa.MLDSA44()},
	{"ML-DSA-65", mldsa.MLDSA65()},
	{"ML-DSA-87", mldsa.MLDSA87()},
}

// computeMu is μ = SHAKE256(SHAKE256(pk, 64) ‖ 0 ‖ len(ctx) ‖ ctx ‖ msg, 64)
// (FIPS 204 Algorithm 2 and 7).
func computeMu(pk, ctx, msg []byte) []byte {
	tr := sha3.SumSHAKE256(pk, 64)
	h := sha3.NewSHAKE256()
	h.Write(tr)
	h.Write([]byte{0, byte(len(ctx))})
	h.Write(ctx)
	h.Write(msg)
	mu := make([]byte, 64)
	h.Read(mu)
	return mu
}

func mustVerify(t *testing.T, pk, mu, sig []byte, want bool, what string) {
	t.Helper()
	ok, err := Verify(pk, mu, sig)
	if err != nil {
		t.Fatalf("%s: Verify: %v", what, err)
	}
	if ok != want {
		t.Fatalf("%s: Verify = %v, want %v", what, ok, want)
	}
}

// TestVerifyFilippo verifies signatures made by filippo.io/mldsa over an
// external μ (MLDSAMu), over a message (μ computed here, with and without a
// context), and deterministic ones; and rejects them once anything changes.
func TestVerifyFilippo(t *testing.T) {
	for _, ps := range allParams {
		t.Run(ps.name, func(t *testing.T) {
			for range 3 {
				sk, err := mldsa.GenerateKey(ps.params)
				if err != nil {
					t.Fatal(err)
				}
				pk := sk.PublicKey().Bytes()
				msg := []byte("signed by filippo.io/mldsa, verified by mldsamu")

				mu := computeMu(pk, nil, msg)
				sigMu, err := sk.Sign(nil, mu, mldsacrypto.MLDSAMu)
				if err != nil {
					t.Fatal(err)
				}
				mustVerify(t, pk, mu, sigMu, true, "Sign(MLDSAMu)")
				if err := mldsa.Verify(sk.PublicKey(), msg, sigMu, nil); err != nil {
					t.Fatalf("filippo.io/mldsa rejects its own μ signature: %v", err)
				}

				sigRaw, err := sk.Sign(nil, msg, &mldsa.Options{})
				if err != nil {
					t.Fatal(err)
				}
				mustVerify(t, pk, mu, sigRaw, true, "Sign(msg)")

				ctx := []byte("a context")
				sigCtx, err := sk.Sign(nil, msg, &mldsa.Options{Context: string(ctx)})
				if err != nil {
					t.Fatal(err)
				}
				mustVerify(t, pk, computeMu(pk, ctx, msg), sigCtx, true, "Sign(msg, ctx)")
				mustVerify(t, pk, mu, sigCtx, false, "Sign(msg, ctx) against μ without ctx")

				sigDet, err := sk.SignDeterministic(mu, mldsacrypto.MLDSAMu)
				if err != nil {
					t.Fatal(err)
				}
				mustVerify(t, pk, mu, sigDet, true, "SignDeterministic(MLDSAMu)")

				// Every byte region of the signature matters: c̃, z, hints.
				for _, i := range []int{0, len(sigMu) / 3, len(sigMu) / 2, len(sigMu) - ps.params.SignatureSize()/100, len(sigMu) - 1} {
					for _, bit := range []byte{1, 0x80} {
						bad := bytes.Clone(sigMu)
						bad[i] ^= bit
						mustVerify(t, pk, mu, bad, false, "flipped signature bit")
					}
				}
				for _, i := range []int{0, 31, 63} {
					bad := bytes.Clone(mu)
					bad[i] ^= 1
					mustVerify(t, pk, bad, sigMu, false, "flipped μ bit")
				}
				// Flip bits of ρ and top bits of t1 coefficients (bit 7 of
				// the fifth byte of each 5-byte group is bit 9 of a t1
				// coefficient). A low bit of t1 may be absorbed by the
				// hint's rounding and still verify: with an external μ
				// the key is bound only through tr inside μ, as FIPS 204
				// Verify_internal intends.
				for _, i := range []int{0, 31, 32 + 4, 32 + 5*100 + 4, len(pk) - 1} {
					bad := bytes.Clone(pk)
					bad[i] ^= 0x80
					mustVerify(t, bad, mu, sigMu, false, fmt.Sprint("flipped public key bit ", i))
				}
				other, err := mldsa.GenerateKey(ps.params)
				if err != nil {
					t.Fatal(err)
				}
				mustVerify(t, other.PublicKey().Bytes(), mu, sigMu, false, "other key")

				// Truncated or extended signature: false, no error.
				mustVerify(t, pk, mu, sigMu[:len(sigMu)-1], false, "truncated signature")
				mustVerify(t, pk, mu, nil, false, "empty signature")
				mustVerify(t, pk, mu, append(bytes.Clone(sigMu), 0), false, "extended signature")
				// Truncated μ or public key: errors.
				if _, err := Verify(pk, mu[:63], sigMu); err != ErrMu {
					t.Fatalf("63-byte μ: err = %v, want ErrMu", err)
				}
				if _, err := Verify(pk[:len(pk)-1], mu, sigMu); err != ErrPublicKey {
					t.Fatalf("truncated public key: err = %v, want ErrPublicKey", err)
				}
			}
		})
	}
}

// TestWrongParameterSet: a signature of one parameter set never verifies
// under a key of another.
func TestWrongParameterSet(t *testing.T) {
	var pks, sigs, mus [3][]byte
	for i, ps := range allParams {
		sk, err := mldsa.GenerateKey(ps.params)
		if err != nil {
			t.Fatal(err)
		}
		pks[i] = sk.PublicKey().Bytes()
		mus[i] = computeMu(pks[i], nil, []byte("m"))
		if sigs[i], err = sk.Sign(nil, mus[i], mldsacrypto.MLDSAMu); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 3 {
		for j := range 3 {
			mustVerify(t, pks[i], mus[j], sigs[j], i == j, allParams[i].name+" key, "+allParams[j].name+" signature")
		}
	}
}

// TestHintEncoding builds signatures whose hint section breaks each
// HintBitUnpack rule (FIPS 204 Algorithm 21) and checks they are rejected.
func TestHintEncoding(t *testing.T) {
	for _, ps := range allParams {
		t.Run(ps.name, func(t *testing.T) {
			sk, err := mldsa.GenerateKey(ps.params)
			if err != nil {
				t.Fatal(err)
			}
			pk := sk.PublicKey().Bytes()
			mu := computeMu(pk, nil, []byte("hints"))
			sig, err := sk.Sign(nil, mu, mldsacrypto.MLDSAMu)
			if err != nil {
				t.Fatal(err)
			}
			p := paramSets[0]
			for _, q := range paramSets {
				if q.pkLen() == len(pk) {
					p = q
				}
			}
			y := len(sig) - p.omega - p.k // start of the hint section
			limits := sig[y+p.omega:]
			total := int(limits[p.k-1])
			if total == 0 || total == p.omega {
				t.Skipf("signature with %d hints cannot exercise every rule", total)
			}
			cases := map[string]func(s []byte){
				"limit above ω": func(s []byte) { s[y+p.omega+p.k-1] = byte(p.omega + 1) },
				"limits decrease": func(s []byte) {
					s[y+p.omega] = s[y+p.omega+p.k-1] + 1
				},
				"nonzero padding": func(s []byte) { s[y+total] = 1 },
				"indices not increasing": func(s []byte) {
					// Give all hints to the last polynomial, then make two
					// of its indices equal.
					for i := range p.k - 1 {
						s[y+p.omega+i] = 0
					}
					if total >= 2 {
						s[y+1] = s[y]
					}
				},
			}
			for name, mutate := range cases {
				bad := bytes.Clone(sig)
				mutate(bad)
				if name == "indices not increasing" && total < 2 {
					continue
				}
				if _, ok := hintUnpack(bad[y:], &p); ok {
					t.Errorf("%s: hintUnpack accepted it", name)
				}
				mustVerify(t, pk, mu, bad, false, name)
			}
			if _, ok := hintUnpack(sig[y:], &p); !ok {
				t.Fatal("hintUnpack rejects a valid signature")
			}
		})
	}
}

// TestNTTRoundTrip checks invNTT(ntt(f)) = f and that pointwise products
// in the NTT domain are products in Z_q[X]/(X^256+1).
func TestNTTRoundTrip(t *testing.T) {
	var f, g poly
	for i := range n {
		f[i] = int64(i*7919+13) % q
		g[i] = int64(i*i*104729+5) % q
	}
	if invNTT(ntt(f)) != f {
		t.Fatal("invNTT(ntt(f)) != f")
	}
	var want poly
	for i := range n {
		for j := range n {
			p := f[i] * g[j] % q
			if i+j < n {
				want[i+j] = (want[i+j] + p) % q
			} else {
				want[i+j-n] = mod(want[i+j-n] - p)
			}
		}
	}
	fh, gh := ntt(f), ntt(g)
	var ph poly
	for i := range n {
		ph[i] = fh[i] * gh[i] % q
	}
	if invNTT(ph) != want {
		t.Fatal("NTT product differs from the schoolbook product")
	}
}

// FuzzVerify: Verify never panics on any input, and never accepts a
// mutation of a fixed valid signature. The fuzzed signature is checked
// as is and also patched into the valid one (at an offset from its first
// two bytes), so that lengths match and decoding goes deep: z bounds,
// hint rules, the challenge.
func FuzzVerify(f *testing.F) {
	sk, err := mldsa.NewPrivateKey(mldsa.MLDSA44(), make([]byte, 32))
	if err != nil {
		f.Fatal(err)
	}
	pk := sk.PublicKey().Bytes()
	mu := computeMu(pk, nil, []byte("fuzz"))
	sig, err := sk.SignDeterministic(mu, mldsacrypto.MLDSAMu)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(pk, mu, sig)
	f.Add(pk, mu, sig[:100])
	f.Add(pk[:100], mu, sig)
	f.Add([]byte{}, []byte{}, []byte{})
	f.Add(pk, mu, []byte{0x09, 0x74, 0xff, 0xff}) // into the hint limits
	f.Add(pk, mu, []byte{0x00, 0x40, 0xff, 0xff}) // into z
	f.Fuzz(func(t *testing.T, pk2, mu2, sig2 []byte) {
		if ok, err := Verify(pk2, mu2, sig2); err != nil && ok {
			t.Fatal("ok with an error")
		}
		if len(sig2) < 2 {
			return
		}
		patched := bytes.Clone(sig)
		off := (int(sig2[0])<<8 | int(sig2[1])) % len(sig)
		copy(patched[off:], sig2[2:])
		ok, err := Verify(pk, mu, patched)
		if err != nil {
			t.Fatal(err)
		}
		if ok && !bytes.Equal(patched, sig) {
			// ML-DSA signatures are not unique in theory (a z or hint
			// change can survive rounding), but a fuzzed one that still
			// verifies would most likely be a bug here.
			t.Fatalf("patched signature verifies (offset %d)", off)
		}
	})
}
