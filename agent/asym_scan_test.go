//go:build kmsdtest

package agent

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/kms"
)

// TestNoPlaintextAsymmetricAtRest looks for an asymmetric key's private
// key (its PKCS#8 DER and its scalar) and an HMAC key's secret, both
// exposed only through test hooks, in every file the node wrote.
func TestNoPlaintextAsymmetricAtRest(t *testing.T) {
	ts := newTestServer(t)
	ctx := context.Background()
	ec, err := ts.client.CreateKey(ctx, &kms.CreateKeyInput{KeySpec: "ECC_NIST_P256", KeyUsage: "SIGN_VERIFY"})
	if err != nil {
		t.Fatal(err)
	}
	mac, err := ts.client.CreateKey(ctx, &kms.CreateKeyInput{KeySpec: "HMAC_256", KeyUsage: "GENERATE_VERIFY_MAC"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ts.client.Sign(ctx, &kms.SignInput{KeyId: ec.KeyMetadata.KeyId, Message: []byte("m"), SigningAlgorithm: "ECDSA_SHA_256"}); err != nil {
		t.Fatal(err)
	}
	ek, _ := ts.node.Key(*ec.KeyMetadata.KeyId)
	em, _ := ek.CurrentMaterial()
	der, err := ts.pool.Open(ctx, em.Wrapped, em.Sealed, privateKeyAAD(ek.ID))
	if err != nil {
		t.Fatal(err)
	}
	priv, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		t.Fatal(err)
	}
	scalar := priv.(*ecdsa.PrivateKey).D.FillBytes(make([]byte, 32))
	mk, _ := ts.node.Key(*mac.KeyMetadata.KeyId)
	mm, _ := mk.CurrentMaterial()
	secret, err := ts.pool.UnsafeExportSecretForTest(ctx, mm.Wrapped)
	if err != nil {
		t.Fatal(err)
	}
	secrets := map[string][]byte{"PKCS#8 private key": der, "private scalar": scalar, "HMAC secret": secret[:32]}
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
