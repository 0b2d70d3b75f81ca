package job

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/kmsd/kmsd/batch/esdk"
)

const ioBuf = 256 << 10

// newMaterials asks KMS for a data key under the job's key.
func (j *Job) newMaterials(ctx context.Context) (*encMaterials, error) {
	return j.newMaterialsFor(ctx, j.cfg.Context, j.cfg.Suite)
}

// newMaterialsFor asks KMS for a data key under the job's key for a
// message of the suite with the encryption context ec (to which a signed
// suite adds its public key).
func (j *Job) newMaterialsFor(ctx context.Context, ec map[string]string, suite esdk.Suite) (*encMaterials, error) {
	m := &encMaterials{ec: maps.Clone(ec)}
	if m.ec == nil {
		m.ec = map[string]string{}
	}
	if suite.Signed() {
		sk, err := esdk.NewSigningKey()
		if err != nil {
			return nil, err
		}
		m.sk = sk
		m.ec[esdk.PublicKeyContextKey] = sk.PublicKey()
	}
	err := j.kms.do(ctx, &j.calls.generate, func(k KMS) error {
		pt, blob, arn, err := k.GenerateDataKey(ctx, j.cfg.KeyID, m.ec)
		if err != nil {
			return err
		}
		if len(pt) != esdk.DataKeyLen {
			clear(pt)
			return fmt.Errorf("GenerateDataKey returned a %d-byte data key", len(pt))
		}
		m.dataKey = pt
		m.edk = esdk.DataKey{ProviderID: esdk.ProviderKMS, ProviderInfo: arn, Ciphertext: blob}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("GenerateDataKey: %w", err)
	}
	return m, nil
}

func (j *Job) materials(ctx context.Context, size int64) (*encMaterials, error) {
	return j.enc.take(size, func() (*encMaterials, error) { return j.newMaterials(ctx) })
}

func (m *encMaterials) esdk(frame int, suite esdk.Suite) esdk.Materials {
	return esdk.Materials{Suite: suite, DataKey: m.dataKey, DataKeys: []esdk.DataKey{m.edk}, Context: m.ec, SigningKey: m.sk, FrameLength: frame}
}

// checkContext: every required pair is in the message's context.
func (j *Job) checkContext(h *esdk.Header) error {
	var missing []string
	for k, v := range j.cfg.Context {
		if got, ok := h.Context[k]; !ok || got != v {
			missing = append(missing, k+"="+v)
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return fmt.Errorf("%w: the message's encryption context lacks %s", ErrContext, strings.Join(missing, ", "))
	}
	return nil
}

// keyMatches: does an EDK's provider info (a key ARN) name the key the
// caller asked for (ARN, bare key ID)?
func keyMatches(arn, want string) bool {
	return want == "" || arn == want || strings.HasSuffix(arn, ":key/"+want)
}

func cacheKey(edk esdk.DataKey, ec map[string]string) string {
	var b bytes.Buffer
	b.WriteString(edk.ProviderInfo)
	b.WriteByte(0)
	b.Write(edk.Ciphertext)
	keys := make([]string, 0, len(ec))
	for k := range ec {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "\x00%d:%s%d:%s", len(k), k, len(ec[k]), ec[k])
	}
	return b.String()
}

// openDataKey decrypts the first usable aws-kms data key of h (and, for
// re-wrap, re-wraps it to the job's key). The caller zeroes dk.
// With anyKey, any aws-kms data key is tried (re-wrap and re-encryption:
// --key names the destination).
func (j *Job) openDataKey(ctx context.Context, h *esdk.Header, rewrap, anyKey bool) (dk []byte, newEDK esdk.DataKey, err error) {
	filter := j.cfg.KeyID
	if rewrap || anyKey {
		filter = ""
	}
	var last error
	tried := 0
	for _, edk := range h.DataKeys {
		if edk.ProviderID != esdk.ProviderKMS || !keyMatches(edk.ProviderInfo, filter) {
			continue
		}
		tried++
		ck := cacheKey(edk, h.Context)
		var release func()
		for release == nil {
			if dk, newEDK, ok := j.dec.getEntry(ck); ok && (!rewrap || newEDK.ProviderInfo != "") {
				return dk, newEDK, nil
			}
			var wait <-chan struct{}
			if release, wait = j.dec.lead(ck); release == nil {
				select {
				case <-wait:
				case <-ctx.Done():
					return nil, newEDK, ctx.Err()
				}
			}
		}
		dk, newEDK, err := j.openOne(ctx, h, edk, ck, rewrap)
		release()
		if err != nil {
			if !errors.Is(err, errDecrypt) {
				return nil, esdk.DataKey{}, err
			}
			last = err // another data key may open
			continue
		}
		return dk, newEDK, nil
	}
	if last != nil {
		return nil, esdk.DataKey{}, last
	}
	if filter != "" {
		return nil, esdk.DataKey{}, fmt.Errorf("%w: none of the %d data keys is wrapped by %s", ErrNoDataKey, len(h.DataKeys), filter)
	}
	return nil, esdk.DataKey{}, fmt.Errorf("%w: none of the %d data keys is from %s (tried %d)", ErrNoDataKey, len(h.DataKeys), esdk.ProviderKMS, tried)
}

// errDecrypt marks a failed Decrypt of one data key: the next may work.
var errDecrypt = errors.New("Decrypt")

// openOne decrypts (and for re-wrap re-wraps) one data key and caches it.
func (j *Job) openOne(ctx context.Context, h *esdk.Header, edk esdk.DataKey, ck string, rewrap bool) (dk []byte, newEDK esdk.DataKey, err error) {
	err = j.kms.do(ctx, &j.calls.decrypt, func(k KMS) error {
		pt, arn, err := k.Decrypt(ctx, edk.ProviderInfo, edk.Ciphertext, h.Context)
		if err != nil {
			return err
		}
		if arn != edk.ProviderInfo {
			clear(pt)
			return fmt.Errorf("Decrypt answered for %s, the data key names %s", arn, edk.ProviderInfo)
		}
		dk = pt
		return nil
	})
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return nil, newEDK, err
		}
		return nil, newEDK, fmt.Errorf("%w (%s): %w", errDecrypt, edk.ProviderInfo, err)
	}
	if rewrap {
		err = j.kms.do(ctx, &j.calls.reencrypt, func(k KMS) error {
			blob, arn, err := k.ReEncrypt(ctx, edk.ProviderInfo, edk.Ciphertext, h.Context, j.cfg.KeyID)
			if err != nil {
				return err
			}
			newEDK = esdk.DataKey{ProviderID: esdk.ProviderKMS, ProviderInfo: arn, Ciphertext: blob}
			return nil
		})
		if err != nil {
			clear(dk)
			return nil, newEDK, fmt.Errorf("ReEncrypt (%s to %s): %w", edk.ProviderInfo, j.cfg.KeyID, err)
		}
	}
	j.dec.put(ck, dk, newEDK)
	return dk, newEDK, nil
}

