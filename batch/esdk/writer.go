package esdk

import (
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha512"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
)

// SigningKey is a fresh ECDSA P-384 key for one message (or one cached
// set of materials) of a signed suite.
type SigningKey struct{ priv *ecdsa.PrivateKey }

// NewSigningKey makes a signing key.
func NewSigningKey() (*SigningKey, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		return nil, err
	}
	return &SigningKey{priv: priv}, nil
}

// PublicKey is the value of the aws-crypto-public-key context entry:
// base64 of the compressed point.
func (k *SigningKey) PublicKey() string {
	u, err := k.priv.PublicKey.Bytes() // 0x04 || X || Y
	if err != nil {
		panic(err) // unreachable: a generated P-384 key
	}
	n := (len(u) - 1) / 2
	c := make([]byte, 1+n)
	c[0] = 2 | u[len(u)-1]&1
	copy(c[1:], u[1:1+n])
	return base64.StdEncoding.EncodeToString(c)
}

// parsePublicKey decodes an aws-crypto-public-key value.
func parsePublicKey(s string) (*ecdsa.PublicKey, error) {
	c, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%w: %s is not base64", ErrFormat, PublicKeyContextKey)
	}
	x, y := elliptic.UnmarshalCompressed(elliptic.P384(), c)
	if x == nil {
		return nil, fmt.Errorf("%w: %s is not a compressed P-384 point", ErrFormat, PublicKeyContextKey)
	}
	u := make([]byte, 97)
	u[0] = 4
	x.FillBytes(u[1:49])
	y.FillBytes(u[49:])
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P384(), u)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrFormat, PublicKeyContextKey, err)
	}
	return pub, nil
}

// Materials are what a Writer needs: the plaintext data key, its
// encrypted copies for the header, and the encryption context (which for
// a signed suite must hold the signing key's public key).
type Materials struct {
	Suite       Suite
	DataKey     []byte
	DataKeys    []DataKey
	Context     map[string]string
	SigningKey  *SigningKey // signed suites only
	FrameLength int         // default DefaultFrameLength
}

// Writer encrypts a stream into one message. It holds one frame.
type Writer struct {
	w      io.Writer
	header *Header
	aead   cipher.AEAD
	frame  []byte // plaintext of the pending frame, cap FrameLength
	out    []byte // sealed frame scratch
	seq    uint32
	sig    hash.Hash
	signer *ecdsa.PrivateKey
	n      int64
	err    error
	closed bool
}

// NewWriter writes the header of a new message (a fresh random message
// ID) to w and returns a Writer for its body. Close finishes the message.
func NewWriter(w io.Writer, m Materials) (*Writer, error) {
	if m.FrameLength == 0 {
		m.FrameLength = DefaultFrameLength
	}
	if m.FrameLength < 0 || int64(m.FrameLength) > 1<<31-1 {
		return nil, fmt.Errorf("%w: frame length %d", ErrLimit, m.FrameLength)
	}
	if m.Suite == 0 {
		m.Suite = SuiteCommitKey
	}
	if m.Suite.Signed() {
		if m.SigningKey == nil || m.Context[PublicKeyContextKey] != m.SigningKey.PublicKey() {
			return nil, fmt.Errorf("%w: a signed suite needs a signing key whose public key is the %s context entry", ErrFormat, PublicKeyContextKey)
		}
	} else if _, ok := m.Context[PublicKeyContextKey]; ok {
		return nil, fmt.Errorf("%w: %s is reserved for signed suites", ErrFormat, PublicKeyContextKey)
	}
	h := &Header{Suite: m.Suite, MessageID: make([]byte, MessageIDLen), Context: m.Context, DataKeys: m.DataKeys, FrameLength: uint32(m.FrameLength)}
	rand.Read(h.MessageID)
	key, commit, err := deriveKeys(m.Suite, m.DataKey, h.MessageID)
	if err != nil {
		return nil, err
	}
	defer clear(key)
	h.Commitment = commit
	if err := h.marshal(); err != nil {
		return nil, err
	}
	aead := newAEAD(key)
	h.AuthTag = aead.Seal(nil, make([]byte, ivLen), nil, h.raw)
	wr := &Writer{w: w, header: h, aead: aead, frame: make([]byte, 0, m.FrameLength), out: make([]byte, 0, 4+4+ivLen+4+m.FrameLength+tagLen)}
	if m.Suite.Signed() {
		wr.sig = sha512.New384()
		wr.signer = m.SigningKey.priv
	}
	if err := wr.emit(h.AppendTo(nil)); err != nil {
		return nil, err
	}
	return wr, nil
}

