package esdk

import (
	"bytes"
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
	"sync/atomic"
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

// parsePublicKey decodes an aws-crypto-public-key value: a compressed
// point of curve (P-384, or P-256 for a version 1 suite).
func parsePublicKey(curve elliptic.Curve, s string) (*ecdsa.PublicKey, error) {
	c, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%w: %s is not base64", ErrFormat, PublicKeyContextKey)
	}
	x, y := elliptic.UnmarshalCompressed(curve, c)
	if x == nil {
		return nil, fmt.Errorf("%w: %s is not a compressed %s point", ErrFormat, PublicKeyContextKey, curve.Params().Name)
	}
	n := (curve.Params().BitSize + 7) / 8
	u := make([]byte, 1+2*n)
	u[0] = 4
	x.FillBytes(u[1 : 1+n])
	y.FillBytes(u[1+n:])
	pub, err := ecdsa.ParseUncompressedPublicKey(curve, u)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrFormat, PublicKeyContextKey, err)
	}
	return pub, nil
}

// Materials are what a Writer needs: the plaintext data key, its
// encrypted copies for the header, and the encryption context (which for
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
	// Verify makes the Writer read back every byte before it writes it: a
	// Reader of its own parses the header back, derives the key again from
	// DataKey (checking the commitment and the header tag), opens each
	// sealed frame, which must give back the plaintext it was sealed from
	// byte for byte, and at Close checks the signature and the end. A
	// mismatch is ErrVerify and nothing more is written. It costs one
	// AES-GCM pass over data still in the CPU's cache.
	Verify bool
	// Parallel splits the work in two stages on two goroutines, from the
	// second batch on: reading and sealing a batch, while the batch before
	// is checked (Verify), signed and written; a large message then uses
	// two cores. It holds two batches. A Writer with Parallel must be
	// finished with Close or Abort, which end the second goroutine.
	Parallel bool
}

// ErrVerify: a Writer with Materials.Verify found that what it was about
// to write does not read back as the plaintext it was given.
var ErrVerify = errors.New("esdk: the message does not read back as written")

// batchBytes is how much plaintext (whole frames, at least one) a Writer
// seals before one write to its io.Writer: few system calls, and a batch
// of plaintext and ciphertext that stays in the CPU's cache while it is
// checked (Materials.Verify).
const batchBytes = 256 << 10

// headerRoom is the room a Writer's output buffer keeps for the header,
// which goes out with the first batch (a larger header is written alone).
const headerRoom = 4 << 10

// frameOverhead is a regular frame's bytes besides its content (sequence
// number, IV, tag); the final frame has 8 more (end mark, length), and a
// signed message a footer of at most footerMax.
const (
	frameOverhead = 4 + ivLen + tagLen
	footerMax     = 2 + 104
)

// Writer encrypts a stream into one message. It holds one batch
// (batchBytes, or one frame if that is larger) of plaintext and of
// ciphertext, in pooled buffers that Close returns.
type Writer struct {
	w      io.Writer
	header *Header
	framer
	frameLen int
	in       []byte // plaintext not yet sealed; cap a whole number of frames
	inBuf    []byte // in's pooled buffer
	out      []byte // the header (until the first write), then sealed frames
	hdr      int    // bytes of header at the start of out (already hashed)
	seq      uint32
	sig      hash.Hash
	signer   *ecdsa.PrivateKey
	check    *checker // Materials.Verify
	n        int64
	err      error
	closed   bool

	// Materials.Parallel: batches go to the second stage on pipe and come
	// back on free; it says failed before returning a batch it could not
	// write, and its result on done once pipe is closed.
	parallel bool
	pipe     chan batch
	free     chan batch
	done     chan error
	failed   atomic.Bool
}

// batch is sealed plaintext on its way to be checked and written: out is
// the header (hdr bytes, first batch only) and the frames sealed from
// in[:n] and, when final, the final frame from in[n:].
type batch struct {
	in, inBuf, out []byte
	hdr, n         int
	final          bool
}

