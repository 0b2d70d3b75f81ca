package cluster

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// Partition on one side alone cuts both directions: A refuses to dial B,
// drops B's streams on accept and closes the ones already open.
func TestFaultPartitionStreams(t *testing.T) {
	newLayer := func() *FaultyStreamLayer {
		sl, err := NewStreamLayer("127.0.0.1:0", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		f := NewFaultyStreamLayer(sl)
		t.Cleanup(func() { f.Close() })
		return f
	}
	a, b := newLayer(), newLayer()
	addrA := raft.ServerAddress(a.Addr().String())
	addrB := raft.ServerAddress(b.Addr().String())

	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := a.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	recv := func() net.Conn {
		t.Helper()
		select {
		case c := <-accepted:
			return c
		case <-time.After(10 * time.Second):
			t.Fatal("timed out waiting for a to accept")
			return nil
		}
	}

	// Open streams both ways before the cut.
	aToB, err := a.Dial(addrB, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	bToA, err := b.Dial(addrA, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	fromB := recv()

	a.Partition(addrB)

	if _, err := a.Dial(addrB, 5*time.Second); !errors.Is(err, errPartitioned) {
		t.Fatalf("a dials b while cut: got %v, want errPartitioned", err)
	}
	// Both of a's existing streams with b are closed...
	if _, err := aToB.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("a's dialed stream to b: write got %v, want net.ErrClosed", err)
	}
	if _, err := fromB.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("a's accepted stream from b: read got %v, want net.ErrClosed", err)
	}
	// ...so b sees its stream end.
	if _, err := io.ReadAll(bToA); err != nil {
		t.Logf("b's stream to a ended with %v", err)
	}
	// b's new dial completes at the inner layer, but a drops the stream
	// before handing it to raft.
	if c, err := b.Dial(addrA, 5*time.Second); err == nil {
		if n, _ := c.Read(make([]byte, 1)); n != 0 {
			t.Fatal("b's new stream to a carried data")
		}
		c.Close()
	}

	a.Heal()
	if c, err := a.Dial(addrB, 5*time.Second); err != nil {
		t.Fatalf("a dials b after Heal: %v", err)
	} else {
		c.Close()
	}
	out, err := b.Dial(addrA, 5*time.Second)
	if err != nil {
		t.Fatalf("b dials a after Heal: %v", err)
	}
	defer out.Close()
	if _, err := out.Write([]byte("hi")); err != nil {
		t.Fatal(err)
	}
	in := recv()
	defer in.Close()
	got := make([]byte, 2)
	if _, err := io.ReadFull(in, got); err != nil || string(got) != "hi" {
		t.Fatalf("a reads from b after Heal: %q, %v", got, err)
	}
	select {
	case c := <-accepted:
		t.Fatalf("a accepted an extra stream %v while b was cut", c.RemoteAddr())
	default:
	}
}

// Isolating the leader: the majority elects another and keeps writing, the
// old leader's Apply fails instead of hanging, and after Heal it catches up.
func TestFaultIsolateLeader(t *testing.T) {
	ca := newStreamTestCA(t, "kmsd test CA")
	nodes := newStreamCluster(t, 3, func(i int) *tls.Config {
		return newStreamTestTLS(t, ca, fmt.Sprintf("n%d", i))
	})
	old := waitStreamLeader(t, nodes)
	want := streamWriteSome(t, old, "before", 5)
	waitStreamConverged(t, nodes, want)

	old.layer.Isolate()

	fut := old.raft.Apply([]byte("lost"), 5*time.Second)
	errc := make(chan error, 1)
	go func() { errc <- fut.Error() }()
	select {
	case err := <-errc:
		if !errors.Is(err, raft.ErrLeadershipLost) && !errors.Is(err, raft.ErrNotLeader) && !errors.Is(err, raft.ErrEnqueueTimeout) {
			t.Fatalf("isolated leader's Apply: got %v, want leadership lost, not leader or timeout", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("isolated leader's Apply hung")
	}

	var rest []*streamNode
	for _, n := range nodes {
		if n != old {
			rest = append(rest, n)
		}
	}
	leader := waitStreamLeader(t, rest)
	want = append(want, streamWriteSome(t, leader, "after", 5)...)
	waitStreamConverged(t, rest, want)
	if got := old.fsm.Entries(); len(got) != 5 {
		t.Fatalf("isolated node applied %q while cut off", got[5:])
	}

	old.layer.Heal()
	waitStreamConverged(t, nodes, want)
	if slices.Contains(old.fsm.Entries(), "lost") {
		t.Fatal("the isolated leader's uncommitted entry was applied")
	}
}
