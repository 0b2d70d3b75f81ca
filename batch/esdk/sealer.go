package esdk

import (
	"crypto/cipher"
	"fmt"
)

// Sealer writes one message of an unsigned suite whose plaintext length
// is known in advance. Its layout is then fixed: the header, size/F
// regular frames and a final frame of size%F bytes (F the frame length;
// the layout Writer.ReadFrom gives the same plaintext, byte for byte
// but for the message ID). So each frame can be sealed straight into its
// place in the output, a file mapped in memory say, in any order and by
// several goroutines (Framer).
//
// A Sealer is safe for concurrent use; its Framers are not (one per
// goroutine). Close zeroes its copy of the data key.
type Sealer struct {
	hb       []byte // header bytes, tag included
	aead     cipher.AEAD
	id       []byte
	frameLen int
	size     int64
	verify   bool
	dataKey  []byte // each Framer's checker derives its key again
}

// NewSealer starts a message of size plaintext bytes (a fresh random
// message ID). Signed suites are refused (ErrUnsupported): their footer
// signs the frames in order.
func NewSealer(m Materials, size int64) (*Sealer, error) {
	if m.Suite.Signed() {
		return nil, fmt.Errorf("%w: a Sealer writes unsigned suites only, not %v", ErrUnsupported, m.Suite)
	}
	if size < 0 {
		return nil, fmt.Errorf("%w: plaintext length %d", ErrLimit, size)
	}
	h, aead, err := newMessage(&m)
	if err != nil {
		return nil, err
	}
	if size/int64(m.FrameLength) >= finalFrameMark-1 {
		return nil, fmt.Errorf("%w: more than 2^32-2 frames", ErrLimit)
	}
	s := &Sealer{hb: h.AppendTo(nil), aead: aead, id: h.MessageID, frameLen: m.FrameLength, size: size, verify: m.Verify}
	s.dataKey = append([]byte(nil), m.DataKey...)
	return s, nil
}

// finalOverhead is the final frame's bytes besides its content: end mark,
// sequence number, IV, content length, tag.
const finalOverhead = 4 + frameOverhead + 4

// Header returns the header's bytes (tag included), the message's first
// bytes. The caller must not modify them.
func (s *Sealer) Header() []byte { return s.hb }

// FrameLength is the message's frame length.
func (s *Sealer) FrameLength() int { return s.frameLen }

// Len is the message's length in bytes.
func (s *Sealer) Len() int64 { return s.Offset(s.size) + finalOverhead + s.size%int64(s.frameLen) }

// End is where, in the message, the frames of the plaintext up to end
// (a multiple of the frame length, or the plaintext's length) end: for
// the whole plaintext, the final frame's end, which is the message's.
func (s *Sealer) End(end int64) int64 {
	if end == s.size {
		return s.Len()
	}
	return s.Offset(end)
}

// Batch is how much plaintext Seal seals (and checks) at a time: whole
// frames, the Writer's batch or one frame if that is larger. A caller
// reading or writing a batch at a time takes the same.
func (s *Sealer) Batch() int { return max(1, batchBytes/s.frameLen) * s.frameLen }

// Offset is where, in the message, the frame that starts at plaintext
// offset off (a multiple of the frame length, at most the plaintext's
// length) begins.
func (s *Sealer) Offset(off int64) int64 {
	return int64(len(s.hb)) + off/int64(s.frameLen)*int64(s.frameLen+frameOverhead)
}

// Close zeroes the Sealer's copy of the data key. Framers made before
// stay usable (they hold the derived keys).
func (s *Sealer) Close() { clear(s.dataKey) }

// Framer seals and checks frames of a Sealer's message; one per
// goroutine. Close returns its buffers.
type Framer struct {
	s *Sealer
	framer
	check *checker
}

