package agent

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/kmsd/kmsd/hsmpool/hsmtest"
)

func TestCreateDescribeList(t *testing.T) {
	ts := newTestServer(t)
	ctx := context.Background()
	out, err := ts.client.CreateKey(ctx, &kms.CreateKeyInput{
		Description: aws.String("app key"),
		Tags:        []types.Tag{{TagKey: aws.String("team"), TagValue: aws.String("payments")}},
	})
	if err != nil {
		t.Fatal(err)
	}
	md := out.KeyMetadata
	if md.KeyState != types.KeyStateEnabled || !md.Enabled || md.KeySpec != types.KeySpecSymmetricDefault ||
		md.KeyUsage != types.KeyUsageTypeEncryptDecrypt || md.Origin != types.OriginTypeAwsKms ||
		*md.Description != "app key" || *md.AWSAccountId != "111122223333" || md.CreationDate == nil ||
		len(md.EncryptionAlgorithms) != 1 || md.KeyManager != types.KeyManagerTypeCustomer {
		t.Fatalf("metadata: %+v", md)
	}
	id, arn := *md.KeyId, *md.Arn
	if arn != "arn:aws:kms:us-east-1:111122223333:key/"+id {
		t.Fatalf("arn %s", arn)
	}
	if _, err := ts.client.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String("alias/app"), TargetKeyId: &id}); err != nil {
		t.Fatal(err)
	}
	for _, ref := range []string{id, arn, "alias/app", "arn:aws:kms:us-east-1:111122223333:alias/app"} {
		d, err := ts.client.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(ref)})
		if err != nil {
			t.Fatalf("describe %s: %v", ref, err)
		}
		if *d.KeyMetadata.KeyId != id {
			t.Fatalf("describe %s gave %s", ref, *d.KeyMetadata.KeyId)
		}
	}
	for ref, code := range map[string]string{
		"alias/none":                           "NotFoundException",
		"00000000-0000-0000-0000-000000000000": "NotFoundException",
		"not-a-key":                            "NotFoundException",
		"arn:aws:kms:eu-west-1:111122223333:key/" + id: "NotFoundException",
	} {
		_, err := ts.client.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(ref)})
		wantAPIError(t, err, code)
	}

	// ListKeys pages through every key exactly once.
	want := map[string]bool{id: true}
	for i := 0; i < 4; i++ {
		want[ts.createKey(t)] = true
	}
	got := map[string]bool{}
	p := kms.NewListKeysPaginator(ts.client, &kms.ListKeysInput{Limit: aws.Int32(2)})
	pages := 0
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, k := range page.Keys {
			if got[*k.KeyId] {
				t.Fatalf("key %s listed twice", *k.KeyId)
			}
			got[*k.KeyId] = true
		}
	}
	if len(got) != len(want) || pages != 3 {
		t.Fatalf("listed %d keys in %d pages, want %d in 3", len(got), pages, len(want))
	}
	_, err = ts.client.ListKeys(ctx, &kms.ListKeysInput{Limit: aws.Int32(0)})
	wantAPIError(t, err, "ValidationException")
	_, err = ts.client.ListKeys(ctx, &kms.ListKeysInput{Marker: aws.String("garbage")})
	wantAPIError(t, err, "InvalidMarkerException")
}

