package audit

import (
	"bytes"
	"encoding/json"
	"time"
)

// kind is the JSON type an allowlisted member must have; a value of another
// type is left out.
type kind uint8

const (
	kString kind = iota + 1
	kNumber
	kBool
	kTime // epoch seconds on the wire; recorded as CloudTrail writes dates
	kList
	kMap // string keys, values per elem (EncryptionContext)
	kObject
)

// node is the allowlist of one value: for an object, the members that may be
// recorded (by wire name) and how; for a list or map, its elements.
type node struct {
	kind   kind
	elem   *node
	fields map[string]field
}

type field struct {
	name string // CloudTrail's camelCase name
	n    *node
}

var (
	str     = &node{kind: kString}
	num     = &node{kind: kNumber}
	boolean = &node{kind: kBool}
	stamp   = &node{kind: kTime}
)

func list(e *node) *node  { return &node{kind: kList, elem: e} }
func mapOf(e *node) *node { return &node{kind: kMap, elem: e} }
func obj(fs ...field) *node {
	n := &node{kind: kObject, fields: make(map[string]field, len(fs))}
	for _, f := range fs {
		n.fields[f.name] = field{name: camel(f.name), n: f.n}
	}
	return n
}
func f(wire string, n *node) field { return field{name: wire, n: n} }

// camel turns an AWS member name into CloudTrail's: KeyId -> keyId,
// AWSAccountId -> awsAccountId, Arn -> arn.
func camel(s string) string {
	b := []byte(s)
	for i := 0; i < len(b) && b[i] >= 'A' && b[i] <= 'Z'; i++ {
		if i > 0 && i+1 < len(b) && b[i+1] >= 'a' && b[i+1] <= 'z' {
			break
		}
		b[i] += 'a' - 'A'
	}
	return string(b)
}

// readOnly lists the operations CloudTrail marks readOnly: true: the
// cryptographic operations and the Describe, Get and List operations. Their
// responseElements are null (AWS omits "the response to GetKeyPolicy or any
// cryptographic operation").
var readOnly = map[string]bool{
	"Decrypt": true, "DeriveSharedSecret": true, "DescribeCustomKeyStores": true, "DescribeKey": true,
	"Encrypt": true, "GenerateDataKey": true, "GenerateDataKeyPair": true,
	"GenerateDataKeyPairWithoutPlaintext": true, "GenerateDataKeyWithoutPlaintext": true,
	"GenerateMac": true, "GenerateRandom": true, "GetKeyLastUsage": true, "GetKeyPolicy": true,
	"GetKeyRotationStatus": true, "GetParametersForImport": true, "GetPublicKey": true,
	"ListAliases": true, "ListGrants": true, "ListKeyPolicies": true, "ListKeyRotations": true,
	"ListKeys": true, "ListResourceTags": true, "ListRetirableGrants": true,
	"ReEncrypt": true, "Sign": true, "Verify": true, "VerifyMac": true,
}

// ReadOnly reports whether CloudTrail records op as readOnly (the
// cryptographic, Describe, Get and List operations). Unknown operations are
// not read-only.
func ReadOnly(op string) bool { return readOnly[op] }

// RequestParameters returns the requestParameters of an audit record for
// operation op (an AWS KMS operation name, "GenerateDataKey") from the raw
// JSON request body. It keeps only the members of op's allowlist
// (allowlist.go, generated from the botocore model), under CloudTrail's
// camelCase names: never a blob (Plaintext, CiphertextBlob, Message,
// Signature, Mac, PublicKey, ImportToken, EncryptedKeyMaterial, attestation
// documents), a sensitive member (KeyStorePassword, the XKS proxy
// credential), a grant token or a pagination marker. A member of the wrong
// JSON type and any member the model does not name are left out. As
// CloudTrail does, Encrypt and Decrypt record encryptionAlgorithm and
// ReEncrypt its source and destination algorithms as SYMMETRIC_DEFAULT when
// the request names none.
//
// It returns nil for an unknown operation, a body that is not a JSON object,
// or when nothing is left. Secret values are never copied: the body is
// scanned in place and only allowlisted values are decoded. The result
// shares nothing with body. Safe for concurrent use.
func RequestParameters(op string, body []byte) map[string]any {
	return requestParameters(op, body, false)
}

