package job

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"testing"

	"github.com/kmsd/kmsd/batch/esdk"
)

// streamJob runs a Stream job of cfg over in and returns its output and
// summary.
func streamJob(t *testing.T, cfg Config, in []byte) ([]byte, *Summary) {
	t.Helper()
	var out bytes.Buffer
	s, err := newTestJob(t, cfg).Stream(context.Background(), bytes.NewReader(in), &out)
	if err != nil {
		t.Fatal(err)
	}
	return out.Bytes(), s
}

// TestResealStream: on a stream (--in - --out -) a re-wrap re-encrypts a
// signed message, and with Reseal an unsigned one (a new message ID, data
// key and body; GenerateDataKey, no ReEncrypt); the result decrypts to
// the plaintext and keeps the context. A signed message whose signature
// does not verify fails, and what reached the output is an unfinished
// message that does not decrypt.
func TestResealStream(t *testing.T) {
	k := newSealKMS(t)
	pt := make([]byte, 3*4096+100)
	rand.Read(pt)
	ec := map[string]string{"app": "x"}
	for _, tc := range []struct {
		name   string
		suite  esdk.Suite
		reseal bool
	}{{"signed", esdk.SuiteCommitKeyECDSAP384, false}, {"unsigned-reseal", esdk.SuiteCommitKey, true}} {
		t.Run(tc.name, func(t *testing.T) {
			msg, s := streamJob(t, Config{Mode: Encrypt, KMS: []KMS{k}, KeyID: "k", Suite: tc.suite, Context: ec}, pt)
			if !s.OK() {
				t.Fatalf("encrypt: %+v", s)
			}
			re, s := streamJob(t, Config{Mode: ReEncrypt, KMS: []KMS{k}, KeyID: "k2", Reseal: tc.reseal}, msg)
			if !s.OK() || s.Resealed != 1 || s.KMSCalls["ReEncrypt"] != 0 || s.KMSCalls["GenerateDataKey"] != 1 {
				t.Fatalf("reencrypt: %+v", s)
			}
			h0, _ := esdk.ReadHeader(bufio.NewReader(bytes.NewReader(msg)), esdk.Limits{})
			h1, err := esdk.ReadHeader(bufio.NewReader(bytes.NewReader(re)), esdk.Limits{})
			if err != nil || h1.Suite != tc.suite || bytes.Equal(h0.MessageID, h1.MessageID) || h1.Context["app"] != "x" ||
				tc.suite.Signed() && h1.Context[esdk.PublicKeyContextKey] == h0.Context[esdk.PublicKeyContextKey] {
				t.Fatalf("re-encrypted header: %v %+v", err, h1)
			}
			got, s := streamJob(t, Config{Mode: Decrypt, KMS: []KMS{k}, Context: ec}, re)
			if !s.OK() || !bytes.Equal(got, pt) {
				t.Fatalf("decrypt of the re-encrypted message: %+v", s)
			}
			if !tc.suite.Signed() {
				return
			}
			bad := bytes.Clone(msg)
			bad[len(bad)-1] ^= 1 // the signature's last byte
			re, s = streamJob(t, Config{Mode: ReEncrypt, KMS: []KMS{k}, KeyID: "k2"}, bad)
			if s.OK() || s.Resealed != 0 || len(s.Failures) != 1 {
				t.Fatalf("reencrypt of a bad signature: %+v", s)
			}
			if _, s := streamJob(t, Config{Mode: Decrypt, KMS: []KMS{k}}, re); s.OK() {
				t.Fatal("the unfinished output of a failed re-encryption decrypts")
			}
		})
	}
}
