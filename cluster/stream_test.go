package cluster

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// ---- certificates ----

// streamTestCA is a throwaway ECDSA P-256 CA for one test.
type streamTestCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newStreamTestCA(t testing.TB, name string) *streamTestCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          streamSerial(t),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &streamTestCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

func streamSerial(t testing.TB) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// issue writes a node certificate (IP SAN 127.0.0.1, serverAuth and
// clientAuth) and its key into dir and returns their paths.
func (ca *streamTestCA) issue(t testing.TB, dir, name string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: streamSerial(t),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile = filepath.Join(dir, name+".crt")
	keyFile = filepath.Join(dir, name+".key")
	streamWrite(t, certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	streamWrite(t, keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
	return certFile, keyFile
}

func streamWrite(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// newStreamTestTLS issues a node certificate from ca and loads it through
// TLSFiles.Load, trusting the CAs in trust (ca itself when none are given).
func newStreamTestTLS(t testing.TB, ca *streamTestCA, name string, trust ...*streamTestCA) *tls.Config {
	t.Helper()
	dir := t.TempDir()
	certFile, keyFile := ca.issue(t, dir, name)
	if len(trust) == 0 {
		trust = []*streamTestCA{ca}
	}
	var caPEM []byte
	for _, c := range trust {
		caPEM = append(caPEM, c.pem...)
	}
	caFile := filepath.Join(dir, "ca.crt")
	streamWrite(t, caFile, caPEM)
	cfg, err := TLSFiles{CertFile: certFile, KeyFile: keyFile, CAFile: caFile}.Load()
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// ---- a raft cluster on loopback ----

// streamFSM records applied entries in order.
type streamFSM struct {
	mu      sync.Mutex
	entries []string
}

var _ raft.FSM = (*streamFSM)(nil)

func (f *streamFSM) Apply(l *raft.Log) any {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.entries = append(f.entries, string(l.Data))
	return len(f.entries)
}

func (f *streamFSM) Entries() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.entries)
}

func (f *streamFSM) Snapshot() (raft.FSMSnapshot, error) {
	return streamSnapshot(f.Entries()), nil
}

func (f *streamFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	var e []string
	if err := json.NewDecoder(rc).Decode(&e); err != nil {
		return err
	}
	f.mu.Lock()
	f.entries = e
	f.mu.Unlock()
	return nil
}

type streamSnapshot []string

func (s streamSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := json.NewEncoder(sink).Encode([]string(s)); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s streamSnapshot) Release() {}

// streamLog collects raft's warnings for all nodes of a test; they are
// printed only if the test fails.
type streamLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *streamLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *streamLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// streamNode is one raft node over a (Faulty)StreamLayer.
type streamNode struct {
	id    raft.ServerID
	inner *StreamLayer
	layer *FaultyStreamLayer
	trans *raft.NetworkTransport
	fsm   *streamFSM
	raft  *raft.Raft
}

func (n *streamNode) addr() raft.ServerAddress { return raft.ServerAddress(n.inner.Addr().String()) }

// newStreamNode starts raft on a fresh stream layer on 127.0.0.1:0. It does
// not bootstrap.
func newStreamNode(t testing.TB, id string, tlsCfg *tls.Config, logw io.Writer) *streamNode {
	t.Helper()
	sl, err := NewStreamLayer("127.0.0.1:0", "", tlsCfg)
	if err != nil {
		t.Fatal(err)
	}
	fl := NewFaultyStreamLayer(sl)
	trans := NewTCPTransport(fl, logw)

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(id)
	rc.HeartbeatTimeout = time.Second
	rc.ElectionTimeout = time.Second
	rc.LeaderLeaseTimeout = 500 * time.Millisecond
	rc.CommitTimeout = 10 * time.Millisecond
	rc.Logger = hclog.New(&hclog.LoggerOptions{Name: "raft-" + id, Level: hclog.Warn, Output: logw})

	store := raft.NewInmemStore()
	fsm := &streamFSM{}
	r, err := raft.NewRaft(rc, fsm, store, store, raft.NewInmemSnapshotStore(), trans)
	if err != nil {
		trans.Close()
		t.Fatal(err)
	}
	n := &streamNode{id: rc.LocalID, inner: sl, layer: fl, trans: trans, fsm: fsm, raft: r}
	t.Cleanup(func() {
		if err := r.Shutdown().Error(); err != nil {
			t.Errorf("shutdown %s: %v", id, err)
		}
		trans.Close()
	})
	return n
}

// newStreamCluster starts size nodes (tlsFor(i) gives node i's TLS config,
// nil for plain TCP) and bootstraps them as one cluster.
func newStreamCluster(t testing.TB, size int, tlsFor func(i int) *tls.Config) []*streamNode {
	t.Helper()
	logw := &streamLog{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("raft log:\n%s", logw)
		}
	})
	nodes := make([]*streamNode, size)
	var conf raft.Configuration
	for i := range nodes {
		nodes[i] = newStreamNode(t, fmt.Sprintf("n%d", i), tlsFor(i), logw)
		conf.Servers = append(conf.Servers, raft.Server{Suffrage: raft.Voter, ID: nodes[i].id, Address: nodes[i].addr()})
	}
	for _, n := range nodes {
		if err := n.raft.BootstrapCluster(conf).Error(); err != nil {
			t.Fatalf("bootstrap %s: %v", n.id, err)
		}
	}
	return nodes
}

