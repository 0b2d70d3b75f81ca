package esdk

import (
	"io"
	"sync"
)

// Frame buffers are pooled by size: a job opens a Writer or a Reader per
// file, and small files would otherwise spend their time allocating and
// clearing them (and large ones feeding the garbage collector). Pooled
// buffers hold plaintext and ciphertext, never key bytes.
// Sizes are rounded up to a multiple of poolUnit, and buffers above
// poolMax are not kept.
var pools sync.Map // int (cap) -> *sync.Pool of *[]byte

const (
	poolUnit = 4 << 10
	poolMax  = 32 << 20
)

// getBuf returns an empty buffer of capacity at least n.
func getBuf(n int) []byte {
	n = (n + poolUnit - 1) / poolUnit * poolUnit
	if p, ok := pools.Load(n); ok {
		if b, ok := p.(*sync.Pool).Get().(*[]byte); ok {
			return (*b)[:0]
		}
	}
	return make([]byte, 0, n)
}

// putBuf returns b (from getBuf) to the pool; the caller must not use it
// afterwards.
func putBuf(b []byte) {
	if cap(b)%poolUnit != 0 || cap(b) > poolMax {
		return
	}
	p, _ := pools.LoadOrStore(cap(b), &sync.Pool{})
	clear(b[:cap(b)]) // frames held plaintext: none outlives its file
	b = b[:0]
	p.(*sync.Pool).Put(&b)
}

// feed is a source over bytes in memory: the body a Writer is about to
// write, read back by its checking Reader without a copy.
type feed struct{ b []byte }

func (f *feed) Read(p []byte) (int, error) {
	if len(f.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, f.b)
	f.b = f.b[n:]
	return n, nil
}

func (f *feed) ReadByte() (byte, error) {
	if len(f.b) == 0 {
		return 0, io.EOF
	}
	c := f.b[0]
	f.b = f.b[1:]
	return c, nil
}

func (f *feed) Peek(n int) ([]byte, error) {
	if n > len(f.b) {
		return f.b, io.EOF
	}
	return f.b[:n], nil
}

func (f *feed) Discard(n int) (int, error) {
	if n > len(f.b) {
		n = len(f.b)
		f.b = nil
		return n, io.EOF
	}
	f.b = f.b[n:]
	return n, nil
}

var _ source = (*feed)(nil)
