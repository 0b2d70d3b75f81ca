package hsmpool_test

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/kmsd/kmsd/hsmpool"
	"github.com/kmsd/kmsd/hsmpool/hsmtest"
)

// TestMaterialTransfer moves one key material between two tokens with
// different domain keys, HSM to HSM: what the second token re-wraps opens
// what the first one sealed, and what travels is neither the first token's
// blob nor the second's.
func TestMaterialTransfer(t *testing.T) {
	ctx := context.Background()
	a, b := hsmtest.NewPool(t), hsmtest.NewPool(t)
	pub, err := b.PeerTransportKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	again, err := b.PeerTransportKey(ctx)
	if err != nil || !bytes.Equal(pub, again) {
		t.Fatalf("the peer transport key changed between calls: %v", err)
	}
	m, err := a.GenerateWrappedKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.ExportMaterial(ctx, m, []byte("not a key")); err == nil {
		t.Fatal("exported for a malformed public key")
	}
	bad := bytes.Clone(m)
	bad[3] ^= 1
	if _, err := a.ExportMaterial(ctx, bad, pub); !errors.Is(err, hsmpool.ErrAuthFailed) {
		t.Fatalf("tampered material blob: %v", err)
	}
	tr, err := a.ExportMaterial(ctx, m, pub)
	if err != nil {
		t.Fatal(err)
	}
	if len(tr) != 384 { // RSA-3072 OAEP output
		t.Fatalf("transported material is %d bytes", len(tr))
	}
	if _, err := a.ImportMaterial(ctx, tr); err == nil {
		t.Fatal("a token without the transport private key imported material")
	}
	trBad := bytes.Clone(tr)
	trBad[7] ^= 1
	if _, err := b.ImportMaterial(ctx, trBad); !errors.Is(err, hsmpool.ErrAuthFailed) {
		t.Fatalf("tampered transported material: %v", err)
	}
	mb, err := b.ImportMaterial(ctx, tr)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(mb, m) {
		t.Fatal("the two tokens share a domain key; the test proves nothing")
	}
	if _, err := a.Open(ctx, mb, []byte("0123456789abcdef0123456789abcdef"), nil); err == nil {
		t.Fatal("token A opened token B's blob")
	}
	sealed, err := a.Seal(ctx, m, []byte("across regions"), []byte("aad"))
	if err != nil {
		t.Fatal(err)
	}
	pt, err := b.Open(ctx, mb, sealed, []byte("aad"))
	if err != nil || string(pt) != "across regions" {
		t.Fatalf("material of token A re-wrapped on token B: %v", err)
	}
}

// BenchmarkMaterialTransfer measures moving one material version between
// two tokens (ExportMaterial on the sender, ImportMaterial on the
// receiver), next to its baseline twin: generating a fresh wrapped key.
func BenchmarkMaterialTransfer(b *testing.B) {
	ctx := context.Background()
	a, c := hsmtest.NewPool(b), hsmtest.NewPool(b)
	pub, err := c.PeerTransportKey(ctx)
	if err != nil {
		b.Fatal(err)
	}
	m, err := a.GenerateWrappedKey(ctx)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("transfer", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			tr, err := a.ExportMaterial(ctx, m, pub)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := c.ImportMaterial(ctx, tr); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("baseline-generate", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := a.GenerateWrappedKey(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
}
