package hsmpool_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"hash"
	"math/big"
	"os/exec"
	"testing"

	"github.com/kmsd/kmsd/hsmpool"
	"github.com/kmsd/kmsd/hsmpool/hsmtest"
)

// opensslKey makes a PKCS#8 DER private key with openssl, as the guide
// says to (genpkey | pkcs8 -topk8 -outform der -nocrypt).
func opensslKey(t *testing.T, opts ...string) []byte {
	t.Helper()
	gen := exec.Command("openssl", append([]string{"genpkey"}, opts...)...)
	pem, err := gen.Output()
	if err != nil {
		t.Fatalf("openssl genpkey %v: %v", opts, err)
	}
	p8 := exec.Command("openssl", "pkcs8", "-topk8", "-outform", "der", "-nocrypt")
	p8.Stdin = bytes.NewReader(pem)
	der, err := p8.Output()
	if err != nil {
		t.Fatalf("openssl pkcs8: %v", err)
	}
	return der
}

// TestImportPrivateKeys imports RSA and EC private keys (PKCS#8) with the
// wrapping algorithms that can carry them, checks the public key derived in
// the HSM against the original and that the HSM signs with the key, and
// refuses keys of another size or curve.
func TestImportPrivateKeys(t *testing.T) {
	p := hsmtest.NewPool(t)
	pub, priv, err := p.GenerateImportKey(testCtx(t), 3072)
	if err != nil {
		t.Fatal(err)
	}
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	rsaDER, _ := x509.MarshalPKCS8PrivateKey(rk)
	cases := []struct {
		name string
		der  []byte
		spec hsmpool.KeyPairSpec
		algs []hsmpool.ImportAlgorithm
	}{
		{"RSA_2048", rsaDER, hsmpool.KeyPairSpec{Type: hsmpool.RSA, Bits: 2048, Use: hsmpool.UseSign},
			[]hsmpool.ImportAlgorithm{hsmpool.ImportRSAAESWrapSHA1, hsmpool.ImportRSAAESWrapSHA256}},
		{"P256", opensslKey(t, "-algorithm", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"), hsmpool.KeyPairSpec{Type: hsmpool.EC, Curve: oidP256, Use: hsmpool.UseSign}, importAlgs},
		{"P384", opensslKey(t, "-algorithm", "ec", "-pkeyopt", "ec_paramgen_curve:P-384"), hsmpool.KeyPairSpec{Type: hsmpool.EC, Curve: oidP384, Use: hsmpool.UseSign}, importAlgs},
		{"P521", opensslKey(t, "-algorithm", "ec", "-pkeyopt", "ec_paramgen_curve:P-521"), hsmpool.KeyPairSpec{Type: hsmpool.EC, Curve: oidP521, Use: hsmpool.UseSign}, importAlgs},
		{"secp256k1", opensslKey(t, "-algorithm", "ec", "-pkeyopt", "ec_paramgen_curve:secp256k1"), hsmpool.KeyPairSpec{Type: hsmpool.EC, Curve: oidSecp256k1, Use: hsmpool.UseSign}, importAlgs},
	}
	for _, c := range cases {
		for _, alg := range c.algs {
			t.Run(fmt.Sprintf("%s/%d", c.name, alg), func(t *testing.T) {
				ctx := testCtx(t)
				enc, err := hsmtest.WrapForImport(pub, alg, c.der)
				if err != nil {
					t.Fatal(err)
				}
				im, err := p.ImportKeyMaterial(ctx, priv, alg, enc, hsmpool.ImportTarget{Pair: c.spec})
				if err != nil {
					t.Fatal(err)
				}
				if bytes.Contains(im.Wrapped, c.der[len(c.der)-24:]) {
					t.Fatal("wrapped key holds the plaintext")
				}
				digest := sha256.Sum256([]byte("imported"))
				if c.spec.Type == hsmpool.RSA {
					if new(big.Int).SetBytes(im.Public.N).Cmp(rk.N) != 0 {
						t.Fatal("derived modulus is not the key's")
					}
					sig, err := p.SignRSA(ctx, im.Wrapped, 2048, crypto.SHA256, true, digest[:])
					if err != nil {
						t.Fatal(err)
					}
					if err := rsa.VerifyPSS(&rk.PublicKey, crypto.SHA256, digest[:], sig, nil); err != nil {
						t.Fatalf("HSM signature does not verify with the original key: %v", err)
					}
					return
				}
				want := ecPublicPoint(t, c.der, c.spec.Curve)
				if !bytes.Equal(im.Public.Point, want) {
					t.Fatalf("derived point %x, want %x", im.Public.Point, want)
				}
				if c.spec.Curve.Equal(oidSecp256k1) {
					return // no Go verifier here; agent/ tests verify secp256k1 signatures
				}
				sig, err := p.SignECDSA(ctx, im.Wrapped, digest[:])
				if err != nil {
					t.Fatal(err)
				}
				k, _ := x509.ParsePKCS8PrivateKey(c.der)
				if !ecdsa.VerifyASN1(&k.(*ecdsa.PrivateKey).PublicKey, digest[:], sig) {
					t.Fatal("HSM signature does not verify with the original key")
				}
			})
		}
	}
	t.Run("refused", func(t *testing.T) {
		ctx := testCtx(t)
		alg := hsmpool.ImportRSAAESWrapSHA256
		p256, p384 := cases[1].der, cases[2].der
		for _, bad := range []struct {
			name string
			der  []byte
			spec hsmpool.KeyPairSpec
			want error
		}{
			{"P-384 key into P-256", p384, cases[1].spec, hsmpool.ErrMaterialInvalid},
			{"RSA-2048 into RSA-3072", rsaDER, hsmpool.KeyPairSpec{Type: hsmpool.RSA, Bits: 3072, Use: hsmpool.UseSign}, hsmpool.ErrMaterialInvalid},
			{"EC key into RSA", p256, cases[0].spec, hsmpool.ErrAuthFailed},
			{"RSA key into EC", rsaDER, cases[1].spec, hsmpool.ErrAuthFailed},
			{"not a key", []byte("not a PKCS#8 private key at all"), cases[1].spec, hsmpool.ErrAuthFailed},
		} {
			enc, err := hsmtest.WrapForImport(pub, alg, bad.der)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := p.ImportKeyMaterial(ctx, priv, alg, enc, hsmpool.ImportTarget{Pair: bad.spec}); !errors.Is(err, bad.want) {
				t.Errorf("%s: %v, want %v", bad.name, err, bad.want)
			}
		}
	})
}

// ecPublicPoint returns the uncompressed public point of a PKCS#8 EC key
// (computed in Go from the private scalar, independently of the HSM).
func ecPublicPoint(t *testing.T, der []byte, curve asn1.ObjectIdentifier) []byte {
	t.Helper()
	if !curve.Equal(oidSecp256k1) {
		k, err := x509.ParsePKCS8PrivateKey(der)
		if err != nil {
			t.Fatal(err)
		}
		pk, _ := k.(*ecdsa.PrivateKey).PublicKey.ECDH()
		return pk.Bytes()
	}
	// secp256k1: ask openssl for the public key (65-byte uncompressed point
	// at the end of the SubjectPublicKeyInfo).
	cmd := exec.Command("openssl", "pkey", "-inform", "der", "-pubout", "-outform", "der")
	cmd.Stdin = bytes.NewReader(der)
	spki, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	return spki[len(spki)-65:]
}

// TestImportHMACSecret imports HMAC secrets of each spec's length and
// checks the HSM's HMAC against Go's with the original secret; other
// lengths are refused.
func TestImportHMACSecret(t *testing.T) {
	p := hsmtest.NewPool(t)
	pub, priv, err := p.GenerateImportKey(testCtx(t), 2048)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ size, hash int }{{28, hsmpool.SHA224}, {32, hsmpool.SHA256}, {48, hsmpool.SHA384}, {64, hsmpool.SHA512}} {
		for _, alg := range importAlgs {
			t.Run(fmt.Sprintf("%d/%d", c.size, alg), func(t *testing.T) {
				ctx := testCtx(t)
				secret := make([]byte, c.size)
				rand.Read(secret)
				enc, _ := hsmtest.WrapForImport(pub, alg, secret)
				im, err := p.ImportKeyMaterial(ctx, priv, alg, enc, hsmpool.ImportTarget{Size: c.size, Secret: true})
				if err != nil {
					t.Fatal(err)
				}
				mac, err := p.HMAC(ctx, im.Wrapped, c.hash, []byte("message"))
				if err != nil {
					t.Fatal(err)
				}
				h := hmac.New(map[int]func() hash.Hash{hsmpool.SHA224: sha256.New224, hsmpool.SHA256: sha256.New, hsmpool.SHA384: sha512.New384, hsmpool.SHA512: sha512.New}[c.hash], secret)
				h.Write([]byte("message"))
				if !hmac.Equal(mac, h.Sum(nil)) {
					t.Fatal("HSM HMAC differs from Go's with the original secret")
				}
				// Lengths in the size's block of 8 pass on SoftHSM2 (README,
				// checkMaterialSize); those outside it are refused.
				refused := []int{(c.size+7)/8*8 - 8, (c.size+7)/8*8 + 1, c.size + 8}
				for _, n := range refused {
					enc, _ := hsmtest.WrapForImport(pub, alg, make([]byte, n))
					if _, err := p.ImportKeyMaterial(ctx, priv, alg, enc, hsmpool.ImportTarget{Size: c.size, Secret: true}); !errors.Is(err, hsmpool.ErrMaterialSize) {
						t.Errorf("%d-byte secret for %d: %v", n, c.size, err)
					}
				}
			})
		}
	}
}

// TestImportFingerprint: two tokens with different domain keys that share
// a fingerprint key (moved between them as multi-Region material is) give
// the same fingerprint for the same material and another for other
// material.
func TestImportFingerprint(t *testing.T) {
	a, b := hsmtest.NewPool(t), hsmtest.NewPool(t)
	ctx := testCtx(t)
	fpA, err := a.GenerateWrappedKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tpub, err := b.PeerTransportKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	moved, err := a.ExportMaterial(ctx, fpA, tpub)
	if err != nil {
		t.Fatal(err)
	}
	fpB, err := b.ImportMaterial(ctx, moved)
	if err != nil {
		t.Fatal(err)
	}
	fingerprint := func(p *hsmpool.Pool, fp, secret []byte) []byte {
		t.Helper()
		pub, priv, err := p.GenerateImportKey(ctx, 2048)
		if err != nil {
			t.Fatal(err)
		}
		enc, _ := hsmtest.WrapForImport(pub, hsmpool.ImportOAEPSHA1, secret)
		im, err := p.ImportKeyMaterial(ctx, priv, hsmpool.ImportOAEPSHA1, enc, hsmpool.ImportTarget{Size: len(secret), Secret: true, FingerprintKey: fp})
		if err != nil {
			t.Fatal(err)
		}
		if len(im.Fingerprint) != 32 {
			t.Fatalf("fingerprint %x", im.Fingerprint)
		}
		return im.Fingerprint
	}
	secret, other := make([]byte, 48), make([]byte, 48)
	rand.Read(secret)
	rand.Read(other)
	if fa, fb := fingerprint(a, fpA, secret), fingerprint(b, fpB, secret); !bytes.Equal(fa, fb) {
		t.Fatalf("same material, different fingerprints: %x %x", fa, fb)
	}
	if fa, fb := fingerprint(a, fpA, secret), fingerprint(b, fpB, other); bytes.Equal(fa, fb) {
		t.Fatal("other material, same fingerprint")
	}
}

// BenchmarkImportKeyMaterial: the cost of one import (RSA_AES_KEY_WRAP_SHA_1
// under an RSA-2048 wrapping key) by kind of material, in one run, so the
// private-key checks' share is a ratio against the AES-256 import.
func BenchmarkImportKeyMaterial(b *testing.B) {
	p := hsmtest.NewPool(b)
	ctx := context.Background()
	pub, priv, err := p.GenerateImportKey(ctx, 2048)
	if err != nil {
		b.Fatal(err)
	}
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecDER, _ := x509.MarshalPKCS8PrivateKey(ec)
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	rsaDER, _ := x509.MarshalPKCS8PrivateKey(rk)
	for _, c := range []struct {
		name     string
		material []byte
		target   hsmpool.ImportTarget
	}{
		{"AES-256", make([]byte, 32), hsmpool.ImportTarget{Size: 32}},
		{"HMAC-512", make([]byte, 64), hsmpool.ImportTarget{Size: 64, Secret: true}},
		{"EC-P256", ecDER, hsmpool.ImportTarget{Pair: hsmpool.KeyPairSpec{Type: hsmpool.EC, Curve: oidP256, Use: hsmpool.UseSign}}},
		{"RSA-2048", rsaDER, hsmpool.ImportTarget{Pair: hsmpool.KeyPairSpec{Type: hsmpool.RSA, Bits: 2048, Use: hsmpool.UseSign}}},
	} {
		enc, err := hsmtest.WrapForImport(pub, hsmpool.ImportRSAAESWrapSHA1, c.material)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := p.ImportKeyMaterial(ctx, priv, hsmpool.ImportRSAAESWrapSHA1, enc, c.target); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
