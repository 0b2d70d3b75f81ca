package agent

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha3"
	"crypto/sha512"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/kmsd/kmsd/cluster"
	"github.com/kmsd/kmsd/hsmpool/hsmtest"
	"github.com/kmsd/kmsd/quota"
)

// asymFixture is one test server whose keys are made once and shared by
// the subtests (RSA-4096 generation is slow).
type asymFixture struct {
	ts   *testServer
	mu   sync.Mutex
	keys map[string]string // spec/usage -> key id
}

func newAsymFixture(t *testing.T, cfg Config) *asymFixture {
	lib, label, pin := hsmtest.NewToken(t)
	return &asymFixture{ts: startTestServerCfg(t, t.TempDir(), tokenRef{lib, label, pin}, cfg), keys: map[string]string{}}
}

// wantForm is where each spec's private key lives on SoftHSM2 2.6 (README).
func wantForm(spec types.KeySpec, sealAll bool) string {
	s := string(spec)
	switch {
	case strings.HasPrefix(s, "HMAC_"):
		return cluster.MaterialHSMSecret
	case sealAll || s == "ECC_NIST_EDWARDS25519" || strings.HasPrefix(s, "ML_DSA_"):
		return cluster.MaterialSealed
	}
	return cluster.MaterialHSMPrivate
}

func (f *asymFixture) key(t *testing.T, spec types.KeySpec, usage types.KeyUsageType) string {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	name := string(spec) + "/" + string(usage)
	if id, ok := f.keys[name]; ok {
		return id
	}
	out, err := f.ts.client.CreateKey(context.Background(), &kms.CreateKeyInput{KeySpec: spec, KeyUsage: usage})
	if err != nil {
		t.Fatalf("CreateKey %s: %v", name, err)
	}
	f.keys[name] = *out.KeyMetadata.KeyId
	return *out.KeyMetadata.KeyId
}

// expectedAlgorithms is the AWS API model's algorithm list per key spec
// and usage, written out independently of the code's table.
var expectedAlgorithms = []struct {
	spec  types.KeySpec
	usage types.KeyUsageType
	sig   []string
	enc   []string
	mac   []string
	ka    []string
}{
	{spec: "RSA_2048", usage: "SIGN_VERIFY", sig: []string{"RSASSA_PSS_SHA_256", "RSASSA_PSS_SHA_384", "RSASSA_PSS_SHA_512", "RSASSA_PKCS1_V1_5_SHA_256", "RSASSA_PKCS1_V1_5_SHA_384", "RSASSA_PKCS1_V1_5_SHA_512"}},
	{spec: "RSA_2048", usage: "ENCRYPT_DECRYPT", enc: []string{"RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256"}},
	{spec: "RSA_3072", usage: "ENCRYPT_DECRYPT", enc: []string{"RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256"}},
	{spec: "RSA_4096", usage: "SIGN_VERIFY", sig: []string{"RSASSA_PSS_SHA_256", "RSASSA_PSS_SHA_384", "RSASSA_PSS_SHA_512", "RSASSA_PKCS1_V1_5_SHA_256", "RSASSA_PKCS1_V1_5_SHA_384", "RSASSA_PKCS1_V1_5_SHA_512"}},
	{spec: "ECC_NIST_P256", usage: "SIGN_VERIFY", sig: []string{"ECDSA_SHA_256"}},
	{spec: "ECC_NIST_P384", usage: "SIGN_VERIFY", sig: []string{"ECDSA_SHA_384"}},
	{spec: "ECC_NIST_P521", usage: "SIGN_VERIFY", sig: []string{"ECDSA_SHA_512"}},
	{spec: "ECC_NIST_P256", usage: "KEY_AGREEMENT", ka: []string{"ECDH"}},
	{spec: "ECC_NIST_P384", usage: "KEY_AGREEMENT", ka: []string{"ECDH"}},
	{spec: "ECC_NIST_P521", usage: "KEY_AGREEMENT", ka: []string{"ECDH"}},
	{spec: "ECC_SECG_P256K1", usage: "SIGN_VERIFY", sig: []string{"ECDSA_SHA_256"}},
	{spec: "ECC_NIST_EDWARDS25519", usage: "SIGN_VERIFY", sig: []string{"ED25519_SHA_512", "ED25519_PH_SHA_512"}},
	{spec: "ML_DSA_44", usage: "SIGN_VERIFY", sig: []string{"ML_DSA_SHAKE_256"}},
	{spec: "ML_DSA_65", usage: "SIGN_VERIFY", sig: []string{"ML_DSA_SHAKE_256"}},
	{spec: "ML_DSA_87", usage: "SIGN_VERIFY", sig: []string{"ML_DSA_SHAKE_256"}},
	{spec: "HMAC_224", usage: "GENERATE_VERIFY_MAC", mac: []string{"HMAC_SHA_224"}},
	{spec: "HMAC_256", usage: "GENERATE_VERIFY_MAC", mac: []string{"HMAC_SHA_256"}},
	{spec: "HMAC_384", usage: "GENERATE_VERIFY_MAC", mac: []string{"HMAC_SHA_384"}},
	{spec: "HMAC_512", usage: "GENERATE_VERIFY_MAC", mac: []string{"HMAC_SHA_512"}},
}

func strs[T ~string](in []T) []string {
	var out []string
	for _, v := range in {
		out = append(out, string(v))
	}
	return out
}

// TestAsymmetricKeys runs the matrix on private keys made and used in the
// HSM where SoftHSM2 can, and again with every private key made in Go and
// sealed by the HSM (Config.SealKeyPairs).
func TestAsymmetricKeys(t *testing.T) {
	for _, sealAll := range []bool{false, true} {
		name := "HSM"
		if sealAll {
			name = "Sealed"
		}
		t.Run(name, func(t *testing.T) { testAsymmetricKeys(t, sealAll) })
	}
}

