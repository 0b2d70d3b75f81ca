package agent

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/kmsd/kmsd/cluster"
	"github.com/kmsd/kmsd/hsmpool"
	"github.com/kmsd/kmsd/hsmpool/hsmtest"
)

var sdkImportAlgs = map[types.AlgorithmSpec]hsmpool.ImportAlgorithm{
	types.AlgorithmSpecRsaesOaepSha1:       hsmpool.ImportOAEPSHA1,
	types.AlgorithmSpecRsaesOaepSha256:     hsmpool.ImportOAEPSHA256,
	types.AlgorithmSpecRsaAesKeyWrapSha1:   hsmpool.ImportRSAAESWrapSHA1,
	types.AlgorithmSpecRsaAesKeyWrapSha256: hsmpool.ImportRSAAESWrapSHA256,
}

func (ts *testServer) createExternalKey(t testing.TB) string {
	t.Helper()
	out, err := ts.client.CreateKey(context.Background(), &kms.CreateKeyInput{Origin: types.OriginTypeExternal})
	if err != nil {
		t.Fatal(err)
	}
	if out.KeyMetadata.KeyState != types.KeyStatePendingImport || out.KeyMetadata.Origin != types.OriginTypeExternal ||
		out.KeyMetadata.Enabled || out.KeyMetadata.ExpirationModel != "" || out.KeyMetadata.CurrentKeyMaterialId != nil {
		t.Fatalf("new EXTERNAL key: %+v", out.KeyMetadata)
	}
	return *out.KeyMetadata.KeyId
}

// params calls GetParametersForImport.
func (ts *testServer) params(t testing.TB, id string, alg types.AlgorithmSpec, spec types.WrappingKeySpec) *kms.GetParametersForImportOutput {
	t.Helper()
	out, err := ts.client.GetParametersForImport(context.Background(), &kms.GetParametersForImportInput{
		KeyId: aws.String(id), WrappingAlgorithm: alg, WrappingKeySpec: spec})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// wrapMaterial encrypts material for p with Go's crypto.
func wrapMaterial(t testing.TB, p *kms.GetParametersForImportOutput, alg types.AlgorithmSpec, material []byte) []byte {
	t.Helper()
	enc, err := hsmtest.WrapForImport(p.PublicKey, sdkImportAlgs[alg], material)
	if err != nil {
		t.Fatal(err)
	}
	return enc
}

func (ts *testServer) importMaterial(t testing.TB, id string, p *kms.GetParametersForImportOutput, enc []byte) *kms.ImportKeyMaterialOutput {
	t.Helper()
	out, err := ts.client.ImportKeyMaterial(context.Background(), &kms.ImportKeyMaterialInput{KeyId: aws.String(id),
		ImportToken: p.ImportToken, EncryptedKeyMaterial: enc, ExpirationModel: types.ExpirationModelTypeKeyMaterialDoesNotExpire})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func newMaterial() []byte {
	m := make([]byte, 32)
	rand.Read(m)
	return m
}

// openWithMaterial decrypts a ciphertext blob in Go with the key material
// itself: proof that the key encrypts with exactly the imported material.
func openWithMaterial(t testing.TB, material, b []byte, ectx map[string]string) []byte {
	t.Helper()
	p, err := parseBlob(b)
	if err != nil {
		t.Fatal(err)
	}
	mg, _ := newGCM(material)
	bk, err := mg.Open(nil, p.wrapped[:12], p.wrapped[12:], p.header)
	if err != nil {
		t.Fatalf("the batch key is not sealed by the imported material: %v", err)
	}
	bg, _ := newGCM(bk)
	pt, err := bg.Open(nil, p.nonce, p.sealed, appendContext(append([]byte(nil), p.header...), ectx))
	if err != nil {
		t.Fatal(err)
	}
	return pt
}

// TestImportCycle imports material wrapped by Go's crypto with every
// wrapping algorithm and two key sizes; the key then encrypts with exactly
// that material and decrypts.
func TestImportCycle(t *testing.T) {
	ts, clk := newTestServerClock(t)
	ctx := context.Background()
	c := ts.client
	specs := []types.WrappingKeySpec{types.WrappingKeySpecRsa2048, types.WrappingKeySpecRsa3072}
	i := 0
	for alg := range sdkImportAlgs {
		for _, spec := range specs {
			i++
			if i%4 == 0 && spec == types.WrappingKeySpecRsa3072 {
				spec = types.WrappingKeySpecRsa4096 // every size, without 12 slow key pairs
			}
			t.Run(fmt.Sprintf("%s/%s", alg, spec), func(t *testing.T) {
				id := ts.createExternalKey(t)
				if _, err := c.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(id), Plaintext: []byte("x")}); err == nil {
					t.Fatal("Encrypt with a key pending import succeeded")
				} else {
					wantAPIError(t, err, errInvalidState)
				}
				p := ts.params(t, id, alg, spec)
				pub, err := x509.ParsePKIXPublicKey(p.PublicKey)
				if err != nil {
					t.Fatal(err)
				}
				bits := map[types.WrappingKeySpec]int{"RSA_2048": 2048, "RSA_3072": 3072, "RSA_4096": 4096}[spec]
				if pub.(*rsa.PublicKey).N.BitLen() != bits {
					t.Fatalf("wrapping key of %d bits, want %d", pub.(*rsa.PublicKey).N.BitLen(), bits)
				}
				if want := clk.Now().Add(24 * time.Hour); p.ParametersValidTo.Sub(want).Abs() > time.Millisecond {
					t.Fatalf("ParametersValidTo %v, want %v", p.ParametersValidTo, want)
				}
				if *p.KeyId != ts.keyArn(id) {
					t.Fatalf("KeyId %s", *p.KeyId)
				}
				material := newMaterial()
				out := ts.importMaterial(t, id, p, wrapMaterial(t, p, alg, material))
				d, err := c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(id)})
				if err != nil {
					t.Fatal(err)
				}
				md := d.KeyMetadata
				if md.KeyState != types.KeyStateEnabled || !md.Enabled || md.ExpirationModel != types.ExpirationModelTypeKeyMaterialDoesNotExpire ||
					md.ValidTo != nil || md.CurrentKeyMaterialId == nil || *md.CurrentKeyMaterialId != *out.KeyMaterialId {
					t.Fatalf("after import: %+v", md)
				}
				ectx := map[string]string{"purpose": "import"}
				enc, err := c.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(id), Plaintext: []byte("secret"), EncryptionContext: ectx})
				if err != nil {
					t.Fatal(err)
				}
				if got := openWithMaterial(t, material, enc.CiphertextBlob, ectx); string(got) != "secret" {
					t.Fatalf("opened with the material: %q", got)
				}
				dec, err := c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob, EncryptionContext: ectx})
				if err != nil || string(dec.Plaintext) != "secret" {
					t.Fatalf("Decrypt: %v", err)
				}
				// Rotation is not for imported material ([7]).
				_, err = c.EnableKeyRotation(ctx, &kms.EnableKeyRotationInput{KeyId: aws.String(id)})
				wantAPIError(t, err, errUnsupported)
			})
		}
	}
}

