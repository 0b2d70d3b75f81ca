package hsmpool_test

import (
	"bytes"
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/asn1"
	"errors"
	"math/big"
	"testing"

	"github.com/kmsd/kmsd/hsmpool"
	"github.com/kmsd/kmsd/hsmpool/hsmtest"
)

var (
	oidP256      = asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 7}
	oidP384      = asn1.ObjectIdentifier{1, 3, 132, 0, 34}
	oidP521      = asn1.ObjectIdentifier{1, 3, 132, 0, 35}
	oidSecp256k1 = asn1.ObjectIdentifier{1, 3, 132, 0, 10}
)

// TestKeyPairs makes key pairs in the HSM, uses them through the pool and
// checks every result with Go's crypto and the public key the HSM gave.
func TestKeyPairs(t *testing.T) {
	p := hsmtest.NewPool(t)
	ctx := testCtx(t)

	t.Run("RSA", func(t *testing.T) {
		w, pub, err := p.GenerateWrappedKeyPair(ctx, hsmpool.KeyPairSpec{Type: hsmpool.RSA, Bits: 2048, Use: hsmpool.UseSign})
		if err != nil {
			t.Fatal(err)
		}
		pk := &rsa.PublicKey{N: new(big.Int).SetBytes(pub.N), E: int(new(big.Int).SetBytes(pub.E).Int64())}
		if pk.N.BitLen() != 2048 || pk.E != 65537 {
			t.Fatalf("public key %d bits, e=%d", pk.N.BitLen(), pk.E)
		}
		for _, h := range []crypto.Hash{crypto.SHA256, crypto.SHA384, crypto.SHA512} {
			hh := h.New()
			hh.Write([]byte("msg"))
			d := hh.Sum(nil)
			sig, err := p.SignRSA(ctx, w, 2048, h, true, d)
			if err != nil {
				t.Fatal(err)
			}
			if err := rsa.VerifyPSS(pk, h, d, sig, &rsa.PSSOptions{SaltLength: h.Size()}); err != nil {
				t.Fatalf("PSS %v: %v", h, err)
			}
			sig, err = p.SignRSA(ctx, w, 2048, h, false, d)
			if err != nil {
				t.Fatal(err)
			}
			if err := rsa.VerifyPKCS1v15(pk, h, d, sig); err != nil {
				t.Fatalf("PKCS1 %v: %v", h, err)
			}
		}
	})

	t.Run("RSA-OAEP", func(t *testing.T) {
		w, pub, err := p.GenerateWrappedKeyPair(ctx, hsmpool.KeyPairSpec{Type: hsmpool.RSA, Bits: 2048, Use: hsmpool.UseDecrypt})
		if err != nil {
			t.Fatal(err)
		}
		pk := &rsa.PublicKey{N: new(big.Int).SetBytes(pub.N), E: int(new(big.Int).SetBytes(pub.E).Int64())}
		for _, h := range []crypto.Hash{crypto.SHA1, crypto.SHA256} {
			hf := sha1.New()
			if h == crypto.SHA256 {
				hf = sha256.New()
			}
			ct, err := rsa.EncryptOAEP(hf, rand.Reader, pk, []byte("secret"), nil)
			if err != nil {
				t.Fatal(err)
			}
			pt, err := p.DecryptOAEP(ctx, w, 2048, h, ct)
			if err != nil || string(pt) != "secret" {
				t.Fatalf("OAEP %v: %q %v", h, pt, err)
			}
			ct[5] ^= 1
			if _, err := p.DecryptOAEP(ctx, w, 2048, h, ct); !errors.Is(err, hsmpool.ErrAuthFailed) {
				t.Fatalf("tampered OAEP %v: %v, want ErrAuthFailed", h, err)
			}
		}
	})

	t.Run("ECDSA", func(t *testing.T) {
		for _, c := range []struct {
			oid   asn1.ObjectIdentifier
			curve elliptic.Curve
		}{{oidP256, elliptic.P256()}, {oidP384, elliptic.P384()}, {oidP521, elliptic.P521()}} {
			w, pub, err := p.GenerateWrappedKeyPair(ctx, hsmpool.KeyPairSpec{Type: hsmpool.EC, Curve: c.oid, Use: hsmpool.UseSign})
			if err != nil {
				t.Fatal(err)
			}
			x, y := elliptic.Unmarshal(c.curve, pub.Point)
			if x == nil {
				t.Fatalf("%s: bad point", c.curve.Params().Name)
			}
			pk := &ecdsa.PublicKey{Curve: c.curve, X: x, Y: y}
			d := sha256.Sum256([]byte("msg"))
			sig, err := p.SignECDSA(ctx, w, d[:])
			if err != nil {
				t.Fatal(err)
			}
			if !ecdsa.VerifyASN1(pk, d[:], sig) {
				t.Fatalf("%s: signature does not verify", c.curve.Params().Name)
			}
		}
	})

	t.Run("secp256k1", func(t *testing.T) {
		w, pub, err := p.GenerateWrappedKeyPair(ctx, hsmpool.KeyPairSpec{Type: hsmpool.EC, Curve: oidSecp256k1, Use: hsmpool.UseSign})
		if errors.Is(err, hsmpool.ErrUnsupported) {
			t.Skipf("the token has no secp256k1: %v", err)
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(pub.Point) != 65 || pub.Point[0] != 4 {
			t.Fatalf("point of %d bytes", len(pub.Point))
		}
		d := sha256.Sum256([]byte("msg"))
		sig, err := p.SignECDSA(ctx, w, d[:])
		if err != nil {
			t.Fatal(err)
		}
		var rs struct{ R, S *big.Int }
		if _, err := asn1.Unmarshal(sig, &rs); err != nil || rs.R.Sign() <= 0 || rs.S.Sign() <= 0 {
			t.Fatalf("signature is not DER (r, s): %v", err)
		}
		// The agent's tests verify secp256k1 signatures with an
		// independent library; Go's crypto has no secp256k1.
	})

	t.Run("Ed25519", func(t *testing.T) {
		spec := hsmpool.KeyPairSpec{Type: hsmpool.Ed25519, Use: hsmpool.UseSign}
		if !p.Supports(spec) {
			t.Skip("token has no EdDSA")
		}
		w, pub, err := p.GenerateWrappedKeyPair(ctx, spec)
		if errors.Is(err, hsmpool.ErrUnsupported) {
			t.Skipf("the token makes Ed25519 keys but cannot wrap them: %v", err)
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(pub.Point) != ed25519.PublicKeySize {
			t.Fatalf("point of %d bytes", len(pub.Point))
		}
		sig, err := p.SignEd25519(ctx, w, []byte("msg"))
		if err != nil {
			t.Fatal(err)
		}
		if !ed25519.Verify(ed25519.PublicKey(pub.Point), []byte("msg"), sig) {
			t.Fatal("Ed25519 signature does not verify")
		}
	})

	t.Run("ECDH", func(t *testing.T) {
		w, pub, err := p.GenerateWrappedKeyPair(ctx, hsmpool.KeyPairSpec{Type: hsmpool.EC, Curve: oidP384, Use: hsmpool.UseDerive})
		if err != nil {
			t.Fatal(err)
		}
		peer, _ := ecdh.P384().GenerateKey(rand.Reader)
		got, err := p.DeriveECDH(ctx, w, peer.PublicKey().Bytes(), 48)
		if err != nil {
			t.Fatal(err)
		}
		hp, err := ecdh.P384().NewPublicKey(pub.Point)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := peer.ECDH(hp)
		if !bytes.Equal(got, want) {
			t.Fatal("ECDH secret differs from Go's")
		}
	})
}
