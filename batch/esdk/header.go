package esdk

import (
	"bufio"
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/elliptic"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"sort"
	"unicode/utf8"
)

var (
	// ErrFormat: the bytes are not a well-formed message.
	ErrFormat = errors.New("esdk: malformed message")
	// ErrAuth: a tag, the key commitment or the signature does not verify.
	ErrAuth = errors.New("esdk: message authentication failed")
	// ErrLimit: the message exceeds a configured limit.
	ErrLimit = errors.New("esdk: message exceeds a limit")
	// ErrUnsupported: a version, suite or content type this package does not read.
	ErrUnsupported = errors.New("esdk: unsupported message")
	// ErrUncommitted: a version 1 message (no key commitment) read without
	// Limits.AllowUncommitted; it is also ErrUnsupported.
	ErrUncommitted = fmt.Errorf("%w: message format version 1 (no key commitment) refused by the commitment policy", ErrUnsupported)
)

// Suite is an algorithm suite ID.
type Suite uint16

// The suites of message format version 2 (key commitment), written and
// read.
const (
	// SuiteCommitKey is ALG_AES_256_GCM_HKDF_SHA512_COMMIT_KEY.
	SuiteCommitKey Suite = 0x0478
	// SuiteCommitKeyECDSAP384 is ALG_AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384.
	SuiteCommitKeyECDSAP384 Suite = 0x0578
)

// The suites of message format version 1 (no key commitment), read only
// and only with Limits.AllowUncommitted: what the AWS Encryption SDK wrote
// before version 2.0, or since with the FORBID_ENCRYPT_ALLOW_DECRYPT
// commitment policy.
const (
	SuiteAES128GCM                    Suite = 0x0014 // ALG_AES_128_GCM_IV12_TAG16_NO_KDF
	SuiteAES192GCM                    Suite = 0x0046 // ALG_AES_192_GCM_IV12_TAG16_NO_KDF
	SuiteAES256GCM                    Suite = 0x0078 // ALG_AES_256_GCM_IV12_TAG16_NO_KDF
	SuiteAES128GCMHKDFSHA256          Suite = 0x0114 // ALG_AES_128_GCM_IV12_TAG16_HKDF_SHA256
	SuiteAES192GCMHKDFSHA256          Suite = 0x0146 // ALG_AES_192_GCM_IV12_TAG16_HKDF_SHA256
	SuiteAES256GCMHKDFSHA256          Suite = 0x0178 // ALG_AES_256_GCM_IV12_TAG16_HKDF_SHA256
	SuiteAES128GCMHKDFSHA256ECDSAP256 Suite = 0x0214 // ALG_AES_128_GCM_IV12_TAG16_HKDF_SHA256_ECDSA_P256
	SuiteAES192GCMHKDFSHA384ECDSAP384 Suite = 0x0346 // ALG_AES_192_GCM_IV12_TAG16_HKDF_SHA384_ECDSA_P384
	SuiteAES256GCMHKDFSHA384ECDSAP384 Suite = 0x0378 // ALG_AES_256_GCM_IV12_TAG16_HKDF_SHA384_ECDSA_P384
)

// suiteInfo is what the specification's algorithm suite table says of a
// suite.
type suiteInfo struct {
	name    string
	version byte
	keyLen  int              // the data key's length, and the message key's
	kdf     func() hash.Hash // HKDF's hash; nil: the data key is the message key (version 1 NO_KDF)
	curve   elliptic.Curve   // the signature's curve; nil: unsigned
	sigHash func() hash.Hash // the signature's hash
}

