package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"maps"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func asJSON(t testing.TB, v any) string {
	t.Helper()
	if m, ok := v.(map[string]any); ok && m == nil {
		return "null"
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func sameJSON(t testing.TB, got any, want string) bool {
	t.Helper()
	var g, w any
	if err := json.Unmarshal([]byte(asJSON(t, got)), &g); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("bad want %s: %v", want, err)
	}
	return reflect.DeepEqual(g, w)
}

// TestRequestParameters checks the filter against the guide's CloudTrail
// examples (requestParameters of each), plus what must never show.
func TestRequestParameters(t *testing.T) {
	for _, c := range []struct{ op, body, want string }{
		{"GenerateDataKey", `{"KeyId":"alias/project-key","KeySpec":"AES_256"}`, `{"keyId":"alias/project-key","keySpec":"AES_256"}`},
		{"Decrypt", `{"CiphertextBlob":"AQID","EncryptionContext":{"Department":"Engineering","Project":"Alpha"},"GrantTokens":["t"]}`,
			`{"encryptionAlgorithm":"SYMMETRIC_DEFAULT","encryptionContext":{"Department":"Engineering","Project":"Alpha"}}`},
		{"Decrypt", `{"CiphertextBlob":"AQID","EncryptionAlgorithm":"RSAES_OAEP_SHA_256","KeyId":"k"}`, `{"encryptionAlgorithm":"RSAES_OAEP_SHA_256","keyId":"k"}`},
		{"CreateGrant", `{"KeyId":"` + testKeyARN + `","Constraints":{"EncryptionContextSubset":{"ContextKey1":"Value1"}},"Operations":["Encrypt","RetireGrant"],"GranteePrincipal":"EX_PRINCIPAL_ID","GrantTokens":["tok"],"Name":"n"}`,
			`{"keyId":"` + testKeyARN + `","constraints":{"encryptionContextSubset":{"ContextKey1":"Value1"}},"operations":["Encrypt","RetireGrant"],"granteePrincipal":"EX_PRINCIPAL_ID","name":"n"}`},
		{"TagResource", `{"KeyId":"k","Tags":[{"TagKey":"Department","TagValue":"IT"}]}`, `{"keyId":"k","tags":[{"tagKey":"Department","tagValue":"IT"}]}`},
		{"UntagResource", `{"KeyId":"k","TagKeys":["Dept"]}`, `{"keyId":"k","tagKeys":["Dept"]}`},
		{"ScheduleKeyDeletion", `{"PendingWindowInDays":20,"KeyId":"k"}`, `{"pendingWindowInDays":20,"keyId":"k"}`},
		{"ReEncrypt", `{"CiphertextBlob":"AQID","SourceEncryptionContext":{"Project":"Alpha"},"DestinationKeyId":"d","DestinationEncryptionContext":{"Level":"3A"}}`,
			`{"sourceEncryptionAlgorithm":"SYMMETRIC_DEFAULT","sourceEncryptionContext":{"Project":"Alpha"},"destinationKeyId":"d","destinationEncryptionAlgorithm":"SYMMETRIC_DEFAULT","destinationEncryptionContext":{"Level":"3A"}}`},
		{"ImportKeyMaterial", `{"KeyId":"k","ImportToken":"AQID","EncryptedKeyMaterial":"AQID","ValidTo":1609531200,"ExpirationModel":"KEY_MATERIAL_EXPIRES"}`,
			`{"keyId":"k","validTo":"Jan 1, 2021, 8:00:00 PM","expirationModel":"KEY_MATERIAL_EXPIRES"}`},
		{"PutKeyPolicy", `{"KeyId":"k","PolicyName":"default","Policy":"{\"Version\":\"2012-10-17\"}","BypassPolicyLockoutSafetyCheck":false}`,
			`{"keyId":"k","policyName":"default","policy":"{\"Version\":\"2012-10-17\"}","bypassPolicyLockoutSafetyCheck":false}`},
		{"Sign", `{"KeyId":"k","Message":"AQID","MessageType":"RAW","SigningAlgorithm":"RSASSA_PKCS1_V1_5_SHA_256"}`, `{"keyId":"k","messageType":"RAW","signingAlgorithm":"RSASSA_PKCS1_V1_5_SHA_256"}`},
		{"VerifyMac", `{"KeyId":"k","Message":"AQID","Mac":"AQID","MacAlgorithm":"HMAC_SHA_384"}`, `{"keyId":"k","macAlgorithm":"HMAC_SHA_384"}`},
		{"GenerateRandom", `{"NumberOfBytes":32}`, `{"numberOfBytes":32}`},
		{"RetireGrant", `{"GrantToken":"secret"}`, `null`},
		{"CreateCustomKeyStore", `{"CustomKeyStoreName":"s","KeyStorePassword":"pw","XksProxyAuthenticationCredential":{"AccessKeyId":"a","RawSecretAccessKey":"s"}}`, `{"customKeyStoreName":"s"}`},
		{"ListKeys", `{"Limit":10,"Marker":"m"}`, `{"limit":10}`},
		// Wrong types, unknown members, whitespace, escapes in names, duplicates (the last wins).
		{"Encrypt", " {\n\"KeyId\" : 5, \"Plaintext\":\"AQID\", \"Extra\":\"x\", \"EncryptionContext\":{\"a\":1,\"b\":\"2\"}, \"\\u0044ryRun\":true, \"DryRun\":false}",
			`{"encryptionAlgorithm":"SYMMETRIC_DEFAULT","encryptionContext":{"b":"2"},"dryRun":false}`},
		{"CreateGrant", `{"Constraints":{"Plaintext":"AQID"},"Operations":"Encrypt","KeyId":"k"}`, `{"keyId":"k"}`},
		// Not an object, not JSON, unknown operation.
		{"Encrypt", `[{"KeyId":"k"}]`, `null`},
		{"Encrypt", `{"KeyId":"k"`, `null`},
		{"NoSuchOperation", `{"KeyId":"k"}`, `null`},
	} {
		got := RequestParameters(c.op, []byte(c.body))
		if !sameJSON(t, got, c.want) {
			t.Errorf("RequestParameters(%s, %s) = %s, want %s", c.op, c.body, asJSON(t, got), c.want)
		}
	}
}

func TestResponseElements(t *testing.T) {
	for _, c := range []struct{ op, body, want string }{
		{"CreateGrant", `{"GrantToken":"tok","GrantId":"g"}`, `{"grantId":"g"}`},
		{"CancelKeyDeletion", `{"KeyId":"` + testKeyARN + `"}`, `{"keyId":"` + testKeyARN + `"}`},
		{"ScheduleKeyDeletion", `{"KeyId":"a","KeyState":"PendingDeletion","DeletionDate":1618253910,"PendingWindowInDays":20}`,
			`{"keyId":"a","keyState":"PendingDeletion","deletionDate":"Apr 12, 2021, 6:58:30 PM","pendingWindowInDays":20}`},
		{"ImportKeyMaterial", `{"KeyId":"a","KeyMaterialId":"m"}`, `{"keyId":"a","keyMaterialId":"m"}`},
		// Read-only operations record no response, whatever it holds.
		{"GenerateDataKey", `{"CiphertextBlob":"AQID","Plaintext":"AQID","KeyId":"a","KeyMaterialId":"m"}`, `null`},
		{"GetKeyPolicy", `{"Policy":"{}","PolicyName":"default"}`, `null`},
		{"DescribeKey", `{"KeyMetadata":{"KeyId":"a"}}`, `null`},
		{"EnableKey", `{}`, `null`},
	} {
		got := ResponseElements(c.op, []byte(c.body))
		if !sameJSON(t, got, c.want) {
			t.Errorf("ResponseElements(%s, %s) = %s, want %s", c.op, c.body, asJSON(t, got), c.want)
		}
	}
	for _, c := range []struct{ op, body, want string }{
		{"Decrypt", `{"KeyId":"a","Plaintext":"AQID","KeyMaterialId":"m"}`, `{"keyMaterialId":"m"}`},
		{"ReEncrypt", `{"CiphertextBlob":"AQID","SourceKeyMaterialId":"s","DestinationKeyMaterialId":"d"}`, `{"sourceKeyMaterialId":"s","destinationKeyMaterialId":"d"}`},
		{"Encrypt", `{"CiphertextBlob":"AQID","KeyId":"a"}`, `null`},
		{"ImportKeyMaterial", `{"KeyMaterialId":"m"}`, `null`}, // a write: its response records it
	} {
		got := AdditionalEventData(c.op, []byte(c.body))
		if !sameJSON(t, got, c.want) {
			t.Errorf("AdditionalEventData(%s, %s) = %s, want %s", c.op, c.body, asJSON(t, got), c.want)
		}
	}
}

func TestWithKeyARN(t *testing.T) {
	for _, c := range []struct {
		op, body, arn, want string
	}{
		{"EnableKey", `{}`, testKeyARN, `{"keyId":"` + testKeyARN + `"}`},
		{"ImportKeyMaterial", `{"KeyId":"` + testKeyID + `","KeyMaterialId":"m"}`, testKeyARN, `{"keyId":"` + testKeyID + `","keyMaterialId":"m"}`},
		{"UpdateKeyDescription", `{}`, testKeyARN, `null`}, // CloudTrail records null
		{"Encrypt", `{"KeyId":"a"}`, testKeyARN, `null`},
		{"EnableKey", `{}`, "", `null`},
	} {
		got := WithKeyARN(c.op, ResponseElements(c.op, []byte(c.body)), c.arn)
		if !sameJSON(t, got, c.want) {
			t.Errorf("WithKeyARN(%s, %s, %q) = %s, want %s", c.op, c.body, c.arn, asJSON(t, got), c.want)
		}
	}
}

// TestFilterSharesNothing: the result does not alias the body, which the
// server zeroes after the request.
func TestFilterSharesNothing(t *testing.T) {
	body := []byte(`{"KeyId":"abc","NumberOfBytes":32,"EncryptionContext":{"k":"v"}}`)
	got := RequestParameters("GenerateDataKey", body)
	before := asJSON(t, got)
	clear(body)
	if after := asJSON(t, got); after != before {
		t.Errorf("clearing the body changed the result: %s -> %s", before, after)
	}
}

func TestCamel(t *testing.T) {
	for in, want := range map[string]string{"KeyId": "keyId", "AWSAccountId": "awsAccountId", "Arn": "arn", "ARN": "arn", "CloudHsmClusterId": "cloudHsmClusterId", "Id": "id", "": ""} {
		if got := camel(in); got != want {
			t.Errorf("camel(%q) = %q, want %q", in, got, want)
		}
	}
}

// secretSet builds a request or response body for any shape of the model
// in which every member that must never be recorded holds a distinctive
// value, and remembers every form in which that value could leak.
type secretSet struct {
	forms map[string]string // leaked form -> what it is
}

func (s *secretSet) blob(path string) string {
	sum := sha256.Sum256([]byte(path))
	raw := append([]byte("SECRET:"+path+":"), sum[:]...)
	for _, e := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
		enc := e.EncodeToString(raw)
		s.forms[enc] = path
		s.forms[enc[len(enc)-24:]] = path + " (tail)"
	}
	s.forms[hex.EncodeToString(sum[:])] = path + " (hex)"
	s.forms[strings.ToUpper(hex.EncodeToString(sum[:]))] = path + " (HEX)"
	s.forms[string(sum[:12])] = path + " (raw)"
	return base64.StdEncoding.EncodeToString(raw)
}

// fill returns a value for shape name at path. Every member that must never
// be recorded holds a secret; the rest "ok-<path>".
func (s *secretSet) fill(m *model, name, path string, secret bool) any {
	sh := m.Shapes[name]
	secret = secret || sh.Sensitive
	switch sh.Type {
	case "blob":
		return s.blob(path)
	case "string":
		if secret {
			return s.blob(path) // a sensitive string: base64 of the marked bytes
		}
		return "ok-" + path
	case "integer", "long":
		return 7
	case "boolean":
		return true
	case "timestamp":
		return 1.7e9
	case "list":
		return []any{s.fill(m, sh.Member.Shape, path+"[0]", secret)}
	case "map":
		return map[string]any{"ctx": s.fill(m, sh.Value.Shape, path+".ctx", secret)}
	case "structure":
		out := map[string]any{}
		for k, mem := range sh.Members {
			_, never := neverRecorded[k]
			out[k] = s.fill(m, mem.Shape, path+"."+k, secret || never)
		}
		// Members the model does not have are never recorded either.
		out["Plaintext2"] = s.blob(path + ".Plaintext2")
		out["SecretAccessKey"] = s.blob(path + ".SecretAccessKey")
		return out
	}
	panic("unknown shape type " + sh.Type)
}

// TestSecretScan logs a request and a response for every operation of the
// model, every secret member (plaintext, ciphertext, data keys, private
// keys, messages, signatures, MACs, public keys, import tokens and
// material, passwords, XKS credentials, grant tokens, attestation
// documents) filled with distinctive bytes, and finds none of them, in any
// encoding, in the log files.
func TestSecretScan(t *testing.T) {
	m := loadModel(t)
	dir := t.TempDir()
	l := newTestLogger(t, Config{Dir: dir, OnFull: Block, MaxFileBytes: 32 << 10, MaxFiles: 1000})
	s := &secretSet{forms: map[string]string{}}
	ops := slices.Sorted(maps.Keys(m.Operations))
	for _, op := range ops {
		o := m.Operations[op]
		req, err := json.Marshal(s.fill(m, o.Input.Shape, op+".request", false))
		if err != nil {
			t.Fatal(err)
		}
		var resp []byte
		if o.Output != nil {
			if resp, err = json.Marshal(s.fill(m, o.Output.Shape, op+".response", false)); err != nil {
				t.Fatal(err)
			}
		}
		ev := apiEvent(op, req, resp, "", "", time.Now(), op)
		if ev.RequestParameters == nil {
			t.Errorf("%s: nothing recorded of the request", op)
		}
		if !ReadOnly(op) && o.Output != nil && len(m.Shapes[o.Output.Shape].Members) > 0 && ev.ResponseElements == nil {
			t.Errorf("%s: nothing recorded of the response", op)
		}
		l.Log(ev)
		// And the failed request: only the request is recorded.
		l.Log(apiEvent(op, req, resp, "ValidationException", "1 validation error detected", time.Now(), op+"-failed"))
		// And both as the API server records them (SetCall), which must
		// write the same bytes.
		sameAsMaps(t, op, req, resp, testKeyARN)
		sameAsMaps(t, op, req, nil, "")
		l.Log(setCallEvent(op, req, resp, testKeyARN, op+"-setcall"))
		l.Log(setCallEvent(op, req, nil, "", op+"-setcall-failed"))
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if len(s.forms) < 500 {
		t.Fatalf("only %d secret forms: the scan would prove little", len(s.forms))
	}
	var all []byte
	for _, p := range logFiles(t, dir) {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, b...)
	}
	if n := bytes.Count(all, []byte{'\n'}); n != 4*len(ops) {
		t.Fatalf("%d records, want %d", n, 4*len(ops))
	}
	if !bytes.Contains(all, []byte("ok-Encrypt.request.KeyId")) || !bytes.Contains(all, []byte("ok-CreateKey.response.KeyMetadata.Arn")) {
		t.Fatal("safe values missing from the log: the filter keeps too little for this test to mean anything")
	}
	if i := bytes.Index(all, []byte("SECRET:")); i >= 0 {
		t.Errorf("log holds a SECRET marker: ...%s...", all[max(0, i-200):min(len(all), i+100)])
	}
	for form, what := range s.forms {
		if bytes.Contains(all, []byte(form)) {
			t.Errorf("log holds %s", what)
		}
	}
}
