package job

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/kmsd/kmsd/batch/esdk"
)

// Encrypting a regular file through memory mappings: an unsigned
// message's length is known before anything is sealed (esdk.Sealer), so
// the output gets its exact size up front (fallocate(2): a full disk is
// an error here, not a SIGBUS later) and frames are sealed from the
// source's page-cache pages straight into the output's, a window at a
// time: no read(2) copy, no write(2) copy, no read-back. With Verify,
// each batch of frames is opened again from the output's mapping, which
// is the file's page cache, and compared with the source's mapping.

// mapWindow is how much plaintext (rounded down to whole frames, at
// least one) a goroutine maps and seals at a time, with the matching
// output; both are unmapped before the next window. Two windows in flight
// (mapWorkers) keep a file's mapped pages to about 4 x mapWindow.
const mapWindow = 8 << 20

// mapWorkers is how many goroutines seal one file's windows once it has
// more than one: a large file uses two cores, as the write path's two
// stages do.
const mapWorkers = 2

// errNoMap: the output's file system cannot reserve space (fallocate is
// not supported): the caller encrypts through the write path.
var errNoMap = errors.New("job: no fallocate on the output's file system")

// sealMapped encrypts src (size bytes) into out (an empty temporary file)
// through mappings, with the materials m, and returns the message's
// length. errNoMap means nothing was written and the write path should
// be used.
func (j *Job) sealMapped(ctx context.Context, m *encMaterials, src, out *os.File, size int64) (int64, error) {
	em := m.esdk(j.cfg.FrameLength, j.cfg.Suite)
	em.Verify = !j.cfg.NoVerify
	s, err := esdk.NewSealer(em, size)
	if err != nil {
		return 0, err
	}
	defer s.Close()
	total := s.Len()
	switch err := unix.Fallocate(int(out.Fd()), 0, 0, total); err {
	case nil:
	case unix.EOPNOTSUPP, unix.ENOSYS:
		return 0, errNoMap
	default:
		return 0, fmt.Errorf("reserving %d bytes for the output: %w", total, err)
	}
	win := int64(max(1, mapWindow/s.FrameLength()) * s.FrameLength())
	windows := (size + win - 1) / win
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
			if err := j.sealWindow(s, f, src, out, i*win, min((i+1)*win, size), size); err != nil {
				return err
			}
		}
		return nil
	}
	var wg sync.WaitGroup
	errs := make([]error, min(windows, mapWorkers))
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
	if _, err := out.Seek(total, 0); err != nil { // the offset says how much was written, as on the write path
		return 0, err
	}
	return total, nil
}

// sealWindow maps the plaintext [off, end) of src and its frames' place
// in out (from 0 for the first window, which carries the header) and
// seals them. A fault on either mapping (the source truncated while
// mapped, the output's storage failing) is an error, not a crash.
func (j *Job) sealWindow(s *esdk.Sealer, f *esdk.Framer, src, out *os.File, off, end, size int64) (err error) {
	from, to := s.Offset(off), s.Offset(end)
	if off == 0 {
		from = 0
	}
	if end == size {
		to = s.Len()
	}
	srcMap, pt, err := mapRange(src, off, end-off, unix.PROT_READ, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return fmt.Errorf("mapping the source: %w", err)
	}
	defer unix.Munmap(srcMap)
	dstMap, dst, err := mapRange(out, from, to-from, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return fmt.Errorf("mapping the output: %w", err)
	}
	defer unix.Munmap(dstMap)
	// One call faults the window's pages in for writing, instead of a
	// fault per page (kernel 5.14 on; EINVAL before, and then the faults
	// come one by one).
	if err := unix.Madvise(dstMap, unix.MADV_POPULATE_WRITE); err != nil && err != unix.EINVAL {
		return fmt.Errorf("preparing the output's pages: %w", err)
	}
	if j.onMap != nil {
		j.onMap(off)
	}
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = mapFault(r, srcMap, dstMap, off, from)
		}
	}()
	if off == 0 {
		dst = dst[copy(dst, s.Header()):]
	}
	return verifyErr(f.Seal(dst, pt, off))
}

// mapFault turns a fault on one of a window's mappings (runtime/debug
// SetPanicOnFault) into the file's error; any other panic goes on.
func mapFault(r any, srcMap, dstMap []byte, srcOff, dstOff int64) error {
	fault, ok := r.(interface{ Addr() uintptr })
	if !ok {
		panic(r)
	}
	in := func(b []byte) (int64, bool) {
		base := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
		a := fault.Addr()
		return int64(a - base), a >= base && a < base+uintptr(len(b))
	}
	if at, ok := in(srcMap); ok {
		return fmt.Errorf("%w: reading its mapping failed near byte %d (truncated while it was encrypted?)", ErrSourceChanged, srcOff&^pageMask+at)
	}
	if at, ok := in(dstMap); ok {
		return fmt.Errorf("job: writing the output through its mapping failed near byte %d (its storage failed, or the temporary file was truncated)", dstOff&^pageMask+at)
	}
	panic(r)
}

var pageMask = int64(os.Getpagesize() - 1)

// mapRange maps n > 0 bytes of f from off (any offset: the mapping
// starts at the page before) and returns the mapping, to unmap, and the
// n bytes.
func mapRange(f *os.File, off, n int64, prot, flags int) (mapping, b []byte, err error) {
	base := off &^ pageMask
	mapping, err = unix.Mmap(int(f.Fd()), base, int(off-base+n), prot, flags)
	if err != nil {
		return nil, nil, err
	}
	return mapping, mapping[off-base : off-base+n], nil
}
