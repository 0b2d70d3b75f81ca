package agent

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
)

// principal makes an access key for arn (with an optional identity
// policy) through the admin API and returns a client signed with it.
func (ts *testServer) principal(t *testing.T, arn, identityPolicy string) *kms.Client {
	t.Helper()
	in := CreateCredentialRequest{Principal: arn}
	if identityPolicy != "" {
		in.Policy = &identityPolicy
	}
	var out CreateCredentialResponse
	if err := CallCluster(context.Background(), ts.url, "us-east-1", ts.admin, "CreateCredential", in, &out); err != nil {
		t.Fatal(err)
	}
	return ts.newClient(out.AccessKeyID, out.SecretAccessKey)
}

const (
	testRoot  = "arn:aws:iam::111122223333:root"
	testAlice = "arn:aws:iam::111122223333:user/alice"
	testBob   = "arn:aws:iam::111122223333:user/bob"
	testCarol = "arn:aws:iam::111122223333:user/carol"
	testDave  = "arn:aws:iam::111122223333:user/dave"
)

// TestAccessControlEndToEnd: through the Go SDK, one principal allowed by
// the key policy, one denied, one allowed only through a grant with an
// encryption-context constraint, and one allowed by its identity policy
// because the key policy delegates to the account.
func TestAccessControlEndToEnd(t *testing.T) {
	ts := newTestServer(t)
	ctx := context.Background()
	alice := ts.principal(t, "user/alice", "")
	bob := ts.principal(t, testBob, "")
	carol := ts.principal(t, "user/carol", "")
	dave := ts.principal(t, "user/dave", `{"Version":"2012-10-17","Statement":[
		{"Effect":"Allow","Action":["kms:Encrypt","kms:DescribeKey","kms:CreateKey"],"Resource":"*"}]}`)

	keyPolicy := fmt.Sprintf(`{"Version":"2012-10-17","Statement":[
	  {"Sid":"Enable IAM User Permissions","Effect":"Allow","Principal":{"AWS":%q},"Action":"kms:*","Resource":"*"},
	  {"Sid":"Alice uses the key","Effect":"Allow","Principal":{"AWS":%q},
	   "Action":["kms:Encrypt","kms:Decrypt","kms:GenerateDataKey*","kms:DescribeKey"],"Resource":"*"},
	  {"Sid":"Alice decrypts only finance data","Effect":"Deny","Principal":{"AWS":%q},"Action":"kms:Decrypt","Resource":"*",
	   "Condition":{"StringNotEquals":{"kms:EncryptionContext:dept":"finance"}}}]}`, testRoot, testAlice, testAlice)
	ck, err := ts.client.CreateKey(ctx, &kms.CreateKeyInput{Policy: aws.String(keyPolicy)})
	if err != nil {
		t.Fatal(err)
	}
	keyID := *ck.KeyMetadata.KeyId

	fin := map[string]string{"dept": "finance"}
	enc, err := alice.Encrypt(ctx, &kms.EncryptInput{KeyId: &keyID, Plaintext: []byte("a"), EncryptionContext: fin})
	if err != nil {
		t.Fatalf("alice Encrypt: %v", err)
	}
	if _, err := alice.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob, EncryptionContext: fin}); err != nil {
		t.Fatalf("alice Decrypt finance: %v", err)
	}
	hr := map[string]string{"dept": "hr"}
	enc2, err := alice.Encrypt(ctx, &kms.EncryptInput{KeyId: &keyID, Plaintext: []byte("a"), EncryptionContext: hr})
	if err != nil {
		t.Fatal(err)
	}
	_, err = alice.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc2.CiphertextBlob, EncryptionContext: hr})
	wantAPIError(t, err, "AccessDeniedException")
	if !strings.Contains(err.Error(), "explicit deny") || !strings.Contains(err.Error(), testAlice) {
		t.Fatalf("explicit deny message: %v", err)
	}
	// Alice may not manage the key.
	_, err = alice.DisableKey(ctx, &kms.DisableKeyInput{KeyId: &keyID})
	wantAPIError(t, err, "AccessDeniedException")

	// Bob is named nowhere and has no identity policy.
	_, err = bob.Encrypt(ctx, &kms.EncryptInput{KeyId: &keyID, Plaintext: []byte("b")})
	wantAPIError(t, err, "AccessDeniedException")
	if !strings.Contains(err.Error(), "User: "+testBob+" is not authorized to perform: kms:Encrypt on resource: arn:aws:kms:us-east-1:111122223333:key/"+keyID) {
		t.Fatalf("denial message: %v", err)
	}
	_, err = bob.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob, EncryptionContext: fin})
	wantAPIError(t, err, "AccessDeniedException")
	_, err = bob.ListKeys(ctx, &kms.ListKeysInput{})
	wantAPIError(t, err, "AccessDeniedException")

	// Dave: the key policy delegates to the account, his identity policy
	// allows Encrypt (not Decrypt).
	if _, err := dave.Encrypt(ctx, &kms.EncryptInput{KeyId: &keyID, Plaintext: []byte("d")}); err != nil {
		t.Fatalf("dave Encrypt: %v", err)
	}
	_, err = dave.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob, EncryptionContext: fin})
	wantAPIError(t, err, "AccessDeniedException")
	dk, err := dave.CreateKey(ctx, &kms.CreateKeyInput{})
	if err != nil {
		t.Fatalf("dave CreateKey: %v", err)
	}
	// ...and the new key has the default policy, which delegates: Encrypt works.
	if _, err := dave.Encrypt(ctx, &kms.EncryptInput{KeyId: dk.KeyMetadata.KeyId, Plaintext: []byte("d")}); err != nil {
		t.Fatalf("dave Encrypt with his key: %v", err)
	}

	// Carol: only through a grant with an encryption-context constraint.
	_, err = carol.Encrypt(ctx, &kms.EncryptInput{KeyId: &keyID, Plaintext: []byte("c"), EncryptionContext: fin})
	wantAPIError(t, err, "AccessDeniedException")
	g, err := ts.client.CreateGrant(ctx, &kms.CreateGrantInput{
		KeyId: &keyID, GranteePrincipal: aws.String(testCarol), RetiringPrincipal: aws.String(testBob),
		Operations:  []types.GrantOperation{types.GrantOperationEncrypt, types.GrantOperationDecrypt},
		Constraints: &types.GrantConstraints{EncryptionContextEquals: fin}, Name: aws.String("carol-finance"),
	})
	if err != nil {
		t.Fatal(err)
	}
	tokens := []string{*g.GrantToken}
	encC, err := carol.Encrypt(ctx, &kms.EncryptInput{KeyId: &keyID, Plaintext: []byte("c"), EncryptionContext: fin, GrantTokens: tokens})
	if err != nil {
		t.Fatalf("carol Encrypt through grant: %v", err)
	}
	if _, err := carol.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: encC.CiphertextBlob, EncryptionContext: fin}); err != nil {
		t.Fatalf("carol Decrypt through grant: %v", err)
	}
	_, err = carol.Encrypt(ctx, &kms.EncryptInput{KeyId: &keyID, Plaintext: []byte("c"), EncryptionContext: hr})
	wantAPIError(t, err, "AccessDeniedException")
	_, err = carol.Encrypt(ctx, &kms.EncryptInput{KeyId: &keyID, Plaintext: []byte("c"),
		EncryptionContext: map[string]string{"dept": "finance", "x": "y"}})
	wantAPIError(t, err, "AccessDeniedException") // Equals, not Subset
	_, err = carol.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: &keyID, KeySpec: types.DataKeySpecAes256, EncryptionContext: fin})
	wantAPIError(t, err, "AccessDeniedException") // not a granted operation
	_, err = carol.Encrypt(ctx, &kms.EncryptInput{KeyId: &keyID, Plaintext: []byte("c"), GrantTokens: []string{"not-a-token"}})
	wantAPIError(t, err, "InvalidGrantTokenException")

	// The same Name and terms: the same grant.
	g2, err := ts.client.CreateGrant(ctx, &kms.CreateGrantInput{
		KeyId: &keyID, GranteePrincipal: aws.String(testCarol), RetiringPrincipal: aws.String(testBob),
		Operations:  []types.GrantOperation{types.GrantOperationDecrypt, types.GrantOperationEncrypt},
		Constraints: &types.GrantConstraints{EncryptionContextEquals: fin}, Name: aws.String("carol-finance"),
	})
	if err != nil || *g2.GrantId != *g.GrantId {
		t.Fatalf("idempotent CreateGrant: %v %v", err, g2)
	}
	lg, err := ts.client.ListGrants(ctx, &kms.ListGrantsInput{KeyId: &keyID})
	if err != nil || len(lg.Grants) != 1 {
		t.Fatalf("ListGrants: %v %+v", err, lg)
	}
	e := lg.Grants[0]
	if *e.GranteePrincipal != testCarol || *e.IssuingAccount != testRoot || *e.Name != "carol-finance" ||
		e.Constraints == nil || e.Constraints.EncryptionContextEquals["dept"] != "finance" || !strings.HasSuffix(*e.KeyId, keyID) {
		t.Fatalf("grant entry %+v", e)
	}
	lr, err := bob.ListRetirableGrants(ctx, &kms.ListRetirableGrantsInput{RetiringPrincipal: aws.String(testBob)})
	wantAPIError(t, err, "AccessDeniedException") // an account-level permission bob lacks
	lr, err = ts.client.ListRetirableGrants(ctx, &kms.ListRetirableGrantsInput{RetiringPrincipal: aws.String(testBob)})
	if err != nil || len(lr.Grants) != 1 {
		t.Fatalf("ListRetirableGrants: %v %+v", err, lr)
	}
	// Alice may not retire it; Bob (the retiring principal) may.
	_, err = alice.RetireGrant(ctx, &kms.RetireGrantInput{GrantToken: g.GrantToken})
	wantAPIError(t, err, "AccessDeniedException")
	if _, err := bob.RetireGrant(ctx, &kms.RetireGrantInput{GrantToken: g.GrantToken}); err != nil {
		t.Fatalf("bob RetireGrant: %v", err)
	}
	_, err = carol.Encrypt(ctx, &kms.EncryptInput{KeyId: &keyID, Plaintext: []byte("c"), EncryptionContext: fin})
	wantAPIError(t, err, "AccessDeniedException")
	_, err = ts.client.RevokeGrant(ctx, &kms.RevokeGrantInput{KeyId: &keyID, GrantId: g.GrantId})
	wantAPIError(t, err, "NotFoundException")
}

