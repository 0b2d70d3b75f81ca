package agent

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/kmsd/kmsd/cluster"
	"github.com/kmsd/kmsd/hsmpool/hsmtest"
)

// regionNode is a one-node kmsd cluster serving one Region, with its own
// HSM token (a slot of the process's SoftHSM2 token directory).
type regionNode struct {
	*testServer
	region string
	dir    string
	tok    tokenRef
	clk    *fakeClock
}

func startRegion(t *testing.T, region string, clk *fakeClock) *regionNode {
	t.Helper()
	lib, label, pin := hsmtest.NewToken(t)
	rn := &regionNode{region: region, dir: t.TempDir(), tok: tokenRef{lib, label, pin}, clk: clk}
	rn.start(t)
	return rn
}

// start (re)starts the node on its data dir and token.
func (rn *regionNode) start(t *testing.T) {
	t.Helper()
	rn.testServer = startTestServerCfg(t, rn.dir, rn.tok, Config{Region: rn.region, Now: rn.clk.Now})
	rn.client = kms.New(kms.Options{
		Region:       rn.region,
		BaseEndpoint: aws.String(rn.url),
		Credentials:  credentials.NewStaticCredentialsProvider(rn.admin.ID, rn.admin.Secret, ""),
		Retryer:      testRetryer(),
	})
}

// linkRegions makes every node a peer of every other, as --peer-region and
// --peer-credentials do.
func linkRegions(rs ...*regionNode) {
	for _, a := range rs {
		var peers []Peer
		for _, b := range rs {
			if b != a {
				peers = append(peers, Peer{Region: b.region, URL: b.url, Key: b.admin})
			}
		}
		a.SetPeers(peers)
	}
}

func newRegions(t *testing.T, names ...string) []*regionNode {
	t.Helper()
	clk := &fakeClock{now: time.Now()}
	var rs []*regionNode
	for _, n := range names {
		rs = append(rs, startRegion(t, n, clk))
	}
	linkRegions(rs...)
	return rs
}

func (rn *regionNode) describe(t *testing.T, id string) *types.KeyMetadata {
	t.Helper()
	out, err := rn.client.DescribeKey(context.Background(), &kms.DescribeKeyInput{KeyId: &id})
	if err != nil {
		t.Fatalf("%s: DescribeKey: %v", rn.region, err)
	}
	return out.KeyMetadata
}

func (rn *regionNode) tick(t *testing.T) {
	t.Helper()
	if err := rn.Tick(context.Background()); err != nil {
		t.Fatalf("%s: Tick: %v", rn.region, err)
	}
}

// encryptIn encrypts in a and checks that b decrypts it (without a KeyId,
// and with b's own key ARN).
func encryptIn(t *testing.T, a, b *regionNode, id string) {
	t.Helper()
	ctx := context.Background()
	pt := []byte("from " + a.region + " to " + b.region)
	ec := map[string]string{"app": "mrk"}
	enc, err := a.client.Encrypt(ctx, &kms.EncryptInput{KeyId: &id, Plaintext: pt, EncryptionContext: ec})
	if err != nil {
		t.Fatalf("encrypt in %s: %v", a.region, err)
	}
	dec, err := b.client.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob, EncryptionContext: ec})
	if err != nil {
		t.Fatalf("decrypt in %s of a ciphertext from %s: %v", b.region, a.region, err)
	}
	if !bytes.Equal(dec.Plaintext, pt) || !strings.Contains(*dec.KeyId, ":"+b.region+":") {
		t.Fatalf("decrypt in %s: %q by %s", b.region, dec.Plaintext, *dec.KeyId)
	}
	own, err := a.client.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob, EncryptionContext: ec})
	if err != nil {
		t.Fatalf("decrypt in %s: %v", a.region, err)
	}
	if *dec.KeyMaterialId != *own.KeyMaterialId {
		t.Fatalf("material ids differ across regions: %s vs %s", *own.KeyMaterialId, *dec.KeyMaterialId)
	}
	barn := strings.Replace(*enc.KeyId, ":"+a.region+":", ":"+b.region+":", 1)
	if _, err := b.client.Decrypt(ctx, &kms.DecryptInput{KeyId: &barn, CiphertextBlob: enc.CiphertextBlob, EncryptionContext: ec}); err != nil {
		t.Fatalf("decrypt in %s with KeyId %s: %v", b.region, barn, err)
	}
}

func regionsOf(ks []types.MultiRegionKey) []string {
	var out []string
	for _, k := range ks {
		out = append(out, *k.Region)
	}
	return out
}

