package audit

import (
	"bufio"
	"encoding/json"
	"io"
	"sync"
	"testing"
	"time"
)

var (
	benchReq  = []byte(`{"KeyId":"alias/project-key","KeySpec":"AES_256","EncryptionContext":{"Department":"Engineering","Project":"Alpha"},"GrantTokens":["AQIDBAUGBwgJCgsMDQ4PEA=="]}`)
	benchResp = []byte(`{"CiphertextBlob":"AQICAHhBnr0GnEfY5vXb2VJ8gHXZ3Jw0Wq0Fd6tCZf4vGZ2zXwF3Ek0j9qXo5l4ikw0Q7Jm6AAAAfjB8BgkqhkiG9w0BBwagbzBtAgEAMGgGCSqGSIb3DQEHATAeBglghkgBZQMEAS4wEQQM","Plaintext":"c2VjcmV0LWRhdGEta2V5LWJ5dGVzLTMyLWJ5dGVzIQ==","KeyId":"arn:aws:kms:us-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab","KeyMaterialId":"123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0"}`)
)

// discardSink takes everything at once.
type discardSink struct{}

func (discardSink) Write(p []byte) (int, error) { return len(p), nil }
func (discardSink) Sync() error                 { return nil }
func (discardSink) Close() error                { return nil }

// BenchmarkLog is filter the request and response into maps, build the
// event, Log it; the writer goroutine encodes it (Block, so nothing is
// dropped and the writer's cost is in the figure). BenchmarkLogSetCall is
// the API server's path. Compare with BenchmarkLogBaseline.
func BenchmarkLog(b *testing.B) {
	benchLog(b, func() *Event { return apiEvent("GenerateDataKey", benchReq, benchResp, "", "", time.Now(), "req") })
}

// BenchmarkLogSetCall is what the API server pays per request (Event.SetCall
// filters straight into encoded JSON).
func BenchmarkLogSetCall(b *testing.B) {
	benchLog(b, func() *Event {
		ev := &Event{UserIdentity: alice, EventTime: time.Now(), EventName: "GenerateDataKey", RequestID: "req",
			ReadOnly: true, Resources: []Resource{{AccountID: testAccount, ARN: testKeyARN}}}
		ev.SetCall("GenerateDataKey", benchReq, true, benchResp, testKeyARN)
		return ev
	})
}

func benchLog(b *testing.B, event func() *Event) {
	l, err := Open(Config{Sink: discardSink{}, OnFull: Block})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(benchReq) + len(benchResp)))
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			l.Log(event())
		}
	})
	l.Close()
	if l.Dropped() != 0 {
		b.Fatalf("dropped %d", l.Dropped())
	}
}

// BenchmarkLogBaseline is the naive twin: decode the bodies with
// encoding/json, delete what must not be logged, and marshal the event
// synchronously under a lock on the request goroutine.
func BenchmarkLogBaseline(b *testing.B) {
	var mu sync.Mutex
	w := bufio.NewWriter(io.Discard)
	b.ReportAllocs()
	b.SetBytes(int64(len(benchReq) + len(benchResp)))
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			var req map[string]any
			_ = json.Unmarshal(benchReq, &req)
			delete(req, "GrantTokens")
			var resp map[string]any
			_ = json.Unmarshal(benchResp, &resp)
			ev := map[string]any{"eventVersion": EventVersion, "userIdentity": alice, "eventTime": time.Now().UTC().Format(time.RFC3339),
				"eventName": "GenerateDataKey", "requestParameters": req, "responseElements": nil,
				"additionalEventData": map[string]any{"keyMaterialId": resp["KeyMaterialId"]}, "eventID": NewUUID(),
				"resources": []Resource{{AccountID: testAccount, Type: ResourceType, ARN: testKeyARN}}}
			line, _ := json.Marshal(ev)
			mu.Lock()
			w.Write(line)
			w.WriteByte('\n')
			mu.Unlock()
		}
	})
}

// BenchmarkRequestParameters is the filter alone, on the request goroutine.
func BenchmarkRequestParameters(b *testing.B) {
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			_ = RequestParameters("GenerateDataKey", benchReq)
		}
	})
}