// Buffers are pooled: small files would otherwise spend their time
// allocating and clearing them. Pooled buffers may hold file data, never
// key bytes.
var (
	readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, ioBuf) }}
	writers = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, ioBuf) }}
	chunks  = sync.Pool{New: func() any { b := make([]byte, ioBuf); return &b }}
)

func getReader(r io.Reader) *bufio.Reader {
	br := readers.Get().(*bufio.Reader)
	br.Reset(r)
	return br
}

func putReader(br *bufio.Reader) { br.Reset(nil); readers.Put(br) }

func getWriter(w io.Writer) *bufio.Writer {
	bw := writers.Get().(*bufio.Writer)
	bw.Reset(w)
	return bw
}

func putWriter(bw *bufio.Writer) { bw.Reset(nil); writers.Put(bw) }

// mkdir makes dir once per job.
func (j *Job) mkdir(dir string) error {
	if _, ok := j.dirs.Load(dir); ok {
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	j.dirs.Store(dir, true)
	return nil
}

// file processes one task; it returns the output's size.
func (j *Job) file(ctx context.Context, t task) (int64, error) {
	if err := j.mkdir(filepath.Dir(t.dst)); err != nil {
		return 0, err
	}
	f, err := os.Open(t.src)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	src := &ctxReader{ctx: ctx, r: f} // an interrupt stops a large file part way
	tmp := filepath.Join(filepath.Dir(t.dst), "."+filepath.Base(t.dst)+tmpSuffix)
	out, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return 0, err
	}
	ok := false
	defer func() {
		out.Close()
		if !ok {
			os.Remove(tmp)
		}
	}()
	bw := getWriter(out)
	defer putWriter(bw)
	var verify func(out *os.File) error
	resealed := false
	switch j.cfg.Mode {
	case Encrypt:
		verify, err = j.encryptFile(ctx, f, src, out, t) // whole batches of frames, or mappings: no bufio
	case Decrypt:
		err = j.decryptStream(ctx, src, bw)
	case ReEncrypt:
		verify, err = j.rewrapStream(ctx, src, bw, &resealed)
	}
	if verify != nil {
		defer verify(nil) // zeroes the key copy it holds, whatever happens
	}
	if err == nil {
		err = bw.Flush()
	}
	if err == nil && j.cfg.Sync == SyncFile {
		err = out.Sync()
	}
	if err != nil {
		return 0, err
	}
	n, _ := out.Seek(0, io.SeekCurrent)
	if verify != nil && !j.cfg.NoVerify {
		if _, err := out.Seek(0, io.SeekStart); err != nil {
			return 0, err
		}
		if err := verify(out); err != nil {
			return 0, err
		}
	}
	if fi, err := f.Stat(); err != nil || fi.Size() != t.size || fi.ModTime().UnixNano() != t.mtime {
		return 0, ErrSourceChanged
	}
	if err := out.Close(); err != nil {
		return 0, err
	}
	if j.cfg.Resume {
		err = os.Rename(tmp, t.dst) // a finished output not yet journaled is done again
	} else {
		err = renameNoReplace(tmp, t.dst)
	}
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return 0, fmt.Errorf("%w: %s (remove it, or --resume a job)", ErrExists, t.dst)
		}
		return 0, err
	}
	ok = true
	if resealed {
		j.resealed.Add(1)
	}
	return n, nil
}

