package hsmpool

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"math/big"
	"testing"
)

// rawRSA is textbook RSA decryption: what CKM_RSA_X_509 returns.
func rawRSA(k *rsa.PrivateKey, ct []byte) []byte {
	m := new(big.Int).Exp(new(big.Int).SetBytes(ct), k.D, k.N)
	return m.FillBytes(make([]byte, k.Size()))
}

// TestOAEPDecode checks the Go OAEP decoding behind DecryptOAEP's raw
// path against Go's rsa.EncryptOAEP, and that corruptions fail.
func TestOAEPDecode(t *testing.T) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []crypto.Hash{crypto.SHA1, crypto.SHA256} {
		for _, n := range []int{0, 1, 100, k.Size() - 2*h.Size() - 2} {
			msg := bytes.Repeat([]byte{0x5a}, n)
			ct, err := rsa.EncryptOAEP(h.New(), rand.Reader, &k.PublicKey, msg, nil)
			if err != nil {
				t.Fatal(err)
			}
			em := rawRSA(k, ct)
			got, err := oaepDecode(h, bytes.Clone(em))
			if err != nil || !bytes.Equal(got, msg) {
				t.Fatalf("%v, %d bytes: %v", h, n, err)
			}
			for _, i := range []int{0, 1, h.Size() + 1, len(em) - 1} {
				bad := bytes.Clone(em)
				bad[i] ^= 0x01
				if _, err := oaepDecode(h, bad); !errors.Is(err, ErrAuthFailed) {
					t.Fatalf("%v: corrupted byte %d decoded (%v)", h, i, err)
				}
			}
		}
		// Encrypted with a label (or another hash) is not ours.
		ct, _ := rsa.EncryptOAEP(sha256.New(), rand.Reader, &k.PublicKey, []byte("x"), []byte("label"))
		if _, err := oaepDecode(crypto.SHA256, rawRSA(k, ct)); !errors.Is(err, ErrAuthFailed) {
			t.Fatalf("a labelled ciphertext decoded: %v", err)
		}
	}
}

func FuzzOAEPDecode(f *testing.F) {
	f.Add(make([]byte, 256))
	f.Add([]byte{0, 1})
	f.Add(append([]byte{0}, bytes.Repeat([]byte{1}, 127)...))
	f.Fuzz(func(t *testing.T, em []byte) {
		for _, h := range []crypto.Hash{crypto.SHA1, crypto.SHA256} {
			out, err := oaepDecode(h, bytes.Clone(em))
			if err != nil {
				if !errors.Is(err, ErrAuthFailed) {
					t.Fatalf("error class %v", err)
				}
				continue
			}
			if len(out) > len(em)-2*h.Size()-2 {
				t.Fatalf("decoded %d bytes from %d", len(out), len(em))
			}
		}
	})
}