// TestImportErrors covers the token, material and parameter errors.
func TestImportErrors(t *testing.T) {
	ts, clk := newTestServerClock(t)
	ctx := context.Background()
	c := ts.client
	alg := types.AlgorithmSpecRsaesOaepSha256
	id := ts.createExternalKey(t)
	other := ts.createExternalKey(t)
	p := ts.params(t, id, alg, types.WrappingKeySpecRsa2048)
	pOther := ts.params(t, other, alg, types.WrappingKeySpecRsa2048)
	material := newMaterial()
	imp := func(key string, token, enc []byte, mut func(in *kms.ImportKeyMaterialInput)) error {
		in := &kms.ImportKeyMaterialInput{KeyId: aws.String(key), ImportToken: token, EncryptedKeyMaterial: enc,
			ExpirationModel: types.ExpirationModelTypeKeyMaterialDoesNotExpire}
		if mut != nil {
			mut(in)
		}
		_, err := c.ImportKeyMaterial(ctx, in)
		return err
	}
	enc := wrapMaterial(t, p, alg, material)
	cases := []struct {
		name string
		err  error
		want string
	}{
		{"token of another key", imp(id, pOther.ImportToken, enc, nil), errInvalidImportToken},
		{"garbage token", imp(id, []byte("not a token"), enc, nil), errInvalidImportToken},
		{"material for another wrapping key", imp(id, p.ImportToken, wrapMaterial(t, pOther, alg, material), nil), errInvalidCiphertext},
		{"material for another algorithm", imp(id, p.ImportToken, wrapMaterial(t, p, types.AlgorithmSpecRsaesOaepSha1, material), nil), errInvalidCiphertext},
		{"128-bit material", imp(id, p.ImportToken, wrapMaterial(t, p, alg, material[:16]), nil), errInvalidCiphertext},
		{"ValidTo missing", imp(id, p.ImportToken, enc, func(in *kms.ImportKeyMaterialInput) { in.ExpirationModel = "" }), errValidation},
		{"ValidTo with DOES_NOT_EXPIRE", imp(id, p.ImportToken, enc, func(in *kms.ImportKeyMaterialInput) { in.ValidTo = aws.Time(clk.Now().Add(time.Hour)) }), errValidation},
		{"ValidTo in the past", imp(id, p.ImportToken, enc, func(in *kms.ImportKeyMaterialInput) {
			in.ExpirationModel, in.ValidTo = types.ExpirationModelTypeKeyMaterialExpires, aws.Time(clk.Now().Add(-time.Minute))
		}), errValidation},
		{"ValidTo beyond 365 days", imp(id, p.ImportToken, enc, func(in *kms.ImportKeyMaterialInput) {
			in.ExpirationModel, in.ValidTo = types.ExpirationModelTypeKeyMaterialExpires, aws.Time(clk.Now().Add(366*24*time.Hour))
		}), errValidation},
		{"EXISTING_KEY_MATERIAL before any import", imp(id, p.ImportToken, enc, func(in *kms.ImportKeyMaterialInput) { in.ImportType = types.ImportTypeExistingKeyMaterial }), errValidation},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { wantAPIError(t, tc.err, tc.want) })
	}
	if k, _ := ts.node.Key(id); k.State != cluster.StatePendingImport || len(k.Materials) != 0 {
		t.Fatalf("failed imports changed the key: %s", k.State)
	}

	// [9]: keys with KMS-made material take no import.
	plain := ts.createKey(t)
	_, err := c.GetParametersForImport(ctx, &kms.GetParametersForImportInput{KeyId: aws.String(plain),
		WrappingAlgorithm: alg, WrappingKeySpec: types.WrappingKeySpecRsa2048})
	wantAPIError(t, err, errUnsupported)
	_, err = c.DeleteImportedKeyMaterial(ctx, &kms.DeleteImportedKeyMaterialInput{KeyId: aws.String(plain)})
	wantAPIError(t, err, errUnsupported)
	_, err = c.GetParametersForImport(ctx, &kms.GetParametersForImportInput{KeyId: aws.String(id),
		WrappingAlgorithm: types.AlgorithmSpecRsaesPkcs1V15, WrappingKeySpec: types.WrappingKeySpecRsa2048})
	wantAPIError(t, err, errUnsupported)
	_, err = c.GetParametersForImport(ctx, &kms.GetParametersForImportInput{KeyId: aws.String(id),
		WrappingAlgorithm: "RSA_OAEP_NOPE", WrappingKeySpec: types.WrappingKeySpecRsa2048})
	wantAPIError(t, err, errValidation)
	_, err = c.CreateKey(ctx, &kms.CreateKeyInput{Origin: types.OriginTypeExternal, KeySpec: types.KeySpecEccNistEdwards25519, KeyUsage: types.KeyUsageTypeSignVerify})
	wantAPIError(t, err, errUnsupported)

	// The right material imports; different material never does after.
	out := ts.importMaterial(t, id, p, enc)
	err = imp(id, p.ImportToken, wrapMaterial(t, p, alg, newMaterial()), nil)
	wantAPIError(t, err, errIncorrectKeyMaterial)
	err = imp(id, p.ImportToken, wrapMaterial(t, p, alg, material), func(in *kms.ImportKeyMaterialInput) {
		in.KeyMaterialId = aws.String(fmt.Sprintf("%064x", 1))
	})
	wantAPIError(t, err, errIncorrectKeyMaterial)
	err = imp(id, p.ImportToken, wrapMaterial(t, p, alg, material), func(in *kms.ImportKeyMaterialInput) {
		in.ImportType = types.ImportTypeNewKeyMaterial
	})
	wantAPIError(t, err, errValidation) // NEW_KEY_MATERIAL that is the key's already
	// Re-import of the same material (by a fresh token, RSA_AES_KEY_WRAP)
	// succeeds and changes the expiration.
	p2 := ts.params(t, id, types.AlgorithmSpecRsaAesKeyWrapSha256, types.WrappingKeySpecRsa3072)
	validTo := clk.Now().Add(48 * time.Hour).Truncate(time.Second)
	re, err := c.ImportKeyMaterial(ctx, &kms.ImportKeyMaterialInput{KeyId: aws.String(id), ImportToken: p2.ImportToken,
		EncryptedKeyMaterial: wrapMaterial(t, p2, types.AlgorithmSpecRsaAesKeyWrapSha256, material),
		ExpirationModel:      types.ExpirationModelTypeKeyMaterialExpires, ValidTo: aws.Time(validTo),
		ImportType: types.ImportTypeExistingKeyMaterial, KeyMaterialId: out.KeyMaterialId})
	if err != nil {
		t.Fatal(err)
	}
	if *re.KeyMaterialId != *out.KeyMaterialId {
		t.Fatalf("same material, new KeyMaterialId %s != %s", *re.KeyMaterialId, *out.KeyMaterialId)
	}
	d, _ := c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(id)})
	if d.KeyMetadata.ExpirationModel != types.ExpirationModelTypeKeyMaterialExpires || d.KeyMetadata.ValidTo == nil || !d.KeyMetadata.ValidTo.Equal(validTo) {
		t.Fatalf("after re-import with expiry: %v %v", d.KeyMetadata.ExpirationModel, d.KeyMetadata.ValidTo)
	}

	// Tokens expire after 24 hours, whether their parameters are still in
	// the state or already pruned by the leader.
	clk.Advance(24*time.Hour + time.Second)
	err = imp(id, p.ImportToken, wrapMaterial(t, p, alg, material), nil)
	wantAPIError(t, err, errExpiredImportToken)
	if err := ts.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if k, _ := ts.node.Key(id); len(k.Import.Params) != 0 {
		t.Fatalf("%d expired parameter sets (wrapped private keys) kept", len(k.Import.Params))
	}
	err = imp(id, p.ImportToken, wrapMaterial(t, p, alg, material), nil)
	wantAPIError(t, err, errExpiredImportToken)
}

