package agent

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/kmsd/kmsd/hsmpool/hsmtest"
	"github.com/kmsd/kmsd/quota"
)

// guideTable is the AWS KMS Developer Guide's key-state table for the
// operations kmsd serves, written out from the guide (not from the code's
// table) for the states a symmetric AWS_KMS key can reach: "" = succeeds.
var guideTable = map[string][3]string{ // Enabled, Disabled, PendingDeletion
	"Encrypt":                         {"", "DisabledException", "KMSInvalidStateException"},
	"Decrypt":                         {"", "DisabledException", "KMSInvalidStateException"},
	"ReEncrypt":                       {"", "DisabledException", "KMSInvalidStateException"},
	"GenerateDataKey":                 {"", "DisabledException", "KMSInvalidStateException"},
	"GenerateDataKeyWithoutPlaintext": {"", "DisabledException", "KMSInvalidStateException"},
	"DescribeKey":                     {"", "", ""},
	"ListAliases":                     {"", "", ""},
	"ListResourceTags":                {"", "", ""},
	"GetKeyRotationStatus":            {"", "", ""},
	"ListKeyRotations":                {"", "", ""},
	"GetKeyLastUsage":                 {"", "", ""},
	"CreateAlias":                     {"", "", "KMSInvalidStateException"},
	"TagResource":                     {"", "", "KMSInvalidStateException"},
	"UntagResource":                   {"", "", "KMSInvalidStateException"},
	"UpdateKeyDescription":            {"", "", "KMSInvalidStateException"},
	"EnableKey":                       {"", "", "KMSInvalidStateException"},
	"DisableKey":                      {"", "", "KMSInvalidStateException"},
	"EnableKeyRotation":               {"", "DisabledException", "KMSInvalidStateException"},
	"DisableKeyRotation":              {"", "DisabledException", "KMSInvalidStateException"},
	"RotateKeyOnDemand":               {"", "DisabledException", "KMSInvalidStateException"},
	"ScheduleKeyDeletion":             {"", "", "KMSInvalidStateException"},
	"CancelKeyDeletion":               {"KMSInvalidStateException", "KMSInvalidStateException", ""},
}

