package esdk

import (
	"bufio"
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"testing"
	"testing/iotest"
)

const testARN = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"

func testMaterials(t testing.TB, suite Suite, frame int) Materials {
	t.Helper()
	m := Materials{
		Suite:       suite,
		DataKey:     bytes.Repeat([]byte{7}, DataKeyLen),
		DataKeys:    []DataKey{{ProviderID: ProviderKMS, ProviderInfo: testARN, Ciphertext: []byte("wrapped-data-key")}},
		Context:     map[string]string{"tenant": "a", "purpose": "test", "ünï": "çødé"},
		FrameLength: frame,
	}
	if suite.Signed() {
		sk, err := NewSigningKey()
		if err != nil {
			t.Fatal(err)
		}
		m.SigningKey = sk
		m.Context[PublicKeyContextKey] = sk.PublicKey()
	}
	return m
}

func encrypt(t testing.TB, m Materials, pt []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	w, err := NewWriter(&out, m)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(pt); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func decrypt(msg, dataKey []byte) ([]byte, *Header, error) {
	br := bufio.NewReader(bytes.NewReader(msg))
	h, err := ReadHeader(br, Limits{})
	if err != nil {
		return nil, nil, err
	}
	r, err := NewReader(br, h, dataKey, Limits{})
	if err != nil {
		return nil, h, err
	}
	pt, err := io.ReadAll(r)
	return pt, h, err
}

func TestRoundTrip(t *testing.T) {
	for _, suite := range []Suite{SuiteCommitKey, SuiteCommitKeyECDSAP384} {
		for _, size := range []int{0, 1, 99, 100, 101, 250, 300, 4096} {
			t.Run(fmt.Sprintf("%v/%d", suite, size), func(t *testing.T) {
				m := testMaterials(t, suite, 100)
				pt := make([]byte, size)
				rand.Read(pt)
				msg := encrypt(t, m, pt)
				got, h, err := decrypt(msg, m.DataKey)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, pt) {
					t.Fatal("plaintext differs")
				}
				if h.Suite != suite || h.FrameLength != 100 || h.Context["ünï"] != "çødé" || len(h.DataKeys) != 1 ||
					h.DataKeys[0].ProviderInfo != testARN || string(h.DataKeys[0].Ciphertext) != "wrapped-data-key" {
					t.Fatalf("header %+v", h)
				}
			})
		}
	}
}

// TestReadFrom: the io.ReaderFrom path writes the same plaintext (possibly
// with an empty final frame, which the format allows).
func TestReadFrom(t *testing.T) {
	m := testMaterials(t, SuiteCommitKey, 64)
	pt := make([]byte, 640)
	rand.Read(pt)
	var out bytes.Buffer
	w, err := NewWriter(&out, m)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(w, io.MultiReader(bytes.NewReader(pt[:10]), bytes.NewReader(pt[10:]))); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	got, _, err := decrypt(out.Bytes(), m.DataKey)
	if err != nil || !bytes.Equal(got, pt) {
		t.Fatalf("err %v, equal %v", err, bytes.Equal(got, pt))
	}
}

// TestEveryByteAuthenticated flips each byte of a small message (both
// suites): every flip must fail with an error, never return plaintext.
func TestEveryByteAuthenticated(t *testing.T) {
	for _, suite := range []Suite{SuiteCommitKey, SuiteCommitKeyECDSAP384} {
		m := testMaterials(t, suite, 16)
		msg := encrypt(t, m, []byte("forty bytes of plaintext in three frames"))
		for i := range msg {
			bad := bytes.Clone(msg)
			bad[i] ^= 0x01
			if _, _, err := decrypt(bad, m.DataKey); err == nil {
				t.Fatalf("%v: flipping byte %d of %d went unnoticed", suite, i, len(msg))
			}
		}
		for n := 0; n < len(msg); n++ {
			if _, _, err := decrypt(msg[:n], m.DataKey); err == nil {
				t.Fatalf("%v: truncation to %d of %d bytes went unnoticed", suite, n, len(msg))
			}
		}
		if _, _, err := decrypt(append(bytes.Clone(msg), 0), m.DataKey); !errors.Is(err, ErrFormat) {
			t.Fatalf("%v: trailing byte: %v", suite, err)
		}
	}
}

func TestWrongDataKey(t *testing.T) {
	m := testMaterials(t, SuiteCommitKey, 0)
	msg := encrypt(t, m, []byte("x"))
	_, _, err := decrypt(msg, bytes.Repeat([]byte{8}, DataKeyLen))
	if !errors.Is(err, ErrAuth) {
		t.Fatalf("err %v, want ErrAuth", err)
	}
}

