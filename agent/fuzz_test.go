package agent

import (
	"errors"
	"testing"
)

func FuzzParseBlob(f *testing.F) {
	good := appendHeader(nil, "1234abcd-12ab-34cd-56ef-1234567890ab", 1)
	good = append(good, make([]byte, blobMinSuffix+5)...)
	f.Add(good)
	f.Add([]byte{})
	f.Add([]byte{1})
	f.Add([]byte{1, 0, 0, 0, 0, 0})
	f.Add([]byte{1, 255})
	f.Add([]byte{2, 3, 'a', 'b', 'c', 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := parseBlob(b)
		if err != nil {
			if !errors.Is(err, errBadBlob) {
				t.Fatalf("error class %v", err)
			}
			return
		}
		if len(p.header)+len(p.wrapped)+len(p.nonce)+len(p.sealed) != len(b) {
			t.Fatalf("parts do not add up to the blob")
		}
		if len(p.wrapped) != wrappedKeyLen || len(p.nonce) != gcmIVLen || len(p.sealed) < gcmTagLen {
			t.Fatalf("part sizes %d %d %d", len(p.wrapped), len(p.nonce), len(p.sealed))
		}
		if got := appendHeader(nil, p.keyID, p.version); string(got) != string(p.header) {
			t.Fatalf("header does not re-encode")
		}
	})
}

// FuzzRequest feeds arbitrary JSON bodies to every operation's decoder and
// handler (past authentication): each must answer with an API error or a
// response, never panic.
func FuzzRequest(f *testing.F) {
	ts := newTestServer(f)
	id := ts.createKey(f)
	seeds := []string{
		`{}`, `{"KeyId":"` + id + `","Plaintext":"aGVsbG8="}`,
		`{"KeyId":"alias/x","NumberOfBytes":1025}`, `{"CiphertextBlob":"AQ=="}`,
		`{"KeyId":"` + id + `","KeySpec":"AES_256","EncryptionContext":{"a":"b"}}`,
		`{"Limit":1,"Marker":"x"}`, `{"AliasName":"alias/` + "\u00e9" + `","TargetKeyId":"` + id + `"}`,
		`{"Tags":[{"TagKey":"","TagValue":null}]}`, `{"NumberOfBytes":-1}`, `null`, `[]`, `"x"`, `{"KeyId":7}`,
	}
	for i, s := range seeds {
		f.Add(uint8(i), []byte(s))
	}
	names := make([]string, 0, len(operations))
	for _, n := range allOperations {
		names = append(names, n)
	}
	f.Fuzz(func(t *testing.T, op uint8, body []byte) {
		name := names[int(op)%len(names)]
		r := &request{ctx: t.Context(), op: name, body: body, principal: "test"}
		out, err := ts.ops[name](ts.Server, r)
		if err != nil {
			ae, _ := apiErrorFrom(err)
			if ae.Type == errInternal {
				t.Fatalf("%s(%q): internal error %v", name, body, err)
			}
			return
		}
		if out == nil {
			t.Fatalf("%s: nil response and nil error", name)
		}
	})
}

// FuzzParseStoreBlob: the store-layer parser never panics and what it
// accepts is consistent with its input.
func FuzzParseStoreBlob(f *testing.F) {
	f.Add([]byte{blobFormatStore, 1, 'k', 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1})
	f.Add([]byte{blobFormatStore, 0})
	f.Add([]byte{blobFormatStore, 3, 'a', 'b', 'c', 16})
	f.Fuzz(func(t *testing.T, b []byte) {
		header, id, s, ok := parseStoreBlob(b)
		if !ok {
			return
		}
		if len(header) != 2+len(id) || len(s.Tag) != 16 || (len(s.IV) != 12 && len(s.IV) != 16) || len(s.Ciphertext) == 0 || len(s.CiphertextMetadata) > 20 {
			t.Fatalf("accepted inconsistent blob %x", b)
		}
	})
}