// TestKeyStateTable runs every operation on a key in each state, through
// the SDK, and checks the outcome against the guide's table.
func TestKeyStateTable(t *testing.T) {
	ts := newTestServer(t)
	ctx := context.Background()
	c := ts.client
	helper := ts.createKey(t)
	states := []string{"Enabled", "Disabled", "PendingDeletion"}
	n := 0
	for col, state := range states {
		for op, row := range guideTable {
			n++
			// A fresh key per cell, so one cell cannot change another.
			id := ts.createKey(t)
			k := aws.String(id)
			blob, err := c.Encrypt(ctx, &kms.EncryptInput{KeyId: k, Plaintext: []byte("x")})
			if err != nil {
				t.Fatal(err)
			}
			switch state {
			case "Disabled":
				_, err = c.DisableKey(ctx, &kms.DisableKeyInput{KeyId: k})
			case "PendingDeletion":
				_, err = c.ScheduleKeyDeletion(ctx, &kms.ScheduleKeyDeletionInput{KeyId: k, PendingWindowInDays: aws.Int32(7)})
			}
			if err != nil {
				t.Fatal(err)
			}
			var call error
			switch op {
			case "Encrypt":
				_, call = c.Encrypt(ctx, &kms.EncryptInput{KeyId: k, Plaintext: []byte("x")})
			case "Decrypt":
				_, call = c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: blob.CiphertextBlob})
			case "ReEncrypt":
				_, call = c.ReEncrypt(ctx, &kms.ReEncryptInput{CiphertextBlob: blob.CiphertextBlob, DestinationKeyId: aws.String(helper)})
			case "GenerateDataKey":
				_, call = c.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: k, KeySpec: types.DataKeySpecAes256})
			case "GenerateDataKeyWithoutPlaintext":
				_, call = c.GenerateDataKeyWithoutPlaintext(ctx, &kms.GenerateDataKeyWithoutPlaintextInput{KeyId: k, NumberOfBytes: aws.Int32(8)})
			case "DescribeKey":
				_, call = c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: k})
			case "ListAliases":
				_, call = c.ListAliases(ctx, &kms.ListAliasesInput{KeyId: k})
			case "ListResourceTags":
				_, call = c.ListResourceTags(ctx, &kms.ListResourceTagsInput{KeyId: k})
			case "GetKeyRotationStatus":
				_, call = c.GetKeyRotationStatus(ctx, &kms.GetKeyRotationStatusInput{KeyId: k})
			case "ListKeyRotations":
				_, call = c.ListKeyRotations(ctx, &kms.ListKeyRotationsInput{KeyId: k})
			case "GetKeyLastUsage":
				_, call = c.GetKeyLastUsage(ctx, &kms.GetKeyLastUsageInput{KeyId: k})
			case "CreateAlias":
				_, call = c.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String(fmt.Sprintf("alias/s%d", n)), TargetKeyId: k})
			case "TagResource":
				_, call = c.TagResource(ctx, &kms.TagResourceInput{KeyId: k, Tags: []types.Tag{{TagKey: aws.String("a"), TagValue: aws.String("b")}}})
			case "UntagResource":
				_, call = c.UntagResource(ctx, &kms.UntagResourceInput{KeyId: k, TagKeys: []string{"a"}})
			case "UpdateKeyDescription":
				_, call = c.UpdateKeyDescription(ctx, &kms.UpdateKeyDescriptionInput{KeyId: k, Description: aws.String("d")})
			case "EnableKey":
				_, call = c.EnableKey(ctx, &kms.EnableKeyInput{KeyId: k})
			case "DisableKey":
				_, call = c.DisableKey(ctx, &kms.DisableKeyInput{KeyId: k})
			case "EnableKeyRotation":
				_, call = c.EnableKeyRotation(ctx, &kms.EnableKeyRotationInput{KeyId: k})
			case "DisableKeyRotation":
				_, call = c.DisableKeyRotation(ctx, &kms.DisableKeyRotationInput{KeyId: k})
			case "RotateKeyOnDemand":
				_, call = c.RotateKeyOnDemand(ctx, &kms.RotateKeyOnDemandInput{KeyId: k})
			case "ScheduleKeyDeletion":
				_, call = c.ScheduleKeyDeletion(ctx, &kms.ScheduleKeyDeletionInput{KeyId: k})
			case "CancelKeyDeletion":
				_, call = c.CancelKeyDeletion(ctx, &kms.CancelKeyDeletionInput{KeyId: k})
			default:
				t.Fatalf("no call for %s", op)
			}
			want := row[col]
			if want == "" {
				if call != nil {
					t.Errorf("%s on %s key: %v, want success", op, state, call)
				}
				continue
			}
			if call == nil {
				t.Errorf("%s on %s key succeeded, want %s", op, state, want)
				continue
			}
			t.Run(op+"/"+state, func(t *testing.T) { wantAPIError(t, call, want) })
		}
	}
}

