package job

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"

	"github.com/kmsd/kmsd/batch/esdk"
)

// Encrypting a regular file at known positions: an unsigned message's
// layout is fixed once its plaintext length is known (esdk.Sealer), so
// the file is cut into windows of whole frames that goroutines seal
// independently, each writing its frames at their offset. A window is
// read (pread), sealed and written (pwrite) a batch of frames (256 KiB)
// at a time; with verification each batch is then read back from the
// file (pread) and opened from those bytes, its plaintext compared with
// the source's bytes (esdk Framer.Check): the file holds bytes that
// decrypt to the source, with one read-back and no separate compare of
// ciphertext. With Config.Mmap (Linux) windows are sealed through
// memory mappings instead (mmap_linux.go).

// ioWindow is how much plaintext (rounded down to whole frames, at least
// one) a goroutine takes at a time on the pread/pwrite path: small
// enough that a file from parallelMin is split across both goroutines.
const ioWindow = 1 << 20

// mapWindow is how much plaintext (rounded down to whole frames, at
// least one) a goroutine maps and seals at a time, with the matching
// output; both are unmapped before the next window. Two windows in flight
// keep a file's mapped pages to about 4 x mapWindow.
const mapWindow = 8 << 20

// posWorkers is how many goroutines seal one file's windows once it is
// at least parallelMin bytes and has more than one: a large file uses two
// cores, each doing the whole work for its windows.
const posWorkers = 2

// window seals the plaintext [off, end) of a message of size bytes with
// the Framer f (the first window also writes the header).
type window func(f *esdk.Framer, off, end int64) error

// sealPositional encrypts src (size bytes) into out (an empty temporary
// file) with the materials m and returns the message's length.
func (j *Job) sealPositional(ctx context.Context, m *encMaterials, src, out *os.File, size int64) (int64, error) {
	// Both window kinds check with Framer.Check, from what the file holds
	// (its mapping, or what reads back), not Materials.Verify.
	s, err := esdk.NewSealer(m.esdk(j.cfg.FrameLength, j.cfg.Suite), size)
	if err != nil {
		return 0, err
	}
	defer s.Close()
	// The output's pages are allocated up front, in one call: a full disk
	// fails here, and on tmpfs the two goroutines' writes then copy into
	// pages that exist instead of allocating them under the file's lock,
	// which they would take turns at (and spin on).
	reserved := reserve(out, s.Len())
	if reserved != nil && !errors.Is(reserved, errNoMap) {
		return 0, reserved
	}
	var seal window
	win := int64(ioWindow)
	if j.cfg.Mmap && reserved == nil {
		seal, win = j.mappedWindow(s, src, out), mapWindow
	} else {
		seal = j.preadWindow(s, src, out, size)
	}
	fl := int64(s.FrameLength())
	win = max(1, win/fl) * fl
	windows := max(1, (size+win-1)/win)
	workers := int64(1)
	if size >= parallelMin {
		workers = min(windows, posWorkers)
	}
	var next atomic.Int64
	var failed atomic.Bool
	work := func() error {
		f, err := s.NewFramer()
		if err != nil {
			return verifyErr(err)
		}
		defer f.Close()
		for i := next.Add(1) - 1; i < windows && !failed.Load(); i = next.Add(1) - 1 {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := seal(f, i*win, min((i+1)*win, size)); err != nil {
				return err
			}
		}
		return nil
	}
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for k := 1; k < len(errs); k++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if errs[k] = work(); errs[k] != nil {
				failed.Store(true)
			}
		}()
	}
	if errs[0] = work(); errs[0] != nil {
		failed.Store(true)
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return 0, err
	}
	if _, err := out.Seek(s.Len(), io.SeekStart); err != nil { // the offset says how much was written, as on the write path
		return 0, err
	}
	return s.Len(), nil
}

// preadWindow seals windows with pread and pwrite, a batch at a time, and
// (unless NoVerify) checks each batch from what reads back from out.
func (j *Job) preadWindow(s *esdk.Sealer, src, out *os.File, size int64) window {
	per := s.Batch()
	outLen := int(s.Offset(int64(per))-s.Offset(0)) + len(s.Header()) + 64 // room for the header and a final frame
	return func(f *esdk.Framer, off, end int64) error {
		if j.onWindow != nil {
			j.onWindow(off)
		}
		bufs := getBufs(per, outLen)
		defer putBufs(bufs)
		for {
			pt := bufs.in[:min(int64(per), end-off)]
			if k, err := src.ReadAt(pt, off); k < len(pt) {
				if err == io.EOF {
					return fmt.Errorf("%w: it ends at byte %d, not %d", ErrSourceChanged, off+int64(k), size)
				}
				return fmt.Errorf("reading the source at %d: %w", off, err)
			}
			from, to := s.Offset(off), s.End(off+int64(len(pt)))
			hdr := 0
			if off == 0 {
				from, hdr = 0, copy(bufs.out, s.Header())
			}
			ct := bufs.out[:to-from]
			if err := f.Seal(ct[hdr:], pt, off); err != nil {
				return verifyErr(err)
			}
			if _, err := out.WriteAt(ct, from); err != nil {
				return err
			}
			if !j.cfg.NoVerify {
				back := bufs.back[:len(ct)]
				if k, err := out.ReadAt(back, from); k < len(back) {
					return fmt.Errorf("%w: reading back %d bytes at %d: %v", ErrVerify, len(back), from, err)
				}
				if !bytes.Equal(back[:hdr], s.Header()[:hdr]) {
					return fmt.Errorf("%w: the output's header is not the one written", ErrVerify)
				}
				if err := f.Check(back[hdr:], pt, off); err != nil {
					return verifyErr(err)
				}
			}
			if off += int64(len(pt)); off >= end {
				return nil
			}
		}
	}
}

// errNoMap: the output's file system cannot reserve space (no
// fallocate): windows are not mapped (a SIGBUS would come where a write
// fails) but written with pwrite.
var errNoMap = errors.New("job: no fallocate on the output's file system")

// ioBufs are one goroutine's buffers on the pread/pwrite path: the
// plaintext, the sealed frames and what reads back. Pooled: they may
// hold file data, never key bytes.
type ioBufs struct{ in, out, back []byte }

var ioBufPool sync.Pool // *ioBufs

func getBufs(in, out int) *ioBufs {
	b, _ := ioBufPool.Get().(*ioBufs)
	if b == nil || cap(b.in) < in || cap(b.out) < out {
		b = &ioBufs{in: make([]byte, in), out: make([]byte, out), back: make([]byte, out)}
	}
	b.in, b.out, b.back = b.in[:cap(b.in)], b.out[:cap(b.out)], b.back[:cap(b.back)]
	return b
}

func putBufs(b *ioBufs) { ioBufPool.Put(b) }