// NewWriter starts a new message (a fresh random message ID) to w and
// returns a Writer for its body. The header is written with the first
// frames (alone if it is large); Close finishes the message.
func NewWriter(w io.Writer, m Materials) (*Writer, error) {
	h, aead, err := newMessage(&m)
	if err != nil {
		return nil, err
	}
	frames := max(1, batchBytes/m.FrameLength)
	wr := &Writer{w: w, header: h, framer: framer{aead: aead, id: h.MessageID}, frameLen: m.FrameLength, parallel: m.Parallel,
		inBuf: getBuf(frames * m.FrameLength),
		out:   getBuf(frames*(m.FrameLength+frameOverhead) + 8 + footerMax + headerRoom)}
	wr.in = wr.inBuf[: 0 : frames*m.FrameLength]
	if m.Suite.Signed() {
		wr.sig = sha512.New384()
		wr.signer = m.SigningKey.priv
	}
	hb := h.AppendTo(wr.out)
	if wr.sig != nil {
		wr.sig.Write(hb)
	}
	if m.Verify {
		if wr.check, err = newChecker(hb, m.DataKey, m.FrameLength); err != nil {
			wr.release()
			return nil, err
		}
	}
	if len(hb) > headerRoom {
		if _, err := w.Write(hb); err != nil {
			wr.release()
			return nil, err
		}
		hb = hb[:0]
	}
	wr.out, wr.hdr = hb, len(hb)
	return wr, nil
}

// newMessage checks m, fills in its defaults, and makes a new message's
// header (a fresh random message ID, the commitment, the header tag) and
// its body's AEAD.
func newMessage(m *Materials) (*Header, cipher.AEAD, error) {
	if m.FrameLength == 0 {
		m.FrameLength = DefaultFrameLength
	}
	if m.FrameLength < 0 || int64(m.FrameLength) > 1<<31-1 {
		return nil, nil, fmt.Errorf("%w: frame length %d", ErrLimit, m.FrameLength)
	}
	if m.Suite == 0 {
		m.Suite = SuiteCommitKey
	}
	if m.Suite.Signed() {
		if m.SigningKey == nil || m.Context[PublicKeyContextKey] != m.SigningKey.PublicKey() {
			return nil, nil, fmt.Errorf("%w: a signed suite needs a signing key whose public key is the %s context entry", ErrFormat, PublicKeyContextKey)
		}
	} else if _, ok := m.Context[PublicKeyContextKey]; ok {
		return nil, nil, fmt.Errorf("%w: %s is reserved for signed suites", ErrFormat, PublicKeyContextKey)
	}
	h := &Header{Suite: m.Suite, MessageID: make([]byte, MessageIDLen), Context: m.Context, DataKeys: m.DataKeys, FrameLength: uint32(m.FrameLength)}
	rand.Read(h.MessageID)
	key, commit, err := deriveKeys(m.Suite, m.DataKey, h.MessageID)
	if err != nil {
		return nil, nil, err
	}
	defer clear(key)
	h.Commitment = commit
	if err := h.marshal(); err != nil {
		return nil, nil, err
	}
	aead := newAEAD(key)
	h.AuthTag = aead.Seal(nil, make([]byte, ivLen), nil, h.raw)
	return h, aead, nil
}

// checker reads back what a Writer or a Framer is about to write
// (Materials.Verify): a Reader of its own, made from the header's bytes
// alone, over a feed of the sealed batch.
type checker struct {
	r   *Reader
	fed feed
}

// newChecker parses the header back from hb and derives the key again
// from dataKey (checking the commitment and the header tag).
func newChecker(hb, dataKey []byte, frameLen int) (*checker, error) {
	c := &checker{fed: feed{b: hb}}
	h, err := readHeader(&c.fed, Limits{MaxFrameLength: frameLen, MaxDataKeys: 0xFFFF, MaxHeaderBytes: len(hb)})
	if err == nil && len(c.fed.b) != 0 {
		err = fmt.Errorf("%d bytes after the header tag", len(c.fed.b))
	}
	if err == nil {
		c.r, err = newReader(&c.fed, h, dataKey, Limits{MaxFrameLength: frameLen})
	}
	if err != nil {
		return nil, fmt.Errorf("%w: header: %v", ErrVerify, err)
	}
	return c, nil
}

// release returns the checker's frame buffer to the pool.
func (c *checker) release() {
	c.r.plain = nil
	c.r.release()
}

