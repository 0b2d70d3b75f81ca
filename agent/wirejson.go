package agent

import (
	"encoding/base64"
	"encoding/json"
	"slices"
)

// Hand-written JSON for the request and response shapes of the hot
// operations (GenerateDataKey*, Encrypt, Decrypt), without reflection.
//
// A fast decoder accepts only the common form of a body: AWS's member
// names spelled exactly, each once, strings of printable ASCII without
// escapes, base64 that decodes, plain integers. It reports false on
// anything else, and decode then runs encoding/json, whose results and
// errors stay the reference (SerializationException, AWS's messages). What
// the fast path accepts is valid JSON and decodes to what encoding/json
// would give (FuzzWireJSON checks both). The encoders give exactly
// encoding/json's bytes.

// fastDecoder is a request shape with a fast decoder. On false, the value
// is left zeroed (any decoded secret wiped) for encoding/json to fill.
type fastDecoder interface {
	decodeFast(body []byte) bool
}

// jsonAppender is a response shape that appends its JSON encoding, the
// bytes json.Marshal gives, to b.
type jsonAppender interface {
	appendJSON(b []byte) []byte
}

// jscan is a strict scanner over one JSON body.
type jscan struct {
	b []byte
	i int
}

func (s *jscan) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// next skips whitespace and consumes c if it comes next.
func (s *jscan) next(c byte) bool {
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

// end reports whether only whitespace is left.
func (s *jscan) end() bool {
	s.ws()
	return s.i == len(s.b)
}

// str scans a string of printable ASCII without escapes and returns its
// contents (aliasing the body).
func (s *jscan) str() ([]byte, bool) {
	if !s.next('"') {
		return nil, false
	}
	start := s.i
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch {
		case c == '"':
			s.i++
			return s.b[start : s.i-1], true
		case c < 0x20 || c > 0x7e || c == '\\':
			return nil, false
		}
		s.i++
	}
	return nil, false
}

func (s *jscan) strValue() (*string, bool) {
	v, ok := s.str()
	if !ok {
		return nil, false
	}
	var out string
	switch string(v) { // the common enum values need no copy
	case specSymmetricDefault:
		out = specSymmetricDefault
	case "AES_256":
		out = "AES_256"
	case "AES_128":
		out = "AES_128"
	default:
		out = string(v)
	}
	return &out, true
}

// blob scans a base64 string into a new slice (never nil), as encoding/json
// decodes a []byte member.
func (s *jscan) blob() ([]byte, bool) {
	v, ok := s.str()
	if !ok {
		return nil, false
	}
	out := make([]byte, base64.StdEncoding.DecodedLen(len(v)))
	n, err := base64.StdEncoding.Decode(out, v)
	if err != nil {
		clear(out)
		return nil, false
	}
	return out[:n], true
}

// int scans an integer of at most 18 digits (no fraction, exponent or
// leading zero).
func (s *jscan) int() (*int64, bool) {
	s.ws()
	neg := s.i < len(s.b) && s.b[s.i] == '-'
	if neg {
		s.i++
	}
	start := s.i
	var v int64
	for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
		v = v*10 + int64(s.b[s.i]-'0')
		s.i++
	}
	n := s.i - start
	if n == 0 || n > 18 || (n > 1 && s.b[start] == '0') {
		return nil, false
	}
	if s.i < len(s.b) && (s.b[s.i] == '.' || s.b[s.i] == 'e' || s.b[s.i] == 'E') {
		return nil, false
	}
	if neg {
		v = -v
	}
	return &v, true
}

func (s *jscan) bool() (bool, bool) {
	s.ws()
	rest := s.b[s.i:]
	switch {
	case len(rest) >= 4 && string(rest[:4]) == "true":
		s.i += 4
		return true, true
	case len(rest) >= 5 && string(rest[:5]) == "false":
		s.i += 5
		return false, true
	}
	return false, false
}

// context scans an encryption context: an object of strings.
func (s *jscan) context() (map[string]string, bool) {
	if !s.next('{') {
		return nil, false
	}
	m := map[string]string{}
	if s.next('}') {
		return m, true
	}
	for {
		k, ok := s.str()
		if !ok || !s.next(':') {
			return nil, false
		}
		v, ok := s.str()
		if !ok {
			return nil, false
		}
		m[string(k)] = string(v)
		if s.next('}') {
			return m, true
		}
		if !s.next(',') {
			return nil, false
		}
	}
}

// strings scans an array of strings (never nil).
func (s *jscan) strings() ([]string, bool) {
	if !s.next('[') {
		return nil, false
	}
	out := []string{}
	if s.next(']') {
		return out, true
	}
	for {
		v, ok := s.str()
		if !ok {
			return nil, false
		}
		out = append(out, string(v))
		if s.next(']') {
			return out, true
		}
		if !s.next(',') {
			return nil, false
		}
	}
}

// member is a member a fast decoder takes: its name and where its value
// goes (a **string, *[]byte, *map[string]string, **int64, *[]string or
// *bool).
type member struct {
	name string
	to   any
}

// decodeMembers decodes body, one JSON object whose members are all in ms,
// each at most once.
func decodeMembers(body []byte, ms []member) bool {
	s := jscan{b: body}
	if !s.next('{') {
		return false
	}
	var seen uint32
	for n := 0; ; n++ {
		if s.next('}') {
			return s.end()
		}
		if n > 0 && !s.next(',') {
			return false
		}
		name, ok := s.str()
		if !ok || !s.next(':') {
			return false
		}
		i := 0
		for i < len(ms) && ms[i].name != string(name) {
			i++
		}
		if i == len(ms) || seen&(1<<i) != 0 || !s.value(ms[i].to) {
			return false
		}
		seen |= 1 << i
	}
}

