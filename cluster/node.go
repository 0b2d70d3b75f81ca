package cluster

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
)

// Config configures a Node. Zero values mean defaults.
type Config struct {
	NodeID  string // "" = "node1"
	DataDir string // required; raft data lives in DataDir/raft
	// Bootstrap makes a node with no raft state the first voter of a new
	// cluster of one.
	Bootstrap bool
	// ApplyTimeout bounds one raft.Apply; 0 = 10s.
	ApplyTimeout time.Duration
	// LogOutput receives raft's log (level warn); nil = io.Discard.
	LogOutput io.Writer

	// BindAddr is the raft TCP address ("127.0.0.1:4600"). Empty means a
	// cluster of one on raft's in-memory transport (no network listener).
	BindAddr string
	// Advertise is the raft address other nodes dial; "" = BindAddr's.
	Advertise string
	// TLS, when set, makes raft traffic mutual TLS (see TLSFiles.Load).
	TLS *tls.Config
	// Stream, when set, replaces the TCP stream layer (fault injection in
	// tests); BindAddr, Advertise and TLS are then unused.
	Stream raft.StreamLayer
	// Timeouts of raft; 0 = 500ms heartbeat and election, 250ms lease.
	HeartbeatTimeout time.Duration
	// TrailingLogs is how many log entries a snapshot leaves behind; 0 =
	// raft's default (10240). A follower further behind installs a snapshot.
	TrailingLogs uint64
}

// Validate checks the config, naming the bad field.
func (c Config) Validate() error {
	if c.DataDir == "" {
		return errors.New("cluster: Config.DataDir is required")
	}
	if c.ApplyTimeout < 0 {
		return errors.New("cluster: Config.ApplyTimeout must not be negative")
	}
	return nil
}

// Node is one member of the cluster: a raft instance, its FSM and stores.
type Node struct {
	cfg   Config
	st    *state
	fsm   *fsm
	addr  raft.ServerAddress
	raft  *raft.Raft
	store *raftboltdb.BoltStore
	trans raft.Transport

	closeOnce sync.Once
	closeErr  error
}

// New opens (or creates) the node's raft state under cfg.DataDir/raft and
// starts raft. With cfg.Bootstrap and no existing state it bootstraps a
// one-node cluster. Use WaitReady before proposing.
func New(cfg Config) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.NodeID == "" {
		cfg.NodeID = "node1"
	}
	if cfg.ApplyTimeout == 0 {
		cfg.ApplyTimeout = 10 * time.Second
	}
	if cfg.LogOutput == nil {
		cfg.LogOutput = io.Discard
	}
	dir := filepath.Join(cfg.DataDir, "raft")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	logger := hclog.New(&hclog.LoggerOptions{Name: "raft", Level: hclog.Warn, Output: cfg.LogOutput})

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.NodeID)
	rc.Logger = logger
	rc.SnapshotThreshold = 8192
	if cfg.TrailingLogs > 0 {
		rc.TrailingLogs = cfg.TrailingLogs
	}
	hb := cfg.HeartbeatTimeout
	if hb == 0 {
		hb = 500 * time.Millisecond
	}
	rc.HeartbeatTimeout = hb
	rc.ElectionTimeout = hb
	rc.LeaderLeaseTimeout = hb / 2

	store, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, "raft.db")})
	if err != nil {
		return nil, fmt.Errorf("cluster: open raft store: %w", err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, logger)
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("cluster: open snapshot store: %w", err)
	}
	// A cluster of one needs no network: the in-memory transport keeps the
	// node off the wire. A node with a BindAddr (or a Stream) talks raft
	// over TCP, mutual TLS when configured.
	var trans raft.Transport
	var addr raft.ServerAddress
	switch {
	case cfg.Stream != nil || cfg.BindAddr != "":
		sl := cfg.Stream
		if sl == nil {
			tsl, err := NewStreamLayer(cfg.BindAddr, cfg.Advertise, cfg.TLS)
			if err != nil {
				store.Close()
				return nil, err
			}
			sl = tsl
		}
		nt := NewTCPTransport(sl, cfg.LogOutput)
		trans, addr = nt, nt.LocalAddr()
	default:
		addr = raft.ServerAddress("local:" + cfg.NodeID)
		_, trans = raft.NewInmemTransport(addr)
	}

	st := newState()
	f := &fsm{st: st}
	if cfg.Bootstrap {
		has, err := raft.HasExistingState(store, store, snaps)
		if err != nil {
			store.Close()
			return nil, fmt.Errorf("cluster: %w", err)
		}
		if !has {
			conf := raft.Configuration{Servers: []raft.Server{{ID: rc.LocalID, Address: addr, Suffrage: raft.Voter}}}
			if err := raft.BootstrapCluster(rc, store, store, snaps, trans, conf); err != nil {
				store.Close()
				return nil, fmt.Errorf("cluster: bootstrap: %w", err)
			}
		}
	}
	r, err := raft.NewRaft(rc, f, store, store, snaps, trans)
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("cluster: start raft: %w", err)
	}
	return &Node{cfg: cfg, st: st, fsm: f, addr: addr, raft: r, store: store, trans: trans}, nil
}