// release returns the buffers to the pool.
func (w *Writer) release() {
	if w.inBuf != nil {
		putBuf(w.inBuf)
		putBuf(w.out)
		w.in, w.inBuf, w.out = nil, nil, nil
	}
	if w.pipe != nil {
		w.stop()
	}
	if w.check != nil {
		w.check.release()
	}
}

// Header returns the message header (valid after NewWriter).
func (w *Writer) Header() *Header { return w.header }

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

// framer seals frames of one message. Its AEAD may be shared between
// framers (Go's AES-GCM is safe for concurrent use); its IV and AAD
// buffers may not.
type framer struct {
	aead cipher.AEAD
	id   []byte // message ID
	iv   [ivLen]byte
	aad  [MessageIDLen + 34 + 12]byte
}

// sealFrame appends pt sealed as frame seq (regular or final) to out.
func (f *framer) sealFrame(out, pt []byte, seq uint32, final bool) []byte {
	binary.BigEndian.PutUint32(f.iv[ivLen-4:], seq) // IV = the sequence number
	content := aadFrame
	if final {
		content = aadFinalFrame
		out = binary.BigEndian.AppendUint32(out, finalFrameMark)
	}
	out = binary.BigEndian.AppendUint32(out, seq)
	out = append(out, f.iv[:]...)
	if final {
		out = binary.BigEndian.AppendUint32(out, uint32(len(pt)))
	}
	aad := appendBodyAAD(f.aad[:0], f.id, content, seq, len(pt))
	return f.aead.Seal(out, f.iv[:], pt, aad)
}

// sealFrame appends pt sealed as the next (regular or final) frame to out.
func (w *Writer) sealFrame(out, pt []byte, final bool) ([]byte, error) {
	if w.seq == finalFrameMark-1 && !final {
		return out, fmt.Errorf("%w: more than 2^32-2 frames", ErrLimit)
	}
	w.seq++
	return w.framer.sealFrame(out, pt, w.seq, final), nil
}

// seal seals w.in[:n] (whole frames) as regular frames and, when final,
// the rest of w.in as the final frame and the footer; checks them
// (Materials.Verify); writes them, after any pending header, in one Write;
// and keeps the plaintext not sealed. An error sticks.
func (w *Writer) seal(n int, final bool) error {
	if w.err == nil {
		w.err = w.sealBatch(n, final)
	}
	return w.err
}

func (w *Writer) sealBatch(n int, final bool) error {
	out, err := w.out, error(nil)
	for off := 0; off < n && err == nil; off += w.frameLen {
		out, err = w.sealFrame(out, w.in[off:off+w.frameLen], false)
	}
	if final && err == nil {
		out, err = w.sealFrame(out, w.in[n:], true)
	}
	if err != nil {
		return err
	}
	b := batch{in: w.in, inBuf: w.inBuf, out: out, hdr: w.hdr, n: n, final: final}
	if w.parallel && w.pipe == nil && !final {
		w.start()
	}
	if w.pipe == nil {
		if err := w.finish(b); err != nil {
			return err
		}
		w.out, w.hdr = out[:0], 0
		if final {
			w.in = w.in[:0]
		} else {
			w.in = w.in[:copy(w.in, w.in[n:])]
		}
		return nil
	}
	w.pipe <- b
	w.in, w.inBuf, w.out = nil, nil, nil // the second stage's until it sends them back
	if final {
		return w.stop()
	}
	nb := <-w.free
	if w.failed.Load() {
		w.free <- nb
		return w.stop()
	}
	rest := copy(nb.inBuf[:len(b.in)-n], b.in[n:]) // the second stage only reads b.in[:n]
	w.in, w.inBuf, w.out, w.hdr = nb.inBuf[:rest:cap(b.in)], nb.inBuf, nb.out[:0], 0
	return nil
}

// finish signs (the footer when final), checks and writes b.
func (w *Writer) finish(b batch) error {
	if w.sig != nil {
		w.sig.Write(b.out[b.hdr:])
		if b.final {
			sig, err := ecdsa.SignASN1(rand.Reader, w.signer, w.sig.Sum(nil))
			if err != nil {
				return err
			}
			b.out = binary.BigEndian.AppendUint16(b.out, uint16(len(sig)))
			b.out = append(b.out, sig...)
		}
	}
	if w.check != nil {
		if err := w.check.verify(b.out[b.hdr:], b.in, b.n, b.final); err != nil {
			return err
		}
	}
	_, err := w.w.Write(b.out)
	return err
}

// start starts the second stage, with a second set of buffers.
func (w *Writer) start() {
	w.pipe, w.free, w.done = make(chan batch), make(chan batch, 2), make(chan error, 1)
	w.free <- batch{inBuf: getBuf(cap(w.inBuf)), out: getBuf(cap(w.out))}
	go func() {
		var err error
		for b := range w.pipe {
			if err == nil {
				if err = w.finish(b); err != nil {
					w.failed.Store(true)
				}
			}
			w.free <- b
		}
		w.done <- err
	}()
}

// stop ends the second stage, returns its buffers to the pool and its
// error.
func (w *Writer) stop() error {
	close(w.pipe)
	err := <-w.done
	for len(w.free) > 0 {
		b := <-w.free
		putBuf(b.inBuf)
		putBuf(b.out)
	}
	w.pipe = nil
	return err
}

// verify reads body (the frames sealed from in[:n] and, when final, the
// final frame sealed from the rest) with c's Reader, and compares each
// frame's plaintext with what it was sealed from.
func (c *checker) verify(body, in []byte, n int, final bool) error {
	r, fl := c.r, int(c.r.h.FrameLength)
	c.fed.b = body
	for off := 0; off < n || final; off += fl {
		want := in[off:min(off+fl, n)]
		if off >= n {
			want, final = in[n:], false // the final frame, last
		}
		if err := r.next(); err != nil {
			return fmt.Errorf("%w: frame %d: %v", ErrVerify, r.seq, err)
		}
		if !bytes.Equal(r.plain, want) {
			return fmt.Errorf("%w: frame %d does not decrypt to the bytes it was sealed from", ErrVerify, r.seq)
		}
		r.plain = nil
	}
	if len(c.fed.b) != 0 {
		return fmt.Errorf("%w: %d bytes after frame %d", ErrVerify, len(c.fed.b), r.seq)
	}
	return nil
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
		if len(w.in) == cap(w.in) {
			// Full frames are regular only once we know more follows.
			if err := w.seal(len(w.in), false); err != nil {
				return n, err
			}
		}
		k := copy(w.in[len(w.in):cap(w.in)], p)
		w.in = w.in[:len(w.in)+k]
		p = p[k:]
		n += k
		w.n += int64(k)
	}
	return n, nil
}

// ReadFrom encrypts everything r yields, reading straight into the batch
// buffer (from a file, one Read per batch). Whole frames are sealed as
// regular frames as they come, so a plaintext that is a whole number of
// frames ends with an empty final frame, which the format allows.
func (w *Writer) ReadFrom(r io.Reader) (int64, error) {
	var total int64
	for {
		if w.err != nil {
			return total, w.err
		}
		if w.closed {
			return total, errors.New("esdk: write after Close")
		}
		if len(w.in) == cap(w.in) {
			if err := w.seal(len(w.in), false); err != nil {
				return total, err
			}
		}
		k, err := r.Read(w.in[len(w.in):cap(w.in)])
		w.in = w.in[:len(w.in)+k]
		total += int64(k)
		w.n += int64(k)
		if err == io.EOF {
			if whole := len(w.in) - len(w.in)%w.frameLen; whole > 0 {
				return total, w.seal(whole, false)
			}
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// Close writes the rest: the last frames, the final frame and, for signed
// suites, the footer. It does not close the underlying writer. The
// Writer's buffers go back to the pool.
func (w *Writer) Close() error {
	if w.closed {
		return w.err
	}
	w.closed = true
	defer w.release()
	n := len(w.in) - len(w.in)%w.frameLen
	if n == len(w.in) && n > 0 {
		n -= w.frameLen // a full last frame is the final one
	}
	return w.seal(n, true)
}

// Abort ends the Writer without writing anything more (no final frame: the
// message stays incomplete, which readers refuse), after a failure of the
// caller's, say. It is a no-op after Close.
func (w *Writer) Abort() {
	if w.closed {
		return
	}
	w.closed = true
	if w.err == nil {
		w.err = errors.New("esdk: Writer aborted")
	}
	w.release()
}

// Len is the plaintext length written so far.
func (w *Writer) Len() int64 { return w.n }

var _ io.ReaderFrom = (*Writer)(nil)
