package agent

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/smithy-go"
)

// regionPrincipal makes an access key for arn in rn's cluster (with an
// identity policy) and returns a client signed for rn's Region.
func (rn *regionNode) regionPrincipal(t *testing.T, arn, identityPolicy string) *kms.Client {
	t.Helper()
	in := CreateCredentialRequest{Principal: arn, Policy: &identityPolicy}
	var out CreateCredentialResponse
	if err := CallCluster(context.Background(), rn.url, rn.region, rn.admin, "CreateCredential", in, &out); err != nil {
		t.Fatal(err)
	}
	return kms.New(kms.Options{Region: rn.region, BaseEndpoint: aws.String(rn.url), Retryer: testRetryer(),
		Credentials: credentials.NewStaticCredentialsProvider(out.AccessKeyID, out.SecretAccessKey, "")})
}

// TestMultiRegionCallerPermissions: the permissions the API reference
// asks of the caller in the other Region are checked there, against that
// Region's principals (README "Multi-Region keys"): ReplicateKey needs
// kms:CreateKey in an IAM policy of the replica's Region (and
// kms:TagResource with Tags), UpdatePrimaryRegion needs
// kms:UpdatePrimaryRegion on the replica key in its Region, and the
// replica policy's lockout check is the caller's. A denial is
// AccessDeniedException naming the action and the Region, and nothing is
// made or moved; with the permissions the same calls succeed.
func TestMultiRegionCallerPermissions(t *testing.T) {
	rs := newRegions(t, "us-east-1", "us-west-2")
	a, b := rs[0], rs[1]
	ctx := context.Background()
	all := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"kms:*","Resource":"*"}]}`
	aliceA := a.regionPrincipal(t, testAlice, all)
	ck, err := aliceA.CreateKey(ctx, &kms.CreateKeyInput{MultiRegion: aws.Bool(true)})
	if err != nil {
		t.Fatal(err)
	}
	id := *ck.KeyMetadata.KeyId
	denied := func(err error, action string) {
		t.Helper()
		var ae smithy.APIError
		if !errors.As(err, &ae) || ae.ErrorCode() != "AccessDeniedException" || !strings.Contains(ae.ErrorMessage(), testAlice) ||
			!strings.Contains(ae.ErrorMessage(), "kms:"+action) || !strings.Contains(ae.ErrorMessage(), "us-west-2") {
			t.Fatalf("want AccessDeniedException for kms:%s in us-west-2, got %v", action, err)
		}
		t.Log(ae.ErrorMessage())
	}
	noReplica := func() {
		t.Helper()
		_, err := b.client.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: &id})
		wantAPIError(t, err, "NotFoundException")
	}
	replicate := func(tags bool) error {
		in := &kms.ReplicateKeyInput{KeyId: &id, ReplicaRegion: aws.String("us-west-2")}
		if tags {
			in.Tags = []types.Tag{{TagKey: aws.String("team"), TagValue: aws.String("a")}}
		}
		_, err := aliceA.ReplicateKey(ctx, in)
		return err
	}
	// Alice is not a principal of us-west-2's cluster.
	denied(replicate(false), "CreateKey")
	noReplica()
	// There she may create keys, but not tag them or move primaries.
	b.regionPrincipal(t, testAlice, `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"kms:CreateKey","Resource":"*"}]}`)
	denied(replicate(true), "TagResource")
	noReplica()
	// An explicit deny on the condition keys of the replica's CreateKey.
	b.regionPrincipal(t, testBob, `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"kms:*","Resource":"*"},
		{"Effect":"Deny","Action":"kms:CreateKey","Resource":"*","Condition":{"StringEquals":{"kms:MultiRegionKeyType":"REPLICA"}}}]}`)
	bobA := a.regionPrincipal(t, testBob, all)
	_, err = bobA.ReplicateKey(ctx, &kms.ReplicateKeyInput{KeyId: &id, ReplicaRegion: aws.String("us-west-2")})
	wantAPIError(t, err, "AccessDeniedException")
	if !strings.Contains(err.Error(), "explicit deny") || !strings.Contains(err.Error(), testBob) {
		t.Fatalf("a replica CreateKey denied by condition: %v", err)
	}
	noReplica()
	// The key policy's lockout check is the caller's: a replica policy
	// that lets only the account root manage the key would lock alice
	// (who may not PutKeyPolicy in us-west-2) out.
	rootOnly := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"kms:*","Resource":"*"}]}`
	_, err = aliceA.ReplicateKey(ctx, &kms.ReplicateKeyInput{KeyId: &id, ReplicaRegion: aws.String("us-west-2"), Policy: &rootOnly})
	wantAPIError(t, err, "MalformedPolicyDocumentException")
	noReplica()
	if err := replicate(false); err != nil {
		t.Fatalf("ReplicateKey with kms:CreateKey in us-west-2: %v", err)
	}
	if md := b.describe(t, id); md.MultiRegionConfiguration == nil || md.MultiRegionConfiguration.MultiRegionKeyType != types.MultiRegionKeyTypeReplica {
		t.Fatalf("replica: %+v", md)
	}
	b.tick(t)
	a.tick(t)
	// UpdatePrimaryRegion: alice has no kms:UpdatePrimaryRegion in
	// us-west-2; bob has (kms:*).
	_, err = aliceA.UpdatePrimaryRegion(ctx, &kms.UpdatePrimaryRegionInput{KeyId: &id, PrimaryRegion: aws.String("us-west-2")})
	denied(err, "UpdatePrimaryRegion")
	if md := a.describe(t, id); md.MultiRegionConfiguration.MultiRegionKeyType != types.MultiRegionKeyTypePrimary || md.KeyState != types.KeyStateEnabled {
		t.Fatalf("the primary moved after a denial: %s %+v", md.KeyState, md.MultiRegionConfiguration)
	}
	if md := b.describe(t, id); md.MultiRegionConfiguration.MultiRegionKeyType != types.MultiRegionKeyTypeReplica || md.KeyState != types.KeyStateEnabled {
		t.Fatalf("the replica changed after a denial: %s %+v", md.KeyState, md.MultiRegionConfiguration)
	}
	if _, err := bobA.UpdatePrimaryRegion(ctx, &kms.UpdatePrimaryRegionInput{KeyId: &id, PrimaryRegion: aws.String("us-west-2")}); err != nil {
		t.Fatalf("UpdatePrimaryRegion by bob: %v", err)
	}
	if md := b.describe(t, id); md.MultiRegionConfiguration.MultiRegionKeyType != types.MultiRegionKeyTypePrimary {
		t.Fatalf("us-west-2 is not the primary: %+v", md.MultiRegionConfiguration)
	}
}
