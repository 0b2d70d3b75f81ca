package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/kmsd/kmsd/cluster"
	"github.com/kmsd/kmsd/hsmpool/hsmtest"
	"github.com/kmsd/kmsd/quota"
)

// newTestCluster starts n kmsd nodes in-process: one HSM token shared by
// all (nodes sharing an HSM need no domain-key transfer), raft over TCP on
// 127.0.0.1, the API on 127.0.0.1; node 0 bootstraps, the others join it.
func newTestCluster(t *testing.T, n int) []*testServer {
	t.Helper()
	lib, label, pin := hsmtest.NewToken(t)
	tok := tokenRef{lib, label, pin}
	var nodes []*testServer
	for i := range n {
		dir := t.TempDir()
		ccfg := cluster.Config{NodeID: fmt.Sprintf("node%d", i+1), DataDir: dir, BindAddr: "127.0.0.1:0",
			Bootstrap: i == 0, HeartbeatTimeout: time.Second}
		var join *testServer
		if i > 0 {
			join = nodes[0]
		}
		nodes = append(nodes, startNode(t, dir, tok, Config{}, ccfg, join))
	}
	waitMembers(t, nodes)
	return nodes
}

// waitMembers waits until every node holds the final raft configuration: a
// node that lags behind a join rejects votes from members it does not know
// yet, so a test must not kill the leader before then.
func waitMembers(t *testing.T, nodes []*testServer) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		all := true
		for _, n := range nodes {
			if s, err := n.node.Servers(); err != nil || len(s) != len(nodes) {
				all = false
			}
		}
		if all {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("members never all saw the final configuration")
		}
	}
}

func TestClusterForwardingAndReadYourWrites(t *testing.T) {
	nodes := newTestCluster(t, 3)
	ctx := context.Background()
	leader, f1, f2 := nodes[0], nodes[1], nodes[2]
	if !leader.node.IsLeader() {
		t.Fatal("the bootstrap node does not lead")
	}
	// Every node holds the same admin credential.
	if f1.admin != leader.admin || f2.admin != leader.admin {
		t.Fatal("nodes disagree on the admin access key")
	}
	// A write on a follower is forwarded, and that follower reads it at once.
	out, err := f1.client.CreateKey(ctx, &kms.CreateKeyInput{Description: aws.String("via follower")})
	if err != nil {
		t.Fatal(err)
	}
	id := out.KeyMetadata.KeyId
	if err := f2.node.WaitApplied(ctx, f1.node.AppliedIndex()); err != nil {
		t.Fatal(err)
	}
	if _, err := f1.client.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: id}); err != nil {
		t.Fatalf("follower cannot read its own write: %v", err)
	}
	if _, err := f2.client.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String("alias/c"), TargetKeyId: id}); err != nil {
		t.Fatal(err)
	}
	if _, err := f2.client.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String("alias/c")}); err != nil {
		t.Fatalf("alias not readable on the node that wrote it: %v", err)
	}
	// The FSM's refusal crosses the forwarding hop as the right AWS error.
	_, err = f1.client.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String("alias/c"), TargetKeyId: id})
	wantAPIError(t, err, "AlreadyExistsException")

	// Crypto on any node: encrypt on one follower, decrypt on the other.
	enc, err := f2.client.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String("alias/c"), Plaintext: []byte("anywhere")})
	if err != nil {
		t.Fatal(err)
	}
	if err := f1.node.WaitApplied(ctx, f2.node.AppliedIndex()); err != nil {
		t.Fatal(err)
	}
	dec, err := f1.client.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob})
	if err != nil || string(dec.Plaintext) != "anywhere" {
		t.Fatalf("decrypt on another node: %v", err)
	}

	var st StatusResponse
	if err := CallCluster(ctx, f2.url, "us-east-1", f2.admin, "Status", struct{}{}, &st); err != nil {
		t.Fatal(err)
	}
	ready := 0
	for _, m := range st.Members {
		if m.Ready {
			ready++
		}
	}
	if len(st.Members) != 3 || st.Leader != "node1" || ready != 3 {
		t.Fatalf("status: %+v", st)
	}
}