// WaitReady blocks until the cluster has a leader and this node has
// applied what it knew was committed when the leader appeared (on the
// leader: every entry of its log, through a barrier), or ctx ends.
func (n *Node) WaitReady(ctx context.Context) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		switch {
		case n.raft.State() == raft.Leader:
			if err := n.raft.Barrier(n.cfg.ApplyTimeout).Error(); err == nil {
				return nil
			}
		case n.LeaderID() != "":
			if err := n.WaitApplied(ctx, n.raft.CommitIndex()); err == nil {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: no leader: %v", ErrTimeout, ctx.Err())
		case <-t.C:
		}
	}
}

// WaitApplied blocks until this node's state has applied index (or a
// later one), or ctx ends: a follower answers a forwarded write only after
// this, so every node reads its own writes.
func (n *Node) WaitApplied(ctx context.Context, index uint64) error {
	if n.AppliedIndex() >= index {
		return nil
	}
	t := time.NewTicker(2 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: index %d not applied (at %d): %v", ErrTimeout, index, n.AppliedIndex(), ctx.Err())
		case <-t.C:
			if n.AppliedIndex() >= index {
				return nil
			}
		}
	}
}

// LeaderID is the id of the node this node believes leads, or "".
func (n *Node) LeaderID() string {
	_, id := n.raft.LeaderWithID()
	return string(id)
}

// ID is this node's raft server id.
func (n *Node) ID() string { return n.cfg.NodeID }

// RaftAddr is the address other nodes reach this node's raft at.
func (n *Node) RaftAddr() string { return string(n.addr) }

// HasState reports whether the node found raft state on disk (or was
// bootstrapped): a node without it is waiting to be added to a cluster.
func (n *Node) HasState() bool { return n.raft.LastIndex() > 0 }

// Server is one member of the raft configuration.
type Server struct {
	ID     string
	Addr   string
	Voter  bool
	Leader bool
}

// Servers returns the raft configuration as this node knows it.
func (n *Node) Servers() ([]Server, error) {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, err
	}
	leader := n.LeaderID()
	var out []Server
	for _, s := range f.Configuration().Servers {
		out = append(out, Server{ID: string(s.ID), Addr: string(s.Address), Voter: s.Suffrage == raft.Voter, Leader: string(s.ID) == leader})
	}
	return out, nil
}

// AddVoter adds (or re-addresses) a voting member. Leader only.
func (n *Node) AddVoter(ctx context.Context, id, addr string) error {
	if n.raft.State() != raft.Leader {
		return ErrNotLeader
	}
	return n.raftErr(n.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(addr), 0, n.timeout(ctx)).Error())
}

// RemoveServer removes a member. Leader only.
func (n *Node) RemoveServer(ctx context.Context, id string) error {
	if n.raft.State() != raft.Leader {
		return ErrNotLeader
	}
	return n.raftErr(n.raft.RemoveServer(raft.ServerID(id), 0, n.timeout(ctx)).Error())
}

