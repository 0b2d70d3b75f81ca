package cluster

import (
	"errors"
	"testing"
)

func TestKeyStoreCommands(t *testing.T) {
	s := newState()
	apply := func(c Command) error {
		t.Helper()
		// Round-trip through the wire encoding, as raft does.
		b, err := EncodeCommand(c)
		if err != nil {
			t.Fatal(err)
		}
		d, err := DecodeCommand(b)
		if err != nil {
			t.Fatal(err)
		}
		if r, ok := s.apply(d).(error); ok {
			return r
		}
		return nil
	}
	xstore := func(id, name, path string) CustomKeyStore {
		return CustomKeyStore{ID: id, Name: name, AccountID: "111122223333", Type: KeyStoreExternal, State: StoreDisconnected,
			XksEndpoint: "https://xks.example.com", XksPath: path, XksAccessKeyID: "A", XksSealedSecret: []byte{1}}
	}
	for _, tc := range []struct {
		name string
		cmd  Command
		want error
	}{
		{"create", &CreateKeyStore{Store: xstore("cks-1", "one", "/kms/xks/v1")}, nil},
		{"name in use", &CreateKeyStore{Store: xstore("cks-2", "one", "/a/kms/xks/v1")}, ErrKeyStoreNameInUse},
		{"uri in use", &CreateKeyStore{Store: xstore("cks-2", "two", "/kms/xks/v1")}, ErrKeyStoreInUse},
		{"create 2", &CreateKeyStore{Store: xstore("cks-2", "two", "/a/kms/xks/v1")}, nil},
		{"key while disconnected", &CreateStoreKey{Key: &Key{ID: "k1", CustomKeyStoreID: "cks-1", XksKeyID: "x"}}, ErrKeyStoreState},
		{"connect unexpected", &SetKeyStoreState{ID: "cks-1", State: StoreConnected, Expect: []string{StoreConnecting}}, ErrKeyStoreState},
		{"connecting", &SetKeyStoreState{ID: "cks-1", State: StoreConnecting, Expect: []string{StoreDisconnected}}, nil},
		{"connected", &SetKeyStoreState{ID: "cks-1", State: StoreConnected, Expect: []string{StoreConnecting}}, nil},
		{"rename connected", &UpdateKeyStore{Store: func() CustomKeyStore { c := xstore("cks-1", "uno", "/kms/xks/v1"); return c }()}, nil},
		{"repath connected", &UpdateKeyStore{Store: xstore("cks-1", "uno", "/b/kms/xks/v1")}, ErrKeyStoreState},
		{"key", &CreateStoreKey{Key: &Key{ID: "k1", CustomKeyStoreID: "cks-1", XksKeyID: "x"}}, nil},
		{"xks key in use", &CreateStoreKey{Key: &Key{ID: "k2", CustomKeyStoreID: "cks-1", XksKeyID: "x"}}, ErrXksKeyInUse},
		{"unknown store", &CreateStoreKey{Key: &Key{ID: "k3", CustomKeyStoreID: "cks-9"}}, ErrKeyStoreNotFound},
		{"delete connected", &DeleteKeyStore{ID: "cks-1"}, ErrKeyStoreState},
		{"disconnect", &SetKeyStoreState{ID: "cks-1", State: StoreDisconnected}, nil},
		{"delete with keys", &DeleteKeyStore{ID: "cks-1"}, ErrKeyStoreHasKeys},
		{"delete empty", &DeleteKeyStore{ID: "cks-2"}, nil},
		{"delete again", &DeleteKeyStore{ID: "cks-2"}, ErrKeyStoreNotFound},
	} {
		if err := apply(tc.cmd); !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
			t.Fatalf("%s: got %v, want %v", tc.name, err, tc.want)
		}
	}
	if cs, ok := s.store("cks-1"); !ok || cs.Name != "uno" || cs.State != StoreDisconnected {
		t.Fatalf("store after commands: %+v", cs)
	}
	// The per-account quota.
	for i := range MaxKeyStores {
		c := xstore("q"+string(rune('a'+i)), "q"+string(rune('a'+i)), "/q"+string(rune('a'+i))+"/kms/xks/v1")
		c.AccountID = "222233334444"
		if err := apply(&CreateKeyStore{Store: c}); err != nil {
			t.Fatal(err)
		}
	}
	c := xstore("qz", "qz", "/qz/kms/xks/v1")
	c.AccountID = "222233334444"
	if err := apply(&CreateKeyStore{Store: c}); !errors.Is(err, ErrLimitExceeded) {
		t.Fatalf("11th store: %v", err)
	}
	// Stores survive a snapshot (they live in meta).
	n := newState()
	n.restore(s.toSnapshot())
	if cs, ok := n.store("cks-1"); !ok || cs.Name != "uno" {
		t.Fatal("store lost in snapshot")
	}
	if code := ErrorCode(errors.Join(ErrKeyStoreHasKeys)); code != "KeyStoreHasKeys" {
		t.Fatalf("error code %q", code)
	}
}