// requestParameters is RequestParameters; valid says body is already known
// to be one valid JSON value.
func requestParameters(op string, body []byte, valid bool) map[string]any {
	n := requestAllow[op]
	if n == nil {
		return nil
	}
	m := filterObject(body, n, valid)
	if m == nil {
		return nil
	}
	switch op {
	case "Encrypt", "Decrypt":
		defaultAlg(m, "encryptionAlgorithm")
	case "ReEncrypt":
		defaultAlg(m, "sourceEncryptionAlgorithm")
		defaultAlg(m, "destinationEncryptionAlgorithm")
	}
	if len(m) == 0 {
		return nil
	}
	return m
}

func defaultAlg(m map[string]any, k string) {
	if _, ok := m[k]; !ok {
		m[k] = "SYMMETRIC_DEFAULT"
	}
}

// ResponseElements returns the responseElements of an audit record for
// operation op from the raw JSON response body. It is nil for a read-only
// operation (ReadOnly), as in CloudTrail: no plaintext, ciphertext,
// signature, MAC, public key or policy of a response is ever recorded. For
// the other operations it keeps op's response allowlist (keyId,
// keyMetadata, grantId but not the grant token, deletionDate, keyMaterialId
// ...), like RequestParameters.
//
// AWS also adds the key ARN as keyId to the responseElements of write
// operations whose response has none (EnableKey, CreateAlias...); that is
// the caller's to add, since only it knows the resolved key.
func ResponseElements(op string, body []byte) map[string]any {
	return responseElements(op, body, false)
}

func responseElements(op string, body []byte, valid bool) map[string]any {
	if readOnly[op] {
		return nil
	}
	n := responseAllow[op]
	if n == nil {
		return nil
	}
	m := filterObject(body, n, valid)
	if len(m) == 0 {
		return nil
	}
	return m
}

// keyARNOps are the write operations whose CloudTrail responseElements
// carry the affected key's ARN as keyId although the API response does not
// (the guide's examples; AWS does this since December 2022).
var keyARNOps = map[string]bool{
	"CreateAlias": true, "DeleteAlias": true, "UpdateAlias": true, "DisableKey": true, "EnableKey": true,
	"EnableKeyRotation": true, "UntagResource": true, "UpdatePrimaryRegion": true,
	"DeleteImportedKeyMaterial": true, "ImportKeyMaterial": true,
}

// WithKeyARN returns resp (ResponseElements' result) with keyId set to
// keyARN for the write operations where CloudTrail records the affected
// key's ARN though the response lacks it (CreateAlias, DeleteAlias,
// UpdateAlias, DisableKey, EnableKey, EnableKeyRotation, UntagResource,
// UpdatePrimaryRegion, DeleteImportedKeyMaterial, ImportKeyMaterial). For
// other operations, a failed request (pass keyARN "") or when resp already
// has a keyId, resp is returned unchanged.
func WithKeyARN(op string, resp map[string]any, keyARN string) map[string]any {
	if keyARN == "" || !keyARNOps[op] {
		return resp
	}
	if resp == nil {
		return map[string]any{"keyId": keyARN}
	}
	if _, ok := resp["keyId"]; !ok {
		resp["keyId"] = keyARN
	}
	return resp
}

// AdditionalEventData returns the additionalEventData of a cryptographic
// operation from its raw JSON response body: the keyMaterialId that served
// it (for ReEncrypt, sourceKeyMaterialId and destinationKeyMaterialId), as
// AWS records since multiple key materials. Nil when there is none.
func AdditionalEventData(op string, body []byte) map[string]any {
	return additionalEventData(op, body, false)
}

func additionalEventData(op string, body []byte, valid bool) map[string]any {
	if !readOnly[op] {
		return nil
	}
	m := filterObject(body, materialIDs, valid)
	if len(m) == 0 {
		return nil
	}
	return m
}