func TestEncryptDecryptRoundTrip(t *testing.T) {
	ts := newTestServer(t)
	ctx := context.Background()
	id := ts.createKey(t)
	if _, err := ts.client.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String("alias/rt"), TargetKeyId: &id}); err != nil {
		t.Fatal(err)
	}
	ec := map[string]string{"tenant": "42", "purpose": "test"}
	for _, n := range []int{1, 32, 4096} {
		pt := bytes.Repeat([]byte{byte(n)}, n)
		enc, err := ts.client.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String("alias/rt"), Plaintext: pt, EncryptionContext: ec})
		if err != nil {
			t.Fatalf("encrypt %d: %v", n, err)
		}
		if *enc.KeyId != "arn:aws:kms:us-east-1:111122223333:key/"+id || enc.EncryptionAlgorithm != types.EncryptionAlgorithmSpecSymmetricDefault {
			t.Fatalf("encrypt response %+v", enc)
		}
		// KeyId is optional on Decrypt for symmetric keys.
		dec, err := ts.client.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob, EncryptionContext: ec})
		if err != nil {
			t.Fatalf("decrypt %d: %v", n, err)
		}
		if !bytes.Equal(dec.Plaintext, pt) || *dec.KeyId != *enc.KeyId {
			t.Fatalf("decrypt %d: wrong plaintext or key", n)
		}
		dec, err = ts.client.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob, EncryptionContext: ec, KeyId: aws.String(id)})
		if err != nil || !bytes.Equal(dec.Plaintext, pt) {
			t.Fatalf("decrypt with KeyId: %v", err)
		}
	}
	// Same plaintext twice: different blobs.
	a, _ := ts.client.Encrypt(ctx, &kms.EncryptInput{KeyId: &id, Plaintext: []byte("x")})
	b, _ := ts.client.Encrypt(ctx, &kms.EncryptInput{KeyId: &id, Plaintext: []byte("x")})
	if bytes.Equal(a.CiphertextBlob, b.CiphertextBlob) {
		t.Fatal("two encryptions gave the same blob")
	}
}

func TestGenerateDataKey(t *testing.T) {
	ts := newTestServer(t)
	ctx := context.Background()
	id := ts.createKey(t)
	ec := map[string]string{"k": "v"}
	cases := []struct {
		in   kms.GenerateDataKeyInput
		size int
	}{
		{kms.GenerateDataKeyInput{KeySpec: types.DataKeySpecAes256}, 32},
		{kms.GenerateDataKeyInput{KeySpec: types.DataKeySpecAes128}, 16},
		{kms.GenerateDataKeyInput{NumberOfBytes: aws.Int32(1)}, 1},
		{kms.GenerateDataKeyInput{NumberOfBytes: aws.Int32(1024)}, 1024},
	}
	for _, c := range cases {
		in := c.in
		in.KeyId, in.EncryptionContext = &id, ec
		out, err := ts.client.GenerateDataKey(ctx, &in)
		if err != nil {
			t.Fatal(err)
		}
		if len(out.Plaintext) != c.size {
			t.Fatalf("data key of %d bytes, want %d", len(out.Plaintext), c.size)
		}
		dec, err := ts.client.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: out.CiphertextBlob, EncryptionContext: ec})
		if err != nil || !bytes.Equal(dec.Plaintext, out.Plaintext) {
			t.Fatalf("decrypt data key: %v", err)
		}
	}
	wp, err := ts.client.GenerateDataKeyWithoutPlaintext(ctx, &kms.GenerateDataKeyWithoutPlaintextInput{KeyId: &id, KeySpec: types.DataKeySpecAes256})
	if err != nil {
		t.Fatal(err)
	}
	dec, err := ts.client.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: wp.CiphertextBlob})
	if err != nil || len(dec.Plaintext) != 32 {
		t.Fatalf("decrypt data key without plaintext: %v", err)
	}
	r, err := ts.client.GenerateRandom(ctx, &kms.GenerateRandomInput{NumberOfBytes: aws.Int32(1024)})
	if err != nil || len(r.Plaintext) != 1024 {
		t.Fatalf("GenerateRandom: %v", err)
	}
}