var suites = map[Suite]suiteInfo{
	SuiteCommitKey:                    {"ALG_AES_256_GCM_HKDF_SHA512_COMMIT_KEY", version2, 32, sha512.New, nil, nil},
	SuiteCommitKeyECDSAP384:           {"ALG_AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384", version2, 32, sha512.New, elliptic.P384(), sha512.New384},
	SuiteAES128GCM:                    {"ALG_AES_128_GCM_IV12_TAG16_NO_KDF", version1, 16, nil, nil, nil},
	SuiteAES192GCM:                    {"ALG_AES_192_GCM_IV12_TAG16_NO_KDF", version1, 24, nil, nil, nil},
	SuiteAES256GCM:                    {"ALG_AES_256_GCM_IV12_TAG16_NO_KDF", version1, 32, nil, nil, nil},
	SuiteAES128GCMHKDFSHA256:          {"ALG_AES_128_GCM_IV12_TAG16_HKDF_SHA256", version1, 16, sha256.New, nil, nil},
	SuiteAES192GCMHKDFSHA256:          {"ALG_AES_192_GCM_IV12_TAG16_HKDF_SHA256", version1, 24, sha256.New, nil, nil},
	SuiteAES256GCMHKDFSHA256:          {"ALG_AES_256_GCM_IV12_TAG16_HKDF_SHA256", version1, 32, sha256.New, nil, nil},
	SuiteAES128GCMHKDFSHA256ECDSAP256: {"ALG_AES_128_GCM_IV12_TAG16_HKDF_SHA256_ECDSA_P256", version1, 16, sha256.New, elliptic.P256(), sha256.New},
	SuiteAES192GCMHKDFSHA384ECDSAP384: {"ALG_AES_192_GCM_IV12_TAG16_HKDF_SHA384_ECDSA_P384", version1, 24, sha512.New384, elliptic.P384(), sha512.New384},
	SuiteAES256GCMHKDFSHA384ECDSAP384: {"ALG_AES_256_GCM_IV12_TAG16_HKDF_SHA384_ECDSA_P384", version1, 32, sha512.New384, elliptic.P384(), sha512.New384},
}

// Signed reports whether messages of the suite carry an ECDSA footer.
func (s Suite) Signed() bool { return suites[s].curve != nil }

// Committing reports whether the suite commits to its key (format
// version 2).
func (s Suite) Committing() bool { return suites[s].version == version2 }

// DataKeyLen is the length of the suite's data key (0: not a suite).
func (s Suite) DataKeyLen() int { return suites[s].keyLen }

// valid: a suite this package writes.
func (s Suite) valid() bool { return s == SuiteCommitKey || s == SuiteCommitKeyECDSAP384 }

func (s Suite) String() string {
	if i, ok := suites[s]; ok {
		return i.name
	}
	return fmt.Sprintf("suite 0x%04x", uint16(s))
}

// Format constants of message format version 2.
const (
	version2       = 0x02
	version1       = 0x01
	typeV1         = 0x80 // version 1's message type: customer authenticated encrypted data
	messageIDLenV1 = 16
	MessageIDLen   = 32
	DataKeyLen     = 32
	commitLen      = 32
	ivLen          = 12
	tagLen         = 16
	contentNonFrm  = 0x01
	contentFramed  = 0x02
	finalFrameMark = 0xFFFFFFFF

	// PublicKeyContextKey is the encryption context entry that carries a
	// signed message's verification key (base64 of the compressed point).
	PublicKeyContextKey = "aws-crypto-public-key"
	// ProviderKMS is the provider ID of data keys wrapped by AWS KMS; the
	// provider info is the KMS key ARN.
	ProviderKMS = "aws-kms"
	// DefaultFrameLength is the AWS Encryption SDK's default frame length.
	DefaultFrameLength = 4096
)

// Limits bound what a reader accepts; zero values mean the defaults.
type Limits struct {
	// MaxFrameLength bounds the frame length (and a non-framed body), the
	// memory a Reader needs. Default 16 MiB.
	MaxFrameLength int
	// MaxDataKeys bounds the encrypted data keys in a header. Default 64.
	MaxDataKeys int
	// MaxHeaderBytes bounds the whole header. Default 1 MiB.
	MaxHeaderBytes int
	// AllowUncommitted reads version 1 messages (suites without key
	// commitment), as the AWS Encryption SDK does with its
	// REQUIRE_ENCRYPT_ALLOW_DECRYPT commitment policy; without it they are
	// ErrUncommitted (REQUIRE_ENCRYPT_REQUIRE_DECRYPT, the SDK's default).
	AllowUncommitted bool
}

func (l Limits) withDefaults() Limits {
	if l.MaxFrameLength <= 0 {
		l.MaxFrameLength = 16 << 20
	}
	if l.MaxDataKeys <= 0 {
		l.MaxDataKeys = 64
	}
	if l.MaxHeaderBytes <= 0 {
		l.MaxHeaderBytes = 1 << 20
	}
	return l
}

// DataKey is an encrypted data key as the header carries it.
type DataKey struct {
	ProviderID   string
	ProviderInfo string
	Ciphertext   []byte
}