// TestSignatureWithheldPlaintext: a bad signature fails the last Read, and
// the final frame's plaintext is not handed out.
func TestSignatureWithheldPlaintext(t *testing.T) {
	m := testMaterials(t, SuiteCommitKeyECDSAP384, 0)
	msg := encrypt(t, m, []byte("secret"))
	msg[len(msg)-1] ^= 1
	br := bufio.NewReader(bytes.NewReader(msg))
	h, err := ReadHeader(br, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewReader(br, h, m.DataKey, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 100)
	for i := 0; i < 3; i++ {
		n, err := r.Read(buf)
		if n != 0 || !errors.Is(err, ErrAuth) {
			t.Fatalf("read %d: n=%d err=%v", i, n, err)
		}
	}
}

// TestWithDataKeys re-wraps a message: new data keys, same body, still
// decrypts; a signed message refuses.
func TestWithDataKeys(t *testing.T) {
	m := testMaterials(t, SuiteCommitKey, 32)
	pt := bytes.Repeat([]byte("abc"), 50)
	msg := encrypt(t, m, pt)
	br := bufio.NewReader(bytes.NewReader(msg))
	h, err := ReadHeader(br, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(br)
	keys := []DataKey{{ProviderID: ProviderKMS, ProviderInfo: "arn:new", Ciphertext: bytes.Repeat([]byte{1}, 200)}, {ProviderID: "other", ProviderInfo: "x", Ciphertext: []byte{2}}}
	nh, err := h.WithDataKeys(m.DataKey, keys)
	if err != nil {
		t.Fatal(err)
	}
	got, gh, err := decrypt(append(nh.AppendTo(nil), body...), m.DataKey)
	if err != nil || !bytes.Equal(got, pt) {
		t.Fatalf("err %v", err)
	}
	if len(gh.DataKeys) != 2 || gh.DataKeys[0].ProviderInfo != "arn:new" || gh.Context["tenant"] != "a" {
		t.Fatalf("header %+v", gh)
	}
	if _, err := h.WithDataKeys(bytes.Repeat([]byte{9}, 32), keys); !errors.Is(err, ErrAuth) {
		t.Fatalf("wrong key: %v", err)
	}
	sm := testMaterials(t, SuiteCommitKeyECDSAP384, 0)
	smsg := encrypt(t, sm, pt)
	sh, err := ReadHeader(bufio.NewReader(bytes.NewReader(smsg)), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sh.WithDataKeys(sm.DataKey, keys); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("signed: %v", err)
	}
}

// TestHeaderLayout checks the serialized header field by field against
// the specification's layout (version 2).
func TestHeaderLayout(t *testing.T) {
	m := Materials{Suite: SuiteCommitKey, DataKey: make([]byte, 32),
		DataKeys: []DataKey{{ProviderID: "aws-kms", ProviderInfo: "arn", Ciphertext: []byte{0xAA}}},
		Context:  map[string]string{"b": "2", "a": "1"}, FrameLength: 4096}
	var out bytes.Buffer
	w, err := NewWriter(&out, m)
	if err != nil {
		t.Fatal(err)
	}
	h := w.Header()
	if err := w.Close(); err != nil { // the header goes out with the (empty) final frame
		t.Fatal(err)
	}
	want := []byte{0x02, 0x04, 0x78}
	want = append(want, h.MessageID...)
	want = append(want, 0, 14, 0, 2, 0, 1, 'a', 0, 1, '1', 0, 1, 'b', 0, 1, '2') // sorted
	want = append(want, 0, 1, 0, 7, 'a', 'w', 's', '-', 'k', 'm', 's', 0, 3, 'a', 'r', 'n', 0, 1, 0xAA)
	want = append(want, 0x02, 0, 0, 0x10, 0)
	want = append(want, h.Commitment...)
	if got := out.Bytes()[:len(want)]; !bytes.Equal(got, want) {
		t.Fatalf("header\n got %x\nwant %x", got, want)
	}
	if final := 4 + 4 + ivLen + 4 + tagLen; out.Len() != len(want)+tagLen+final {
		t.Fatalf("header+tag+empty final frame is %d bytes, want %d", out.Len(), len(want)+tagLen+final)
	}
	// The tag is GCM over the header with a zero IV and no plaintext.
	key, _, _ := deriveKeys(SuiteCommitKey, m.DataKey, h.MessageID)
	block, _ := aes.NewCipher(key)
	g, _ := cipher.NewGCM(block)
	if tag := g.Seal(nil, make([]byte, 12), nil, want); !bytes.Equal(tag, out.Bytes()[len(want):len(want)+tagLen]) {
		t.Fatal("header tag is not AES-GCM(zero IV, AAD=header)")
	}
}

// TestLimits: a reader refuses frames, key counts and headers beyond its
// limits before allocating for them.
func TestLimits(t *testing.T) {
	m := testMaterials(t, SuiteCommitKey, 1<<20)
	msg := encrypt(t, m, []byte("x"))
	if _, err := ReadHeader(bufio.NewReader(bytes.NewReader(msg)), Limits{MaxFrameLength: 1 << 10}); !errors.Is(err, ErrLimit) {
		t.Fatalf("frame: %v", err)
	}
	if _, err := ReadHeader(bufio.NewReader(bytes.NewReader(msg)), Limits{MaxHeaderBytes: 40}); !errors.Is(err, ErrLimit) {
		t.Fatalf("header: %v", err)
	}
	m.DataKeys = append(m.DataKeys, m.DataKeys[0], m.DataKeys[0])
	msg = encrypt(t, m, []byte("x"))
	if _, err := ReadHeader(bufio.NewReader(bytes.NewReader(msg)), Limits{MaxDataKeys: 2}); !errors.Is(err, ErrLimit) {
		t.Fatalf("keys: %v", err)
	}
	if _, err := ReadHeader(bufio.NewReader(bytes.NewReader([]byte{1, 0x80, 0x01, 0x78})), Limits{}); !errors.Is(err, ErrUncommitted) {
		t.Fatalf("v1: %v", err)
	}
}

// fuzzKey opens every fuzz seed.
var fuzzKey = bytes.Repeat([]byte{5}, DataKeyLen)

func fuzzSeeds(f *testing.F) [][]byte {
	var seeds [][]byte
	for _, suite := range []Suite{SuiteCommitKey, SuiteCommitKeyECDSAP384} {
		m := testMaterials(f, suite, 16)
		m.DataKey = fuzzKey
		seeds = append(seeds, encrypt(f, m, []byte("some plaintext across frames")), encrypt(f, m, nil))
	}
	for _, suite := range v1Suites {
		for _, frame := range []int{0, 16} {
			seeds = append(seeds, encryptV1(f, suite, fuzzKey[:suite.DataKeyLen()], map[string]string{"a": "b"}, frame, []byte("some plaintext across frames")))
		}
	}
	return seeds
}

// FuzzReadHeader: any input gives a header or an error, never a panic or
// an allocation beyond Limits.
func FuzzReadHeader(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		lim := Limits{MaxFrameLength: 1 << 16, AllowUncommitted: true}
		h, err := ReadHeader(bufio.NewReader(bytes.NewReader(b)), lim)
		if err != nil {
			return
		}
		n := len(h.AppendTo(nil))
		if n > len(b) {
			t.Fatalf("header of %d bytes from %d input bytes", n, len(b))
		}
		if _, err := NewReader(bufio.NewReader(bytes.NewReader(nil)), h, fuzzKey[:h.Suite.DataKeyLen()], lim); err == nil && !bytes.Equal(h.AppendTo(nil), b[:n]) {
			t.Fatal("authenticated header does not re-serialize to its input")
		}
	})
}