func (n *Node) timeout(ctx context.Context) time.Duration {
	timeout := n.cfg.ApplyTimeout
	if dl, ok := ctx.Deadline(); ok {
		if d := time.Until(dl); d < timeout {
			timeout = d
		}
	}
	return max(timeout, time.Millisecond)
}

// raftErr turns raft's errors into this package's sentinels.
func (n *Node) raftErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipLost), errors.Is(err, raft.ErrLeadershipTransferInProgress):
		return fmt.Errorf("%w: %v", ErrNotLeader, err)
	case errors.Is(err, raft.ErrRaftShutdown):
		return ErrClosed
	case errors.Is(err, raft.ErrEnqueueTimeout):
		return ErrTimeout
	}
	return fmt.Errorf("cluster: raft: %w", err)
}

// IsLeader reports whether this node is the raft leader.
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }

// Apply proposes c and waits until it is committed and applied locally.
// It returns the FSM's response value, or the FSM's error for a rejected
// command, or a raft error (ErrNotLeader, ErrTimeout, ErrClosed).
func (n *Node) Apply(ctx context.Context, c Command) (any, error) {
	data, err := EncodeCommand(c)
	if err != nil {
		return nil, err
	}
	resp, _, err := n.ApplyEncoded(ctx, data)
	return resp, err
}

// ApplyEncoded is Apply for a command already encoded (by a follower that
// forwards it to the leader). It also returns the raft index the command
// was committed at, which the follower waits for (WaitApplied). A
// command that does not decode is refused before it reaches the log.
func (n *Node) ApplyEncoded(ctx context.Context, data []byte) (any, uint64, error) {
	if _, err := DecodeCommand(data); err != nil {
		return nil, 0, err
	}
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= 0 {
		return nil, 0, ErrTimeout
	}
	fut := n.raft.Apply(data, n.timeout(ctx))
	if err := fut.Error(); err != nil {
		return nil, 0, n.raftErr(err)
	}
	resp := fut.Response()
	if err, ok := resp.(error); ok {
		return nil, fut.Index(), err
	}
	return resp, fut.Index(), nil
}

// OnKeyChange registers fn to be called on this node after it applies a
// change of a key's state or material (disable, deletion schedule or
// cancel, deletion, rotation), with the key's id: the hook caches use to
// forget that key's secrets on every node, leader or follower. fn runs on
// raft's apply goroutine and must be quick; nil removes it.
func (n *Node) OnKeyChange(fn func(keyID string)) {
	if fn == nil {
		n.fsm.keyChanged.Store(nil)
		return
	}
	n.fsm.keyChanged.Store(&fn)
}

// StateDigest is a SHA-256 of this node's whole applied state, in its
// canonical snapshot encoding: nodes that applied the same log agree on it.
func (n *Node) StateDigest() ([32]byte, error) {
	h := sha256.New()
	if err := (&fsmSnapshot{ss: n.st.toSnapshot()}).encode(h); err != nil {
		return [32]byte{}, err
	}
	var d [32]byte
	copy(d[:], h.Sum(nil))
	return d, nil
}

// SaveSnapshot writes this node's applied state in the snapshot encoding
// (msgpack; keys hold only HSM-wrapped material and access keys only
// HSM-sealed secrets, so the file holds nothing in plaintext).
func (n *Node) SaveSnapshot(w io.Writer) error {
	return (&fsmSnapshot{ss: n.st.toSnapshot()}).encode(w)
}

// RestoreSnapshot replaces the whole cluster's state with a snapshot made
// by SaveSnapshot (of this cluster: the material in it is wrapped by this
// cluster's domain key). Leader only; a snapshot that does not decode is
// refused before raft sees it.
func (n *Node) RestoreSnapshot(ctx context.Context, data []byte) error {
	if _, err := decodeSnapshot(bytes.NewReader(data)); err != nil {
		return err
	}
	if n.raft.State() != raft.Leader {
		return ErrNotLeader
	}
	meta := &raft.SnapshotMeta{Version: raft.SnapshotVersionMax, Size: int64(len(data))}
	return n.raftErr(n.raft.Restore(meta, bytes.NewReader(data), n.timeout(ctx)))
}