// Header is a parsed (or to-be-written) message header.
type Header struct {
	Suite       Suite
	MessageID   []byte
	Context     map[string]string
	DataKeys    []DataKey
	FrameLength uint32 // 0 for a non-framed body
	Commitment  []byte // the suite data: the commitment key (version 2)
	AuthTag     []byte

	// Version is the message format version: 2, or 1 (read only).
	Version int
	// headerIV is version 1's header authentication IV (nil: version 2's
	// zero IV).
	headerIV []byte

	framed bool
	// raw is the header as read (or written), without the auth tag;
	// edkStart and edkEnd delimit the encrypted data keys in it.
	raw              []byte
	edkStart, edkEnd int
}

// Raw returns the serialized header without its authentication tag. The
// caller must not modify it.
func (h *Header) Raw() []byte { return h.raw }

// appendContext serialises an encryption context (the AAD field's body):
// count, then key/value pairs sorted by key bytes. An empty context is
// empty.
func appendContext(dst []byte, ec map[string]string) ([]byte, error) {
	if len(ec) == 0 {
		return dst, nil
	}
	if len(ec) > 0xFFFF {
		return nil, fmt.Errorf("%w: %d encryption context entries (max 65535)", ErrLimit, len(ec))
	}
	keys := make([]string, 0, len(ec))
	for k := range ec {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(keys)))
	for _, k := range keys {
		v := ec[k]
		if len(k) > 0xFFFF || len(v) > 0xFFFF {
			return nil, fmt.Errorf("%w: encryption context entry %q longer than 65535 bytes", ErrLimit, k)
		}
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return nil, fmt.Errorf("%w: encryption context entry %q is not UTF-8", ErrFormat, k)
		}
		dst = binary.BigEndian.AppendUint16(dst, uint16(len(k)))
		dst = append(dst, k...)
		dst = binary.BigEndian.AppendUint16(dst, uint16(len(v)))
		dst = append(dst, v...)
	}
	return dst, nil
}

// appendDataKeys serialises the count and the encrypted data keys.
func appendDataKeys(dst []byte, keys []DataKey) ([]byte, error) {
	if len(keys) == 0 || len(keys) > 0xFFFF {
		return nil, fmt.Errorf("%w: %d encrypted data keys (want 1 to 65535)", ErrFormat, len(keys))
	}
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(keys)))
	for _, k := range keys {
		for _, f := range [][]byte{[]byte(k.ProviderID), []byte(k.ProviderInfo), k.Ciphertext} {
			if len(f) > 0xFFFF {
				return nil, fmt.Errorf("%w: encrypted data key field longer than 65535 bytes", ErrLimit)
			}
			dst = binary.BigEndian.AppendUint16(dst, uint16(len(f)))
			dst = append(dst, f...)
		}
	}
	return dst, nil
}

// marshal builds h.raw from the fields (framed, version 2).
func (h *Header) marshal() error {
	if !h.Suite.valid() {
		return fmt.Errorf("%w: %v", ErrUnsupported, h.Suite)
	}
	if len(h.MessageID) != MessageIDLen || len(h.Commitment) != commitLen || h.FrameLength == 0 {
		return fmt.Errorf("%w: header fields", ErrFormat)
	}
	b := make([]byte, 0, 256)
	b = append(b, version2)
	b = binary.BigEndian.AppendUint16(b, uint16(h.Suite))
	b = append(b, h.MessageID...)
	ec, err := appendContext(nil, h.Context)
	if err != nil {
		return err
	}
	if len(ec) > 0xFFFF {
		return fmt.Errorf("%w: serialized encryption context is %d bytes (max 65535)", ErrLimit, len(ec))
	}
	b = binary.BigEndian.AppendUint16(b, uint16(len(ec)))
	b = append(b, ec...)
	h.edkStart = len(b)
	if b, err = appendDataKeys(b, h.DataKeys); err != nil {
		return err
	}
	h.edkEnd = len(b)
	b = append(b, contentFramed)
	b = binary.BigEndian.AppendUint32(b, h.FrameLength)
	b = append(b, h.Commitment...)
	h.raw = b
	h.framed = true
	h.Version = version2
	return nil
}