// SetCall sets ev's requestParameters, responseElements (with keyARN as
// WithKeyARN adds it) and additionalEventData for a call to op: the bytes
// RequestParameters, ResponseElements and AdditionalEventData's maps encode
// to, filtered straight into one pooled buffer (no maps; ev's map fields
// stay nil). It is the API server's path. req is the request body and
// reqValid whether the caller already knows it to be one valid JSON value
// (it decoded it); resp is the caller's own encoding of a successful
// response (nil for a failed call) and is taken as valid JSON unchecked.
// ev shares nothing with req or resp.
func (ev *Event) SetCall(op string, req []byte, reqValid bool, resp []byte, keyARN string) {
	buf := callBufs.Get().(*[]byte)
	b := (*buf)[:0]
	var ok bool
	var extras []extra
	switch op {
	case "Encrypt", "Decrypt":
		extras = encryptDefaults
	case "ReEncrypt":
		extras = reEncryptDefaults
	}
	var spans [3][2]int // request, response, additional data: where each lies in b ({0, 0}: none)
	if n := requestAllow[op]; n != nil {
		if b, ok = appendObjectJSON(b, req, n, reqValid, extras); ok {
			spans[0] = [2]int{0, len(b)}
		}
	}
	if resp != nil {
		start := len(b)
		var arn []extra
		if keyARN != "" && keyARNOps[op] {
			arn = []extra{{"keyId", keyARN}}
		}
		ok = false
		if n := responseAllow[op]; n != nil && !readOnly[op] {
			b, ok = appendObjectJSON(b, resp, n, true, arn)
		}
		if !ok && arn != nil {
			b, ok = appendMembers(b, []byte("{}"), materialIDs, arn)
		}
		if ok {
			spans[1] = [2]int{start, len(b)}
		}
		if start = len(b); readOnly[op] {
			if b, ok = appendObjectJSON(b, resp, materialIDs, true, nil); ok {
				spans[2] = [2]int{start, len(b)}
			}
		}
	}
	part := func(i int) []byte {
		if spans[i][1] == 0 {
			return nil
		}
		return b[spans[i][0]:spans[i][1]:spans[i][1]]
	}
	ev.reqJSON, ev.respJSON, ev.addJSON = part(0), part(1), part(2)
	*buf = b
	ev.callBuf = buf
}

var materialIDs = obj(f("KeyMaterialId", str), f("SourceKeyMaterialId", str), f("DestinationKeyMaterialId", str))

// filterObject returns the allowlisted view of body, which must be a JSON
// object, or nil. valid says body is already known to be valid JSON.
func filterObject(body []byte, n *node, valid bool) map[string]any {
	if !valid && !json.Valid(body) {
		return nil
	}
	i := skipWS(body, 0)
	if i >= len(body) || body[i] != '{' {
		return nil
	}
	v, ok := filter(body[i:valueEnd(body)], n)
	if !ok {
		return map[string]any{}
	}
	m, _ := v.(map[string]any)
	return m
}

// filter returns the allowlisted view of v, one valid JSON value, and
// whether anything is left. It decodes only values it keeps.
func filter(v []byte, n *node) (any, bool) {
	if len(v) == 0 {
		return nil, false
	}
	switch n.kind {
	case kString:
		if v[0] != '"' {
			return nil, false
		}
		return unquote(v)
	case kNumber:
		if v[0] != '-' && (v[0] < '0' || v[0] > '9') {
			return nil, false
		}
		return json.Number(v), true
	case kBool:
		switch string(v) {
		case "true":
			return true, true
		case "false":
			return false, true
		}
		return nil, false
	case kTime:
		if v[0] == '"' {
			return filter(v, str)
		}
		var sec float64
		if json.Unmarshal(v, &sec) != nil {
			return nil, false
		}
		// CloudTrail writes dates the Java way: "Apr 12, 2021, 6:58:30 PM".
		return time.Unix(0, int64(sec*1e9)).UTC().Format("Jan 2, 2006, 3:04:05 PM"), true
	case kList:
		if v[0] != '[' {
			return nil, false
		}
		out := []any{}
		eachElem(v, func(e []byte) {
			if x, ok := filter(e, n.elem); ok {
				out = append(out, x)
			}
		})
		return out, true
	case kMap:
		if v[0] != '{' {
			return nil, false
		}
		out := map[string]any{}
		eachMember(v, func(k, e []byte) {
			key, ok := unquote(k)
			if !ok {
				return
			}
			if x, ok := filter(e, n.elem); ok {
				out[key.(string)] = x
			}
		})
		return out, true
	case kObject:
		if v[0] != '{' {
			return nil, false
		}
		out := map[string]any{}
		eachMember(v, func(k, e []byte) {
			fd, ok := lookup(n, k)
			if !ok {
				return
			}
			if x, ok := filter(e, fd.n); ok {
				out[fd.name] = x
			}
		})
		if len(out) == 0 {
			return nil, false
		}
		return out, true
	}
	return nil, false
}

