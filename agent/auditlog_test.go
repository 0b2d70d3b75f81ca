package agent

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/kmsd/kmsd/agent/audit"
	"github.com/kmsd/kmsd/hsmpool/hsmtest"
)

// TestAuditLog: real calls through the Go SDK leave one CloudTrail-shaped
// record each, with every field filled as CloudTrail does, and no secret
// (plaintext, data key, ciphertext, access key secret, grant token)
// anywhere in the log.
func TestAuditLog(t *testing.T) {
	dir := t.TempDir()
	lg, err := audit.Open(audit.Config{Dir: filepath.Join(dir, "audit"), OnFull: audit.Block})
	if err != nil {
		t.Fatal(err)
	}
	lib, label, pin := hsmtest.NewToken(t)
	ts := startTestServerCfg(t, t.TempDir(), tokenRef{lib, label, pin}, Config{Audit: lg})
	ctx := context.Background()

	ck, err := ts.client.CreateKey(ctx, &kms.CreateKeyInput{Description: aws.String("audited")})
	if err != nil {
		t.Fatal(err)
	}
	keyArn := *ck.KeyMetadata.Arn
	ec := map[string]string{"tenant": "acme"}
	gdk, err := ts.client.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: ck.KeyMetadata.KeyId, KeySpec: types.DataKeySpecAes256, EncryptionContext: ec})
	if err != nil {
		t.Fatal(err)
	}
	plaintext := []byte("audit-plaintext-that-must-never-appear")
	enc, err := ts.client.Encrypt(ctx, &kms.EncryptInput{KeyId: ck.KeyMetadata.KeyId, Plaintext: plaintext, EncryptionContext: ec})
	if err != nil {
		t.Fatal(err)
	}
	_, err = ts.client.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob, EncryptionContext: map[string]string{"tenant": "other"}})
	wantAPIError(t, err, "InvalidCiphertextException")
	var cred CreateCredentialResponse
	if err := CallCluster(ctx, ts.url, "us-east-1", ts.admin, "CreateCredential", CreateCredentialRequest{Principal: "user/eve"}, &cred); err != nil {
		t.Fatal(err)
	}
	eve := ts.newClient(cred.AccessKeyID, cred.SecretAccessKey)
	_, err = eve.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob, EncryptionContext: ec})
	wantAPIError(t, err, "AccessDeniedException")
	g, err := ts.client.CreateGrant(ctx, &kms.CreateGrantInput{KeyId: ck.KeyMetadata.KeyId, GranteePrincipal: aws.String("arn:aws:iam::111122223333:user/eve"),
		Operations: []types.GrantOperation{types.GrantOperationDecrypt}})
	if err != nil {
		t.Fatal(err)
	}
	bad := ts.newClient(ts.admin.ID, "wrong-secret-wrong-secret-wrong-secret00")
	_, err = bad.ListKeys(ctx, &kms.ListKeysInput{})
	wantAPIError(t, err, "InvalidSignatureException")

	ts.stop()
	if err := lg.Close(); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "audit", "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	for name, secret := range map[string][]byte{
		"plaintext": plaintext, "data key": gdk.Plaintext, "data key ciphertext": gdk.CiphertextBlob,
		"ciphertext": enc.CiphertextBlob, "root secret": []byte(ts.admin.Secret), "eve's secret": []byte(cred.SecretAccessKey),
		"grant token": []byte(*g.GrantToken),
	} {
		for _, form := range [][]byte{secret, []byte(base64.StdEncoding.EncodeToString(secret)), []byte(base64.RawURLEncoding.EncodeToString(secret))} {
			if strings.Contains(string(raw), string(form)) {
				t.Errorf("the audit log carries the %s", name)
			}
		}
	}

	var events []map[string]any
	sc := bufio.NewScanner(strings.NewReader(string(raw)))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var ev map[string]any
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("line is not JSON: %v: %s", err, sc.Text())
		}
		events = append(events, ev)
	}
	// CreateKey, GenerateDataKey, Encrypt, Decrypt, CreateCredential, Decrypt (denied), CreateGrant, ListKeys (bad signature).
	if len(events) != 8 {
		t.Fatalf("%d records, want 8:\n%s", len(events), raw)
	}
	byName := func(i int, name string) map[string]any {
		t.Helper()
		if events[i]["eventName"] != name {
			t.Fatalf("record %d is %v, want %s", i, events[i]["eventName"], name)
		}
		return events[i]
	}
	for i, ev := range events {
		for _, f := range []string{"eventVersion", "userIdentity", "eventTime", "eventSource", "awsRegion", "sourceIPAddress",
			"userAgent", "requestID", "eventID", "readOnly", "eventType", "recipientAccountId", "managementEvent", "eventCategory"} {
			if _, ok := ev[f]; !ok {
				t.Errorf("record %d lacks %s", i, f)
			}
		}
		if ev["eventSource"] != "kms.amazonaws.com" || ev["awsRegion"] != "us-east-1" || ev["eventType"] != "AwsApiCall" ||
			ev["sourceIPAddress"] != "127.0.0.1" || ev["recipientAccountId"] != "111122223333" || ev["eventCategory"] != "Management" {
			t.Errorf("record %d: %v", i, ev)
		}
		if !strings.Contains(ev["userAgent"].(string), "aws-sdk-go-v2") && ev["eventName"] != "KmsdCluster.CreateCredential" {
			t.Errorf("record %d userAgent %v", i, ev["userAgent"])
		}
	}
	gen := byName(1, "GenerateDataKey")
	rp := gen["requestParameters"].(map[string]any)
	if rp["keyId"] != *ck.KeyMetadata.KeyId || rp["keySpec"] != "AES_256" || rp["encryptionContext"].(map[string]any)["tenant"] != "acme" {
		t.Errorf("GenerateDataKey requestParameters %v", rp)
	}
	if gen["readOnly"] != true || gen["responseElements"] != nil {
		t.Errorf("GenerateDataKey readOnly/responseElements: %v %v", gen["readOnly"], gen["responseElements"])
	}
	res := gen["resources"].([]any)[0].(map[string]any)
	if res["ARN"] != keyArn || res["type"] != "AWS::KMS::Key" || res["accountId"] != "111122223333" {
		t.Errorf("resources %v", res)
	}
	id := gen["userIdentity"].(map[string]any)
	if id["type"] != "Root" || id["arn"] != "arn:aws:iam::111122223333:root" || id["accessKeyId"] != ts.admin.ID || id["accountId"] != "111122223333" {
		t.Errorf("userIdentity %v", id)
	}
	if add, _ := gen["additionalEventData"].(map[string]any); add["keyMaterialId"] == nil {
		t.Errorf("additionalEventData %v", gen["additionalEventData"])
	}
	dec := byName(3, "Decrypt")
	if dec["errorCode"] != "InvalidCiphertextException" || dec["errorMessage"] == "" {
		t.Errorf("failed Decrypt: %v", dec)
	}
	denied := byName(5, "Decrypt")
	if denied["errorCode"] != "AccessDeniedException" || denied["userIdentity"].(map[string]any)["arn"] != "arn:aws:iam::111122223333:user/eve" ||
		denied["userIdentity"].(map[string]any)["type"] != "IAMUser" {
		t.Errorf("denied Decrypt: %v", denied)
	}
	create := byName(0, "CreateKey")
	if create["readOnly"] != false || create["responseElements"].(map[string]any)["keyMetadata"] == nil ||
		create["requestParameters"].(map[string]any)["description"] != "audited" {
		t.Errorf("CreateKey record: %v", create)
	}
	cg := byName(6, "CreateGrant")
	if cg["responseElements"].(map[string]any)["grantId"] != *g.GrantId {
		t.Errorf("CreateGrant responseElements %v", cg["responseElements"])
	}
	if byName(4, "KmsdCluster.CreateCredential")["responseElements"] != nil {
		t.Error("CreateCredential response recorded")
	}
	if sig := events[7]; sig["errorCode"] != "InvalidSignatureException" || sig["userIdentity"].(map[string]any)["accessKeyId"] != ts.admin.ID {
		t.Errorf("bad-signature record: %v", sig)
	}
}