// value scans a value into to (see member).
func (s *jscan) value(to any) (ok bool) {
	switch p := to.(type) {
	case **string:
		*p, ok = s.strValue()
	case *[]byte:
		*p, ok = s.blob()
	case *map[string]string:
		*p, ok = s.context()
	case **int64:
		*p, ok = s.int()
	case *[]string:
		*p, ok = s.strings()
	case *bool:
		*p, ok = s.bool()
	}
	return ok
}

func (in *generateDataKeyRequest) decodeFast(body []byte) bool {
	if decodeMembers(body, []member{{"KeyId", &in.KeyId}, {"EncryptionContext", &in.EncryptionContext},
		{"NumberOfBytes", &in.NumberOfBytes}, {"KeySpec", &in.KeySpec}, {"GrantTokens", &in.GrantTokens}, {"DryRun", &in.DryRun}}) {
		return true
	}
	*in = generateDataKeyRequest{}
	return false
}

func (in *encryptRequest) decodeFast(body []byte) bool {
	if decodeMembers(body, []member{{"KeyId", &in.KeyId}, {"Plaintext", &in.Plaintext}, {"EncryptionContext", &in.EncryptionContext},
		{"GrantTokens", &in.GrantTokens}, {"EncryptionAlgorithm", &in.EncryptionAlgorithm}, {"DryRun", &in.DryRun}}) {
		return true
	}
	clear(in.Plaintext)
	*in = encryptRequest{}
	return false
}

func (in *decryptRequest) decodeFast(body []byte) bool {
	if decodeMembers(body, []member{{"CiphertextBlob", &in.CiphertextBlob}, {"EncryptionContext", &in.EncryptionContext},
		{"GrantTokens", &in.GrantTokens}, {"KeyId", &in.KeyId}, {"EncryptionAlgorithm", &in.EncryptionAlgorithm}, {"DryRun", &in.DryRun}}) {
		return true
	}
	*in = decryptRequest{}
	return false
}

// appendJSONString appends s as encoding/json encodes a string.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // escapes, HTML-safe form, invalid UTF-8
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// appendJSONBlob appends p as encoding/json encodes a []byte: base64, or
// null for nil.
func appendJSONBlob(b, p []byte) []byte {
	if p == nil {
		return append(b, "null"...)
	}
	b = append(b, '"')
	b = base64.StdEncoding.AppendEncode(b, p)
	return append(b, '"')
}

// b64 is the length of the base64 encoding of n bytes.
func b64(n int) int { return base64.StdEncoding.EncodedLen(n) }

// growJSON makes room in b for a response of at most n bytes of data in
// members: an encoder never reallocates halfway, which would leave a copy
// of what it wrote so far (a data key) behind in the old array. Strings
// are counted at 6 bytes a byte, the most JSON escaping takes.
func growJSON(b []byte, blobs, strs int) []byte {
	return slices.Grow(b, 96+blobs+6*strs)
}

func (o *generateDataKeyResponse) appendJSON(b []byte) []byte {
	if o == nil {
		return append(b, "null"...)
	}
	b = growJSON(b, b64(len(o.CiphertextBlob))+b64(len(o.Plaintext)), len(o.KeyId)+len(o.KeyMaterialId))
	b = append(b, `{"CiphertextBlob":`...)
	b = appendJSONBlob(b, o.CiphertextBlob)
	if len(o.Plaintext) > 0 {
		b = append(b, `,"Plaintext":`...)
		b = appendJSONBlob(b, o.Plaintext)
	}
	b = append(b, `,"KeyId":`...)
	b = appendJSONString(b, o.KeyId)
	if o.KeyMaterialId != "" {
		b = append(b, `,"KeyMaterialId":`...)
		b = appendJSONString(b, o.KeyMaterialId)
	}
	return append(b, '}')
}

func (o *encryptResponse) appendJSON(b []byte) []byte {
	if o == nil {
		return append(b, "null"...)
	}
	b = growJSON(b, b64(len(o.CiphertextBlob)), len(o.KeyId)+len(o.EncryptionAlgorithm))
	b = append(b, `{"CiphertextBlob":`...)
	b = appendJSONBlob(b, o.CiphertextBlob)
	b = append(b, `,"KeyId":`...)
	b = appendJSONString(b, o.KeyId)
	b = append(b, `,"EncryptionAlgorithm":`...)
	b = appendJSONString(b, o.EncryptionAlgorithm)
	return append(b, '}')
}

func (o *decryptResponse) appendJSON(b []byte) []byte {
	if o == nil {
		return append(b, "null"...)
	}
	b = growJSON(b, b64(len(o.Plaintext)), len(o.KeyId)+len(o.EncryptionAlgorithm)+len(o.KeyMaterialId))
	b = append(b, `{"KeyId":`...)
	b = appendJSONString(b, o.KeyId)
	b = append(b, `,"Plaintext":`...)
	b = appendJSONBlob(b, o.Plaintext)
	b = append(b, `,"EncryptionAlgorithm":`...)
	b = appendJSONString(b, o.EncryptionAlgorithm)
	if o.KeyMaterialId != "" {
		b = append(b, `,"KeyMaterialId":`...)
		b = appendJSONString(b, o.KeyMaterialId)
	}
	return append(b, '}')
}