func TestMultiRegionKeys(t *testing.T) {
	rs := newRegions(t, "us-east-1", "us-west-2", "eu-west-1")
	east, west, eu := rs[0], rs[1], rs[2]
	ctx := context.Background()

	ck, err := east.client.CreateKey(ctx, &kms.CreateKeyInput{MultiRegion: aws.Bool(true), Description: aws.String("primary")})
	if err != nil {
		t.Fatal(err)
	}
	id := *ck.KeyMetadata.KeyId
	if !strings.HasPrefix(id, "mrk-") || len(id) != 36 || !looksLikeKeyID(id) || !*ck.KeyMetadata.MultiRegion {
		t.Fatalf("multi-Region key id %q", id)
	}
	if c := ck.KeyMetadata.MultiRegionConfiguration; c == nil || c.MultiRegionKeyType != types.MultiRegionKeyTypePrimary ||
		*c.PrimaryKey.Region != "us-east-1" || len(c.ReplicaKeys) != 0 {
		t.Fatalf("primary's configuration: %+v", c)
	}

	// Replicate: Creating first, Enabled once the primary's sync ran.
	rep, err := east.client.ReplicateKey(ctx, &kms.ReplicateKeyInput{KeyId: &id, ReplicaRegion: aws.String("us-west-2"),
		Description: aws.String("west replica"), Tags: []types.Tag{{TagKey: aws.String("team"), TagValue: aws.String("west")}}})
	if err != nil {
		t.Fatal(err)
	}
	md := rep.ReplicaKeyMetadata
	if *md.KeyId != id || *md.Arn != "arn:aws:kms:us-west-2:111122223333:key/"+id || md.KeyState != types.KeyStateCreating ||
		md.MultiRegionConfiguration.MultiRegionKeyType != types.MultiRegionKeyTypeReplica || *md.Description != "west replica" ||
		len(rep.ReplicaTags) != 1 || !strings.Contains(*rep.ReplicaPolicy, "kms:*") {
		t.Fatalf("ReplicateKey answered %+v", rep)
	}
	if st := west.describe(t, id).KeyState; st != types.KeyStateCreating {
		t.Fatalf("replica is %s before the sync", st)
	}
	_, err = west.client.Encrypt(ctx, &kms.EncryptInput{KeyId: &id, Plaintext: []byte("x")})
	wantAPIError(t, err, "KMSInvalidStateException")
	east.tick(t)
	if st := west.describe(t, id).KeyState; st != types.KeyStateEnabled {
		t.Fatalf("replica is %s after the sync", st)
	}
	encryptIn(t, east, west, id)
	encryptIn(t, west, east, id)

	// The guide's rules, with AWS's errors.
	_, err = east.client.ReplicateKey(ctx, &kms.ReplicateKeyInput{KeyId: &id, ReplicaRegion: aws.String("us-west-2")})
	wantAPIError(t, err, "AlreadyExistsException")
	_, err = east.client.ReplicateKey(ctx, &kms.ReplicateKeyInput{KeyId: &id, ReplicaRegion: aws.String("us-east-1")})
	wantAPIError(t, err, "AlreadyExistsException")
	_, err = east.client.ReplicateKey(ctx, &kms.ReplicateKeyInput{KeyId: &id, ReplicaRegion: aws.String("ap-south-1")})
	wantAPIError(t, err, "UnsupportedOperationException")
	_, err = west.client.ReplicateKey(ctx, &kms.ReplicateKeyInput{KeyId: &id, ReplicaRegion: aws.String("eu-west-1")})
	wantAPIError(t, err, "UnsupportedOperationException")
	single := east.createKey(t)
	_, err = east.client.ReplicateKey(ctx, &kms.ReplicateKeyInput{KeyId: &single, ReplicaRegion: aws.String("us-west-2")})
	wantAPIError(t, err, "UnsupportedOperationException")
	_, err = east.client.ReplicateKey(ctx, &kms.ReplicateKeyInput{KeyId: aws.String("mrk-00000000000000000000000000000000"), ReplicaRegion: aws.String("us-west-2")})
	wantAPIError(t, err, "NotFoundException")
	_, err = east.client.ReplicateKey(ctx, &kms.ReplicateKeyInput{KeyId: &id, ReplicaRegion: aws.String("eu-west-1"), Policy: aws.String("{not json")})
	wantAPIError(t, err, "MalformedPolicyDocumentException")
	if _, err := eu.client.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: &id}); err == nil {
		t.Fatal("a refused ReplicateKey left a key in eu-west-1")
	}
	if _, err := east.client.DisableKey(ctx, &kms.DisableKeyInput{KeyId: &id}); err != nil {
		t.Fatal(err)
	}
	_, err = east.client.ReplicateKey(ctx, &kms.ReplicateKeyInput{KeyId: &id, ReplicaRegion: aws.String("eu-west-1")})
	wantAPIError(t, err, "DisabledException")
	if _, err := east.client.EnableKey(ctx, &kms.EnableKeyInput{KeyId: &id}); err != nil {
		t.Fatal(err)
	}

	// A third Region; every related key lists all of them.
	if _, err := east.client.ReplicateKey(ctx, &kms.ReplicateKeyInput{KeyId: &id, ReplicaRegion: aws.String("eu-west-1")}); err != nil {
		t.Fatal(err)
	}
	east.tick(t)
	for _, rn := range rs {
		c := rn.describe(t, id).MultiRegionConfiguration
		if *c.PrimaryKey.Region != "us-east-1" || strings.Join(regionsOf(c.ReplicaKeys), ",") != "us-west-2,eu-west-1" {
			t.Fatalf("%s sees primary %s, replicas %v", rn.region, *c.PrimaryKey.Region, regionsOf(c.ReplicaKeys))
		}
	}
	encryptIn(t, eu, west, id)

	// Independent properties stay independent.
	if _, err := west.client.UpdateKeyDescription(ctx, &kms.UpdateKeyDescriptionInput{KeyId: &id, Description: aws.String("changed in west")}); err != nil {
		t.Fatal(err)
	}
	if _, err := west.client.DisableKey(ctx, &kms.DisableKeyInput{KeyId: &id}); err != nil {
		t.Fatal(err)
	}
	if _, err := west.client.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String("alias/west-only"), TargetKeyId: &id}); err != nil {
		t.Fatal(err)
	}
	east.tick(t)
	if d := east.describe(t, id); *d.Description != "primary" || d.KeyState != types.KeyStateEnabled {
		t.Fatalf("primary after replica changes: %q %s", *d.Description, d.KeyState)
	}
	if d := west.describe(t, id); *d.Description != "changed in west" || d.KeyState != types.KeyStateDisabled {
		t.Fatalf("replica after a sync: %q %s", *d.Description, d.KeyState)
	}
	if _, err := east.client.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String("alias/west-only")}); err == nil {
		t.Fatal("an alias made in us-west-2 resolves in us-east-1")
	}
	tags, err := east.client.ListResourceTags(ctx, &kms.ListResourceTagsInput{KeyId: &id})
	if err != nil || len(tags.Tags) != 0 {
		t.Fatalf("primary has the replica's tags: %v %v", tags, err)
	}
	if _, err := west.client.EnableKey(ctx, &kms.EnableKeyInput{KeyId: &id}); err != nil {
		t.Fatal(err)
	}

	// Rotation is set and done on the primary and reaches the replicas.
	_, err = west.client.RotateKeyOnDemand(ctx, &kms.RotateKeyOnDemandInput{KeyId: &id})
	wantAPIError(t, err, "UnsupportedOperationException")
	_, err = west.client.EnableKeyRotation(ctx, &kms.EnableKeyRotationInput{KeyId: &id})
	wantAPIError(t, err, "UnsupportedOperationException")
	old, err := east.client.Encrypt(ctx, &kms.EncryptInput{KeyId: &id, Plaintext: []byte("before rotation")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := east.client.RotateKeyOnDemand(ctx, &kms.RotateKeyOnDemandInput{KeyId: &id}); err != nil {
		t.Fatal(err)
	}
	if _, err := east.client.EnableKeyRotation(ctx, &kms.EnableKeyRotationInput{KeyId: &id}); err != nil {
		t.Fatal(err)
	}
	east.tick(t)
	cur := *east.describe(t, id).CurrentKeyMaterialId
	for _, rn := range []*regionNode{west, eu} {
		if got := *rn.describe(t, id).CurrentKeyMaterialId; got != cur {
			t.Fatalf("%s's current material %s, primary's %s", rn.region, got, cur)
		}
		rot, err := rn.client.GetKeyRotationStatus(ctx, &kms.GetKeyRotationStatusInput{KeyId: &id})
		if err != nil || !rot.KeyRotationEnabled {
			t.Fatalf("%s: rotation status not synced: %+v %v", rn.region, rot, err)
		}
		lr, err := rn.client.ListKeyRotations(ctx, &kms.ListKeyRotationsInput{KeyId: &id})
		if err != nil || len(lr.Rotations) != 1 || lr.Rotations[0].RotationType != types.RotationTypeOnDemand {
			t.Fatalf("%s: rotations %+v %v", rn.region, lr, err)
		}
		if _, err := rn.client.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: old.CiphertextBlob}); err != nil {
			t.Fatalf("%s: old ciphertext after rotation: %v", rn.region, err)
		}
	}
	encryptIn(t, east, west, id)
	encryptIn(t, east, eu, id)

	// UpdatePrimaryRegion: both Updating, then the roles are swapped.
	_, err = east.client.UpdatePrimaryRegion(ctx, &kms.UpdatePrimaryRegionInput{KeyId: &id, PrimaryRegion: aws.String("ap-south-1")})
	wantAPIError(t, err, "NotFoundException")
	_, err = west.client.UpdatePrimaryRegion(ctx, &kms.UpdatePrimaryRegionInput{KeyId: &id, PrimaryRegion: aws.String("eu-west-1")})
	wantAPIError(t, err, "UnsupportedOperationException")
	if _, err := east.client.UpdatePrimaryRegion(ctx, &kms.UpdatePrimaryRegionInput{KeyId: &id, PrimaryRegion: aws.String("us-west-2")}); err != nil {
		t.Fatal(err)
	}
	for _, rn := range []*regionNode{east, west} {
		if st := rn.describe(t, id).KeyState; st != types.KeyStateUpdating {
			t.Fatalf("%s is %s during UpdatePrimaryRegion", rn.region, st)
		}
	}
	encryptIn(t, east, west, id) // crypto keeps working while Updating
	_, err = east.client.ScheduleKeyDeletion(ctx, &kms.ScheduleKeyDeletionInput{KeyId: &id, PendingWindowInDays: aws.Int32(7)})
	wantAPIError(t, err, "KMSInvalidStateException")
	_, err = east.client.ReplicateKey(ctx, &kms.ReplicateKeyInput{KeyId: &id, ReplicaRegion: aws.String("eu-west-1")})
	wantAPIError(t, err, "KMSInvalidStateException")
	east.tick(t)
	west.tick(t) // ends Updating and pushes the new configuration
	for _, rn := range rs {
		d := rn.describe(t, id)
		c := d.MultiRegionConfiguration
		want := types.MultiRegionKeyTypeReplica
		if rn == west {
			want = types.MultiRegionKeyTypePrimary
		}
		if d.KeyState != types.KeyStateEnabled || c.MultiRegionKeyType != want || *c.PrimaryKey.Region != "us-west-2" ||
			strings.Join(regionsOf(c.ReplicaKeys), ",") != "eu-west-1,us-east-1" {
			t.Fatalf("%s after the swap: %s %s primary %s replicas %v", rn.region, d.KeyState, c.MultiRegionKeyType, *c.PrimaryKey.Region, regionsOf(c.ReplicaKeys))
		}
	}
	_, err = east.client.RotateKeyOnDemand(ctx, &kms.RotateKeyOnDemandInput{KeyId: &id})
	wantAPIError(t, err, "UnsupportedOperationException")
	if _, err := west.client.RotateKeyOnDemand(ctx, &kms.RotateKeyOnDemandInput{KeyId: &id}); err != nil {
		t.Fatal(err)
	}
	west.tick(t)
	encryptIn(t, west, east, id)
	encryptIn(t, west, eu, id)
	if !east.describe(t, id).Enabled || *east.describe(t, id).Description != "primary" {
		t.Fatal("the former primary lost its own properties")
	}
}