// TestImportExpiryAndDelete: the leader deletes material when ValidTo
// comes (on time, not before), DeleteImportedKeyMaterial does at once, and
// re-importing the same material makes old ciphertexts decrypt again.
func TestImportExpiryAndDelete(t *testing.T) {
	ts, clk := newTestServerClock(t)
	ctx := context.Background()
	c := ts.client
	alg := types.AlgorithmSpecRsaAesKeyWrapSha1
	id := ts.createExternalKey(t)
	p := ts.params(t, id, alg, types.WrappingKeySpecRsa2048)
	material := newMaterial()
	validTo := clk.Now().Add(time.Hour)
	if _, err := c.ImportKeyMaterial(ctx, &kms.ImportKeyMaterialInput{KeyId: aws.String(id), ImportToken: p.ImportToken,
		EncryptedKeyMaterial: wrapMaterial(t, p, alg, material), ValidTo: aws.Time(validTo)}); err != nil {
		t.Fatal(err)
	}
	enc, err := c.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(id), Plaintext: []byte("kept")})
	if err != nil {
		t.Fatal(err)
	}
	decrypts := func() error {
		out, err := c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob})
		if err == nil && string(out.Plaintext) != "kept" {
			t.Fatalf("Decrypt = %q", out.Plaintext)
		}
		return err
	}
	state := func() types.KeyState {
		d, err := c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(id)})
		if err != nil {
			t.Fatal(err)
		}
		return d.KeyMetadata.KeyState
	}
	clk.Advance(time.Hour - time.Second)
	if err := ts.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if s := state(); s != types.KeyStateEnabled {
		t.Fatalf("material expired early: %s", s)
	}
	clk.Advance(time.Second)
	if err := ts.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if s := state(); s != types.KeyStatePendingImport {
		t.Fatalf("material not expired at ValidTo: %s", s)
	}
	wantAPIError(t, decrypts(), errInvalidState)
	d, _ := c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(id)})
	if d.KeyMetadata.ExpirationModel != "" || d.KeyMetadata.ValidTo != nil || d.KeyMetadata.Origin != types.OriginTypeExternal {
		t.Fatalf("metadata after expiry: %+v", d.KeyMetadata)
	}
	// Key-state cells for PendingImport.
	_, err = c.EnableKey(ctx, &kms.EnableKeyInput{KeyId: aws.String(id)})
	wantAPIError(t, err, errInvalidState)
	_, err = c.GetKeyRotationStatus(ctx, &kms.GetKeyRotationStatusInput{KeyId: aws.String(id)})
	wantAPIError(t, err, errUnsupported) // [6]
	_, err = c.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: aws.String(id), NumberOfBytes: aws.Int32(16)})
	wantAPIError(t, err, errInvalidState)
	if _, err := c.DeleteImportedKeyMaterial(ctx, &kms.DeleteImportedKeyMaterialInput{KeyId: aws.String(id)}); err != nil {
		t.Fatalf("DeleteImportedKeyMaterial when pending import (no effect): %v", err)
	}

	ts.importMaterial(t, id, p, wrapMaterial(t, p, alg, material))
	if err := decrypts(); err != nil {
		t.Fatalf("old ciphertext after re-import: %v", err)
	}
	del, err := c.DeleteImportedKeyMaterial(ctx, &kms.DeleteImportedKeyMaterialInput{KeyId: aws.String(id)})
	if err != nil {
		t.Fatal(err)
	}
	if del.KeyMaterialId == nil || *del.KeyId != ts.keyArn(id) {
		t.Fatalf("DeleteImportedKeyMaterial answer: %+v", del)
	}
	if s := state(); s != types.KeyStatePendingImport {
		t.Fatalf("after DeleteImportedKeyMaterial: %s", s)
	}
	wantAPIError(t, decrypts(), errInvalidState)
	// A Disabled key keeps its state across re-import; deleting its
	// material makes it PendingImport.
	ts.importMaterial(t, id, p, wrapMaterial(t, p, alg, material))
	if _, err := c.DisableKey(ctx, &kms.DisableKeyInput{KeyId: aws.String(id)}); err != nil {
		t.Fatal(err)
	}
	ts.importMaterial(t, id, p, wrapMaterial(t, p, alg, material))
	if s := state(); s != types.KeyStateDisabled {
		t.Fatalf("re-import into a Disabled key: %s", s)
	}
	if _, err := c.EnableKey(ctx, &kms.EnableKeyInput{KeyId: aws.String(id)}); err != nil {
		t.Fatal(err)
	}
	if err := decrypts(); err != nil {
		t.Fatal(err)
	}
	// Pending deletion: no import ([8]), material may be deleted, and a
	// cancelled deletion leaves the key PendingImport.
	if _, err := c.ScheduleKeyDeletion(ctx, &kms.ScheduleKeyDeletionInput{KeyId: aws.String(id), PendingWindowInDays: aws.Int32(7)}); err != nil {
		t.Fatal(err)
	}
	_, err = c.ImportKeyMaterial(ctx, &kms.ImportKeyMaterialInput{KeyId: aws.String(id), ImportToken: p.ImportToken,
		EncryptedKeyMaterial: wrapMaterial(t, p, alg, material), ExpirationModel: types.ExpirationModelTypeKeyMaterialDoesNotExpire})
	wantAPIError(t, err, errInvalidState)
	_, err = c.GetParametersForImport(ctx, &kms.GetParametersForImportInput{KeyId: aws.String(id), WrappingAlgorithm: alg, WrappingKeySpec: types.WrappingKeySpecRsa2048})
	wantAPIError(t, err, errInvalidState)
	if _, err := c.DeleteImportedKeyMaterial(ctx, &kms.DeleteImportedKeyMaterialInput{KeyId: aws.String(id)}); err != nil {
		t.Fatal(err)
	}
	if s := state(); s != types.KeyStatePendingDeletion {
		t.Fatalf("delete material of a key pending deletion: %s", s)
	}
	if _, err := c.CancelKeyDeletion(ctx, &kms.CancelKeyDeletionInput{KeyId: aws.String(id)}); err != nil {
		t.Fatal(err)
	}
	if s := state(); s != types.KeyStatePendingImport {
		t.Fatalf("cancelled deletion of a key without material: %s", s)
	}
}

