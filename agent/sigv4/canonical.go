package sigv4

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"slices"
	"sync"

	"github.com/valyala/fasthttp"
)

// canonicalInput is what the canonical request and string to sign are built
// from. All slices are views into the request or Verify's stack.
type canonicalInput struct {
	req        *fasthttp.Request
	path       []byte // raw (still percent-encoded) request path
	query      []byte // raw query string, without '?'
	presigned  bool   // drop X-Amz-Signature from the canonical query
	signedHdrs []byte // client's SignedHeaders list
	payload    []byte // hex sha256 of the body
	amzDate    []byte // yyyymmddThhmmssZ
	scope      []byte // yyyymmdd/region/service/aws4_request
}

// scratch is per-call working memory, pooled so Verify does not allocate on
// the hot path. It must not be used after putScratch.
type scratch struct {
	buf []byte
	h   hash.Hash
	sum [sha256.Size]byte
	mac [sha256.Size]byte
	hex [2 * sha256.Size]byte
	pad [sha256.BlockSize]byte
}

var scratchPool = sync.Pool{New: func() any {
	return &scratch{buf: make([]byte, 0, 1024), h: sha256.New()}
}}

func getScratch() *scratch { return scratchPool.Get().(*scratch) }

func putScratch(s *scratch) {
	if cap(s.buf) > 64<<10 { // do not keep a huge buffer from one odd request
		s.buf = make([]byte, 0, 1024)
	}
	scratchPool.Put(s)
}

// signature returns the lowercase hex signature for in under the derived
// signing key. The result aliases s and is valid until the next call.
func (s *scratch) signature(key *[sha256.Size]byte, in *canonicalInput) []byte {
	b := appendCanonicalRequest(s.buf[:0], in)
	s.h.Reset()
	s.h.Write(b)
	s.h.Sum(s.sum[:0])
	n := len(b)
	b = append(b, algorithm...)
	b = append(b, '\n')
	b = append(b, in.amzDate...)
	b = append(b, '\n')
	b = append(b, in.scope...)
	b = append(b, '\n')
	b = hex.AppendEncode(b, s.sum[:])
	s.buf = b
	s.hmac(key[:], b[n:])
	hex.Encode(s.hex[:], s.mac[:])
	return s.hex[:]
}

// hmac sets s.mac to HMAC-SHA256(key, msg) for a key of at most one block,
// reusing s.h instead of allocating a crypto/hmac state per request.
func (s *scratch) hmac(key, msg []byte) {
	pad := &s.pad
	copy(pad[:], key)
	for i := range pad {
		pad[i] ^= 0x36
	}
	s.h.Reset()
	s.h.Write(pad[:])
	s.h.Write(msg)
	s.h.Sum(s.mac[:0])
	for i := range pad {
		pad[i] ^= 0x36 ^ 0x5c
	}
	s.h.Reset()
	s.h.Write(pad[:])
	s.h.Write(s.mac[:])
	s.h.Sum(s.mac[:0])
	clear(pad[:])
}

// appendCanonicalRequest appends
//
//	Method \n CanonicalURI \n CanonicalQuery \n CanonicalHeaders \n SignedHeaders \n HexPayloadHash
//
// where CanonicalHeaders has one "name:value\n" line per SignedHeaders entry.
func appendCanonicalRequest(b []byte, in *canonicalInput) []byte {
	b = append(b, in.req.Header.Method()...)
	b = append(b, '\n')
	b = appendCanonicalURI(b, in.path)
	b = append(b, '\n')
	b = appendCanonicalQuery(b, in.query, in.presigned)
	b = append(b, '\n')
	list := in.signedHdrs
	for len(list) > 0 {
		var name []byte
		name, list, _ = bytes.Cut(list, []byte{';'})
		b = appendLower(b, name)
		b = append(b, ':')
		b = appendHeaderValues(b, &in.req.Header, name)
		b = append(b, '\n')
	}
	b = append(b, '\n')
	b = appendLower(b, in.signedHdrs)
	b = append(b, '\n')
	return append(b, in.payload...)
}