func TestMultiRegionDeletion(t *testing.T) {
	rs := newRegions(t, "us-east-1", "us-west-2", "eu-west-1")
	east, west, eu := rs[0], rs[1], rs[2]
	ctx := context.Background()
	ck, err := east.client.CreateKey(ctx, &kms.CreateKeyInput{MultiRegion: aws.Bool(true)})
	if err != nil {
		t.Fatal(err)
	}
	id := *ck.KeyMetadata.KeyId
	// kms:MultiRegion on CreateKey in an identity policy.
	alice := east.principal(t, testAlice, `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"kms:CreateKey",
	  "Resource":"*","Condition":{"Bool":{"kms:MultiRegion":"false"}}}]}`)
	_, err = alice.CreateKey(ctx, &kms.CreateKeyInput{MultiRegion: aws.Bool(true)})
	wantAPIError(t, err, "AccessDeniedException")
	if _, err := alice.CreateKey(ctx, &kms.CreateKeyInput{}); err != nil {
		t.Fatalf("single-Region key: %v", err)
	}
	// kms:ReplicaRegion and kms:MultiRegionKeyType in the primary's policy.
	policy := `{"Version":"2012-10-17","Statement":[
	 {"Sid":"all","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"kms:*","Resource":"*"},
	 {"Sid":"not-eu","Effect":"Deny","Principal":{"AWS":"*"},"Action":"kms:ReplicateKey","Resource":"*",
	  "Condition":{"StringEquals":{"kms:ReplicaRegion":"eu-west-1","kms:MultiRegionKeyType":"PRIMARY"}}}]}`
	if _, err := east.client.PutKeyPolicy(ctx, &kms.PutKeyPolicyInput{KeyId: &id, Policy: &policy}); err != nil {
		t.Fatal(err)
	}
	_, err = east.client.ReplicateKey(ctx, &kms.ReplicateKeyInput{KeyId: &id, ReplicaRegion: aws.String("eu-west-1")})
	wantAPIError(t, err, "AccessDeniedException")
	if _, err := east.client.PutKeyPolicy(ctx, &kms.PutKeyPolicyInput{KeyId: &id, Policy: aws.String(strings.Replace(policy, "eu-west-1", "ap-east-1", 1))}); err != nil {
		t.Fatal(err)
	}
	for _, r := range []string{"us-west-2", "eu-west-1"} {
		if _, err := east.client.ReplicateKey(ctx, &kms.ReplicateKeyInput{KeyId: &id, ReplicaRegion: &r}); err != nil {
			t.Fatal(err)
		}
	}
	east.tick(t)

	sk, err := east.client.ScheduleKeyDeletion(ctx, &kms.ScheduleKeyDeletionInput{KeyId: &id, PendingWindowInDays: aws.Int32(7)})
	if err != nil {
		t.Fatal(err)
	}
	if sk.KeyState != types.KeyStatePendingReplicaDeletion || sk.DeletionDate != nil || *sk.PendingWindowInDays != 7 {
		t.Fatalf("primary with replicas: %s %v", sk.KeyState, sk.DeletionDate)
	}
	_, err = east.client.Encrypt(ctx, &kms.EncryptInput{KeyId: &id, Plaintext: []byte("x")})
	wantAPIError(t, err, "KMSInvalidStateException")
	// Cancel and schedule again: PendingReplicaDeletion cancels like PendingDeletion.
	if _, err := east.client.CancelKeyDeletion(ctx, &kms.CancelKeyDeletionInput{KeyId: &id}); err != nil {
		t.Fatal(err)
	}
	if st := east.describe(t, id).KeyState; st != types.KeyStateDisabled {
		t.Fatalf("after cancel: %s", st)
	}
	if _, err := east.client.ScheduleKeyDeletion(ctx, &kms.ScheduleKeyDeletionInput{KeyId: &id, PendingWindowInDays: aws.Int32(7)}); err != nil {
		t.Fatal(err)
	}
	// The replicas still work and have their own waiting periods.
	encryptIn(t, west, eu, id)
	for _, rn := range []*regionNode{west, eu} {
		out, err := rn.client.ScheduleKeyDeletion(ctx, &kms.ScheduleKeyDeletionInput{KeyId: &id, PendingWindowInDays: aws.Int32(7)})
		if err != nil || out.KeyState != types.KeyStatePendingDeletion || out.DeletionDate == nil {
			t.Fatalf("%s: replica deletion: %+v %v", rn.region, out, err)
		}
	}
	east.clk.Advance(8 * day)
	east.tick(t) // the primary is not due: its waiting period has not started
	if st := east.describe(t, id).KeyState; st != types.KeyStatePendingReplicaDeletion {
		t.Fatalf("primary: %s", st)
	}
	west.tick(t) // deletes the west replica and tells the primary
	if c := east.describe(t, id).MultiRegionConfiguration; strings.Join(regionsOf(c.ReplicaKeys), ",") != "eu-west-1" {
		t.Fatalf("primary's replicas after one deletion: %v", regionsOf(c.ReplicaKeys))
	}
	if st := east.describe(t, id).KeyState; st != types.KeyStatePendingReplicaDeletion {
		t.Fatalf("primary with one replica left: %s", st)
	}
	east.tick(t) // the remaining replica learns of the deletion
	if c := eu.describe(t, id).MultiRegionConfiguration; strings.Join(regionsOf(c.ReplicaKeys), ",") != "eu-west-1" {
		t.Fatalf("eu-west-1 sees replicas %v", regionsOf(c.ReplicaKeys))
	}
	eu.tick(t)
	d := east.describe(t, id)
	if d.KeyState != types.KeyStatePendingDeletion || d.DeletionDate == nil ||
		d.DeletionDate.Sub(east.clk.Now()).Round(time.Second) != 7*day {
		t.Fatalf("primary after its last replica: %s %v", d.KeyState, d.DeletionDate)
	}
	east.clk.Advance(8 * day)
	east.tick(t)
	_, err = east.client.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: &id})
	wantAPIError(t, err, "NotFoundException")
}

