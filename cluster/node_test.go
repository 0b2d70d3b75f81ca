package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"
)

func newTestNode(t testing.TB, dir string) *Node {
	t.Helper()
	n, err := New(Config{DataDir: dir, Bootstrap: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	return n
}

func testKey(id string) *Key {
	return &Key{ID: id, Arn: "arn:aws:kms:us-east-1:111122223333:key/" + id, State: StateEnabled,
		KeySpec: "SYMMETRIC_DEFAULT", Materials: []Material{{Version: 1, Wrapped: []byte("wrapped-" + id)}}}
}

func mustApply(t testing.TB, n *Node, c Command) any {
	t.Helper()
	v, err := n.Apply(context.Background(), c)
	if err != nil {
		t.Fatalf("apply %T: %v", c, err)
	}
	return v
}

func TestRestartKeepsState(t *testing.T) {
	dir := t.TempDir()
	n := newTestNode(t, dir)
	for i := 0; i < 5; i++ {
		mustApply(t, n, &CreateKey{Key: testKey(fmt.Sprintf("k%d", i))})
	}
	mustApply(t, n, &CreateAlias{Alias: Alias{Name: "alias/a", TargetKeyID: "k1"}})
	if err := n.Snapshot(); err != nil {
		t.Fatal(err)
	}
	mustApply(t, n, &CreateKey{Key: testKey("k9")}) // after the snapshot: replayed from the log
	n.Close()

	n2 := newTestNode(t, dir)
	for _, id := range []string{"k0", "k4", "k9"} {
		k, ok := n2.Key(id)
		if !ok || !bytes.Equal(k.Materials[0].Wrapped, []byte("wrapped-"+id)) {
			t.Fatalf("key %s after restart: %v %+v", id, ok, k)
		}
	}
	if a, ok := n2.Alias("alias/a"); !ok || a.TargetKeyID != "k1" {
		t.Fatalf("alias after restart: %v %+v", ok, a)
	}
}

func TestFSMRules(t *testing.T) {
	n := newTestNode(t, t.TempDir())
	mustApply(t, n, &CreateKey{Key: testKey("a")})
	cases := []struct {
		name string
		cmd  Command
		want error
	}{
		{"duplicate key", &CreateKey{Key: testKey("a")}, ErrKeyExists},
		{"alias to missing key", &CreateAlias{Alias: Alias{Name: "alias/x", TargetKeyID: "nope"}}, ErrKeyNotFound},
		{"update missing alias", &UpdateAlias{Name: "alias/none", TargetKeyID: "a"}, ErrAliasNotFound},
		{"delete missing alias", &DeleteAlias{Name: "alias/none"}, ErrAliasNotFound},
		{"nil key", &CreateKey{}, ErrBadCommand},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := n.Apply(context.Background(), c.cmd)
			if !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
		})
	}
	mustApply(t, n, &CreateAlias{Alias: Alias{Name: "alias/x", TargetKeyID: "a"}})
	if _, err := n.Apply(context.Background(), &CreateAlias{Alias: Alias{Name: "alias/x", TargetKeyID: "a"}}); !errors.Is(err, ErrAliasExists) {
		t.Fatalf("duplicate alias: %v", err)
	}
	for i := 1; i < MaxAliasesKey; i++ {
		mustApply(t, n, &CreateAlias{Alias: Alias{Name: fmt.Sprintf("alias/x%d", i), TargetKeyID: "a"}})
	}
	if _, err := n.Apply(context.Background(), &CreateAlias{Alias: Alias{Name: "alias/over", TargetKeyID: "a"}}); !errors.Is(err, ErrLimitExceeded) {
		t.Fatalf("51st alias: %v", err)
	}
	// PutMeta: first writer wins.
	if v := mustApply(t, n, &PutMeta{Name: "m", Value: []byte("one")}); !bytes.Equal(v.([]byte), []byte("one")) {
		t.Fatalf("PutMeta first: %q", v)
	}
	if v := mustApply(t, n, &PutMeta{Name: "m", Value: []byte("two")}); !bytes.Equal(v.([]byte), []byte("one")) {
		t.Fatalf("PutMeta second: %q", v)
	}
}

func TestListKeysPagination(t *testing.T) {
	n := newTestNode(t, t.TempDir())
	for i := 0; i < 7; i++ {
		mustApply(t, n, &CreateKey{Key: testKey(fmt.Sprintf("k%02d", i))})
	}
	var got []string
	after := ""
	for pages := 0; pages < 10; pages++ {
		ks, more := n.ListKeys(after, 3)
		for _, k := range ks {
			got = append(got, k.ID)
		}
		if !more {
			break
		}
		after = ks[len(ks)-1].ID
	}
	if fmt.Sprint(got) != "[k00 k01 k02 k03 k04 k05 k06]" {
		t.Fatalf("pages: %v", got)
	}
}

func TestCommandRoundTrip(t *testing.T) {
	cmds := []Command{
		&CreateKey{Key: testKey("x")},
		&CreateAlias{Alias: Alias{Name: "alias/a", TargetKeyID: "x", Created: 5}},
		&UpdateAlias{Name: "alias/a", TargetKeyID: "y", Updated: 7},
		&DeleteAlias{Name: "alias/a"},
		&PutCredential{Credential: Credential{AccessKeyID: "AK", SealedSecret: []byte{1, 2}}},
		&PutMeta{Name: "n", Value: []byte{3}},
	}
	for _, c := range cmds {
		b, err := EncodeCommand(c)
		if err != nil {
			t.Fatal(err)
		}
		d, err := DecodeCommand(b)
		if err != nil {
			t.Fatalf("%T: %v", c, err)
		}
		if !reflect.DeepEqual(d, c) {
			t.Fatalf("round trip %T: %+v != %+v", c, d, c)
		}
	}
}

func FuzzDecodeCommand(f *testing.F) {
	for _, c := range []Command{&CreateKey{Key: testKey("x")}, &DeleteAlias{Name: "alias/a"}, &PutMeta{Name: "n"}} {
		b, _ := EncodeCommand(c)
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{1})
	f.Add([]byte{1, 1, 0xde, 0xad})
	f.Add([]byte{99, 1})
	f.Add([]byte{1, 9, 0x80})
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := DecodeCommand(b)
		if err != nil {
			if !errors.Is(err, ErrBadCommand) && !errors.Is(err, ErrUnknownCommand) {
				t.Fatalf("unexpected error class: %v", err)
			}
			return
		}
		// A decoded command must apply without panicking.
		newState().apply(c)
	})
}

func FuzzDecodeSnapshot(f *testing.F) {
	st := newState()
	st.apply(&CreateKey{Key: testKey("x")})
	var buf bytes.Buffer
	snap := st.toSnapshot()
	_ = (&fsmSnapshot{ss: snap}).encode(&buf)
	f.Add(buf.Bytes())
	f.Add([]byte{0x80})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		ss, err := decodeSnapshot(bytes.NewReader(b))
		if err != nil {
			if !errors.Is(err, ErrBadCommand) {
				t.Fatalf("unexpected error class: %v", err)
			}
			return
		}
		newState().restore(ss)
	})
}
