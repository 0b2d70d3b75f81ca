package agent

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
)

// TestImportRotation: a symmetric key with imported material rotates on
// demand to new imported material (NEW_KEY_MATERIAL, PENDING_ROTATION,
// RotateKeyOnDemand); each version's material is deleted, expires and is
// re-imported on its own, and the key is Enabled only while all are there.
func TestImportRotation(t *testing.T) {
	ts, clk := newTestServerClock(t)
	ctx := context.Background()
	c := ts.client
	alg := types.AlgorithmSpecRsaesOaepSha1
	id := ts.createExternalKey(t)
	importAs := func(material []byte, typ types.ImportType, validTo *time.Time) (*kms.ImportKeyMaterialOutput, error) {
		p := ts.params(t, id, alg, types.WrappingKeySpecRsa2048)
		in := &kms.ImportKeyMaterialInput{KeyId: &id, ImportToken: p.ImportToken, EncryptedKeyMaterial: wrapMaterial(t, p, alg, material),
			ImportType: typ, ExpirationModel: types.ExpirationModelTypeKeyMaterialDoesNotExpire}
		if validTo != nil {
			in.ExpirationModel, in.ValidTo = types.ExpirationModelTypeKeyMaterialExpires, validTo
		}
		return c.ImportKeyMaterial(ctx, in)
	}
	describe := func() *types.KeyMetadata {
		t.Helper()
		out, err := c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: &id})
		if err != nil {
			t.Fatal(err)
		}
		return out.KeyMetadata
	}
	state := func() types.KeyState { return describe().KeyState }
	rotations := func() []types.RotationsListEntry {
		t.Helper()
		out, err := c.ListKeyRotations(ctx, &kms.ListKeyRotationsInput{KeyId: &id, IncludeKeyMaterial: types.IncludeKeyMaterialAllKeyMaterial})
		if err != nil {
			t.Fatal(err)
		}
		return out.Rotations
	}
	encrypt := func() []byte {
		t.Helper()
		out, err := c.Encrypt(ctx, &kms.EncryptInput{KeyId: &id, Plaintext: []byte("rotated")})
		if err != nil {
			t.Fatal(err)
		}
		return out.CiphertextBlob
	}

	a, b, other := newMaterial(), newMaterial(), newMaterial()
	first, err := importAs(a, types.ImportTypeNewKeyMaterial, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctA := encrypt()
	_, err = c.RotateKeyOnDemand(ctx, &kms.RotateKeyOnDemandInput{KeyId: &id})
	wantAPIError(t, err, errUnsupported) // no new material imported yet
	_, err = importAs(a, types.ImportTypeNewKeyMaterial, nil)
	wantAPIError(t, err, errValidation) // already the key's

	// New material waits for the rotation; encryption still uses a.
	validTo := clk.Now().Add(48 * time.Hour)
	pend, err := importAs(b, types.ImportTypeNewKeyMaterial, &validTo)
	if err != nil {
		t.Fatal(err)
	}
	if rs := rotations(); len(rs) != 2 || rs[1].KeyMaterialState != "PENDING_ROTATION" || *rs[1].KeyMaterialId != *pend.KeyMaterialId ||
		rs[0].KeyMaterialState != "CURRENT" || rs[0].ImportState != "IMPORTED" {
		t.Fatalf("with pending material: %+v", rs)
	}
	_, err = importAs(other, types.ImportTypeNewKeyMaterial, nil)
	wantAPIError(t, err, errValidation) // one pending material at a time
	if got := openWithMaterial(t, a, encrypt(), nil); string(got) != "rotated" {
		t.Fatal("pending material is in use before the rotation")
	}
	if _, err := c.RotateKeyOnDemand(ctx, &kms.RotateKeyOnDemandInput{KeyId: &id}); err != nil {
		t.Fatal(err)
	}
	ctB := encrypt()
	if got := openWithMaterial(t, b, ctB, nil); string(got) != "rotated" {
		t.Fatal("the new material is not in use after the rotation")
	}
	rs := rotations()
	if len(rs) != 2 || rs[1].KeyMaterialState != "CURRENT" || rs[1].RotationType != types.RotationTypeOnDemand || rs[1].RotationDate == nil ||
		rs[1].ValidTo == nil || rs[0].KeyMaterialState != "NON_CURRENT" || *rs[0].KeyMaterialId != *first.KeyMaterialId {
		t.Fatalf("after the rotation: %+v", rs)
	}
	if md := describe(); *md.CurrentKeyMaterialId != *pend.KeyMaterialId || md.ValidTo == nil {
		t.Fatalf("DescribeKey after the rotation: %+v", md)
	}
	for _, ct := range [][]byte{ctA, ctB} {
		if _, err := c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: ct}); err != nil {
			t.Fatal(err)
		}
	}

	// Deleting the first version's material: PendingImport until it is
	// back; other material is not taken for it.
	if _, err := c.DeleteImportedKeyMaterial(ctx, &kms.DeleteImportedKeyMaterialInput{KeyId: &id, KeyMaterialId: first.KeyMaterialId}); err != nil {
		t.Fatal(err)
	}
	if st := state(); st != types.KeyStatePendingImport {
		t.Fatalf("after deleting version 1: %s", st)
	}
	if rs := rotations(); rs[0].ImportState != "PENDING_IMPORT" || rs[1].ImportState != "IMPORTED" {
		t.Fatalf("import states: %+v", rs)
	}
	_, err = importAs(other, "", nil)
	wantAPIError(t, err, errIncorrectKeyMaterial)
	if _, err := importAs(a, types.ImportTypeExistingKeyMaterial, nil); err != nil {
		t.Fatal(err)
	}
	if st := state(); st != types.KeyStateEnabled {
		t.Fatalf("after re-importing version 1: %s", st)
	}
	if _, err := c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: ctA}); err != nil {
		t.Fatal(err)
	}

	// The current version expires on its own (the leader's timer).
	clk.Advance(49 * time.Hour)
	if err := ts.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if st := state(); st != types.KeyStatePendingImport {
		t.Fatalf("after version 2 expired: %s", st)
	}
	if rs := rotations(); rs[0].ImportState != "IMPORTED" || rs[1].ImportState != "PENDING_IMPORT" {
		t.Fatalf("import states after expiry: %+v", rs)
	}
	if _, err := importAs(b, "", nil); err != nil {
		t.Fatal(err)
	}
	if got := openWithMaterial(t, b, encrypt(), nil); string(got) != "rotated" {
		t.Fatal("version 2 is not current after its re-import")
	}
	if _, err := c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: ctB}); err != nil {
		t.Fatal(err)
	}
}
