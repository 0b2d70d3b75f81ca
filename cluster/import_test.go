package cluster

import (
	"bytes"
	"context"
	"errors"
	"testing"
)

func externalKey(id string) *Key {
	return &Key{ID: id, Arn: "arn:aws:kms:us-east-1:111122223333:key/" + id, State: StatePendingImport,
		KeySpec: "SYMMETRIC_DEFAULT", Origin: OriginExternal}
}

func TestImportCommands(t *testing.T) {
	n := newTestNode(t, t.TempDir())
	ctx := context.Background()
	mustApply(t, n, &CreateKey{Key: externalKey("e")})
	mustApply(t, n, &CreateKey{Key: testKey("a")})
	key := func() *Key { k, _ := n.Key("e"); return k }
	params := func(tok string, validTo int64) *PutImportParams {
		return &PutImportParams{KeyID: "e", Now: 10, Params: ImportParams{TokenID: tok, WrappingAlgorithm: "RSAES_OAEP_SHA_256",
			WrappingKeySpec: "RSA_2048", WrappedPrivateKey: []byte("wrapped-priv"), ValidTo: validTo}}
	}
	imp := func(tok, id string, now int64) *ImportMaterial {
		return &ImportMaterial{KeyID: "e", TokenID: tok, Wrapped: []byte("wrapped-" + id), MaterialID: id,
			ExpirationModel: ExpirationExpires, ValidTo: 500, Now: now}
	}
	if _, err := n.Apply(ctx, &PutImportParams{KeyID: "a", Now: 10, Params: params("t0", 100).Params}); !errors.Is(err, ErrInvalidState) {
		t.Fatalf("import parameters for an AWS_KMS key: %v", err)
	}
	mustApply(t, n, params("t1", 100))
	if _, err := n.Apply(ctx, imp("nope", "m1", 20)); !errors.Is(err, ErrImportToken) {
		t.Fatalf("unknown token: %v", err)
	}
	if _, err := n.Apply(ctx, imp("t1", "m1", 100)); !errors.Is(err, ErrImportTokenExpired) {
		t.Fatalf("expired token: %v", err)
	}
	mustApply(t, n, imp("t1", "m1", 20))
	if k := key(); k.State != StateEnabled || len(k.Materials) != 1 || k.Import.ValidTo != 500 {
		t.Fatalf("after import: %+v", k)
	}
	if _, err := n.Apply(ctx, imp("t1", "m2", 30)); !errors.Is(err, ErrIncorrectMaterial) {
		t.Fatalf("different material: %v", err)
	}
	// Expiry: not before ValidTo, not for another ValidTo, once.
	if _, err := n.Apply(ctx, &DeleteImportedMaterial{KeyID: "e", Expire: true, ExpectValidTo: 500, Now: 499}); !errors.Is(err, ErrInvalidState) {
		t.Fatalf("expiry before due: %v", err)
	}
	if _, err := n.Apply(ctx, &DeleteImportedMaterial{KeyID: "e", Expire: true, ExpectValidTo: 400, Now: 600}); !errors.Is(err, ErrInvalidState) {
		t.Fatalf("expiry of a stale ValidTo: %v", err)
	}
	mustApply(t, n, &DeleteImportedMaterial{KeyID: "e", Expire: true, ExpectValidTo: 500, Now: 500})
	if k := key(); k.State != StatePendingImport || len(k.Materials) != 0 || k.Import.MaterialID != "m1" {
		t.Fatalf("after expiry: %+v", k)
	}
	if _, err := n.Apply(ctx, &DeleteImportedMaterial{KeyID: "e", Expire: true, ExpectValidTo: 500, Now: 500}); !errors.Is(err, ErrInvalidState) {
		t.Fatalf("second expiry: %v", err)
	}
	// Only the same material comes back; a key pending deletion takes none
	// and returns to PendingImport when its deletion is cancelled.
	if _, err := n.Apply(ctx, imp("t1", "m2", 30)); !errors.Is(err, ErrIncorrectMaterial) {
		t.Fatalf("different material after expiry: %v", err)
	}
	mustApply(t, n, imp("t1", "m1", 30))
	mustApply(t, n, &ScheduleDeletion{KeyID: "e", DeletionDate: 1000, PendingDays: 7})
	if _, err := n.Apply(ctx, params("t2", 100)); !errors.Is(err, ErrInvalidState) {
		t.Fatalf("parameters while pending deletion: %v", err)
	}
	mustApply(t, n, &DeleteImportedMaterial{KeyID: "e", Now: 40})
	if k := key(); k.State != StatePendingDeletion || len(k.Materials) != 0 {
		t.Fatalf("delete material while pending deletion: %+v", k)
	}
	mustApply(t, n, &CancelDeletion{KeyID: "e"})
	if k := key(); k.State != StatePendingImport {
		t.Fatalf("cancelled deletion of a key without material: %s", k.State)
	}
	// Parameters: expired ones are pruned, at most MaxImportParams kept.
	for i := 0; i < MaxImportParams+3; i++ {
		mustApply(t, n, params(string(rune('A'+i)), 1000))
	}
	if got := len(key().Import.Params); got != MaxImportParams {
		t.Fatalf("%d parameter sets kept", got)
	}
	mustApply(t, n, &PruneImportParams{KeyID: "e", Now: 1000})
	if got := len(key().Import.Params); got != 0 {
		t.Fatalf("%d parameter sets after prune", got)
	}
	// Snapshot round trip keeps the import state.
	var buf bytes.Buffer
	if err := n.SaveSnapshot(&buf); err != nil {
		t.Fatal(err)
	}
	m := newTestNode(t, t.TempDir())
	if err := m.RestoreSnapshot(ctx, buf.Bytes()); err != nil {
		t.Fatal(err)
	}
	if k, ok := m.Key("e"); !ok || k.Import == nil || k.Import.MaterialID != "m1" || k.State != StatePendingImport {
		t.Fatalf("restored: %+v", k)
	}
	// Commands round-trip through the codec.
	for _, c := range []Command{params("t", 1), imp("t", "m", 1), &DeleteImportedMaterial{KeyID: "e", Expire: true}, &PruneImportParams{KeyID: "e"}} {
		b, err := EncodeCommand(c)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := DecodeCommand(b); err != nil {
			t.Fatalf("%T: %v", c, err)
		}
	}
}

