//go:build kmsdtest

package agent

import (
	"bytes"
	"context"
	"encoding/base64"
	"os"
	"path/filepath"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/kmsd/kmsd/agent/audit"
	"github.com/kmsd/kmsd/hsmpool/hsmtest"
)

// TestNoPlaintextAtRest looks for the bytes of key material (exposed by a
// test-only HSM hook) and of a data key in every file the node wrote: raft
// log, snapshots, the audit log and the SoftHSM2 token directory, raw and
// base64-encoded.
func TestNoPlaintextAtRest(t *testing.T) {
	dir := t.TempDir()
	lg, err := audit.Open(audit.Config{Dir: filepath.Join(dir, "audit"), OnFull: audit.Block})
	if err != nil {
		t.Fatal(err)
	}
	lib, label, pin := hsmtest.NewToken(t)
	ts := startTestServerCfg(t, dir, tokenRef{lib, label, pin}, Config{Audit: lg})
	ctx := context.Background()
	id := ts.createKey(t)
	gdk, err := ts.client.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: &id, KeySpec: types.DataKeySpecAes256})
	if err != nil {
		t.Fatal(err)
	}
	k, _ := ts.node.Key(id)
	m, _ := k.CurrentMaterial()
	material, err := ts.pool.UnsafeExportForTest(ctx, m.Wrapped)
	if err != nil {
		t.Fatal(err)
	}
	if len(material) != 32 || bytes.Equal(material, m.Wrapped[:32]) {
		t.Fatalf("exported material looks wrong (%d bytes)", len(material))
	}
	secrets := map[string][]byte{
		"key material":      material,
		"data key":          gdk.Plaintext,
		"access key secret": []byte(ts.admin.Secret),
	}
	if err := ts.node.Snapshot(); err != nil {
		t.Fatal(err)
	}
	ts.stop()
	if err := lg.Close(); err != nil {
		t.Fatal(err)
	}
	for name, v := range secrets {
		secrets[name+" (base64)"] = []byte(base64.StdEncoding.EncodeToString(v))
	}

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
	if _, err := os.Stat(filepath.Join(dir, "audit", "audit.log")); err != nil {
		t.Fatalf("no audit log was scanned: %v", err)
	}
	if files < 3 {
		t.Fatalf("scanned only %d files: the walk missed the data", files)
	}
}