// FuzzBody: a valid header (opened with fuzzKey) followed by fuzzed body
// bytes decrypts or fails cleanly.
func FuzzBody(f *testing.F) {
	seeds := fuzzSeeds(f)
	headers := make([][]byte, len(seeds))
	for i, s := range seeds {
		h, err := ReadHeader(bufio.NewReader(bytes.NewReader(s)), Limits{AllowUncommitted: true})
		if err != nil {
			f.Fatal(err)
		}
		headers[i] = h.AppendTo(nil)
		f.Add(uint8(i), s[len(headers[i]):])
	}
	f.Fuzz(func(t *testing.T, which uint8, body []byte) {
		hb := headers[int(which)%len(headers)]
		br := bufio.NewReader(bytes.NewReader(append(bytes.Clone(hb), body...)))
		h, err := ReadHeader(br, Limits{AllowUncommitted: true})
		if err != nil {
			t.Fatal(err)
		}
		r, err := NewReader(br, h, fuzzKey[:h.Suite.DataKeyLen()], Limits{MaxFrameLength: 1 << 16, AllowUncommitted: true})
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, r)
	})
}

// BenchmarkWriter encrypts 1 MiB messages (frame 64 KiB), without and
// with Materials.Verify, next to its baseline twin, raw AES-256-GCM over
// the same frames.
func BenchmarkWriter(b *testing.B) {
	pt := make([]byte, 1<<20)
	m := testMaterials(b, SuiteCommitKey, 64<<10)
	for _, verify := range []bool{false, true} {
		name := "esdk"
		if verify {
			name = "esdk-verify" // sealed, then opened again and compared
		}
		m := m
		m.Verify = verify
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(pt)))
			for b.Loop() {
				w, _ := NewWriter(io.Discard, m)
				w.ReadFrom(bytes.NewReader(pt))
				if err := w.Close(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("raw-gcm", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(pt)))
		g := newAEAD(m.DataKey)
		out := make([]byte, 0, 64<<10+16)
		iv := make([]byte, 12)
		for b.Loop() {
			for off := 0; off < len(pt); off += 64 << 10 {
				out = g.Seal(out[:0], iv, pt[off:off+64<<10], nil)
			}
		}
	})
}