// TestMultiRegionPeerDown: ReplicateKey to a Region that is down fails with
// nothing made on either side, and a replica that was down while the
// primary rotated catches up when it returns.
func TestMultiRegionPeerDown(t *testing.T) {
	rs := newRegions(t, "us-east-1", "us-west-2")
	east, west := rs[0], rs[1]
	ctx := context.Background()
	ck, err := east.client.CreateKey(ctx, &kms.CreateKeyInput{MultiRegion: aws.Bool(true)})
	if err != nil {
		t.Fatal(err)
	}
	id := *ck.KeyMetadata.KeyId

	// A peer that refuses this cluster's credentials is the service's
	// problem, not an access denial of the caller.
	east.SetPeers([]Peer{{Region: "us-west-2", URL: west.url, Key: AccessKey{ID: "AKIAWRONGWRONGWRONG1", Secret: "wrong"}}})
	_, err = east.client.ReplicateKey(ctx, &kms.ReplicateKeyInput{KeyId: &id, ReplicaRegion: aws.String("us-west-2")})
	wantAPIError(t, err, "KMSInternalException")
	linkRegions(rs...)

	west.stop()
	_, err = east.client.ReplicateKey(ctx, &kms.ReplicateKeyInput{KeyId: &id, ReplicaRegion: aws.String("us-west-2")})
	wantAPIError(t, err, "KMSInternalException")
	if c := east.describe(t, id).MultiRegionConfiguration; len(c.ReplicaKeys) != 0 {
		t.Fatalf("a failed ReplicateKey left replicas %v", regionsOf(c.ReplicaKeys))
	}
	west.start(t)
	linkRegions(rs...)
	_, err = west.client.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: &id})
	wantAPIError(t, err, "NotFoundException")

	if _, err := east.client.ReplicateKey(ctx, &kms.ReplicateKeyInput{KeyId: &id, ReplicaRegion: aws.String("us-west-2")}); err != nil {
		t.Fatal(err)
	}
	east.tick(t)
	encryptIn(t, east, west, id)

	west.stop()
	if _, err := east.client.RotateKeyOnDemand(ctx, &kms.RotateKeyOnDemandInput{KeyId: &id}); err != nil {
		t.Fatal(err)
	}
	if err := east.Tick(ctx); err == nil {
		t.Fatal("the sync to a Region that is down reported no error")
	}
	west.start(t)
	linkRegions(rs...)
	if a, b := *east.describe(t, id).CurrentKeyMaterialId, *west.describe(t, id).CurrentKeyMaterialId; a == b {
		t.Fatal("the replica has the new material before any sync")
	}
	east.tick(t)
	if a, b := *east.describe(t, id).CurrentKeyMaterialId, *west.describe(t, id).CurrentKeyMaterialId; a != b {
		t.Fatalf("the replica did not catch up: %s vs %s", a, b)
	}
	encryptIn(t, east, west, id)
}