// encryptStream writes one message of src to w. Unless NoVerify, the
// esdk.Writer opens every frame it seals again before writing it and
// compares the plaintext with the bytes read from src (Materials.Verify);
// when w is a file, each write is read back from the file and compared
// with the bytes written, and the returned verify checks that the file
// ends where they did. Together: the file decrypts to what was read from
// the source, every byte compared, none through a checksum.
func (j *Job) encryptStream(ctx context.Context, src io.Reader, w io.Writer, size int64) (func(*os.File) error, error) {
	m, err := j.materials(ctx, size)
	if err != nil {
		return nil, err
	}
	defer clear(m.dataKey)
	return j.sealStream(ctx, m, src, w, size)
}

// encryptFile encrypts the regular file f (read through src) into out,
// an empty temporary file: at known positions (sealPositional: windows
// of frames, pread and pwrite or, with Config.Mmap, mappings) when the
// file is at least posMin bytes and the suite unsigned; else as a stream
// of writes.
func (j *Job) encryptFile(ctx context.Context, f *os.File, src io.Reader, out *os.File, t task) (func(*os.File) error, error) {
	m, err := j.materials(ctx, t.size)
	if err != nil {
		return nil, err
	}
	defer clear(m.dataKey)
	if t.size < j.posMin || j.cfg.Suite.Signed() {
		return j.sealStream(ctx, m, src, out, t.size)
	}
	if fi, err := f.Stat(); err != nil || fi.Size() != t.size {
		return nil, ErrSourceChanged // it would be read (or mapped) past its end
	}
	n, err := j.sealPositional(ctx, m, f, out, t.size)
	return func(out *os.File) error { return checkSize(out, n, j.cfg.NoVerify) }, err
}