func TestLifecycle(t *testing.T) {
	ts := newTestServer(t)
	ctx := context.Background()
	c := ts.client
	id := ts.createKey(t)
	k := aws.String(id)

	// Management operations take a key id or ARN, not an alias.
	if _, err := c.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String("alias/life"), TargetKeyId: k}); err != nil {
		t.Fatal(err)
	}
	_, err := c.DisableKey(ctx, &kms.DisableKeyInput{KeyId: aws.String("alias/life")})
	wantAPIError(t, err, "NotFoundException")

	if _, err := c.DisableKey(ctx, &kms.DisableKeyInput{KeyId: aws.String(ts.keyArn(id))}); err != nil {
		t.Fatal(err)
	}
	d, _ := c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: k})
	if d.KeyMetadata.Enabled || d.KeyMetadata.KeyState != types.KeyStateDisabled {
		t.Fatalf("after DisableKey: %+v", d.KeyMetadata)
	}
	_, err = c.Encrypt(ctx, &kms.EncryptInput{KeyId: k, Plaintext: []byte("x")})
	wantAPIError(t, err, "DisabledException")
	if _, err := c.EnableKey(ctx, &kms.EnableKeyInput{KeyId: k}); err != nil {
		t.Fatal(err)
	}

	_, err = c.ScheduleKeyDeletion(ctx, &kms.ScheduleKeyDeletionInput{KeyId: k, PendingWindowInDays: aws.Int32(6)})
	wantAPIError(t, err, "ValidationException")
	_, err = c.ScheduleKeyDeletion(ctx, &kms.ScheduleKeyDeletionInput{KeyId: k, PendingWindowInDays: aws.Int32(31)})
	wantAPIError(t, err, "ValidationException")
	sd, err := c.ScheduleKeyDeletion(ctx, &kms.ScheduleKeyDeletionInput{KeyId: k})
	if err != nil {
		t.Fatal(err)
	}
	if *sd.PendingWindowInDays != 30 || sd.KeyState != types.KeyStatePendingDeletion || *sd.KeyId != ts.keyArn(id) ||
		sd.DeletionDate.Before(time.Now().Add(29*24*time.Hour)) {
		t.Fatalf("ScheduleKeyDeletion: %+v", sd)
	}
	d, _ = c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: k})
	if d.KeyMetadata.DeletionDate == nil || *d.KeyMetadata.PendingDeletionWindowInDays != 30 {
		t.Fatalf("DescribeKey while pending deletion: %+v", d.KeyMetadata)
	}
	cd, err := c.CancelKeyDeletion(ctx, &kms.CancelKeyDeletionInput{KeyId: k})
	if err != nil || *cd.KeyId != ts.keyArn(id) {
		t.Fatalf("CancelKeyDeletion: %v", err)
	}
	d, _ = c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: k})
	if d.KeyMetadata.KeyState != types.KeyStateDisabled || d.KeyMetadata.DeletionDate != nil {
		t.Fatalf("after CancelKeyDeletion: %+v", d.KeyMetadata)
	}
	c.EnableKey(ctx, &kms.EnableKeyInput{KeyId: k})

	if _, err := c.UpdateKeyDescription(ctx, &kms.UpdateKeyDescriptionInput{KeyId: k, Description: aws.String("new")}); err != nil {
		t.Fatal(err)
	}
	d, _ = c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: k})
	if *d.KeyMetadata.Description != "new" {
		t.Fatal("description not updated")
	}

	// Tags: add, overwrite, page, remove, limit.
	var tags []types.Tag
	for i := 0; i < 5; i++ {
		tags = append(tags, types.Tag{TagKey: aws.String(fmt.Sprintf("t%d", i)), TagValue: aws.String("v")})
	}
	if _, err := c.TagResource(ctx, &kms.TagResourceInput{KeyId: k, Tags: tags}); err != nil {
		t.Fatal(err)
	}
	got := 0
	for p := kms.NewListResourceTagsPaginator(c, &kms.ListResourceTagsInput{KeyId: k, Limit: aws.Int32(2)}); p.HasMorePages(); {
		page, err := p.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		got += len(page.Tags)
	}
	if got != 5 {
		t.Fatalf("paged %d tags", got)
	}
	if _, err := c.UntagResource(ctx, &kms.UntagResourceInput{KeyId: k, TagKeys: []string{"t0", "t1"}}); err != nil {
		t.Fatal(err)
	}
	lt, _ := c.ListResourceTags(ctx, &kms.ListResourceTagsInput{KeyId: k})
	if len(lt.Tags) != 3 {
		t.Fatalf("after untag: %d", len(lt.Tags))
	}
	tags = nil
	for i := 0; i < 48; i++ {
		tags = append(tags, types.Tag{TagKey: aws.String(fmt.Sprintf("u%d", i)), TagValue: aws.String("v")})
	}
	_, err = c.TagResource(ctx, &kms.TagResourceInput{KeyId: k, Tags: tags})
	wantAPIError(t, err, "LimitExceededException")

	// ReEncrypt to another key and context.
	other := ts.createKey(t)
	enc, _ := c.Encrypt(ctx, &kms.EncryptInput{KeyId: k, Plaintext: []byte("move me"), EncryptionContext: map[string]string{"a": "1"}})
	re, err := c.ReEncrypt(ctx, &kms.ReEncryptInput{CiphertextBlob: enc.CiphertextBlob, SourceEncryptionContext: map[string]string{"a": "1"},
		DestinationKeyId: aws.String(other), DestinationEncryptionContext: map[string]string{"b": "2"}})
	if err != nil {
		t.Fatal(err)
	}
	if *re.SourceKeyId != ts.keyArn(id) || *re.KeyId != ts.keyArn(other) || re.SourceKeyMaterialId == nil {
		t.Fatalf("ReEncrypt response: %+v", re)
	}
	dec, err := c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: re.CiphertextBlob, EncryptionContext: map[string]string{"b": "2"}})
	if err != nil || string(dec.Plaintext) != "move me" || *dec.KeyId != ts.keyArn(other) {
		t.Fatalf("decrypt re-encrypted: %v", err)
	}
	_, err = c.ReEncrypt(ctx, &kms.ReEncryptInput{CiphertextBlob: enc.CiphertextBlob, SourceEncryptionContext: map[string]string{"a": "1"},
		SourceKeyId: aws.String(other), DestinationKeyId: aws.String(other)})
	wantAPIError(t, err, "IncorrectKeyException")
	_, err = c.ReEncrypt(ctx, &kms.ReEncryptInput{CiphertextBlob: enc.CiphertextBlob, DestinationKeyId: aws.String(other)})
	wantAPIError(t, err, "InvalidCiphertextException")

	lu, err := c.GetKeyLastUsage(ctx, &kms.GetKeyLastUsageInput{KeyId: aws.String(other)})
	if err != nil || lu.KeyLastUsage == nil || lu.KeyLastUsage.Operation != types.KeyLastUsageTrackingOperationDecrypt || lu.TrackingStartDate == nil {
		t.Fatalf("GetKeyLastUsage: %v %+v", err, lu)
	}
	fresh := ts.createKey(t)
	lu, err = c.GetKeyLastUsage(ctx, &kms.GetKeyLastUsageInput{KeyId: aws.String(fresh)})
	if err != nil || lu.KeyLastUsage != nil {
		t.Fatalf("GetKeyLastUsage of an unused key: %v %+v", err, lu.KeyLastUsage)
	}
}