// TestMultiRegionTransientStates checks the key-state table's Creating and
// Updating columns ([14], [15]) through the API on real transient keys.
func TestMultiRegionTransientStates(t *testing.T) {
	rs := newRegions(t, "us-east-1", "us-west-2")
	east, west := rs[0], rs[1]
	ctx := context.Background()
	ck, err := east.client.CreateKey(ctx, &kms.CreateKeyInput{MultiRegion: aws.Bool(true)})
	if err != nil {
		t.Fatal(err)
	}
	id := *ck.KeyMetadata.KeyId
	enc, err := east.client.Encrypt(ctx, &kms.EncryptInput{KeyId: &id, Plaintext: []byte("x")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := east.client.ReplicateKey(ctx, &kms.ReplicateKeyInput{KeyId: &id, ReplicaRegion: aws.String("us-west-2")}); err != nil {
		t.Fatal(err)
	}
	principal := aws.String("arn:aws:iam::111122223333:root")
	type call struct {
		name string
		fn   func(c *kms.Client) error
	}
	calls := map[string]call{}
	add := func(name string, fn func(c *kms.Client) error) { calls[name] = call{name, fn} }
	add("Encrypt", func(c *kms.Client) error {
		_, err := c.Encrypt(ctx, &kms.EncryptInput{KeyId: &id, Plaintext: []byte("x")})
		return err
	})
	add("Decrypt", func(c *kms.Client) error {
		_, err := c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob})
		return err
	})
	add("GenerateDataKey", func(c *kms.Client) error {
		_, err := c.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: &id, NumberOfBytes: aws.Int32(16)})
		return err
	})
	add("EnableKey", func(c *kms.Client) error { _, err := c.EnableKey(ctx, &kms.EnableKeyInput{KeyId: &id}); return err })
	add("DisableKey", func(c *kms.Client) error { _, err := c.DisableKey(ctx, &kms.DisableKeyInput{KeyId: &id}); return err })
	add("CreateGrant", func(c *kms.Client) error {
		_, err := c.CreateGrant(ctx, &kms.CreateGrantInput{KeyId: &id, GranteePrincipal: principal, Operations: []types.GrantOperation{types.GrantOperationDecrypt}})
		return err
	})
	add("DescribeKey", func(c *kms.Client) error { _, err := c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: &id}); return err })
	add("TagResource", func(c *kms.Client) error {
		_, err := c.TagResource(ctx, &kms.TagResourceInput{KeyId: &id, Tags: []types.Tag{{TagKey: aws.String("k"), TagValue: aws.String("v")}}})
		return err
	})
	add("UpdateKeyDescription", func(c *kms.Client) error {
		_, err := c.UpdateKeyDescription(ctx, &kms.UpdateKeyDescriptionInput{KeyId: &id, Description: aws.String("d")})
		return err
	})
	add("GetKeyRotationStatus", func(c *kms.Client) error {
		_, err := c.GetKeyRotationStatus(ctx, &kms.GetKeyRotationStatusInput{KeyId: &id})
		return err
	})
	add("ScheduleKeyDeletion", func(c *kms.Client) error {
		_, err := c.ScheduleKeyDeletion(ctx, &kms.ScheduleKeyDeletionInput{KeyId: &id, PendingWindowInDays: aws.Int32(7)})
		return err
	})
	add("ReplicateKey", func(c *kms.Client) error {
		_, err := c.ReplicateKey(ctx, &kms.ReplicateKeyInput{KeyId: &id, ReplicaRegion: aws.String("eu-west-1")})
		return err
	})
	check := func(rn *regionNode, state string, table map[string]string) {
		t.Helper()
		for name, want := range table {
			err := calls[name].fn(rn.client)
			if want == "" {
				if err != nil {
					t.Errorf("%s on a %s key: %v", name, state, err)
				}
				continue
			}
			var msg string
			if err != nil {
				msg = err.Error()
			}
			if err == nil || !strings.Contains(msg, want) || !strings.Contains(msg, "is "+strings.ToLower(state)) {
				t.Errorf("%s on a %s key: want %s (... is %s), got %v", name, state, want, strings.ToLower(state), err)
			}
		}
	}
	// [14]: the replica is Creating until the primary's sync.
	check(west, "Creating", map[string]string{
		"Encrypt": "KMSInvalidStateException", "Decrypt": "KMSInvalidStateException", "GenerateDataKey": "KMSInvalidStateException",
		"EnableKey": "KMSInvalidStateException", "DisableKey": "KMSInvalidStateException", "CreateGrant": "KMSInvalidStateException",
		"DescribeKey": "", "TagResource": "", "UpdateKeyDescription": "", "GetKeyRotationStatus": "",
	})
	east.tick(t)
	if _, err := east.client.UpdatePrimaryRegion(ctx, &kms.UpdatePrimaryRegionInput{KeyId: &id, PrimaryRegion: aws.String("us-west-2")}); err != nil {
		t.Fatal(err)
	}
	// [15]: both keys are Updating until their timers run.
	check(east, "Updating", map[string]string{
		"Encrypt": "", "Decrypt": "", "GenerateDataKey": "", "CreateGrant": "", "DescribeKey": "", "TagResource": "",
		"EnableKey": "KMSInvalidStateException", "DisableKey": "KMSInvalidStateException", "ScheduleKeyDeletion": "KMSInvalidStateException",
	})
	check(west, "Updating", map[string]string{
		"Encrypt": "", "Decrypt": "", "ReplicateKey": "KMSInvalidStateException", "ScheduleKeyDeletion": "KMSInvalidStateException",
	})
	east.tick(t)
	west.tick(t)
	for _, rn := range rs {
		if st := rn.describe(t, id).KeyState; st != types.KeyStateEnabled {
			t.Fatalf("%s after the swap: %s", rn.region, st)
		}
	}
}

