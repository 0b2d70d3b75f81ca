package audit

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// newTestLogger opens a Logger on a temporary directory (unless cfg has a
// Dir or a Sink) and closes it at cleanup.
func newTestLogger(t testing.TB, cfg Config) *Logger {
	t.Helper()
	if cfg.Dir == "" && cfg.Sink == nil {
		cfg.Dir = t.TempDir()
	}
	l, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// logFiles lists the log files of dir, oldest first (rotated, then current).
func logFiles(t testing.TB, dir string) []string {
	t.Helper()
	names, err := rotated(dir)
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, n := range names {
		paths = append(paths, filepath.Join(dir, n))
	}
	if _, err := os.Stat(filepath.Join(dir, currentName)); err == nil {
		paths = append(paths, filepath.Join(dir, currentName))
	}
	return paths
}

// readLines returns every line of the log files of dir, oldest first,
// failing the test on a line that is not one JSON object.
func readLines(t testing.TB, dir string) [][]byte {
	t.Helper()
	var lines [][]byte
	for _, p := range logFiles(t, dir) {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) > 0 && b[len(b)-1] != '\n' {
			t.Fatalf("%s does not end with a newline", p)
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			line := append([]byte(nil), sc.Bytes()...)
			var m map[string]any
			if err := json.Unmarshal(line, &m); err != nil {
				t.Fatalf("%s: line is not a JSON object: %v\n%s", p, err, line)
			}
			lines = append(lines, line)
		}
	}
	return lines
}

func readEvents(t testing.TB, dir string) []Event {
	t.Helper()
	var evs []Event
	for _, line := range readLines(t, dir) {
		var ev Event
		if err := json.Unmarshal(line, &ev); err != nil {
			t.Fatalf("%v: %s", err, line)
		}
		evs = append(evs, ev)
	}
	return evs
}

const (
	testAccount = "111122223333"
	testKeyID   = "1234abcd-12ab-34cd-56ef-1234567890ab"
	testKeyARN  = "arn:aws:kms:us-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
)

var alice = UserIdentity{
	Type:        "IAMUser",
	PrincipalID: "EX_PRINCIPAL_ID",
	ARN:         "arn:aws:iam::111122223333:user/Alice",
	AccountID:   testAccount,
	AccessKeyID: "EXAMPLE_KEY_ID",
	UserName:    "Alice",
}

// apiEvent builds the event the agent logs for one request: op, its raw
// request and response bodies, and its error, as the API server sees them.
func apiEvent(op string, req, resp []byte, errCode, errMsg string, at time.Time, requestID string) *Event {
	ev := &Event{
		UserIdentity:       alice,
		EventTime:          at,
		EventName:          op,
		AWSRegion:          "us-west-2",
		SourceIPAddress:    "192.0.2.0",
		UserAgent:          "aws-sdk-go-v2/1.48.0 os/linux lang/go#1.26",
		ErrorCode:          errCode,
		ErrorMessage:       errMsg,
		RequestParameters:  RequestParameters(op, req),
		RequestID:          requestID,
		ReadOnly:           ReadOnly(op),
		Resources:          []Resource{{AccountID: testAccount, ARN: testKeyARN}},
		RecipientAccountID: testAccount,
	}
	if errCode == "" {
		ev.ResponseElements = ResponseElements(op, resp)
		ev.AdditionalEventData = AdditionalEventData(op, resp)
	}
	return ev
}

