package agent

import (
	"bytes"
	"context"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/asn1"
	"encoding/binary"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/emmansun/gmsm/sm3"

	"github.com/kmsd/kmsd/cluster"
	"github.com/kmsd/kmsd/hsmpool/hsmtest"
	"github.com/kmsd/kmsd/quota"
)

// SM2 keys (README "Asymmetric, HMAC and key-agreement keys"). The checks
// do not use gmsm, which kmsd signs, encrypts and derives with: OpenSSL 3
// verifies the signatures, makes ciphertexts kmsd decrypts and reads the
// keys; the curve arithmetic for ECDH and the digest's Z value are done
// here with Go's generic crypto/elliptic CurveParams code (sm2p256v1 has
// a = -3, the form it implements) and the GM/T 0003.2 formula.

// sm2Params is sm2p256v1 (GM/T 0003.5), for the generic crypto/elliptic
// arithmetic.
var sm2Params = func() *elliptic.CurveParams {
	h := func(s string) *big.Int { n, _ := new(big.Int).SetString(s, 16); return n }
	return &elliptic.CurveParams{Name: "sm2p256v1", BitSize: 256,
		P:  h("FFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFF"),
		N:  h("FFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123"),
		B:  h("28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93"),
		Gx: h("32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7"),
		Gy: h("BC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0")}
}()

var oidSM2Curve = asn1.ObjectIdentifier{1, 2, 156, 10197, 1, 301}

// sm2Point reads an SM2 SubjectPublicKeyInfo by hand: id-ecPublicKey with
// the sm2p256v1 OID and an uncompressed point on the curve.
func sm2Point(t *testing.T, der []byte) (x, y *big.Int) {
	t.Helper()
	var spki subjectPublicKeyInfo
	if rest, err := asn1.Unmarshal(der, &spki); err != nil || len(rest) != 0 {
		t.Fatalf("SPKI: %v", err)
	}
	if !spki.Algorithm.Algorithm.Equal(oidECPublicKey) || !spki.Algorithm.Parameters.Equal(oidSM2Curve) {
		t.Fatalf("SPKI algorithm %v / %v, want id-ecPublicKey / sm2p256v1", spki.Algorithm.Algorithm, spki.Algorithm.Parameters)
	}
	p := spki.PublicKey.RightAlign()
	if len(p) != 65 || p[0] != 4 {
		t.Fatalf("point of %d bytes", len(p))
	}
	x, y = new(big.Int).SetBytes(p[1:33]), new(big.Int).SetBytes(p[33:])
	if !sm2Params.IsOnCurve(x, y) {
		t.Fatal("public point is not on sm2p256v1")
	}
	return x, y
}