func TestGrantValidationAndRevoke(t *testing.T) {
	ts := newTestServer(t)
	ctx := context.Background()
	keyID := ts.createKey(t)
	cases := []struct {
		in   kms.CreateGrantInput
		code string
	}{
		{kms.CreateGrantInput{KeyId: &keyID, GranteePrincipal: aws.String("nobody"), Operations: []types.GrantOperation{"Encrypt"}}, "ValidationException"},
		{kms.CreateGrantInput{KeyId: &keyID, GranteePrincipal: aws.String(testCarol), Operations: []types.GrantOperation{"Sign"}}, "ValidationException"},
		{kms.CreateGrantInput{KeyId: &keyID, GranteePrincipal: aws.String(testCarol), Operations: []types.GrantOperation{"Dance"}}, "ValidationException"},
		{kms.CreateGrantInput{KeyId: aws.String("alias/x"), GranteePrincipal: aws.String(testCarol), Operations: []types.GrantOperation{"Encrypt"}}, "NotFoundException"},
		{kms.CreateGrantInput{KeyId: &keyID, GranteePrincipal: aws.String(testCarol), Operations: []types.GrantOperation{"Encrypt"}, DryRun: aws.Bool(true)}, "DryRunOperationException"},
	}
	for i, c := range cases {
		_, err := ts.client.CreateGrant(ctx, &c.in)
		if err == nil {
			t.Fatalf("case %d: no error", i)
		}
		wantAPIError(t, err, c.code)
	}
	g, err := ts.client.CreateGrant(ctx, &kms.CreateGrantInput{KeyId: &keyID, GranteePrincipal: aws.String(testCarol),
		Operations: []types.GrantOperation{"Encrypt", "DescribeKey"}})
	if err != nil {
		t.Fatal(err)
	}
	carol := ts.principal(t, testCarol, "")
	if _, err := carol.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: &keyID}); err != nil {
		t.Fatalf("DescribeKey through grant: %v", err)
	}
	if _, err := ts.client.RevokeGrant(ctx, &kms.RevokeGrantInput{KeyId: &keyID, GrantId: g.GrantId}); err != nil {
		t.Fatal(err)
	}
	_, err = carol.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: &keyID})
	wantAPIError(t, err, "AccessDeniedException")
	// A disabled key takes no new grants ([1]); its grants are still listed.
	if _, err := ts.client.DisableKey(ctx, &kms.DisableKeyInput{KeyId: &keyID}); err != nil {
		t.Fatal(err)
	}
	_, err = ts.client.CreateGrant(ctx, &kms.CreateGrantInput{KeyId: &keyID, GranteePrincipal: aws.String(testCarol),
		Operations: []types.GrantOperation{"Encrypt"}})
	wantAPIError(t, err, "DisabledException")
}