// TestImportSurvivesRestart: imported material is in the replicated state
// (wrapped only) and works after a restart; the data directory holds
// neither the material nor the wrapping private key in plaintext.
func TestImportSurvivesRestart(t *testing.T) {
	lib, label, pin := hsmtest.NewToken(t)
	tok := tokenRef{lib, label, pin}
	dir := t.TempDir()
	ts := startTestServer(t, dir, tok)
	ctx := context.Background()
	alg := types.AlgorithmSpecRsaesOaepSha1
	id := ts.createExternalKey(t)
	p := ts.params(t, id, alg, types.WrappingKeySpecRsa2048)
	material := newMaterial()
	ts.importMaterial(t, id, p, wrapMaterial(t, p, alg, material))
	enc, err := ts.client.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(id), Plaintext: []byte("durable")})
	if err != nil {
		t.Fatal(err)
	}
	// A parameter set made before the restart still imports after it (on
	// any node: its private key is in the state, wrapped).
	p2 := ts.params(t, id, alg, types.WrappingKeySpecRsa2048)
	ts.stop()

	ts = startTestServer(t, dir, tok)
	out, err := ts.client.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob})
	if err != nil || string(out.Plaintext) != "durable" {
		t.Fatalf("Decrypt after restart: %v", err)
	}
	if _, err := ts.client.DeleteImportedKeyMaterial(ctx, &kms.DeleteImportedKeyMaterialInput{KeyId: aws.String(id)}); err != nil {
		t.Fatal(err)
	}
	ts.importMaterial(t, id, p2, wrapMaterial(t, p2, alg, material))
	if _, err := ts.client.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob}); err != nil {
		t.Fatal(err)
	}
	ts.stop()
	assertNotInDir(t, dir, map[string][]byte{"the imported key material": material[:16]})
}