// TestAuditServiceEvents: what the leader's timers do on their own (a
// deletion at the end of the waiting period, an automatic rotation) is
// recorded as an AwsServiceEvent invoked by kms.amazonaws.com.
func TestAuditServiceEvents(t *testing.T) {
	dir := t.TempDir()
	lg, err := audit.Open(audit.Config{Dir: filepath.Join(dir, "audit"), OnFull: audit.Block})
	if err != nil {
		t.Fatal(err)
	}
	lib, label, pin := hsmtest.NewToken(t)
	clk := &fakeClock{now: time.Now()}
	ts := startTestServerCfg(t, t.TempDir(), tokenRef{lib, label, pin}, Config{Audit: lg, Now: clk.Now})
	ctx := context.Background()
	rot, del := ts.createKey(t), ts.createKey(t)
	if _, err := ts.client.EnableKeyRotation(ctx, &kms.EnableKeyRotationInput{KeyId: &rot, RotationPeriodInDays: aws.Int32(90)}); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.client.ScheduleKeyDeletion(ctx, &kms.ScheduleKeyDeletionInput{KeyId: &del, PendingWindowInDays: aws.Int32(7)}); err != nil {
		t.Fatal(err)
	}
	clk.Advance(91 * 24 * time.Hour)
	if err := ts.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	ts.stop()
	if err := lg.Close(); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "audit", "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		var ev map[string]any
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatal(err)
		}
		if ev["eventType"] != "AwsServiceEvent" {
			continue
		}
		if id := ev["userIdentity"].(map[string]any); id["invokedBy"] != "kms.amazonaws.com" || id["accountId"] != "111122223333" {
			t.Errorf("service event identity %v", id)
		}
		found[ev["eventName"].(string)] = ev["resources"].([]any)[0].(map[string]any)["ARN"].(string)
	}
	if !strings.HasSuffix(found["RotateKey"], rot) || !strings.HasSuffix(found["DeleteKey"], del) {
		t.Fatalf("service events: %v", found)
	}
}
