package cluster

import (
	"bytes"
	"context"
	"errors"
	"testing"
)

func TestMultiRegionCommands(t *testing.T) {
	n := newTestNode(t, t.TempDir())
	ctx := context.Background()
	pk := testKey("mrk-1")
	pk.MultiRegion = true
	pk.MR = &MultiRegion{Type: MultiRegionPrimary, Primary: RegionKey{"us-east-1", pk.Arn}, Gen: 1}
	mustApply(t, n, &CreateKey{Key: pk})
	key := func() *Key { k, _ := n.Key("mrk-1"); return k }
	west := RegionKey{"us-west-2", "arn:aws:kms:us-west-2:111122223333:key/mrk-1"}

	mustApply(t, n, &AddReplica{KeyID: "mrk-1", Replica: west})
	if _, err := n.Apply(ctx, &AddReplica{KeyID: "mrk-1", Replica: west}); !errors.Is(err, ErrKeyExists) {
		t.Fatalf("second replica in one region: %v", err)
	}
	if _, err := n.Apply(ctx, &AddReplica{KeyID: "mrk-1", Replica: RegionKey{"us-east-1", "x"}}); !errors.Is(err, ErrKeyExists) {
		t.Fatalf("replica in the primary's region: %v", err)
	}
	if k := key(); k.MR.Gen != 2 || len(k.MR.Replicas) != 1 {
		t.Fatalf("after AddReplica: %+v", k.MR)
	}
	// A primary with a replica waits for it before its own waiting period.
	if st := mustApply(t, n, &ScheduleMRDeletion{KeyID: "mrk-1", Now: 10, PendingDays: 7}); st != StatePendingReplicaDeletion {
		t.Fatalf("schedule: %v", st)
	}
	mustApply(t, n, &CancelDeletion{KeyID: "mrk-1"})
	mustApply(t, n, &SetKeyEnabled{KeyID: "mrk-1", Enabled: true})
	mustApply(t, n, &ScheduleMRDeletion{KeyID: "mrk-1", Now: 10, PendingDays: 7})
	mustApply(t, n, &RemoveReplica{KeyID: "mrk-1", Region: "us-west-2", Now: 50})
	if k := key(); k.State != StatePendingDeletion || k.DeletionDate != 50+7*nanosPerDay || k.MR.Gen != 3 {
		t.Fatalf("after the last replica went: %s %d %+v", k.State, k.DeletionDate, k.MR)
	}

	// A replica: Creating until activated, materials appended in order, a
	// stale configuration ignored.
	rk := testKey("mrk-2")
	rk.State, rk.MultiRegion = StateCreating, true
	rk.MR = &MultiRegion{Type: MultiRegionReplica, Primary: RegionKey{"eu-west-1", "p"}, Gen: 5}
	mustApply(t, n, &CreateKey{Key: rk})
	rkey := func() *Key { k, _ := n.Key("mrk-2"); return k }
	mustApply(t, n, &SetMultiRegion{KeyID: "mrk-2", Config: &MultiRegion{Type: MultiRegionPrimary, Gen: 4},
		Materials: []Material{{Version: 3, Wrapped: []byte("v3")}, {Version: 2, Wrapped: []byte("v2")}, {Version: 3, Wrapped: []byte("v3")}},
		Rotation:  &RotationSync{Enabled: true, Days: 90, Next: 7}, Activate: true})
	k := rkey()
	if k.MR.Type != MultiRegionReplica || len(k.Materials) != 3 || !bytes.Equal(k.Materials[2].Wrapped, []byte("v3")) ||
		k.State != StateEnabled || !k.RotationEnabled || k.RotationDays != 90 {
		t.Fatalf("replica after sync: %+v", k)
	}
	// Updating and back.
	mustApply(t, n, &SetMultiRegion{KeyID: "mrk-2", State: StateUpdating, SavePrev: true,
		Config: &MultiRegion{Type: MultiRegionPrimary, Primary: RegionKey{"us-east-1", "q"}, Gen: 6}})
	// Updating again keeps the state to return to.
	mustApply(t, n, &SetMultiRegion{KeyID: "mrk-2", State: StateUpdating, SavePrev: true})
	if k := rkey(); k.PrevState != StateEnabled {
		t.Fatalf("PrevState %q", k.PrevState)
	}
	if _, err := n.Apply(ctx, &ScheduleMRDeletion{KeyID: "mrk-2", Now: 1, PendingDays: 7}); !errors.Is(err, ErrInvalidState) {
		t.Fatalf("schedule deletion while Updating: %v", err)
	}
	if _, err := n.Apply(ctx, &SetMultiRegion{KeyID: "mrk-2", ExpectState: StateEnabled, RestorePrev: true}); !errors.Is(err, ErrInvalidState) {
		t.Fatalf("expect state: %v", err)
	}
	mustApply(t, n, &SetMultiRegion{KeyID: "mrk-2", ExpectState: StateUpdating, RestorePrev: true})
	if k := rkey(); k.State != StateEnabled || !k.IsPrimary() || k.PrevState != "" {
		t.Fatalf("after the swap: %s %+v", k.State, k.MR)
	}
	// The configuration survives a snapshot.
	var buf bytes.Buffer
	if err := n.SaveSnapshot(&buf); err != nil {
		t.Fatal(err)
	}
	ss, err := decodeSnapshot(&buf)
	if err != nil {
		t.Fatal(err)
	}
	for _, sk := range ss.Keys {
		if sk.ID == "mrk-2" && (sk.MR == nil || sk.MR.Gen != 6 || sk.MR.Primary.Arn != "q" || !sk.IsPrimary()) {
			t.Fatalf("snapshot lost the configuration: %+v", sk.MR)
		}
	}
	// Commands survive encoding.
	for _, c := range []Command{&SetMultiRegion{KeyID: "a", Config: &MultiRegion{Type: MultiRegionReplica, Replicas: []RegionKey{west}}},
		&AddReplica{KeyID: "a", Replica: west}, &RemoveReplica{KeyID: "a", Region: "x"}, &ScheduleMRDeletion{KeyID: "a"}} {
		b, err := EncodeCommand(c)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := DecodeCommand(b); err != nil {
			t.Fatalf("%T: %v", c, err)
		}
	}
}