// assertNotInDir fails t if a file under dir holds one of secrets.
func assertNotInDir(t testing.TB, dir string, secrets map[string][]byte) {
	t.Helper()
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for what, secret := range secrets {
			if bytes.Contains(b, secret) {
				return fmt.Errorf("%s holds %s in plaintext", path, what)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestImportOpenSSL follows the guide's steps with the openssl command:
// the material made and wrapped by OpenSSL imports and then works.
func TestImportOpenSSL(t *testing.T) {
	ts := newTestServer(t)
	ctx := context.Background()
	o := newOpenSSL(t)
	for _, alg := range []types.AlgorithmSpec{types.AlgorithmSpecRsaesOaepSha1, types.AlgorithmSpecRsaesOaepSha256,
		types.AlgorithmSpecRsaAesKeyWrapSha1, types.AlgorithmSpecRsaAesKeyWrapSha256} {
		t.Run(string(alg), func(t *testing.T) {
			id := ts.createExternalKey(t)
			p := ts.params(t, id, alg, types.WrappingKeySpecRsa4096)
			o.run(t, "rand", "-out", "PlaintextKeyMaterial.bin", "32")
			ts.importMaterial(t, id, p, o.wrap(t, p, alg, "PlaintextKeyMaterial.bin"))
			read := func(name string) []byte { return o.read(t, name) }
			enc, err := ts.client.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(id), Plaintext: []byte("from openssl")})
			if err != nil {
				t.Fatal(err)
			}
			if got := openWithMaterial(t, read("PlaintextKeyMaterial.bin"), enc.CiphertextBlob, nil); string(got) != "from openssl" {
				t.Fatalf("opened with OpenSSL's material: %q", got)
			}
			out, err := ts.client.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob})
			if err != nil || string(out.Plaintext) != "from openssl" {
				t.Fatalf("Decrypt: %v", err)
			}
		})
	}
}

// openssl runs the openssl command in a temporary directory.
type openssl struct{ dir string }

func newOpenSSL(t testing.TB) *openssl {
	t.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl is not installed")
	}
	return &openssl{dir: t.TempDir()}
}

func (o *openssl) run(t testing.TB, args ...string) []byte {
	t.Helper()
	cmd := exec.Command("openssl", args...)
	cmd.Dir = o.dir
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("openssl %v: %v\n%s", args, err, out)
	}
	return out
}