// Header returns the message header (valid after NewWriter).
func (w *Writer) Header() *Header { return w.header }

func (w *Writer) emit(b []byte) error {
	if w.sig != nil {
		w.sig.Write(b)
	}
	_, err := w.w.Write(b)
	if err != nil {
		w.err = err
	}
	return err
}

// bodyAAD is message ID || content string || sequence number || length.
func appendBodyAAD(dst, messageID []byte, content string, seq uint32, n int) []byte {
	dst = append(dst, messageID...)
	dst = append(dst, content...)
	dst = binary.BigEndian.AppendUint32(dst, seq)
	return binary.BigEndian.AppendUint64(dst, uint64(n))
}

const (
	aadFrame      = "AWSKMSEncryptionClient Frame"
	aadFinalFrame = "AWSKMSEncryptionClient Final Frame"
	aadSingle     = "AWSKMSEncryptionClient Single Block"
)

func frameIV(seq uint32) []byte {
	iv := make([]byte, ivLen)
	binary.BigEndian.PutUint32(iv[ivLen-4:], seq)
	return iv
}

// seal writes the pending frame as a regular or final frame.
func (w *Writer) seal(final bool) error {
	if w.seq == finalFrameMark-1 && !final {
		w.err = fmt.Errorf("%w: more than 2^32-2 frames", ErrLimit)
		return w.err
	}
	w.seq++
	var aadBuf [MessageIDLen + 34 + 12]byte
	iv := frameIV(w.seq)
	out := w.out[:0]
	content := aadFrame
	if final {
		content = aadFinalFrame
		out = binary.BigEndian.AppendUint32(out, finalFrameMark)
	}
	out = binary.BigEndian.AppendUint32(out, w.seq)
	out = append(out, iv...)
	if final {
		out = binary.BigEndian.AppendUint32(out, uint32(len(w.frame)))
	}
	aad := appendBodyAAD(aadBuf[:0], w.header.MessageID, content, w.seq, len(w.frame))
	out = w.aead.Seal(out, iv, w.frame, aad)
	w.out = out
	w.frame = w.frame[:0]
	return w.emit(out)
}

// Write encrypts p. It returns an error once any write has failed.
func (w *Writer) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	if w.closed {
		return 0, errors.New("esdk: write after Close")
	}
	n := 0
	for len(p) > 0 {
		if len(w.frame) == cap(w.frame) {
			// A full frame is regular only once we know more follows.
			if err := w.seal(false); err != nil {
				return n, err
			}
		}
		k := copy(w.frame[len(w.frame):cap(w.frame)], p)
		w.frame = w.frame[:len(w.frame)+k]
		p = p[k:]
		n += k
		w.n += int64(k)
	}
	return n, nil
}

// ReadFrom encrypts everything r yields, reading straight into the frame
// buffer.
func (w *Writer) ReadFrom(r io.Reader) (int64, error) {
	var total int64
	for {
		if w.err != nil {
			return total, w.err
		}
		if len(w.frame) == cap(w.frame) {
			if err := w.seal(false); err != nil {
				return total, err
			}
		}
		k, err := r.Read(w.frame[len(w.frame):cap(w.frame)])
		w.frame = w.frame[:len(w.frame)+k]
		total += int64(k)
		w.n += int64(k)
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// Close writes the final frame and, for signed suites, the footer. It
// does not close the underlying writer.
func (w *Writer) Close() error {
	if w.err != nil {
		return w.err
	}
	if w.closed {
		return nil
	}
	w.closed = true
	if err := w.seal(true); err != nil {
		return err
	}
	if w.sig != nil {
		sig, err := ecdsa.SignASN1(rand.Reader, w.signer, w.sig.Sum(nil))
		if err != nil {
			return err
		}
		foot := binary.BigEndian.AppendUint16(nil, uint16(len(sig)))
		if _, err := w.w.Write(append(foot, sig...)); err != nil {
			return err
		}
	}
	return nil
}

// Len is the plaintext length written so far.
func (w *Writer) Len() int64 { return w.n }

var _ io.ReaderFrom = (*Writer)(nil)
