package mldsamu

import (
	"compress/gzip"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestWycheproof runs the Wycheproof ML-DSA verification vectors: each
// (public key, context, message) becomes μ per FIPS 204, and Verify of μ
// must accept exactly the vectors marked valid. Vectors whose context is
// too long for μ (InvalidContext) must be invalid ones.
func TestWycheproof(t *testing.T) {
	type vector struct {
		TcID    int      `json:"tcId"`
		Comment string   `json:"comment"`
		Msg     string   `json:"msg"`
		Ctx     *string  `json:"ctx"`
		Sig     string   `json:"sig"`
		Result  string   `json:"result"`
		Flags   []string `json:"flags"`
	}
	type vectorFile struct {
		Algorithm  string `json:"algorithm"`
		TestGroups []struct {
			PublicKey string   `json:"publicKey"`
			Tests     []vector `json:"tests"`
		} `json:"testGroups"`
	}
	unhex := func(s string) []byte {
		b, err := hex.DecodeString(s)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	names, err := filepath.Glob("testdata/wycheproof/mldsa_*_verify_test.json.gz")
	if err != nil || len(names) != 3 {
		t.Fatalf("vector files: %v %v", names, err)
	}
	for _, name := range names {
		f, err := os.Open(name)
		if err != nil {
			t.Fatal(err)
		}
		var file vectorFile
		zr, err := gzip.NewReader(f)
		if err != nil {
			t.Fatal(err)
		}
		err = json.NewDecoder(zr).Decode(&file)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		var valid, invalid int
		for _, g := range file.TestGroups {
			pk := unhex(g.PublicKey)
			for _, v := range g.Tests {
				want := v.Result == "valid"
				if v.Result != "valid" && v.Result != "invalid" {
					t.Fatalf("%s #%d: result %q", file.Algorithm, v.TcID, v.Result)
				}
				var ctx []byte
				if v.Ctx != nil {
					ctx = unhex(*v.Ctx)
				}
				if len(ctx) > 255 {
					if want {
						t.Errorf("%s #%d: valid with a %d-byte context", file.Algorithm, v.TcID, len(ctx))
					}
					invalid++
					continue
				}
				mu := computeMu(pk, ctx, unhex(v.Msg))
				ok, err := Verify(pk, mu, unhex(v.Sig))
				if err != nil && !strings.Contains(strings.Join(v.Flags, ","), "PublicKeyLength") {
					t.Errorf("%s #%d (%s): %v", file.Algorithm, v.TcID, v.Comment, err)
				}
				if ok != want {
					t.Errorf("%s #%d (%s, %v): Verify = %v, want %v", file.Algorithm, v.TcID, v.Comment, v.Flags, ok, want)
				}
				if want {
					valid++
				} else {
					invalid++
				}
			}
		}
		t.Logf("%s: %d valid and %d invalid vectors", file.Algorithm, valid, invalid)
		if valid == 0 || invalid == 0 {
			t.Errorf("%s: %d valid, %d invalid vectors", file.Algorithm, valid, invalid)
		}
	}
}