func sm2SPKI(t *testing.T, x, y *big.Int) []byte {
	t.Helper()
	pt := append([]byte{4}, append(x.FillBytes(make([]byte, 32)), y.FillBytes(make([]byte, 32))...)...)
	der, err := asn1.Marshal(subjectPublicKeyInfo{Algorithm: algorithmIdentifier{oidECPublicKey, oidSM2Curve},
		PublicKey: asn1.BitString{Bytes: pt, BitLength: len(pt) * 8}})
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// sm2E is SM2DSA's e = SM3(Z || msg), Z = SM3(ENTL || ID || a || b || xG ||
// yG || xA || yA) with ID 1234567812345678 (GM/T 0003.2 §5.5).
func sm2E(t *testing.T, pubDER, msg []byte) []byte {
	x, y := sm2Point(t, pubDER)
	id := []byte("1234567812345678")
	a := new(big.Int).Sub(sm2Params.P, big.NewInt(3))
	z := sm3.New()
	binary.Write(z, binary.BigEndian, uint16(len(id)*8))
	z.Write(id)
	for _, v := range []*big.Int{a, sm2Params.B, sm2Params.Gx, sm2Params.Gy, x, y} {
		z.Write(v.FillBytes(make([]byte, 32)))
	}
	e := sm3.New()
	e.Write(z.Sum(nil))
	e.Write(msg)
	return e.Sum(nil)
}

func writeTemp(t *testing.T, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func runOpenSSL(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("openssl", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("openssl %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func needOpenSSL(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("no openssl")
	}
}

func TestSM2Keys(t *testing.T) {
	needOpenSSL(t)
	f := newAsymFixture(t, Config{})
	ctx := context.Background()
	c := f.ts.client

	t.Run("DescribeAndGetPublicKey", func(t *testing.T) {
		for _, e := range []struct {
			usage        types.KeyUsageType
			sig, enc, ka []string
		}{
			{usage: "SIGN_VERIFY", sig: []string{"SM2DSA"}},
			{usage: "ENCRYPT_DECRYPT", enc: []string{"SM2PKE"}},
			{usage: "KEY_AGREEMENT", ka: []string{"ECDH"}},
		} {
			id := f.key(t, "SM2", e.usage)
			k, _ := f.ts.node.Key(id)
			if m, _ := k.CurrentMaterial(); m.Form != cluster.MaterialSealed || len(m.Sealed) == 0 {
				t.Errorf("SM2/%s: material form %q, want sealed", e.usage, m.Form)
			}
			d, err := c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: &id})
			if err != nil {
				t.Fatal(err)
			}
			md := d.KeyMetadata
			if md.KeySpec != "SM2" || md.KeyUsage != e.usage || !reflect.DeepEqual(strs(md.SigningAlgorithms), e.sig) ||
				!reflect.DeepEqual(strs(md.EncryptionAlgorithms), e.enc) || !reflect.DeepEqual(strs(md.KeyAgreementAlgorithms), e.ka) || md.MacAlgorithms != nil {
				t.Errorf("SM2/%s: DescribeKey %s %s sig %v enc %v ka %v", e.usage, md.KeySpec, md.KeyUsage, md.SigningAlgorithms, md.EncryptionAlgorithms, md.KeyAgreementAlgorithms)
			}
			pk, err := c.GetPublicKey(ctx, &kms.GetPublicKeyInput{KeyId: &id})
			if err != nil {
				t.Fatal(err)
			}
			if pk.KeySpec != "SM2" || pk.KeyUsage != e.usage || !reflect.DeepEqual(strs(pk.SigningAlgorithms), e.sig) ||
				!reflect.DeepEqual(strs(pk.EncryptionAlgorithms), e.enc) || !reflect.DeepEqual(strs(pk.KeyAgreementAlgorithms), e.ka) {
				t.Errorf("SM2/%s: GetPublicKey %+v", e.usage, pk)
			}
			sm2Point(t, pk.PublicKey)
			if out := runOpenSSL(t, "pkey", "-pubin", "-inform", "DER", "-in", writeTemp(t, "pub.der", pk.PublicKey), "-text", "-noout"); !strings.Contains(out, "ASN1 OID: SM2") {
				t.Errorf("openssl reads the public key as:\n%s", out)
			}
		}
	})

	t.Run("SignVerify", func(t *testing.T) {
		id := f.key(t, "SM2", "SIGN_VERIFY")
		pub := publicKeyOf(t, c, id)
		pubPath := writeTemp(t, "pub.der", pub)
		msg := []byte("signed by kmsd with SM2DSA, checked by openssl")
		msgPath := writeTemp(t, "msg", msg)
		e := sm2E(t, pub, msg)
		for _, in := range []struct {
			mt  types.MessageType
			val []byte
		}{{"RAW", msg}, {"DIGEST", e}} {
			out, err := c.Sign(ctx, &kms.SignInput{KeyId: &id, Message: in.val, MessageType: in.mt, SigningAlgorithm: "SM2DSA"})
			if err != nil {
				t.Fatalf("Sign %s: %v", in.mt, err)
			}
			if out.SigningAlgorithm != "SM2DSA" || !strings.HasSuffix(*out.KeyId, id) {
				t.Fatalf("Sign response %+v", out)
			}
			// OpenSSL computes Z with the default ID and verifies over the
			// message: for DIGEST this shows e is SM3(Z || M).
			if got := runOpenSSL(t, "pkeyutl", "-verify", "-pubin", "-keyform", "DER", "-inkey", pubPath, "-rawin", "-in", msgPath,
				"-sigfile", writeTemp(t, "sig", out.Signature), "-digest", "sm3", "-pkeyopt", "distid:1234567812345678"); !strings.Contains(got, "Verified Successfully") {
				t.Fatalf("%s: openssl: %s", in.mt, got)
			}
			// A signature made with RAW verifies as DIGEST of e, and back.
			for _, v := range []struct {
				mt  types.MessageType
				val []byte
			}{{"RAW", msg}, {"DIGEST", e}} {
				vo, err := c.Verify(ctx, &kms.VerifyInput{KeyId: &id, Message: v.val, MessageType: v.mt, Signature: out.Signature, SigningAlgorithm: "SM2DSA"})
				if err != nil || !vo.SignatureValid {
					t.Fatalf("signed %s, Verify %s: %v", in.mt, v.mt, err)
				}
			}
			// With another distinguishing ID the signature does not
			// verify: kmsd's Z uses the default one, as AWS's does.
			if out, err := exec.Command("openssl", "pkeyutl", "-verify", "-pubin", "-keyform", "DER", "-inkey", pubPath, "-rawin", "-in", msgPath,
				"-sigfile", writeTemp(t, "sig", out.Signature), "-digest", "sm3", "-pkeyopt", "distid:ALICE123@YAHOO.COM").CombinedOutput(); err == nil {
				t.Fatalf("%s: openssl verified with another ID: %s", in.mt, out)
			}
			bad := bytes.Clone(out.Signature)
			bad[len(bad)/2] ^= 0x40
			_, err = c.Verify(ctx, &kms.VerifyInput{KeyId: &id, Message: in.val, MessageType: in.mt, Signature: bad, SigningAlgorithm: "SM2DSA"})
			wantAPIError(t, err, "KMSInvalidSignatureException")
			other := bytes.Clone(in.val)
			other[0] ^= 1
			_, err = c.Verify(ctx, &kms.VerifyInput{KeyId: &id, Message: other, MessageType: in.mt, Signature: out.Signature, SigningAlgorithm: "SM2DSA"})
			wantAPIError(t, err, "KMSInvalidSignatureException")
		}
		// The MessageType and key rules of SM2DSA are rows of
		// TestAsymmetricKeys/MessageRules.
	})

	t.Run("EncryptDecrypt", func(t *testing.T) {
		id := f.key(t, "SM2", "ENCRYPT_DECRYPT")
		pub := publicKeyOf(t, c, id)
		for _, n := range []int{1, 2, 32, 1024} {
			pt := make([]byte, n)
			rand.Read(pt)
			out, err := c.Encrypt(ctx, &kms.EncryptInput{KeyId: &id, Plaintext: pt, EncryptionAlgorithm: "SM2PKE"})
			if err != nil {
				t.Fatalf("%d bytes: Encrypt: %v", n, err)
			}
			if out.EncryptionAlgorithm != "SM2PKE" {
				t.Fatalf("Encrypt response %+v", out)
			}
			// The guide's check of the ciphertext format: ASN.1 SEQUENCE
			// of x, y, C3 (SM3, 32 bytes) and C2 (as long as the plaintext).
			got := runOpenSSL(t, "asn1parse", "-inform", "DER", "-in", writeTemp(t, "ct", out.CiphertextBlob))
			lines := strings.Split(strings.TrimSpace(got), "\n")
			if len(lines) != 5 || !strings.Contains(lines[0], "SEQUENCE") || !strings.Contains(lines[1], "INTEGER") || !strings.Contains(lines[2], "INTEGER") ||
				!strings.Contains(lines[3], "l=  32 prim: OCTET STRING") || !strings.Contains(lines[4], "OCTET STRING") {
				t.Fatalf("%d bytes: ciphertext structure:\n%s", n, got)
			}
			d, err := c.Decrypt(ctx, &kms.DecryptInput{KeyId: &id, CiphertextBlob: out.CiphertextBlob, EncryptionAlgorithm: "SM2PKE"})
			if err != nil || !bytes.Equal(d.Plaintext, pt) || d.EncryptionAlgorithm != "SM2PKE" {
				t.Fatalf("%d bytes: Decrypt: %v", n, err)
			}
		}
		// OpenSSL encrypts to the public key from GetPublicKey; kmsd
		// decrypts.
		var oct []byte
		for _, n := range []int{1, 28, 1024} {
			pt := make([]byte, n)
			rand.Read(pt)
			ctPath := filepath.Join(t.TempDir(), "ct")
			runOpenSSL(t, "pkeyutl", "-encrypt", "-pubin", "-keyform", "DER", "-inkey", writeTemp(t, "pub.der", pub), "-in", writeTemp(t, "pt", pt), "-out", ctPath)
			var err error
			if oct, err = os.ReadFile(ctPath); err != nil {
				t.Fatal(err)
			}
			d, err := c.Decrypt(ctx, &kms.DecryptInput{KeyId: &id, CiphertextBlob: oct, EncryptionAlgorithm: "SM2PKE"})
			if err != nil || !bytes.Equal(d.Plaintext, pt) {
				t.Fatalf("OpenSSL's %d-byte ciphertext: %v", n, err)
			}
		}
		// Limits and wrong use.
		_, err := c.Encrypt(ctx, &kms.EncryptInput{KeyId: &id, Plaintext: make([]byte, 1025), EncryptionAlgorithm: "SM2PKE"})
		wantAPIError(t, err, "ValidationException")
		_, err = c.Encrypt(ctx, &kms.EncryptInput{KeyId: &id, Plaintext: []byte("x")})
		wantAPIError(t, err, "InvalidKeyUsageException")
		_, err = c.Encrypt(ctx, &kms.EncryptInput{KeyId: &id, Plaintext: []byte("x"), EncryptionAlgorithm: "RSAES_OAEP_SHA_256"})
		wantAPIError(t, err, "InvalidKeyUsageException")
		_, err = c.Encrypt(ctx, &kms.EncryptInput{KeyId: &id, Plaintext: []byte("x"), EncryptionAlgorithm: "SM2PKE", EncryptionContext: map[string]string{"a": "b"}})
		wantAPIError(t, err, "ValidationException")
		_, err = c.Decrypt(ctx, &kms.DecryptInput{KeyId: &id, CiphertextBlob: oct})
		wantAPIError(t, err, "InvalidKeyUsageException")
		// Without KeyId it is not a ciphertext of a symmetric key, and
		// SM2PKE is no algorithm for one (as for RSA keys).
		_, err = c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: oct})
		wantAPIError(t, err, "InvalidCiphertextException")
		_, err = c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: oct, EncryptionAlgorithm: "SM2PKE"})
		wantAPIError(t, err, "InvalidKeyUsageException")
		bad := bytes.Clone(oct)
		bad[len(bad)-1] ^= 1
		_, err = c.Decrypt(ctx, &kms.DecryptInput{KeyId: &id, CiphertextBlob: bad, EncryptionAlgorithm: "SM2PKE"})
		wantAPIError(t, err, "InvalidCiphertextException")
		// The raw C1C3C2 concatenation is not the format AWS takes.
		_, err = c.Decrypt(ctx, &kms.DecryptInput{KeyId: &id, CiphertextBlob: append([]byte{4}, make([]byte, 64+32+5)...), EncryptionAlgorithm: "SM2PKE"})
		wantAPIError(t, err, "InvalidCiphertextException")
		sig := f.key(t, "SM2", "SIGN_VERIFY")
		_, err = c.Encrypt(ctx, &kms.EncryptInput{KeyId: &sig, Plaintext: []byte("x"), EncryptionAlgorithm: "SM2PKE"})
		wantAPIError(t, err, "InvalidKeyUsageException")
		rsaKey := f.key(t, "RSA_2048", "ENCRYPT_DECRYPT")
		_, err = c.Encrypt(ctx, &kms.EncryptInput{KeyId: &rsaKey, Plaintext: []byte("x"), EncryptionAlgorithm: "SM2PKE"})
		wantAPIError(t, err, "InvalidKeyUsageException")
		// DryRun checks and stops.
		_, err = c.Encrypt(ctx, &kms.EncryptInput{KeyId: &id, Plaintext: []byte("x"), EncryptionAlgorithm: "SM2PKE", DryRun: aws.Bool(true)})
		wantAPIError(t, err, "DryRunOperationException")
	})

	t.Run("ReEncrypt", func(t *testing.T) {
		s1 := f.key(t, "SM2", "ENCRYPT_DECRYPT")
		r1 := f.key(t, "RSA_2048", "ENCRYPT_DECRYPT")
		sym := f.ts.createKey(t)
		pt := []byte("moved between SM2, RSA and symmetric keys")
		enc, err := c.Encrypt(ctx, &kms.EncryptInput{KeyId: &s1, Plaintext: pt, EncryptionAlgorithm: "SM2PKE"})
		if err != nil {
			t.Fatal(err)
		}
		toRSA, err := c.ReEncrypt(ctx, &kms.ReEncryptInput{CiphertextBlob: enc.CiphertextBlob, SourceKeyId: &s1, SourceEncryptionAlgorithm: "SM2PKE",
			DestinationKeyId: &r1, DestinationEncryptionAlgorithm: "RSAES_OAEP_SHA_256"})
		if err != nil {
			t.Fatal(err)
		}
		toSM2, err := c.ReEncrypt(ctx, &kms.ReEncryptInput{CiphertextBlob: toRSA.CiphertextBlob, SourceKeyId: &r1, SourceEncryptionAlgorithm: "RSAES_OAEP_SHA_256",
			DestinationKeyId: &s1, DestinationEncryptionAlgorithm: "SM2PKE"})
		if err != nil || toSM2.SourceEncryptionAlgorithm != "RSAES_OAEP_SHA_256" || toSM2.DestinationEncryptionAlgorithm != "SM2PKE" {
			t.Fatalf("RSA to SM2: %v", err)
		}
		toSym, err := c.ReEncrypt(ctx, &kms.ReEncryptInput{CiphertextBlob: toSM2.CiphertextBlob, SourceKeyId: &s1, SourceEncryptionAlgorithm: "SM2PKE", DestinationKeyId: &sym})
		if err != nil {
			t.Fatal(err)
		}
		d, err := c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: toSym.CiphertextBlob})
		if err != nil || !bytes.Equal(d.Plaintext, pt) {
			t.Fatalf("after SM2 -> RSA -> SM2 -> symmetric: %v", err)
		}
		// Symmetric plaintext beyond SM2PKE's limit cannot move to SM2.
		big, err := c.Encrypt(ctx, &kms.EncryptInput{KeyId: &sym, Plaintext: make([]byte, 1025)})
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.ReEncrypt(ctx, &kms.ReEncryptInput{CiphertextBlob: big.CiphertextBlob, DestinationKeyId: &s1, DestinationEncryptionAlgorithm: "SM2PKE"})
		wantAPIError(t, err, "ValidationException")
	})

	t.Run("DeriveSharedSecret", func(t *testing.T) {
		id := f.key(t, "SM2", "KEY_AGREEMENT")
		kx, ky := sm2Point(t, publicKeyOf(t, c, id))
		// The peer's key pair and the expected secret, with Go's generic
		// curve code: x of [d]·(the KMS key's point).
		d, err := rand.Int(rand.Reader, new(big.Int).Sub(sm2Params.N, big.NewInt(1)))
		if err != nil {
			t.Fatal(err)
		}
		d.Add(d, big.NewInt(1))
		px, py := sm2Params.ScalarBaseMult(d.Bytes())
		want, _ := sm2Params.ScalarMult(kx, ky, d.Bytes())
		out, err := c.DeriveSharedSecret(ctx, &kms.DeriveSharedSecretInput{KeyId: &id, KeyAgreementAlgorithm: "ECDH", PublicKey: sm2SPKI(t, px, py)})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out.SharedSecret, want.FillBytes(make([]byte, 32))) || out.KeyAgreementAlgorithm != "ECDH" {
			t.Fatalf("shared secret %x, want %x", out.SharedSecret, want.FillBytes(make([]byte, 32)))
		}
		// A peer key as OpenSSL writes it is accepted.
		dir := t.TempDir()
		runOpenSSL(t, "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:SM2", "-out", filepath.Join(dir, "peer.pem"))
		runOpenSSL(t, "pkey", "-in", filepath.Join(dir, "peer.pem"), "-pubout", "-outform", "DER", "-out", filepath.Join(dir, "peer.der"))
		peerDER, err := os.ReadFile(filepath.Join(dir, "peer.der"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.DeriveSharedSecret(ctx, &kms.DeriveSharedSecretInput{KeyId: &id, KeyAgreementAlgorithm: "ECDH", PublicKey: peerDER}); err != nil {
			t.Fatalf("OpenSSL's SM2 public key: %v", err)
		}
		// Another curve, a point off the curve, an SM2 peer for a NIST key.
		nist := f.key(t, "ECC_NIST_P256", "KEY_AGREEMENT")
		offCurve := sm2SPKI(t, px, new(big.Int).Add(py, big.NewInt(1)))
		for _, r := range []struct {
			name string
			key  string
			peer []byte
		}{
			{"P-256 peer", id, publicKeyOf(t, c, nist)},
			{"off the curve", id, offCurve},
			{"SM2 peer for a P-256 key", nist, sm2SPKI(t, px, py)},
			{"not DER", id, []byte("peer")},
		} {
			_, err := c.DeriveSharedSecret(ctx, &kms.DeriveSharedSecretInput{KeyId: &r.key, KeyAgreementAlgorithm: "ECDH", PublicKey: r.peer})
			if err == nil {
				t.Fatalf("%s: accepted", r.name)
			}
			wantAPIError(t, err, "ValidationException")
		}
		sig := f.key(t, "SM2", "SIGN_VERIFY")
		_, err = c.DeriveSharedSecret(ctx, &kms.DeriveSharedSecretInput{KeyId: &sig, KeyAgreementAlgorithm: "ECDH", PublicKey: sm2SPKI(t, px, py)})
		wantAPIError(t, err, "InvalidKeyUsageException")
	})

	t.Run("GenerateDataKeyPair", func(t *testing.T) {
		sym := f.ts.createKey(t)
		ectx := map[string]string{"purpose": "sm2 pair"}
		full, err := c.GenerateDataKeyPair(ctx, &kms.GenerateDataKeyPairInput{KeyId: &sym, KeyPairSpec: "SM2", EncryptionContext: ectx})
		if err != nil {
			t.Fatal(err)
		}
		without, err := c.GenerateDataKeyPairWithoutPlaintext(ctx, &kms.GenerateDataKeyPairWithoutPlaintextInput{KeyId: &sym, KeyPairSpec: "SM2", EncryptionContext: ectx})
		if err != nil {
			t.Fatal(err)
		}
		if full.KeyPairSpec != "SM2" || without.KeyPairSpec != "SM2" || bytes.Equal(full.PublicKey, without.PublicKey) {
			t.Fatalf("pairs %s %s", full.KeyPairSpec, without.KeyPairSpec)
		}
		d, err := c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: without.PrivateKeyCiphertextBlob, EncryptionContext: ectx})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range []struct{ priv, pub []byte }{{full.PrivateKeyPlaintext, full.PublicKey}, {d.Plaintext, without.PublicKey}} {
			sm2Point(t, p.pub)
			// OpenSSL reads the PKCS#8 key as SM2 and derives the same
			// public key.
			privPath := writeTemp(t, "priv.der", p.priv)
			if out := runOpenSSL(t, "pkey", "-inform", "DER", "-in", privPath, "-text", "-noout"); !strings.Contains(out, "ASN1 OID: SM2") {
				t.Fatalf("openssl reads the private key as:\n%s", out)
			}
			pubPath := filepath.Join(t.TempDir(), "pub.der")
			runOpenSSL(t, "pkey", "-inform", "DER", "-in", privPath, "-pubout", "-outform", "DER", "-out", pubPath)
			if got, _ := os.ReadFile(pubPath); !bytes.Equal(got, p.pub) {
				t.Fatal("the public key is not the private key's")
			}
		}
		fd, err := c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: full.PrivateKeyCiphertextBlob, EncryptionContext: ectx})
		if err != nil || !bytes.Equal(fd.Plaintext, full.PrivateKeyPlaintext) {
			t.Fatalf("the encrypted private key: %v", err)
		}
	})

	t.Run("CreateKeyValidation", func(t *testing.T) {
		_, err := c.CreateKey(ctx, &kms.CreateKeyInput{KeySpec: "SM2", KeyUsage: "GENERATE_VERIFY_MAC"})
		wantAPIError(t, err, "ValidationException")
		// KeyUsage defaults to ENCRYPT_DECRYPT, which SM2 allows.
		out, err := c.CreateKey(ctx, &kms.CreateKeyInput{KeySpec: "SM2"})
		if err != nil || out.KeyMetadata.KeyUsage != "ENCRYPT_DECRYPT" {
			t.Fatalf("SM2 with the default usage: %v", err)
		}
		_, err = c.EnableKeyRotation(ctx, &kms.EnableKeyRotationInput{KeyId: out.KeyMetadata.KeyId})
		wantAPIError(t, err, "UnsupportedOperationException")
	})
}

