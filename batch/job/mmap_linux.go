package job

import (
	"fmt"
	"os"
	"runtime/debug"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/kmsd/kmsd/batch/esdk"
)

// Encrypting through memory mappings (Config.Mmap): the output gets its
// exact size up front (fallocate(2): a full disk is an error here, not a
// SIGBUS later) and frames are sealed from the source's page-cache pages
// straight into the output's, a window at a time: no read(2) copy, no
// write(2) copy, no read-back. With verification, each batch of frames
// is opened again from the output's mapping, which is the file's page
// cache, and compared with the source's mapping.
//
// It does not pay on a virtual machine whose hypervisor shadows the
// guest's page tables (this project's machines: the first touch of each
// newly mapped page costs about 6 us, twice what write(2) spends on it),
// hence opt-in; see README "Bulk jobs".

// reserve gives out its final size, allocated (errNoMap where the file
// system cannot).
func reserve(out *os.File, n int64) error {
	switch err := unix.Fallocate(int(out.Fd()), 0, 0, n); err {
	case nil:
		return nil
	case unix.EOPNOTSUPP, unix.ENOSYS:
		return errNoMap
	default:
		return fmt.Errorf("reserving %d bytes for the output: %w", n, err)
	}
}

// mappedWindow seals windows through mappings of src and out.
func (j *Job) mappedWindow(s *esdk.Sealer, src, out *os.File) window {
	return func(f *esdk.Framer, off, end int64) error { return j.sealMapped(s, f, src, out, off, end) }
}

// sealMapped maps the plaintext [off, end) of src and its frames' place
// in out (from 0 for the first window, which carries the header) and
// seals them. A fault on either mapping (the source truncated while
// mapped, the output's storage failing) is an error, not a crash.
func (j *Job) sealMapped(s *esdk.Sealer, f *esdk.Framer, src, out *os.File, off, end int64) (err error) {
	from, to := s.Offset(off), s.End(end)
	if off == 0 {
		from = 0
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
	if j.onWindow != nil {
		j.onWindow(off)
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
	// A batch at a time: sealed into the mapping, then opened from it
	// while it is still in the CPU's cache.
	per := s.Batch()
	for p := 0; ; p += per {
		q := min(p+per, len(pt))
		a, b := s.Offset(off+int64(p))-s.Offset(off), s.End(off+int64(q))-s.Offset(off)
		if err := f.Seal(dst[a:b], pt[p:q], off+int64(p)); err != nil {
			return verifyErr(err)
		}
		if !j.cfg.NoVerify {
			if err := f.Check(dst[a:b], pt[p:q], off+int64(p)); err != nil {
				return verifyErr(err)
			}
		}
		if q == len(pt) {
			return nil
		}
	}
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
