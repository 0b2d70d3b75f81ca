package audit

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"unsafe"
)

// The API server's path (Event.SetCall) filters a call's request and
// response straight into encoded JSON: the bytes appendValue would write for
// the maps filter builds, without building them (no maps, no boxed values,
// no sorted key slices). FuzzFilter checks the two paths write the same bytes.

// extra is a member added to a filtered object when the object lacks it
// (the defaulted encryption algorithms, WithKeyARN's keyId).
type extra struct{ name, value string }

var (
	encryptDefaults   = []extra{{"encryptionAlgorithm", "SYMMETRIC_DEFAULT"}}
	reEncryptDefaults = []extra{{"destinationEncryptionAlgorithm", "SYMMETRIC_DEFAULT"}, {"sourceEncryptionAlgorithm", "SYMMETRIC_DEFAULT"}}
)

// callBufs holds the buffers SetCall encodes into; the writer puts them back
// once the record is encoded. They hold only allowlisted values.
var callBufs = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// appendObjectJSON appends the allowlisted view of body (which must be a JSON
// object; valid says it is known to be valid JSON) with the extras it lacks,
// and reports whether it appended anything (false: dst unchanged).
func appendObjectJSON(dst, body []byte, n *node, valid bool, extras []extra) ([]byte, bool) {
	if !valid && !json.Valid(body) {
		return dst, false
	}
	i := skipWS(body, 0)
	if i >= len(body) || body[i] != '{' {
		return dst, false
	}
	return appendFiltered(dst, body[i:valueEnd(body)], n, extras)
}

// member is one member written into a filtered object: its name and where
// `"name":value` lies in the buffer.
type member struct {
	name       string
	start, end int
}

// appendFiltered appends the allowlisted view of v, one valid JSON value, as
// appendValue encodes filter(v, n)'s result, and reports whether anything is
// left (false: dst is returned at its original length). extras apply to an
// object.
func appendFiltered(dst, v []byte, n *node, extras []extra) ([]byte, bool) {
	if len(v) == 0 {
		return dst, false
	}
	switch n.kind {
	case kString:
		if v[0] != '"' || len(v) < 2 {
			return dst, false
		}
		raw := v[1 : len(v)-1]
		if bytes.IndexByte(raw, '\\') < 0 {
			return appendString(dst, bytesString(raw)), true
		}
	case kNumber:
		if v[0] != '-' && (v[0] < '0' || v[0] > '9') {
			return dst, false
		}
		return append(dst, v...), true // a number of valid JSON
	case kBool:
		switch string(v) {
		case "true", "false":
			return append(dst, v...), true
		}
		return dst, false
	case kList:
		if v[0] != '[' {
			return dst, false
		}
		dst = append(dst, '[')
		count := 0
		eachElem(v, func(e []byte) {
			mark := len(dst)
			if count > 0 {
				dst = append(dst, ',')
			}
			var ok bool
			if dst, ok = appendFiltered(dst, e, n.elem, nil); !ok {
				dst = dst[:mark]
				return
			}
			count++
		})
		return append(dst, ']'), true
	case kMap, kObject:
		if v[0] != '{' {
			return dst, false
		}
		return appendMembers(dst, v, n, extras)
	}
	// Escaped strings and dates: rare; decoded as filter does.
	x, ok := filter(v, n)
	if !ok {
		return dst, false
	}
	return appendString(dst, x.(string)), true
}

// appendMembers appends the object or map v filtered by n, its members
// sorted by name and, for a name given twice, the last kept value (as a map
// and appendValue do).
func appendMembers(dst, v []byte, n *node, extras []extra) ([]byte, bool) {
	base := len(dst)
	dst = append(dst, '{')
	var arr [16]member
	ms := arr[:0]
	sorted := true
	add := func(name string, write func([]byte) ([]byte, bool)) {
		mark := len(dst)
		if len(ms) > 0 {
			dst = append(dst, ',')
		}
		start := len(dst)
		dst = appendString(dst, name)
		dst = append(dst, ':')
		var ok bool
		if dst, ok = write(dst); !ok {
			dst = dst[:mark]
			return
		}
		if len(ms) > 0 && ms[len(ms)-1].name >= name {
			sorted = false
		}
		ms = append(ms, member{name, start, len(dst)})
	}
	eachMember(v, func(k, e []byte) {
		var name string
		en := n.elem
		if n.kind == kObject {
			fd, ok := lookup(n, k)
			if !ok {
				return
			}
			name, en = fd.name, fd.n
		} else {
			if len(k) < 2 {
				return
			}
			if raw := k[1 : len(k)-1]; bytes.IndexByte(raw, '\\') < 0 {
				name = bytesString(raw) // used only while v is
			} else if key, ok := unquote(k); ok {
				name = key.(string)
			} else {
				return
			}
		}
		add(name, func(b []byte) ([]byte, bool) { return appendFiltered(b, e, en, nil) })
	})
	for _, x := range extras {
		if !slices.ContainsFunc(ms, func(m member) bool { return m.name == x.name }) {
			add(x.name, func(b []byte) ([]byte, bool) { return appendString(b, x.value), true })
		}
	}
	if len(ms) == 0 && n.kind == kObject {
		return dst[:base], false
	}
	if !sorted {
		// Rare (members out of order or repeated): rebuild in order from a copy.
		tmp := slices.Clone(dst[base:])
		slices.SortStableFunc(ms, func(a, b member) int { return strings.Compare(a.name, b.name) })
		dst = dst[:base+1]
		for i, m := range ms {
			if i+1 < len(ms) && ms[i+1].name == m.name {
				continue // a later value of the same name wins
			}
			if len(dst) > base+1 {
				dst = append(dst, ',')
			}
			dst = append(dst, tmp[m.start-base:m.end-base]...)
		}
	}
	return append(dst, '}'), true
}

// bytesString views b as a string without copying; the string must not
// outlive b's contents.
func bytesString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }
