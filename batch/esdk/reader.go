package esdk

import (
	"bufio"
	"crypto/cipher"
	"crypto/ecdsa"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
)

// Reader decrypts the body of a message whose header was read with
// ReadHeader. Read returns each frame's plaintext once its tag verifies;
// io.EOF comes only after the final frame, the signature (signed suites)
// and the end of the input have all been checked.
type Reader struct {
	r      source
	h      *Header
	aead   cipher.AEAD
	lim    Limits
	seq    uint32
	buf    []byte // plaintext of the current frame (pooled)
	plain  []byte // verified plaintext not yet returned
	sig    hash.Hash
	pub    *ecdsa.PublicKey
	done   bool
	err    error
	n      int64
	tmp    [4 + 4 + ivLen + 8]byte
	aadBuf [MessageIDLen + 34 + 12]byte
}

// NewReader checks h with dataKey (commitment, header tag) and returns a
// Reader of the body that follows in r.
func NewReader(r *bufio.Reader, h *Header, dataKey []byte, lim Limits) (*Reader, error) {
	return newReader(r, h, dataKey, lim)
}

// source is what a Reader reads a body from: a *bufio.Reader, or a feed
// (a Writer checking what it is about to write). Peek lets a frame be
// opened where it lies, without a copy.
type source interface {
	io.Reader
	io.ByteReader
	Peek(n int) ([]byte, error)
	Discard(n int) (int, error)
}

var _ source = (*bufio.Reader)(nil)

func newReader(r source, h *Header, dataKey []byte, lim Limits) (*Reader, error) {
	aead, err := h.Open(dataKey)
	if err != nil {
		return nil, err
	}
	rd := &Reader{r: r, h: h, aead: aead, lim: lim.withDefaults()}
	if h.Suite.Signed() {
		v, ok := h.Context[PublicKeyContextKey]
		if !ok {
			return nil, fmt.Errorf("%w: signed suite without a %s context entry", ErrFormat, PublicKeyContextKey)
		}
		si := suites[h.Suite]
		if rd.pub, err = parsePublicKey(si.curve, v); err != nil {
			return nil, err
		}
		rd.sig = si.sigHash()
		rd.sig.Write(h.raw)
		rd.sig.Write(h.headerIV)
		rd.sig.Write(h.AuthTag)
	}
	return rd, nil
}

// Len is the plaintext length returned so far.
func (r *Reader) Len() int64 { return r.n }

// readFull reads exactly len(b) body bytes, feeding the signature hash.
func (r *Reader) readFull(b []byte, field string) error {
	if _, err := io.ReadFull(r.r, b); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("%w: truncated at %s (frame %d)", ErrFormat, field, r.seq+1)
		}
		return err
	}
	if r.sig != nil {
		r.sig.Write(b)
	}
	return nil
}

func (r *Reader) Read(p []byte) (int, error) {
	for len(r.plain) == 0 {
		if r.err != nil {
			r.release()
			return 0, r.err
		}
		if r.done {
			r.release()
			return 0, io.EOF
		}
		if err := r.next(); err != nil {
			r.err = err
			return 0, err
		}
	}
	n := copy(p, r.plain)
	r.plain = r.plain[n:]
	r.n += int64(n)
	return n, nil
}

// WriteTo writes the whole verified plaintext to w.
func (r *Reader) WriteTo(w io.Writer) (int64, error) {
	var total int64
	for {
		if len(r.plain) > 0 {
			n, err := w.Write(r.plain)
			total += int64(n)
			r.n += int64(n)
			r.plain = r.plain[n:]
			if err != nil {
				return total, err
			}
			continue
		}
		if r.err != nil {
			r.release()
			return total, r.err
		}
		if r.done {
			r.release()
			return total, nil
		}
		if err := r.next(); err != nil {
			r.err = err
			r.release()
			return total, err
		}
	}
}

// release returns the frame buffer to the pool once nothing refers to it.
func (r *Reader) release() {
	if len(r.plain) == 0 && r.buf != nil {
		putBuf(r.buf)
		r.buf, r.plain = nil, nil
	}
}

