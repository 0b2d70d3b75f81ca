package audit

import (
	"bytes"
	"encoding/json"
	"maps"
	"slices"
	"testing"
)

// conforms reports whether v holds nothing but what n allows.
func conforms(v any, n *node) bool {
	switch n.kind {
	case kString, kTime:
		_, ok := v.(string)
		return ok
	case kNumber:
		_, ok := v.(json.Number)
		return ok
	case kBool:
		_, ok := v.(bool)
		return ok
	case kList:
		l, ok := v.([]any)
		for _, e := range l {
			ok = ok && conforms(e, n.elem)
		}
		return ok
	case kMap:
		m, ok := v.(map[string]any)
		for _, e := range m {
			ok = ok && conforms(e, n.elem)
		}
		return ok
	case kObject:
		m, ok := v.(map[string]any)
		if !ok {
			return false
		}
	next:
		for k, e := range m {
			for _, fd := range n.fields {
				if fd.name == k {
					if !conforms(e, fd.n) {
						return false
					}
					continue next
				}
			}
			return false
		}
		return true
	}
	return false
}

// FuzzFilter: whatever the body, the filters never panic and return only
// allowlisted members of the allowed types, which encode.
func FuzzFilter(f *testing.F) {
	ops := slices.Sorted(maps.Keys(requestAllow))
	f.Add(uint8(0), []byte(`{"KeyId":"k","EncryptionContext":{"a":"b"},"Plaintext":"AQID"}`))
	f.Add(uint8(5), []byte(`{"Constraints":{"EncryptionContextSubset":{"a":"b"}},"Operations":["Encrypt"],"GrantTokens":["t"]}`))
	f.Add(uint8(6), []byte(`{"KeyMetadata":{"Arn":"a","CreationDate":1.6e9,"MultiRegionConfiguration":{"ReplicaKeys":[{"Arn":"x"}]}}}`))
	f.Add(uint8(9), []byte(` { "a\"b" : [1, {"x": "y\\"}], "KeyId" : "\u00e9" } `))
	f.Add(uint8(3), []byte(`{"ValidTo":1e308,"DeletionDate":-1e308,"Tags":[{"TagKey":1},null,{"TagValue":"v"}]}`))
	f.Fuzz(func(t *testing.T, opIdx uint8, body []byte) {
		op := ops[int(opIdx)%len(ops)]
		sameAsMaps(t, op, body, nil, "")
		if json.Valid(body) { // SetCall takes the response as valid JSON
			sameAsMaps(t, op, body, body, "arn:aws:kms:us-west-2:111122223333:key/k")
			sameAsMaps(t, "CreateAlias", body, body, "arn:aws:kms:us-west-2:111122223333:key/k")
		}
		for _, c := range []struct {
			got map[string]any
			n   *node
		}{
			{RequestParameters(op, body), requestAllow[op]},
			{ResponseElements(op, body), responseAllow[op]},
			{AdditionalEventData(op, body), materialIDs},
		} {
			if c.got == nil {
				continue
			}
			if _, err := json.Marshal(c.got); err != nil {
				t.Fatalf("%s: result does not encode: %v", op, err)
			}
			if op == "Encrypt" || op == "Decrypt" || op == "ReEncrypt" {
				continue // defaulted encryption algorithms are added after filtering
			}
			if !conforms(any(c.got), c.n) {
				t.Fatalf("%s: %v is not within the allowlist", op, c.got)
			}
		}
	})
}

// setCallEvent is the record of a call as the API server builds it
// (Event.SetCall; resp nil for a failed call).
func setCallEvent(op string, req, resp []byte, keyARN, requestID string) *Event {
	ev := &Event{EventName: op, RequestID: requestID, ReadOnly: ReadOnly(op), UserIdentity: alice}
	ev.SetCall(op, req, false, resp, keyARN)
	if resp == nil {
		ev.ErrorCode = "ValidationException"
	}
	return ev
}

// sameAsMaps checks that SetCall's record of a call to op is byte for byte
// the record built from RequestParameters, ResponseElements (with
// WithKeyARN) and AdditionalEventData, which the filter tests check.
func sameAsMaps(t *testing.T, op string, req, resp []byte, keyARN string) {
	t.Helper()
	want := &Event{EventName: op, RequestID: "r", ReadOnly: ReadOnly(op), UserIdentity: alice}
	want.RequestParameters = RequestParameters(op, req)
	if resp != nil {
		want.ResponseElements = WithKeyARN(op, ResponseElements(op, resp), keyARN)
		want.AdditionalEventData = AdditionalEventData(op, resp)
	}
	got := setCallEvent(op, req, resp, keyARN, "r")
	got.ErrorCode = ""
	w, werr := want.appendJSON(nil)
	g, gerr := got.appendJSON(nil)
	if werr != nil {
		if gerr == nil {
			t.Fatalf("%s: SetCall encodes what the maps cannot (%v): %s", op, werr, g)
		}
		return
	}
	if gerr != nil || !bytes.Equal(w, g) {
		t.Fatalf("%s %q / %q: SetCall writes\n%s (%v), the maps\n%s", op, req, resp, g, gerr, w)
	}
}
