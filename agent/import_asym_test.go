package agent

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"fmt"
	"hash"
	"os/exec"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/kmsd/kmsd/cluster"
	"github.com/kmsd/kmsd/hsmpool/hsmtest"
)

// genKey makes a PKCS#8 DER private key with the guide's openssl steps
// (genpkey | pkcs8 -topk8 -outform der -nocrypt) into name, and its DER
// public key into name + ".pub".
func (o *openssl) genKey(t testing.TB, name string, genpkey ...string) (priv, pub []byte) {
	t.Helper()
	pem := o.run(t, append([]string{"genpkey"}, genpkey...)...)
	cmd := exec.Command("openssl", "pkcs8", "-topk8", "-outform", "der", "-nocrypt", "-out", name)
	cmd.Dir, cmd.Stdin = o.dir, bytes.NewReader(pem)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("openssl pkcs8: %v\n%s", err, out)
	}
	o.run(t, "pkey", "-inform", "der", "-in", name, "-pubout", "-outform", "der", "-out", name+".pub")
	return o.read(t, name), o.read(t, name+".pub")
}

// createImportKey makes an EXTERNAL key of spec and usage.
func (ts *testServer) createImportKey(t testing.TB, spec types.KeySpec, usage types.KeyUsageType) string {
	t.Helper()
	out, err := ts.client.CreateKey(context.Background(), &kms.CreateKeyInput{Origin: types.OriginTypeExternal, KeySpec: spec, KeyUsage: usage})
	if err != nil {
		t.Fatal(err)
	}
	if out.KeyMetadata.KeyState != types.KeyStatePendingImport {
		t.Fatalf("new EXTERNAL %s key is %s", spec, out.KeyMetadata.KeyState)
	}
	return *out.KeyMetadata.KeyId
}

