package agent

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
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
		// kmsd does not rotate the imported material of multi-Region keys.
		pn := east.params(t, id, "RSAES_OAEP_SHA_1", "RSA_2048")
		_, err = east.client.ImportKeyMaterial(ctx, &kms.ImportKeyMaterialInput{KeyId: &id, ImportToken: pn.ImportToken,
			EncryptedKeyMaterial: wrapMaterial(t, pn, "RSAES_OAEP_SHA_1", newMaterial()), ImportType: types.ImportTypeNewKeyMaterial,
			ExpirationModel: types.ExpirationModelTypeKeyMaterialDoesNotExpire})
		wantAPIError(t, err, errUnsupported)
		_, err = east.client.RotateKeyOnDemand(ctx, &kms.RotateKeyOnDemandInput{KeyId: &id})
		wantAPIError(t, err, errUnsupported)
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