// next reads, verifies and decrypts one frame (or the non-framed body)
// into r.plain; after the final one it checks the footer and the end.
func (r *Reader) next() error {
	if !r.h.framed {
		return r.nonFramed()
	}
	b := r.tmp[:4]
	if err := r.readFull(b, "sequence number"); err != nil {
		return err
	}
	seq := binary.BigEndian.Uint32(b)
	final := seq == finalFrameMark
	if final {
		if err := r.readFull(b, "final sequence number"); err != nil {
			return err
		}
		seq = binary.BigEndian.Uint32(b)
	}
	if seq != r.seq+1 {
		return fmt.Errorf("%w: frame sequence number %d, want %d", ErrFormat, seq, r.seq+1)
	}
	r.seq = seq
	iv := r.tmp[4 : 4+ivLen]
	if err := r.readFull(iv, "frame IV"); err != nil {
		return err
	}
	n := int(r.h.FrameLength)
	content := aadFrame
	if final {
		content = aadFinalFrame
		lb := r.tmp[4+ivLen : 4+ivLen+4]
		if err := r.readFull(lb, "final frame length"); err != nil {
			return err
		}
		fl := binary.BigEndian.Uint32(lb)
		if fl > r.h.FrameLength {
			return fmt.Errorf("%w: final frame of %d bytes exceeds the frame length %d", ErrFormat, fl, r.h.FrameLength)
		}
		n = int(fl)
	}
	if err := r.open(iv, content, n); err != nil {
		return err
	}
	if final {
		return r.finish()
	}
	return nil
}

// open reads n bytes of ciphertext and the tag and decrypts them into
// r.buf: from where they lie in the source when it can hold them (Peek),
// else through a copy into r.buf (decrypted in place).
func (r *Reader) open(iv []byte, content string, n int) error {
	if cap(r.buf) < n+tagLen {
		if r.buf != nil {
			putBuf(r.buf)
		}
		r.buf = getBuf(max(n, int(r.h.FrameLength)) + tagLen)
	}
	ct, err := r.r.Peek(n + tagLen)
	peeked := err == nil
	switch {
	case peeked:
		if r.sig != nil {
			r.sig.Write(ct)
		}
	case errors.Is(err, bufio.ErrBufferFull): // a frame larger than the bufio.Reader
		ct = r.buf[:n+tagLen]
		if _, err = io.ReadFull(r.r, ct); err == nil && r.sig != nil {
			r.sig.Write(ct)
		}
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: truncated at frame content (frame %d)", ErrFormat, r.seq)
	}
	if err != nil {
		return err
	}
	aad := appendBodyAAD(r.aadBuf[:0], r.h.MessageID, content, r.seq, n)
	pt, err := r.aead.Open(r.buf[:0], iv, ct, aad)
	if peeked {
		r.r.Discard(n + tagLen)
	}
	if err != nil {
		return fmt.Errorf("%w: frame %d", ErrAuth, r.seq)
	}
	r.plain = pt
	return nil
}

func (r *Reader) nonFramed() error {
	r.seq = 1
	hdr := r.tmp[:ivLen+8]
	if err := r.readFull(hdr, "non-framed IV and length"); err != nil {
		return err
	}
	n := binary.BigEndian.Uint64(hdr[ivLen:])
	if n > uint64(r.lim.MaxFrameLength) {
		return fmt.Errorf("%w: non-framed body of %d bytes (max %d)", ErrLimit, n, r.lim.MaxFrameLength)
	}
	iv := append([]byte(nil), hdr[:ivLen]...)
	if err := r.open(iv, aadSingle, int(n)); err != nil {
		return err
	}
	return r.finish()
}

// finish checks the footer (signed suites) and that nothing follows; on
// failure the last frame's plaintext is withheld.
func (r *Reader) finish() (err error) {
	defer func() {
		if err != nil {
			r.plain = nil
		}
	}()
	if r.sig != nil {
		digest := r.sig.Sum(nil)
		r.sig = nil
		lb := r.tmp[:2]
		if err := r.readFull(lb, "signature length"); err != nil {
			return err
		}
		sig := make([]byte, binary.BigEndian.Uint16(lb))
		if err := r.readFull(sig, "signature"); err != nil {
			return err
		}
		if !ecdsa.VerifyASN1(r.pub, digest, sig) {
			return fmt.Errorf("%w: signature", ErrAuth)
		}
	}
	if _, err := r.r.ReadByte(); err == nil {
		return fmt.Errorf("%w: data after the end of the message", ErrFormat)
	} else if err != io.EOF {
		return err
	}
	r.done = true
	return nil
}

var _ io.WriterTo = (*Reader)(nil)
