package hsmpool

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"hash"
	"math/big"
	"testing"
)

// rawDecrypt is textbook RSA decryption, what CKM_RSA_X_509 returns.
func rawDecrypt(k *rsa.PrivateKey, c []byte) []byte {
	m := new(big.Int).Exp(new(big.Int).SetBytes(c), k.D, k.N)
	return m.FillBytes(make([]byte, k.Size()))
}

// TestOAEPDecode checks the fallback's OAEP decoding against Go's
// rsa.EncryptOAEP, and that damaged encodings are refused.
func TestOAEPDecode(t *testing.T) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []func() hash.Hash{sha1.New, sha256.New} {
		for _, n := range []int{0, 1, 32, 190} {
			msg := make([]byte, n)
			rand.Read(msg)
			c, err := rsa.EncryptOAEP(h(), rand.Reader, &k.PublicKey, msg, nil)
			if err != nil {
				t.Fatal(err)
			}
			em := rawDecrypt(k, c)
			got, ok := oaepDecode(h(), em, k.Size())
			if !ok || !bytes.Equal(got, msg) {
				t.Fatalf("%d bytes: ok=%v", n, ok)
			}
			if _, ok := oaepDecode(h(), em[1:], k.Size()); !ok {
				t.Fatal("em without its leading zero byte refused")
			}
			for _, i := range []int{0, 5, 40, len(em) - 1} {
				bad := bytes.Clone(em)
				bad[i] ^= 0x80
				if _, ok := oaepDecode(h(), bad, k.Size()); ok {
					t.Fatalf("damaged byte %d accepted", i)
				}
			}
		}
	}
	// The other hash's encoding is refused.
	c, _ := rsa.EncryptOAEP(sha1.New(), rand.Reader, &k.PublicKey, make([]byte, 32), nil)
	if _, ok := oaepDecode(sha256.New(), rawDecrypt(k, c), k.Size()); ok {
		t.Fatal("SHA-1 encoding accepted as SHA-256")
	}
}

func FuzzOAEPDecode(f *testing.F) {
	f.Add([]byte{}, 256)
	f.Add(make([]byte, 256), 256)
	f.Add(bytes.Repeat([]byte{1}, 256), 256)
	f.Fuzz(func(t *testing.T, em []byte, k int) {
		if k < 0 || k > 1024 {
			return
		}
		oaepDecode(sha256.New(), em, k) // must not panic
	})
}
