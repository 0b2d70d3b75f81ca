package cluster

import (
	"bytes"
	"context"
	"errors"
	"testing"
)

func TestGrantCommands(t *testing.T) {
	n := newTestNode(t, t.TempDir())
	ctx := context.Background()
	mustApply(t, n, &CreateKey{Key: testKey("k")})
	g := Grant{ID: "g1", KeyID: "k", Name: "n", GranteePrincipal: "arn:aws:iam::111122223333:user/a",
		Operations: []string{"Encrypt", "Decrypt"}, EncryptionContextEquals: map[string]string{"a": "b"}}
	if id := mustApply(t, n, &CreateGrant{Grant: g}); id != "g1" {
		t.Fatalf("CreateGrant response %v", id)
	}
	// Same name and terms: the existing grant, whatever id the retry proposed.
	retry := g
	retry.ID, retry.Operations = "g2", []string{"Decrypt", "Encrypt"}
	if id := mustApply(t, n, &CreateGrant{Grant: retry}); id != "g1" {
		t.Fatalf("idempotent retry gave %v", id)
	}
	// Same name, other terms: a new grant.
	other := g
	other.ID, other.Operations = "g3", []string{"Encrypt"}
	if id := mustApply(t, n, &CreateGrant{Grant: other}); id != "g3" {
		t.Fatalf("different terms gave %v", id)
	}
	var seen []string
	n.GrantsFor("k", g.GranteePrincipal, func(g *Grant) bool { seen = append(seen, g.ID); return false })
	if len(seen) != 2 {
		t.Fatalf("grants of grantee: %v", seen)
	}
	if gs, more := n.ListGrants("k", "", "", "", 1); len(gs) != 1 || !more || gs[0].ID != "g1" {
		t.Fatalf("ListGrants page: %v %v", gs, more)
	}

	// Snapshot round trip keeps grants and principals.
	mustApply(t, n, &PutPrincipal{Principal: Principal{Arn: "arn:aws:iam::111122223333:user/a", Policy: "{}"}})
	var buf bytes.Buffer
	if err := n.SaveSnapshot(&buf); err != nil {
		t.Fatal(err)
	}
	m := newTestNode(t, t.TempDir())
	if err := m.RestoreSnapshot(ctx, buf.Bytes()); err != nil {
		t.Fatal(err)
	}
	if _, ok := m.Grant("k", "g3"); !ok {
		t.Fatal("grant lost in snapshot")
	}
	if p, ok := m.Principal("arn:aws:iam::111122223333:user/a"); !ok || p.Policy != "{}" {
		t.Fatal("principal lost in snapshot")
	}

	mustApply(t, n, &RemoveGrant{KeyID: "k", GrantID: "g1"})
	if _, err := n.Apply(ctx, &RemoveGrant{KeyID: "k", GrantID: "g1"}); !errors.Is(err, ErrGrantNotFound) {
		t.Fatalf("second remove: %v", err)
	}
	// Deleting the key drops its grants.
	mustApply(t, n, &ScheduleDeletion{KeyID: "k", DeletionDate: 1, PendingDays: 7})
	if _, err := n.Apply(ctx, &CreateGrant{Grant: Grant{ID: "g4", KeyID: "k", Operations: []string{"Encrypt"}}}); !errors.Is(err, ErrInvalidState) {
		t.Fatalf("grant on key pending deletion: %v", err)
	}
	mustApply(t, n, &DeleteKey{KeyID: "k", Now: 1})
	if _, ok := n.FindGrant("g3"); ok {
		t.Fatal("grant of deleted key survives")
	}
}

func TestCredentialAndPolicyCommands(t *testing.T) {
	n := newTestNode(t, t.TempDir())
	ctx := context.Background()
	mustApply(t, n, &CreateKey{Key: testKey("k")})
	mustApply(t, n, &SetKeyPolicy{KeyID: "k", Policy: `{"Statement":[]}`})
	if k, _ := n.Key("k"); k.Policy != `{"Statement":[]}` {
		t.Fatalf("policy %q", k.Policy)
	}
	mustApply(t, n, &PutCredential{Credential: Credential{AccessKeyID: "AK", Principal: "p"}})
	mustApply(t, n, &DeleteCredential{AccessKeyID: "AK"})
	if _, ok := n.Credential("AK"); ok {
		t.Fatal("credential survives delete")
	}
	if _, err := n.Apply(ctx, &DeleteCredential{AccessKeyID: "AK"}); !errors.Is(err, ErrCredNotFound) {
		t.Fatalf("second delete: %v", err)
	}
}
