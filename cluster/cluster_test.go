package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"testing"
	"time"
)

// testCluster is n real raft nodes on 127.0.0.1 (TCP, fault-injectable
// stream layers), each with its own data dir.
type testCluster struct {
	t      *testing.T
	nodes  []*Node
	faults []*FaultyStreamLayer
	dirs   []string
	addrs  []string
}

func newTestCluster(t *testing.T, n int) *testCluster {
	t.Helper()
	tc := &testCluster{t: t, nodes: make([]*Node, n), faults: make([]*FaultyStreamLayer, n), dirs: make([]string, n), addrs: make([]string, n)}
	for i := range n {
		tc.dirs[i] = t.TempDir()
		tc.start(i, i == 0)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := tc.nodes[0].WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	for i := 1; i < n; i++ {
		if err := tc.nodes[0].AddVoter(ctx, tc.nodes[i].ID(), tc.nodes[i].RaftAddr()); err != nil {
			t.Fatal(err)
		}
	}
	// Every node must hold the final configuration before a test cuts the
	// leader off: a node that lags behind a membership change rejects votes
	// from members it does not know yet ("not in configuration"), and with
	// the leader gone nobody could win an election until it heals.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		all := true
		for _, nd := range tc.nodes {
			if s, err := nd.Servers(); err != nil || len(s) != n {
				all = false
			}
		}
		if all {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("members never all saw the final configuration")
		}
	}
	t.Cleanup(func() {
		for _, nd := range tc.nodes {
			if nd != nil {
				nd.Close()
			}
		}
	})
	return tc
}

// start (re)starts node i on its data dir.
func (tc *testCluster) start(i int, bootstrap bool) {
	tc.t.Helper()
	bind := tc.addrs[i] // a restart keeps its address
	if bind == "" {
		bind = "127.0.0.1:0"
	}
	sl, err := NewStreamLayer(bind, "", nil)
	if err != nil {
		tc.t.Fatal(err)
	}
	f := NewFaultyStreamLayer(sl)
	nd, err := New(Config{NodeID: fmt.Sprintf("n%d", i), DataDir: tc.dirs[i], Bootstrap: bootstrap, Stream: f,
		HeartbeatTimeout: time.Second, ApplyTimeout: 5 * time.Second, TrailingLogs: 16, LogOutput: raftLog(i)})
	if err != nil {
		tc.t.Fatal(err)
	}
	tc.nodes[i], tc.faults[i], tc.addrs[i] = nd, f, nd.RaftAddr()
}

// raftLog sends raft's log to stderr when KMSD_RAFT_LOG is set (debugging).
func raftLog(i int) io.Writer {
	if os.Getenv("KMSD_RAFT_LOG") == "" {
		return nil
	}
	return prefixWriter{fmt.Sprintf("[n%d] ", i)}
}

type prefixWriter struct{ p string }

func (w prefixWriter) Write(b []byte) (int, error) { return os.Stderr.Write(append([]byte(w.p), b...)) }