// TestEventFields logs the requests of a few operations and reads every
// field of each record back, against CloudTrail's documented shape.
func TestEventFields(t *testing.T) {
	dir := t.TempDir()
	l := newTestLogger(t, Config{Dir: dir, OnFull: Block})
	at := time.Date(2026, 11, 23, 16, 50, 7, 123456789, time.UTC)
	const matID = "123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0"

	cases := []struct {
		op, req, resp, errCode, errMsg string
		want                           string // the whole record, as CloudTrail documents it
	}{
		{
			op:   "GenerateDataKey",
			req:  `{"KeyId":"alias/project-key","KeySpec":"AES_256","EncryptionContext":{"Department":"Engineering","Project":"Alpha"},"GrantTokens":["GRANT-TOKEN-SECRET"]}`,
			resp: `{"CiphertextBlob":"Q0lQSEVSVEVYVA==","Plaintext":"UExBSU5URVhULURBVEEtS0VZ","KeyId":"` + testKeyARN + `","KeyMaterialId":"` + matID + `"}`,
			want: `{"eventVersion":"1.08","userIdentity":{"type":"IAMUser","principalId":"EX_PRINCIPAL_ID","arn":"arn:aws:iam::111122223333:user/Alice","accountId":"111122223333","accessKeyId":"EXAMPLE_KEY_ID","userName":"Alice"},
				"eventTime":"2026-11-23T16:50:07Z","eventSource":"kms.amazonaws.com","eventName":"GenerateDataKey","awsRegion":"us-west-2","sourceIPAddress":"192.0.2.0","userAgent":"aws-sdk-go-v2/1.48.0 os/linux lang/go#1.26",
				"requestParameters":{"keyId":"alias/project-key","keySpec":"AES_256","encryptionContext":{"Department":"Engineering","Project":"Alpha"}},
				"responseElements":null,"additionalEventData":{"keyMaterialId":"` + matID + `"},
				"requestID":"req-1","eventID":"EVENT-ID","readOnly":true,
				"resources":[{"accountId":"111122223333","type":"AWS::KMS::Key","ARN":"` + testKeyARN + `"}],
				"eventType":"AwsApiCall","managementEvent":true,"recipientAccountId":"111122223333","eventCategory":"Management"}`,
		},
		{
			op:      "Decrypt",
			req:     `{"CiphertextBlob":"Q0lQSEVSVEVYVA==","KeyId":"` + testKeyARN + `","EncryptionContext":{"Department":"Engineering","Project":"Alpha"}}`,
			errCode: "IncorrectKeyException",
			errMsg:  "The key ID in the request does not identify a CMK that can perform this operation.",
			want: `{"eventVersion":"1.08","userIdentity":{"type":"IAMUser","principalId":"EX_PRINCIPAL_ID","arn":"arn:aws:iam::111122223333:user/Alice","accountId":"111122223333","accessKeyId":"EXAMPLE_KEY_ID","userName":"Alice"},
				"eventTime":"2026-11-23T16:50:07Z","eventSource":"kms.amazonaws.com","eventName":"Decrypt","awsRegion":"us-west-2","sourceIPAddress":"192.0.2.0","userAgent":"aws-sdk-go-v2/1.48.0 os/linux lang/go#1.26",
				"errorCode":"IncorrectKeyException","errorMessage":"The key ID in the request does not identify a CMK that can perform this operation.",
				"requestParameters":{"encryptionAlgorithm":"SYMMETRIC_DEFAULT","keyId":"` + testKeyARN + `","encryptionContext":{"Department":"Engineering","Project":"Alpha"}},
				"responseElements":null,
				"requestID":"req-2","eventID":"EVENT-ID","readOnly":true,
				"resources":[{"accountId":"111122223333","type":"AWS::KMS::Key","ARN":"` + testKeyARN + `"}],
				"eventType":"AwsApiCall","managementEvent":true,"recipientAccountId":"111122223333","eventCategory":"Management"}`,
		},
		{
			op:   "CreateKey",
			req:  `{"Description":"","Origin":"AWS_KMS","BypassPolicyLockoutSafetyCheck":false,"KeySpec":"SYMMETRIC_DEFAULT","KeyUsage":"ENCRYPT_DECRYPT","Tags":[{"TagKey":"Dept","TagValue":"IT"}]}`,
			resp: `{"KeyMetadata":{"AWSAccountId":"111122223333","KeyId":"` + testKeyID + `","Arn":"` + testKeyARN + `","CreationDate":1.660171107E9,"Enabled":true,"Description":"","KeyUsage":"ENCRYPT_DECRYPT","KeyState":"Enabled","Origin":"AWS_KMS","KeyManager":"CUSTOMER","CustomerMasterKeySpec":"SYMMETRIC_DEFAULT","KeySpec":"SYMMETRIC_DEFAULT","EncryptionAlgorithms":["SYMMETRIC_DEFAULT"],"MultiRegion":false}}`,
			want: `{"eventVersion":"1.08","userIdentity":{"type":"IAMUser","principalId":"EX_PRINCIPAL_ID","arn":"arn:aws:iam::111122223333:user/Alice","accountId":"111122223333","accessKeyId":"EXAMPLE_KEY_ID","userName":"Alice"},
				"eventTime":"2026-11-23T16:50:07Z","eventSource":"kms.amazonaws.com","eventName":"CreateKey","awsRegion":"us-west-2","sourceIPAddress":"192.0.2.0","userAgent":"aws-sdk-go-v2/1.48.0 os/linux lang/go#1.26",
				"requestParameters":{"description":"","origin":"AWS_KMS","bypassPolicyLockoutSafetyCheck":false,"keySpec":"SYMMETRIC_DEFAULT","keyUsage":"ENCRYPT_DECRYPT","tags":[{"tagKey":"Dept","tagValue":"IT"}]},
				"responseElements":{"keyMetadata":{"awsAccountId":"111122223333","keyId":"` + testKeyID + `","arn":"` + testKeyARN + `","creationDate":"Aug 10, 2022, 10:38:27 PM","enabled":true,"description":"","keyUsage":"ENCRYPT_DECRYPT","keyState":"Enabled","origin":"AWS_KMS","keyManager":"CUSTOMER","customerMasterKeySpec":"SYMMETRIC_DEFAULT","keySpec":"SYMMETRIC_DEFAULT","encryptionAlgorithms":["SYMMETRIC_DEFAULT"],"multiRegion":false}},
				"requestID":"req-3","eventID":"EVENT-ID","readOnly":false,
				"resources":[{"accountId":"111122223333","type":"AWS::KMS::Key","ARN":"` + testKeyARN + `"}],
				"eventType":"AwsApiCall","managementEvent":true,"recipientAccountId":"111122223333","eventCategory":"Management"}`,
		},
		{
			op:   "Encrypt",
			req:  `{"KeyId":"` + testKeyARN + `","Plaintext":"UExBSU5URVhU","EncryptionContext":{"Department":"Engineering"}}`,
			resp: `{"CiphertextBlob":"Q0lQSEVSVEVYVA==","KeyId":"` + testKeyARN + `","EncryptionAlgorithm":"SYMMETRIC_DEFAULT"}`,
			want: `{"eventVersion":"1.08","userIdentity":{"type":"IAMUser","principalId":"EX_PRINCIPAL_ID","arn":"arn:aws:iam::111122223333:user/Alice","accountId":"111122223333","accessKeyId":"EXAMPLE_KEY_ID","userName":"Alice"},
				"eventTime":"2026-11-23T16:50:07Z","eventSource":"kms.amazonaws.com","eventName":"Encrypt","awsRegion":"us-west-2","sourceIPAddress":"192.0.2.0","userAgent":"aws-sdk-go-v2/1.48.0 os/linux lang/go#1.26",
				"requestParameters":{"encryptionContext":{"Department":"Engineering"},"keyId":"` + testKeyARN + `","encryptionAlgorithm":"SYMMETRIC_DEFAULT"},
				"responseElements":null,
				"requestID":"req-4","eventID":"EVENT-ID","readOnly":true,
				"resources":[{"accountId":"111122223333","type":"AWS::KMS::Key","ARN":"` + testKeyARN + `"}],
				"eventType":"AwsApiCall","managementEvent":true,"recipientAccountId":"111122223333","eventCategory":"Management"}`,
		},
	}
	for i, c := range cases {
		l.Log(apiEvent(c.op, []byte(c.req), []byte(c.resp), c.errCode, c.errMsg, at, fmt.Sprintf("req-%d", i+1)))
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	lines := readLines(t, dir)
	if len(lines) != len(cases) {
		t.Fatalf("%d lines in the log, want %d", len(lines), len(cases))
	}
	ids := map[string]bool{}
	for i, c := range cases {
		var got, want map[string]any
		if err := json.Unmarshal(lines[i], &got); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal([]byte(c.want), &want); err != nil {
			t.Fatalf("case %s: bad want: %v", c.op, err)
		}
		id, _ := got["eventID"].(string)
		if len(id) != 36 || id[14] != '4' || ids[id] {
			t.Errorf("%s: eventID %q is not a fresh version 4 UUID", c.op, id)
		}
		ids[id] = true
		got["eventID"] = "EVENT-ID"
		if !reflect.DeepEqual(got, want) {
			g, _ := json.MarshalIndent(got, "", " ")
			w, _ := json.MarshalIndent(want, "", " ")
			t.Errorf("%s record:\n%s\nwant:\n%s", c.op, g, w)
		}
		// The typed view reads back too.
		var ev Event
		if err := json.Unmarshal(lines[i], &ev); err != nil {
			t.Fatal(err)
		}
		if !ev.EventTime.Equal(at.Truncate(time.Second)) || ev.EventName != c.op || ev.UserIdentity != alice ||
			ev.ErrorCode != c.errCode || ev.RequestID != fmt.Sprintf("req-%d", i+1) || ev.ReadOnly != ReadOnly(c.op) {
			t.Errorf("%s: typed read-back differs: %+v", c.op, ev)
		}
	}
	for _, s := range []string{"UExBSU5URVhU", "Q0lQSEVSVEVYVA", "GRANT-TOKEN-SECRET"} {
		for _, line := range lines {
			if bytes.Contains(line, []byte(s)) {
				t.Errorf("log holds %q: %s", s, line)
			}
		}
	}
	if l.Written() != uint64(len(cases)) || l.Dropped() != 0 || l.WriteErrors() != 0 {
		t.Errorf("Written %d Dropped %d WriteErrors %d, want %d 0 0", l.Written(), l.Dropped(), l.WriteErrors(), len(cases))
	}
}

// TestOneLinePerEvent: whatever a field holds, a record is one line that
// reads back to what was logged (invalid UTF-8 becomes U+FFFD).
func TestOneLinePerEvent(t *testing.T) {
	dir := t.TempDir()
	l := newTestLogger(t, Config{Dir: dir, OnFull: Block})
	weird := "a\nb\r\"c\"\\ \u2028\u2029 <&> \x00\x1f é"
	body, _ := json.Marshal(map[string]any{"KeyId": "k", "EncryptionContext": map[string]string{weird: weird}})
	ev := &Event{EventName: "Encrypt", UserAgent: weird + "\xff", RequestParameters: RequestParameters("Encrypt", body)}
	if ev.RequestParameters == nil {
		t.Fatal("no requestParameters")
	}
	l.Log(ev)
	l.Close()
	evs := readEvents(t, dir)
	if len(evs) != 1 {
		t.Fatalf("%d records, want 1", len(evs))
	}
	if got := evs[0].UserAgent; got != weird+"\uFFFD" {
		t.Errorf("userAgent read back as %q", got)
	}
	ec, _ := evs[0].RequestParameters["encryptionContext"].(map[string]any)
	if ec[weird] != weird {
		t.Errorf("encryptionContext read back as %q", ec)
	}
}

func TestFilesAreOwnerOnly(t *testing.T) {
	dir := t.TempDir()
	// An existing file made too open is tightened.
	if err := os.WriteFile(filepath.Join(dir, currentName), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	l := newTestLogger(t, Config{Dir: dir, MaxFileBytes: 600, OnFull: Block})
	for i := 0; i < 10; i++ {
		l.Log(&Event{EventName: "ListKeys", RequestID: fmt.Sprint(i)})
	}
	l.Close()
	files := logFiles(t, dir)
	if len(files) < 2 {
		t.Fatalf("want a rotated file too, have %v", files)
	}
	for _, p := range files {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", p, st.Mode().Perm())
		}
	}
}

// TestRotationKeepsMaxFiles: files rotate before they pass MaxFileBytes,
// only MaxFiles rotated files stay, and what stays is the newest records in
// order.
func TestRotationKeepsMaxFiles(t *testing.T) {
	dir := t.TempDir()
	const maxBytes, maxFiles, n = 2000, 3, 200
	l := newTestLogger(t, Config{Dir: dir, MaxFileBytes: maxBytes, MaxFiles: maxFiles, OnFull: Block})
	for i := 0; i < n; i++ {
		l.Log(&Event{EventName: "DescribeKey", RequestID: fmt.Sprintf("r%04d", i),
			RequestParameters: RequestParameters("DescribeKey", []byte(`{"KeyId":"`+testKeyID+`"}`))})
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if l.Written() != n || l.Dropped() != 0 {
		t.Fatalf("Written %d Dropped %d", l.Written(), l.Dropped())
	}
	names, err := rotated(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(names) != maxFiles {
		t.Fatalf("%d rotated files %v, want %d", len(names), names, maxFiles)
	}
	for _, p := range logFiles(t, dir) {
		st, _ := os.Stat(p)
		if st.Size() > maxBytes {
			t.Errorf("%s is %d bytes, over MaxFileBytes %d", p, st.Size(), maxBytes)
		}
	}
	evs := readEvents(t, dir)
	if len(evs) == 0 || len(evs) >= n {
		t.Fatalf("%d records kept of %d", len(evs), n)
	}
	// The newest records, consecutive, ending with the last one logged.
	first := n - len(evs)
	for i, ev := range evs {
		if want := fmt.Sprintf("r%04d", first+i); ev.RequestID != want {
			t.Fatalf("record %d is %s, want %s", i, ev.RequestID, want)
		}
	}
}

// stallSink blocks every Write until released; it tells when a Write has
// started.
type stallSink struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	entered chan struct{} // receives once per Write call
	release chan struct{} // closed to let Writes through
}

func newStallSink() *stallSink {
	return &stallSink{entered: make(chan struct{}, 1024), release: make(chan struct{})}
}

func (s *stallSink) Write(p []byte) (int, error) {
	s.entered <- struct{}{}
	<-s.release
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}
func (s *stallSink) Sync() error  { return nil }
func (s *stallSink) Close() error { return nil }
func (s *stallSink) lines() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Count(s.buf.Bytes(), []byte{'\n'})
}

// TestDropWithStalledSink: under Drop, a stalled disk never holds up Log;
// what does not fit the queue is counted, and the rest is written once the
// disk moves again.
func TestDropWithStalledSink(t *testing.T) {
	sink := newStallSink()
	const buffer, extra = 4, 10
	l := newTestLogger(t, Config{Sink: sink, Buffer: buffer, OnFull: Drop})
	l.Log(&Event{EventName: "Encrypt"})
	<-sink.entered // the writer holds the first event and is stuck in Write
	for i := 0; i < buffer+extra; i++ {
		l.Log(&Event{EventName: "Encrypt"}) // would hang the test if Log waited
	}
	if got := l.Dropped(); got != extra {
		t.Errorf("Dropped = %d, want %d", got, extra)
	}
	close(sink.release)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if l.Written() != 1+buffer || sink.lines() != 1+buffer || l.Dropped() != extra {
		t.Errorf("Written %d, lines %d, Dropped %d; want %d, %d, %d", l.Written(), sink.lines(), l.Dropped(), 1+buffer, 1+buffer, extra)
	}
}

// TestBlockWithStalledSink: under Block, Log waits while the queue is full
// and nothing is dropped.
func TestBlockWithStalledSink(t *testing.T) {
	sink := newStallSink()
	const buffer = 2
	l := newTestLogger(t, Config{Sink: sink, Buffer: buffer, OnFull: Block})
	l.Log(&Event{EventName: "Encrypt"})
	<-sink.entered
	for i := 0; i < buffer; i++ {
		l.Log(&Event{EventName: "Encrypt"})
	}
	if len(l.ch) != cap(l.ch) {
		t.Fatalf("queue holds %d of %d", len(l.ch), cap(l.ch))
	}
	returned := make(chan struct{})
	go func() {
		l.Log(&Event{EventName: "Encrypt"})
		close(returned)
	}()
	select {
	case <-returned:
		t.Fatal("Log returned while the queue was full under Block")
	default:
	}
	close(sink.release)
	<-returned
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if l.Written() != buffer+2 || l.Dropped() != 0 || sink.lines() != buffer+2 {
		t.Errorf("Written %d Dropped %d lines %d, want %d 0 %d", l.Written(), l.Dropped(), sink.lines(), buffer+2, buffer+2)
	}
}

// TestCloseWithStalledSink: Close does not hang on a stalled disk: a Log
// blocked under Block returns, and what is unwritten is counted as dropped.
func TestCloseWithStalledSink(t *testing.T) {
	sink := newStallSink()
	defer close(sink.release)
	l, err := Open(Config{Sink: sink, Buffer: 1, OnFull: Block, CloseTimeout: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	l.Log(&Event{EventName: "Encrypt"})
	<-sink.entered
	l.Log(&Event{EventName: "Encrypt"}) // fills the queue
	returned := make(chan struct{})
	go func() {
		l.Log(&Event{EventName: "Encrypt"}) // blocks until Close
		close(returned)
	}()
	err = l.Close()
	if !errors.Is(err, ErrCloseTimeout) {
		t.Fatalf("Close = %v, want ErrCloseTimeout", err)
	}
	<-returned
	if got := l.Dropped(); got != 3 {
		t.Errorf("Dropped = %d, want 3 (one in the stalled write, one queued, one refused)", got)
	}
	l.Log(&Event{EventName: "Encrypt"})
	if got := l.Dropped(); got != 4 {
		t.Errorf("Log after Close: Dropped = %d, want 4", got)
	}
	if err2 := l.Close(); !errors.Is(err2, ErrCloseTimeout) {
		t.Errorf("second Close = %v, want the first one's result", err2)
	}
}

// faultySink wraps the real file sink and fails writes with ENOSPC while
// the disk is "full"; the first failing write takes half of what it was
// given, to leave a partial line behind.
type faultySink struct {
	*fileSink
	mu       sync.Mutex
	full     bool
	failures int
	partial  bool
}

func (s *faultySink) setFull(full bool) {
	s.mu.Lock()
	s.full = full
	s.mu.Unlock()
}

func (s *faultySink) Write(p []byte) (int, error) {
	s.mu.Lock()
	full := s.full
	if full {
		s.failures++
	}
	partial := full && !s.partial
	if partial {
		s.partial = true
	}
	s.mu.Unlock()
	if partial {
		n, err := s.fileSink.Write(p[:len(p)/2])
		if err != nil {
			return n, err
		}
		return n, &os.PathError{Op: "write", Path: "audit.log", Err: syscall.ENOSPC}
	}
	if full {
		return 0, &os.PathError{Op: "write", Path: "audit.log", Err: syscall.ENOSPC}
	}
	return s.fileSink.Write(p)
}

func newFaultySink(t *testing.T, dir string) *faultySink {
	t.Helper()
	fs, err := newFileSink(dir, 1<<20, 2, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	return &faultySink{fileSink: fs}
}

// TestFullDiskBlock: with the disk full, writes fail and are retried; once
// there is room again every event is in the file, whole, once and in order.
func TestFullDiskBlock(t *testing.T) {
	dir := t.TempDir()
	sink := newFaultySink(t, dir)
	sink.setFull(true)
	l := newTestLogger(t, Config{Sink: sink, OnFull: Block, RetryInterval: time.Millisecond})
	const n = 50
	for i := 0; i < n; i++ {
		l.Log(&Event{EventName: "Decrypt", RequestID: fmt.Sprintf("r%03d", i)})
	}
	// Wait for the writer to have failed a few times (polling, no sleep).
	for deadline := time.Now().Add(10 * time.Second); l.WriteErrors() < 3; {
		if time.Now().After(deadline) {
			t.Fatal("no write error seen")
		}
		time.Sleep(time.Millisecond)
	}
	if l.Written() == n {
		t.Fatal("all written while the disk was full")
	}
	sink.setFull(false)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if l.Written() != n || l.Dropped() != 0 {
		t.Fatalf("Written %d Dropped %d, want %d 0", l.Written(), l.Dropped(), n)
	}
	evs := readEvents(t, dir)
	if len(evs) != n {
		t.Fatalf("%d records in the file, want %d", len(evs), n)
	}
	for i, ev := range evs {
		if want := fmt.Sprintf("r%03d", i); ev.RequestID != want {
			t.Fatalf("record %d is %s, want %s", i, ev.RequestID, want)
		}
	}
}

// TestFullDiskDrop: under Drop with the disk full, every event is either
// written once the disk has room or counted as dropped: none goes missing.
func TestFullDiskDrop(t *testing.T) {
	dir := t.TempDir()
	sink := newFaultySink(t, dir)
	sink.setFull(true)
	l := newTestLogger(t, Config{Sink: sink, OnFull: Drop, Buffer: 16, MaxPendingBytes: 4096, RetryInterval: time.Millisecond})
	const n = 2000
	for i := 0; i < n; i++ {
		l.Log(&Event{EventName: "Decrypt", RequestID: fmt.Sprintf("r%04d", i)})
	}
	if l.Dropped() == 0 {
		t.Error("nothing dropped with the disk full and a 16-event queue")
	}
	sink.setFull(false)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	evs := readEvents(t, dir)
	if l.Written()+l.Dropped() != n || uint64(len(evs)) != l.Written() {
		t.Fatalf("Written %d + Dropped %d != %d, or %d records in the file", l.Written(), l.Dropped(), n, len(evs))
	}
	seen := map[string]bool{}
	for _, ev := range evs {
		if seen[ev.RequestID] {
			t.Fatalf("%s written twice", ev.RequestID)
		}
		seen[ev.RequestID] = true
	}
}

// TestConcurrentLog runs Log from many goroutines (go test -race).
func TestConcurrentLog(t *testing.T) {
	dir := t.TempDir()
	l := newTestLogger(t, Config{Dir: dir, OnFull: Block, Buffer: 64, MaxFileBytes: 64 << 10, MaxFiles: 1000})
	const workers, each = 8, 300
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				l.Log(apiEvent("Encrypt", []byte(`{"KeyId":"k","Plaintext":"AAAA"}`), nil, "", "", time.Time{}, fmt.Sprintf("w%d-%d", w, i)))
			}
		}()
	}
	go func() { _ = l.Dropped() + l.Written() + l.WriteErrors() }()
	wg.Wait()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	evs := readEvents(t, dir)
	if len(evs) != workers*each || l.Written() != workers*each || l.Dropped() != 0 {
		t.Fatalf("%d records, Written %d, Dropped %d; want %d", len(evs), l.Written(), l.Dropped(), workers*each)
	}
	ids := map[string]bool{}
	for _, ev := range evs {
		ids[ev.RequestID+"/"+ev.EventID] = true
	}
	if len(ids) != workers*each {
		t.Errorf("%d distinct records, want %d", len(ids), workers*each)
	}
}

func TestNilAndClosedLogger(t *testing.T) {
	var l *Logger
	l.Log(&Event{})
	if l.Close() != nil || l.Dropped() != 0 || l.Written() != 0 || l.WriteErrors() != 0 {
		t.Error("nil Logger is not a no-op")
	}
	l2 := newTestLogger(t, Config{})
	l2.Log(nil)
	if err := l2.Close(); err != nil {
		t.Fatal(err)
	}
	l2.Log(&Event{})
	if l2.Dropped() != 1 || l2.Written() != 0 {
		t.Errorf("after Close: Dropped %d Written %d, want 1 0", l2.Dropped(), l2.Written())
	}
}

// TestUnencodable: an event a caller filled with something JSON cannot
// hold is counted as dropped and does not disturb the records around it.
func TestUnencodable(t *testing.T) {
	dir := t.TempDir()
	l := newTestLogger(t, Config{Dir: dir, OnFull: Block})
	l.Log(&Event{EventName: "Encrypt", RequestID: "before"})
	l.Log(&Event{EventName: "Encrypt", RequestParameters: map[string]any{"keyId": "k", "bad": make(chan int)}})
	l.Log(&Event{EventName: "Encrypt", RequestParameters: map[string]any{"n": json.Number("1e")}})
	l.Log(&Event{EventName: "Encrypt", RequestID: "after"})
	l.Close()
	evs := readEvents(t, dir)
	if len(evs) != 2 || evs[0].RequestID != "before" || evs[1].RequestID != "after" || l.Dropped() != 2 || l.Written() != 2 {
		t.Fatalf("records %+v, Dropped %d, Written %d", evs, l.Dropped(), l.Written())
	}
}

func TestParsePolicy(t *testing.T) {
	for s, want := range map[string]Policy{"drop": Drop, "block": Block, "": Drop} {
		if got, err := ParsePolicy(s); err != nil || got != want || (s != "" && got.String() != s) {
			t.Errorf("ParsePolicy(%q) = %v, %v", s, got, err)
		}
	}
	if _, err := ParsePolicy("Block!"); err == nil {
		t.Error("ParsePolicy accepted Block!")
	}
}

func TestValidate(t *testing.T) {
	for _, c := range []struct {
		cfg   Config
		field string
	}{
		{Config{}, "Dir"},
		{Config{Dir: "d", MaxFileBytes: -1}, "MaxFileBytes"},
		{Config{Dir: "d", MaxFiles: -1}, "MaxFiles"},
		{Config{Dir: "d", Buffer: -1}, "Buffer"},
		{Config{Dir: "d", OnFull: 7}, "OnFull"},
		{Config{Dir: "d", SyncInterval: -1}, "SyncInterval"},
		{Config{Dir: "d", RetryInterval: -1}, "RetryInterval"},
		{Config{Dir: "d", MaxPendingBytes: -1}, "MaxPendingBytes"},
		{Config{Dir: "d", CloseTimeout: -1}, "CloseTimeout"},
	} {
		err := c.cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), "Config."+c.field) {
			t.Errorf("Validate(%+v) = %v, want an error naming %s", c.cfg, err, c.field)
		}
		if _, err := Open(c.cfg); err == nil {
			t.Errorf("Open(%+v) succeeded", c.cfg)
		}
	}
	if err := (Config{Dir: "d"}).Validate(); err != nil {
		t.Errorf("defaults: %v", err)
	}
}