// TestImportAsymmetricOpenSSL imports RSA and ECC private keys made and
// wrapped with openssl as the guide says; GetPublicKey returns the original
// public key, kmsd's signatures verify with it in openssl, openssl's RSA
// ciphertexts decrypt and ECDH secrets match; other material is refused,
// the same material re-imports, and the private key rests only wrapped.
func TestImportAsymmetricOpenSSL(t *testing.T) {
	ts := newTestServer(t)
	ctx := context.Background()
	c := ts.client
	o := newOpenSSL(t)
	for _, tc := range []struct {
		spec    types.KeySpec
		usage   types.KeyUsageType
		genpkey []string
		alg     types.AlgorithmSpec
		wrap    types.WrappingKeySpec
		sigAlg  types.SigningAlgorithmSpec
		md      string
	}{
		{"RSA_2048", "SIGN_VERIFY", []string{"-algorithm", "rsa", "-pkeyopt", "rsa_keygen_bits:2048"}, "RSA_AES_KEY_WRAP_SHA_256", "RSA_4096", "RSASSA_PKCS1_V1_5_SHA_256", "sha256"},
		{"RSA_3072", "ENCRYPT_DECRYPT", []string{"-algorithm", "rsa", "-pkeyopt", "rsa_keygen_bits:3072"}, "RSA_AES_KEY_WRAP_SHA_1", "RSA_2048", "", ""},
		{"ECC_NIST_P256", "SIGN_VERIFY", []string{"-algorithm", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"}, "RSAES_OAEP_SHA_256", "RSA_2048", "ECDSA_SHA_256", "sha256"},
		{"ECC_NIST_P384", "KEY_AGREEMENT", []string{"-algorithm", "ec", "-pkeyopt", "ec_paramgen_curve:P-384"}, "RSAES_OAEP_SHA_1", "RSA_3072", "", ""},
		{"ECC_NIST_P521", "SIGN_VERIFY", []string{"-algorithm", "ec", "-pkeyopt", "ec_paramgen_curve:P-521"}, "RSA_AES_KEY_WRAP_SHA_256", "RSA_2048", "ECDSA_SHA_512", "sha512"},
		{"ECC_SECG_P256K1", "SIGN_VERIFY", []string{"-algorithm", "ec", "-pkeyopt", "ec_paramgen_curve:secp256k1"}, "RSAES_OAEP_SHA_1", "RSA_2048", "ECDSA_SHA_256", "sha256"},
	} {
		t.Run(string(tc.spec)+"/"+string(tc.usage), func(t *testing.T) {
			id := ts.createImportKey(t, tc.spec, tc.usage)
			if _, err := c.GetPublicKey(ctx, &kms.GetPublicKeyInput{KeyId: &id}); err == nil {
				t.Fatal("GetPublicKey of a PendingImport key succeeded")
			} else {
				wantAPIError(t, err, errInvalidState)
			}
			priv, pub := o.genKey(t, "PrivateKey.der", tc.genpkey...)
			p := ts.params(t, id, tc.alg, tc.wrap)
			out := ts.importMaterial(t, id, p, o.wrap(t, p, tc.alg, "PrivateKey.der"))
			if out.KeyMaterialId == nil || len(*out.KeyMaterialId) != 64 {
				t.Fatalf("KeyMaterialId %v", out.KeyMaterialId)
			}
			k, _ := ts.node.Key(id)
			if m, _ := k.CurrentMaterial(); m.Form != cluster.MaterialHSMPrivate || bytes.Contains(m.Wrapped, priv[len(priv)-20:]) {
				t.Fatalf("imported key stored as %q", m.Form)
			}
			gp, err := c.GetPublicKey(ctx, &kms.GetPublicKeyInput{KeyId: &id})
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(gp.PublicKey, pub) {
				t.Fatalf("GetPublicKey is not the imported key's public key:\n%x\n%x", gp.PublicKey, pub)
			}
			msg := []byte("signed by an imported key")
			o.write(t, "msg.bin", msg)
			switch tc.usage {
			case "SIGN_VERIFY":
				sig, err := c.Sign(ctx, &kms.SignInput{KeyId: &id, Message: msg, MessageType: types.MessageTypeRaw, SigningAlgorithm: tc.sigAlg})
				if err != nil {
					t.Fatal(err)
				}
				o.write(t, "sig.bin", sig.Signature)
				// openssl checks kmsd's signature with the ORIGINAL public key.
				if got := o.run(t, "dgst", "-"+tc.md, "-verify", "PrivateKey.der.pub", "-keyform", "DER", "-signature", "sig.bin", "msg.bin"); !bytes.Contains(got, []byte("Verified OK")) {
					t.Fatalf("openssl: %s", got)
				}
			case "ENCRYPT_DECRYPT":
				o.run(t, "pkeyutl", "-encrypt", "-pubin", "-inkey", "PrivateKey.der.pub", "-keyform", "DER", "-in", "msg.bin", "-out", "ct.bin",
					"-pkeyopt", "rsa_padding_mode:oaep", "-pkeyopt", "rsa_oaep_md:sha256", "-pkeyopt", "rsa_mgf1_md:sha256")
				pt, err := c.Decrypt(ctx, &kms.DecryptInput{KeyId: &id, CiphertextBlob: o.read(t, "ct.bin"), EncryptionAlgorithm: "RSAES_OAEP_SHA_256"})
				if err != nil || !bytes.Equal(pt.Plaintext, msg) {
					t.Fatalf("Decrypt of openssl's ciphertext: %v", err)
				}
			case "KEY_AGREEMENT":
				_, peerPub := o.genKey(t, "peer.der", "-algorithm", "ec", "-pkeyopt", "ec_paramgen_curve:P-384")
				want := o.run(t, "pkeyutl", "-derive", "-inkey", "peer.der", "-keyform", "DER", "-peerkey", "PrivateKey.der.pub", "-peerform", "DER")
				got, err := c.DeriveSharedSecret(ctx, &kms.DeriveSharedSecretInput{KeyId: &id, KeyAgreementAlgorithm: "ECDH", PublicKey: peerPub})
				if err != nil || !bytes.Equal(got.SharedSecret, want) {
					t.Fatalf("DeriveSharedSecret differs from openssl's: %v", err)
				}
			}
			// Other material of the same spec is refused; the same key,
			// by another token, re-imports with the same id.
			o.genKey(t, "Other.der", tc.genpkey...)
			p2 := ts.params(t, id, "RSA_AES_KEY_WRAP_SHA_1", "RSA_3072")
			_, err = c.ImportKeyMaterial(ctx, &kms.ImportKeyMaterialInput{KeyId: &id, ImportToken: p2.ImportToken,
				EncryptedKeyMaterial: o.wrap(t, p2, "RSA_AES_KEY_WRAP_SHA_1", "Other.der"), ExpirationModel: types.ExpirationModelTypeKeyMaterialDoesNotExpire})
			wantAPIError(t, err, errIncorrectKeyMaterial)
			if _, err := c.DeleteImportedKeyMaterial(ctx, &kms.DeleteImportedKeyMaterialInput{KeyId: &id}); err != nil {
				t.Fatal(err)
			}
			_, err = c.GetPublicKey(ctx, &kms.GetPublicKeyInput{KeyId: &id})
			wantAPIError(t, err, errInvalidState)
			again := ts.importMaterial(t, id, p2, o.wrap(t, p2, "RSA_AES_KEY_WRAP_SHA_1", "PrivateKey.der"))
			if *again.KeyMaterialId != *out.KeyMaterialId {
				t.Fatalf("re-import id %s, first %s", *again.KeyMaterialId, *out.KeyMaterialId)
			}
			if gp, err := c.GetPublicKey(ctx, &kms.GetPublicKeyInput{KeyId: &id}); err != nil || !bytes.Equal(gp.PublicKey, pub) {
				t.Fatalf("after re-import: %v", err)
			}
		})
	}

	t.Run("rules", func(t *testing.T) {
		rsaKey := ts.createImportKey(t, "RSA_2048", "SIGN_VERIFY")
		for _, alg := range []types.AlgorithmSpec{"RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256"} {
			_, err := c.GetParametersForImport(ctx, &kms.GetParametersForImportInput{KeyId: &rsaKey, WrappingAlgorithm: alg, WrappingKeySpec: "RSA_4096"})
			wantAPIError(t, err, errUnsupported)
		}
		p521 := ts.createImportKey(t, "ECC_NIST_P521", "SIGN_VERIFY")
		_, err := c.GetParametersForImport(ctx, &kms.GetParametersForImportInput{KeyId: &p521, WrappingAlgorithm: "RSAES_OAEP_SHA_1", WrappingKeySpec: "RSA_2048"})
		wantAPIError(t, err, errUnsupported)
		ts.params(t, p521, "RSAES_OAEP_SHA_1", "RSA_3072") // a larger wrapping key is fine
		for _, spec := range []types.KeySpec{"ECC_NIST_EDWARDS25519", "ML_DSA_44", "ML_DSA_65", "ML_DSA_87"} {
			_, err := c.CreateKey(ctx, &kms.CreateKeyInput{Origin: types.OriginTypeExternal, KeySpec: spec, KeyUsage: "SIGN_VERIFY"})
			wantAPIError(t, err, errUnsupported)
		}
		// A P-384 key into a P-256 KMS key, an EC key into an RSA one.
		p256 := ts.createImportKey(t, "ECC_NIST_P256", "SIGN_VERIFY")
		o.genKey(t, "p384.der", "-algorithm", "ec", "-pkeyopt", "ec_paramgen_curve:P-384")
		p := ts.params(t, p256, "RSA_AES_KEY_WRAP_SHA_256", "RSA_2048")
		_, err = c.ImportKeyMaterial(ctx, &kms.ImportKeyMaterialInput{KeyId: &p256, ImportToken: p.ImportToken,
			EncryptedKeyMaterial: o.wrap(t, p, "RSA_AES_KEY_WRAP_SHA_256", "p384.der"), ExpirationModel: types.ExpirationModelTypeKeyMaterialDoesNotExpire})
		wantAPIError(t, err, errInvalidCiphertext)
		p = ts.params(t, rsaKey, "RSA_AES_KEY_WRAP_SHA_256", "RSA_2048")
		_, err = c.ImportKeyMaterial(ctx, &kms.ImportKeyMaterialInput{KeyId: &rsaKey, ImportToken: p.ImportToken,
			EncryptedKeyMaterial: o.wrap(t, p, "RSA_AES_KEY_WRAP_SHA_256", "p384.der"), ExpirationModel: types.ExpirationModelTypeKeyMaterialDoesNotExpire})
		wantAPIError(t, err, errInvalidCiphertext)
		// Explicit curve parameters are refused (named curves only).
		o.genKey(t, "explicit.der", "-algorithm", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-pkeyopt", "ec_param_enc:explicit")
		p = ts.params(t, p256, "RSA_AES_KEY_WRAP_SHA_256", "RSA_2048")
		_, err = c.ImportKeyMaterial(ctx, &kms.ImportKeyMaterialInput{KeyId: &p256, ImportToken: p.ImportToken,
			EncryptedKeyMaterial: o.wrap(t, p, "RSA_AES_KEY_WRAP_SHA_256", "explicit.der"), ExpirationModel: types.ExpirationModelTypeKeyMaterialDoesNotExpire})
		wantAPIError(t, err, errInvalidCiphertext)
		_, err = c.Sign(ctx, &kms.SignInput{KeyId: &rsaKey, Message: []byte("x"), SigningAlgorithm: "RSASSA_PSS_SHA_256"})
		wantAPIError(t, err, errInvalidState)
		if k, _ := ts.node.Key(rsaKey); k.State != cluster.StatePendingImport {
			t.Fatalf("refused imports changed the key: %s", k.State)
		}
	})
}

// TestImportHMAC imports HMAC secrets of each spec's length (made with
// openssl rand, wrapped with the guide's openssl steps); GenerateMac equals
// Go's HMAC with the original secret, other secrets and lengths are
// refused.
func TestImportHMAC(t *testing.T) {
	ts := newTestServer(t)
	ctx := context.Background()
	c := ts.client
	o := newOpenSSL(t)
	for i, tc := range []struct {
		spec types.KeySpec
		mac  types.MacAlgorithmSpec
		size int
		h    func() hash.Hash
	}{
		{"HMAC_224", "HMAC_SHA_224", 28, sha256.New224},
		{"HMAC_256", "HMAC_SHA_256", 32, sha256.New},
		{"HMAC_384", "HMAC_SHA_384", 48, sha512.New384},
		{"HMAC_512", "HMAC_SHA_512", 64, sha512.New},
	} {
		t.Run(string(tc.spec), func(t *testing.T) {
			id := ts.createImportKey(t, tc.spec, "GENERATE_VERIFY_MAC")
			alg := []types.AlgorithmSpec{"RSAES_OAEP_SHA_256", "RSAES_OAEP_SHA_1", "RSA_AES_KEY_WRAP_SHA_256", "RSA_AES_KEY_WRAP_SHA_1"}[i]
			p := ts.params(t, id, alg, "RSA_2048")
			// Wrong lengths first (outside the length's block of 8, see README).
			for _, n := range []int{tc.size - 8, tc.size + 8} {
				o.run(t, "rand", "-out", "wrong.bin", fmt.Sprint(n))
				_, err := c.ImportKeyMaterial(ctx, &kms.ImportKeyMaterialInput{KeyId: &id, ImportToken: p.ImportToken,
					EncryptedKeyMaterial: o.wrap(t, p, alg, "wrong.bin"), ExpirationModel: types.ExpirationModelTypeKeyMaterialDoesNotExpire})
				wantAPIError(t, err, errInvalidCiphertext)
			}
			o.run(t, "rand", "-out", "HMAC_PlaintextKey.bin", fmt.Sprint(tc.size))
			secret := o.read(t, "HMAC_PlaintextKey.bin")
			_, err := c.ImportKeyMaterial(ctx, &kms.ImportKeyMaterialInput{KeyId: &id, ImportToken: p.ImportToken,
				EncryptedKeyMaterial: o.wrap(t, p, alg, "HMAC_PlaintextKey.bin"), ImportType: types.ImportTypeNewKeyMaterial,
				ExpirationModel: types.ExpirationModelTypeKeyMaterialDoesNotExpire})
			wantAPIError(t, err, errValidation) // ImportType is for symmetric encryption keys only
			ts.importMaterial(t, id, p, o.wrap(t, p, alg, "HMAC_PlaintextKey.bin"))
			if k, _ := ts.node.Key(id); k.Materials[0].Form != cluster.MaterialHSMSecret || bytes.Contains(k.Materials[0].Wrapped, secret[:16]) {
				t.Fatalf("imported secret stored as %q", k.Materials[0].Form)
			}
			msg := make([]byte, 100)
			rand.Read(msg)
			out, err := c.GenerateMac(ctx, &kms.GenerateMacInput{KeyId: &id, MacAlgorithm: tc.mac, Message: msg})
			if err != nil {
				t.Fatal(err)
			}
			h := hmac.New(tc.h, secret)
			h.Write(msg)
			if !hmac.Equal(out.Mac, h.Sum(nil)) {
				t.Fatal("GenerateMac differs from HMAC with the original secret")
			}
			if v, err := c.VerifyMac(ctx, &kms.VerifyMacInput{KeyId: &id, MacAlgorithm: tc.mac, Message: msg, Mac: h.Sum(nil)}); err != nil || !v.MacValid {
				t.Fatalf("VerifyMac of Go's HMAC: %v", err)
			}
			o.run(t, "rand", "-out", "other.bin", fmt.Sprint(tc.size))
			_, err = c.ImportKeyMaterial(ctx, &kms.ImportKeyMaterialInput{KeyId: &id, ImportToken: p.ImportToken,
				EncryptedKeyMaterial: o.wrap(t, p, alg, "other.bin"), ExpirationModel: types.ExpirationModelTypeKeyMaterialDoesNotExpire})
			wantAPIError(t, err, errIncorrectKeyMaterial)
			ts.importMaterial(t, id, p, o.wrap(t, p, alg, "HMAC_PlaintextKey.bin")) // the same secret again
		})
	}
}

// TestImportKeyPairAtRest: an imported private key and HMAC secret work
// after a restart and no file the node or its token wrote holds them.
func TestImportKeyPairAtRest(t *testing.T) {
	lib, label, pin := hsmtest.NewToken(t)
	tok := tokenRef{lib, label, pin}
	dir := t.TempDir()
	ts := startTestServer(t, dir, tok)
	ctx := context.Background()
	key, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	ec := ts.createImportKey(t, "ECC_NIST_P384", "SIGN_VERIFY")
	p := ts.params(t, ec, "RSA_AES_KEY_WRAP_SHA_256", "RSA_2048")
	ts.importMaterial(t, ec, p, wrapMaterial(t, p, "RSA_AES_KEY_WRAP_SHA_256", der))
	secret := make([]byte, 64)
	rand.Read(secret)
	mac := ts.createImportKey(t, "HMAC_512", "GENERATE_VERIFY_MAC")
	p = ts.params(t, mac, "RSAES_OAEP_SHA_256", "RSA_2048")
	ts.importMaterial(t, mac, p, wrapMaterial(t, p, "RSAES_OAEP_SHA_256", secret))
	ts.stop()

	ts = startTestServer(t, dir, tok)
	digest := sha512.Sum384([]byte("after restart"))
	sig, err := ts.client.Sign(ctx, &kms.SignInput{KeyId: &ec, Message: digest[:], MessageType: types.MessageTypeDigest, SigningAlgorithm: "ECDSA_SHA_384"})
	if err != nil || !ecdsa.VerifyASN1(&key.PublicKey, digest[:], sig.Signature) {
		t.Fatalf("Sign after restart: %v", err)
	}
	if _, err := ts.client.GenerateMac(ctx, &kms.GenerateMacInput{KeyId: &mac, MacAlgorithm: "HMAC_SHA_512", Message: []byte("m")}); err != nil {
		t.Fatal(err)
	}
	ts.stop()
	d := key.D.Bytes()
	assertNotInDir(t, dir, map[string][]byte{"the imported EC private key": d[:16], "the imported HMAC secret": secret[:16]})
}