func TestBadInput(t *testing.T) {
	ts := newTestServer(t)
	ctx := context.Background()
	id := ts.createKey(t)
	other := ts.createKey(t)
	ec := map[string]string{"a": "b"}
	enc, err := ts.client.Encrypt(ctx, &kms.EncryptInput{KeyId: &id, Plaintext: []byte("secret"), EncryptionContext: ec})
	if err != nil {
		t.Fatal(err)
	}
	blob := enc.CiphertextBlob

	// Every single-byte change anywhere in the blob is InvalidCiphertextException
	// (or NotFound-free: a changed key id names no key, also InvalidCiphertext).
	for i := 0; i < len(blob); i++ {
		bad := bytes.Clone(blob)
		bad[i] ^= 0x01
		_, err := ts.client.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: bad, EncryptionContext: ec})
		wantAPIError(t, err, "InvalidCiphertextException")
	}
	for _, n := range []int{1, 2, 10, 42, len(blob) - 1} {
		_, err := ts.client.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: blob[:n], EncryptionContext: ec})
		wantAPIError(t, err, "InvalidCiphertextException")
	}
	_, err = ts.client.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: append(bytes.Clone(blob), 0), EncryptionContext: ec})
	wantAPIError(t, err, "InvalidCiphertextException")

	// A blob from another node (another HSM token, another key) is foreign.
	ts2 := newTestServer(t)
	id2 := ts2.createKey(t)
	foreign, err := ts2.client.Encrypt(ctx, &kms.EncryptInput{KeyId: &id2, Plaintext: []byte("secret")})
	if err != nil {
		t.Fatal(err)
	}
	_, err = ts.client.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: foreign.CiphertextBlob})
	wantAPIError(t, err, "InvalidCiphertextException")
	// The same blob with this node's key id spliced in still fails: the HSM
	// check binds the header.
	spliced := append(append([]byte{}, blob[:2+len(id)+4]...), foreign.CiphertextBlob[2+len(id2)+4:]...)
	_, err = ts.client.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: spliced, EncryptionContext: ec})
	wantAPIError(t, err, "InvalidCiphertextException")

	for name, c := range map[string]map[string]string{
		"missing context": nil,
		"wrong value":     {"a": "c"},
		"extra pair":      {"a": "b", "c": "d"},
		"case differs":    {"A": "b"},
	} {
		_, err := ts.client.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: blob, EncryptionContext: c})
		if err == nil {
			t.Fatalf("%s: decrypted", name)
		}
		wantAPIError(t, err, "InvalidCiphertextException")
	}
	_, err = ts.client.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: blob, EncryptionContext: ec, KeyId: &other})
	wantAPIError(t, err, "IncorrectKeyException")

	calls := []struct {
		name string
		call func() error
		code string
	}{
		{"encrypt empty", func() error {
			_, err := ts.client.Encrypt(ctx, &kms.EncryptInput{KeyId: &id, Plaintext: []byte{}})
			return err
		}, "ValidationException"},
		{"encrypt 4097", func() error {
			_, err := ts.client.Encrypt(ctx, &kms.EncryptInput{KeyId: &id, Plaintext: make([]byte, 4097)})
			return err
		}, "ValidationException"},
		{"encrypt no key", func() error {
			_, err := ts.client.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String("alias/none"), Plaintext: []byte("x")})
			return err
		}, "NotFoundException"},
		{"gdk no size", func() error {
			_, err := ts.client.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: &id})
			return err
		}, "ValidationException"},
		{"gdk both sizes", func() error {
			_, err := ts.client.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: &id, KeySpec: types.DataKeySpecAes256, NumberOfBytes: aws.Int32(32)})
			return err
		}, "ValidationException"},
		{"gdk 0 bytes", func() error {
			_, err := ts.client.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: &id, NumberOfBytes: aws.Int32(0)})
			return err
		}, "ValidationException"},
		{"gdk 1025 bytes", func() error {
			_, err := ts.client.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: &id, NumberOfBytes: aws.Int32(1025)})
			return err
		}, "ValidationException"},
		{"gdk bad spec", func() error {
			_, err := ts.client.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: &id, KeySpec: "AES_512"})
			return err
		}, "ValidationException"},
		{"random 0", func() error {
			_, err := ts.client.GenerateRandom(ctx, &kms.GenerateRandomInput{NumberOfBytes: aws.Int32(0)})
			return err
		}, "ValidationException"},
		{"random 1025", func() error {
			_, err := ts.client.GenerateRandom(ctx, &kms.GenerateRandomInput{NumberOfBytes: aws.Int32(1025)})
			return err
		}, "ValidationException"},
		{"decrypt too big", func() error {
			_, err := ts.client.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: make([]byte, 6145)})
			return err
		}, "ValidationException"},
		{"dry run", func() error {
			_, err := ts.client.Encrypt(ctx, &kms.EncryptInput{KeyId: &id, Plaintext: []byte("x"), DryRun: aws.Bool(true)})
			return err
		}, "DryRunOperationException"},
		{"sm2 spec, mac usage", func() error {
			_, err := ts.client.CreateKey(ctx, &kms.CreateKeyInput{KeySpec: types.KeySpecSm2, KeyUsage: types.KeyUsageTypeGenerateVerifyMac})
			return err
		}, "ValidationException"},
		{"bad policy", func() error {
			_, err := ts.client.CreateKey(ctx, &kms.CreateKeyInput{Policy: aws.String("{not json")})
			return err
		}, "MalformedPolicyDocumentException"},
		{"aws tag", func() error {
			_, err := ts.client.CreateKey(ctx, &kms.CreateKeyInput{Tags: []types.Tag{{TagKey: aws.String("aws:x"), TagValue: aws.String("y")}}})
			return err
		}, "TagException"},
		{"alias reserved", func() error {
			_, err := ts.client.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String("alias/aws/s3"), TargetKeyId: &id})
			return err
		}, "InvalidAliasNameException"},
		{"alias no prefix", func() error {
			_, err := ts.client.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String("app"), TargetKeyId: &id})
			return err
		}, "InvalidAliasNameException"},
		{"alias bad chars", func() error {
			_, err := ts.client.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String("alias/a b"), TargetKeyId: &id})
			return err
		}, "ValidationException"},
		{"not yet", func() error {
			_, err := ts.client.GetPublicKey(ctx, &kms.GetPublicKeyInput{KeyId: &id})
			return err
		}, "UnsupportedOperationException"},
	}
	for _, c := range calls {
		t.Run(c.name, func(t *testing.T) { wantAPIError(t, c.call(), c.code) })
	}
	if _, err := ts.client.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String("alias/dup"), TargetKeyId: &id}); err != nil {
		t.Fatal(err)
	}
	_, err = ts.client.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String("alias/dup"), TargetKeyId: &id})
	wantAPIError(t, err, "AlreadyExistsException")
}