// appendHeaderValues appends every value of header name, trimmed, with runs
// of spaces collapsed, joined with ','.
func appendHeaderValues(b []byte, h *fasthttp.RequestHeader, name []byte) []byte {
	first := true
	for k, v := range h.All() {
		if !bytesEqFold(k, name) {
			continue
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		b = appendCollapsed(b, trimSpace(v))
	}
	return b
}

func appendCollapsed(b, v []byte) []byte {
	prevSpace := false
	for _, c := range v {
		if c == ' ' {
			if prevSpace {
				continue
			}
			prevSpace = true
		} else {
			prevSpace = false
		}
		b = append(b, c)
	}
	return b
}

func appendLower(b, s []byte) []byte {
	for _, c := range s {
		b = append(b, lower(c))
	}
	return b
}

func bytesEqFold(a, b []byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if lower(a[i]) != lower(b[i]) {
			return false
		}
	}
	return true
}

// appendCanonicalURI URI-encodes the raw path once more, keeping '/': the
// client signed its already-encoded path encoded again (AWS's "encode each
// segment twice" for every service but S3). An empty path is "/".
func appendCanonicalURI(b, path []byte) []byte {
	if len(path) == 0 {
		return append(b, '/')
	}
	for _, c := range path {
		if c == '/' || unreserved(c) {
			b = append(b, c)
		} else {
			b = appendPct(b, c)
		}
	}
	return b
}

// appendCanonicalQuery decodes each name and value of the raw query, encodes
// them per RFC 3986 (space as %20), sorts by encoded name then value and
// joins them with '&'. Presigned requests leave out X-Amz-Signature.
func appendCanonicalQuery(b, query []byte, presigned bool) []byte {
	if len(query) == 0 {
		return b
	}
	type pair struct{ k, v []byte }
	var pairs []pair
	for len(query) > 0 {
		var piece []byte
		piece, query, _ = bytes.Cut(query, []byte{'&'})
		if len(piece) == 0 {
			continue
		}
		k, v, _ := bytes.Cut(piece, []byte{'='})
		dk, dv := unescape(k), unescape(v)
		if presigned && string(dk) == "X-Amz-Signature" {
			continue
		}
		pairs = append(pairs, pair{uriEncode(nil, dk), uriEncode(nil, dv)})
	}
	slices.SortFunc(pairs, func(x, y pair) int {
		if c := bytes.Compare(x.k, y.k); c != 0 {
			return c
		}
		return bytes.Compare(x.v, y.v)
	})
	for i, p := range pairs {
		if i > 0 {
			b = append(b, '&')
		}
		b = append(b, p.k...)
		b = append(b, '=')
		b = append(b, p.v...)
	}
	return b
}

func uriEncode(b, s []byte) []byte {
	for _, c := range s {
		if unreserved(c) {
			b = append(b, c)
		} else {
			b = appendPct(b, c)
		}
	}
	return b
}

// unescape percent-decodes s with '+' as space, as query strings are decoded.
// Malformed escapes are kept literally.
func unescape(s []byte) []byte {
	if bytes.IndexByte(s, '%') < 0 && bytes.IndexByte(s, '+') < 0 {
		return s
	}
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '+':
			out = append(out, ' ')
		case c == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]):
			out = append(out, unhex(s[i+1])<<4|unhex(s[i+2]))
			i += 2
		default:
			out = append(out, c)
		}
	}
	return out
}

// normalizePath removes "." and ".." segments and empty segments (RFC 3986
// section 5.2.4 plus collapsing "//"), as botocore does before signing. It
// reports whether the result differs from path.
func normalizePath(path []byte) ([]byte, bool) {
	if len(path) == 0 {
		return path, false
	}
	var segs [][]byte
	for seg := range bytes.SplitSeq(path, []byte{'/'}) {
		switch {
		case len(seg) == 0 || string(seg) == ".":
		case string(seg) == "..":
			if len(segs) > 0 {
				segs = segs[:len(segs)-1]
			}
		default:
			segs = append(segs, seg)
		}
	}
	out := make([]byte, 0, len(path))
	if path[0] == '/' {
		out = append(out, '/')
	}
	out = append(out, bytes.Join(segs, []byte{'/'})...)
	if path[len(path)-1] == '/' && len(segs) > 0 {
		out = append(out, '/')
	}
	return out, !bytes.Equal(out, path)
}

func unreserved(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' ||
		c == '-' || c == '_' || c == '.' || c == '~'
}

const upperHex = "0123456789ABCDEF"

func appendPct(b []byte, c byte) []byte {
	return append(b, '%', upperHex[c>>4], upperHex[c&15])
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}