// TestBatches: messages across batch and frame boundaries, written with
// Write and with ReadFrom (odd read sizes), with and without Verify and
// Parallel, read back to the same plaintext with the frame count the
// format implies.
func TestBatches(t *testing.T) {
	for _, frame := range []int{100, 4096, 64 << 10, batchBytes + 4096} {
		for _, size := range []int{0, frame - 1, frame, frame + 1, batchBytes - 1, batchBytes, batchBytes + 1, 2*batchBytes + frame + 7, 5*batchBytes + 3} {
			for _, how := range []string{"Write", "ReadFrom"} {
				for _, mode := range []int{0, 1, 2, 3} { // bit 0: Verify, bit 1: Parallel
					verify := mode&1 != 0
					m := testMaterials(t, SuiteCommitKey, frame)
					if size%3 == 0 {
						m = testMaterials(t, SuiteCommitKeyECDSAP384, frame)
					}
					m.Verify, m.Parallel = verify, mode&2 != 0
					pt := make([]byte, size)
					rand.Read(pt)
					var out bytes.Buffer
					w, err := NewWriter(&out, m)
					if err != nil {
						t.Fatal(err)
					}
					if how == "Write" {
						_, err = w.Write(pt)
					} else {
						_, err = w.ReadFrom(&chunkReader{b: pt, n: 7919})
					}
					if err == nil {
						err = w.Close()
					}
					if err != nil {
						t.Fatalf("frame %d size %d %s verify %v: %v", frame, size, how, verify, err)
					}
					br := bufio.NewReader(bytes.NewReader(out.Bytes()))
					h, err := ReadHeader(br, Limits{})
					if err != nil {
						t.Fatal(err)
					}
					r, err := NewReader(br, h, m.DataKey, Limits{})
					if err != nil {
						t.Fatal(err)
					}
					got, err := io.ReadAll(r)
					if err != nil || !bytes.Equal(got, pt) {
						t.Fatalf("frame %d size %d %s verify %v: err %v, equal %v", frame, size, how, verify, err, bytes.Equal(got, pt))
					}
					frames := size/frame + 1 // ReadFrom: whole frames, then a final one (maybe empty)
					if how == "Write" && size > 0 && size%frame == 0 {
						frames-- // Write: a full last frame is the final one
					}
					if int(r.seq) != frames {
						t.Fatalf("frame %d size %d %s: %d frames, want %d", frame, size, how, r.seq, frames)
					}
				}
			}
		}
	}
}

// chunkReader yields b at most n bytes per Read.
type chunkReader struct {
	b []byte
	n int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.b) == 0 {
		return 0, io.EOF
	}
	k := copy(p[:min(len(p), c.n)], c.b)
	c.b = c.b[k:]
	return k, nil
}

// faultyAEAD seals like its AEAD except for frame (IV) bad, where it
// models a miscomputing core: it flips a bit of the ciphertext, or (pt)
// of the plaintext it seals, so that the tag matches the wrong bytes.
type faultyAEAD struct {
	cipher.AEAD
	bad uint32
	pt  bool
}

func (f faultyAEAD) Seal(dst, iv, pt, aad []byte) []byte {
	if binary.BigEndian.Uint32(iv[8:]) != f.bad {
		return f.AEAD.Seal(dst, iv, pt, aad)
	}
	if f.pt {
		pt = bytes.Clone(pt)
		pt[len(pt)/2] ^= 1
		return f.AEAD.Seal(dst, iv, pt, aad)
	}
	out := f.AEAD.Seal(dst, iv, pt, aad)
	out[len(dst)+3] ^= 0x10
	return out
}