// unquote decodes the JSON string q (quotes included). Invalid UTF-8 is
// kept as is here; the encoder replaces it when the record is written.
func unquote(q []byte) (any, bool) {
	if len(q) < 2 {
		return nil, false
	}
	raw := q[1 : len(q)-1]
	for _, c := range raw {
		if c == '\\' {
			var s string
			if json.Unmarshal(q, &s) != nil {
				return nil, false
			}
			return s, true
		}
	}
	return string(raw), true
}

// lookup finds the allowlisted member whose quoted JSON name is k.
func lookup(n *node, k []byte) (field, bool) {
	if len(k) < 2 {
		return field{}, false
	}
	raw := k[1 : len(k)-1]
	for _, c := range raw {
		if c == '\\' {
			var s string
			if json.Unmarshal(k, &s) != nil {
				return field{}, false
			}
			fd, ok := n.fields[s]
			return fd, ok
		}
	}
	fd, ok := n.fields[string(raw)] // no allocation: the compiler special-cases m[string(b)]
	return fd, ok
}

// The scanner below works on JSON already checked by json.Valid; it still
// never indexes out of range, whatever the input.

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// valueEnd returns the index after the one JSON value body holds (body is
// valid JSON): its end without trailing whitespace, found without scanning
// the value.
func valueEnd(body []byte) int {
	n := len(body)
	for n > 0 && (body[n-1] == ' ' || body[n-1] == '\t' || body[n-1] == '\n' || body[n-1] == '\r') {
		n--
	}
	return n
}

// skipString returns the index after the string starting at b[i] == '"'.
func skipString(b []byte, i int) int {
	// Most strings hold no escape: find the closing quote with IndexByte.
	if q := bytes.IndexByte(b[i+1:], '"'); q >= 0 && bytes.IndexByte(b[i+1:i+1+q], '\\') < 0 {
		return i + 1 + q + 1
	}
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return len(b)
}

// skipValue returns the index after the value starting at b[i].
func skipValue(b []byte, i int) int {
	if i >= len(b) {
		return len(b)
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				i = skipString(b, i)
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return len(b)
	default:
		for i < len(b) {
			switch b[i] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return i
			}
			i++
		}
		return len(b)
	}
}

// eachMember calls fn with each quoted key and value of the object v.
func eachMember(v []byte, fn func(k, val []byte)) {
	i := skipWS(v, 1)
	for i < len(v) && v[i] == '"' {
		ke := skipString(v, i)
		k := v[i:ke]
		i = skipWS(v, ke)
		if i >= len(v) || v[i] != ':' {
			return
		}
		i = skipWS(v, i+1)
		ve := skipValue(v, i)
		fn(k, v[i:ve])
		i = skipWS(v, ve)
		if i >= len(v) || v[i] != ',' {
			return
		}
		i = skipWS(v, i+1)
	}
}

// eachElem calls fn with each element of the array v.
func eachElem(v []byte, fn func(e []byte)) {
	i := skipWS(v, 1)
	for i < len(v) && v[i] != ']' {
		ve := skipValue(v, i)
		if ve == i {
			return
		}
		fn(v[i:ve])
		i = skipWS(v, ve)
		if i >= len(v) || v[i] != ',' {
			return
		}
		i = skipWS(v, i+1)
	}
}