// TestMultiRegionAbortReplica: the peer operations refuse what they must,
// and a replica the primary could not record is removed whole.
func TestMultiRegionAbortReplica(t *testing.T) {
	rs := newRegions(t, "us-east-1", "us-west-2")
	east, west := rs[0], rs[1]
	ctx := context.Background()
	ck, err := east.client.CreateKey(ctx, &kms.CreateKeyInput{MultiRegion: aws.Bool(true)})
	if err != nil {
		t.Fatal(err)
	}
	id := *ck.KeyMetadata.KeyId
	k, _ := east.node.Key(id)
	p, _ := east.peer("us-west-2")
	tms, err := east.exportMaterials(ctx, p, k.Materials)
	if err != nil {
		t.Fatal(err)
	}
	cfg := *k.MR
	cfg.Type = "REPLICA"
	cfg.Replicas = append(cfg.Replicas, cluster.RegionKey{Region: "us-west-2", Arn: east.regionArn("us-west-2", id)})
	req := mrkCreateReplicaRequest{KeyId: id, Config: cfg, KeySpec: k.KeySpec, KeyUsage: k.KeyUsage, Origin: k.Origin, Materials: tms}
	bad := req
	bad.Materials = []transportedMaterial{{Version: 1, Key: bytes.Repeat([]byte{1}, 384)}}
	if err := CallCluster(ctx, west.url, "us-west-2", west.admin, "MrkCreateReplica", bad, nil); err == nil {
		t.Fatal("material not made for this HSM was accepted")
	}
	if err := CallCluster(ctx, west.url, "us-west-2", west.admin, "MrkCreateReplica", req, nil); err != nil {
		t.Fatal(err)
	}
	err = CallCluster(ctx, west.url, "us-west-2", west.admin, "MrkCreateReplica", req, nil)
	if ae, ok := err.(*APIError); !ok || ae.Type != errAlreadyExists {
		t.Fatalf("second replica: %v", err)
	}
	if st := west.describe(t, id).KeyState; st != types.KeyStateCreating {
		t.Fatalf("replica is %s", st)
	}
	// The primary never recorded it. Its own cluster removes it after a
	// grace period, asking the primary first...
	west.tick(t)
	if st := west.describe(t, id).KeyState; st != types.KeyStateCreating {
		t.Fatalf("replica is %s within the grace period", st)
	}
	west.clk.Advance(2 * creatingGrace)
	west.tick(t)
	_, err = west.client.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: &id})
	wantAPIError(t, err, "NotFoundException")
	// ... or the primary removes it at once when it can.
	if err := CallCluster(ctx, west.url, "us-west-2", west.admin, "MrkCreateReplica", req, nil); err != nil {
		t.Fatal(err)
	}
	east.abortReplica(p, id)
	_, err = west.client.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: &id})
	wantAPIError(t, err, "NotFoundException")
	if c := east.describe(t, id).MultiRegionConfiguration; len(c.ReplicaKeys) != 0 {
		t.Fatalf("primary lists %v", regionsOf(c.ReplicaKeys))
	}
	// A finished replica is not aborted; a sync for an unknown key is NotFound.
	if _, err := east.client.ReplicateKey(ctx, &kms.ReplicateKeyInput{KeyId: &id, ReplicaRegion: aws.String("us-west-2")}); err != nil {
		t.Fatal(err)
	}
	east.tick(t)
	err = CallCluster(ctx, west.url, "us-west-2", west.admin, "MrkAbortReplica", mrkKeyRegionRequest{KeyId: id}, nil)
	if ae, ok := err.(*APIError); !ok || ae.Type != errInvalidState {
		t.Fatalf("abort of an Enabled replica: %v", err)
	}
	err = CallCluster(ctx, west.url, "us-west-2", west.admin, "MrkSync", mrkSyncRequest{KeyId: "mrk-00000000000000000000000000000000", Config: cfg}, nil)
	if ae, ok := err.(*APIError); !ok || ae.Type != errNotFound {
		t.Fatalf("sync of an unknown key: %v", err)
	}
	encryptIn(t, east, west, id)
}