// sealStream writes one message of src to w with the materials m (see
// encryptStream).
func (j *Job) sealStream(ctx context.Context, m *encMaterials, src io.Reader, w io.Writer, size int64) (func(*os.File) error, error) {
	em := m.esdk(j.cfg.FrameLength, j.cfg.Suite)
	em.Verify = !j.cfg.NoVerify
	em.Parallel = size < 0 || size >= parallelMin
	verify := func(*os.File) error { return nil }
	if f, ok := w.(*os.File); ok {
		off, err := f.Seek(0, io.SeekCurrent)
		if err != nil {
			return nil, err
		}
		cw := &checkedWriter{f: f, off: off, noCheck: j.cfg.NoVerify}
		w, verify = cw, cw.size
	}
	ew, err := esdk.NewWriter(w, em)
	if err != nil {
		return nil, err
	}
	defer ew.Abort() // after a failure: no final frame, and the second stage ends
	if _, err = ew.ReadFrom(src); err != nil {
		return nil, verifyErr(err)
	}
	if err := ew.Close(); err != nil {
		return nil, verifyErr(err)
	}
	return verify, nil
}

// parallelMin is the size from which a file (and any stream) is sealed in
// two stages on two goroutines (esdk Materials.Parallel): reading and
// sealing, and checking and writing. One large file then uses two cores;
// smaller files get theirs from the workers.
const parallelMin = 4 << 20

// posMin is the size from which a file is encrypted at known positions
// (sealPositional) rather than as a stream of writes
// (BenchmarkEncryptFile).
const posMin = 64 << 10

// verifyErr: a frame that did not read back is a failed verification.
func verifyErr(err error) error {
	if errors.Is(err, esdk.ErrVerify) {
		return fmt.Errorf("%w: %v", ErrVerify, err)
	}
	return err
}

// ctxReader fails reads once ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// checkedWriter writes to f (at its current offset, from where it starts)
// and, unless off, reads every write back from where it went (pread at
// the offset it counts itself) and compares it with the bytes written.
type checkedWriter struct {
	f        *os.File
	off, end int64 // start, and bytes written through it
	noCheck  bool
}

func (c *checkedWriter) Write(p []byte) (int, error) {
	n, err := c.f.Write(p)
	if err == nil && !c.noCheck {
		err = c.readBack(p[:n], c.off+c.end)
	}
	c.end += int64(n)
	return n, err
}

func (c *checkedWriter) readBack(p []byte, at int64) error {
	bp := chunks.Get().(*[]byte)
	defer chunks.Put(bp)
	for len(p) > 0 {
		k, err := c.f.ReadAt((*bp)[:min(len(p), len(*bp))], at)
		if err != nil && !(err == io.EOF && k > 0) {
			return fmt.Errorf("%w: reading back %d bytes at %d: %v", ErrVerify, len(p), at, err)
		}
		if !bytes.Equal((*bp)[:k], p[:k]) {
			return fmt.Errorf("%w: the output's bytes at %d to %d are not those written", ErrVerify, at, at+int64(k))
		}
		p, at = p[k:], at+int64(k)
	}
	return nil
}

// size checks that the file ends where the writes did (nil: nothing to
// check).
func (c *checkedWriter) size(out *os.File) error { return checkSize(out, c.off+c.end, c.noCheck) }

// checkSize checks that out is n bytes long (nil or noCheck: nothing to
// check).
func checkSize(out *os.File, n int64, noCheck bool) error {
	if out == nil || noCheck {
		return nil
	}
	fi, err := out.Stat()
	if err != nil {
		return err
	}
	if fi.Size() != n {
		return fmt.Errorf("%w: the output is %d bytes, %d were written", ErrVerify, fi.Size(), n)
	}
	return nil
}

// verifier returns a check of a written message: it decrypts out (from
// its start) with (a copy of) dataKey. Called with nil it only zeroes its
// copy of the key; it is good for one call.
func (j *Job) verifier(dataKey []byte) func(*os.File) error {
	dk := bytes.Clone(dataKey)
	return func(out *os.File) error {
		defer clear(dk)
		if out == nil {
			return nil
		}
		br := getReader(out)
		defer putReader(br)
		h, err := esdk.ReadHeader(br, j.cfg.Limits)
		if err != nil {
			return fmt.Errorf("%w: %v", ErrVerify, err)
		}
		r, err := esdk.NewReader(br, h, dk, j.cfg.Limits)
		if err != nil {
			return fmt.Errorf("%w: %v", ErrVerify, err)
		}
		if _, err := r.WriteTo(io.Discard); err != nil {
			return fmt.Errorf("%w: %v", ErrVerify, err)
		}
		return nil
	}
}

