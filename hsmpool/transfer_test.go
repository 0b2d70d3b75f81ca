package hsmpool_test

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/kmsd/kmsd/hsmpool"
	"github.com/kmsd/kmsd/hsmpool/hsmtest"
)

// TestDomainKeyTransfer moves the domain key from one token to another
// through the HSMs only: material wrapped on the first opens on the second.
func TestDomainKeyTransfer(t *testing.T) {
	ctx := context.Background()
	a := hsmtest.NewPool(t)
	lib, label, pin := hsmtest.NewToken(t)
	b, err := hsmpool.New(hsmpool.Config{Lib: lib, TokenLabel: label, PIN: pin})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	if has, _ := b.HasDomainKey(ctx); has {
		t.Fatal("fresh token has a domain key")
	}
	pub, tl, err := b.GenerateTransportKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.ExportDomainKey(ctx, []byte("not a key")); err == nil {
		t.Fatal("exported for a malformed public key")
	}
	wrapped, err := a.ExportDomainKey(ctx, pub)
	if err != nil {
		t.Fatal(err)
	}
	bad := bytes.Clone(wrapped)
	bad[10] ^= 1
	if err := b.ImportDomainKey(ctx, bad, tl); !errors.Is(err, hsmpool.ErrAuthFailed) {
		t.Fatalf("tampered transfer: %v", err)
	}
	if err := b.ImportDomainKey(ctx, wrapped, tl); err != nil {
		t.Fatal(err)
	}
	m, err := a.GenerateWrappedKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := a.Seal(ctx, m, []byte("shared"), []byte("aad"))
	if err != nil {
		t.Fatal(err)
	}
	pt, err := b.Open(ctx, m, sealed, []byte("aad"))
	if err != nil || string(pt) != "shared" {
		t.Fatalf("material of token A on token B: %v", err)
	}
	if err := b.ImportDomainKey(ctx, wrapped, tl); err == nil {
		t.Fatal("imported a second domain key")
	}
}