func TestKeyPolicyAPI(t *testing.T) {
	ts := newTestServer(t)
	ctx := context.Background()
	keyID := ts.createKey(t)
	gp, err := ts.client.GetKeyPolicy(ctx, &kms.GetKeyPolicyInput{KeyId: &keyID})
	if err != nil || !strings.Contains(*gp.Policy, testRoot) || *gp.PolicyName != "default" {
		t.Fatalf("GetKeyPolicy: %v %v", err, gp)
	}
	lp, err := ts.client.ListKeyPolicies(ctx, &kms.ListKeyPoliciesInput{KeyId: &keyID})
	if err != nil || len(lp.PolicyNames) != 1 || lp.PolicyNames[0] != "default" {
		t.Fatalf("ListKeyPolicies: %v %v", err, lp)
	}
	_, err = ts.client.GetKeyPolicy(ctx, &kms.GetKeyPolicyInput{KeyId: &keyID, PolicyName: aws.String("other")})
	wantAPIError(t, err, "NotFoundException")

	for _, bad := range []string{`not json`, `{"Statement":[{"Effect":"Maybe","Principal":"*","Action":"kms:*","Resource":"*"}]}`,
		`{"Version":"2012-10-17"}`, `{"Statement":[{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*","Condition":{"Sorta":{"a":"b"}}}]}`,
		`{"Statement":[{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*","Sid":"` + strings.Repeat("x", 33000) + `"}]}`} {
		_, err := ts.client.PutKeyPolicy(ctx, &kms.PutKeyPolicyInput{KeyId: &keyID, Policy: aws.String(bad)})
		if err == nil {
			t.Fatalf("policy %.40q accepted", bad)
		}
		var code string
		if ae := apiCode(err); ae != "" {
			code = ae
		}
		if code != "MalformedPolicyDocumentException" && code != "LimitExceededException" {
			t.Fatalf("policy %.40q: %v", bad, err)
		}
	}
	// A policy that locks the caller (root) out is refused unless bypassed.
	lockout := fmt.Sprintf(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":%q},"Action":"kms:*","Resource":"*"}]}`, testAlice)
	_, err = ts.client.PutKeyPolicy(ctx, &kms.PutKeyPolicyInput{KeyId: &keyID, Policy: aws.String(lockout)})
	wantAPIError(t, err, "MalformedPolicyDocumentException")
	_, err = ts.client.CreateKey(ctx, &kms.CreateKeyInput{Policy: aws.String(lockout)})
	wantAPIError(t, err, "MalformedPolicyDocumentException")
	if _, err := ts.client.PutKeyPolicy(ctx, &kms.PutKeyPolicyInput{KeyId: &keyID, Policy: aws.String(lockout), BypassPolicyLockoutSafetyCheck: true}); err != nil {
		t.Fatal(err)
	}
	// Now even the root is out: nobody has access unless the policy says so.
	_, err = ts.client.GetKeyPolicy(ctx, &kms.GetKeyPolicyInput{KeyId: &keyID})
	wantAPIError(t, err, "AccessDeniedException")
	alice := ts.principal(t, testAlice, "")
	gp, err = alice.GetKeyPolicy(ctx, &kms.GetKeyPolicyInput{KeyId: &keyID})
	if err != nil || *gp.Policy != lockout {
		t.Fatalf("alice GetKeyPolicy: %v", err)
	}
}

// TestPolicyConditions: conditions the guide uses most, evaluated on real
// requests: aws:SourceIp, kms:RequestAlias, kms:ResourceAliases,
// kms:EncryptionContextKeys, kms:CallerAccount.
func TestPolicyConditions(t *testing.T) {
	ts := newTestServer(t)
	ctx := context.Background()
	alice := ts.principal(t, testAlice, "")
	policy := fmt.Sprintf(`{"Version":"2012-10-17","Statement":[
	  {"Effect":"Allow","Principal":{"AWS":%q},"Action":"kms:*","Resource":"*"},
	  {"Sid":"loopback only, through the alias","Effect":"Allow","Principal":{"AWS":"*"},"Action":"kms:Encrypt","Resource":"*",
	   "Condition":{"IpAddress":{"aws:SourceIp":"127.0.0.0/8"},"StringEquals":{"kms:RequestAlias":"alias/app","kms:CallerAccount":"111122223333"}}},
	  {"Sid":"GenerateDataKey needs a tenant context key","Effect":"Allow","Principal":{"AWS":%q},"Action":"kms:GenerateDataKey","Resource":"*",
	   "Condition":{"ForAnyValue:StringEquals":{"kms:EncryptionContextKeys":"tenant"},"ForAnyValue:StringLike":{"kms:ResourceAliases":"alias/app*"}}}]}`, testRoot, testAlice)
	ck, err := ts.client.CreateKey(ctx, &kms.CreateKeyInput{Policy: aws.String(policy)})
	if err != nil {
		t.Fatal(err)
	}
	keyID := *ck.KeyMetadata.KeyId
	_, err = alice.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: &keyID, KeySpec: types.DataKeySpecAes256, EncryptionContext: map[string]string{"tenant": "t1"}})
	wantAPIError(t, err, "AccessDeniedException") // no alias yet
	if _, err := ts.client.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String("alias/app"), TargetKeyId: &keyID}); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: &keyID, KeySpec: types.DataKeySpecAes256, EncryptionContext: map[string]string{"tenant": "t1"}}); err != nil {
		t.Fatalf("GenerateDataKey with tenant context and alias: %v", err)
	}
	_, err = alice.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: &keyID, KeySpec: types.DataKeySpecAes256, EncryptionContext: map[string]string{"other": "t1"}})
	wantAPIError(t, err, "AccessDeniedException")

	_, err = alice.Encrypt(ctx, &kms.EncryptInput{KeyId: &keyID, Plaintext: []byte("x")})
	wantAPIError(t, err, "AccessDeniedException") // by key id, not the alias
	if _, err := alice.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String("alias/app"), Plaintext: []byte("x")}); err != nil {
		t.Fatalf("Encrypt through alias from loopback: %v", err)
	}
	if _, err := alice.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String("arn:aws:kms:us-east-1:111122223333:alias/app"), Plaintext: []byte("x")}); err != nil {
		t.Fatalf("Encrypt through alias ARN: %v", err)
	}
}

