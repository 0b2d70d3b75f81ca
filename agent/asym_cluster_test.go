package agent

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/kmsd/kmsd/cluster"
	"github.com/kmsd/kmsd/hsmpool/hsmtest"
)

// TestClusterAsymmetricOwnHSM: keys made on one node (private keys in its
// HSM, sealed keys, HMAC secrets) work on a node with a token of its own,
// which holds only the shared domain key.
func TestClusterAsymmetricOwnHSM(t *testing.T) {
	lib, label, pin := hsmtest.NewToken(t)
	dir1 := t.TempDir()
	n1 := startNode(t, dir1, tokenRef{lib, label, pin}, Config{},
		cluster.Config{NodeID: "a", DataDir: dir1, BindAddr: "127.0.0.1:0", Bootstrap: true, HeartbeatTimeout: time.Second}, nil)
	lib2, label2, pin2 := hsmtest.NewToken(t)
	dir2 := t.TempDir()
	n2 := startNode(t, dir2, tokenRef{lib2, label2, pin2}, Config{},
		cluster.Config{NodeID: "b", DataDir: dir2, BindAddr: "127.0.0.1:0", HeartbeatTimeout: time.Second}, n1)
	ctx := context.Background()
	create := func(spec types.KeySpec, usage types.KeyUsageType) *string {
		out, err := n1.client.CreateKey(ctx, &kms.CreateKeyInput{KeySpec: spec, KeyUsage: usage})
		if err != nil {
			t.Fatal(err)
		}
		// Wait for the second node to apply the key (reads are local).
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
			if _, ok := n2.node.Key(*out.KeyMetadata.KeyId); ok {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the second node never applied the key")
			}
		}
		return out.KeyMetadata.KeyId
	}
	msg := []byte("signed on one node, verified on the other")
	for _, c := range []struct {
		spec types.KeySpec
		alg  types.SigningAlgorithmSpec
	}{{"ECC_NIST_P256", "ECDSA_SHA_256"}, {"ECC_NIST_EDWARDS25519", "ED25519_SHA_512"}, {"SM2", "SM2DSA"}} {
		id := create(c.spec, "SIGN_VERIFY")
		sig, err := n2.client.Sign(ctx, &kms.SignInput{KeyId: id, Message: msg, SigningAlgorithm: c.alg})
		if err != nil {
			t.Fatalf("%s: Sign on the second node: %v", c.spec, err)
		}
		if _, err := n1.client.Verify(ctx, &kms.VerifyInput{KeyId: id, Message: msg, Signature: sig.Signature, SigningAlgorithm: c.alg}); err != nil {
			t.Fatalf("%s: Verify on the first node: %v", c.spec, err)
		}
	}
	rsaKey := create("RSA_2048", "ENCRYPT_DECRYPT")
	enc, err := n1.client.Encrypt(ctx, &kms.EncryptInput{KeyId: rsaKey, Plaintext: []byte("x"), EncryptionAlgorithm: "RSAES_OAEP_SHA_256"})
	if err != nil {
		t.Fatal(err)
	}
	dec, err := n2.client.Decrypt(ctx, &kms.DecryptInput{KeyId: rsaKey, CiphertextBlob: enc.CiphertextBlob, EncryptionAlgorithm: "RSAES_OAEP_SHA_256"})
	if err != nil || string(dec.Plaintext) != "x" {
		t.Fatalf("RSA Decrypt on the second node: %v", err)
	}
	mac := create("HMAC_512", "GENERATE_VERIFY_MAC")
	m1, err := n1.client.GenerateMac(ctx, &kms.GenerateMacInput{KeyId: mac, Message: msg, MacAlgorithm: "HMAC_SHA_512"})
	if err != nil {
		t.Fatal(err)
	}
	m2, err := n2.client.GenerateMac(ctx, &kms.GenerateMacInput{KeyId: mac, Message: msg, MacAlgorithm: "HMAC_SHA_512"})
	if err != nil || !bytes.Equal(m1.Mac, m2.Mac) {
		t.Fatalf("GenerateMac differs between nodes: %v", err)
	}
	if _, err := n2.client.VerifyMac(ctx, &kms.VerifyMacInput{KeyId: mac, Message: msg, MacAlgorithm: "HMAC_SHA_512", Mac: m1.Mac}); err != nil {
		t.Fatal(err)
	}
}
