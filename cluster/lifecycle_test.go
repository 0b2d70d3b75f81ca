package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
)

func TestKeyLifecycleCommands(t *testing.T) {
	n := newTestNode(t, t.TempDir())
	ctx := context.Background()
	mustApply(t, n, &CreateKey{Key: testKey("k")})
	mustApply(t, n, &CreateAlias{Alias: Alias{Name: "alias/k", TargetKeyID: "k"}})
	state := func() string { k, _ := n.Key("k"); return k.State }

	mustApply(t, n, &SetKeyEnabled{KeyID: "k", Enabled: false})
	if state() != StateDisabled {
		t.Fatalf("state %s", state())
	}
	if _, err := n.Apply(ctx, &CancelDeletion{KeyID: "k"}); !errors.Is(err, ErrInvalidState) {
		t.Fatalf("cancel when not pending: %v", err)
	}
	mustApply(t, n, &ScheduleDeletion{KeyID: "k", DeletionDate: 100, PendingDays: 7})
	if _, err := n.Apply(ctx, &SetKeyEnabled{KeyID: "k", Enabled: true}); !errors.Is(err, ErrInvalidState) {
		t.Fatalf("enable while pending deletion: %v", err)
	}
	if _, err := n.Apply(ctx, &DeleteKey{KeyID: "k", Now: 99}); !errors.Is(err, ErrInvalidState) {
		t.Fatalf("delete before due: %v", err)
	}
	mustApply(t, n, &CancelDeletion{KeyID: "k"})
	if state() != StateDisabled {
		t.Fatalf("after cancel: %s", state())
	}
	mustApply(t, n, &ScheduleDeletion{KeyID: "k", DeletionDate: 100, PendingDays: 7})
	mustApply(t, n, &DeleteKey{KeyID: "k", Now: 100})
	if _, ok := n.Key("k"); ok {
		t.Fatal("key still there")
	}
	if _, ok := n.Alias("alias/k"); ok {
		t.Fatal("alias of deleted key still there")
	}
	if _, err := n.Apply(ctx, &DeleteKey{KeyID: "k", Now: 100}); !errors.Is(err, ErrKeyNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	if ks, _ := n.ListKeys("", 10); len(ks) != 0 {
		t.Fatalf("ListKeys after delete: %d", len(ks))
	}
}

func TestRotationAppliesOnce(t *testing.T) {
	n := newTestNode(t, t.TempDir())
	ctx := context.Background()
	mustApply(t, n, &CreateKey{Key: testKey("r")})
	mustApply(t, n, &SetRotation{KeyID: "r", Enabled: true, Days: 90, NextRotation: 1000})
	rot := &RotateKey{KeyID: "r", Material: Material{Wrapped: []byte("m2"), RotationType: RotationAutomatic, Created: 1000}, ExpectNext: 1000, NextRotation: 2000}
	mustApply(t, n, rot)
	if _, err := n.Apply(ctx, rot); !errors.Is(err, ErrInvalidState) {
		t.Fatalf("second automatic rotation for the same due date: %v", err)
	}
	k, _ := n.Key("r")
	if len(k.Materials) != 2 || k.Materials[1].Version != 2 || k.NextRotation != 2000 {
		t.Fatalf("after rotation: %+v", k)
	}
	for i := 0; i < MaxOnDemandRotations; i++ {
		mustApply(t, n, &RotateKey{KeyID: "r", Material: Material{Wrapped: []byte(fmt.Sprint(i)), RotationType: RotationOnDemand}})
	}
	if _, err := n.Apply(ctx, &RotateKey{KeyID: "r", Material: Material{Wrapped: []byte("x"), RotationType: RotationOnDemand}}); !errors.Is(err, ErrLimitExceeded) {
		t.Fatalf("26th on-demand rotation: %v", err)
	}
	k, _ = n.Key("r")
	if m, _ := k.MaterialVersion(1); string(m.Wrapped) != "wrapped-r" {
		t.Fatal("first material lost")
	}
	if m, _ := k.CurrentMaterial(); m.Version != uint32(2+MaxOnDemandRotations) {
		t.Fatalf("current version %d", m.Version)
	}
}

func TestTags(t *testing.T) {
	n := newTestNode(t, t.TempDir())
	mustApply(t, n, &CreateKey{Key: testKey("t")})
	var tags []Tag
	for i := 0; i < MaxTagsPerKey; i++ {
		tags = append(tags, Tag{Key: fmt.Sprintf("k%d", i), Value: "v"})
	}
	mustApply(t, n, &TagKey{KeyID: "t", Tags: tags})
	mustApply(t, n, &TagKey{KeyID: "t", Tags: []Tag{{Key: "k0", Value: "new"}}}) // overwrite, still 50
	if _, err := n.Apply(context.Background(), &TagKey{KeyID: "t", Tags: []Tag{{Key: "k50"}}}); !errors.Is(err, ErrLimitExceeded) {
		t.Fatalf("51st tag: %v", err)
	}
	mustApply(t, n, &UntagKey{KeyID: "t", Keys: []string{"k1", "absent"}})
	k, _ := n.Key("t")
	if len(k.Tags) != MaxTagsPerKey-1 || k.Tags[0].Value != "new" {
		t.Fatalf("tags: %d %+v", len(k.Tags), k.Tags[0])
	}
}

func TestOnKeyChange(t *testing.T) {
	n := newTestNode(t, t.TempDir())
	var mu sync.Mutex
	var got []string
	n.OnKeyChange(func(id string) { mu.Lock(); got = append(got, id); mu.Unlock() })
	mustApply(t, n, &CreateKey{Key: testKey("a")})
	mustApply(t, n, &TagKey{KeyID: "a", Tags: []Tag{{Key: "x"}}})
	mustApply(t, n, &SetKeyEnabled{KeyID: "a", Enabled: false})
	n.Apply(context.Background(), &SetKeyEnabled{KeyID: "missing"}) // rejected: no call
	mustApply(t, n, &ScheduleDeletion{KeyID: "a", DeletionDate: 1})
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(got) != "[a a]" {
		t.Fatalf("OnKeyChange calls: %v", got)
	}
}