func blobVersion(t *testing.T, blob []byte) uint32 {
	t.Helper()
	p, err := parseBlob(blob)
	if err != nil {
		t.Fatal(err)
	}
	return binary.BigEndian.Uint32(p.header[len(p.header)-4:])
}

// TestRotationAndDeletionTimers drives the leader's timers with a fake
// clock: automatic rotation happens once when due, on-demand rotation at
// once, old ciphertexts stay decryptable, and a key is deleted when its
// waiting period ends.
func TestRotationAndDeletionTimers(t *testing.T) {
	ts, clk := newTestServerClock(t)
	ctx := context.Background()
	c := ts.client
	id := ts.createKey(t)
	k := aws.String(id)
	old, _ := c.Encrypt(ctx, &kms.EncryptInput{KeyId: k, Plaintext: []byte("v1")})

	_, err := c.EnableKeyRotation(ctx, &kms.EnableKeyRotationInput{KeyId: k, RotationPeriodInDays: aws.Int32(89)})
	wantAPIError(t, err, "ValidationException")
	_, err = c.EnableKeyRotation(ctx, &kms.EnableKeyRotationInput{KeyId: k, RotationPeriodInDays: aws.Int32(2561)})
	wantAPIError(t, err, "ValidationException")
	if _, err := c.EnableKeyRotation(ctx, &kms.EnableKeyRotationInput{KeyId: k, RotationPeriodInDays: aws.Int32(90)}); err != nil {
		t.Fatal(err)
	}
	st, err := c.GetKeyRotationStatus(ctx, &kms.GetKeyRotationStatusInput{KeyId: k})
	if err != nil || !st.KeyRotationEnabled || *st.RotationPeriodInDays != 90 || st.NextRotationDate == nil {
		t.Fatalf("status: %v %+v", err, st)
	}
	if want := clk.Now().Add(90 * day); st.NextRotationDate.Sub(want).Abs() > 2*time.Second {
		t.Fatalf("NextRotationDate %v, want %v", st.NextRotationDate, want)
	}

	// Not due yet: nothing happens.
	clk.Advance(89 * day)
	if err := ts.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if kk, _ := ts.node.Key(id); len(kk.Materials) != 1 {
		t.Fatalf("rotated early: %d materials", len(kk.Materials))
	}
	clk.Advance(2 * day)
	for i := 0; i < 3; i++ { // repeated ticks rotate once
		if err := ts.Tick(ctx); err != nil {
			t.Fatal(err)
		}
	}
	kk, _ := ts.node.Key(id)
	if len(kk.Materials) != 2 {
		t.Fatalf("after due date: %d materials", len(kk.Materials))
	}
	if _, err := c.RotateKeyOnDemand(ctx, &kms.RotateKeyOnDemandInput{KeyId: k}); err != nil {
		t.Fatal(err)
	}
	lr, err := c.ListKeyRotations(ctx, &kms.ListKeyRotationsInput{KeyId: k})
	if err != nil || len(lr.Rotations) != 2 || lr.Rotations[0].RotationType != types.RotationTypeAutomatic ||
		lr.Rotations[1].RotationType != types.RotationTypeOnDemand || lr.Rotations[1].KeyMaterialState != types.KeyMaterialStateCurrent {
		t.Fatalf("ListKeyRotations: %v %+v", err, lr)
	}
	all, err := c.ListKeyRotations(ctx, &kms.ListKeyRotationsInput{KeyId: k, IncludeKeyMaterial: types.IncludeKeyMaterialAllKeyMaterial, Limit: aws.Int32(2)})
	if err != nil || len(all.Rotations) != 2 || !all.Truncated || all.Rotations[0].RotationDate != nil {
		t.Fatalf("ListKeyRotations ALL: %v %+v", err, all)
	}

	// Old blobs decrypt; new blobs use the newest material.
	dec, err := c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: old.CiphertextBlob})
	if err != nil || string(dec.Plaintext) != "v1" {
		t.Fatalf("old blob after rotation: %v", err)
	}
	nw, _ := c.Encrypt(ctx, &kms.EncryptInput{KeyId: k, Plaintext: []byte("v3")})
	if v := blobVersion(t, nw.CiphertextBlob); v != 3 {
		t.Fatalf("new blob uses material %d, want 3", v)
	}
	d, _ := c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: k})
	if *d.KeyMetadata.CurrentKeyMaterialId != *lr.Rotations[1].KeyMaterialId {
		t.Fatal("CurrentKeyMaterialId is not the newest material")
	}
	if !bytes.Equal(dec.Plaintext, []byte("v1")) || *dec.KeyMaterialId == *d.KeyMetadata.CurrentKeyMaterialId {
		t.Fatal("Decrypt did not report the old material")
	}

	// Deletion when the waiting period ends, not before.
	if _, err := c.ScheduleKeyDeletion(ctx, &kms.ScheduleKeyDeletionInput{KeyId: k, PendingWindowInDays: aws.Int32(7)}); err != nil {
		t.Fatal(err)
	}
	clk.Advance(6 * day)
	ts.Tick(ctx)
	if _, err := c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: k}); err != nil {
		t.Fatalf("deleted early: %v", err)
	}
	clk.Advance(2 * day)
	if err := ts.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	_, err = c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: k})
	wantAPIError(t, err, "NotFoundException")
	_, err = c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: old.CiphertextBlob})
	wantAPIError(t, err, "InvalidCiphertextException")
}