// NewFramer returns a Framer. It parses the header back from its bytes
// and derives the key again from the data key, as a reader of the message
// would (ErrVerify if that fails), for its checks (Materials.Verify,
// Check). A Sealer must not be closed before its Framers are made.
func (s *Sealer) NewFramer() (*Framer, error) {
	c, err := newChecker(s.hb, s.dataKey, s.frameLen)
	if err != nil {
		return nil, err
	}
	return &Framer{s: s, framer: framer{aead: s.aead, id: s.id}, check: c}, nil
}

// span checks that pt, at plaintext offset off, is whole frames or runs
// to the end, and that msg is exactly as long as their frames in the
// message (else wrong, wrapped); it reports whether they end it.
func (s *Sealer) span(msg, pt []byte, off int64, what string, wrong error) (final bool, err error) {
	fl := int64(s.frameLen)
	end := off + int64(len(pt))
	final = end == s.size
	if off < 0 || off%fl != 0 || end > s.size || (!final && int64(len(pt))%fl != 0) {
		return false, fmt.Errorf("%w: %s of plaintext %d to %d: not whole frames of %d of a %d-byte message", ErrFormat, what, off, end, fl, s.size)
	}
	if n := s.End(end) - s.Offset(off); int64(len(msg)) != n {
		return false, fmt.Errorf("%w: %s of plaintext %d to %d: %d message bytes, want %d", wrong, what, off, end, len(msg), s.End(end)-s.Offset(off))
	}
	return final, nil
}

// Check reads the frames in msg (the message's bytes from Offset(off)
// on, as Seal wrote them; read back from a file, say) and compares their
// plaintext with pt, which starts at plaintext offset off: ErrVerify on
// any difference, ErrFormat if pt is not whole frames.
func (f *Framer) Check(msg, pt []byte, off int64) error {
	final, err := f.s.span(msg, pt, off, "Check", ErrVerify)
	if err != nil {
		return err
	}
	f.check.r.seq = uint32(off / int64(f.s.frameLen))
	whole := len(pt)
	if final {
		whole -= len(pt) % f.s.frameLen
	}
	return f.check.verify(msg, pt, whole, final)
}

// Seal seals the plaintext pt, which starts at plaintext offset off (a
// multiple of the frame length) and is whole frames or runs to the end of
// the plaintext (then the final frame is sealed too), into dst: the
// message's bytes from Offset(off) on, exactly as many as those frames
// take (the header's are not included). It seals a batch of frames
// (256 KiB) at a time and, with Materials.Verify, reads each batch back
// from dst with a Reader of its own and compares its plaintext with pt
// before sealing the next: ErrVerify on a mismatch (without Verify, Check
// does that for a caller that reads dst back from elsewhere). Seal writes
// nothing outside dst.
func (f *Framer) Seal(dst, pt []byte, off int64) error {
	final, err := f.s.span(dst, pt, off, "Seal", ErrFormat)
	if err != nil {
		return err
	}
	seq := uint32(off/int64(f.s.frameLen)) + 1
	per := f.s.Batch()
	for len(pt) > 0 || final {
		in := pt[:min(per, len(pt))]
		n := len(in) - len(in)%f.s.frameLen // whole frames: regular
		last := final && len(in) == len(pt)
		out := dst[:0:len(dst)] // frames are sealed in place; never beyond dst
		first := seq
		for k := 0; k < n; k += f.s.frameLen {
			out = f.sealFrame(out, in[k:k+f.s.frameLen], seq, false)
			seq++
		}
		if last {
			out = f.sealFrame(out, in[n:], seq, true)
			final = false
		}
		if len(out) > len(dst) || (len(out) > 0 && &out[0] != &dst[0]) {
			return fmt.Errorf("%w: frames %d to %d were sealed outside their place", ErrVerify, first, seq)
		}
		if f.s.verify { // what dst holds, not what the AEAD returned
			f.check.r.seq = first - 1
			if err := f.check.verify(dst[:len(out)], in, n, last); err != nil {
				return err
			}
		}
		dst, pt = dst[len(out):], pt[len(in):]
	}
	return nil
}

// Close returns the Framer's buffers to the pool.
func (f *Framer) Close() {
	if f.check != nil {
		f.check.release()
		f.check = nil
	}
}