func apiCode(err error) string {
	type coded interface{ ErrorCode() string }
	for e := err; e != nil; {
		if c, ok := e.(coded); ok {
			return c.ErrorCode()
		}
		u, ok := e.(interface{ Unwrap() error })
		if !ok {
			return ""
		}
		e = u.Unwrap()
	}
	return ""
}

// TestDryRunChecksAccess: a DryRun Decrypt or ReEncrypt by a caller who may
// not use the blob's key is AccessDeniedException, not DryRunOperation.
func TestDryRunChecksAccess(t *testing.T) {
	ts := newTestServer(t)
	ctx := context.Background()
	keyID := ts.createKey(t)
	enc, err := ts.client.Encrypt(ctx, &kms.EncryptInput{KeyId: &keyID, Plaintext: []byte("x")})
	if err != nil {
		t.Fatal(err)
	}
	_, err = ts.client.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob, DryRun: aws.Bool(true)})
	wantAPIError(t, err, "DryRunOperationException")
	mallory := ts.principal(t, "user/mallory", "")
	_, err = mallory.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob, DryRun: aws.Bool(true)})
	wantAPIError(t, err, "AccessDeniedException")
	_, err = mallory.ReEncrypt(ctx, &kms.ReEncryptInput{CiphertextBlob: enc.CiphertextBlob, DestinationKeyId: &keyID, DryRun: aws.Bool(true)})
	wantAPIError(t, err, "AccessDeniedException")
	if _, err := ts.client.DisableKey(ctx, &kms.DisableKeyInput{KeyId: &keyID}); err != nil {
		t.Fatal(err)
	}
	_, err = ts.client.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob, DryRun: aws.Bool(true)})
	wantAPIError(t, err, "DisabledException")
}

