package xks

import (
	"context"
	"testing"
	"time"
)

// BenchmarkTokenKeysEncrypt is the baseline: AES-GCM of 32 bytes in the
// HSM with a token key, no network.
func BenchmarkTokenKeysEncrypt(b *testing.B) {
	p := newTestProxy(b)
	ctx := context.Background()
	if err := p.keys.Create(ctx, "bench"); err != nil {
		b.Fatal(err)
	}
	pt := make([]byte, 32)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, _, _, err := p.keys.Encrypt(ctx, "bench", pt, []byte("aad")); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkProxyEncrypt is the same operation through the XKS API: client
// JSON + SigV4 signing, HTTPS (kept-alive connections), the server's SigV4
// check, and the CDIV check (one extra HSM decrypt). Compare with
// BenchmarkTokenKeysEncrypt for the ratio.
func BenchmarkProxyEncrypt(b *testing.B) {
	p := newTestProxy(b)
	ctx := context.Background()
	if err := p.keys.Create(ctx, "bench"); err != nil {
		b.Fatal(err)
	}
	c := p.client(b, func(c *ClientConfig) { c.Timeout = 10 * time.Second })
	pt := make([]byte, 32)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.Encrypt(ctx, "bench", md, pt, []byte("aad")); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
