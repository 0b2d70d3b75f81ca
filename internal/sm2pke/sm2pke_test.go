package sm2pke

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/sm2/sm2ec"
	"github.com/emmansun/gmsm/sm3"
	"github.com/emmansun/gmsm/smx509"
)

func newKey(t testing.TB) *sm2.PrivateKey {
	t.Helper()
	k, err := sm2.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func scalar(k *sm2.PrivateKey) []byte { return k.D.FillBytes(make([]byte, 32)) }

func TestRoundTrip(t *testing.T) {
	k := newKey(t)
	for _, n := range []int{1, 2, 31, 32, 33, 100, 1024, 4096} {
		msg := make([]byte, n)
		rand.Read(msg)
		ct, err := Encrypt(rand.Reader, &k.PublicKey, msg)
		if err != nil {
			t.Fatal(err)
		}
		if want := n + 32; len(ct) < want+65 || len(ct) > want+80 {
			t.Errorf("%d-byte plaintext: %d-byte ciphertext", n, len(ct))
		}
		pt, err := Decrypt(scalar(k), ct)
		if err != nil || !bytes.Equal(pt, msg) {
			t.Fatalf("%d bytes: round trip: %v", n, err)
		}
		// gmsm's own Decrypt reads the same encoding (from 16 bytes up,
		// where its all-zero-C2 check cannot misfire).
		if pt, err := sm2.Decrypt(k, ct); n >= 16 && (err != nil || !bytes.Equal(pt, msg)) {
			t.Fatalf("%d bytes: gmsm Decrypt: %v", n, err)
		}
	}
	// One-byte plaintexts hit step A5 (t all zero) about once in 256:
	// every one of these must decrypt.
	for i := 0; i < 2000; i++ {
		msg := []byte{byte(i)}
		ct, err := Encrypt(rand.Reader, &k.PublicKey, msg)
		if err != nil {
			t.Fatal(err)
		}
		if pt, err := Decrypt(scalar(k), ct); err != nil || !bytes.Equal(pt, msg) {
			t.Fatalf("one-byte plaintext %d: %v", i, err)
		}
	}
}

// fixedScalars reads the given 32-byte scalars in turn.
type fixedScalars struct{ ks [][]byte }

func (f *fixedScalars) Read(p []byte) (int, error) {
	if len(f.ks) == 0 {
		return 0, io.EOF
	}
	n := copy(p, f.ks[0])
	f.ks = f.ks[1:]
	return n, nil
}

// kdfByte is t for a one-byte plaintext under ephemeral scalar k.
func kdfByte(k *sm2.PrivateKey, eph []byte) byte {
	x2, y2 := sm2ec.P256().ScalarMult(k.X, k.Y, eph)
	return sm3.Kdf(point(x2, y2), 1)[0]
}

// findScalar returns a scalar whose one-byte t satisfies ok.
func findScalar(t *testing.T, k *sm2.PrivateKey, ok func(byte) bool) []byte {
	for i := 0; i < 1<<14; i++ {
		eph := make([]byte, 32)
		rand.Read(eph)
		eph[0] &= 0x7f // below n
		if ok(kdfByte(k, eph)) {
			return eph
		}
	}
	t.Fatal("no scalar found")
	return nil
}

// TestCornerCases: the two cases gmsm v0.30.1 gets wrong, checked with
// OpenSSL where it is installed.
func TestCornerCases(t *testing.T) {
	k := newKey(t)
	// A5: the first scalar gives t = 0; Encrypt must take the second
	// and still encrypt to the key.
	zero := findScalar(t, k, func(b byte) bool { return b == 0 })
	good := findScalar(t, k, func(b byte) bool { return b != 0 })
	msg := []byte{0x41}
	ct, err := Encrypt(&fixedScalars{[][]byte{zero, good}}, &k.PublicKey, msg)
	if err != nil {
		t.Fatal(err)
	}
	x1, _, _, c2, _ := Unmarshal(ct)
	gx, _ := sm2ec.P256().ScalarBaseMult(good)
	if x1.Cmp(gx) != 0 || c2[0] != msg[0]^kdfByte(k, good) {
		t.Fatal("A5 retry did not use the second scalar on the key's point")
	}
	// C2 all zero: the plaintext equals t. Valid, and must decrypt.
	eph := findScalar(t, k, func(b byte) bool { return b != 0 })
	ctZero, err := Encrypt(&fixedScalars{[][]byte{eph}}, &k.PublicKey, []byte{kdfByte(k, eph)})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, _, c2, _ := Unmarshal(ctZero); c2[0] != 0 {
		t.Fatal("C2 is not zero")
	}
	for _, c := range []struct {
		name string
		ct   []byte
		want []byte
	}{{"A5 retry", ct, msg}, {"C2 zero", ctZero, []byte{kdfByte(k, eph)}}} {
		if pt, err := Decrypt(scalar(k), c.ct); err != nil || !bytes.Equal(pt, c.want) {
			t.Fatalf("%s: Decrypt: %v", c.name, err)
		}
		if got := opensslDecrypt(t, k, c.ct); got != nil && !bytes.Equal(got, c.want) {
			t.Fatalf("%s: openssl decrypts to %x, want %x", c.name, got, c.want)
		}
	}
}

func writePEM(t *testing.T, dir, name, typ string, der []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// opensslDecrypt decrypts ct with OpenSSL 3 (nil if openssl is missing).
func opensslDecrypt(t *testing.T, k *sm2.PrivateKey, ct []byte) []byte {
	t.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		return nil
	}
	dir := t.TempDir()
	der, err := smx509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	in := filepath.Join(dir, "ct")
	os.WriteFile(in, ct, 0o600)
	out, err := exec.Command("openssl", "pkeyutl", "-decrypt", "-inkey", writePEM(t, dir, "k.pem", "PRIVATE KEY", der), "-in", in).Output()
	if err != nil {
		t.Fatalf("openssl pkeyutl -decrypt: %v", err)
	}
	return out
}

// TestOpenSSL: OpenSSL decrypts this package's ciphertexts and this
// package decrypts OpenSSL's.
func TestOpenSSL(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("no openssl")
	}
	k := newKey(t)
	dir := t.TempDir()
	pubDER, err := smx509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pub := writePEM(t, dir, "pub.pem", "PUBLIC KEY", pubDER)
	for _, n := range []int{1, 17, 32, 1024} {
		msg := make([]byte, n)
		rand.Read(msg)
		ct, err := Encrypt(rand.Reader, &k.PublicKey, msg)
		if err != nil {
			t.Fatal(err)
		}
		if got := opensslDecrypt(t, k, ct); !bytes.Equal(got, msg) {
			t.Fatalf("%d bytes: openssl decrypts to %x", n, got)
		}
		in := filepath.Join(dir, "msg")
		os.WriteFile(in, msg, 0o600)
		oct, err := exec.Command("openssl", "pkeyutl", "-encrypt", "-pubin", "-inkey", pub, "-in", in).Output()
		if err != nil {
			t.Fatalf("openssl pkeyutl -encrypt: %v", err)
		}
		if pt, err := Decrypt(scalar(k), oct); err != nil || !bytes.Equal(pt, msg) {
			t.Fatalf("%d bytes: OpenSSL's ciphertext: %v", n, err)
		}
	}
}

