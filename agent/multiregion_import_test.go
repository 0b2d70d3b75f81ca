package agent

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
)

// TestMultiRegionImportedMaterial: multi-Region keys with imported material
// (symmetric, HMAC, ECC) in one-node clusters of three Regions. A primary needs its
// material before it can be replicated; the replica is Creating, then
// PendingImport; other material is refused in the replica, the primary's
// material imports, and then ciphertexts, MACs and signatures made in one
// Region check out in the other with the same KeyMaterialId. A new primary
// (UpdatePrimaryRegion) makes replicas that take the same material only.
func TestMultiRegionImportedMaterial(t *testing.T) {
	rs := newRegions(t, "us-east-1", "us-west-2", "eu-west-1")
	east, west, eu := rs[0], rs[1], rs[2]
	ctx := context.Background()
	mrkImport := func(rn *regionNode, id string, alg types.AlgorithmSpec, material []byte) (*kms.ImportKeyMaterialOutput, error) {
		p := rn.params(t, id, alg, "RSA_2048")
		return rn.client.ImportKeyMaterial(ctx, &kms.ImportKeyMaterialInput{KeyId: &id, ImportToken: p.ImportToken,
			EncryptedKeyMaterial: wrapMaterial(t, p, alg, material), ExpirationModel: types.ExpirationModelTypeKeyMaterialDoesNotExpire})
	}
	replicate := func(id string) {
		t.Helper()
		rep, err := east.client.ReplicateKey(ctx, &kms.ReplicateKeyInput{KeyId: &id, ReplicaRegion: aws.String("us-west-2")})
		if err != nil {
			t.Fatal(err)
		}
		if rep.ReplicaKeyMetadata.KeyState != types.KeyStateCreating || rep.ReplicaKeyMetadata.Origin != types.OriginTypeExternal {
			t.Fatalf("new replica: %s %s", rep.ReplicaKeyMetadata.KeyState, rep.ReplicaKeyMetadata.Origin)
		}
		east.tick(t)
		if md := west.describe(t, id); md.KeyState != types.KeyStatePendingImport || md.MultiRegionConfiguration.MultiRegionKeyType != types.MultiRegionKeyTypeReplica {
			t.Fatalf("replica after the first sync: %s", md.KeyState)
		}
	}
	create := func(spec types.KeySpec, usage types.KeyUsageType) string {
		t.Helper()
		out, err := east.client.CreateKey(ctx, &kms.CreateKeyInput{MultiRegion: aws.Bool(true), Origin: types.OriginTypeExternal, KeySpec: spec, KeyUsage: usage})
		if err != nil {
			t.Fatal(err)
		}
		return *out.KeyMetadata.KeyId
	}

	t.Run("SYMMETRIC_DEFAULT", func(t *testing.T) {
		id := create("SYMMETRIC_DEFAULT", "ENCRYPT_DECRYPT")
		_, err := east.client.ReplicateKey(ctx, &kms.ReplicateKeyInput{KeyId: &id, ReplicaRegion: aws.String("us-west-2")})
		wantAPIError(t, err, errInvalidState) // [5]: the primary has no material yet
		material := newMaterial()
		first, err := mrkImport(east, id, "RSAES_OAEP_SHA_256", material)
		if err != nil {
			t.Fatal(err)
		}
		replicate(id)
		_, err = west.client.Encrypt(ctx, &kms.EncryptInput{KeyId: &id, Plaintext: []byte("x")})
		wantAPIError(t, err, errInvalidState)
		_, err = mrkImport(west, id, "RSA_AES_KEY_WRAP_SHA_1", newMaterial())
		wantAPIError(t, err, errIncorrectKeyMaterial)
		again, err := mrkImport(west, id, "RSA_AES_KEY_WRAP_SHA_1", material)
		if err != nil {
			t.Fatal(err)
		}
		if *again.KeyMaterialId != *first.KeyMaterialId {
			t.Fatalf("KeyMaterialId %s in the replica, %s in the primary", *again.KeyMaterialId, *first.KeyMaterialId)
		}
		if md := west.describe(t, id); md.KeyState != types.KeyStateEnabled || *md.CurrentKeyMaterialId != *first.KeyMaterialId {
			t.Fatalf("replica after import: %s", md.KeyState)
		}
		encryptIn(t, east, west, id)
		encryptIn(t, west, east, id)
		// The primary's sync leaves the replica's own material alone.
		east.tick(t)
		encryptIn(t, east, west, id)
		// A new primary (us-west-2) passes on what it got: its replica in
		// eu-west-1 takes the same material only.
		if _, err := east.client.UpdatePrimaryRegion(ctx, &kms.UpdatePrimaryRegionInput{KeyId: &id, PrimaryRegion: aws.String("us-west-2")}); err != nil {
			t.Fatal(err)
		}
		east.tick(t)
		west.tick(t)
		if _, err := west.client.ReplicateKey(ctx, &kms.ReplicateKeyInput{KeyId: &id, ReplicaRegion: aws.String("eu-west-1")}); err != nil {
			t.Fatal(err)
		}
		west.tick(t)
		if md := eu.describe(t, id); md.KeyState != types.KeyStatePendingImport {
			t.Fatalf("replica of the new primary: %s", md.KeyState)
		}
		_, err = mrkImport(eu, id, "RSAES_OAEP_SHA_1", newMaterial())
		wantAPIError(t, err, errIncorrectKeyMaterial)
		if _, err := mrkImport(eu, id, "RSAES_OAEP_SHA_1", material); err != nil {
			t.Fatal(err)
		}
		encryptIn(t, east, eu, id)
		encryptIn(t, eu, west, id)
		// Deleting the material in one Region (us-west-2, the primary now)
		// leaves the other Regions' alone.
		if _, err := west.client.DeleteImportedKeyMaterial(ctx, &kms.DeleteImportedKeyMaterialInput{KeyId: &id}); err != nil {
			t.Fatal(err)
		}
		west.tick(t)
		for _, rn := range []*regionNode{east, eu} {
			if md := rn.describe(t, id); md.KeyState != types.KeyStateEnabled {
				t.Fatalf("%s after the material was deleted in us-west-2: %s", rn.region, md.KeyState)
			}
		}
		if md := west.describe(t, id); md.KeyState != types.KeyStatePendingImport {
			t.Fatalf("us-west-2 after delete: %s", md.KeyState)
		}
		encryptIn(t, east, eu, id)
	})

	t.Run("HMAC_384", func(t *testing.T) {
		id := create("HMAC_384", "GENERATE_VERIFY_MAC")
		secret := make([]byte, 48)
		rand.Read(secret)
		if _, err := mrkImport(east, id, "RSAES_OAEP_SHA_1", secret); err != nil {
			t.Fatal(err)
		}
		replicate(id)
		other := make([]byte, 48)
		rand.Read(other)
		_, err := mrkImport(west, id, "RSAES_OAEP_SHA_256", other)
		wantAPIError(t, err, errIncorrectKeyMaterial)
		if _, err := mrkImport(west, id, "RSAES_OAEP_SHA_256", secret); err != nil {
			t.Fatal(err)
		}
		msg := []byte("MAC in one Region, verify in the other")
		mac, err := east.client.GenerateMac(ctx, &kms.GenerateMacInput{KeyId: &id, MacAlgorithm: "HMAC_SHA_384", Message: msg})
		if err != nil {
			t.Fatal(err)
		}
		v, err := west.client.VerifyMac(ctx, &kms.VerifyMacInput{KeyId: &id, MacAlgorithm: "HMAC_SHA_384", Message: msg, Mac: mac.Mac})
		if err != nil || !v.MacValid {
			t.Fatalf("VerifyMac in the replica: %v", err)
		}
	})

	t.Run("ECC_NIST_P256", func(t *testing.T) {
		id := create("ECC_NIST_P256", "SIGN_VERIFY")
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		der, _ := x509.MarshalPKCS8PrivateKey(key)
		if _, err := mrkImport(east, id, "RSA_AES_KEY_WRAP_SHA_256", der); err != nil {
			t.Fatal(err)
		}
		replicate(id)
		otherKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		otherDER, _ := x509.MarshalPKCS8PrivateKey(otherKey)
		_, err := mrkImport(west, id, "RSAES_OAEP_SHA_1", otherDER)
		wantAPIError(t, err, errIncorrectKeyMaterial)
		if _, err := mrkImport(west, id, "RSAES_OAEP_SHA_1", der); err != nil {
			t.Fatal(err)
		}
		digest := sha256.Sum256([]byte("signed in the replica"))
		sig, err := west.client.Sign(ctx, &kms.SignInput{KeyId: &id, Message: digest[:], MessageType: types.MessageTypeDigest, SigningAlgorithm: "ECDSA_SHA_256"})
		if err != nil {
			t.Fatal(err)
		}
		if !ecdsa.VerifyASN1(&key.PublicKey, digest[:], sig.Signature) {
			t.Fatal("the replica's signature does not verify with the original public key")
		}
		pe, _ := east.client.GetPublicKey(ctx, &kms.GetPublicKeyInput{KeyId: &id})
		pw, _ := west.client.GetPublicKey(ctx, &kms.GetPublicKeyInput{KeyId: &id})
		if pe == nil || pw == nil || !bytes.Equal(pe.PublicKey, pw.PublicKey) {
			t.Fatal("public keys differ across Regions")
		}
	})
}

