package job

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
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
	m := &encMaterials{ec: maps.Clone(j.cfg.Context)}
	if m.ec == nil {
		m.ec = map[string]string{}
	}
	if j.cfg.Suite.Signed() {
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
func (j *Job) openDataKey(ctx context.Context, h *esdk.Header, rewrap bool) (dk []byte, newEDK esdk.DataKey, err error) {
	filter := j.cfg.KeyID
	if rewrap {
		filter = "" // --key names the destination
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
	switch j.cfg.Mode {
	case Encrypt:
		var w io.Writer = bw
		if j.cfg.FrameLength >= directIO {
			w = out // whole frames: no copy through bw
		}
		verify, err = j.encryptStream(ctx, src, w, t.size)
	case Decrypt:
		err = j.decryptStream(ctx, src, bw)
	case ReEncrypt:
		verify, err = j.rewrapStream(ctx, src, bw)
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
	return n, nil
}

// encryptStream writes one message of src to w; the returned verify
// reads the output back (by its temporary name) and compares it with the
// source, using the data key it was written with.
func (j *Job) encryptStream(ctx context.Context, src io.Reader, w io.Writer, size int64) (func(*os.File) error, error) {
	m, err := j.materials(ctx, size)
	if err != nil {
		return nil, err
	}
	defer clear(m.dataKey)
	ew, err := esdk.NewWriter(w, m.esdk(j.cfg.FrameLength, j.cfg.Suite))
	if err != nil {
		return nil, err
	}
	cr := &crcReader{r: src}
	if j.cfg.FrameLength < directIO {
		sr := getReader(src)
		defer putReader(sr)
		cr.r = sr
	}
	if _, err = ew.ReadFrom(cr); err != nil {
		return nil, err
	}
	if err := ew.Close(); err != nil {
		return nil, err
	}
	return j.verifier(m.dataKey, &crcWriter{want: cr.crc, wantN: cr.n}), nil
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

// directIO is the frame length from which frames are read from and
// written to files directly, without a copy through a buffer.
const directIO = 32 << 10

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// crcReader passes reads through, keeping the CRC-32C and the length of
// what it read: the plaintext an output must decrypt back to.
type crcReader struct {
	r   io.Reader
	crc uint32
	n   int64
}

func (c *crcReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.crc = crc32.Update(c.crc, castagnoli, p[:n])
	c.n += int64(n)
	return n, err
}

// crcWriter checks that what is written has the CRC-32C and length of
// the source. (The output's GCM tags already prove that it decrypts to
// what was sealed; this proves that what was sealed is what was read.)
type crcWriter struct {
	want, crc uint32
	wantN, n  int64
}

func (c *crcWriter) Write(p []byte) (int, error) {
	c.crc = crc32.Update(c.crc, castagnoli, p)
	c.n += int64(len(p))
	return len(p), nil
}

func (c *crcWriter) check() error {
	if c.n != c.wantN || c.crc != c.want {
		return fmt.Errorf("%w: the output decrypts to %d bytes (CRC-32C %08x), the source read was %d bytes (%08x)", ErrVerify, c.n, c.crc, c.wantN, c.want)
	}
	return nil
}

// verifier returns a check of a written message: it decrypts out (from
// its start) with (a copy of) dataKey and, when want is set, checks the
// plaintext's length and CRC-32C against the source's. Called with nil
// it only zeroes its copy of the key; it is good for one call.
func (j *Job) verifier(dataKey []byte, want *crcWriter) func(*os.File) error {
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
		var w io.Writer = io.Discard
		if want != nil {
			w = want
		}
		if _, err := r.WriteTo(w); err != nil {
			return fmt.Errorf("%w: %v", ErrVerify, err)
		}
		if want != nil {
			return want.check()
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
	dk, _, err := j.openDataKey(ctx, h, false)
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
// the job's key; the body is copied unchanged.
func (j *Job) rewrapStream(ctx context.Context, src io.Reader, w io.Writer) (func(*os.File) error, error) {
	br := getReader(src)
	defer putReader(br)
	h, err := esdk.ReadHeader(br, j.cfg.Limits)
	if err != nil {
		return nil, err
	}
	if err := j.checkContext(h); err != nil {
		return nil, err
	}
	if h.Suite.Signed() {
		return nil, fmt.Errorf("%w: a signed message (%v) cannot be re-wrapped: its signature covers the header; decrypt and encrypt it again", esdk.ErrUnsupported, h.Suite)
	}
	dk, newEDK, err := j.openDataKey(ctx, h, true)
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
	return j.verifier(dk, nil), nil
}