func TestKeyQuota(t *testing.T) {
	lib, label, pin := hsmtest.NewToken(t)
	ts := startTestServerCfg(t, t.TempDir(), tokenRef{lib, label, pin}, Config{MaxKeys: 2})
	ts.createKey(t)
	ts.createKey(t)
	_, err := ts.client.CreateKey(context.Background(), &kms.CreateKeyInput{})
	wantAPIError(t, err, "LimitExceededException")
}

// TestCacheNeverServesUnusableKey: once a Decrypt has cached a batch key,
// disabling the key or scheduling its deletion stops every Decrypt at once,
// and the cache is purged on every such change.
func TestCacheNeverServesUnusableKey(t *testing.T) {
	ts := newTestServer(t)
	ctx := context.Background()
	c := ts.client
	id := ts.createKey(t)
	k := aws.String(id)
	enc, _ := c.Encrypt(ctx, &kms.EncryptInput{KeyId: k, Plaintext: []byte("cached")})
	for i := 0; i < 3; i++ {
		if _, err := c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob}); err != nil {
			t.Fatal(err)
		}
		ts.keyCache.Wait()
	}
	if st := ts.keyCache.Stats(); st.Hits < 2 {
		t.Fatalf("cache not used: %+v", st)
	}
	if _, err := c.DisableKey(ctx, &kms.DisableKeyInput{KeyId: k}); err != nil {
		t.Fatal(err)
	}
	_, err := c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob})
	wantAPIError(t, err, "DisabledException")
	purges := ts.keyCache.Stats().Purges
	if purges == 0 {
		t.Fatal("DisableKey did not purge the cache")
	}
	c.EnableKey(ctx, &kms.EnableKeyInput{KeyId: k})
	hits := ts.keyCache.Stats().Hits
	if _, err := c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob}); err != nil {
		t.Fatal(err)
	}
	if ts.keyCache.Stats().Hits != hits {
		t.Fatal("a batch key cached before DisableKey was served after it")
	}
	ts.keyCache.Wait()
	if _, err := c.ScheduleKeyDeletion(ctx, &kms.ScheduleKeyDeletionInput{KeyId: k, PendingWindowInDays: aws.Int32(7)}); err != nil {
		t.Fatal(err)
	}
	_, err = c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob})
	wantAPIError(t, err, "KMSInvalidStateException")
	if ts.keyCache.Stats().Purges <= purges {
		t.Fatal("ScheduleKeyDeletion did not purge the cache")
	}
	// A cached batch key does not bypass the encryption context check.
	other := ts.createKey(t)
	e2, _ := c.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(other), Plaintext: []byte("x"), EncryptionContext: map[string]string{"a": "b"}})
	c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: e2.CiphertextBlob, EncryptionContext: map[string]string{"a": "b"}})
	ts.keyCache.Wait()
	_, err = c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: e2.CiphertextBlob, EncryptionContext: map[string]string{"a": "c"}})
	wantAPIError(t, err, "InvalidCiphertextException")
}