// TestMultiRegionImportedRotation: on-demand rotation of a multi-Region
// key's imported material, as the API reference describes it: the new
// material is imported (NEW_KEY_MATERIAL) into the primary and into each
// replica, and RotateKeyOnDemand runs on the primary (a replica refuses
// it). Until every replica has it the primary's pending material is
// PENDING_MULTI_REGION_IMPORT_AND_ROTATION and the rotation is refused
// (naming the Regions that lack it); then PENDING_ROTATION. The primary's
// sync makes each replica's pending material its new current version
// (same KeyMaterialId, same version number), so ciphertexts cross Regions
// both ways, old ones included.
func TestMultiRegionImportedRotation(t *testing.T) {
	rs := newRegions(t, "us-east-1", "us-west-2", "eu-west-1")
	east, west, eu := rs[0], rs[1], rs[2]
	ctx := context.Background()
	imp := func(rn *regionNode, id string, typ types.ImportType, material []byte) *kms.ImportKeyMaterialOutput {
		t.Helper()
		p := rn.params(t, id, "RSAES_OAEP_SHA_256", "RSA_2048")
		out, err := rn.client.ImportKeyMaterial(ctx, &kms.ImportKeyMaterialInput{KeyId: &id, ImportToken: p.ImportToken, ImportType: typ,
			EncryptedKeyMaterial: wrapMaterial(t, p, "RSAES_OAEP_SHA_256", material), ExpirationModel: types.ExpirationModelTypeKeyMaterialDoesNotExpire})
		if err != nil {
			t.Fatalf("%s: ImportKeyMaterial %s: %v", rn.region, typ, err)
		}
		return out
	}
	state := func(rn *regionNode, id string, want types.KeyState, material string) {
		t.Helper()
		md := rn.describe(t, id)
		if md.KeyState != want || material != "" && aws.ToString(md.CurrentKeyMaterialId) != material {
			t.Fatalf("%s: %s, current material %s; want %s, %s", rn.region, md.KeyState, aws.ToString(md.CurrentKeyMaterialId), want, material)
		}
	}
	rotations := func(rn *regionNode, id string) (ids []string, states []types.KeyMaterialState) {
		t.Helper()
		lr, err := rn.client.ListKeyRotations(ctx, &kms.ListKeyRotationsInput{KeyId: &id, IncludeKeyMaterial: types.IncludeKeyMaterialAllKeyMaterial})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range lr.Rotations {
			ids, states = append(ids, aws.ToString(r.KeyMaterialId)), append(states, r.KeyMaterialState)
		}
		return ids, states
	}
	ck, err := east.client.CreateKey(ctx, &kms.CreateKeyInput{MultiRegion: aws.Bool(true), Origin: types.OriginTypeExternal})
	if err != nil {
		t.Fatal(err)
	}
	id := *ck.KeyMetadata.KeyId
	m1, m2 := newMaterial(), newMaterial()
	first := imp(east, id, "", m1)
	for _, rn := range []*regionNode{west, eu} {
		if _, err := east.client.ReplicateKey(ctx, &kms.ReplicateKeyInput{KeyId: &id, ReplicaRegion: aws.String(rn.region)}); err != nil {
			t.Fatal(err)
		}
	}
	east.tick(t)
	imp(west, id, "", m1)
	imp(eu, id, "", m1)
	old, err := east.client.Encrypt(ctx, &kms.EncryptInput{KeyId: &id, Plaintext: []byte("version 1")})
	if err != nil {
		t.Fatal(err)
	}

	// New material in the primary and in us-west-2 only.
	second := imp(east, id, types.ImportTypeNewKeyMaterial, m2)
	if again := imp(west, id, types.ImportTypeNewKeyMaterial, m2); *again.KeyMaterialId != *second.KeyMaterialId {
		t.Fatalf("pending KeyMaterialId %s in us-west-2, %s in us-east-1", *again.KeyMaterialId, *second.KeyMaterialId)
	}
	state(west, id, types.KeyStateEnabled, *first.KeyMaterialId)
	if ids, st := rotations(east, id); len(st) != 2 || ids[1] != *second.KeyMaterialId || st[1] != types.KeyMaterialStatePendingMultiRegionImportAndRotation {
		t.Fatalf("us-east-1 rotations before eu-west-1 has the material: %v %v", ids, st)
	}
	_, err = east.client.RotateKeyOnDemand(ctx, &kms.RotateKeyOnDemandInput{KeyId: &id})
	wantAPIError(t, err, errUnsupported)
	if !strings.Contains(err.Error(), "eu-west-1") || strings.Contains(err.Error(), "us-west-2") {
		t.Fatalf("the refusal should name eu-west-1 only: %v", err)
	}
	_, err = west.client.RotateKeyOnDemand(ctx, &kms.RotateKeyOnDemandInput{KeyId: &id})
	wantAPIError(t, err, errUnsupported) // rotation is the primary's
	imp(eu, id, types.ImportTypeNewKeyMaterial, m2)
	if _, st := rotations(east, id); len(st) != 2 || st[1] != types.KeyMaterialStatePendingRotation {
		t.Fatalf("us-east-1 rotations once every Region has the material: %v", st)
	}
	if _, err := east.client.RotateKeyOnDemand(ctx, &kms.RotateKeyOnDemandInput{KeyId: &id}); err != nil {
		t.Fatal(err)
	}
	state(east, id, types.KeyStateEnabled, *second.KeyMaterialId)
	east.tick(t)
	for _, rn := range []*regionNode{west, eu} {
		state(rn, id, types.KeyStateEnabled, *second.KeyMaterialId)
	}
	encryptIn(t, east, west, id)
	encryptIn(t, west, eu, id)
	encryptIn(t, eu, east, id)
	for _, rn := range rs {
		dec, err := rn.client.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: old.CiphertextBlob})
		if err != nil || string(dec.Plaintext) != "version 1" || *dec.KeyMaterialId != *first.KeyMaterialId {
			t.Fatalf("%s: a version 1 ciphertext after the rotation: %v", rn.region, err)
		}
		ids, st := rotations(rn, id)
		if len(ids) != 2 || ids[0] != *first.KeyMaterialId || ids[1] != *second.KeyMaterialId || st[1] != types.KeyMaterialStateCurrent {
			t.Fatalf("%s: ListKeyRotations %v %v", rn.region, ids, st)
		}
	}
}
