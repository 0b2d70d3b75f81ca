package agent

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// wireSeeds are request bodies for the fast decoders: the SDK's forms and
// near misses that must fall back to encoding/json.
var wireSeeds = []string{
	`{"KeyId":"1234abcd-12ab-34cd-56ef-1234567890ab","KeySpec":"AES_256","EncryptionContext":{"app":"bench"}}`,
	`{"KeyId":"alias/x","NumberOfBytes":64,"GrantTokens":["a","b"],"DryRun":false}`,
	`{"KeyId":"k","Plaintext":"aGVsbG8=","EncryptionAlgorithm":"SYMMETRIC_DEFAULT"}`,
	`{"CiphertextBlob":"AQIDBA==","EncryptionContext":{},"GrantTokens":[],"DryRun":true}`,
	` { "KeyId" : "k" , "NumberOfBytes" : -0 } `,
	`{"keyid":"k"}`, `{"KeyId":"k","KeyId":"l"}`, `{"KeyId":null}`, `{"KeyId":"\u006b"}`,
	`{"NumberOfBytes":01}`, `{"NumberOfBytes":1.0}`, `{"NumberOfBytes":1e3}`, `{"NumberOfBytes":99999999999999999999}`,
	`{"Plaintext":"aGVsbG8"}`, `{"Plaintext":""}`, `{"EncryptionContext":{"a":"b","a":"c"}}`,
	`{"KeyId":"k"} x`, `{"KeyId":"k",}`, `{"DryRun":truex}`, `{"KeyId":"é"}`, `{"Recipient":{}}`, `{}`, `[]`, `null`,
}

// FuzzWireJSON: what a fast decoder accepts is valid JSON and decodes as
// encoding/json decodes it; what it refuses leaves the value zero; the
// response encoders give json.Marshal's bytes.
func FuzzWireJSON(f *testing.F) {
	for _, s := range wireSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		checkFastDecode(t, body, func() fastDecoder { return &generateDataKeyRequest{} })
		checkFastDecode(t, body, func() fastDecoder { return &encryptRequest{} })
		checkFastDecode(t, body, func() fastDecoder { return &decryptRequest{} })
		s := string(body)
		checkAppendJSON(t, &generateDataKeyResponse{CiphertextBlob: body, Plaintext: body, KeyId: s, KeyMaterialId: s})
		checkAppendJSON(t, &generateDataKeyResponse{KeyId: s})
		checkAppendJSON(t, &encryptResponse{CiphertextBlob: body, KeyId: s, EncryptionAlgorithm: s})
		checkAppendJSON(t, &decryptResponse{KeyId: s, Plaintext: body, EncryptionAlgorithm: s, KeyMaterialId: s})
	})
}

func checkFastDecode(t *testing.T, body []byte, mk func() fastDecoder) {
	t.Helper()
	fast := mk()
	ok := fast.decodeFast(body)
	if !ok {
		if zero := mk(); !reflect.DeepEqual(fast, zero) {
			t.Fatalf("%T: refused %q but left %+v", fast, body, fast)
		}
		return
	}
	if !json.Valid(body) {
		t.Fatalf("%T: accepted invalid JSON %q", fast, body)
	}
	ref := mk()
	if err := json.Unmarshal(body, ref); err != nil {
		t.Fatalf("%T: accepted %q, which encoding/json refuses: %v", fast, body, err)
	}
	if !reflect.DeepEqual(fast, ref) {
		t.Fatalf("%T: %q decodes to %+v, encoding/json gives %+v", fast, body, fast, ref)
	}
}

func checkAppendJSON(t *testing.T, v jsonAppender) {
	t.Helper()
	want, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if got := v.appendJSON([]byte("prefix")); !bytes.Equal(got, append([]byte("prefix"), want...)) {
		t.Fatalf("%T: appendJSON gives %s, json.Marshal %s", v, got[6:], want)
	}
}