// streamEventually polls cond every 10 ms until it holds or the deadline
// passes.
func streamEventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitStreamLeader returns the node among nodes that is leader and can
// still reach a quorum.
func waitStreamLeader(t testing.TB, nodes []*streamNode) *streamNode {
	t.Helper()
	var leader *streamNode
	streamEventually(t, 10*time.Second, "a leader", func() bool {
		for _, n := range nodes {
			if n.raft.State() == raft.Leader && n.raft.VerifyLeader().Error() == nil {
				leader = n
				return true
			}
		}
		return false
	})
	return leader
}

// streamApply applies data on n and fails the test on any error.
func streamApply(t testing.TB, n *streamNode, data string) {
	t.Helper()
	if err := n.raft.Apply([]byte(data), 5*time.Second).Error(); err != nil {
		t.Fatalf("apply %q on %s: %v", data, n.id, err)
	}
}

// waitStreamConverged waits until every node has applied the same index and
// holds exactly want.
func waitStreamConverged(t testing.TB, nodes []*streamNode, want []string) {
	t.Helper()
	streamEventually(t, 10*time.Second, fmt.Sprintf("%d nodes to converge on %q", len(nodes), want), func() bool {
		idx := nodes[0].raft.AppliedIndex()
		for _, n := range nodes {
			if n.raft.AppliedIndex() != idx || !slices.Equal(n.fsm.Entries(), want) {
				return false
			}
		}
		return true
	})
}

func streamWriteSome(t testing.TB, leader *streamNode, prefix string, count int) []string {
	t.Helper()
	var out []string
	for i := range count {
		e := fmt.Sprintf("%s-%d", prefix, i)
		streamApply(t, leader, e)
		out = append(out, e)
	}
	return out
}

// ---- tests ----

func TestStreamTLSCluster(t *testing.T) {
	ca := newStreamTestCA(t, "kmsd test CA")
	nodes := newStreamCluster(t, 3, func(i int) *tls.Config {
		return newStreamTestTLS(t, ca, fmt.Sprintf("n%d", i))
	})
	leader := waitStreamLeader(t, nodes)
	want := streamWriteSome(t, leader, "tls", 10)
	waitStreamConverged(t, nodes, want)
}

func TestStreamPlainTCPCluster(t *testing.T) {
	nodes := newStreamCluster(t, 3, func(int) *tls.Config { return nil })
	leader := waitStreamLeader(t, nodes)
	want := streamWriteSome(t, leader, "plain", 10)
	waitStreamConverged(t, nodes, want)
}

// A node whose certificate another CA signed is refused in both directions,
// even though it trusts the cluster CA, and the cluster works without it.
func TestStreamRejectsOtherCA(t *testing.T) {
	ca := newStreamTestCA(t, "kmsd test CA")
	rogue := newStreamTestCA(t, "rogue CA")
	nodes := newStreamCluster(t, 3, func(i int) *tls.Config {
		return newStreamTestTLS(t, ca, fmt.Sprintf("n%d", i))
	})
	leader := waitStreamLeader(t, nodes)

	logw := &streamLog{}
	bad := newStreamNode(t, "bad", newStreamTestTLS(t, rogue, "bad", ca, rogue), logw)

	// Its dials are refused by the cluster's nodes...
	if c, err := bad.inner.Dial(leader.addr(), 5*time.Second); err == nil {
		c.Close()
		t.Fatal("rogue node's dial to the leader succeeded")
	}
	// ...and the cluster's nodes refuse its certificate when they dial it.
	_, err := leader.inner.Dial(bad.addr(), 5*time.Second)
	var unknown x509.UnknownAuthorityError
	if !errors.As(err, &unknown) {
		t.Fatalf("leader's dial to rogue node: got %v, want x509.UnknownAuthorityError", err)
	}

	// Asked to join, it never hears from the cluster, which keeps
	// committing with the three good voters of four.
	if err := leader.raft.AddVoter(bad.id, bad.addr(), 0, 5*time.Second).Error(); err != nil {
		t.Fatalf("add voter: %v", err)
	}
	want := streamWriteSome(t, leader, "ca", 5)
	waitStreamConverged(t, nodes, want)
	if got := bad.fsm.Entries(); len(got) != 0 {
		t.Fatalf("rogue node applied %q", got)
	}
	if idx := bad.raft.LastIndex(); idx != 0 {
		t.Fatalf("rogue node received log up to index %d", idx)
	}
}