// TestClusterLeaderFailover kills the leader during a stream of writes and
// crypto calls on the followers: every acknowledged write is on both
// survivors, crypto never stops, and the new leader takes writes.
func TestClusterLeaderFailover(t *testing.T) {
	nodes := newTestCluster(t, 3)
	ctx := context.Background()
	f1, f2 := nodes[1], nodes[2]
	key, err := f1.client.CreateKey(ctx, &kms.CreateKeyInput{})
	if err != nil {
		t.Fatal(err)
	}
	f2.node.WaitApplied(ctx, f1.node.AppliedIndex())
	var acked []string
	writeErrs, cryptoErrs := 0, 0
	killedAt := time.Time{}
	var firstWriteAfter time.Duration
	for i := 0; i < 45; i++ { // 45 aliases: under the 50-per-key limit
		if i == 10 {
			nodes[0].stop() // kill the leader
			killedAt = time.Now()
		}
		c := f1.client
		if i%2 == 1 {
			c = f2.client
		}
		name := fmt.Sprintf("alias/w%02d", i)
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := c.CreateAlias(wctx, &kms.CreateAliasInput{AliasName: aws.String(name), TargetKeyId: key.KeyMetadata.KeyId})
		cancel()
		if err == nil {
			acked = append(acked, name)
			if !killedAt.IsZero() && firstWriteAfter == 0 {
				firstWriteAfter = time.Since(killedAt)
			}
		} else {
			writeErrs++
			t.Logf("write %d: %v", i, err)
		}
		gdk, err := c.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: key.KeyMetadata.KeyId, KeySpec: types.DataKeySpecAes256})
		if err != nil {
			cryptoErrs++
			continue
		}
		if _, err := c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: gdk.CiphertextBlob}); err != nil {
			cryptoErrs++
		}
	}
	if cryptoErrs != 0 {
		t.Errorf("%d crypto calls failed on survivors during failover", cryptoErrs)
	}
	if firstWriteAfter == 0 {
		t.Fatal("no write succeeded after the leader died")
	}
	last := max(f1.node.AppliedIndex(), f2.node.AppliedIndex())
	for _, f := range []*testServer{f1, f2} {
		if err := f.node.WaitApplied(ctx, last); err != nil {
			t.Fatal(err)
		}
		for _, a := range acked {
			if _, ok := f.node.Alias(a); !ok {
				t.Fatalf("acknowledged %s missing on %s", a, f.node.ID())
			}
		}
	}
	t.Logf("failover: first write %v after the leader was killed; %d writes acknowledged, %d failed; %d crypto errors",
		firstWriteAfter.Round(time.Millisecond), len(acked), writeErrs, cryptoErrs)
}

// TestClusterQuotaSplit: with 3 voters each node enforces a third of the
// account's rate.
func TestClusterQuotaSplit(t *testing.T) {
	lib, label, pin := hsmtest.NewToken(t)
	tok := tokenRef{lib, label, pin}
	cfg := Config{Quotas: quota.Config{Rates: map[quota.Group]float64{quota.Symmetric: 30}}}
	var nodes []*testServer
	for i := range 3 {
		dir := t.TempDir()
		ccfg := cluster.Config{NodeID: fmt.Sprintf("q%d", i), DataDir: dir, BindAddr: "127.0.0.1:0", Bootstrap: i == 0, HeartbeatTimeout: time.Second}
		var join *testServer
		if i > 0 {
			join = nodes[0]
		}
		nodes = append(nodes, startNode(t, dir, tok, cfg, ccfg, join))
	}
	waitMembers(t, nodes)
	n := nodes[1]
	n.Tick(context.Background()) // re-split now rather than on the next timer tick
	accepted := 0
	for i := 0; i < 30; i++ {
		if _, err := n.client.GenerateRandom(context.Background(), &kms.GenerateRandomInput{NumberOfBytes: aws.Int32(4)}); err == nil {
			accepted++
		} else {
			wantAPIError(t, err, "ThrottlingException")
		}
	}
	// A burst of 30 against a 10/s share (burst 10) accepts about 10, far
	// fewer than the account's 30.
	if accepted >= 20 || accepted == 0 {
		t.Fatalf("accepted %d of 30 on one node of three with an account rate of 30/s", accepted)
	}
}

func TestSnapshotSaveRestore(t *testing.T) {
	ts := newTestServer(t)
	ctx := context.Background()
	a := ts.createKey(t)
	enc, _ := ts.client.Encrypt(ctx, &kms.EncryptInput{KeyId: &a, Plaintext: []byte("kept")})
	var snap SnapshotData
	if err := CallCluster(ctx, ts.url, "us-east-1", ts.admin, "SnapshotSave", struct{}{}, &snap); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(snap.Snapshot, []byte(ts.admin.Secret)) {
		t.Fatal("snapshot holds the admin secret in plaintext")
	}
	b := ts.createKey(t)
	if err := CallCluster(ctx, ts.url, "us-east-1", ts.admin, "SnapshotRestore", snap, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.client.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: &b}); err == nil {
		t.Fatal("a key created after the snapshot survived the restore")
	}
	dec, err := ts.client.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob})
	if err != nil || string(dec.Plaintext) != "kept" {
		t.Fatalf("decrypt after restore: %v", err)
	}
	err = CallCluster(ctx, ts.url, "us-east-1", ts.admin, "SnapshotRestore", SnapshotData{Snapshot: []byte("garbage")}, nil)
	var ae *APIError
	if !errors.As(err, &ae) || ae.Type != "ValidationException" {
		t.Fatalf("garbage snapshot: %v", err)
	}
}