// TestAsymmetricAccess: Sign, GetPublicKey and GenerateMac are authorized
// like the symmetric operations: denied without permission, allowed by a
// grant of exactly those operations.
func TestAsymmetricAccess(t *testing.T) {
	ts := newTestServer(t)
	ctx := context.Background()
	sk, err := ts.client.CreateKey(ctx, &kms.CreateKeyInput{KeySpec: types.KeySpecEccNistP256, KeyUsage: types.KeyUsageTypeSignVerify})
	if err != nil {
		t.Fatal(err)
	}
	mk, err := ts.client.CreateKey(ctx, &kms.CreateKeyInput{KeySpec: types.KeySpecHmac256, KeyUsage: types.KeyUsageTypeGenerateVerifyMac})
	if err != nil {
		t.Fatal(err)
	}
	erin := ts.principal(t, "user/erin", "")
	sign := func() error {
		_, err := erin.Sign(ctx, &kms.SignInput{KeyId: sk.KeyMetadata.KeyId, Message: []byte("m"), SigningAlgorithm: types.SigningAlgorithmSpecEcdsaSha256})
		return err
	}
	mac := func() error {
		_, err := erin.GenerateMac(ctx, &kms.GenerateMacInput{KeyId: mk.KeyMetadata.KeyId, Message: []byte("m"), MacAlgorithm: types.MacAlgorithmSpecHmacSha256})
		return err
	}
	wantAPIError(t, sign(), "AccessDeniedException")
	wantAPIError(t, mac(), "AccessDeniedException")
	_, err = erin.GetPublicKey(ctx, &kms.GetPublicKeyInput{KeyId: sk.KeyMetadata.KeyId})
	wantAPIError(t, err, "AccessDeniedException")
	for _, g := range []struct {
		key *string
		ops []types.GrantOperation
	}{{sk.KeyMetadata.KeyId, []types.GrantOperation{"Sign", "GetPublicKey"}}, {mk.KeyMetadata.KeyId, []types.GrantOperation{"GenerateMac"}}} {
		if _, err := ts.client.CreateGrant(ctx, &kms.CreateGrantInput{KeyId: g.key, GranteePrincipal: aws.String("arn:aws:iam::111122223333:user/erin"), Operations: g.ops}); err != nil {
			t.Fatal(err)
		}
	}
	if err := sign(); err != nil {
		t.Fatalf("Sign through grant: %v", err)
	}
	if err := mac(); err != nil {
		t.Fatalf("GenerateMac through grant: %v", err)
	}
	if _, err := erin.GetPublicKey(ctx, &kms.GetPublicKeyInput{KeyId: sk.KeyMetadata.KeyId}); err != nil {
		t.Fatalf("GetPublicKey through grant: %v", err)
	}
	_, err = erin.Verify(ctx, &kms.VerifyInput{KeyId: sk.KeyMetadata.KeyId, Message: []byte("m"), Signature: []byte("x"), SigningAlgorithm: types.SigningAlgorithmSpecEcdsaSha256})
	wantAPIError(t, err, "AccessDeniedException") // Verify was not granted
	// Constraints are for symmetric keys only.
	_, err = ts.client.CreateGrant(ctx, &kms.CreateGrantInput{KeyId: sk.KeyMetadata.KeyId, GranteePrincipal: aws.String("arn:aws:iam::111122223333:user/erin"),
		Operations: []types.GrantOperation{"Sign"}, Constraints: &types.GrantConstraints{EncryptionContextSubset: map[string]string{"a": "b"}}})
	wantAPIError(t, err, "ValidationException")
}