func (o *openssl) read(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(o.dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (o *openssl) write(t testing.TB, name string, b []byte) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(o.dir, name), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// wrap follows the guide's "Encrypt the key material" steps for alg: the
// material in file is encrypted under p's public key into
// EncryptedKeyMaterial.bin, whose content it returns.
func (o *openssl) wrap(t testing.TB, p *kms.GetParametersForImportOutput, alg types.AlgorithmSpec, file string) []byte {
	t.Helper()
	o.write(t, "WrappingPublicKey.bin", p.PublicKey)
	md := "sha1"
	if alg == types.AlgorithmSpecRsaesOaepSha256 || alg == types.AlgorithmSpecRsaAesKeyWrapSha256 {
		md = "sha256"
	}
	oaep := []string{"-inkey", "WrappingPublicKey.bin", "-keyform", "DER", "-pubin",
		"-pkeyopt", "rsa_padding_mode:oaep", "-pkeyopt", "rsa_oaep_md:" + md, "-pkeyopt", "rsa_mgf1_md:" + md}
	if alg == types.AlgorithmSpecRsaesOaepSha1 || alg == types.AlgorithmSpecRsaesOaepSha256 {
		o.run(t, append([]string{"pkeyutl", "-encrypt", "-in", file, "-out", "EncryptedKeyMaterial.bin"}, oaep...)...)
		return o.read(t, "EncryptedKeyMaterial.bin")
	}
	o.run(t, "rand", "-out", "aes-key.bin", "32")
	o.run(t, "enc", "-id-aes256-wrap-pad", "-K", fmt.Sprintf("%x", o.read(t, "aes-key.bin")), "-iv", "A65959A6",
		"-in", file, "-out", "key-material-wrapped.bin")
	o.run(t, append([]string{"pkeyutl", "-encrypt", "-in", "aes-key.bin", "-out", "aes-key-wrapped.bin"}, oaep...)...)
	wrapped := append(o.read(t, "aes-key-wrapped.bin"), o.read(t, "key-material-wrapped.bin")...)
	o.write(t, "EncryptedKeyMaterial.bin", wrapped)
	return wrapped
}

// FuzzImportToken: the token parser never panics and only accepts what
// the encoder makes.
func FuzzImportToken(f *testing.F) {
	var tid [tokenIDLen]byte
	f.Add(encodeImportToken(tid, 1, 7, "1234abcd-12ab-34cd-56ef-1234567890ab"))
	f.Add([]byte{})
	f.Add([]byte{1})
	f.Add([]byte{2, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		tok, ok := parseImportToken(b)
		if !ok {
			return
		}
		var raw [tokenIDLen]byte
		copy(raw[:], b[1:1+tokenIDLen])
		if !bytes.Equal(encodeImportToken(raw, tok.validTo, tok.index, tok.keyID), b) || len(tok.id) != 2*tokenIDLen {
			t.Fatalf("token %x does not round-trip", b)
		}
	})
}

// TestImportAcrossHSMs: two nodes, each with its own HSM token. The
// wrapping key pair made by one node's HSM serves an import on the other
// (its private key travels only wrapped by the domain key), and the
// material then works on both.
func TestImportAcrossHSMs(t *testing.T) {
	lib, label, pin := hsmtest.NewToken(t)
	dir1 := t.TempDir()
	n1 := startNode(t, dir1, tokenRef{lib, label, pin}, Config{},
		cluster.Config{NodeID: "a", DataDir: dir1, BindAddr: "127.0.0.1:0", Bootstrap: true, HeartbeatTimeout: time.Second}, nil)
	lib2, label2, pin2 := hsmtest.NewToken(t)
	dir2 := t.TempDir()
	n2 := startNode(t, dir2, tokenRef{lib2, label2, pin2}, Config{},
		cluster.Config{NodeID: "b", DataDir: dir2, BindAddr: "127.0.0.1:0", HeartbeatTimeout: time.Second}, n1)
	waitMembers(t, []*testServer{n1, n2})
	ctx := context.Background()
	alg := types.AlgorithmSpecRsaAesKeyWrapSha256
	material := newMaterial()

	id := n1.createExternalKey(t)
	p := n1.params(t, id, alg, types.WrappingKeySpecRsa2048) // made in n1's HSM
	n2.importMaterial(t, id, p, wrapMaterial(t, p, alg, material))
	enc, err := n2.client.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(id), Plaintext: []byte("two HSMs")})
	if err != nil {
		t.Fatal(err)
	}
	waitEnabled(t, n1, id)
	if out, err := n1.client.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob}); err != nil || string(out.Plaintext) != "two HSMs" {
		t.Fatalf("Decrypt on the other node: %v", err)
	}
	// And the other way round: parameters from the follower's HSM.
	id2 := n2.createExternalKey(t)
	p2 := n2.params(t, id2, alg, types.WrappingKeySpecRsa2048)
	n1.importMaterial(t, id2, p2, wrapMaterial(t, p2, alg, material))
	waitEnabled(t, n2, id2)
	if _, err := n2.client.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(id2), Plaintext: []byte("x")}); err != nil {
		t.Fatal(err)
	}
}

