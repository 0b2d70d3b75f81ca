package agent

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
)

// FuzzAsymRequest feeds arbitrary bodies to the asymmetric, HMAC and
// key-agreement operations, seeded with requests on real keys of each
// kind: each must answer with an API error or a response, never panic and
// never an internal error.
func FuzzAsymRequest(f *testing.F) {
	ts := newTestServer(f)
	ctx := context.Background()
	keys := map[string]string{}
	for _, k := range []struct{ spec, usage string }{
		{"ECC_NIST_P256", "SIGN_VERIFY"}, {"ECC_NIST_P256", "KEY_AGREEMENT"}, {"RSA_2048", "ENCRYPT_DECRYPT"},
		{"ECC_NIST_EDWARDS25519", "SIGN_VERIFY"}, {"ML_DSA_44", "SIGN_VERIFY"}, {"HMAC_256", "GENERATE_VERIFY_MAC"},
		{"SM2", "SIGN_VERIFY"}, {"SM2", "ENCRYPT_DECRYPT"}, {"SM2", "KEY_AGREEMENT"},
	} {
		out, err := ts.client.CreateKey(ctx, &kms.CreateKeyInput{KeySpec: typesKeySpec(k.spec), KeyUsage: typesUsage(k.usage)})
		if err != nil {
			f.Fatal(err)
		}
		keys[k.spec+"/"+k.usage] = *out.KeyMetadata.KeyId
	}
	sym := ts.createKey(f)
	peer, _ := ecdh.P256().GenerateKey(rand.Reader)
	peerDER, _ := x509.MarshalPKIXPublicKey(peer.PublicKey())
	b64 := base64.StdEncoding.EncodeToString
	ops := []string{"Sign", "Verify", "GetPublicKey", "DeriveSharedSecret", "GenerateDataKeyPair",
		"GenerateDataKeyPairWithoutPlaintext", "GenerateMac", "VerifyMac", "Encrypt", "Decrypt"}
	seeds := map[string]string{
		"Sign":                `{"KeyId":"` + keys["ECC_NIST_P256/SIGN_VERIFY"] + `","Message":"bQ==","SigningAlgorithm":"ECDSA_SHA_256"}`,
		"Verify":              `{"KeyId":"` + keys["ECC_NIST_EDWARDS25519/SIGN_VERIFY"] + `","Message":"bQ==","Signature":"` + b64(make([]byte, 64)) + `","SigningAlgorithm":"ED25519_SHA_512"}`,
		"GetPublicKey":        `{"KeyId":"` + keys["ML_DSA_44/SIGN_VERIFY"] + `"}`,
		"DeriveSharedSecret":  `{"KeyId":"` + keys["ECC_NIST_P256/KEY_AGREEMENT"] + `","KeyAgreementAlgorithm":"ECDH","PublicKey":"` + b64(peerDER) + `"}`,
		"GenerateDataKeyPair": `{"KeyId":"` + sym + `","KeyPairSpec":"ECC_NIST_P256"}`,
		"GenerateMac":         `{"KeyId":"` + keys["HMAC_256/GENERATE_VERIFY_MAC"] + `","Message":"bQ==","MacAlgorithm":"HMAC_SHA_256"}`,
		"VerifyMac":           `{"KeyId":"` + keys["HMAC_256/GENERATE_VERIFY_MAC"] + `","Message":"bQ==","Mac":"bQ==","MacAlgorithm":"HMAC_SHA_256"}`,
		"Decrypt":             `{"KeyId":"` + keys["RSA_2048/ENCRYPT_DECRYPT"] + `","CiphertextBlob":"` + b64(make([]byte, 256)) + `","EncryptionAlgorithm":"RSAES_OAEP_SHA_256"}`,
		"Encrypt":             `{"KeyId":"` + keys["RSA_2048/ENCRYPT_DECRYPT"] + `","Plaintext":"bQ==","EncryptionAlgorithm":"RSAES_OAEP_SHA_1"}`,
	}
	for i, op := range ops {
		if s, ok := seeds[op]; ok {
			f.Add(uint8(i), []byte(s))
		}
	}
	f.Add(uint8(0), []byte(`{"KeyId":"`+keys["ML_DSA_44/SIGN_VERIFY"]+`","Message":"`+b64(make([]byte, 64))+`","MessageType":"EXTERNAL_MU","SigningAlgorithm":"ML_DSA_SHAKE_256"}`))
	f.Add(uint8(3), []byte(`{"KeyId":"`+keys["ECC_NIST_P256/KEY_AGREEMENT"]+`","KeyAgreementAlgorithm":"ECDH","PublicKey":"MAA="}`))
	sm2Pub, _ := ts.client.GetPublicKey(ctx, &kms.GetPublicKeyInput{KeyId: aws.String(keys["SM2/ENCRYPT_DECRYPT"])})
	sm2CT, _ := ts.client.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(keys["SM2/ENCRYPT_DECRYPT"]), Plaintext: []byte("m"), EncryptionAlgorithm: "SM2PKE"})
	f.Add(uint8(0), []byte(`{"KeyId":"`+keys["SM2/SIGN_VERIFY"]+`","Message":"`+b64(make([]byte, 32))+`","MessageType":"DIGEST","SigningAlgorithm":"SM2DSA"}`))
	f.Add(uint8(1), []byte(`{"KeyId":"`+keys["SM2/SIGN_VERIFY"]+`","Message":"bQ==","Signature":"MAYCAQECAQE=","SigningAlgorithm":"SM2DSA"}`))
	f.Add(uint8(3), []byte(`{"KeyId":"`+keys["SM2/KEY_AGREEMENT"]+`","KeyAgreementAlgorithm":"ECDH","PublicKey":"`+b64(sm2Pub.PublicKey)+`"}`))
	f.Add(uint8(4), []byte(`{"KeyId":"`+sym+`","KeyPairSpec":"SM2"}`))
	f.Add(uint8(8), []byte(`{"KeyId":"`+keys["SM2/ENCRYPT_DECRYPT"]+`","Plaintext":"bQ==","EncryptionAlgorithm":"SM2PKE"}`))
	f.Add(uint8(9), []byte(`{"KeyId":"`+keys["SM2/ENCRYPT_DECRYPT"]+`","CiphertextBlob":"`+b64(sm2CT.CiphertextBlob)+`","EncryptionAlgorithm":"SM2PKE"}`))
	f.Fuzz(func(t *testing.T, op uint8, body []byte) {
		name := ops[int(op)%len(ops)]
		r := &request{ctx: t.Context(), op: name, body: body, principal: "test"}
		out, err := ts.ops[name](ts.Server, r)
		if err != nil {
			if ae, _ := apiErrorFrom(err); ae.Type == errInternal {
				t.Fatalf("%s(%q): internal error %v", name, body, err)
			}
			return
		}
		if out == nil {
			t.Fatalf("%s: nil response and nil error", name)
		}
	})
}

func typesKeySpec(s string) types.KeySpec    { return types.KeySpec(s) }
func typesUsage(s string) types.KeyUsageType { return types.KeyUsageType(s) }