func TestThrottling(t *testing.T) {
	lib, label, pin := hsmtest.NewToken(t)
	ts := startTestServerCfg(t, t.TempDir(), tokenRef{lib, label, pin},
		Config{Quotas: quota.Config{Rates: map[quota.Group]float64{quota.Symmetric: 5}}})
	ok, throttled := 0, 0
	for i := 0; i < 50; i++ {
		_, err := ts.client.GenerateRandom(context.Background(), &kms.GenerateRandomInput{NumberOfBytes: aws.Int32(8)})
		if err == nil {
			ok++
			continue
		}
		wantAPIError(t, err, "ThrottlingException")
		throttled++
	}
	if ok == 0 || throttled == 0 {
		t.Fatalf("%d accepted, %d throttled: want both", ok, throttled)
	}
	// Management operations have their own buckets: DescribeKey still works.
	if _, err := ts.client.ListKeys(context.Background(), &kms.ListKeysInput{}); err != nil {
		t.Fatalf("ListKeys after symmetric throttling: %v", err)
	}
	if m := scrape(t, ts); !strings.Contains(m, fmt.Sprintf(`kmsd_quota_throttled_total{op="GenerateRandom"} %d`, throttled)) {
		t.Fatalf("/metrics does not count %d throttles", throttled)
	}
}