// decryptStream writes src's plaintext to w. Only authenticated frames
// are written, and it fails unless the whole message (every frame, the
// signature, the end) verifies.
func (j *Job) decryptStream(ctx context.Context, src io.Reader, w io.Writer) error {
	br := getReader(src)
	defer putReader(br)
	h, err := esdk.ReadHeader(br, j.cfg.Limits)
	if err != nil {
		return err
	}
	if err := j.checkContext(h); err != nil {
		return err
	}
	dk, _, err := j.openDataKey(ctx, h, false, false)
	if err != nil {
		return err
	}
	defer clear(dk)
	r, err := esdk.NewReader(br, h, dk, j.cfg.Limits)
	if err != nil {
		return err
	}
	_, err = r.WriteTo(w)
	return err
}

// rewrapStream writes src with its data keys replaced by one wrapped by
// the job's key; the body is copied unchanged. A signed message is
// re-encrypted instead (reencryptSigned), and *resealed set.
func (j *Job) rewrapStream(ctx context.Context, src io.Reader, w io.Writer, resealed *bool) (func(*os.File) error, error) {
	br := getReader(src)
	defer putReader(br)
	h, err := esdk.ReadHeader(br, j.cfg.Limits)
	if err != nil {
		return nil, err
	}
	if err := j.checkContext(h); err != nil {
		return nil, err
	}
	if h.Suite.Signed() || j.cfg.Reseal {
		*resealed = true
		return j.reseal(ctx, br, h, w)
	}
	dk, newEDK, err := j.openDataKey(ctx, h, true, true)
	if err != nil {
		return nil, err
	}
	defer clear(dk)
	nh, err := h.WithDataKeys(dk, []esdk.DataKey{newEDK})
	if err != nil {
		return nil, err
	}
	if _, err := w.Write(nh.AppendTo(nil)); err != nil {
		return nil, err
	}
	if _, err := io.Copy(w, br); err != nil {
		return nil, err
	}
	return j.verifier(dk), nil
}

// reseal re-wraps a message by re-encrypting it: the only way for a
// signed message (its signature covers the header and its signing key is
// gone, so the data keys cannot be swapped), and for any message with
// Config.Reseal (a header-only re-wrap of a version 2 message leaves two
// header tags under one key and nonce, see esdk Header.WithDataKeys). It
// is decrypted (every frame authenticated, then the signature) and
// encrypted again under a new data key of the job's key, with a new
// message ID: the same encryption context (a signed message gets a new
// aws-crypto-public-key), the same frame length (non-framed: the
// default), suite 0x0578 if it was signed, else 0x0478 (a version 1
// message comes out key-committing). The output is only renamed once the
// source verified to its end, and the returned check decrypts it with the
// new data key.
func (j *Job) reseal(ctx context.Context, br *bufio.Reader, h *esdk.Header, w io.Writer) (func(*os.File) error, error) {
	dk, _, err := j.openDataKey(ctx, h, false, true)
	if err != nil {
		return nil, err
	}
	defer clear(dk)
	r, err := esdk.NewReader(br, h, dk, j.cfg.Limits)
	if err != nil {
		return nil, err
	}
	ec := maps.Clone(h.Context)
	suite := esdk.SuiteCommitKey
	if h.Suite.Signed() {
		delete(ec, esdk.PublicKeyContextKey)
		suite = esdk.SuiteCommitKeyECDSAP384
	}
	m, err := j.newMaterialsFor(ctx, ec, suite)
	if err != nil {
		return nil, err
	}
	defer clear(m.dataKey)
	frame := int(h.FrameLength)
	if frame == 0 {
		frame = esdk.DefaultFrameLength
	}
	em := m.esdk(frame, suite)
	em.Verify = !j.cfg.NoVerify
	ew, err := esdk.NewWriter(w, em)
	if err != nil {
		return nil, err
	}
	defer ew.Abort()
	if _, err := ew.ReadFrom(r); err != nil {
		return nil, verifyErr(err)
	}
	if err := ew.Close(); err != nil {
		return nil, verifyErr(err)
	}
	return j.verifier(m.dataKey), nil
}