func testAsymmetricKeys(t *testing.T, sealAll bool) {
	f := newAsymFixture(t, Config{SealKeyPairs: sealAll})
	ctx := context.Background()
	c := f.ts.client

	t.Run("DescribeAndGetPublicKey", func(t *testing.T) {
		for _, e := range expectedAlgorithms {
			id := f.key(t, e.spec, e.usage)
			k, _ := f.ts.node.Key(id)
			if m, _ := k.CurrentMaterial(); m.Form != wantForm(e.spec, sealAll) {
				t.Errorf("%s/%s: material form %q, want %q", e.spec, e.usage, m.Form, wantForm(e.spec, sealAll))
			}
			d, err := c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: &id})
			if err != nil {
				t.Fatal(err)
			}
			md := d.KeyMetadata
			if md.CurrentKeyMaterialId != nil {
				t.Errorf("%s: CurrentKeyMaterialId %s on a key that is not symmetric", e.spec, *md.CurrentKeyMaterialId)
			}
			if md.KeySpec != e.spec || md.KeyUsage != e.usage || string(md.CustomerMasterKeySpec) != string(e.spec) {
				t.Errorf("%s/%s: metadata spec %s usage %s", e.spec, e.usage, md.KeySpec, md.KeyUsage)
			}
			for _, got := range []struct {
				name      string
				got, want []string
			}{
				{"SigningAlgorithms", strs(md.SigningAlgorithms), e.sig},
				{"EncryptionAlgorithms", strs(md.EncryptionAlgorithms), e.enc},
				{"MacAlgorithms", strs(md.MacAlgorithms), e.mac},
				{"KeyAgreementAlgorithms", strs(md.KeyAgreementAlgorithms), e.ka},
			} {
				if !reflect.DeepEqual(got.got, got.want) {
					t.Errorf("%s/%s: DescribeKey %s = %v, want %v", e.spec, e.usage, got.name, got.got, got.want)
				}
			}
			pk, err := c.GetPublicKey(ctx, &kms.GetPublicKeyInput{KeyId: &id})
			if strings.HasPrefix(string(e.spec), "HMAC") {
				wantAPIError(t, err, "UnsupportedOperationException")
				continue
			}
			if err != nil {
				t.Fatalf("%s: GetPublicKey: %v", e.spec, err)
			}
			if pk.KeySpec != e.spec || pk.KeyUsage != e.usage || !reflect.DeepEqual(strs(pk.SigningAlgorithms), e.sig) ||
				!reflect.DeepEqual(strs(pk.EncryptionAlgorithms), e.enc) || !reflect.DeepEqual(strs(pk.KeyAgreementAlgorithms), e.ka) {
				t.Errorf("%s/%s: GetPublicKey %+v", e.spec, e.usage, pk)
			}
			checkPublicKeyType(t, e.spec, pk.PublicKey)
		}
		// A symmetric key has no public key.
		_, err := c.GetPublicKey(ctx, &kms.GetPublicKeyInput{KeyId: aws.String(f.ts.createKey(t))})
		wantAPIError(t, err, "UnsupportedOperationException")
	})

	t.Run("CreateKeyValidation", func(t *testing.T) {
		for _, bad := range []struct {
			spec  types.KeySpec
			usage types.KeyUsageType
			code  string
		}{
			{"ECC_NIST_P256", "ENCRYPT_DECRYPT", "ValidationException"},
			{"ECC_NIST_P256", "", "ValidationException"}, // default usage ENCRYPT_DECRYPT
			{"ECC_SECG_P256K1", "KEY_AGREEMENT", "ValidationException"},
			{"RSA_2048", "KEY_AGREEMENT", "ValidationException"},
			{"RSA_2048", "GENERATE_VERIFY_MAC", "ValidationException"},
			{"HMAC_256", "SIGN_VERIFY", "ValidationException"},
			{"ML_DSA_44", "ENCRYPT_DECRYPT", "ValidationException"},
			{"ECC_NIST_EDWARDS25519", "KEY_AGREEMENT", "ValidationException"},
			{"SYMMETRIC_DEFAULT", "SIGN_VERIFY", "ValidationException"},
			{"SM2", "GENERATE_VERIFY_MAC", "ValidationException"},
			{"RSA_1024", "SIGN_VERIFY", "ValidationException"},
		} {
			_, err := c.CreateKey(ctx, &kms.CreateKeyInput{KeySpec: bad.spec, KeyUsage: bad.usage})
			if err == nil {
				t.Fatalf("CreateKey %s/%s succeeded", bad.spec, bad.usage)
			}
			wantAPIError(t, err, bad.code)
		}
	})

	t.Run("SignVerify", func(t *testing.T) {
		msg := []byte("the message kmsd signs")
		for _, e := range expectedAlgorithms {
			if e.usage != "SIGN_VERIFY" {
				continue
			}
			id := f.key(t, e.spec, e.usage)
			pub := publicKeyOf(t, c, id)
			for _, alg := range e.sig {
				mts := []types.MessageType{"RAW", "DIGEST"}
				switch alg {
				case "ED25519_SHA_512":
					mts = []types.MessageType{"RAW"}
				case "ED25519_PH_SHA_512":
					mts = []types.MessageType{"DIGEST"}
				case "ML_DSA_SHAKE_256":
					mts = []types.MessageType{"RAW", "EXTERNAL_MU"}
				}
				for _, mt := range mts {
					in := signMessage(t, alg, mt, msg, pub)
					out, err := c.Sign(ctx, &kms.SignInput{KeyId: &id, Message: in, MessageType: mt, SigningAlgorithm: types.SigningAlgorithmSpec(alg)})
					if err != nil {
						t.Fatalf("%s %s %s: Sign: %v", e.spec, alg, mt, err)
					}
					if string(out.SigningAlgorithm) != alg || !strings.HasSuffix(*out.KeyId, id) {
						t.Fatalf("Sign response %+v", out)
					}
					// An independent library verifies with the public key
					// from GetPublicKey.
					if err := verifyIndependently(t, e.spec, alg, pub, msg, out.Signature); err != nil {
						t.Fatalf("%s %s %s: independent verification: %v", e.spec, alg, mt, err)
					}
					if alg == "ML_DSA_SHAKE_256" {
						// A signature of M verifies as one of μ(M) and
						// back: the two MessageTypes sign the same μ.
						otherMT, otherIn := types.MessageType("EXTERNAL_MU"), signMessage(t, alg, "EXTERNAL_MU", msg, pub)
						if mt == "EXTERNAL_MU" {
							otherMT, otherIn = "RAW", msg
						}
						v, err := c.Verify(ctx, &kms.VerifyInput{KeyId: &id, Message: otherIn, MessageType: otherMT, Signature: out.Signature, SigningAlgorithm: types.SigningAlgorithmSpec(alg)})
						if err != nil || !v.SignatureValid {
							t.Fatalf("%s: signed as %s, Verify as %s: %v", e.spec, mt, otherMT, err)
						}
					}
					v, err := c.Verify(ctx, &kms.VerifyInput{KeyId: &id, Message: in, MessageType: mt, Signature: out.Signature, SigningAlgorithm: types.SigningAlgorithmSpec(alg)})
					if err != nil || !v.SignatureValid {
						t.Fatalf("%s %s %s: Verify: %v", e.spec, alg, mt, err)
					}
					bad := bytes.Clone(out.Signature)
					bad[len(bad)/2] ^= 0x40
					_, err = c.Verify(ctx, &kms.VerifyInput{KeyId: &id, Message: in, MessageType: mt, Signature: bad, SigningAlgorithm: types.SigningAlgorithmSpec(alg)})
					wantAPIError(t, err, "KMSInvalidSignatureException")
					other := bytes.Clone(in)
					other[0] ^= 1
					_, err = c.Verify(ctx, &kms.VerifyInput{KeyId: &id, Message: other, MessageType: mt, Signature: out.Signature, SigningAlgorithm: types.SigningAlgorithmSpec(alg)})
					wantAPIError(t, err, "KMSInvalidSignatureException")
				}
			}
		}
	})

	t.Run("OpenSSL", func(t *testing.T) {
		if _, err := exec.LookPath("openssl"); err != nil {
			t.Skip("no openssl")
		}
		dir := t.TempDir()
		msg := []byte("signed by kmsd, checked by openssl")
		write := func(name string, b []byte) string {
			p := filepath.Join(dir, name)
			if err := os.WriteFile(p, b, 0o600); err != nil {
				t.Fatal(err)
			}
			return p
		}
		for _, c2 := range []struct {
			spec types.KeySpec
			alg  string
			opts []string
		}{
			{"RSA_2048", "RSASSA_PSS_SHA_256", []string{"-pkeyopt", "rsa_padding_mode:pss", "-pkeyopt", "rsa_pss_saltlen:digest", "-pkeyopt", "digest:sha256"}},
			{"RSA_4096", "RSASSA_PSS_SHA_512", []string{"-pkeyopt", "rsa_padding_mode:pss", "-pkeyopt", "rsa_pss_saltlen:digest", "-pkeyopt", "digest:sha512"}},
			{"RSA_2048", "RSASSA_PKCS1_V1_5_SHA_384", []string{"-pkeyopt", "digest:sha384"}},
			{"ECC_NIST_P256", "ECDSA_SHA_256", nil},
			{"ECC_NIST_P521", "ECDSA_SHA_512", nil},
			{"ECC_SECG_P256K1", "ECDSA_SHA_256", nil},
		} {
			id := f.key(t, c2.spec, "SIGN_VERIFY")
			out, err := c.Sign(ctx, &kms.SignInput{KeyId: &id, Message: msg, SigningAlgorithm: types.SigningAlgorithmSpec(c2.alg)})
			if err != nil {
				t.Fatal(err)
			}
			h := sigHash(c2.alg)
			digest := write("digest", hashBytes(h, msg))
			args := append([]string{"pkeyutl", "-verify", "-pubin", "-keyform", "DER", "-inkey", write("pub.der", publicKeyOf(t, c, id)),
				"-in", digest, "-sigfile", write("sig", out.Signature)}, c2.opts...)
			if b, err := exec.Command("openssl", args...).CombinedOutput(); err != nil || !strings.Contains(string(b), "Verified Successfully") {
				t.Fatalf("%s %s: openssl: %v: %s", c2.spec, c2.alg, err, b)
			}
		}
	})

	t.Run("MessageRules", func(t *testing.T) {
		ec := f.key(t, "ECC_NIST_P256", "SIGN_VERIFY")
		ed := f.key(t, "ECC_NIST_EDWARDS25519", "SIGN_VERIFY")
		ml := f.key(t, "ML_DSA_44", "SIGN_VERIFY")
		rs := f.key(t, "RSA_2048", "SIGN_VERIFY")
		enc := f.key(t, "RSA_2048", "ENCRYPT_DECRYPT")
		sm := f.key(t, "SM2", "SIGN_VERIFY")
		smEnc := f.key(t, "SM2", "ENCRYPT_DECRYPT")
		for _, c2 := range []struct {
			name string
			key  string
			msg  []byte
			mt   types.MessageType
			alg  types.SigningAlgorithmSpec
			code string
		}{
			{"raw 4096 bytes", ec, make([]byte, 4096), "RAW", "ECDSA_SHA_256", ""},
			{"raw 4097 bytes", ec, make([]byte, 4097), "RAW", "ECDSA_SHA_256", "ValidationException"},
			{"digest 32 bytes", ec, make([]byte, 32), "DIGEST", "ECDSA_SHA_256", ""},
			{"digest 31 bytes", ec, make([]byte, 31), "DIGEST", "ECDSA_SHA_256", "ValidationException"},
			{"digest 48 bytes for SHA-256", ec, make([]byte, 48), "DIGEST", "ECDSA_SHA_256", "ValidationException"},
			{"rsa digest 48 bytes", rs, make([]byte, 48), "DIGEST", "RSASSA_PSS_SHA_384", ""},
			{"rsa digest 64 bytes for SHA-384", rs, make([]byte, 64), "DIGEST", "RSASSA_PSS_SHA_384", "ValidationException"},
			{"external mu on ECDSA", ec, make([]byte, 64), "EXTERNAL_MU", "ECDSA_SHA_256", "ValidationException"},
			{"ecdsa algorithm of another curve", ec, []byte("m"), "RAW", "ECDSA_SHA_384", "InvalidKeyUsageException"},
			{"rsa algorithm on ec key", ec, []byte("m"), "RAW", "RSASSA_PSS_SHA_256", "InvalidKeyUsageException"},
			{"SM2DSA", ec, []byte("m"), "RAW", "SM2DSA", "InvalidKeyUsageException"},
			{"unknown algorithm", ec, []byte("m"), "RAW", "ECDSA_SHA_1", "ValidationException"},
			{"unknown message type", ec, []byte("m"), "HASHED", "ECDSA_SHA_256", "ValidationException"},
			{"ed25519 digest", ed, make([]byte, 64), "DIGEST", "ED25519_SHA_512", "ValidationException"},
			{"ed25519ph raw", ed, []byte("m"), "RAW", "ED25519_PH_SHA_512", "ValidationException"},
			{"ed25519ph digest 32 bytes", ed, make([]byte, 32), "DIGEST", "ED25519_PH_SHA_512", "ValidationException"},
			{"ml-dsa raw 4096", ml, make([]byte, 4096), "RAW", "ML_DSA_SHAKE_256", ""},
			{"ml-dsa digest", ml, make([]byte, 64), "DIGEST", "ML_DSA_SHAKE_256", "ValidationException"},
			{"ml-dsa mu 63 bytes", ml, make([]byte, 63), "EXTERNAL_MU", "ML_DSA_SHAKE_256", "ValidationException"},
			{"encryption key", enc, []byte("m"), "RAW", "RSASSA_PSS_SHA_256", "InvalidKeyUsageException"},
			{"sm2 raw 4096 bytes", sm, make([]byte, 4096), "RAW", "SM2DSA", ""},
			{"sm2 raw 4097 bytes", sm, make([]byte, 4097), "RAW", "SM2DSA", "ValidationException"},
			{"sm2 digest 32 bytes", sm, make([]byte, 32), "DIGEST", "SM2DSA", ""},
			{"sm2 digest 31 bytes", sm, make([]byte, 31), "DIGEST", "SM2DSA", "ValidationException"},
			{"sm2 digest 33 bytes", sm, make([]byte, 33), "DIGEST", "SM2DSA", "ValidationException"},
			{"sm2 external mu", sm, make([]byte, 64), "EXTERNAL_MU", "SM2DSA", "ValidationException"},
			{"ecdsa on sm2 key", sm, []byte("m"), "RAW", "ECDSA_SHA_256", "InvalidKeyUsageException"},
			{"sm2 encryption key", smEnc, []byte("m"), "RAW", "SM2DSA", "InvalidKeyUsageException"},
			{"symmetric key", f.ts.createKey(t), []byte("m"), "RAW", "RSASSA_PSS_SHA_256", "InvalidKeyUsageException"},
		} {
			_, err := c.Sign(ctx, &kms.SignInput{KeyId: aws.String(c2.key), Message: c2.msg, MessageType: c2.mt, SigningAlgorithm: c2.alg})
			if c2.code == "" {
				if err != nil {
					t.Errorf("%s: %v", c2.name, err)
				}
				continue
			}
			if err == nil {
				t.Errorf("%s: Sign succeeded, want %s", c2.name, c2.code)
				continue
			}
			wantAPIError(t, err, c2.code)
		}
		// DryRun checks everything but signs nothing.
		_, err := c.Sign(ctx, &kms.SignInput{KeyId: aws.String(ec), Message: []byte("m"), SigningAlgorithm: "ECDSA_SHA_256", DryRun: aws.Bool(true)})
		wantAPIError(t, err, "DryRunOperationException")
		// Verify of an external μ has Sign's μ rules; a signature of the
		// wrong length or all zeros is simply not valid.
		muVerify := func(mu, sig []byte, dry bool) error {
			_, err := c.Verify(ctx, &kms.VerifyInput{KeyId: aws.String(ml), Message: mu, MessageType: "EXTERNAL_MU", Signature: sig, SigningAlgorithm: "ML_DSA_SHAKE_256", DryRun: aws.Bool(dry)})
			return err
		}
		wantAPIError(t, muVerify(make([]byte, 63), make([]byte, 100), false), "ValidationException")
		wantAPIError(t, muVerify(make([]byte, 65), make([]byte, 100), false), "ValidationException")
		wantAPIError(t, muVerify(make([]byte, 64), make([]byte, 100), false), "KMSInvalidSignatureException")
		wantAPIError(t, muVerify(make([]byte, 64), make([]byte, 2420), false), "KMSInvalidSignatureException")
		wantAPIError(t, muVerify(make([]byte, 64), make([]byte, 100), true), "DryRunOperationException")
	})

	t.Run("RSAEncryptDecrypt", func(t *testing.T) {
		for _, spec := range []types.KeySpec{"RSA_2048", "RSA_3072"} {
			id := f.key(t, spec, "ENCRYPT_DECRYPT")
			pubAny, err := x509.ParsePKIXPublicKey(publicKeyOf(t, c, id))
			if err != nil {
				t.Fatal(err)
			}
			pub := pubAny.(*rsa.PublicKey)
			k := pub.Size()
			for _, alg := range []types.EncryptionAlgorithmSpec{"RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256"} {
				h := crypto.SHA1
				if alg == "RSAES_OAEP_SHA_256" {
					h = crypto.SHA256
				}
				limit := k - 2*h.Size() - 2
				// The guide's limits: RSA_2048 214/190, RSA_3072 342/318.
				want := map[string]int{"RSA_2048/RSAES_OAEP_SHA_1": 214, "RSA_2048/RSAES_OAEP_SHA_256": 190,
					"RSA_3072/RSAES_OAEP_SHA_1": 342, "RSA_3072/RSAES_OAEP_SHA_256": 318}[string(spec)+"/"+string(alg)]
				if limit != want {
					t.Fatalf("%s %s: limit %d, guide says %d", spec, alg, limit, want)
				}
				pt := bytes.Repeat([]byte{0xa5}, limit)
				out, err := c.Encrypt(ctx, &kms.EncryptInput{KeyId: &id, Plaintext: pt, EncryptionAlgorithm: alg})
				if err != nil {
					t.Fatalf("%s %s: Encrypt %d bytes: %v", spec, alg, limit, err)
				}
				if out.EncryptionAlgorithm != alg || len(out.CiphertextBlob) != k {
					t.Fatalf("Encrypt response %+v", out)
				}
				_, err = c.Encrypt(ctx, &kms.EncryptInput{KeyId: &id, Plaintext: append(pt, 1), EncryptionAlgorithm: alg})
				wantAPIError(t, err, "ValidationException")
				d, err := c.Decrypt(ctx, &kms.DecryptInput{KeyId: &id, CiphertextBlob: out.CiphertextBlob, EncryptionAlgorithm: alg})
				if err != nil || !bytes.Equal(d.Plaintext, pt) || d.EncryptionAlgorithm != alg {
					t.Fatalf("%s %s: Decrypt: %v", spec, alg, err)
				}
				// A ciphertext made by Go's own OAEP with the public key decrypts.
				var hh = sha1.New()
				if h == crypto.SHA256 {
					hh = sha256.New()
				}
				ct, err := rsa.EncryptOAEP(hh, rand.Reader, pub, []byte("made outside kmsd"), nil)
				if err != nil {
					t.Fatal(err)
				}
				d, err = c.Decrypt(ctx, &kms.DecryptInput{KeyId: &id, CiphertextBlob: ct, EncryptionAlgorithm: alg})
				if err != nil || string(d.Plaintext) != "made outside kmsd" {
					t.Fatalf("%s %s: Decrypt of external OAEP: %v", spec, alg, err)
				}
			}
			// The wrong OAEP hash, a tampered ciphertext, no KeyId, no
			// algorithm: AWS's errors.
			out, err := c.Encrypt(ctx, &kms.EncryptInput{KeyId: &id, Plaintext: []byte("x"), EncryptionAlgorithm: "RSAES_OAEP_SHA_256"})
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.Decrypt(ctx, &kms.DecryptInput{KeyId: &id, CiphertextBlob: out.CiphertextBlob, EncryptionAlgorithm: "RSAES_OAEP_SHA_1"})
			wantAPIError(t, err, "InvalidCiphertextException")
			bad := bytes.Clone(out.CiphertextBlob)
			bad[10] ^= 1
			_, err = c.Decrypt(ctx, &kms.DecryptInput{KeyId: &id, CiphertextBlob: bad, EncryptionAlgorithm: "RSAES_OAEP_SHA_256"})
			wantAPIError(t, err, "InvalidCiphertextException")
			// Without KeyId kmsd reads the key from the blob, which an RSA
			// ciphertext has not: as in AWS, KeyId is required for it.
			_, err = c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: out.CiphertextBlob})
			wantAPIError(t, err, "InvalidCiphertextException")
			_, err = c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: out.CiphertextBlob, EncryptionAlgorithm: "RSAES_OAEP_SHA_256"})
			wantAPIError(t, err, "InvalidKeyUsageException")
			_, err = c.Decrypt(ctx, &kms.DecryptInput{KeyId: &id, CiphertextBlob: out.CiphertextBlob})
			wantAPIError(t, err, "InvalidKeyUsageException")
			_, err = c.Encrypt(ctx, &kms.EncryptInput{KeyId: &id, Plaintext: []byte("x")})
			wantAPIError(t, err, "InvalidKeyUsageException")
			_, err = c.Encrypt(ctx, &kms.EncryptInput{KeyId: &id, Plaintext: []byte("x"), EncryptionAlgorithm: "RSAES_OAEP_SHA_256", EncryptionContext: map[string]string{"a": "b"}})
			wantAPIError(t, err, "ValidationException")
		}
		// RSA_4096's limits, and signing keys cannot encrypt.
		sig := f.key(t, "RSA_4096", "SIGN_VERIFY")
		_, err := c.Encrypt(ctx, &kms.EncryptInput{KeyId: &sig, Plaintext: []byte("x"), EncryptionAlgorithm: "RSAES_OAEP_SHA_256"})
		wantAPIError(t, err, "InvalidKeyUsageException")
		if got := maxOAEPPlaintext(4096, crypto.SHA1); got != 470 {
			t.Fatalf("RSA_4096 SHA-1 limit %d, guide says 470", got)
		}
		if got := maxOAEPPlaintext(4096, crypto.SHA256); got != 446 {
			t.Fatalf("RSA_4096 SHA-256 limit %d, guide says 446", got)
		}
	})

	t.Run("ReEncrypt", func(t *testing.T) {
		r1 := f.key(t, "RSA_2048", "ENCRYPT_DECRYPT")
		r2 := f.key(t, "RSA_3072", "ENCRYPT_DECRYPT")
		sym := f.ts.createKey(t)
		ectx := map[string]string{"k": "v"}
		pt := []byte("moved between keys")
		enc, err := c.Encrypt(ctx, &kms.EncryptInput{KeyId: &r1, Plaintext: pt, EncryptionAlgorithm: "RSAES_OAEP_SHA_1"})
		if err != nil {
			t.Fatal(err)
		}
		// RSA -> symmetric -> RSA -> RSA, decrypting at the end.
		toSym, err := c.ReEncrypt(ctx, &kms.ReEncryptInput{CiphertextBlob: enc.CiphertextBlob, SourceKeyId: &r1,
			SourceEncryptionAlgorithm: "RSAES_OAEP_SHA_1", DestinationKeyId: &sym, DestinationEncryptionContext: ectx})
		if err != nil {
			t.Fatal(err)
		}
		if toSym.SourceEncryptionAlgorithm != "RSAES_OAEP_SHA_1" || toSym.DestinationEncryptionAlgorithm != "SYMMETRIC_DEFAULT" {
			t.Fatalf("response %+v", toSym)
		}
		toRSA, err := c.ReEncrypt(ctx, &kms.ReEncryptInput{CiphertextBlob: toSym.CiphertextBlob, SourceEncryptionContext: ectx,
			DestinationKeyId: &r2, DestinationEncryptionAlgorithm: "RSAES_OAEP_SHA_256"})
		if err != nil {
			t.Fatal(err)
		}
		toRSA2, err := c.ReEncrypt(ctx, &kms.ReEncryptInput{CiphertextBlob: toRSA.CiphertextBlob, SourceKeyId: &r2,
			SourceEncryptionAlgorithm: "RSAES_OAEP_SHA_256", DestinationKeyId: &r1, DestinationEncryptionAlgorithm: "RSAES_OAEP_SHA_256"})
		if err != nil {
			t.Fatal(err)
		}
		d, err := c.Decrypt(ctx, &kms.DecryptInput{KeyId: &r1, CiphertextBlob: toRSA2.CiphertextBlob, EncryptionAlgorithm: "RSAES_OAEP_SHA_256"})
		if err != nil || !bytes.Equal(d.Plaintext, pt) {
			t.Fatalf("Decrypt after three ReEncrypts: %v", err)
		}
		// AWS's rules: the RSA source needs its algorithm, no context on RSA.
		_, err = c.ReEncrypt(ctx, &kms.ReEncryptInput{CiphertextBlob: enc.CiphertextBlob, SourceKeyId: &r1, DestinationKeyId: &sym})
		wantAPIError(t, err, "InvalidKeyUsageException")
		_, err = c.ReEncrypt(ctx, &kms.ReEncryptInput{CiphertextBlob: enc.CiphertextBlob, SourceKeyId: &r1,
			SourceEncryptionAlgorithm: "RSAES_OAEP_SHA_1", SourceEncryptionContext: ectx, DestinationKeyId: &sym})
		wantAPIError(t, err, "ValidationException")
		_, err = c.ReEncrypt(ctx, &kms.ReEncryptInput{CiphertextBlob: enc.CiphertextBlob, SourceKeyId: &r1,
			SourceEncryptionAlgorithm: "RSAES_OAEP_SHA_256", DestinationKeyId: &sym})
		wantAPIError(t, err, "InvalidCiphertextException")
	})

	t.Run("DeriveSharedSecret", func(t *testing.T) {
		for _, c2 := range []struct {
			spec  types.KeySpec
			curve ecdh.Curve
			name  string
		}{
			{"ECC_NIST_P256", ecdh.P256(), "P-256"},
			{"ECC_NIST_P384", ecdh.P384(), "P-384"},
			{"ECC_NIST_P521", ecdh.P521(), "P-521"},
		} {
			id := f.key(t, c2.spec, "KEY_AGREEMENT")
			peer, err := c2.curve.GenerateKey(rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			peerDER, err := x509.MarshalPKIXPublicKey(peer.PublicKey())
			if err != nil {
				t.Fatal(err)
			}
			out, err := c.DeriveSharedSecret(ctx, &kms.DeriveSharedSecretInput{KeyId: &id, KeyAgreementAlgorithm: "ECDH", PublicKey: peerDER})
			if err != nil {
				t.Fatalf("%s: %v", c2.spec, err)
			}
			if out.KeyAgreementAlgorithm != "ECDH" || out.KeyOrigin != "AWS_KMS" {
				t.Fatalf("response %+v", out)
			}
			// Go's crypto/ecdh derives the same secret from the peer's side.
			kmsPubAny, err := x509.ParsePKIXPublicKey(publicKeyOf(t, c, id))
			if err != nil {
				t.Fatal(err)
			}
			kmsPub, err := kmsPubAny.(*ecdsa.PublicKey).ECDH()
			if err != nil {
				t.Fatal(err)
			}
			want, err := peer.ECDH(kmsPub)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out.SharedSecret, want) {
				t.Fatalf("%s: shared secret differs from Go's crypto/ecdh", c2.spec)
			}
			// And so does OpenSSL.
			if _, err := exec.LookPath("openssl"); err == nil {
				dir := t.TempDir()
				privDER, err := x509.MarshalPKCS8PrivateKey(peer)
				if err != nil {
					t.Fatal(err)
				}
				privPath := filepath.Join(dir, "peer.pem")
				os.WriteFile(privPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER}), 0o600)
				pubPath := filepath.Join(dir, "kms.der")
				os.WriteFile(pubPath, publicKeyOf(t, c, id), 0o600)
				b, err := exec.Command("openssl", "pkeyutl", "-derive", "-inkey", privPath, "-peerkey", pubPath, "-peerform", "DER").Output()
				if err != nil || !bytes.Equal(b, out.SharedSecret) {
					t.Fatalf("%s: openssl pkeyutl -derive disagrees (%v)", c2.spec, err)
				}
			}
			// A peer key on another curve, garbage, the wrong usage.
			other, _ := ecdh.P256().GenerateKey(rand.Reader)
			if c2.name == "P-256" {
				other, _ = ecdh.P384().GenerateKey(rand.Reader)
			}
			otherDER, _ := x509.MarshalPKIXPublicKey(other.PublicKey())
			_, err = c.DeriveSharedSecret(ctx, &kms.DeriveSharedSecretInput{KeyId: &id, KeyAgreementAlgorithm: "ECDH", PublicKey: otherDER})
			wantAPIError(t, err, "ValidationException")
			_, err = c.DeriveSharedSecret(ctx, &kms.DeriveSharedSecretInput{KeyId: &id, KeyAgreementAlgorithm: "ECDH", PublicKey: []byte("not DER")})
			wantAPIError(t, err, "ValidationException")
		}
		sv := f.key(t, "ECC_NIST_P256", "SIGN_VERIFY")
		peer, _ := ecdh.P256().GenerateKey(rand.Reader)
		peerDER, _ := x509.MarshalPKIXPublicKey(peer.PublicKey())
		_, err := c.DeriveSharedSecret(ctx, &kms.DeriveSharedSecretInput{KeyId: &sv, KeyAgreementAlgorithm: "ECDH", PublicKey: peerDER})
		wantAPIError(t, err, "InvalidKeyUsageException")
		ka := f.key(t, "ECC_NIST_P256", "KEY_AGREEMENT")
		_, err = c.Sign(ctx, &kms.SignInput{KeyId: &ka, Message: []byte("m"), SigningAlgorithm: "ECDSA_SHA_256"})
		wantAPIError(t, err, "InvalidKeyUsageException")
	})

	t.Run("GenerateDataKeyPair", func(t *testing.T) {
		sym := f.ts.createKey(t)
		ectx := map[string]string{"purpose": "pair"}
		for _, spec := range []types.DataKeyPairSpec{"RSA_2048", "ECC_NIST_P256", "ECC_NIST_P384", "ECC_NIST_P521", "ECC_SECG_P256K1", "ECC_NIST_EDWARDS25519"} {
			out, err := c.GenerateDataKeyPair(ctx, &kms.GenerateDataKeyPairInput{KeyId: &sym, KeyPairSpec: spec, EncryptionContext: ectx})
			if err != nil {
				t.Fatalf("%s: %v", spec, err)
			}
			if out.KeyPairSpec != spec || len(out.PrivateKeyPlaintext) == 0 || len(out.PublicKey) == 0 {
				t.Fatalf("%s: response %+v", spec, out)
			}
			// The encrypted private key decrypts to the plaintext one.
			d, err := c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: out.PrivateKeyCiphertextBlob, EncryptionContext: ectx})
			if err != nil || !bytes.Equal(d.Plaintext, out.PrivateKeyPlaintext) {
				t.Fatalf("%s: Decrypt of the private key: %v", spec, err)
			}
			checkKeyPair(t, string(spec), out.PrivateKeyPlaintext, out.PublicKey)
			w, err := c.GenerateDataKeyPairWithoutPlaintext(ctx, &kms.GenerateDataKeyPairWithoutPlaintextInput{KeyId: &sym, KeyPairSpec: spec})
			if err != nil {
				t.Fatalf("%s without plaintext: %v", spec, err)
			}
			d, err = c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: w.PrivateKeyCiphertextBlob})
			if err != nil {
				t.Fatal(err)
			}
			checkKeyPair(t, string(spec), d.Plaintext, w.PublicKey)
		}
		for _, spec := range []types.DataKeyPairSpec{"RSA_3072", "RSA_4096"} {
			w, err := c.GenerateDataKeyPairWithoutPlaintext(ctx, &kms.GenerateDataKeyPairWithoutPlaintextInput{KeyId: &sym, KeyPairSpec: spec})
			if err != nil {
				t.Fatalf("%s without plaintext: %v", spec, err)
			}
			d, err := c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: w.PrivateKeyCiphertextBlob})
			if err != nil {
				t.Fatal(err)
			}
			checkKeyPair(t, string(spec), d.Plaintext, w.PublicKey)
		}
		_, err := c.GenerateDataKeyPair(ctx, &kms.GenerateDataKeyPairInput{KeyId: &sym, KeyPairSpec: "RSA_1024"})
		wantAPIError(t, err, "ValidationException")
		asym := f.key(t, "RSA_2048", "ENCRYPT_DECRYPT")
		_, err = c.GenerateDataKeyPair(ctx, &kms.GenerateDataKeyPairInput{KeyId: &asym, KeyPairSpec: "ECC_NIST_P256"})
		wantAPIError(t, err, "InvalidKeyUsageException")
	})

	t.Run("UpdateAlias", func(t *testing.T) {
		// The new target must have the same key type (symmetric,
		// asymmetric or HMAC) and usage; the spec may differ.
		name := "alias/asym-" + strconv.FormatBool(sealAll)
		rs := f.key(t, "RSA_2048", "SIGN_VERIFY")
		if _, err := c.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: &name, TargetKeyId: &rs}); err != nil {
			t.Fatal(err)
		}
		ec := f.key(t, "ECC_NIST_P256", "SIGN_VERIFY")
		if _, err := c.UpdateAlias(ctx, &kms.UpdateAliasInput{AliasName: &name, TargetKeyId: &ec}); err != nil {
			t.Fatalf("UpdateAlias RSA -> ECC signing key: %v", err)
		}
		for _, other := range []string{f.key(t, "ECC_NIST_P256", "KEY_AGREEMENT"), f.key(t, "HMAC_256", "GENERATE_VERIFY_MAC"), f.ts.createKey(t)} {
			_, err := c.UpdateAlias(ctx, &kms.UpdateAliasInput{AliasName: &name, TargetKeyId: aws.String(other)})
			wantAPIError(t, err, "ValidationException")
		}
		// Sign through the alias.
		if _, err := c.Sign(ctx, &kms.SignInput{KeyId: &name, Message: []byte("m"), SigningAlgorithm: "ECDSA_SHA_256"}); err != nil {
			t.Fatalf("Sign by alias: %v", err)
		}
	})

	t.Run("RotationRefused", func(t *testing.T) {
		for _, k := range []string{f.key(t, "ECC_NIST_P256", "SIGN_VERIFY"), f.key(t, "HMAC_256", "GENERATE_VERIFY_MAC")} {
			_, err := c.EnableKeyRotation(ctx, &kms.EnableKeyRotationInput{KeyId: &k})
			wantAPIError(t, err, "UnsupportedOperationException")
			_, err = c.RotateKeyOnDemand(ctx, &kms.RotateKeyOnDemandInput{KeyId: &k})
			wantAPIError(t, err, "UnsupportedOperationException")
		}
	})

	t.Run("KeyStates", func(t *testing.T) {
		// A fresh key per state: Sign, Verify, GetPublicKey and
		// DeriveSharedSecret follow the guide's table.
		for _, state := range []string{"Disabled", "PendingDeletion"} {
			want := map[string]string{"Disabled": "DisabledException", "PendingDeletion": "KMSInvalidStateException"}[state]
			sv, err := c.CreateKey(ctx, &kms.CreateKeyInput{KeySpec: "ECC_NIST_P256", KeyUsage: "SIGN_VERIFY"})
			if err != nil {
				t.Fatal(err)
			}
			ka, err := c.CreateKey(ctx, &kms.CreateKeyInput{KeySpec: "ECC_NIST_P256", KeyUsage: "KEY_AGREEMENT"})
			if err != nil {
				t.Fatal(err)
			}
			for _, k := range []*string{sv.KeyMetadata.KeyId, ka.KeyMetadata.KeyId} {
				if state == "Disabled" {
					_, err = c.DisableKey(ctx, &kms.DisableKeyInput{KeyId: k})
				} else {
					_, err = c.ScheduleKeyDeletion(ctx, &kms.ScheduleKeyDeletionInput{KeyId: k, PendingWindowInDays: aws.Int32(7)})
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			_, err = c.Sign(ctx, &kms.SignInput{KeyId: sv.KeyMetadata.KeyId, Message: []byte("m"), SigningAlgorithm: "ECDSA_SHA_256"})
			wantAPIError(t, err, want)
			_, err = c.Verify(ctx, &kms.VerifyInput{KeyId: sv.KeyMetadata.KeyId, Message: []byte("m"), Signature: []byte("s"), SigningAlgorithm: "ECDSA_SHA_256"})
			wantAPIError(t, err, want)
			_, err = c.GetPublicKey(ctx, &kms.GetPublicKeyInput{KeyId: sv.KeyMetadata.KeyId})
			wantAPIError(t, err, want)
			peer, _ := ecdh.P256().GenerateKey(rand.Reader)
			peerDER, _ := x509.MarshalPKIXPublicKey(peer.PublicKey())
			_, err = c.DeriveSharedSecret(ctx, &kms.DeriveSharedSecretInput{KeyId: ka.KeyMetadata.KeyId, KeyAgreementAlgorithm: "ECDH", PublicKey: peerDER})
			wantAPIError(t, err, want)
		}
	})
}

func TestHMACKeys(t *testing.T) {
	ts := newTestServer(t)
	ctx := context.Background()
	c := ts.client
	msg := []byte("message to authenticate")
	keys := map[types.KeySpec]string{}
	for _, spec := range []types.KeySpec{"HMAC_224", "HMAC_256", "HMAC_384", "HMAC_512"} {
		out, err := c.CreateKey(ctx, &kms.CreateKeyInput{KeySpec: spec, KeyUsage: "GENERATE_VERIFY_MAC"})
		if err != nil {
			t.Fatal(err)
		}
		id := *out.KeyMetadata.KeyId
		keys[spec] = id
		alg := types.MacAlgorithmSpec("HMAC_SHA_" + strings.TrimPrefix(string(spec), "HMAC_"))
		size := map[types.KeySpec]int{"HMAC_224": 28, "HMAC_256": 32, "HMAC_384": 48, "HMAC_512": 64}[spec]
		m, err := c.GenerateMac(ctx, &kms.GenerateMacInput{KeyId: &id, Message: msg, MacAlgorithm: alg})
		if err != nil {
			t.Fatalf("%s: %v", spec, err)
		}
		if len(m.Mac) != size || m.MacAlgorithm != alg {
			t.Fatalf("%s: MAC of %d bytes, algorithm %s", spec, len(m.Mac), m.MacAlgorithm)
		}
		m2, err := c.GenerateMac(ctx, &kms.GenerateMacInput{KeyId: &id, Message: msg, MacAlgorithm: alg})
		if err != nil || !bytes.Equal(m.Mac, m2.Mac) {
			t.Fatalf("%s: HMAC is not deterministic: %v", spec, err)
		}
		v, err := c.VerifyMac(ctx, &kms.VerifyMacInput{KeyId: &id, Message: msg, MacAlgorithm: alg, Mac: m.Mac})
		if err != nil || !v.MacValid {
			t.Fatalf("%s: VerifyMac: %v", spec, err)
		}
		bad := bytes.Clone(m.Mac)
		bad[0] ^= 1
		_, err = c.VerifyMac(ctx, &kms.VerifyMacInput{KeyId: &id, Message: msg, MacAlgorithm: alg, Mac: bad})
		wantAPIError(t, err, "KMSInvalidMacException")
		_, err = c.VerifyMac(ctx, &kms.VerifyMacInput{KeyId: &id, Message: []byte("other"), MacAlgorithm: alg, Mac: m.Mac})
		wantAPIError(t, err, "KMSInvalidMacException")
		_, err = c.VerifyMac(ctx, &kms.VerifyMacInput{KeyId: &id, Message: msg, MacAlgorithm: alg, Mac: m.Mac[:size-1]})
		wantAPIError(t, err, "KMSInvalidMacException")
		_, err = c.GenerateMac(ctx, &kms.GenerateMacInput{KeyId: &id, Message: make([]byte, 4097), MacAlgorithm: alg})
		wantAPIError(t, err, "ValidationException")
		if _, err := c.GenerateMac(ctx, &kms.GenerateMacInput{KeyId: &id, Message: make([]byte, 4096), MacAlgorithm: alg}); err != nil {
			t.Fatalf("%s: 4096-byte message: %v", spec, err)
		}
	}
	// Two keys of one spec have different secrets.
	other, err := c.CreateKey(ctx, &kms.CreateKeyInput{KeySpec: "HMAC_256", KeyUsage: "GENERATE_VERIFY_MAC"})
	if err != nil {
		t.Fatal(err)
	}
	m1, _ := c.GenerateMac(ctx, &kms.GenerateMacInput{KeyId: aws.String(keys["HMAC_256"]), Message: msg, MacAlgorithm: "HMAC_SHA_256"})
	m2, _ := c.GenerateMac(ctx, &kms.GenerateMacInput{KeyId: other.KeyMetadata.KeyId, Message: msg, MacAlgorithm: "HMAC_SHA_256"})
	if m1 == nil || m2 == nil || bytes.Equal(m1.Mac, m2.Mac) {
		t.Fatal("two HMAC keys gave the same MAC")
	}
	_, err = c.VerifyMac(ctx, &kms.VerifyMacInput{KeyId: other.KeyMetadata.KeyId, Message: msg, MacAlgorithm: "HMAC_SHA_256", Mac: m1.Mac})
	wantAPIError(t, err, "KMSInvalidMacException")
	// Wrong algorithm for the key, wrong key, unknown algorithm.
	_, err = c.GenerateMac(ctx, &kms.GenerateMacInput{KeyId: aws.String(keys["HMAC_256"]), Message: msg, MacAlgorithm: "HMAC_SHA_512"})
	wantAPIError(t, err, "InvalidKeyUsageException")
	_, err = c.GenerateMac(ctx, &kms.GenerateMacInput{KeyId: aws.String(ts.createKey(t)), Message: msg, MacAlgorithm: "HMAC_SHA_256"})
	wantAPIError(t, err, "InvalidKeyUsageException")
	_, err = c.GenerateMac(ctx, &kms.GenerateMacInput{KeyId: aws.String(keys["HMAC_256"]), Message: msg, MacAlgorithm: "HMAC_MD5"})
	wantAPIError(t, err, "ValidationException")
	_, err = c.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(keys["HMAC_256"]), Plaintext: msg})
	wantAPIError(t, err, "InvalidKeyUsageException")
	_, err = c.GenerateMac(ctx, &kms.GenerateMacInput{KeyId: aws.String(keys["HMAC_256"]), Message: msg, MacAlgorithm: "HMAC_SHA_256", DryRun: aws.Bool(true)})
	wantAPIError(t, err, "DryRunOperationException")
	// Disabled: DisabledException.
	if _, err := c.DisableKey(ctx, &kms.DisableKeyInput{KeyId: aws.String(keys["HMAC_384"])}); err != nil {
		t.Fatal(err)
	}
	_, err = c.GenerateMac(ctx, &kms.GenerateMacInput{KeyId: aws.String(keys["HMAC_384"]), Message: msg, MacAlgorithm: "HMAC_SHA_384"})
	wantAPIError(t, err, "DisabledException")
	// GetKeyLastUsage records GenerateMac.
	u, err := c.GetKeyLastUsage(ctx, &kms.GetKeyLastUsageInput{KeyId: other.KeyMetadata.KeyId})
	if err != nil || u.KeyLastUsage == nil || string(u.KeyLastUsage.Operation) != "GenerateMac" {
		t.Fatalf("GetKeyLastUsage after GenerateMac: %+v %v", u, err)
	}
}

