//go:build kmsdtest

package hsmpool_test

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"errors"
	"testing"

	"github.com/kmsd/kmsd/hsmpool"
	"github.com/kmsd/kmsd/hsmpool/hsmtest"
)

func TestUnsafeExportForTest(t *testing.T) {
	p := hsmtest.NewPool(t)
	ctx := testCtx(t)
	w := mustWrapped(t, p)
	key, err := p.UnsafeExportForTest(ctx, w)
	if err != nil {
		t.Fatal(err)
	}
	if len(key) != 32 {
		t.Fatalf("exported key is %d bytes, want 32", len(key))
	}
	if bytes.Contains(w, key[:8]) {
		t.Fatal("wrapped key contains the plaintext key")
	}
	// The HSM's GCM and Go's agree on the exported key.
	sealed, err := p.Seal(ctx, w, []byte("cross-check"), []byte("aad"))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := aes.NewCipher(key)
	aead, _ := cipher.NewGCM(block)
	pt, err := aead.Open(nil, sealed[:12], sealed[12:], []byte("aad"))
	if err != nil || string(pt) != "cross-check" {
		t.Fatalf("Go GCM Open of HSM output = %q, %v", pt, err)
	}
	if _, err := p.UnsafeExportForTest(ctx, w[:len(w)-8]); !errors.Is(err, hsmpool.ErrAuthFailed) {
		t.Fatalf("export of a bad wrapped key: %v", err)
	}
}