func TestRestartKeepsKeys(t *testing.T) {
	lib, label, pin := hsmtest.NewToken(t)
	dir := t.TempDir()
	tok := tokenRef{lib, label, pin}
	ts := startTestServer(t, dir, tok)
	ctx := context.Background()
	id := ts.createKey(t)
	if _, err := ts.client.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String("alias/keep"), TargetKeyId: &id}); err != nil {
		t.Fatal(err)
	}
	enc, err := ts.client.Encrypt(ctx, &kms.EncryptInput{KeyId: &id, Plaintext: []byte("survives")})
	if err != nil {
		t.Fatal(err)
	}
	admin := ts.admin
	ts.stop()

	ts2 := startTestServer(t, dir, tok)
	if ts2.admin != admin {
		t.Fatalf("admin access key changed across restart")
	}
	dec, err := ts2.client.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob})
	if err != nil || string(dec.Plaintext) != "survives" {
		t.Fatalf("decrypt after restart: %v", err)
	}
	if _, err := ts2.client.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String("alias/keep")}); err != nil {
		t.Fatalf("alias after restart: %v", err)
	}
}

func TestAliases(t *testing.T) {
	ts := newTestServer(t)
	ctx := context.Background()
	a, b := ts.createKey(t), ts.createKey(t)
	for i := 0; i < 3; i++ {
		if _, err := ts.client.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String(fmt.Sprintf("alias/a%d", i)), TargetKeyId: &a}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := ts.client.UpdateAlias(ctx, &kms.UpdateAliasInput{AliasName: aws.String("alias/a2"), TargetKeyId: &b}); err != nil {
		t.Fatal(err)
	}
	la, err := ts.client.ListAliases(ctx, &kms.ListAliasesInput{KeyId: &a})
	if err != nil || len(la.Aliases) != 2 {
		t.Fatalf("list by key: %v %d", err, len(la.Aliases))
	}
	all, err := ts.client.ListAliases(ctx, &kms.ListAliasesInput{Limit: aws.Int32(2)})
	if err != nil || len(all.Aliases) != 2 || !all.Truncated {
		t.Fatalf("list page: %v %+v", err, all)
	}
	if _, err := ts.client.DeleteAlias(ctx, &kms.DeleteAliasInput{AliasName: aws.String("alias/a0")}); err != nil {
		t.Fatal(err)
	}
	_, err = ts.client.DeleteAlias(ctx, &kms.DeleteAliasInput{AliasName: aws.String("alias/a0")})
	wantAPIError(t, err, "NotFoundException")
	_, err = ts.client.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String("alias/x"), TargetKeyId: aws.String("alias/a1")})
	wantAPIError(t, err, "ValidationException")
}