// TestImportRotationCommands: pending material, RotateImported, per-version
// delete, expiry and re-import.
func TestImportRotationCommands(t *testing.T) {
	n := newTestNode(t, t.TempDir())
	ctx := context.Background()
	mustApply(t, n, &CreateKey{Key: externalKey("r")})
	key := func() *Key { k, _ := n.Key("r"); return k }
	mustApply(t, n, &PutImportParams{KeyID: "r", Now: 1, Params: ImportParams{TokenID: "t", WrappedPrivateKey: []byte("p"), ValidTo: 1000}})
	imp := func(id string, isNew bool, validTo int64) *ImportMaterial {
		m := &ImportMaterial{KeyID: "r", TokenID: "t", Wrapped: []byte("w-" + id), MaterialID: id, NewMaterial: isNew,
			ExpirationModel: ExpirationDoesNotExpire, Now: 10}
		if validTo != 0 {
			m.ExpirationModel, m.ValidTo = ExpirationExpires, validTo
		}
		return m
	}
	if _, err := n.Apply(ctx, &RotateImported{KeyID: "r", Now: 5}); !errors.Is(err, ErrInvalidState) {
		t.Fatalf("rotation without material: %v", err)
	}
	mustApply(t, n, imp("a", true, 0))
	mustApply(t, n, imp("b", true, 900)) // pending
	if k := key(); len(k.Materials) != 1 || k.Import.Pending == nil || k.Import.Pending.MaterialID != "b" {
		t.Fatalf("pending: %+v", k.Import)
	}
	if _, err := n.Apply(ctx, imp("c", true, 0)); !errors.Is(err, ErrInvalidState) {
		t.Fatalf("second pending material: %v", err)
	}
	// An HMAC key never takes pending material: a second first import
	// (two raced past the agent's check) is other material. (Multi-Region
	// symmetric keys do: TestImportVersionsSync.)
	for _, mk := range []*Key{externalKey("h")} {
		mk.KeySpec = "HMAC_256"
		mustApply(t, n, &CreateKey{Key: mk})
		mustApply(t, n, &PutImportParams{KeyID: mk.ID, Now: 1, Params: ImportParams{TokenID: "t", WrappedPrivateKey: []byte("p"), ValidTo: 1000}})
		first, second := imp("a", true, 0), imp("b", true, 0)
		first.KeyID, second.KeyID = mk.ID, mk.ID
		mustApply(t, n, first)
		if _, err := n.Apply(ctx, second); !errors.Is(err, ErrIncorrectMaterial) {
			t.Fatalf("%s: new material on a key that does not rotate imported material: %v", mk.ID, err)
		}
		if k, _ := n.Key(mk.ID); k.Import.Pending != nil {
			t.Fatalf("%s: pending material %+v", mk.ID, k.Import.Pending)
		}
	}
	mustApply(t, n, &RotateImported{KeyID: "r", Now: 20})
	k := key()
	if len(k.Materials) != 2 || k.Materials[1].Version != 2 || !bytes.Equal(k.Materials[1].Wrapped, []byte("w-b")) ||
		k.Materials[1].RotationType != RotationOnDemand || k.Import.Pending != nil || k.OnDemandRotations != 1 ||
		k.Import.ValidTo != 900 || k.Import.MaterialID != "a" {
		t.Fatalf("after rotation: %+v %+v", k.Materials, k.Import)
	}
	// Version 1 deleted: PendingImport; current (2) still there; only a's
	// material restores version 1.
	mustApply(t, n, &DeleteImportedMaterial{KeyID: "r", Version: 1, Now: 30})
	if k := key(); k.State != StatePendingImport || len(k.Materials) != 1 || k.Materials[0].Version != 2 {
		t.Fatalf("after deleting version 1: %s %+v", k.State, k.Materials)
	}
	if _, err := n.Apply(ctx, imp("c", false, 0)); !errors.Is(err, ErrIncorrectMaterial) {
		t.Fatalf("other material: %v", err)
	}
	mustApply(t, n, imp("a", false, 0))
	if k := key(); k.State != StateEnabled || len(k.Materials) != 2 || k.Materials[0].Version != 1 {
		t.Fatalf("after re-import: %s %+v", k.State, k.Materials)
	}
	// Version 2 expires at 900, once.
	mustApply(t, n, &DeleteImportedMaterial{KeyID: "r", Version: 2, Expire: true, ExpectValidTo: 900, Now: 950})
	if _, err := n.Apply(ctx, &DeleteImportedMaterial{KeyID: "r", Version: 2, Expire: true, ExpectValidTo: 900, Now: 960}); !errors.Is(err, ErrInvalidState) {
		t.Fatalf("second expiry: %v", err)
	}
	if k := key(); k.State != StatePendingImport || len(k.Materials) != 1 || k.Import.ExpirationModel != "" {
		t.Fatalf("after expiry: %s %+v %+v", k.State, k.Materials, k.Import)
	}
	vs := key().ImportVersions()
	if len(vs) != 2 || !vs[0].Imported || vs[1].Imported || vs[1].RotationType != RotationOnDemand {
		t.Fatalf("versions: %+v", vs)
	}
}