// Accept is not held up by a client that connects and says nothing, and a
// stream that does not open with the preamble never reaches raft.
func TestStreamPreamble(t *testing.T) {
	a, err := NewStreamLayer("127.0.0.1:0", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := NewStreamLayer("127.0.0.1:0", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()

	silent, err := net.Dial("tcp", a.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	garbage, err := net.Dial("tcp", a.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer garbage.Close()
	// Exactly a header's length, so a reads all of it and closes with FIN.
	if _, err := garbage.Write([]byte("GET / ")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(garbage); err != nil {
		t.Fatalf("garbage stream: %v", err) // EOF: a closed it without answering
	}

	out, err := b.Dial(raft.ServerAddress(a.Addr().String()), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	in, err := a.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	pc, ok := in.(interface{ PeerAddress() raft.ServerAddress })
	if !ok || pc.PeerAddress() != raft.ServerAddress(b.Addr().String()) {
		t.Fatalf("accepted stream's peer: got %v, want %s", in, b.Addr())
	}
	if _, err := out.Write([]byte("raft")); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 4)
	if _, err := io.ReadFull(in, got); err != nil || string(got) != "raft" {
		t.Fatalf("read after preamble: %q, %v", got, err)
	}

	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept after Close: %v", err)
	}
}

func TestStreamAddresses(t *testing.T) {
	for _, tc := range []struct {
		bind, advertise string
		want            string // "" means an error
	}{
		{"127.0.0.1:0", "10.0.0.5:7001", "10.0.0.5:7001"},
		{"127.0.0.1:0", "node1.kmsd.internal:7001", "node1.kmsd.internal:7001"},
		{"0.0.0.0:0", "", ""},
		{"127.0.0.1:0", "0.0.0.0:7001", ""},
		{"127.0.0.1:0", "no-port", ""},
	} {
		sl, err := NewStreamLayer(tc.bind, tc.advertise, nil)
		if tc.want == "" {
			if err == nil {
				sl.Close()
				t.Errorf("NewStreamLayer(%q, %q): no error", tc.bind, tc.advertise)
			}
			continue
		}
		if err != nil {
			t.Errorf("NewStreamLayer(%q, %q): %v", tc.bind, tc.advertise, err)
			continue
		}
		if got := sl.Addr().String(); got != tc.want {
			t.Errorf("NewStreamLayer(%q, %q).Addr() = %q, want %q", tc.bind, tc.advertise, got, tc.want)
		}
		sl.Close()
	}
	sl, err := NewStreamLayer("127.0.0.1:0", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sl.Close()
	if a, ok := sl.Addr().(*net.TCPAddr); !ok || a.Port == 0 {
		t.Fatalf("Addr without advertise = %v, want the listener's real address", sl.Addr())
	}
}

func TestStreamTLSFilesLoad(t *testing.T) {
	dir := t.TempDir()
	ca := newStreamTestCA(t, "kmsd test CA")
	certFile, keyFile := ca.issue(t, dir, "n0")
	caFile := filepath.Join(dir, "ca.crt")
	streamWrite(t, caFile, ca.pem)
	otherCert, _ := ca.issue(t, dir, "n1")
	junk := filepath.Join(dir, "junk.pem")
	streamWrite(t, junk, []byte("not pem"))
	missing := filepath.Join(dir, "missing.pem")

	cfg, err := TLSFiles{}.Load()
	if cfg != nil || err != nil {
		t.Fatalf("empty TLSFiles: got %v, %v; want nil, nil", cfg, err)
	}
	cfg, err = TLSFiles{CertFile: certFile, KeyFile: keyFile, CAFile: caFile}.Load()
	if err != nil || cfg == nil {
		t.Fatalf("good files: %v", err)
	}
	if cfg.MinVersion != tls.VersionTLS12 {
		t.Errorf("MinVersion = %#x, want TLS 1.2", cfg.MinVersion)
	}

	for _, tc := range []struct {
		name  string
		files TLSFiles
		want  []string // substrings of the error
	}{
		{"no key", TLSFiles{CertFile: certFile, CAFile: caFile}, []string{"KeyFile"}},
		{"only CA", TLSFiles{CAFile: caFile}, []string{"CertFile"}},
		{"missing cert", TLSFiles{CertFile: missing, KeyFile: keyFile, CAFile: caFile}, []string{"CertFile", missing}},
		{"missing key", TLSFiles{CertFile: certFile, KeyFile: missing, CAFile: caFile}, []string{"KeyFile", missing}},
		{"missing CA", TLSFiles{CertFile: certFile, KeyFile: keyFile, CAFile: missing}, []string{"CAFile", missing}},
		{"junk cert", TLSFiles{CertFile: junk, KeyFile: keyFile, CAFile: caFile}, []string{junk}},
		{"key of another cert", TLSFiles{CertFile: otherCert, KeyFile: keyFile, CAFile: caFile}, []string{otherCert, keyFile}},
		{"junk CA", TLSFiles{CertFile: certFile, KeyFile: keyFile, CAFile: junk}, []string{"CAFile", junk}},
	} {
		_, err := tc.files.Load()
		if err == nil {
			t.Errorf("%s: no error", tc.name)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not name %q", tc.name, err, w)
			}
		}
	}
}