// FuzzMultiRegionCommands decodes hostile bytes as commands and applies
// them to a state holding a primary and a replica key: nothing panics.
func FuzzMultiRegionCommands(f *testing.F) {
	west := RegionKey{"us-west-2", "arn:aws:kms:us-west-2:111122223333:key/p"}
	for _, c := range []Command{
		&SetMultiRegion{KeyID: "p", Config: &MultiRegion{Type: MultiRegionReplica, Replicas: []RegionKey{west}, Gen: 9},
			Materials: []Material{{Version: 2, Wrapped: []byte("w")}}, Rotation: &RotationSync{Enabled: true}, Activate: true,
			State: StateUpdating, SavePrev: true},
		&SetMultiRegion{KeyID: "r", RestorePrev: true, ExpectState: StateCreating},
		&AddReplica{KeyID: "p", Replica: west},
		&RemoveReplica{KeyID: "p", Region: "us-west-2", Now: 5},
		&ScheduleMRDeletion{KeyID: "p", Now: 1, PendingDays: 7},
	} {
		b, _ := EncodeCommand(c)
		f.Add(b)
	}
	f.Add([]byte{60, 1, 0x80})
	f.Add([]byte{61, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := DecodeCommand(b)
		if err != nil {
			return
		}
		st := newState()
		p := testKey("p")
		p.MR = &MultiRegion{Type: MultiRegionPrimary, Primary: RegionKey{"us-east-1", p.Arn}, Replicas: []RegionKey{{"eu-west-1", "x"}}, Gen: 1}
		r := testKey("r")
		r.State, r.Materials = StateCreating, nil
		r.MR = &MultiRegion{Type: MultiRegionReplica, Primary: RegionKey{"eu-west-1", "y"}, Gen: 1}
		st.apply(&CreateKey{Key: p})
		st.apply(&CreateKey{Key: r})
		st.apply(c)
		// Published keys stay consistent: versions ascend from 1 without gaps.
		for _, id := range []string{"p", "r"} {
			k, ok := st.keys[id]
			if !ok {
				continue
			}
			for i, m := range k.Materials {
				if m.Version != uint32(i+1) {
					t.Fatalf("%s: material %d has version %d", k.ID, i, m.Version)
				}
			}
		}
	})
}

// TestMultiRegionImportedReplica: a replica of a key with imported
// material becomes PendingImport (not Enabled) when activated, learns the
// primary's material fingerprint once, and takes only that material.
func TestMultiRegionImportedReplica(t *testing.T) {
	n := newTestNode(t, t.TempDir())
	ctx := context.Background()
	rk := testKey("mrk-3")
	rk.State, rk.MultiRegion, rk.Origin, rk.Materials = StateCreating, true, OriginExternal, nil
	rk.Import = &KeyImport{FingerprintKey: []byte("fp")}
	rk.MR = &MultiRegion{Type: MultiRegionReplica, Primary: RegionKey{"eu-west-1", "p"}, Gen: 2}
	mustApply(t, n, &CreateKey{Key: rk})
	key := func() *Key { k, _ := n.Key("mrk-3"); return k }
	mustApply(t, n, &SetMultiRegion{KeyID: "mrk-3", ImportMaterialID: "aa", Activate: true})
	if k := key(); k.State != StatePendingImport || k.Import.MaterialID != "aa" || !bytes.Equal(k.Import.FingerprintKey, []byte("fp")) {
		t.Fatalf("activated replica: %s %+v", k.State, k.Import)
	}
	mustApply(t, n, &SetMultiRegion{KeyID: "mrk-3", ImportMaterialID: "bb"})
	if k := key(); k.Import.MaterialID != "aa" {
		t.Fatalf("the fingerprint changed: %s", k.Import.MaterialID)
	}
	mustApply(t, n, &PutImportParams{KeyID: "mrk-3", Params: ImportParams{TokenID: "t", WrappedPrivateKey: []byte("k"), ValidTo: 100}, Now: 1})
	if _, err := n.Apply(ctx, &ImportMaterial{KeyID: "mrk-3", TokenID: "t", Wrapped: []byte("m"), MaterialID: "bb", Now: 2}); !errors.Is(err, ErrIncorrectMaterial) {
		t.Fatalf("other material: %v", err)
	}
	mustApply(t, n, &ImportMaterial{KeyID: "mrk-3", TokenID: "t", Wrapped: []byte("m"), MaterialID: "aa", ReportedID: "aa", Now: 2})
	if k := key(); k.State != StateEnabled || len(k.Materials) != 1 || k.Materials[0].ID != "aa" {
		t.Fatalf("after import: %s %+v", k.State, k.Materials)
	}
}
