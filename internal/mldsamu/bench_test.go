package mldsamu

import (
	"testing"

	"filippo.io/mldsa"
	"filippo.io/mldsa/mldsacrypto"
)

// BenchmarkVerify times Verify of an external μ next to its baseline twin,
// filippo.io/mldsa's Verify of the message (which also computes μ), so the
// figure to read is the ratio.
func BenchmarkVerify(b *testing.B) {
	for _, ps := range allParams {
		sk, err := mldsa.GenerateKey(ps.params)
		if err != nil {
			b.Fatal(err)
		}
		pub := sk.PublicKey()
		pk := pub.Bytes()
		msg := []byte("benchmark message")
		mu := computeMu(pk, nil, msg)
		sig, err := sk.Sign(nil, mu, mldsacrypto.MLDSAMu)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(ps.name+"/mldsamu", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if ok, err := Verify(pk, mu, sig); !ok || err != nil {
					b.Fatal("does not verify")
				}
			}
		})
		b.Run(ps.name+"/filippo", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := mldsa.Verify(pub, msg, sig, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