// TestVerifyCatchesFaults: with Verify, a frame sealed wrong (ciphertext
// or plaintext corrupted under a valid tag, or the wrong key) is caught
// before its batch is written: the output holds only earlier batches,
// which decrypt to a prefix of the plaintext.
func TestVerifyCatchesFaults(t *testing.T) {
	pt := make([]byte, 3*batchBytes)
	rand.Read(pt)
	const frame = 64 << 10
	perBatch := batchBytes / frame
	for _, tc := range []struct {
		name string
		bad  uint32 // sequence number of the faulty frame
		pt   bool
		key  bool
	}{{"ciphertext", 6, false, false}, {"plaintext", 6, true, false}, {"first-frame", 1, true, false}, {"key", 0, false, true}} {
		for _, parallel := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/parallel=%v", tc.name, parallel), func(t *testing.T) {
				m := testMaterials(t, SuiteCommitKey, frame)
				m.Verify, m.Parallel = true, parallel
				var out bytes.Buffer
				w, err := NewWriter(&out, m)
				if err != nil {
					t.Fatal(err)
				}
				if tc.key {
					w.aead = newAEAD(bytes.Repeat([]byte{9}, 32))
				} else {
					w.aead = faultyAEAD{AEAD: w.aead, bad: tc.bad, pt: tc.pt}
				}
				_, err = w.ReadFrom(bytes.NewReader(pt))
				if err == nil {
					err = w.Close()
				}
				if !errors.Is(err, ErrVerify) {
					t.Fatalf("got %v, want ErrVerify", err)
				}
				t.Log(err)
				if err := w.Close(); !errors.Is(err, ErrVerify) {
					t.Fatalf("Close after the failure: %v", err)
				}
				good := 0 // batches written before the faulty frame's
				if tc.bad > 0 {
					good = int(tc.bad-1) / perBatch
				}
				if good == 0 {
					if out.Len() != 0 {
						t.Fatalf("%d bytes written before the first batch verified", out.Len())
					}
					return
				}
				got, _, err := decrypt(out.Bytes(), m.DataKey)
				if !errors.Is(err, ErrFormat) || !bytes.Equal(got, pt[:good*batchBytes]) {
					t.Fatalf("output: %d bytes (want %d), err %v (want truncated)", len(got), good*batchBytes, err)
				}
			})
		}
	}
}

// TestAbort: a Writer aborted part way (the caller's source failed) writes
// no final frame, so the output does not read as a whole message, and its
// second stage (Parallel) ends.
func TestAbort(t *testing.T) {
	for _, parallel := range []bool{false, true} {
		m := testMaterials(t, SuiteCommitKey, 4096)
		m.Verify, m.Parallel = true, parallel
		var out bytes.Buffer
		w, err := NewWriter(&out, m)
		if err != nil {
			t.Fatal(err)
		}
		pt := make([]byte, 3*batchBytes+5)
		if _, err := w.ReadFrom(io.MultiReader(bytes.NewReader(pt), iotest.ErrReader(io.ErrClosedPipe))); !errors.Is(err, io.ErrClosedPipe) {
			t.Fatalf("ReadFrom: %v", err)
		}
		w.Abort()
		w.Abort()
		if err := w.Close(); err == nil {
			t.Fatal("Close after Abort succeeded")
		}
		if _, err := w.Write([]byte("x")); err == nil {
			t.Fatal("Write after Abort succeeded")
		}
		if _, _, err := decrypt(out.Bytes(), m.DataKey); !errors.Is(err, ErrFormat) {
			t.Fatalf("parallel %v: an aborted message (%d bytes) reads: %v", parallel, out.Len(), err)
		}
	}
}

// nonFramed builds a non-framed message (content type 0x01) of pt by
// hand from the specification: the SDKs still read them, and so must the
// Reader.
func nonFramed(t *testing.T, m Materials, pt []byte) []byte {
	t.Helper()
	var hdr bytes.Buffer
	w, err := NewWriter(&hdr, m)
	if err != nil {
		t.Fatal(err)
	}
	h := w.Header()
	w.Abort()
	raw := bytes.Clone(h.raw)
	tail := len(raw) - commitLen - 5 // content type, frame length, commitment
	raw[tail] = contentNonFrm
	binary.BigEndian.PutUint32(raw[tail+1:], 0)
	key, _, err := deriveKeys(m.Suite, m.DataKey, h.MessageID)
	if err != nil {
		t.Fatal(err)
	}
	aead := newAEAD(key)
	msg := append(raw, aead.Seal(nil, make([]byte, ivLen), nil, raw)...)
	iv := make([]byte, ivLen)
	rand.Read(iv)
	msg = append(msg, iv...)
	msg = binary.BigEndian.AppendUint64(msg, uint64(len(pt)))
	return aead.Seal(msg, iv, pt, appendBodyAAD(nil, h.MessageID, aadSingle, 1, len(pt)))
}