// TestImportVersionsSync: a multi-Region replica with imported material
// learns its primary's rotations (SetMultiRegion.ImportVersions): its
// pending material of the same fingerprint becomes the new version
// (reported with that fingerprint), a replica without it goes
// PendingImport and takes it as existing material, a shorter or equal
// list changes nothing, and a list that disagrees on an earlier version is
// refused.
func TestImportVersionsSync(t *testing.T) {
	n := newTestNode(t, t.TempDir())
	fk := []byte("fingerprint key")
	replica := func(id string) *Key {
		k := externalKey(id)
		k.MultiRegion, k.MR, k.Import = true, &MultiRegion{Type: MultiRegionReplica, Gen: 1}, &KeyImport{FingerprintKey: fk}
		mustApply(t, n, &CreateKey{Key: k})
		mustApply(t, n, &PutImportParams{KeyID: id, Now: 1, Params: ImportParams{TokenID: "t", WrappedPrivateKey: []byte("p"), ValidTo: 1000}})
		mustApply(t, n, &SetMultiRegion{KeyID: id, ImportMaterialID: "m1"})
		k, _ = n.Key(id)
		return k
	}
	imp := func(id, material string, isNew bool) *ImportMaterial {
		return &ImportMaterial{KeyID: id, TokenID: "t", Wrapped: []byte("w-" + material), MaterialID: material, NewMaterial: isNew,
			ReportedID: material, ExpirationModel: ExpirationDoesNotExpire, Now: 10}
	}
	key := func(id string) *Key { k, _ := n.Key(id); return k }
	pvs := []ImportVersionSync{{MaterialID: "m1"}, {MaterialID: "m2", Created: 20, RotationType: RotationOnDemand}}
	for _, id := range []string{"a", "b"} {
		replica(id)
		mustApply(t, n, imp(id, "m1", false))
	}
	mustApply(t, n, imp("a", "m2", true)) // pending in a only
	if k := key("a"); k.Import.Pending == nil || len(k.Materials) != 1 || k.State != StateEnabled {
		t.Fatalf("a before the sync: %+v %s", k.Import, k.State)
	}
	for _, id := range []string{"a", "b"} {
		mustApply(t, n, &SetMultiRegion{KeyID: id, ImportVersions: pvs})
	}
	a := key("a")
	if m, ok := a.CurrentMaterial(); !ok || m.Version != 2 || string(m.Wrapped) != "w-m2" || m.ID != "m2" || a.Import.Pending != nil || a.State != StateEnabled ||
		len(a.Import.Versions) != 2 || a.Import.Versions[1].RotationType != RotationOnDemand || a.Import.Versions[1].Created != 20 {
		t.Fatalf("a after the sync: %+v %+v %s", a.Materials, a.Import, a.State)
	}
	b := key("b")
	if len(b.Materials) != 1 || b.State != StatePendingImport || len(b.Import.Versions) != 2 || b.Import.Versions[1].Imported {
		t.Fatalf("b after the sync: %+v %+v %s", b.Materials, b.Import, b.State)
	}
	mustApply(t, n, imp("b", "m2", false))
	if b := key("b"); b.State != StateEnabled || len(b.Materials) != 2 {
		t.Fatalf("b after importing m2: %+v %s", b.Materials, b.State)
	}
	// The same list again, or a shorter one: nothing changes.
	for _, l := range [][]ImportVersionSync{pvs, pvs[:1]} {
		mustApply(t, n, &SetMultiRegion{KeyID: "a", ImportVersions: l})
		if k := key("a"); len(k.Materials) != 2 || k.State != StateEnabled {
			t.Fatalf("a after a repeated sync: %+v %s", k.Materials, k.State)
		}
	}
	// A list that disagrees with the key's versions (longer, or as long)
	// is not taken; the rest of the sync is.
	for _, bad := range [][]ImportVersionSync{{{MaterialID: "other"}, {MaterialID: "m2"}, {MaterialID: "m3"}}, {{MaterialID: "m1"}, {MaterialID: "m3"}}} {
		if !ImportVersionsDiverge(key("a"), bad) {
			t.Fatalf("%v does not diverge", bad)
		}
		mustApply(t, n, &SetMultiRegion{KeyID: "a", ImportVersions: bad, Rotation: &RotationSync{Days: 99}})
		if k := key("a"); len(k.Materials) != 2 || k.State != StateEnabled || k.Import.Versions[1].MaterialID != "m2" || k.RotationDays != 99 {
			t.Fatalf("a after a diverging list: %+v %s", k.Import.Versions, k.State)
		}
	}
	// A replica that is Updating (UpdatePrimaryRegion) when a version
	// without its material arrives returns to PendingImport.
	replica("c")
	mustApply(t, n, imp("c", "m1", false))
	mustApply(t, n, &SetMultiRegion{KeyID: "c", State: StateUpdating, SavePrev: true})
	mustApply(t, n, &SetMultiRegion{KeyID: "c", ImportVersions: pvs})
	if k := key("c"); k.State != StateUpdating || k.PrevState != StatePendingImport {
		t.Fatalf("c: %s, then %s", k.State, k.PrevState)
	}
}
