package agent

import (
	"context"
	"encoding/base64"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/kmsd/kmsd/hsmpool/hsmtest"
)

// benchSign measures Sign (ECDSA P-256, RSA-2048 PSS or SM2DSA) through the whole
// server, with the private key in the HSM or sealed (SealKeyPairs): the
// ratio of the two is what keeping the key in SoftHSM2 costs.
func benchSign(b *testing.B, spec types.KeySpec, alg string, sealed bool) {
	lib, label, pin := hsmtest.NewToken(b)
	ts := startTestServerCfg(b, b.TempDir(), tokenRef{lib, label, pin}, Config{SealKeyPairs: sealed})
	out, err := ts.client.CreateKey(context.Background(), &kms.CreateKeyInput{KeySpec: spec, KeyUsage: "SIGN_VERIFY"})
	if err != nil {
		b.Fatal(err)
	}
	msg := base64.StdEncoding.EncodeToString(make([]byte, 32))
	benchOp(b, ts, "Sign", []byte(`{"KeyId":"`+*out.KeyMetadata.KeyId+`","Message":"`+msg+`","MessageType":"DIGEST","SigningAlgorithm":"`+alg+`"}`))
}

func BenchmarkSignECDSAHSM(b *testing.B)    { benchSign(b, "ECC_NIST_P256", "ECDSA_SHA_256", false) }
func BenchmarkSignECDSASealed(b *testing.B) { benchSign(b, "ECC_NIST_P256", "ECDSA_SHA_256", true) }
func BenchmarkSignRSAHSM(b *testing.B)      { benchSign(b, "RSA_2048", "RSASSA_PSS_SHA_256", false) }
func BenchmarkSignRSASealed(b *testing.B)   { benchSign(b, "RSA_2048", "RSASSA_PSS_SHA_256", true) }

// BenchmarkSignSM2 is SM2DSA with the sealed key (SoftHSM2 has no SM2);
// its twin is BenchmarkSignECDSASealed (the same path with a P-256 key).
func BenchmarkSignSM2(b *testing.B) { benchSign(b, "SM2", "SM2DSA", true) }

// BenchmarkGenerateMac is HMAC-SHA-256 in the HSM through the server; its
// twin is BenchmarkGenerateDataKey (one HSM AES-GCM operation).
func BenchmarkGenerateMac(b *testing.B) {
	ts := newTestServer(b)
	out, err := ts.client.CreateKey(context.Background(), &kms.CreateKeyInput{KeySpec: "HMAC_256", KeyUsage: "GENERATE_VERIFY_MAC"})
	if err != nil {
		b.Fatal(err)
	}
	benchOp(b, ts, "GenerateMac", []byte(`{"KeyId":"`+*out.KeyMetadata.KeyId+`","Message":"aGVsbG8=","MacAlgorithm":"HMAC_SHA_256"}`))
}