// Member returns what the state knows of node id.
func (n *Node) Member(id string) (*Member, bool) {
	n.st.mu.RLock()
	m, ok := n.st.members[id]
	n.st.mu.RUnlock()
	return m, ok
}

// Key returns the key with id, or false.
func (n *Node) Key(id string) (*Key, bool) {
	n.st.mu.RLock()
	k, ok := n.st.keys[id]
	n.st.mu.RUnlock()
	return k, ok
}

// Alias returns the alias with the full name ("alias/x"), or false.
func (n *Node) Alias(name string) (*Alias, bool) {
	n.st.mu.RLock()
	a, ok := n.st.aliases[name]
	n.st.mu.RUnlock()
	return a, ok
}

// Credential returns the access key with id, or false.
func (n *Node) Credential(id string) (*Credential, bool) {
	n.st.mu.RLock()
	c, ok := n.st.creds[id]
	n.st.mu.RUnlock()
	return c, ok
}

// Credentials returns every access key, sorted by id.
func (n *Node) Credentials() []*Credential {
	n.st.mu.RLock()
	out := make([]*Credential, 0, len(n.st.creds))
	for _, c := range n.st.creds {
		out = append(out, c)
	}
	n.st.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].AccessKeyID < out[j].AccessKeyID })
	return out
}

// Meta returns a system value set by PutMeta.
func (n *Node) Meta(name string) ([]byte, bool) {
	n.st.mu.RLock()
	v, ok := n.st.meta[name]
	n.st.mu.RUnlock()
	return v, ok
}

// Keys returns every key, in id order.
func (n *Node) Keys() []*Key {
	n.st.mu.RLock()
	defer n.st.mu.RUnlock()
	out := make([]*Key, 0, len(n.st.keyIDs))
	for _, id := range n.st.keyIDs {
		out = append(out, n.st.keys[id])
	}
	return out
}

// ListKeys returns up to limit keys with ids greater than after, in id
// order, and whether more follow.
func (n *Node) ListKeys(after string, limit int) ([]*Key, bool) {
	n.st.mu.RLock()
	defer n.st.mu.RUnlock()
	i := sort.SearchStrings(n.st.keyIDs, after)
	if i < len(n.st.keyIDs) && n.st.keyIDs[i] == after {
		i++
	}
	var out []*Key
	for ; i < len(n.st.keyIDs) && len(out) < limit; i++ {
		out = append(out, n.st.keys[n.st.keyIDs[i]])
	}
	return out, i < len(n.st.keyIDs)
}

// ListAliases returns up to limit aliases with names greater than after,
// in name order, optionally only those pointing at keyID, and whether more
// follow.
func (n *Node) ListAliases(keyID, after string, limit int) ([]*Alias, bool) {
	n.st.mu.RLock()
	all := make([]*Alias, 0, len(n.st.aliases))
	for _, a := range n.st.aliases {
		if (keyID == "" || a.TargetKeyID == keyID) && strings.Compare(a.Name, after) > 0 {
			all = append(all, a)
		}
	}
	n.st.mu.RUnlock()
	sort.Slice(all, func(i, j int) bool { return all[i].Name < all[j].Name })
	if len(all) > limit {
		return all[:limit], true
	}
	return all, false
}

// AppliedIndex is the last raft index applied to this node's state.
func (n *Node) AppliedIndex() uint64 {
	n.st.mu.RLock()
	defer n.st.mu.RUnlock()
	return n.st.applied
}

// Snapshot asks raft to take a snapshot now (it compacts the log).
func (n *Node) Snapshot() error {
	err := n.raft.Snapshot().Error()
	if errors.Is(err, raft.ErrNothingNewToSnapshot) {
		return nil
	}
	return err
}

// Close shuts raft down and closes the stores. Safe to call twice.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		err := n.raft.Shutdown().Error()
		if c, ok := n.trans.(io.Closer); ok {
			c.Close()
		}
		if cerr := n.store.Close(); err == nil {
			err = cerr
		}
		n.closeErr = err
	})
	return n.closeErr
}

// RaftState names this node's raft role: Leader, Follower, Candidate or
// Shutdown.
func (n *Node) RaftState() string { return n.raft.State().String() }
