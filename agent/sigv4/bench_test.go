package sigv4

import (
	"crypto/hmac"
	"crypto/sha256"
	"testing"

	"github.com/valyala/fasthttp"
)

// BenchmarkVerify verifies a typical Go-SDK-signed KMS Encrypt request (key
// cache warm). Compare with BenchmarkHMACOnly.
func BenchmarkVerify(b *testing.B) {
	raw := sdkSign(b, kmsOpts())
	v := newTestVerifier(b, testTime)
	if _, err := v.Verify(mustParse(b, raw)); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(raw)))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		// fasthttp.Request is not safe for concurrent use: one per goroutine.
		req := &fasthttp.Request{}
		if err := req.Read(bufioReader(raw)); err != nil {
			b.Error(err)
			return
		}
		for pb.Next() {
			if _, err := v.Verify(req); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkHMACOnly is the baseline: only the final HMAC-SHA256 of a
// SigV4 string to sign, the least work any verifier must do.
func BenchmarkHMACOnly(b *testing.B) {
	sts := []byte("AWS4-HMAC-SHA256\n20260123T141500Z\n20260123/eu-west-1/kms/aws4_request\n" +
		"3bfa292879f6447bbcda7001decf97f4a54dc650c8942174ae0a9121cf58ad04")
	key := deriveKey([]byte(testSecret), []byte("20260123"), testRegion, "kms")
	b.ReportAllocs()
	b.SetBytes(int64(len(sts)))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		mac := hmac.New(sha256.New, key[:])
		var sum [sha256.Size]byte
		for pb.Next() {
			mac.Reset()
			mac.Write(sts)
			mac.Sum(sum[:0])
		}
	})
}