// TestSM2Quotas: SM2 Sign, Verify, Encrypt, Decrypt and ReEncrypt count
// against the shared SM quota, GenerateDataKeyPair SM2 against its own.
func TestSM2Quotas(t *testing.T) {
	// quotaServer is a node with the given quotas (CreateKey unlimited)
	// and an SM2 key of each given usage.
	quotaServer := func(rates map[quota.Group]float64, usages ...types.KeyUsageType) (*testServer, []*string) {
		lib, label, pin := hsmtest.NewToken(t)
		rates["op:CreateKey"] = -1
		ts := startTestServerCfg(t, t.TempDir(), tokenRef{lib, label, pin}, Config{Quotas: quota.Config{Rates: rates}})
		var ids []*string
		for _, u := range usages {
			out, err := ts.client.CreateKey(context.Background(), &kms.CreateKeyInput{KeySpec: "SM2", KeyUsage: u})
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, out.KeyMetadata.KeyId)
		}
		return ts, ids
	}
	ts, ids := quotaServer(map[quota.Group]float64{quota.SM: 0, "gdkp:SM2": 0}, "SIGN_VERIFY", "ENCRYPT_DECRYPT", "KEY_AGREEMENT")
	sig, enc, agree := ids[0], ids[1], ids[2]
	ctx := context.Background()
	c := ts.client
	sym := ts.createKey(t)
	symCT, err := c.Encrypt(ctx, &kms.EncryptInput{KeyId: &sym, Plaintext: []byte("x")})
	if err != nil {
		t.Fatalf("symmetric Encrypt with the SM quota at 0: %v", err)
	}
	calls := map[string]func() error{
		"Sign": func() error {
			_, err := c.Sign(ctx, &kms.SignInput{KeyId: sig, Message: []byte("m"), SigningAlgorithm: "SM2DSA"})
			return err
		},
		"Verify": func() error {
			_, err := c.Verify(ctx, &kms.VerifyInput{KeyId: sig, Message: []byte("m"), Signature: []byte("s"), SigningAlgorithm: "SM2DSA"})
			return err
		},
		"Encrypt": func() error {
			_, err := c.Encrypt(ctx, &kms.EncryptInput{KeyId: enc, Plaintext: []byte("x"), EncryptionAlgorithm: "SM2PKE"})
			return err
		},
		"Decrypt": func() error {
			_, err := c.Decrypt(ctx, &kms.DecryptInput{KeyId: enc, CiphertextBlob: []byte{0x30, 0}, EncryptionAlgorithm: "SM2PKE"})
			return err
		},
		"ReEncrypt": func() error {
			_, err := c.ReEncrypt(ctx, &kms.ReEncryptInput{CiphertextBlob: symCT.CiphertextBlob, DestinationKeyId: enc, DestinationEncryptionAlgorithm: "SM2PKE"})
			return err
		},
		"GenerateDataKeyPair": func() error {
			_, err := c.GenerateDataKeyPair(ctx, &kms.GenerateDataKeyPairInput{KeyId: &sym, KeyPairSpec: "SM2"})
			return err
		},
		"DeriveSharedSecret": func() error {
			_, err := c.DeriveSharedSecret(ctx, &kms.DeriveSharedSecretInput{KeyId: agree, KeyAgreementAlgorithm: "ECDH", PublicKey: []byte{0x30, 0}})
			return err
		},
	}
	for name, call := range calls {
		err := call()
		if err == nil {
			t.Fatalf("%s with the SM quota at 0 succeeded", name)
		}
		wantAPIError(t, err, "ThrottlingException")
	}
	// With the SM quota open and the symmetric one closed, SM2 Sign passes.
	ts2, ids2 := quotaServer(map[quota.Group]float64{quota.Symmetric: 0}, "SIGN_VERIFY")
	if _, err := ts2.client.Sign(ctx, &kms.SignInput{KeyId: ids2[0], Message: []byte("m"), SigningAlgorithm: "SM2DSA"}); err != nil {
		t.Fatalf("SM2 Sign with the symmetric quota at 0: %v", err)
	}
}