// WithDataKeys returns a copy of h whose encrypted data keys are keys,
// every other header byte unchanged, authenticated with dataKey (which
// must open h: the commitment and the header tag are checked first). It
// is how a message is re-wrapped to another KMS key without touching the
// body. A signed message cannot be re-wrapped (its signature covers the
// header): ErrUnsupported.
//
// The new header tag is made under the message key of h, which the body
// keeps. A version 1 header carries its IV, and the copy gets a fresh
// random one. Version 2 fixes the header IV at zero, so h's tag and the
// copy's are two GCM tags under one key and nonce over different headers:
// whoever holds both messages can recover that message key's GHASH key
// and forge frames of either. Callers that cannot keep the original as
// safe as the data must re-encrypt the body instead (a new message ID,
// hence a new key).
func (h *Header) WithDataKeys(dataKey []byte, keys []DataKey) (*Header, error) {
	if h.Suite.Signed() {
		return nil, fmt.Errorf("%w: a signed message (%v) cannot be re-wrapped: its signature covers the header", ErrUnsupported, h.Suite)
	}
	aead, err := h.Open(dataKey)
	if err != nil {
		return nil, err
	}
	edks, err := appendDataKeys(nil, keys)
	if err != nil {
		return nil, err
	}
	n := *h
	n.DataKeys = append([]DataKey(nil), keys...)
	n.raw = make([]byte, 0, len(h.raw)-(h.edkEnd-h.edkStart)+len(edks))
	n.raw = append(n.raw, h.raw[:h.edkStart]...)
	n.raw = append(n.raw, edks...)
	n.edkEnd = len(n.raw)
	n.raw = append(n.raw, h.raw[h.edkEnd:]...)
	if h.headerIV != nil {
		n.headerIV = freshHeaderIV()
	}
	n.AuthTag = aead.Seal(nil, n.authIV(), nil, n.raw)
	return &n, nil
}

// freshHeaderIV is a random version 1 header IV whose first 8 bytes are
// not all zero, so it is none of the frames' IVs (8 zero bytes and the
// sequence number).
func freshHeaderIV() []byte {
	iv := make([]byte, ivLen)
	for binary.BigEndian.Uint64(iv) == 0 {
		rand.Read(iv)
	}
	return iv
}

// authIV is the header authentication's IV: version 1 carries it, version
// 2's is zero.
func (h *Header) authIV() []byte {
	if h.headerIV != nil {
		return h.headerIV
	}
	return make([]byte, ivLen)
}

// AppendTo appends the header and its authentication (version 1: IV and
// tag; version 2: tag) to dst.
func (h *Header) AppendTo(dst []byte) []byte {
	dst = append(dst, h.raw...)
	dst = append(dst, h.headerIV...)
	return append(dst, h.AuthTag...)
}

// deriveKeys derives the message key and (version 2) the commitment key:
// version 2 with HKDF-SHA512 (salt: the message ID; info: suite ID ||
// "DERIVEKEY", and "COMMITKEY"), version 1 with the suite's HKDF (no
// salt; info: suite ID || message ID) or, for NO_KDF suites, a copy of
// the data key.
func deriveKeys(suite Suite, dataKey, messageID []byte) (key, commit []byte, err error) {
	si, ok := suites[suite]
	if !ok {
		return nil, nil, fmt.Errorf("%w: %v", ErrUnsupported, suite)
	}
	if len(dataKey) != si.keyLen {
		return nil, nil, fmt.Errorf("%w: data key is %d bytes, want %d for %v", ErrFormat, len(dataKey), si.keyLen, suite)
	}
	if si.version == version1 {
		if si.kdf == nil {
			return bytes.Clone(dataKey), nil, nil
		}
		info := binary.BigEndian.AppendUint16(make([]byte, 0, 2+len(messageID)), uint16(suite))
		key, err = hkdf.Key(si.kdf, dataKey, nil, string(append(info, messageID...)), si.keyLen)
		return key, nil, err
	}
	info := binary.BigEndian.AppendUint16(make([]byte, 0, 11), uint16(suite))
	info = append(info, "DERIVEKEY"...)
	if key, err = hkdf.Key(sha512.New, dataKey, messageID, string(info), DataKeyLen); err != nil {
		return nil, nil, err
	}
	if commit, err = hkdf.Key(sha512.New, dataKey, messageID, "COMMITKEY", commitLen); err != nil {
		return nil, nil, err
	}
	return key, commit, nil
}

func newAEAD(key []byte) cipher.AEAD {
	block, err := aes.NewCipher(key)
	if err != nil {
		panic(err) // unreachable: keys are 16, 24 or 32 bytes (suiteInfo.keyLen)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		panic(err) // unreachable: standard nonce and tag sizes
	}
	return aead
}