// TestMultiRegionThreeNodeCluster: a three-node cluster (us-east-1, one HSM
// token) and a one-node cluster (us-west-2, its own token). Requests land
// on followers, which forward their writes; the peer calls reach a
// follower too.
func TestMultiRegionThreeNodeCluster(t *testing.T) {
	nodes := newTestCluster(t, 3)
	leader, f1, f2 := nodes[0], nodes[1], nodes[2]
	west := startRegion(t, "us-west-2", &fakeClock{now: time.Now()})
	for _, n := range nodes {
		n.SetPeers([]Peer{{Region: "us-west-2", URL: west.url, Key: west.admin}})
	}
	west.SetPeers([]Peer{{Region: "us-east-1", URL: f1.url, Key: leader.admin}})
	ctx := context.Background()
	// The leader may change on a loaded machine: wait for whichever leads,
	// and tick every node (a follower's tick does nothing).
	synced := func(n *testServer) {
		t.Helper()
		var idx uint64
		for _, m := range nodes {
			idx = max(idx, m.node.AppliedIndex())
		}
		if err := n.node.WaitApplied(ctx, idx); err != nil {
			t.Fatal(err)
		}
	}
	tickAll := func() {
		t.Helper()
		for _, n := range nodes {
			if err := n.Tick(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	tick := func(n *testServer) {
		t.Helper()
		if err := n.Tick(ctx); err != nil {
			t.Fatal(err)
		}
	}

	ck, err := f1.client.CreateKey(ctx, &kms.CreateKeyInput{MultiRegion: aws.Bool(true)})
	if err != nil {
		t.Fatal(err)
	}
	id := *ck.KeyMetadata.KeyId
	synced(f2)
	if _, err := f2.client.ReplicateKey(ctx, &kms.ReplicateKeyInput{KeyId: &id, ReplicaRegion: aws.String("us-west-2")}); err != nil {
		t.Fatal(err)
	}
	if !f1.node.IsLeader() {
		tick(f1) // a follower's timers do nothing
		if st := west.describe(t, id).KeyState; st != types.KeyStateCreating {
			t.Fatalf("a follower's tick synced the replica: %s", st)
		}
	}
	tickAll()
	west.tick(t)
	eastNode := &regionNode{testServer: f2, region: "us-east-1"}
	encryptIn(t, eastNode, west, id)
	encryptIn(t, west, eastNode, id)

	// The primary moves to the one-node cluster; its sync reaches the
	// three-node cluster through a follower.
	synced(f1)
	if _, err := f1.client.UpdatePrimaryRegion(ctx, &kms.UpdatePrimaryRegionInput{KeyId: &id, PrimaryRegion: aws.String("us-west-2")}); err != nil {
		t.Fatal(err)
	}
	west.tick(t)
	tickAll()
	if _, err := west.client.RotateKeyOnDemand(ctx, &kms.RotateKeyOnDemandInput{KeyId: &id}); err != nil {
		t.Fatal(err)
	}
	west.tick(t)
	for _, n := range nodes {
		synced(n)
		k, _ := n.node.Key(id)
		if k.State != "Enabled" || !k.IsReplica() || len(k.Materials) != 2 {
			t.Fatalf("%s: %s replica=%v versions=%d", n.node.ID(), k.State, k.IsReplica(), len(k.Materials))
		}
	}
	encryptIn(t, west, eastNode, id)
	encryptIn(t, west, &regionNode{testServer: leader, region: "us-east-1"}, id)
}