// TestSM2Tables: the spec and algorithm matrix of the encryption
// operations and the plaintext limits, without a server.
func TestSM2Tables(t *testing.T) {
	key := func(spec string) *cluster.Key { return &cluster.Key{KeySpec: spec, Arn: "arn:test"} }
	for _, c := range []struct {
		spec, alg, want string
		limit           int
	}{
		{"SM2", "SM2PKE", "", 1024},
		{"SM2", "RSAES_OAEP_SHA_1", errInvalidKeyUsage, 0},
		{"SM2", "SYMMETRIC_DEFAULT", errInvalidKeyUsage, 0},
		{"SM2", "SM4", errValidation, 0},
		{"RSA_2048", "SM2PKE", errInvalidKeyUsage, 0},
		{"RSA_2048", "RSAES_OAEP_SHA_1", "", 214},
		{"RSA_2048", "RSAES_OAEP_SHA_256", "", 190},
		{"RSA_3072", "RSAES_OAEP_SHA_1", "", 342},
		{"RSA_3072", "RSAES_OAEP_SHA_256", "", 318},
		{"RSA_4096", "RSAES_OAEP_SHA_1", "", 470},
		{"RSA_4096", "RSAES_OAEP_SHA_256", "", 446},
	} {
		a, err := asymEncAlg(key(c.spec), aws.String(c.alg))
		got := ""
		if err != nil {
			got = err.(*APIError).Type
		}
		if got != c.want {
			t.Errorf("%s %s: %q, want %q", c.spec, c.alg, got, c.want)
			continue
		}
		if err == nil && (a.name != c.alg || maxAsymPlaintext(c.spec, a) != c.limit) {
			t.Errorf("%s %s: %+v, limit %d, want %d", c.spec, c.alg, a, maxAsymPlaintext(c.spec, a), c.limit)
		}
	}
	for _, c := range []struct {
		mt   string
		n    int
		want string
	}{
		{"RAW", 1, ""}, {"RAW", 4096, ""}, {"DIGEST", 32, ""}, {"DIGEST", 31, errValidation},
		{"DIGEST", 64, errValidation}, {"EXTERNAL_MU", 64, errValidation},
	} {
		_, err := signInput("SM2DSA", sigAlgs["SM2DSA"], c.mt, make([]byte, c.n))
		got := ""
		if err != nil {
			got = err.(*APIError).Type
		}
		if got != c.want {
			t.Errorf("SM2DSA %s %d bytes: %q, want %q", c.mt, c.n, got, c.want)
		}
	}
}