// TestNonFramed: non-framed bodies read back, small (opened where they
// lie in the bufio.Reader) and larger than its buffer (copied first);
// every flip of a small one fails.
func TestNonFramed(t *testing.T) {
	for _, size := range []int{0, 100, 300 << 10} {
		m := testMaterials(t, SuiteCommitKey, 4096)
		pt := make([]byte, size)
		rand.Read(pt)
		msg := nonFramed(t, m, pt)
		got, h, err := decrypt(msg, m.DataKey)
		if err != nil || !bytes.Equal(got, pt) || h.FrameLength != 0 {
			t.Fatalf("size %d: err %v, equal %v", size, err, bytes.Equal(got, pt))
		}
		if size == 100 {
			for i := range msg {
				bad := bytes.Clone(msg)
				bad[i] ^= 0x40
				if _, _, err := decrypt(bad, m.DataKey); err == nil {
					t.Fatalf("flipping byte %d of a non-framed message went unnoticed", i)
				}
			}
		}
	}
}

// TestLargeHeader: a header beyond the Writer's header room (a large
// encryption context) is written alone, and the message reads back with
// Verify and Parallel.
func TestLargeHeader(t *testing.T) {
	m := testMaterials(t, SuiteCommitKey, 4096)
	m.Context["big"] = string(bytes.Repeat([]byte("v"), 2*headerRoom))
	m.Verify, m.Parallel = true, true
	pt := make([]byte, 2*batchBytes+1)
	rand.Read(pt)
	var out bytes.Buffer
	w, err := NewWriter(&out, m)
	if err != nil {
		t.Fatal(err)
	}
	if out.Len() != len(w.Header().AppendTo(nil)) {
		t.Fatalf("%d bytes written by NewWriter, want the %d-byte header", out.Len(), len(w.Header().AppendTo(nil)))
	}
	if _, err := w.ReadFrom(bytes.NewReader(pt)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	got, h, err := decrypt(out.Bytes(), m.DataKey)
	if err != nil || !bytes.Equal(got, pt) || len(h.Context["big"]) != 2*headerRoom {
		t.Fatalf("err %v, equal %v", err, bytes.Equal(got, pt))
	}
}

// BenchmarkReader decrypts 1 MiB messages (frame 64 KiB) from a
// bufio.Reader (frames opened where they lie), next to its baseline twin,
// raw AES-256-GCM Open over the same frames.
func BenchmarkReader(b *testing.B) {
	pt := make([]byte, 1<<20)
	m := testMaterials(b, SuiteCommitKey, 64<<10)
	msg := encrypt(b, m, pt)
	b.Run("esdk", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(pt)))
		br := bufio.NewReaderSize(nil, 256<<10)
		src := bytes.NewReader(msg)
		for b.Loop() {
			src.Reset(msg)
			br.Reset(src)
			h, err := ReadHeader(br, Limits{})
			if err != nil {
				b.Fatal(err)
			}
			r, err := NewReader(br, h, m.DataKey, Limits{})
			if err != nil {
				b.Fatal(err)
			}
			if _, err := r.WriteTo(io.Discard); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("raw-gcm", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(pt)))
		g := newAEAD(m.DataKey)
		iv := make([]byte, 12)
		cts := make([][]byte, 0, 16)
		for off := 0; off < len(pt); off += 64 << 10 {
			cts = append(cts, g.Seal(nil, iv, pt[off:off+64<<10], nil))
		}
		out := make([]byte, 0, 64<<10)
		for b.Loop() {
			for _, ct := range cts {
				if _, err := g.Open(out[:0], iv, ct, nil); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}

// TestSealer: a message sealed frame by frame into its place, by two
// Framers taking windows in reverse order, with and without Verify,
// reads back as the plaintext, has the length Len said and the layout
// Writer.ReadFrom writes (same length, same frame count).
func TestSealer(t *testing.T) {
	for _, frame := range []int{100, 4096, 64 << 10, batchBytes + 4096} {
		for _, size := range []int{0, 1, frame - 1, frame, frame + 1, batchBytes, 2*batchBytes + frame + 7, 5*batchBytes + 3} {
			for _, verify := range []bool{false, true} {
				name := fmt.Sprintf("frame=%d/size=%d/verify=%v", frame, size, verify)
				m := testMaterials(t, SuiteCommitKey, frame)
				m.Verify = verify
				pt := make([]byte, size)
				rand.Read(pt)
				s, err := NewSealer(m, int64(size))
				if err != nil {
					t.Fatal(err)
				}
				msg := make([]byte, s.Len())
				copy(msg, s.Header())
				win := 2 * frame // windows of two frames, the last one shorter
				var fr [2]*Framer
				for i := range fr {
					if fr[i], err = s.NewFramer(); err != nil {
						t.Fatal(err)
					}
				}
				for k, off := 0, (size/win)*win; off >= 0; k, off = k+1, off-win {
					end := min(off+win, size)
					to := s.Offset(int64(end))
					if end == size {
						to = s.Len()
					}
					if err := fr[k%2].Seal(msg[s.Offset(int64(off)):to], pt[off:end], int64(off)); err != nil {
						t.Fatalf("%s: Seal at %d: %v", name, off, err)
					}
				}
				fr[0].Close()
				fr[1].Close()
				s.Close()
				got, h, err := decrypt(msg, m.DataKey)
				if err != nil || !bytes.Equal(got, pt) {
					t.Fatalf("%s: err %v, equal %v", name, err, bytes.Equal(got, pt))
				}
				var ref bytes.Buffer
				w, err := NewWriter(&ref, m)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := w.ReadFrom(bytes.NewReader(pt)); err != nil {
					t.Fatal(err)
				}
				if err := w.Close(); err != nil {
					t.Fatal(err)
				}
				if ref.Len() != len(msg) || w.seq != uint32(size/frame+1) || h.FrameLength != uint32(frame) {
					t.Fatalf("%s: %d bytes, ReadFrom writes %d (%d frames)", name, len(msg), ref.Len(), w.seq)
				}
			}
		}
	}
}

// TestSealerRefuses: signed suites, windows not on frame boundaries and
// outputs of the wrong length are refused, nothing written.
func TestSealerRefuses(t *testing.T) {
	if _, err := NewSealer(testMaterials(t, SuiteCommitKeyECDSAP384, 100), 10); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("signed suite: %v", err)
	}
	s, f := newTestFramer(t, testMaterials(t, SuiteCommitKey, 100), 1000)
	pt := make([]byte, 1000)
	msg := make([]byte, s.Len())
	for _, tc := range []struct {
		name     string
		off, end int64
		dst      []byte
	}{
		{"misaligned", 50, 150, msg[s.Offset(0):s.Offset(100)]},
		{"part frame", 0, 150, msg[s.Offset(0):s.Offset(100)]},
		{"past the end", 900, 1000 + 1, msg[s.Offset(900):]},
		{"short output", 0, 100, msg[s.Offset(0) : s.Offset(100)-1]},
		{"long output", 0, 100, msg[s.Offset(0) : s.Offset(100)+1]},
	} {
		p := pt
		if tc.end > int64(len(p)) {
			p = make([]byte, tc.end)
		}
		if err := f.Seal(tc.dst, p[tc.off:tc.end], tc.off); !errors.Is(err, ErrFormat) {
			t.Errorf("%s: %v, want ErrFormat", tc.name, err)
		}
	}
	if !bytes.Equal(msg, make([]byte, len(msg))) {
		t.Fatal("a refused Seal wrote")
	}
}

// TestSealerVerifyCatchesFaults: with Verify, a frame sealed wrong (as in
// TestVerifyCatchesFaults), or sealed outside its place (an AEAD that
// returns more bytes), fails Seal with ErrVerify.
func TestSealerVerifyCatchesFaults(t *testing.T) {
	pt := make([]byte, 3*batchBytes)
	rand.Read(pt)
	const frame = 64 << 10
	for _, tc := range []struct {
		name  string
		bad   uint32
		pt    bool
		key   bool
		extra bool
	}{{"ciphertext", 6, false, false, false}, {"plaintext", 6, true, false, false}, {"first-frame", 1, true, false, false}, {"key", 0, false, true, false}, {"outside", 0, false, false, true}} {
		t.Run(tc.name, func(t *testing.T) {
			m := testMaterials(t, SuiteCommitKey, frame)
			m.Verify = true
			s, f := newTestFramer(t, m, int64(len(pt)))
			switch {
			case tc.key:
				f.aead = newAEAD(bytes.Repeat([]byte{9}, 32))
			case tc.extra:
				f.aead = longAEAD{f.aead}
			default:
				f.aead = faultyAEAD{AEAD: f.aead, bad: tc.bad, pt: tc.pt}
			}
			msg := make([]byte, s.Len())
			copy(msg, s.Header())
			err := f.Seal(msg[s.Offset(0):], pt, 0)
			if !errors.Is(err, ErrVerify) {
				t.Fatalf("got %v, want ErrVerify", err)
			}
			t.Log(err)
		})
	}
}

// longAEAD returns one byte more than it should: a sealed frame that
// would spill past its place.
type longAEAD struct{ cipher.AEAD }

func (l longAEAD) Seal(dst, iv, pt, aad []byte) []byte {
	return append(l.AEAD.Seal(dst, iv, pt, aad), 0)
}

// TestFramerCheck: Check reads back what Seal wrote (whole message, or a
// window in the middle) and fails with ErrVerify when any byte of the
// frames differs or the plaintext it is compared with does.
func TestFramerCheck(t *testing.T) {
	const frame = 1000
	m, s, f, pt, msg := sealedMessage(t, frame, 10*frame+7)
	body := msg[s.Offset(0):]
	if err := f.Check(body, pt, 0); err != nil {
		t.Fatal(err)
	}
	mid := msg[s.Offset(3*frame):s.Offset(6*frame)]
	if err := f.Check(mid, pt[3*frame:6*frame], 3*frame); err != nil {
		t.Fatalf("window: %v", err)
	}
	for i := 0; i < len(body); i += 97 {
		bad := bytes.Clone(body)
		bad[i] ^= 4
		if err := f.Check(bad, pt, 0); !errors.Is(err, ErrVerify) {
			t.Fatalf("byte %d flipped: %v", i, err)
		}
	}
	other := bytes.Clone(pt)
	other[5*frame+1] ^= 1
	if err := f.Check(body, other, 0); !errors.Is(err, ErrVerify) {
		t.Fatalf("other plaintext: %v", err)
	}
	if err := f.Check(body[:len(body)-1], pt, 0); !errors.Is(err, ErrVerify) {
		t.Fatalf("short: %v", err)
	}
	if got, _, err := decrypt(msg, m.DataKey); err != nil || !bytes.Equal(got, pt) {
		t.Fatalf("decrypt: %v", err)
	}
}

// newTestFramer returns a Sealer of a size-byte message and a Framer of
// it, both closed when the test ends.
func newTestFramer(t testing.TB, m Materials, size int64) (*Sealer, *Framer) {
	t.Helper()
	s, err := NewSealer(m, size)
	if err != nil {
		t.Fatal(err)
	}
	f, err := s.NewFramer()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close(); s.Close() })
	return s, f
}

