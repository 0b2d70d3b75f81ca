package esdk

import (
	"bufio"
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/hkdf"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"io"
	"maps"
	"testing"
)

// v1Suites are the version 1 suites, which this package reads only.
var v1Suites = []Suite{
	SuiteAES128GCM, SuiteAES192GCM, SuiteAES256GCM,
	SuiteAES128GCMHKDFSHA256, SuiteAES192GCMHKDFSHA256, SuiteAES256GCMHKDFSHA256,
	SuiteAES128GCMHKDFSHA256ECDSAP256, SuiteAES192GCMHKDFSHA384ECDSAP384, SuiteAES256GCMHKDFSHA384ECDSAP384,
}

// encryptV1 writes a version 1 message as the specification lays it out
// (data-format/message-header.md, message-body.md, message-footer.md),
// written here from the specification and not from the reader: frame
// length 0 gives a non-framed body. The header authentication IV is
// random, so a reader that assumed version 2's zero IV would fail.
func encryptV1(t testing.TB, suite Suite, dataKey []byte, ec map[string]string, frame int, pt []byte) []byte {
	t.Helper()
	si := suites[suite]
	ec = maps.Clone(ec)
	var sk *ecdsa.PrivateKey
	if si.curve != nil {
		var err error
		if sk, err = ecdsa.GenerateKey(si.curve, rand.Reader); err != nil {
			t.Fatal(err)
		}
		u, _ := sk.PublicKey.Bytes()
		n := (len(u) - 1) / 2
		c := append([]byte{2 | u[len(u)-1]&1}, u[1:1+n]...)
		ec[PublicKeyContextKey] = base64.StdEncoding.EncodeToString(c)
	}
	id := make([]byte, 16)
	rand.Read(id)
	h := []byte{1, 0x80}
	h = binary.BigEndian.AppendUint16(h, uint16(suite))
	h = append(h, id...)
	aad, err := appendContext(nil, ec)
	if err != nil {
		t.Fatal(err)
	}
	h = binary.BigEndian.AppendUint16(h, uint16(len(aad)))
	h = append(h, aad...)
	h = binary.BigEndian.AppendUint16(h, 1)
	for _, f := range []string{ProviderKMS, testARN, "wrapped-data-key"} {
		h = binary.BigEndian.AppendUint16(h, uint16(len(f)))
		h = append(h, f...)
	}
	if frame > 0 {
		h = append(h, 2)
	} else {
		h = append(h, 1)
	}
	h = append(h, 0, 0, 0, 0, 12)
	h = binary.BigEndian.AppendUint32(h, uint32(frame))
	key := dataKey
	if si.kdf != nil {
		info := binary.BigEndian.AppendUint16(nil, uint16(suite))
		if key, err = hkdf.Key(si.kdf, dataKey, nil, string(append(info, id...)), len(dataKey)); err != nil {
			t.Fatal(err)
		}
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	g, _ := cipher.NewGCM(block)
	hiv := make([]byte, 12)
	rand.Read(hiv)
	msg := append(append(h, hiv...), g.Seal(nil, hiv, nil, h)...)
	bodyAAD := func(content string, seq uint32, n int) []byte {
		a := append(bytes.Clone(id), content...)
		a = binary.BigEndian.AppendUint32(a, seq)
		return binary.BigEndian.AppendUint64(a, uint64(n))
	}
	iv := func(seq uint32) []byte { return binary.BigEndian.AppendUint32(make([]byte, 8), seq) }
	if frame == 0 {
		msg = append(msg, iv(1)...)
		msg = binary.BigEndian.AppendUint64(msg, uint64(len(pt)))
		msg = g.Seal(msg, iv(1), pt, bodyAAD("AWSKMSEncryptionClient Single Block", 1, len(pt)))
	} else {
		seq := uint32(1)
		for ; len(pt) > frame; seq++ {
			msg = binary.BigEndian.AppendUint32(msg, seq)
			msg = append(msg, iv(seq)...)
			msg = g.Seal(msg, iv(seq), pt[:frame], bodyAAD("AWSKMSEncryptionClient Frame", seq, frame))
			pt = pt[frame:]
		}
		msg = binary.BigEndian.AppendUint32(msg, 0xFFFFFFFF)
		msg = binary.BigEndian.AppendUint32(msg, seq)
		msg = append(msg, iv(seq)...)
		msg = binary.BigEndian.AppendUint32(msg, uint32(len(pt)))
		msg = g.Seal(msg, iv(seq), pt, bodyAAD("AWSKMSEncryptionClient Final Frame", seq, len(pt)))
	}
	if sk != nil {
		d := si.sigHash()
		d.Write(msg)
		sig, err := ecdsa.SignASN1(rand.Reader, sk, d.Sum(nil))
		if err != nil {
			t.Fatal(err)
		}
		msg = binary.BigEndian.AppendUint16(msg, uint16(len(sig)))
		msg = append(msg, sig...)
	}
	return msg
}

func decryptV1(msg, dataKey []byte, lim Limits) ([]byte, *Header, error) {
	br := bufio.NewReader(bytes.NewReader(msg))
	h, err := ReadHeader(br, lim)
	if err != nil {
		return nil, nil, err
	}
	r, err := NewReader(br, h, dataKey, lim)
	if err != nil {
		return nil, h, err
	}
	pt, err := io.ReadAll(r)
	return pt, h, err
}

// TestVersion1: messages of every version 1 suite, framed (several
// frames; a final frame that is full, partial or empty) and non-framed,
// decrypt with Limits.AllowUncommitted and are refused without it
// (ErrUncommitted, which is also ErrUnsupported); a wrong data key, a
// flipped byte anywhere, a truncation or a trailing byte fails; a
// re-wrapped version 1 message stays version 1 with its body untouched
// and a fresh header IV.
func TestVersion1(t *testing.T) {
	allow := Limits{AllowUncommitted: true}
	ec := map[string]string{"tenant": "a", "ünï": "çødé"}
	for _, suite := range v1Suites {
		t.Run(suite.String(), func(t *testing.T) {
			dk := make([]byte, suite.DataKeyLen())
			rand.Read(dk)
			if suite.Committing() || len(dk) == 0 {
				t.Fatalf("suite table: committing %v, key %d bytes", suite.Committing(), len(dk))
			}
			for _, tc := range []struct{ frame, n int }{{0, 0}, {0, 1000}, {64, 0}, {64, 64}, {64, 3*64 + 5}, {64, 4 * 64}, {4096, 10000}} {
				pt := make([]byte, tc.n)
				rand.Read(pt)
				msg := encryptV1(t, suite, dk, ec, tc.frame, pt)
				got, h, err := decryptV1(msg, dk, allow)
				if err != nil {
					t.Fatalf("frame %d, %d bytes: %v", tc.frame, tc.n, err)
				}
				if !bytes.Equal(got, pt) || h.Version != 1 || h.Suite != suite || h.Context["tenant"] != "a" || int(h.FrameLength) != tc.frame {
					t.Fatalf("frame %d, %d bytes: decrypted %d bytes, header %+v", tc.frame, tc.n, len(got), h)
				}
				if !bytes.Equal(h.AppendTo(nil), msg[:len(h.AppendTo(nil))]) {
					t.Fatal("header does not re-serialize to its input")
				}
				if _, _, err := decryptV1(msg, dk, Limits{}); !errors.Is(err, ErrUncommitted) || !errors.Is(err, ErrUnsupported) {
					t.Fatalf("without AllowUncommitted: %v", err)
				}
			}
			pt := make([]byte, 3*64+5)
			rand.Read(pt)
			msg := encryptV1(t, suite, dk, ec, 64, pt)
			bad := bytes.Clone(dk)
			bad[0] ^= 1
			if _, _, err := decryptV1(msg, bad, allow); !errors.Is(err, ErrAuth) {
				t.Fatalf("wrong data key: %v", err)
			}
			if _, _, err := decryptV1(msg, dk[:len(dk)-1], allow); err == nil {
				t.Fatal("short data key accepted")
			}
			for i := range msg {
				m := bytes.Clone(msg)
				m[i] ^= 0x10
				if got, _, err := decryptV1(m, dk, allow); err == nil {
					t.Fatalf("flip at %d of %d decrypted (%d bytes)", i, len(msg), len(got))
				}
			}
			for _, n := range []int{1, 17, len(msg) / 2, len(msg) - 1} {
				if _, _, err := decryptV1(msg[:n], dk, allow); err == nil {
					t.Fatalf("truncated to %d decrypted", n)
				}
			}
			if _, _, err := decryptV1(append(bytes.Clone(msg), 0), dk, allow); err == nil {
				t.Fatal("trailing byte accepted")
			}
			if suite.Signed() {
				return
			}
			br := bufio.NewReader(bytes.NewReader(msg))
			h, err := ReadHeader(br, allow)
			if err != nil {
				t.Fatal(err)
			}
			edk := DataKey{ProviderID: ProviderKMS, ProviderInfo: testARN + "-2", Ciphertext: []byte("another wrapped key")}
			nh, err := h.WithDataKeys(dk, []DataKey{edk})
			if err != nil {
				t.Fatal(err)
			}
			body := msg[len(h.AppendTo(nil)):]
			got, h2, err := decryptV1(append(nh.AppendTo(nil), body...), dk, allow)
			if err != nil || !bytes.Equal(got, pt) || h2.Version != 1 || h2.DataKeys[0].ProviderInfo != edk.ProviderInfo {
				t.Fatalf("re-wrapped: %v", err)
			}
			// A fresh header IV: the same one would make the two header
			// tags two GCM tags under one key and nonce.
			if bytes.Equal(h2.headerIV, h.headerIV) || len(h2.headerIV) != 12 || bytes.Equal(h2.headerIV[:8], make([]byte, 8)) {
				t.Fatalf("re-wrapped header IV %x (was %x)", h2.headerIV, h.headerIV)
			}
		})
	}
}

// TestVersionSuiteMismatch: a version 2 suite in a version 1 header and a
// version 1 suite in a version 2 header are refused, as are version 1's
// reserved field when not zero and an IV length other than 12.
func TestVersionSuiteMismatch(t *testing.T) {
	allow := Limits{AllowUncommitted: true}
	dk := make([]byte, 32)
	msg := encryptV1(t, SuiteAES256GCMHKDFSHA256, dk, nil, 64, []byte("x"))
	for name, edit := range map[string]func([]byte){
		"v2 suite in v1": func(m []byte) { binary.BigEndian.PutUint16(m[2:], uint16(SuiteCommitKey)) },
		"message type":   func(m []byte) { m[1] = 0x81 },
		"unknown suite":  func(m []byte) { binary.BigEndian.PutUint16(m[2:], 0x0079) },
		"reserved":       func(m []byte) { m[len(m)-1-4-1-1] = 1 },
		"IV length":      func(m []byte) { m[len(m)-1-4] = 16 },
	} {
		m := bytes.Clone(msg)
		br := bufio.NewReader(bytes.NewReader(msg))
		h, err := ReadHeader(br, allow)
		if err != nil {
			t.Fatal(err)
		}
		hb := h.Raw()
		if name == "reserved" || name == "IV length" {
			edit(m[:len(hb)])
		} else {
			edit(m)
		}
		if _, err := ReadHeader(bufio.NewReader(bytes.NewReader(m)), allow); err == nil {
			t.Errorf("%s: accepted", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
	m := encrypt(t, testMaterials(t, SuiteCommitKey, 64), []byte("x"))
	binary.BigEndian.PutUint16(m[1:], uint16(SuiteAES256GCMHKDFSHA256))
	if _, err := ReadHeader(bufio.NewReader(bytes.NewReader(m)), allow); !errors.Is(err, ErrUnsupported) {
		t.Errorf("v1 suite in v2: %v", err)
	}
}