// waitEnabled waits until ts has applied another node's write that
// enabled key id (eventual consistency between nodes, as in AWS).
func waitEnabled(t *testing.T, ts *testServer, id string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if k, _ := ts.node.Key(id); k != nil && k.State == cluster.StateEnabled {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the import never reached the other node")
		}
	}
}

// TestImportKeyStateTable checks the guide's cells of the import
// operations (written out from the guide, not from keystate.go) on EXTERNAL
// keys in each state they can reach, and [9] on AWS_KMS keys.
func TestImportKeyStateTable(t *testing.T) {
	ts := newTestServer(t)
	ctx := context.Background()
	c := ts.client
	alg := types.AlgorithmSpecRsaesOaepSha256
	states := []string{"Enabled", "Disabled", "PendingDeletion", "PendingImport"}
	guide := map[string][4]string{
		"GetParametersForImport":    {"", "", errInvalidState, ""},
		"ImportKeyMaterial":         {"", "", errInvalidState, ""},
		"DeleteImportedKeyMaterial": {"", "", "", ""},
		"Encrypt":                   {"", errDisabled, errInvalidState, errInvalidState},
		"EnableKey":                 {"", "", errInvalidState, errInvalidState},
		"DisableKey":                {"", "", errInvalidState, errInvalidState},
		"EnableKeyRotation":         {errUnsupported, errDisabled, errInvalidState, errUnsupported},
		"GetKeyRotationStatus":      {errUnsupported, errUnsupported, errUnsupported, errUnsupported}, // [7] / [6]
		"ListKeyRotations":          {"", "", "", ""},                                                 // the current API: imported material rotates, entries carry ImportState
		"ScheduleKeyDeletion":       {"", "", errInvalidState, ""},
		"CancelKeyDeletion":         {errInvalidState, errInvalidState, "", errInvalidState},
		"CreateGrant":               {"", errDisabled, errInvalidState, errInvalidState},
		"TagResource":               {"", "", errInvalidState, ""},
	}
	p0 := ts.params(t, ts.createExternalKey(t), alg, types.WrappingKeySpecRsa2048)
	for col, state := range states {
		for op, row := range guide {
			id := ts.createExternalKey(t)
			k := aws.String(id)
			material := newMaterial()
			p := ts.params(t, id, alg, types.WrappingKeySpecRsa2048)
			enc := wrapMaterial(t, p, alg, material)
			if state != "PendingImport" {
				ts.importMaterial(t, id, p, enc)
			}
			var err error
			switch state {
			case "Disabled":
				_, err = c.DisableKey(ctx, &kms.DisableKeyInput{KeyId: k})
			case "PendingDeletion":
				_, err = c.ScheduleKeyDeletion(ctx, &kms.ScheduleKeyDeletionInput{KeyId: k, PendingWindowInDays: aws.Int32(7)})
			}
			if err != nil {
				t.Fatal(err)
			}
			var call error
			switch op {
			case "GetParametersForImport":
				_, call = c.GetParametersForImport(ctx, &kms.GetParametersForImportInput{KeyId: k, WrappingAlgorithm: alg, WrappingKeySpec: types.WrappingKeySpecRsa2048})
			case "ImportKeyMaterial":
				_, call = c.ImportKeyMaterial(ctx, &kms.ImportKeyMaterialInput{KeyId: k, ImportToken: p.ImportToken, EncryptedKeyMaterial: enc,
					ExpirationModel: types.ExpirationModelTypeKeyMaterialDoesNotExpire})
			case "DeleteImportedKeyMaterial":
				_, call = c.DeleteImportedKeyMaterial(ctx, &kms.DeleteImportedKeyMaterialInput{KeyId: k})
			case "Encrypt":
				_, call = c.Encrypt(ctx, &kms.EncryptInput{KeyId: k, Plaintext: []byte("x")})
			case "EnableKey":
				_, call = c.EnableKey(ctx, &kms.EnableKeyInput{KeyId: k})
			case "DisableKey":
				_, call = c.DisableKey(ctx, &kms.DisableKeyInput{KeyId: k})
			case "EnableKeyRotation":
				_, call = c.EnableKeyRotation(ctx, &kms.EnableKeyRotationInput{KeyId: k})
			case "GetKeyRotationStatus":
				_, call = c.GetKeyRotationStatus(ctx, &kms.GetKeyRotationStatusInput{KeyId: k})
			case "ListKeyRotations":
				_, call = c.ListKeyRotations(ctx, &kms.ListKeyRotationsInput{KeyId: k})
			case "ScheduleKeyDeletion":
				_, call = c.ScheduleKeyDeletion(ctx, &kms.ScheduleKeyDeletionInput{KeyId: k})
			case "CancelKeyDeletion":
				_, call = c.CancelKeyDeletion(ctx, &kms.CancelKeyDeletionInput{KeyId: k})
			case "CreateGrant":
				_, call = c.CreateGrant(ctx, &kms.CreateGrantInput{KeyId: k, GranteePrincipal: aws.String("arn:aws:iam::111122223333:root"),
					Operations: []types.GrantOperation{types.GrantOperationEncrypt}})
			case "TagResource":
				_, call = c.TagResource(ctx, &kms.TagResourceInput{KeyId: k, Tags: []types.Tag{{TagKey: aws.String("a"), TagValue: aws.String("b")}}})
			default:
				t.Fatalf("no call for %s", op)
			}
			want := row[col]
			if want == "" {
				if call != nil {
					t.Errorf("%s on %s EXTERNAL key: %v, want success", op, state, call)
				}
				continue
			}
			if call == nil {
				t.Errorf("%s on %s EXTERNAL key succeeded, want %s", op, state, want)
				continue
			}
			t.Run(op+"/"+state, func(t *testing.T) { wantAPIError(t, call, want) })
		}
	}
	// [9] on a key with KMS-made material, in every state it can reach.
	for _, state := range []string{"Enabled", "Disabled", "PendingDeletion"} {
		id := ts.createKey(t)
		k := aws.String(id)
		switch state {
		case "Disabled":
			c.DisableKey(ctx, &kms.DisableKeyInput{KeyId: k})
		case "PendingDeletion":
			c.ScheduleKeyDeletion(ctx, &kms.ScheduleKeyDeletionInput{KeyId: k})
		}
		_, err := c.GetParametersForImport(ctx, &kms.GetParametersForImportInput{KeyId: k, WrappingAlgorithm: alg, WrappingKeySpec: types.WrappingKeySpecRsa2048})
		wantAPIError(t, err, errUnsupported)
		_, err = c.ImportKeyMaterial(ctx, &kms.ImportKeyMaterialInput{KeyId: k, ImportToken: p0.ImportToken, EncryptedKeyMaterial: []byte("x"),
			ExpirationModel: types.ExpirationModelTypeKeyMaterialDoesNotExpire})
		wantAPIError(t, err, errUnsupported)
		_, err = c.DeleteImportedKeyMaterial(ctx, &kms.DeleteImportedKeyMaterialInput{KeyId: k})
		wantAPIError(t, err, errUnsupported)
	}
}