// ---- helpers: independent verification ------------------------------------

func publicKeyOf(t *testing.T, c *kms.Client, id string) []byte {
	t.Helper()
	out, err := c.GetPublicKey(context.Background(), &kms.GetPublicKeyInput{KeyId: &id})
	if err != nil {
		t.Fatal(err)
	}
	return out.PublicKey
}

func sigHash(alg string) crypto.Hash {
	switch {
	case strings.HasSuffix(alg, "SHA_256"):
		return crypto.SHA256
	case strings.HasSuffix(alg, "SHA_384"):
		return crypto.SHA384
	}
	return crypto.SHA512
}

func hashBytes(h crypto.Hash, msg []byte) []byte {
	hh := h.New()
	hh.Write(msg)
	return hh.Sum(nil)
}

// signMessage returns what a client sends as Message for msg: msg itself
// (RAW), its digest (DIGEST), or ML-DSA's μ = SHAKE256(SHAKE256(pk, 64) ||
// 0 || 0 || msg, 64) (EXTERNAL_MU, FIPS 204 with an empty context),
// computed here from the DER public key.
func signMessage(t *testing.T, alg string, mt types.MessageType, msg, pubDER []byte) []byte {
	switch mt {
	case "DIGEST":
		return hashBytes(sigHash(alg), msg)
	case "EXTERNAL_MU":
		raw := mldsaRawPublic(t, pubDER)
		tr := shake256(raw, 64)
		return shake256(append(append(tr, 0, 0), msg...), 64)
	}
	return msg
}