// Open checks the key commitment (version 2) and the header
// authentication tag with dataKey and returns the message's AEAD (the
// derived key). The derived key bytes are zeroed before it returns.
func (h *Header) Open(dataKey []byte) (cipher.AEAD, error) {
	key, commit, err := deriveKeys(h.Suite, dataKey, h.MessageID)
	if err != nil {
		return nil, err
	}
	defer clear(key)
	if commit != nil && subtle.ConstantTimeCompare(commit, h.Commitment) != 1 {
		return nil, fmt.Errorf("%w: key commitment does not match the data key", ErrAuth)
	}
	aead := newAEAD(key)
	if _, err := aead.Open(nil, h.authIV(), h.AuthTag, h.raw); err != nil {
		return nil, fmt.Errorf("%w: header authentication tag", ErrAuth)
	}
	return aead, nil
}

// countingReader reads through r and refuses to read more than max bytes;
// it keeps what it read in buf.
type countingReader struct {
	r   io.Reader
	max int
	buf []byte
}

func (c *countingReader) next(n int, field string) ([]byte, error) {
	if len(c.buf)+n > c.max {
		return nil, fmt.Errorf("%w: header longer than %d bytes (at %s)", ErrLimit, c.max, field)
	}
	start := len(c.buf)
	c.buf = append(c.buf, make([]byte, n)...)
	if _, err := io.ReadFull(c.r, c.buf[start:]); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("%w: truncated at %s", ErrFormat, field)
		}
		return nil, err
	}
	return c.buf[start:], nil
}

func (c *countingReader) u16(field string) (int, error) {
	b, err := c.next(2, field)
	if err != nil {
		return 0, err
	}
	return int(binary.BigEndian.Uint16(b)), nil
}

func (c *countingReader) field16(field string) ([]byte, error) {
	n, err := c.u16(field + " length")
	if err != nil {
		return nil, err
	}
	return c.next(n, field)
}

// ReadHeader reads a header and its authentication from r: version 2,
// or version 1 with Limits.AllowUncommitted (else ErrUncommitted).
// It does not authenticate it (that needs the data key: Header.Open).
// Callers that keep reading the body pass the same bufio.Reader to
// NewReader.
func ReadHeader(r *bufio.Reader, lim Limits) (*Header, error) {
	return readHeader(r, lim)
}

