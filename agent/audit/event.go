package audit

import (
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"
)

// Values the logger fills in when an Event leaves them empty.
const (
	EventVersion  = "1.08"
	EventSource   = "kms.amazonaws.com"
	EventType     = "AwsApiCall"
	EventCategory = "Management"
	ResourceType  = "AWS::KMS::Key"
)

// Event is one audit record in the shape of a CloudTrail event for AWS KMS.
// Field names and JSON names are CloudTrail's. The JSON encoding is one line
// (no newline inside); fields CloudTrail always writes are always written,
// requestParameters and responseElements as null when empty.
//
// Log fills EventVersion, EventSource, EventType, EventCategory and
// ManagementEvent when they are zero, EventTime with the time of the Log call
// when it is zero, EventID with a random UUID when it is empty, and
// Resources[i].Type with ResourceType.
type Event struct {
	EventVersion    string       `json:"eventVersion"`
	UserIdentity    UserIdentity `json:"userIdentity"`
	EventTime       time.Time    `json:"eventTime"` // written in RFC 3339, UTC, whole seconds
	EventSource     string       `json:"eventSource"`
	EventName       string       `json:"eventName"` // the operation, "Decrypt"
	AWSRegion       string       `json:"awsRegion"`
	SourceIPAddress string       `json:"sourceIPAddress"`
	UserAgent       string       `json:"userAgent"`
	ErrorCode       string       `json:"errorCode,omitempty"`    // the exception's __type, "IncorrectKeyException"
	ErrorMessage    string       `json:"errorMessage,omitempty"` // never carries key material (agent's contract)

	// RequestParameters and ResponseElements must come from the functions of
	// the same name, which keep only what is safe to record.
	RequestParameters   map[string]any `json:"requestParameters"`
	ResponseElements    map[string]any `json:"responseElements"`
	AdditionalEventData map[string]any `json:"additionalEventData,omitempty"`

	RequestID          string     `json:"requestID"`
	EventID            string     `json:"eventID"`
	ReadOnly           bool       `json:"readOnly"`
	Resources          []Resource `json:"resources,omitempty"`
	EventType          string     `json:"eventType"`
	ManagementEvent    bool       `json:"managementEvent"`
	RecipientAccountID string     `json:"recipientAccountId"`
	EventCategory      string     `json:"eventCategory"`

	// Set by SetCall: requestParameters, responseElements and
	// additionalEventData already filtered and encoded (nil: the map
	// fields are written), in callBuf, which the writer puts back.
	reqJSON, respJSON, addJSON []byte
	callBuf                    *[]byte
}

// UserIdentity is CloudTrail's userIdentity: who made the request.
type UserIdentity struct {
	Type        string `json:"type,omitempty"` // "IAMUser", "AssumedRole", "Root"
	PrincipalID string `json:"principalId,omitempty"`
	ARN         string `json:"arn,omitempty"`
	AccountID   string `json:"accountId,omitempty"`
	AccessKeyID string `json:"accessKeyId,omitempty"` // the access key id, never the secret
	UserName    string `json:"userName,omitempty"`
	InvokedBy   string `json:"invokedBy,omitempty"` // for events kmsd logs on its own behalf
}

// Resource names a KMS key the request touched.
type Resource struct {
	AccountID string `json:"accountId"`
	Type      string `json:"type"`
	ARN       string `json:"ARN"`
}

// fill sets the defaults Log promises. It runs on the writer goroutine,
// except for EventTime, which Log sets.
func (ev *Event) fill() {
	if ev.EventVersion == "" {
		ev.EventVersion = EventVersion
	}
	if ev.EventSource == "" {
		ev.EventSource = EventSource
	}
	if ev.EventType == "" {
		ev.EventType = EventType
	}
	if ev.EventCategory == "" {
		ev.EventCategory = EventCategory
		ev.ManagementEvent = true
	}
	if ev.EventID == "" {
		ev.EventID = NewUUID()
	}
	for i := range ev.Resources {
		if ev.Resources[i].Type == "" {
			ev.Resources[i].Type = ResourceType
		}
	}
}

// NewUUID returns a random (version 4) UUID, in one allocation (the API
// server's request ids, the records' event ids). Its 122 random bits come
// from the runtime's generator (math/rand/v2: ChaCha8, per thread, seeded
// from the operating system's entropy), not a getrandom call per id: ids
// are unique and unpredictable, not secrets.
func NewUUID() string {
	var u [16]byte
	binary.LittleEndian.PutUint64(u[:8], mrand.Uint64())
	binary.LittleEndian.PutUint64(u[8:], mrand.Uint64())
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	var s [36]byte
	hex.Encode(s[0:8], u[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], u[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], u[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], u[8:10])
	s[23] = '-'
	hex.Encode(s[24:], u[10:])
	return string(s[:])
}