// checkPublicKeyType checks that a public key parses (with Go's x509 or
// Python's cryptography) as the spec's type and size.
func checkPublicKeyType(t *testing.T, spec types.KeySpec, der []byte) {
	t.Helper()
	s := string(spec)
	switch {
	case strings.HasPrefix(s, "RSA_"):
		k, err := x509.ParsePKIXPublicKey(der)
		if err != nil {
			t.Fatal(err)
		}
		if bits := k.(*rsa.PublicKey).N.BitLen(); "RSA_"+itoa(bits) != s {
			t.Fatalf("%s: public key of %d bits", s, bits)
		}
	case strings.HasPrefix(s, "ECC_NIST_P"):
		k, err := x509.ParsePKIXPublicKey(der)
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]elliptic.Curve{"ECC_NIST_P256": elliptic.P256(), "ECC_NIST_P384": elliptic.P384(), "ECC_NIST_P521": elliptic.P521()}[s]
		if k.(*ecdsa.PublicKey).Curve != want {
			t.Fatalf("%s: wrong curve", s)
		}
	case s == "ECC_NIST_EDWARDS25519":
		k, err := x509.ParsePKIXPublicKey(der)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := k.(ed25519.PublicKey); !ok {
			t.Fatalf("%s: %T", s, k)
		}
	case s == "ECC_SECG_P256K1", strings.HasPrefix(s, "ML_DSA"):
		want := map[string]string{"ECC_SECG_P256K1": "EllipticCurvePublicKey secp256k1", "ML_DSA_44": "MLDSA44PublicKey",
			"ML_DSA_65": "MLDSA65PublicKey", "ML_DSA_87": "MLDSA87PublicKey"}[s]
		got := python(t, `
import sys
from cryptography.hazmat.primitives.serialization import load_der_public_key
k = load_der_public_key(open(sys.argv[1], "rb").read())
name = type(k).__name__.lstrip("_")
if hasattr(k, "curve"): name = "EllipticCurvePublicKey " + k.curve.name
print(name)`, der)
		if got != "" && !strings.Contains(got, want) {
			t.Fatalf("%s: Python cryptography parsed %q", s, got)
		}
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func shake256(b []byte, n int) []byte { return sha3.SumSHAKE256(b, n) }

// mldsaRawPublic returns the raw public key inside an SPKI.
func mldsaRawPublic(t *testing.T, der []byte) []byte {
	t.Helper()
	var spki struct {
		Alg struct{ OID asn1.ObjectIdentifier }
		Key asn1.BitString
	}
	if _, err := asn1.Unmarshal(der, &spki); err != nil {
		t.Fatal(err)
	}
	return spki.Key.RightAlign()
}

// verifyIndependently verifies sig over msg with a library other than the
// one kmsd signed with: Go's crypto for RSA, NIST ECDSA and Ed25519,
// Python's cryptography for secp256k1 and ML-DSA.
func verifyIndependently(t *testing.T, spec types.KeySpec, alg string, pubDER, msg, sig []byte) error {
	t.Helper()
	s := string(spec)
	if s == "ECC_SECG_P256K1" || strings.HasPrefix(s, "ML_DSA") {
		script := `
import sys
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key
k = load_der_public_key(open(sys.argv[1], "rb").read())
msg = open(sys.argv[2], "rb").read()
sig = open(sys.argv[3], "rb").read()
if hasattr(k, "curve"):
    k.verify(sig, msg, ec.ECDSA(hashes.SHA256()))
else:
    k.verify(sig, msg)
print("ok")`
		if got := python(t, script, pubDER, msg, sig); got != "ok" && got != "" {
			return errString(got)
		}
		return nil
	}
	k, err := x509.ParsePKIXPublicKey(pubDER)
	if err != nil {
		return err
	}
	h := sigHash(alg)
	switch p := k.(type) {
	case *rsa.PublicKey:
		if strings.HasPrefix(alg, "RSASSA_PSS") {
			return rsa.VerifyPSS(p, h, hashBytes(h, msg), sig, &rsa.PSSOptions{SaltLength: h.Size()})
		}
		return rsa.VerifyPKCS1v15(p, h, hashBytes(h, msg), sig)
	case *ecdsa.PublicKey:
		if !ecdsa.VerifyASN1(p, hashBytes(h, msg), sig) {
			return errString("ECDSA signature does not verify")
		}
		return nil
	case ed25519.PublicKey:
		if alg == "ED25519_SHA_512" {
			if !ed25519.Verify(p, msg, sig) {
				return errString("Ed25519 signature does not verify")
			}
			return nil
		}
		// ED25519_PH_SHA_512 with MessageType DIGEST: the client sent
		// SHA-512(msg) and KMS signed it with HashEdDSA, which hashes
		// again: Ed25519ph over the message SHA-512(msg).
		d := sha512.Sum512(msg)
		dd := sha512.Sum512(d[:])
		return ed25519.VerifyWithOptions(p, dd[:], sig, &ed25519.Options{Hash: crypto.SHA512})
	}
	return errString("unexpected key type")
}

type errString string

func (e errString) Error() string { return string(e) }

var (
	pythonOnce sync.Once
	pythonOK   bool
)

// python runs a Python script with the given byte arguments written to
// files and returns its trimmed output; "" (and a log line) if Python's
// cryptography is not installed.
func python(t *testing.T, script string, args ...[]byte) string {
	t.Helper()
	pythonOnce.Do(func() {
		pythonOK = exec.Command("python3", "-c", "import cryptography.hazmat.primitives.asymmetric.mldsa").Run() == nil
	})
	if !pythonOK {
		t.Log("python3 with cryptography (ML-DSA) not available; skipping the Python cross-check")
		return ""
	}
	dir := t.TempDir()
	cmdArgs := []string{"-c", script}
	for i, a := range args {
		p := filepath.Join(dir, "arg"+itoa(i+1))
		if err := os.WriteFile(p, a, 0o600); err != nil {
			t.Fatal(err)
		}
		cmdArgs = append(cmdArgs, p)
	}
	out, err := exec.Command("python3", cmdArgs...).CombinedOutput()
	if err != nil {
		return "python: " + err.Error() + ": " + string(out)
	}
	return strings.TrimSpace(string(out))
}

// checkKeyPair checks a data key pair: the PKCS#8 private key parses and
// its public half is the SPKI public key (Go's x509, or Python's
// cryptography for secp256k1, which Go's x509 does not know).
func checkKeyPair(t *testing.T, spec string, privDER, pubDER []byte) {
	t.Helper()
	if spec == "ECC_SECG_P256K1" {
		got := python(t, `
import sys
from cryptography.hazmat.primitives.serialization import load_der_private_key, load_der_public_key, Encoding, PublicFormat
k = load_der_private_key(open(sys.argv[1], "rb").read(), None)
p = open(sys.argv[2], "rb").read()
print(k.curve.name, k.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo) == p)`, privDER, pubDER)
		if got != "" && got != "secp256k1 True" {
			t.Fatalf("%s: Python says %q", spec, got)
		}
		return
	}
	priv, err := x509.ParsePKCS8PrivateKey(privDER)
	if err != nil {
		t.Fatalf("%s: PKCS#8: %v", spec, err)
	}
	pub, err := x509.MarshalPKIXPublicKey(priv.(crypto.Signer).Public())
	if err != nil || !bytes.Equal(pub, pubDER) {
		t.Fatalf("%s: public key does not match the private key (%v)", spec, err)
	}
	checkPublicKeyType(t, types.KeySpec(spec), pubDER)
}

// TestAsymmetricQuotas checks that Sign, Verify, Encrypt and Decrypt count
// against the RSA or ECC quota of the key, not against the symmetric
// quota, and symmetric Encrypt still against the symmetric one.
func TestAsymmetricQuotas(t *testing.T) {
	lib, label, pin := hsmtest.NewToken(t)
	ts := startTestServerCfg(t, t.TempDir(), tokenRef{lib, label, pin}, Config{Quotas: quota.Config{Rates: map[quota.Group]float64{
		quota.Symmetric: 0, quota.RSA: 0, "op:CreateKey": -1, "gdkp:RSA_2048": 0,
	}}})
	ctx := context.Background()
	c := ts.client
	ec, err := c.CreateKey(ctx, &kms.CreateKeyInput{KeySpec: "ECC_NIST_P256", KeyUsage: "SIGN_VERIFY"})
	if err != nil {
		t.Fatal(err)
	}
	rs, err := c.CreateKey(ctx, &kms.CreateKeyInput{KeySpec: "RSA_2048", KeyUsage: "SIGN_VERIFY"})
	if err != nil {
		t.Fatal(err)
	}
	sig, err := c.Sign(ctx, &kms.SignInput{KeyId: ec.KeyMetadata.KeyId, Message: []byte("m"), SigningAlgorithm: "ECDSA_SHA_256"})
	if err != nil {
		t.Fatalf("Sign on an ECC key with the symmetric quota at 0: %v", err)
	}
	if _, err := c.Verify(ctx, &kms.VerifyInput{KeyId: ec.KeyMetadata.KeyId, Message: []byte("m"), Signature: sig.Signature, SigningAlgorithm: "ECDSA_SHA_256"}); err != nil {
		t.Fatalf("Verify on an ECC key: %v", err)
	}
	_, err = c.Sign(ctx, &kms.SignInput{KeyId: rs.KeyMetadata.KeyId, Message: []byte("m"), SigningAlgorithm: "RSASSA_PSS_SHA_256"})
	wantAPIError(t, err, "ThrottlingException")
	enc, err := c.CreateKey(ctx, &kms.CreateKeyInput{KeySpec: "RSA_2048", KeyUsage: "ENCRYPT_DECRYPT"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Encrypt(ctx, &kms.EncryptInput{KeyId: enc.KeyMetadata.KeyId, Plaintext: []byte("x"), EncryptionAlgorithm: "RSAES_OAEP_SHA_1"})
	wantAPIError(t, err, "ThrottlingException")
	sym, err := c.CreateKey(ctx, &kms.CreateKeyInput{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Encrypt(ctx, &kms.EncryptInput{KeyId: sym.KeyMetadata.KeyId, Plaintext: []byte("x")})
	wantAPIError(t, err, "ThrottlingException")
	// With RSA open and symmetric closed, RSA Encrypt passes.
	ts2 := startTestServerCfg(t, t.TempDir(), func() tokenRef { l, b, p := hsmtest.NewToken(t); return tokenRef{l, b, p} }(),
		Config{Quotas: quota.Config{Rates: map[quota.Group]float64{quota.Symmetric: 0, "op:CreateKey": -1}}})
	enc2, err := ts2.client.CreateKey(ctx, &kms.CreateKeyInput{KeySpec: "RSA_2048", KeyUsage: "ENCRYPT_DECRYPT"})
	if err != nil {
		t.Fatal(err)
	}
	ct, err := ts2.client.Encrypt(ctx, &kms.EncryptInput{KeyId: enc2.KeyMetadata.KeyId, Plaintext: []byte("x"), EncryptionAlgorithm: "RSAES_OAEP_SHA_1"})
	if err != nil {
		t.Fatalf("RSA Encrypt with the symmetric quota at 0: %v", err)
	}
	if _, err := ts2.client.Decrypt(ctx, &kms.DecryptInput{KeyId: enc2.KeyMetadata.KeyId, CiphertextBlob: ct.CiphertextBlob, EncryptionAlgorithm: "RSAES_OAEP_SHA_1"}); err != nil {
		t.Fatalf("RSA Decrypt with the symmetric quota at 0: %v", err)
	}
	_, err = c.GenerateRandom(ctx, &kms.GenerateRandomInput{NumberOfBytes: aws.Int32(8)})
	wantAPIError(t, err, "ThrottlingException")
}

// TestSpecUsageMatrix checks every KeySpec × KeyUsage pair of the API
// model against the usages AWS allows, written out here.
func TestSpecUsageMatrix(t *testing.T) {
	allowed := map[string][]string{
		"SYMMETRIC_DEFAULT": {"ENCRYPT_DECRYPT"},
		"RSA_2048":          {"ENCRYPT_DECRYPT", "SIGN_VERIFY"}, "RSA_3072": {"ENCRYPT_DECRYPT", "SIGN_VERIFY"}, "RSA_4096": {"ENCRYPT_DECRYPT", "SIGN_VERIFY"},
		"ECC_NIST_P256": {"SIGN_VERIFY", "KEY_AGREEMENT"}, "ECC_NIST_P384": {"SIGN_VERIFY", "KEY_AGREEMENT"}, "ECC_NIST_P521": {"SIGN_VERIFY", "KEY_AGREEMENT"},
		"ECC_SECG_P256K1": {"SIGN_VERIFY"}, "ECC_NIST_EDWARDS25519": {"SIGN_VERIFY"},
		"ML_DSA_44": {"SIGN_VERIFY"}, "ML_DSA_65": {"SIGN_VERIFY"}, "ML_DSA_87": {"SIGN_VERIFY"},
		"HMAC_224": {"GENERATE_VERIFY_MAC"}, "HMAC_256": {"GENERATE_VERIFY_MAC"}, "HMAC_384": {"GENERATE_VERIFY_MAC"}, "HMAC_512": {"GENERATE_VERIFY_MAC"},
		"SM2": {"ENCRYPT_DECRYPT", "SIGN_VERIFY", "KEY_AGREEMENT"},
	}
	for _, spec := range keySpecs {
		for _, usage := range keyUsages {
			err := checkSpecUsage(spec, usage)
			want := ""
			if !oneOf(usage, allowed[spec]) {
				want = errValidation
			}
			got := ""
			if err != nil {
				got = err.(*APIError).Type
			}
			if got != want {
				t.Errorf("%s/%s: %q, want %q", spec, usage, got, want)
			}
		}
	}
}

// TestSignInputRules is the MessageType and length table of Sign and
// Verify, per algorithm, without a server.
func TestSignInputRules(t *testing.T) {
	for _, c := range []struct {
		alg  string
		mt   string
		n    int
		want string // "" = accepted
	}{
		{"RSASSA_PSS_SHA_256", "DIGEST", 32, ""}, {"RSASSA_PSS_SHA_256", "DIGEST", 33, errValidation},
		{"RSASSA_PSS_SHA_384", "DIGEST", 48, ""}, {"RSASSA_PSS_SHA_384", "DIGEST", 32, errValidation},
		{"RSASSA_PKCS1_V1_5_SHA_512", "DIGEST", 64, ""}, {"RSASSA_PKCS1_V1_5_SHA_512", "DIGEST", 48, errValidation},
		{"ECDSA_SHA_256", "RAW", 4096, ""}, {"ECDSA_SHA_256", "EXTERNAL_MU", 64, errValidation},
		{"ECDSA_SHA_512", "DIGEST", 64, ""}, {"ECDSA_SHA_384", "DIGEST", 64, errValidation},
		{"ED25519_SHA_512", "RAW", 1, ""}, {"ED25519_SHA_512", "DIGEST", 64, errValidation}, {"ED25519_SHA_512", "EXTERNAL_MU", 64, errValidation},
		{"ED25519_PH_SHA_512", "DIGEST", 64, ""}, {"ED25519_PH_SHA_512", "DIGEST", 32, errValidation}, {"ED25519_PH_SHA_512", "RAW", 64, errValidation},
		{"ML_DSA_SHAKE_256", "RAW", 4096, ""}, {"ML_DSA_SHAKE_256", "EXTERNAL_MU", 64, ""}, {"ML_DSA_SHAKE_256", "EXTERNAL_MU", 65, errValidation},
		{"ML_DSA_SHAKE_256", "DIGEST", 64, errValidation},
	} {
		out, err := signInput(c.alg, sigAlgs[c.alg], c.mt, make([]byte, c.n))
		got := ""
		if err != nil {
			got = err.(*APIError).Type
		}
		if got != c.want {
			t.Errorf("%s %s %d bytes: %q, want %q", c.alg, c.mt, c.n, got, c.want)
		}
		if err == nil && sigAlgs[c.alg].kind == sigEd25519ph && len(out) != 64 {
			t.Errorf("Ed25519ph input is %d bytes, want SHA-512's 64", len(out))
		}
	}
}