// TestClusterJoinWithOwnHSM: a node with its own HSM token joins and gets
// the domain key HSM to HSM, then decrypts what the first node encrypted.
func TestClusterJoinWithOwnHSM(t *testing.T) {
	lib, label, pin := hsmtest.NewToken(t)
	dir1 := t.TempDir()
	n1 := startNode(t, dir1, tokenRef{lib, label, pin}, Config{},
		cluster.Config{NodeID: "a", DataDir: dir1, BindAddr: "127.0.0.1:0", Bootstrap: true, HeartbeatTimeout: time.Second}, nil)
	ctx := context.Background()
	id := n1.createKey(t)
	enc, err := n1.client.Encrypt(ctx, &kms.EncryptInput{KeyId: &id, Plaintext: []byte("across HSMs")})
	if err != nil {
		t.Fatal(err)
	}
	lib2, label2, pin2 := hsmtest.NewToken(t) // another token: another HSM
	dir2 := t.TempDir()
	n2 := startNode(t, dir2, tokenRef{lib2, label2, pin2}, Config{},
		cluster.Config{NodeID: "b", DataDir: dir2, BindAddr: "127.0.0.1:0", HeartbeatTimeout: time.Second}, n1)
	if has, _ := n2.pool.HasDomainKey(ctx); !has {
		t.Fatal("the joiner's token has no domain key")
	}
	dec, err := n2.client.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob})
	if err != nil || string(dec.Plaintext) != "across HSMs" {
		t.Fatalf("decrypt on the node with its own HSM: %v", err)
	}
	if n2.admin != n1.admin {
		t.Fatal("the joiner could not unseal the cluster's admin access key")
	}
}

// TestClusterMinorityRefusesWrites: a node cut off from raft answers a
// write with an AWS error within the request deadline instead of hanging,
// and keeps serving crypto from its state.
func TestClusterMinorityRefusesWrites(t *testing.T) {
	lib, label, pin := hsmtest.NewToken(t)
	tok := tokenRef{lib, label, pin}
	var nodes []*testServer
	var faults []*cluster.FaultyStreamLayer
	for i := range 3 {
		dir := t.TempDir()
		sl, err := cluster.NewStreamLayer("127.0.0.1:0", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		f := cluster.NewFaultyStreamLayer(sl)
		faults = append(faults, f)
		ccfg := cluster.Config{NodeID: fmt.Sprintf("m%d", i), DataDir: dir, Stream: f, Bootstrap: i == 0, HeartbeatTimeout: time.Second}
		var join *testServer
		if i > 0 {
			join = nodes[0]
		}
		nodes = append(nodes, startNode(t, dir, tok, Config{RequestTimeout: 3 * time.Second}, ccfg, join))
	}
	waitMembers(t, nodes)
	ctx := context.Background()
	lone := nodes[2]
	id := lone.createKey(t)
	faults[2].Isolate()
	for deadline := time.Now().Add(20 * time.Second); lone.node.LeaderID() != ""; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the isolated node still sees a leader")
		}
	}
	start := time.Now()
	_, err := lone.client.CreateKey(ctx, &kms.CreateKeyInput{})
	if err == nil {
		t.Fatal("the minority accepted a write")
	}
	wantAPIError(t, err, "KMSInternalException")
	t.Logf("minority write refused after %v", time.Since(start).Round(time.Millisecond))
	if _, err := lone.client.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: &id, KeySpec: types.DataKeySpecAes256}); err != nil {
		t.Fatalf("crypto on the isolated node: %v", err)
	}
	faults[2].Heal()
}

// TestClusterGrantTokenAtOnce: a grant made through one follower works on
// another follower at once when the caller passes its grant token (the node
// waits until it has applied the grant), and policies and principals are
// replicated state.
func TestClusterGrantTokenAtOnce(t *testing.T) {
	nodes := newTestCluster(t, 3)
	ctx := context.Background()
	f1, f2 := nodes[1], nodes[2]
	carolOn2 := func() *kms.Client { // carol's key, made through f1, used on f2
		in := CreateCredentialRequest{Principal: "user/carol"}
		var out CreateCredentialResponse
		if err := CallCluster(ctx, f1.url, "us-east-1", f1.admin, "CreateCredential", in, &out); err != nil {
			t.Fatal(err)
		}
		if err := f2.node.WaitApplied(ctx, f1.node.AppliedIndex()); err != nil {
			t.Fatal(err)
		}
		return f2.newClient(out.AccessKeyID, out.SecretAccessKey)
	}()
	out, err := f1.client.CreateKey(ctx, &kms.CreateKeyInput{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		ec := map[string]string{"n": fmt.Sprint(i)}
		g, err := f1.client.CreateGrant(ctx, &kms.CreateGrantInput{KeyId: out.KeyMetadata.KeyId,
			GranteePrincipal: aws.String("arn:aws:iam::111122223333:user/carol"),
			Operations:       []types.GrantOperation{types.GrantOperationGenerateDataKey},
			Constraints:      &types.GrantConstraints{EncryptionContextSubset: ec}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := carolOn2.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: out.KeyMetadata.KeyId,
			KeySpec: types.DataKeySpecAes256, EncryptionContext: ec, GrantTokens: []string{*g.GrantToken}}); err != nil {
			t.Fatalf("grant %d not usable at once on another node: %v", i, err)
		}
	}
}