// leader polls until exactly one live node leads, and returns its index.
func (tc *testCluster) leader(except ...int) int {
	tc.t.Helper()
	deadline := time.Now().Add(45 * time.Second) // generous: CI machines are shared
	for time.Now().Before(deadline) {
		for i, nd := range tc.nodes {
			skip := nd == nil
			for _, e := range except {
				skip = skip || e == i
			}
			if !skip && nd.IsLeader() {
				return i
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	for i, nd := range tc.nodes {
		if nd != nil {
			st := nd.raft.Stats()
			tc.t.Logf("node %d: state %s term %s leader %q last_contact %s commit %s applied %s", i, nd.raft.State(), st["term"], nd.LeaderID(), st["last_contact"], st["commit_index"], st["applied_index"])
		}
	}
	tc.t.Fatal("no leader")
	return -1
}

func (tc *testCluster) kill(i int) {
	tc.nodes[i].Close()
	tc.nodes[i] = nil
}

// waitSame polls until every live node has the same state digest.
func (tc *testCluster) waitSame() {
	tc.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		var want [32]byte
		same, first := true, true
		for _, nd := range tc.nodes {
			if nd == nil {
				continue
			}
			d, err := nd.StateDigest()
			if err != nil {
				tc.t.Fatal(err)
			}
			if first {
				want, first = d, false
			} else if d != want {
				same = false
			}
		}
		if same {
			return
		}
		last = fmt.Sprint(len(tc.nodes))
		time.Sleep(10 * time.Millisecond)
	}
	tc.t.Fatalf("states never converged (%s nodes)", last)
}

// TestKillLeaderLosesNothing writes keys through the leader while it is
// killed: every write that was acknowledged is on every survivor, and a new
// leader accepts writes.
func TestKillLeaderLosesNothing(t *testing.T) {
	tc := newTestCluster(t, 3)
	l := tc.leader()
	var mu sync.Mutex
	var acked []string
	failed := 0
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 400; i++ {
			id := fmt.Sprintf("k%03d", i)
			// Write to whichever node leads now.
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			var err error = ErrNotLeader
			for _, nd := range tc.snapshotNodes() {
				if nd != nil && nd.IsLeader() {
					_, err = nd.Apply(ctx, &CreateKey{Key: testKey(id)})
					break
				}
			}
			cancel()
			mu.Lock()
			if err == nil {
				acked = append(acked, id)
			} else {
				failed++
			}
			n := len(acked)
			mu.Unlock()
			if n == 50 && i < 400 {
				tc.killAsync(l)
			}
			if err != nil {
				time.Sleep(5 * time.Millisecond) // back off while a new leader is elected
			}
		}
	}()
	<-done
	nl := tc.leader(l)
	if nl == l {
		t.Fatal("killed node still leads")
	}
	if _, err := tc.nodes[nl].Apply(context.Background(), &CreateKey{Key: testKey("after")}); err != nil {
		t.Fatalf("new leader refuses writes: %v", err)
	}
	tc.waitSame()
	mu.Lock()
	defer mu.Unlock()
	for _, nd := range tc.nodes {
		if nd == nil {
			continue
		}
		for _, id := range acked {
			if _, ok := nd.Key(id); !ok {
				t.Fatalf("acknowledged write %s missing on %s", id, nd.ID())
			}
		}
	}
	t.Logf("%d writes acknowledged, %d failed during the failover", len(acked), failed)
}

func (tc *testCluster) snapshotNodes() []*Node {
	tc.mu().Lock()
	defer tc.mu().Unlock()
	return append([]*Node(nil), tc.nodes...)
}

var tcMu sync.Mutex

func (tc *testCluster) mu() *sync.Mutex { return &tcMu }

func (tc *testCluster) killAsync(i int) {
	tc.mu().Lock()
	nd := tc.nodes[i]
	tc.nodes[i] = nil
	tc.mu().Unlock()
	if nd != nil {
		nd.Close()
	}
}

// TestPartitionAndHeal isolates the leader: the majority elects a new one,
// the isolated node refuses writes (no hang), and after healing it catches
// up to the same state.
func TestPartitionAndHeal(t *testing.T) {
	tc := newTestCluster(t, 3)
	l := tc.leader()
	tc.faults[l].Isolate()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	_, err := tc.nodes[l].Apply(ctx, &CreateKey{Key: testKey("minority")})
	cancel()
	if err == nil {
		t.Fatal("isolated leader accepted a write")
	}
	if !errors.Is(err, ErrNotLeader) && !errors.Is(err, ErrTimeout) {
		t.Fatalf("minority write: %v", err)
	}
	nl := tc.leader(l)
	for i := 0; i < 20; i++ {
		if _, err := tc.nodes[nl].Apply(context.Background(), &CreateKey{Key: testKey(fmt.Sprintf("maj%d", i))}); err != nil {
			t.Fatal(err)
		}
	}
	tc.faults[l].Heal()
	tc.waitSame()
	if _, ok := tc.nodes[l].Key("maj19"); !ok {
		t.Fatal("healed node did not catch up")
	}
	if _, ok := tc.nodes[l].Key("minority"); ok {
		t.Fatal("a write refused on the minority side was applied")
	}
}

// TestRestartAllAndSnapshotCatchUp: a node down for many entries catches up
// from a snapshot; restarting every node keeps identical state.
func TestRestartAllAndSnapshotCatchUp(t *testing.T) {
	tc := newTestCluster(t, 3)
	l := tc.leader()
	down := (l + 1) % 3
	tc.kill(down)
	for i := 0; i < 300; i++ {
		if _, err := tc.nodes[l].Apply(context.Background(), &CreateKey{Key: testKey(fmt.Sprintf("s%03d", i))}); err != nil {
			t.Fatal(err)
		}
	}
	// Compact every live node's log so the lagging node must install a
	// snapshot whoever leads when it comes back (its return can start an
	// election that the third node, with its whole log, would win).
	for i, nd := range tc.nodes {
		if i == down {
			continue
		}
		if err := nd.Snapshot(); err != nil {
			t.Fatal(err)
		}
	}
	tc.start(down, false)
	tc.waitSame()
	if tc.nodes[down].raft.Stats()["last_snapshot_index"] == "0" {
		t.Fatal("the lagging node caught up without installing a snapshot")
	}
	before, _ := tc.nodes[l].StateDigest()

	for i := range tc.nodes {
		tc.kill(i)
	}
	for i := range tc.nodes {
		tc.start(i, false)
	}
	tc.leader()
	tc.waitSame()
	after, _ := tc.nodes[0].StateDigest()
	if before != after {
		t.Fatal("state changed across a restart of every node")
	}
}

func TestErrorCodesRoundTrip(t *testing.T) {
	for code, s := range errorCodes {
		err := ErrorFromCode(ErrorCode(fmt.Errorf("x: %w", s)), "msg")
		if !errors.Is(err, s) || err.Error() != "msg" {
			t.Errorf("%s: %v", code, err)
		}
	}
	if ErrorCode(errors.New("other")) != "" {
		t.Error("unknown error got a code")
	}
}

// TestFiveNodesSurviveTwoFailures: a 5-node cluster keeps accepting writes
// with two nodes (the leader among them) killed, and loses nothing.
func TestFiveNodesSurviveTwoFailures(t *testing.T) {
	tc := newTestCluster(t, 5)
	l := tc.leader()
	for i := 0; i < 20; i++ {
		if _, err := tc.nodes[l].Apply(context.Background(), &CreateKey{Key: testKey(fmt.Sprintf("f%02d", i))}); err != nil {
			t.Fatal(err)
		}
	}
	other := (l + 1) % 5
	tc.kill(l)
	tc.kill(other)
	nl := tc.leader(l, other)
	if _, err := tc.nodes[nl].Apply(context.Background(), &CreateKey{Key: testKey("after")}); err != nil {
		t.Fatalf("3 of 5 refuse writes: %v", err)
	}
	tc.waitSame()
	for _, nd := range tc.nodes {
		if nd == nil {
			continue
		}
		if _, ok := nd.Key("f19"); !ok {
			t.Fatalf("%s lost an acknowledged write", nd.ID())
		}
	}
}
