//go:build kmsdtest

package agent

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"

	"github.com/kmsd/kmsd/cluster"
)

// TestNoPlaintextAsymmetricAtRest looks for private keys (one made in the
// HSM, one made in Go and sealed) and an HMAC key's secret, exposed only
// through test hooks, in every file the node wrote.
func TestNoPlaintextAsymmetricAtRest(t *testing.T) {
	ts := newTestServer(t)
	ctx := context.Background()
	ec, err := ts.client.CreateKey(ctx, &kms.CreateKeyInput{KeySpec: "ECC_NIST_P256", KeyUsage: "SIGN_VERIFY"})
	if err != nil {
		t.Fatal(err)
	}
	ed, err := ts.client.CreateKey(ctx, &kms.CreateKeyInput{KeySpec: "ECC_NIST_EDWARDS25519", KeyUsage: "SIGN_VERIFY"})
	if err != nil {
		t.Fatal(err)
	}
	mac, err := ts.client.CreateKey(ctx, &kms.CreateKeyInput{KeySpec: "HMAC_256", KeyUsage: "GENERATE_VERIFY_MAC"})
	if err != nil {
		t.Fatal(err)
	}
	sm, err := ts.client.CreateKey(ctx, &kms.CreateKeyInput{KeySpec: "SM2", KeyUsage: "SIGN_VERIFY"})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []*string{ec.KeyMetadata.KeyId, ed.KeyMetadata.KeyId, sm.KeyMetadata.KeyId} {
		alg := types.SigningAlgorithmSpec("ECDSA_SHA_256")
		switch *k {
		case *ed.KeyMetadata.KeyId:
			alg = "ED25519_SHA_512"
		case *sm.KeyMetadata.KeyId:
			alg = "SM2DSA"
		}
		if _, err := ts.client.Sign(ctx, &kms.SignInput{KeyId: k, Message: []byte("m"), SigningAlgorithm: alg}); err != nil {
			t.Fatal(err)
		}
	}
	// The P-256 key was made in the HSM: its scalar, exported by the hook.
	ek, _ := ts.node.Key(*ec.KeyMetadata.KeyId)
	em, _ := ek.CurrentMaterial()
	if em.Form != cluster.MaterialHSMPrivate {
		t.Fatalf("P-256 key material form %q", em.Form)
	}
	hs, _ := hsmSpec(ek.KeySpec, ek.KeyUsage)
	scalar, err := ts.pool.UnsafeExportPrivateForTest(ctx, em.Wrapped, hs)
	if err != nil {
		t.Fatal(err)
	}
	if len(scalar) != 32 {
		t.Fatalf("P-256 scalar of %d bytes", len(scalar))
	}
	// The Ed25519 and SM2 keys were made in Go and sealed: their PKCS#8
	// DER, the Ed25519 seed and the SM2 scalar.
	unseal := func(id *string) []byte {
		k, _ := ts.node.Key(*id)
		m, _ := k.CurrentMaterial()
		der, err := ts.pool.Open(ctx, m.Wrapped, m.Sealed, privateKeyAAD(k.ID))
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	der := unseal(ed.KeyMetadata.KeyId)
	priv, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		t.Fatal(err)
	}
	seed := priv.(ed25519.PrivateKey).Seed()
	sm2DER := unseal(sm.KeyMetadata.KeyId)
	sm2Priv, err := smx509.ParsePKCS8PrivateKey(sm2DER)
	if err != nil {
		t.Fatal(err)
	}
	sm2Scalar := sm2Priv.(*sm2.PrivateKey).D.FillBytes(make([]byte, 32))
	mk, _ := ts.node.Key(*mac.KeyMetadata.KeyId)
	mm, _ := mk.CurrentMaterial()
	secret, err := ts.pool.UnsafeExportSecretForTest(ctx, mm.Wrapped)
	if err != nil {
		t.Fatal(err)
	}
	secrets := map[string][]byte{"P-256 private scalar": scalar, "Ed25519 PKCS#8 private key": der,
		"Ed25519 seed": seed, "HMAC secret": secret[:32], "SM2 PKCS#8 private key": sm2DER, "SM2 private scalar": sm2Scalar}
	if err := ts.node.Snapshot(); err != nil {
		t.Fatal(err)
	}
	ts.stop()
	dirs := []string{ts.dir}
	if conf := os.Getenv("SOFTHSM2_CONF"); conf != "" {
		dirs = append(dirs, filepath.Dir(conf))
	}
	files := 0
	for _, dir := range dirs {
		filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			files++
			for name, s := range secrets {
				if bytes.Contains(b, s) {
					t.Errorf("%s found in plaintext in %s", name, p)
				}
			}
			return nil
		})
	}
	if files < 3 {
		t.Fatalf("scanned only %d files", files)
	}
}