// appendJSON appends ev as one line of JSON (without the newline), in
// CloudTrail's field order.
func (ev *Event) appendJSON(b []byte) ([]byte, error) {
	b = append(b, `{"eventVersion":`...)
	b = appendString(b, ev.EventVersion)
	b = append(b, `,"userIdentity":{`...)
	u := &ev.UserIdentity
	first := true
	for _, f := range [...]struct{ k, v string }{
		{"type", u.Type}, {"principalId", u.PrincipalID}, {"arn", u.ARN}, {"accountId", u.AccountID},
		{"accessKeyId", u.AccessKeyID}, {"userName", u.UserName}, {"invokedBy", u.InvokedBy},
	} {
		if f.v == "" {
			continue
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		b = append(b, '"')
		b = append(b, f.k...)
		b = append(b, `":`...)
		b = appendString(b, f.v)
	}
	b = append(b, `},"eventTime":"`...)
	b = ev.EventTime.UTC().AppendFormat(b, "2006-01-02T15:04:05Z")
	b = append(b, `","eventSource":`...)
	b = appendString(b, ev.EventSource)
	b = append(b, `,"eventName":`...)
	b = appendString(b, ev.EventName)
	b = append(b, `,"awsRegion":`...)
	b = appendString(b, ev.AWSRegion)
	b = append(b, `,"sourceIPAddress":`...)
	b = appendString(b, ev.SourceIPAddress)
	b = append(b, `,"userAgent":`...)
	b = appendString(b, ev.UserAgent)
	if ev.ErrorCode != "" {
		b = append(b, `,"errorCode":`...)
		b = appendString(b, ev.ErrorCode)
	}
	if ev.ErrorMessage != "" {
		b = append(b, `,"errorMessage":`...)
		b = appendString(b, ev.ErrorMessage)
	}
	var err error
	b = append(b, `,"requestParameters":`...)
	if b, err = appendMapOr(b, ev.reqJSON, ev.RequestParameters); err != nil {
		return b, err
	}
	b = append(b, `,"responseElements":`...)
	if b, err = appendMapOr(b, ev.respJSON, ev.ResponseElements); err != nil {
		return b, err
	}
	if ev.addJSON != nil {
		b = append(b, `,"additionalEventData":`...)
		b = append(b, ev.addJSON...)
	} else if len(ev.AdditionalEventData) > 0 {
		b = append(b, `,"additionalEventData":`...)
		if b, err = appendMap(b, ev.AdditionalEventData); err != nil {
			return b, err
		}
	}
	b = append(b, `,"requestID":`...)
	b = appendString(b, ev.RequestID)
	b = append(b, `,"eventID":`...)
	b = appendString(b, ev.EventID)
	b = append(b, `,"readOnly":`...)
	b = strconv.AppendBool(b, ev.ReadOnly)
	if len(ev.Resources) > 0 {
		b = append(b, `,"resources":[`...)
		for i, r := range ev.Resources {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"accountId":`...)
			b = appendString(b, r.AccountID)
			b = append(b, `,"type":`...)
			b = appendString(b, r.Type)
			b = append(b, `,"ARN":`...)
			b = appendString(b, r.ARN)
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	b = append(b, `,"eventType":`...)
	b = appendString(b, ev.EventType)
	b = append(b, `,"managementEvent":`...)
	b = strconv.AppendBool(b, ev.ManagementEvent)
	b = append(b, `,"recipientAccountId":`...)
	b = appendString(b, ev.RecipientAccountID)
	b = append(b, `,"eventCategory":`...)
	b = appendString(b, ev.EventCategory)
	return append(b, '}'), nil
}

// appendMapOr appends pre (SetCall's encoding) if set, else m.
func appendMapOr(b, pre []byte, m map[string]any) ([]byte, error) {
	if pre != nil {
		return append(b, pre...), nil
	}
	return appendMap(b, m)
}

func appendMap(b []byte, m map[string]any) ([]byte, error) {
	if len(m) == 0 {
		return append(b, "null"...), nil
	}
	return appendValue(b, m, 0)
}

// appendValue appends v as JSON: directly for the types the filters make,
// through encoding/json for anything else a caller put in a map. Object
// keys are sorted, as encoding/json does, so a record is deterministic.
func appendValue(b []byte, v any, depth int) ([]byte, error) {
	if depth > 32 {
		return b, errors.New("audit: value nested too deep")
	}
	var err error
	switch x := v.(type) {
	case nil:
		return append(b, "null"...), nil
	case string:
		return appendString(b, x), nil
	case bool:
		return strconv.AppendBool(b, x), nil
	case json.Number:
		if !validNumber(string(x)) {
			return b, fmt.Errorf("audit: invalid number %q", string(x))
		}
		return append(b, x...), nil
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		b = append(b, '{')
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, k)
			b = append(b, ':')
			if b, err = appendValue(b, x[k], depth+1); err != nil {
				return b, err
			}
		}
		return append(b, '}'), nil
	case []any:
		b = append(b, '[')
		for i, e := range x {
			if i > 0 {
				b = append(b, ',')
			}
			if b, err = appendValue(b, e, depth+1); err != nil {
				return b, err
			}
		}
		return append(b, ']'), nil
	}
	j, err := json.Marshal(v)
	if err != nil {
		return b, err
	}
	return append(b, j...), nil
}

// validNumber reports whether s is a JSON number.
func validNumber(s string) bool {
	return s != "" && (s[0] == '-' || s[0] >= '0' && s[0] <= '9') && json.Valid([]byte(s))
}

const hexDigits = "0123456789abcdef"

// plainASCII says which bytes below 0x80 appendString copies as they are.
var plainASCII = func() (t [0x80]bool) {
	for c := 0x20; c < 0x80; c++ {
		t[c] = c != '"' && c != '\\' && c != '<' && c != '>' && c != '&'
	}
	return t
}()

// appendString appends s as a JSON string. Like encoding/json it escapes
// control characters, quotes, backslashes, <, >, & and U+2028/9, and
// replaces invalid UTF-8 with U+FFFD, so a line never breaks.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < 0x80 {
			if plainASCII[c] {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == 0xFFFD && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// UnmarshalJSON reads a line written by the logger back (tests, tools).
func (ev *Event) UnmarshalJSON(b []byte) error {
	type plain Event
	var w struct {
		*plain
		EventTime string `json:"eventTime"`
	}
	w.plain = (*plain)(ev)
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	t, err := time.Parse(time.RFC3339, w.EventTime)
	if err != nil {
		return err
	}
	ev.EventTime = t
	return nil
}

// MarshalJSON encodes ev the way the log file holds it.
func (ev *Event) MarshalJSON() ([]byte, error) {
	return ev.appendJSON(nil)
}