// TestImportPolicyConditions: the guide's condition keys of import,
// kms:WrappingAlgorithm, kms:ExpirationModel and kms:ValidTo, in a key
// policy.
func TestImportPolicyConditions(t *testing.T) {
	ts, clk := newTestServerClock(t)
	ctx := context.Background()
	alice := ts.principal(t, testAlice, "")
	limit := clk.Now().Add(30 * 24 * time.Hour).Unix()
	policy := fmt.Sprintf(`{"Version":"2012-10-17","Statement":[
	  {"Effect":"Allow","Principal":{"AWS":%q},"Action":"kms:*","Resource":"*"},
	  {"Effect":"Allow","Principal":{"AWS":%q},"Action":"kms:GetParametersForImport","Resource":"*",
	   "Condition":{"StringNotEquals":{"kms:WrappingAlgorithm":"RSAES_OAEP_SHA_1"}}},
	  {"Effect":"Allow","Principal":{"AWS":%q},"Action":"kms:ImportKeyMaterial","Resource":"*",
	   "Condition":{"StringEquals":{"kms:ExpirationModel":"KEY_MATERIAL_EXPIRES"},"NumericLessThanEquals":{"kms:ValidTo":"%d"}}}]}`,
		testRoot, testAlice, testAlice, limit)
	ck, err := ts.client.CreateKey(ctx, &kms.CreateKeyInput{Policy: aws.String(policy), Origin: types.OriginTypeExternal})
	if err != nil {
		t.Fatal(err)
	}
	id := ck.KeyMetadata.KeyId
	_, err = alice.GetParametersForImport(ctx, &kms.GetParametersForImportInput{KeyId: id,
		WrappingAlgorithm: types.AlgorithmSpecRsaesOaepSha1, WrappingKeySpec: types.WrappingKeySpecRsa2048})
	wantAPIError(t, err, "AccessDeniedException")
	alg := types.AlgorithmSpecRsaesOaepSha256
	p, err := alice.GetParametersForImport(ctx, &kms.GetParametersForImportInput{KeyId: id, WrappingAlgorithm: alg, WrappingKeySpec: types.WrappingKeySpecRsa2048})
	if err != nil {
		t.Fatal(err)
	}
	material := newMaterial()
	imp := func(model types.ExpirationModelType, validTo *time.Time) error {
		_, err := alice.ImportKeyMaterial(ctx, &kms.ImportKeyMaterialInput{KeyId: id, ImportToken: p.ImportToken,
			EncryptedKeyMaterial: wrapMaterial(t, p, alg, material), ExpirationModel: model, ValidTo: validTo})
		return err
	}
	wantAPIError(t, imp(types.ExpirationModelTypeKeyMaterialDoesNotExpire, nil), "AccessDeniedException")
	wantAPIError(t, imp(types.ExpirationModelTypeKeyMaterialExpires, aws.Time(clk.Now().Add(31*24*time.Hour))), "AccessDeniedException")
	if err := imp(types.ExpirationModelTypeKeyMaterialExpires, aws.Time(clk.Now().Add(29*24*time.Hour))); err != nil {
		t.Fatalf("import within the policy: %v", err)
	}
}
