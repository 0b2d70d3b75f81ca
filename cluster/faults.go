package cluster

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// errPartitioned is what Dial returns to a peer cut off by a
// FaultyStreamLayer.
var errPartitioned = errors.New("cluster: partitioned by fault injection")

var _ raft.StreamLayer = (*FaultyStreamLayer)(nil)

// FaultyStreamLayer wraps a StreamLayer so tests can cut the network between
// raft nodes: it is the fault-injection seam raft's StreamLayer interface
// gives us, and it is for tests only.
//
// Partition(addrs...) makes dials to those raft addresses fail, drops
// streams accepted from them and closes the open streams with them, in
// both directions. The accepting side knows who dialed from the preamble
// that StreamLayer exchanges (see stream.go), so one node's
// FaultyStreamLayer alone cuts it from the named peers: a peer's dial still
// completes (the inner layer accepts and answers the preamble) but the
// stream is closed before raft sees it, so the peer's first RPC fails. With
// an inner layer that does not report the dialer's address (any
// raft.StreamLayer other than *StreamLayer), accepted streams cannot be
// attributed, and only Isolate applies to them; wrap every node to get a
// symmetric partition from dial-side failures alone.
//
// Isolate cuts the node from everyone; Heal lifts every cut. Cuts are
// checked again when a stream is established, so one that races with
// Partition or Isolate is closed rather than slipping through.
//
// Concurrency: safe for concurrent use.
type FaultyStreamLayer struct {
	inner raft.StreamLayer

	mu       sync.Mutex
	isolated bool
	cut      map[raft.ServerAddress]bool
	conns    map[*faultyConn]struct{} // open streams, dialed and accepted
}

// NewFaultyStreamLayer wraps inner, initially with no faults. Closing the
// FaultyStreamLayer closes inner.
func NewFaultyStreamLayer(inner raft.StreamLayer) *FaultyStreamLayer {
	return &FaultyStreamLayer{
		inner: inner,
		cut:   make(map[raft.ServerAddress]bool),
		conns: make(map[*faultyConn]struct{}),
	}
}

// Partition cuts this node from the raft addresses given, adding to any
// existing cuts, and closes the open streams with them.
func (f *FaultyStreamLayer) Partition(addrs ...raft.ServerAddress) {
	f.mu.Lock()
	for _, a := range addrs {
		f.cut[a] = true
	}
	f.mu.Unlock()
	f.closeBlocked()
}

// Isolate cuts this node from every peer: all dials fail, every accepted
// stream is closed, and the open streams are closed.
func (f *FaultyStreamLayer) Isolate() {
	f.mu.Lock()
	f.isolated = true
	f.mu.Unlock()
	f.closeBlocked()
}

// Heal lifts every cut made by Partition and Isolate. Raft reconnects by
// itself on its next RPC.
func (f *FaultyStreamLayer) Heal() {
	f.mu.Lock()
	f.isolated = false
	clear(f.cut)
	f.mu.Unlock()
}

// Addr is the inner layer's address.
func (f *FaultyStreamLayer) Addr() net.Addr { return f.inner.Addr() }

// Close closes the inner layer. Open streams belong to raft and are left
// to it.
func (f *FaultyStreamLayer) Close() error { return f.inner.Close() }

// Dial fails at once for a cut address, otherwise dials through the inner
// layer.
func (f *FaultyStreamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	if f.blocked(address, true) {
		return nil, fmt.Errorf("cluster: dial %s: %w", address, errPartitioned)
	}
	c, err := f.inner.Dial(address, timeout)
	if err != nil {
		return nil, err
	}
	fc, ok := f.track(c, address, true)
	if !ok {
		return nil, fmt.Errorf("cluster: dial %s: %w", address, errPartitioned)
	}
	return fc, nil
}

// Accept returns the next stream from a peer that is not cut off; streams
// from cut peers are closed and skipped.
func (f *FaultyStreamLayer) Accept() (net.Conn, error) {
	for {
		c, err := f.inner.Accept()
		if err != nil {
			return nil, err
		}
		var peer raft.ServerAddress
		known := false
		if pc, ok := c.(interface{ PeerAddress() raft.ServerAddress }); ok {
			peer, known = pc.PeerAddress(), true
		}
		if fc, ok := f.track(c, peer, known); ok {
			return fc, nil
		}
	}
}

// blocked reports whether streams with peer are cut. An unknown peer is
// cut only by Isolate. Caller must not hold f.mu.
func (f *FaultyStreamLayer) blocked(peer raft.ServerAddress, known bool) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.blockedLocked(peer, known)
}

func (f *FaultyStreamLayer) blockedLocked(peer raft.ServerAddress, known bool) bool {
	return f.isolated || (known && f.cut[peer])
}

// track registers c unless its peer is cut, in which case it closes c.
func (f *FaultyStreamLayer) track(c net.Conn, peer raft.ServerAddress, known bool) (*faultyConn, bool) {
	f.mu.Lock()
	if f.blockedLocked(peer, known) {
		f.mu.Unlock()
		c.Close()
		return nil, false
	}
	fc := &faultyConn{Conn: c, f: f, peer: peer, known: known}
	f.conns[fc] = struct{}{}
	f.mu.Unlock()
	return fc, true
}

// closeBlocked closes every open stream whose peer is now cut.
func (f *FaultyStreamLayer) closeBlocked() {
	f.mu.Lock()
	var doomed []*faultyConn
	for c := range f.conns {
		if f.blockedLocked(c.peer, c.known) {
			doomed = append(doomed, c)
		}
	}
	f.mu.Unlock()
	for _, c := range doomed {
		c.Close()
	}
}

// faultyConn is a stream tracked so that a cut can close it.
type faultyConn struct {
	net.Conn
	f     *FaultyStreamLayer
	peer  raft.ServerAddress
	known bool
	once  sync.Once
}

// Close closes the stream and forgets it. Safe to call more than once.
func (c *faultyConn) Close() error {
	err := net.ErrClosed
	c.once.Do(func() {
		c.f.mu.Lock()
		delete(c.f.conns, c)
		c.f.mu.Unlock()
		err = c.Conn.Close()
	})
	return err
}