func TestDecryptRejects(t *testing.T) {
	k := newKey(t)
	msg := []byte("sixteen byte msg")
	ct, err := Encrypt(rand.Reader, &k.PublicKey, msg)
	if err != nil {
		t.Fatal(err)
	}
	x1, y1, c3, c2, _ := Unmarshal(ct)
	flip := func(b []byte, i int) []byte { b = bytes.Clone(b); b[i] ^= 1; return b }
	mustMarshal := func(x, y *big.Int, c3, c2 []byte) []byte {
		b, err := marshal(x, y, c3, c2)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	p := sm2ec.P256().Params().P
	for name, bad := range map[string][]byte{
		"empty":          nil,
		"not asn1":       []byte{0x04, 1, 2, 3},
		"trailing byte":  append(bytes.Clone(ct), 0),
		"truncated":      ct[:len(ct)-1],
		"c2 flipped":     mustMarshal(x1, y1, c3, flip(c2, 3)),
		"c3 flipped":     mustMarshal(x1, y1, flip(c3, 0), c2),
		"c3 short":       mustMarshal(x1, y1, c3[:31], c2),
		"c2 empty":       mustMarshal(x1, y1, c3, []byte{}),
		"off curve":      mustMarshal(x1, new(big.Int).Add(y1, big.NewInt(1)), c3, c2),
		"infinity":       mustMarshal(new(big.Int), new(big.Int), c3, c2),
		"negative x":     mustMarshal(new(big.Int).Neg(x1), y1, c3, c2),
		"x plus p":       mustMarshal(new(big.Int).Add(x1, p), y1, c3, c2),
		"plain C1C3C2":   append(append(point(x1, y1), c3...), c2...),
		"other key's ct": mustEncrypt(t, &newKey(t).PublicKey, msg),
	} {
		if pt, err := Decrypt(scalar(k), bad); !errors.Is(err, ErrDecrypt) || pt != nil {
			t.Errorf("%s: (%x, %v), want ErrDecrypt", name, pt, err)
		}
	}
	if _, err := Decrypt(make([]byte, 32), ct); !errors.Is(err, ErrKey) {
		t.Errorf("zero scalar: %v", err)
	}
	if _, err := Encrypt(rand.Reader, &k.PublicKey, nil); err == nil {
		t.Error("empty plaintext encrypted")
	}
}

func mustEncrypt(t *testing.T, pub *ecdsa.PublicKey, msg []byte) []byte {
	t.Helper()
	ct, err := Encrypt(rand.Reader, pub, msg)
	if err != nil {
		t.Fatal(err)
	}
	return ct
}

// FuzzDecrypt: no input panics; whatever decrypts re-encodes to itself.
func FuzzDecrypt(f *testing.F) {
	k := newKey(f)
	ct, _ := Encrypt(rand.Reader, &k.PublicKey, []byte("seed"))
	f.Add(ct)
	f.Add([]byte{0x30, 0x00})
	d := scalar(k)
	f.Fuzz(func(t *testing.T, in []byte) {
		x1, y1, c3, c2, err := Unmarshal(in)
		if err != nil {
			return
		}
		if back, err := marshal(x1, y1, c3, c2); err != nil || !bytes.Equal(back, in) {
			t.Fatalf("accepted a non-canonical encoding")
		}
		Decrypt(d, in)
	})
}

// BenchmarkDecrypt: this package's Decrypt next to gmsm's, the baseline.
func BenchmarkDecrypt(b *testing.B) {
	k := newKey(b)
	ct, _ := Encrypt(rand.Reader, &k.PublicKey, make([]byte, 32))
	d := scalar(k)
	b.Run("sm2pke", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := Decrypt(d, ct); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
	b.Run("gmsm", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := sm2.Decrypt(k, ct); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
}
