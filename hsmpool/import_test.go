package hsmpool_test

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"testing"

	"github.com/kmsd/kmsd/hsmpool"
	"github.com/kmsd/kmsd/hsmpool/hsmtest"
)

var aes32 = hsmpool.ImportTarget{Size: 32}

var importAlgs = []hsmpool.ImportAlgorithm{hsmpool.ImportOAEPSHA1, hsmpool.ImportOAEPSHA256,
	hsmpool.ImportRSAAESWrapSHA1, hsmpool.ImportRSAAESWrapSHA256}

// TestImportKeyMaterial imports material wrapped by Go's crypto with every
// algorithm and checks that the HSM then encrypts with exactly that
// material (Go's AES-GCM opens the HSM's output).
func TestImportKeyMaterial(t *testing.T) {
	p := hsmtest.NewPool(t)
	for _, bits := range []int{2048, 4096} {
		// A context per step: RSA-4096 key generation is slow on a busy machine.
		pub, priv, err := p.GenerateImportKey(testCtx(t), bits)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(priv, pub[len(pub)-64:]) && len(priv) < 100 {
			t.Fatal("wrapped private key looks wrong")
		}
		for _, alg := range importAlgs {
			t.Run(fmt.Sprintf("%d/%d", bits, alg), func(t *testing.T) {
				ctx := testCtx(t)
				material := make([]byte, 32)
				rand.Read(material)
				enc, err := hsmtest.WrapForImport(pub, alg, material)
				if err != nil {
					t.Fatal(err)
				}
				im, err := p.ImportKeyMaterial(ctx, priv, alg, enc, aes32)
				if err != nil {
					t.Fatal(err)
				}
				w := im.Wrapped
				if bytes.Contains(w, material[:8]) {
					t.Fatal("wrapped material contains the plaintext")
				}
				sealed, err := p.Seal(ctx, w, []byte("imported"), []byte("aad"))
				if err != nil {
					t.Fatal(err)
				}
				blk, _ := aes.NewCipher(material)
				aead, _ := cipher.NewGCM(blk)
				if pt, err := aead.Open(nil, sealed[:12], sealed[12:], []byte("aad")); err != nil || string(pt) != "imported" {
					t.Fatalf("HSM did not encrypt with the imported material: %v", err)
				}
				// The same material wraps to the same bytes (re-import check).
				enc2, _ := hsmtest.WrapForImport(pub, alg, material)
				im2, err := p.ImportKeyMaterial(ctx, priv, alg, enc2, aes32)
				if err != nil || !bytes.Equal(w, im2.Wrapped) {
					t.Fatalf("re-import of the same material: equal=%v err=%v", bytes.Equal(w, im2.Wrapped), err)
				}
				bad := bytes.Clone(enc)
				bad[len(bad)-3] ^= 1
				if _, err := p.ImportKeyMaterial(ctx, priv, alg, bad, aes32); !errors.Is(err, hsmpool.ErrAuthFailed) {
					t.Fatalf("tampered material: %v", err)
				}
				short := make([]byte, 20)
				encShort, _ := hsmtest.WrapForImport(pub, alg, short)
				if _, err := p.ImportKeyMaterial(ctx, priv, alg, encShort, aes32); !errors.Is(err, hsmpool.ErrMaterialSize) {
					t.Fatalf("16-byte material: %v", err)
				}
			})
		}
	}
	// Material wrapped for another import key does not unwrap.
	ctx := testCtx(t)
	pubA, _, _ := p.GenerateImportKey(ctx, 2048)
	_, privB, _ := p.GenerateImportKey(ctx, 2048)
	enc, _ := hsmtest.WrapForImport(pubA, hsmpool.ImportOAEPSHA256, make([]byte, 32))
	if _, err := p.ImportKeyMaterial(ctx, privB, hsmpool.ImportOAEPSHA256, enc, aes32); !errors.Is(err, hsmpool.ErrAuthFailed) {
		t.Fatalf("material for another wrapping key: %v", err)
	}
	if _, err := p.ImportKeyMaterial(ctx, []byte("not a wrapped key at all"), hsmpool.ImportOAEPSHA1, enc, aes32); !errors.Is(err, hsmpool.ErrAuthFailed) {
		t.Fatalf("garbage private key: %v", err)
	}
}

// TestWrapPadVector checks WrapPad against RFC 5649 §6.
func TestWrapPadVector(t *testing.T) {
	kek := []byte{0x58, 0x40, 0xdf, 0x6e, 0x29, 0xb0, 0x2a, 0xf1, 0xab, 0x49, 0x3b, 0x70, 0x5b, 0xf1, 0x6e, 0xa1,
		0xae, 0x83, 0x38, 0xf4, 0xdc, 0xc1, 0x76, 0xa8}
	pt := []byte{0xc3, 0x7b, 0x7e, 0x64, 0x92, 0x58, 0x43, 0x40, 0xbe, 0xd1, 0x22, 0x07, 0x80, 0x89, 0x41, 0x15, 0x50, 0x68, 0xf7, 0x38}
	want := []byte{0x13, 0x8b, 0xde, 0xaa, 0x9b, 0x8f, 0xa7, 0xfc, 0x61, 0xf9, 0x77, 0x42, 0xe7, 0x22, 0x48, 0xee,
		0x5a, 0xe6, 0xae, 0x53, 0x60, 0xd1, 0xae, 0x6a, 0x5f, 0x54, 0xf3, 0x73, 0xfa, 0x54, 0x3b, 0x6a}
	got, err := hsmtest.WrapPad(kek, pt)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("WrapPad = %x, %v; want %x", got, err, want)
	}
}
