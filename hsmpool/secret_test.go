//go:build kmsdtest

package hsmpool_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"hash"
	"testing"

	"github.com/kmsd/kmsd/hsmpool"
	"github.com/kmsd/kmsd/hsmpool/hsmtest"
)

// TestHMACExport checks the HSM's HMAC against Go's crypto/hmac with the
// secret exported through the test hook, for every hash kmsd uses.
func TestHMACExport(t *testing.T) {
	p := hsmtest.NewPool(t)
	ctx := testCtx(t)
	for _, c := range []struct {
		hash, size int
		h          func() hash.Hash
	}{
		{hsmpool.SHA224, 28, sha256.New224},
		{hsmpool.SHA256, 32, sha256.New},
		{hsmpool.SHA384, 48, sha512.New384},
		{hsmpool.SHA512, 64, sha512.New},
	} {
		w, err := p.GenerateWrappedSecret(ctx, c.size)
		if err != nil {
			t.Fatal(err)
		}
		key, err := p.UnsafeExportSecretForTest(ctx, w)
		if err != nil {
			t.Fatal(err)
		}
		// SoftHSM2 2.6 unwraps CKM_AES_KEY_WRAP_PAD without removing the
		// RFC 5649 padding (a 28-byte secret comes back as 32 bytes, the
		// last 4 zero). HMAC pads its key with zeros to the block size, so
		// the MAC is the same as with the 28-byte secret; check that the
		// extra bytes are zeros.
		if len(key) < c.size || len(key) > (c.size+7)/8*8 {
			t.Fatalf("secret is %d bytes, want %d", len(key), c.size)
		}
		for _, b := range key[c.size:] {
			if b != 0 {
				t.Fatalf("secret has nonzero bytes past %d", c.size)
			}
		}
		msg := []byte("message to authenticate")
		got, err := p.HMAC(ctx, w, c.hash, msg)
		if err != nil {
			t.Fatal(err)
		}
		m := hmac.New(c.h, key[:c.size]) // the secret as generated
		m.Write(msg)
		if !hmac.Equal(got, m.Sum(nil)) {
			t.Fatalf("SHA-%d: HSM HMAC differs from Go's", c.hash)
		}
		if ok, err := p.VerifyHMAC(ctx, w, c.hash, msg, got); err != nil || !ok {
			t.Fatalf("VerifyHMAC of a good MAC = %v, %v", ok, err)
		}
		got[0] ^= 1
		if ok, err := p.VerifyHMAC(ctx, w, c.hash, msg, got); err != nil || ok {
			t.Fatalf("VerifyHMAC of a bad MAC = %v, %v", ok, err)
		}
	}
	// A foreign wrapped secret is ErrAuthFailed.
	bad := make([]byte, 40)
	if _, err := p.HMAC(ctx, bad, hsmpool.SHA256, []byte("x")); !errors.Is(err, hsmpool.ErrAuthFailed) {
		t.Fatalf("HMAC with a foreign wrapped key: %v, want ErrAuthFailed", err)
	}
}