// TestWireJSON: the SDK's bodies take the fast path; the near misses fall
// back; both give what encoding/json gives (FuzzWireJSON's seeds).
func TestWireJSON(t *testing.T) {
	fast := 0
	for _, s := range wireSeeds {
		var in generateDataKeyRequest
		if in.decodeFast([]byte(s)) {
			fast++
		}
	}
	if fast != 5 { // GenerateDataKey's forms: seeds 0, 1 and 4, the repeated context key, {}
		t.Fatalf("%d GenerateDataKey seeds took the fast path, want 5", fast)
	}
	var enc encryptRequest
	if !enc.decodeFast([]byte(wireSeeds[2])) || string(enc.Plaintext) != "hello" || *enc.KeyId != "k" {
		t.Fatalf("Encrypt fast path: %+v", enc)
	}
	var dec decryptRequest
	if !dec.decodeFast([]byte(wireSeeds[3])) || !bytes.Equal(dec.CiphertextBlob, []byte{1, 2, 3, 4}) || !dec.DryRun || dec.EncryptionContext == nil {
		t.Fatalf("Decrypt fast path: %+v", dec)
	}
	for _, s := range wireSeeds {
		checkFastDecode(t, []byte(s), func() fastDecoder { return &generateDataKeyRequest{} })
		checkFastDecode(t, []byte(s), func() fastDecoder { return &encryptRequest{} })
		checkFastDecode(t, []byte(s), func() fastDecoder { return &decryptRequest{} })
	}
	for _, s := range []string{"arn:aws:kms:us-east-1:111122223333:key/k", "a<b>&\"\\\x01é\xff", "", "\u2028"} {
		b := []byte(s)
		checkAppendJSON(t, &generateDataKeyResponse{CiphertextBlob: b, Plaintext: b, KeyId: s, KeyMaterialId: s})
		checkAppendJSON(t, &encryptResponse{KeyId: s, EncryptionAlgorithm: s})
		checkAppendJSON(t, &decryptResponse{KeyId: s, Plaintext: []byte{}, EncryptionAlgorithm: s})
	}
}

var wireSink []byte

// TestAppendJSONGrowsOnce: a response encoder makes its room up front (one
// allocation from an empty buffer, even for the largest responses), so no
// half-written copy of a data key is left in a discarded array.
func TestAppendJSONGrowsOnce(t *testing.T) {
	pt := bytes.Repeat([]byte{0xa5}, maxPlaintext)
	arn := "arn:aws:kms:us-east-1:111122223333:key/" + strings.Repeat("k", 2000)
	for _, v := range []jsonAppender{
		&generateDataKeyResponse{CiphertextBlob: pt, Plaintext: pt[:maxDataKeySize], KeyId: arn, KeyMaterialId: arn},
		&encryptResponse{CiphertextBlob: pt, KeyId: arn, EncryptionAlgorithm: arn},
		&decryptResponse{KeyId: arn, Plaintext: pt, EncryptionAlgorithm: arn, KeyMaterialId: arn},
	} {
		if n := testing.AllocsPerRun(10, func() { wireSink = v.appendJSON(nil) }); n != 1 && !raceEnabled {
			t.Fatalf("%T: %v allocations, want 1", v, n)
		}
		checkAppendJSON(t, v)
	}
}

// TestARNFields: arnFields, accountOf and arnResource split as
// strings.SplitN(arn, ":", 6) does.
func TestARNFields(t *testing.T) {
	for _, arn := range []string{"arn:aws:iam::111122223333:root", "arn:aws:iam::111122223333:user/a:b:c", "", "a:b", "arn:aws:sts::1:assumed-role/r/s", ":::::"} {
		want := strings.SplitN(arn, ":", 6)
		f, n := arnFields(arn)
		if !reflect.DeepEqual(f[:n], want) {
			t.Fatalf("arnFields(%q) = %q, SplitN gives %q", arn, f[:n], want)
		}
		if got := arnResource(arn); got != want[len(want)-1] {
			t.Fatalf("arnResource(%q) = %q", arn, got)
		}
		wantAcct := ""
		if len(want) == 6 {
			wantAcct = want[4]
		}
		if got := accountOf(arn); got != wantAcct {
			t.Fatalf("accountOf(%q) = %q, want %q", arn, got, wantAcct)
		}
	}
}