func readHeader(r io.Reader, lim Limits) (*Header, error) {
	lim = lim.withDefaults()
	c := &countingReader{r: r, max: lim.MaxHeaderBytes}
	v, err := c.next(1, "version")
	if err != nil {
		return nil, err
	}
	h := &Header{Version: int(v[0])}
	idLen := MessageIDLen
	switch v[0] {
	case version2:
	case version1:
		t, err := c.next(1, "message type")
		if err != nil {
			return nil, err
		}
		if t[0] != typeV1 {
			return nil, fmt.Errorf("%w: version 1 message type 0x%02x", ErrFormat, t[0])
		}
		idLen = messageIDLenV1
	default:
		return nil, fmt.Errorf("%w: version 0x%02x", ErrFormat, v[0])
	}
	s, err := c.u16("algorithm suite")
	if err != nil {
		return nil, err
	}
	h.Suite = Suite(s)
	if si, ok := suites[h.Suite]; !ok || si.version != v[0] {
		return nil, fmt.Errorf("%w: %v in a version %d message", ErrUnsupported, h.Suite, v[0])
	}
	if v[0] == version1 && !lim.AllowUncommitted {
		return nil, fmt.Errorf("%w (%v)", ErrUncommitted, h.Suite)
	}
	id, err := c.next(idLen, "message ID")
	if err != nil {
		return nil, err
	}
	aad, err := c.field16("encryption context")
	if err != nil {
		return nil, err
	}
	if h.Context, err = parseContext(aad); err != nil {
		return nil, err
	}
	h.edkStart = len(c.buf)
	n, err := c.u16("encrypted data key count")
	if err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, fmt.Errorf("%w: no encrypted data keys", ErrFormat)
	}
	if n > lim.MaxDataKeys {
		return nil, fmt.Errorf("%w: %d encrypted data keys (max %d)", ErrLimit, n, lim.MaxDataKeys)
	}
	for i := 0; i < n; i++ {
		pid, err := c.field16("provider ID")
		if err != nil {
			return nil, err
		}
		pinfo, err := c.field16("provider info")
		if err != nil {
			return nil, err
		}
		ct, err := c.field16("encrypted data key")
		if err != nil {
			return nil, err
		}
		if !utf8.Valid(pid) {
			return nil, fmt.Errorf("%w: provider ID is not UTF-8", ErrFormat)
		}
		h.DataKeys = append(h.DataKeys, DataKey{ProviderID: string(pid), ProviderInfo: string(pinfo), Ciphertext: append([]byte(nil), ct...)})
	}
	h.edkEnd = len(c.buf)
	ct, err := c.next(1, "content type")
	if err != nil {
		return nil, err
	}
	if h.Version == version1 { // reserved (4 zero bytes), IV length (1)
		rsv, err := c.next(5, "reserved field and IV length")
		if err != nil {
			return nil, err
		}
		if binary.BigEndian.Uint32(rsv) != 0 {
			return nil, fmt.Errorf("%w: version 1 reserved field is not zero", ErrFormat)
		}
		if rsv[4] != ivLen {
			return nil, fmt.Errorf("%w: IV length %d, want %d", ErrFormat, rsv[4], ivLen)
		}
	}
	fl, err := c.next(4, "frame length")
	if err != nil {
		return nil, err
	}
	h.FrameLength = binary.BigEndian.Uint32(fl)
	switch ct[0] {
	case contentFramed:
		h.framed = true
		if h.FrameLength == 0 {
			return nil, fmt.Errorf("%w: framed content with frame length 0", ErrFormat)
		}
		if int64(h.FrameLength) > int64(lim.MaxFrameLength) {
			return nil, fmt.Errorf("%w: frame length %d (max %d)", ErrLimit, h.FrameLength, lim.MaxFrameLength)
		}
	case contentNonFrm:
		if h.FrameLength != 0 {
			return nil, fmt.Errorf("%w: non-framed content with frame length %d", ErrFormat, h.FrameLength)
		}
	default:
		return nil, fmt.Errorf("%w: content type 0x%02x", ErrFormat, ct[0])
	}
	h.MessageID = append([]byte(nil), id...)
	if h.Version == version2 {
		commit, err := c.next(commitLen, "algorithm suite data")
		if err != nil {
			return nil, err
		}
		h.Commitment = append([]byte(nil), commit...)
	}
	h.raw = c.buf
	if h.Version == version1 {
		h.headerIV = make([]byte, ivLen)
		if _, err := io.ReadFull(r, h.headerIV); err != nil {
			return nil, fmt.Errorf("%w: truncated at header authentication IV", ErrFormat)
		}
	}
	tag := make([]byte, tagLen)
	if _, err := io.ReadFull(r, tag); err != nil {
		return nil, fmt.Errorf("%w: truncated at header authentication tag", ErrFormat)
	}
	h.AuthTag = tag
	return h, nil
}

// parseContext decodes the AAD field's body.
func parseContext(b []byte) (map[string]string, error) {
	ec := map[string]string{}
	if len(b) == 0 {
		return ec, nil
	}
	if len(b) < 2 {
		return nil, fmt.Errorf("%w: encryption context count", ErrFormat)
	}
	n := int(binary.BigEndian.Uint16(b))
	if n == 0 {
		return nil, fmt.Errorf("%w: encryption context of %d bytes with 0 entries", ErrFormat, len(b))
	}
	b = b[2:]
	str := func() (string, error) {
		if len(b) < 2 {
			return "", fmt.Errorf("%w: truncated encryption context", ErrFormat)
		}
		l := int(binary.BigEndian.Uint16(b))
		if len(b) < 2+l {
			return "", fmt.Errorf("%w: truncated encryption context", ErrFormat)
		}
		s := b[2 : 2+l]
		b = b[2+l:]
		if !utf8.Valid(s) {
			return "", fmt.Errorf("%w: encryption context is not UTF-8", ErrFormat)
		}
		return string(s), nil
	}
	for i := 0; i < n; i++ {
		k, err := str()
		if err != nil {
			return nil, err
		}
		v, err := str()
		if err != nil {
			return nil, err
		}
		if _, dup := ec[k]; dup {
			return nil, fmt.Errorf("%w: duplicate encryption context key %q", ErrFormat, k)
		}
		ec[k] = v
	}
	if len(b) != 0 {
		return nil, fmt.Errorf("%w: %d bytes after the encryption context", ErrFormat, len(b))
	}
	return ec, nil
}