// FuzzCheck: Framer.Check reads frames from bytes it does not trust (read
// back from a file); whatever they are, it returns an error or, only for
// the bytes Seal wrote, nil, and never panics.
func FuzzCheck(f *testing.F) {
	const frame = 64
	_, s, fr, pt, msg := sealedMessage(f, frame, 3*frame+5)
	body := msg[s.Offset(0):]
	f.Add(uint8(0), body)
	f.Add(uint8(1), body[s.Offset(frame)-s.Offset(0):])
	f.Fuzz(func(t *testing.T, from uint8, b []byte) {
		off := int64(from%4) * frame
		err := fr.Check(b, pt[off:], off)
		if want := body[s.Offset(off)-s.Offset(0):]; err == nil && !bytes.Equal(b, want) {
			t.Fatalf("Check accepted %d bytes that Seal did not write", len(b))
		}
	})
}

// sealedMessage seals n random bytes with a Sealer (frame length frame)
// and returns the materials, the Sealer and a Framer of it, the plaintext
// and the whole message.
func sealedMessage(t testing.TB, frame, n int) (Materials, *Sealer, *Framer, []byte, []byte) {
	t.Helper()
	m := testMaterials(t, SuiteCommitKey, frame)
	pt := make([]byte, n)
	rand.Read(pt)
	s, f := newTestFramer(t, m, int64(n))
	msg := make([]byte, s.Len())
	copy(msg, s.Header())
	if err := f.Seal(msg[s.Offset(0):], pt, 0); err != nil {
		t.Fatal(err)
	}
	return m, s, f, pt, msg
}
