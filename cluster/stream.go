package cluster

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// Wire preamble. Raft's NetworkTransport does not tell the accepting side
// who dialed (the remote TCP address is an ephemeral port), so every stream
// between kmsd nodes starts, after the TLS handshake when TLS is on, with:
//
//	dialer -> acceptor: "kmsd" | version (1 byte, 1) | n (1 byte, 1..255) | n bytes: dialer's advertised raft address
//	acceptor -> dialer: 1 byte, streamAccepted
//
// after which the stream belongs to raft. The address is the dialer's own
// claim: it names the peer for fault injection and diagnostics, it does not
// authenticate it (TLS does that, see TLSFiles). The one-byte answer means
// Dial returns only once the acceptor has verified the dialer's certificate
// and read its preamble, so a rejected peer fails in Dial rather than on
// its first RPC. A plain raft TCPStreamLayer peer does not speak this and
// is refused.
const (
	streamMagic     = "kmsd"
	streamVersion   = 1
	streamAccepted  = 0x01
	streamHeaderLen = len(streamMagic) + 2

	// handshakeTimeout bounds an accepted stream's TLS handshake and
	// preamble, and a Dial given no timeout.
	handshakeTimeout = 10 * time.Second
)

// TLSFiles names the PEM files for mutual TLS between nodes: this node's
// certificate and key and the cluster CA. Set all three or none.
type TLSFiles struct {
	CertFile string // leaf certificate, optionally followed by intermediates
	KeyFile  string
	CAFile   string // the CA that signs every node's certificate, and nothing else
}

// Load reads the files and returns a config for both ends of a node-to-node
// stream, or nil (plain TCP) when all three names are empty. An error names
// the field and the file at fault.
//
// Verification. Nodes dial each other by the raft address they advertise,
// usually IP:port, so host names are not checked: a peer is trusted when
// its certificate chains to the CA in CAFile, on both ends (the server
// requires a client certificate). Membership of the cluster is therefore
// possession of a key whose certificate that CA signed, and CAFile must be
// a CA dedicated to the cluster, not a public or company-wide one. Every
// node acts as both client and server, so its certificate must allow both
// serverAuth and clientAuth (or carry no extended key usage). The minimum
// version is TLS 1.2; Go negotiates 1.3 between kmsd nodes.
func (f TLSFiles) Load() (*tls.Config, error) {
	if f.CertFile == "" && f.KeyFile == "" && f.CAFile == "" {
		return nil, nil
	}
	for _, m := range []struct{ field, val string }{
		{"CertFile", f.CertFile}, {"KeyFile", f.KeyFile}, {"CAFile", f.CAFile},
	} {
		if m.val == "" {
			return nil, fmt.Errorf("cluster: TLSFiles.%s is required when any TLS file is set", m.field)
		}
	}
	certPEM, err := os.ReadFile(f.CertFile)
	if err != nil {
		return nil, fmt.Errorf("cluster: TLS CertFile: %w", err)
	}
	keyPEM, err := os.ReadFile(f.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("cluster: TLS KeyFile: %w", err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("cluster: TLS CertFile %s with KeyFile %s: %w", f.CertFile, f.KeyFile, err)
	}
	caPEM, err := os.ReadFile(f.CAFile)
	if err != nil {
		return nil, fmt.Errorf("cluster: TLS CAFile: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("cluster: TLS CAFile %s: no PEM certificates found", f.CAFile)
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS12,
		// Standard verification would check the dialed host name (client)
		// or stop at the chain (server); both ends instead run
		// verifyPeerChain, so the two directions follow one rule.
		ClientAuth:         tls.RequireAnyClientCert,
		InsecureSkipVerify: true, // replaced by VerifyConnection, which checks the chain
		VerifyConnection:   func(cs tls.ConnectionState) error { return verifyPeerChain(cs, pool) },
	}, nil
}

// verifyPeerChain accepts a peer whose certificate chains to roots and may
// act as both TLS server and client. Host names are not checked.
func verifyPeerChain(cs tls.ConnectionState, roots *x509.CertPool) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("cluster: peer sent no certificate")
	}
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		opts := x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{usage}}
		if _, err := cs.PeerCertificates[0].Verify(opts); err != nil {
			return fmt.Errorf("cluster: peer certificate %q: %w", cs.PeerCertificates[0].Subject.CommonName, err)
		}
	}
	return nil
}

var _ raft.StreamLayer = (*StreamLayer)(nil)

// StreamLayer is raft's StreamLayer over TCP, with mutual TLS when given a
// config, speaking the preamble described above.
//
// Concurrency: safe for concurrent use. Accept hands out streams whose TLS
// handshake and preamble have completed; handshakes run on their own
// goroutines (bounded by handshakeTimeout), so a silent or slow client
// never holds up other peers. Conns returned by Dial and Accept belong to
// the caller. Close stops accepting, closes streams not yet handed out and
// waits for the handshake goroutines; conns already handed out stay open.
type StreamLayer struct {
	ln        net.Listener
	advertise net.Addr
	tlsCfg    *tls.Config

	ready chan net.Conn // handshaken streams waiting for Accept
	done  chan struct{} // closed by Close

	mu      sync.Mutex
	pending map[net.Conn]struct{} // accepted, handshake in progress

	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// NewStreamLayer listens on bind ("127.0.0.1:0", ":7001"). Addr, which
// raft gives peers as this node's address, is advertise when set and
// otherwise the listener's address; either must be a host:port peers can
// dial, so an unspecified IP (0.0.0.0, ::) without advertise is an error.
// tlsCfg nil means plain TCP; otherwise it is used for both ends (see
// TLSFiles.Load) and must not be modified afterwards.
func NewStreamLayer(bind, advertise string, tlsCfg *tls.Config) (*StreamLayer, error) {
	var adv net.Addr
	if advertise != "" {
		host, port, err := net.SplitHostPort(advertise)
		if err != nil || host == "" || port == "" {
			return nil, fmt.Errorf("cluster: advertise address %q is not host:port", advertise)
		}
		if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
			return nil, fmt.Errorf("cluster: advertise address %q is not dialable", advertise)
		}
		adv = streamAddr(advertise)
	}
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, fmt.Errorf("cluster: listen on %q: %w", bind, err)
	}
	if adv == nil {
		a, ok := ln.Addr().(*net.TCPAddr)
		if !ok || a.IP.IsUnspecified() {
			ln.Close()
			return nil, fmt.Errorf("cluster: bind address %q is not dialable by peers; set an advertise address", bind)
		}
		adv = a
	}
	s := &StreamLayer{
		ln:        ln,
		advertise: adv,
		tlsCfg:    tlsCfg,
		ready:     make(chan net.Conn),
		done:      make(chan struct{}),
		pending:   make(map[net.Conn]struct{}),
	}
	s.wg.Add(1)
	go s.acceptLoop()
	return s, nil
}

// Addr is the advertised raft address of this node.
func (s *StreamLayer) Addr() net.Addr { return s.advertise }

// Accept returns the next stream from a peer that passed the TLS handshake
// (when on) and sent a valid preamble. After Close it returns net.ErrClosed.
func (s *StreamLayer) Accept() (net.Conn, error) {
	select {
	case c := <-s.ready:
		return c, nil
	case <-s.done:
		return nil, net.ErrClosed
	}
}

// Close stops the listener and any handshakes in progress. Safe to call
// more than once.
func (s *StreamLayer) Close() error {
	s.closeOnce.Do(func() {
		close(s.done)
		s.closeErr = s.ln.Close()
		s.mu.Lock()
		for c := range s.pending {
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s.closeErr
}

// Dial connects to a peer's raft address and returns the stream once the
// peer has accepted it: TCP connect, TLS handshake when on, preamble sent
// and answered, all within timeout (0 means handshakeTimeout). A peer
// that rejects this node's certificate fails here.
func (s *StreamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	if timeout <= 0 {
		timeout = handshakeTimeout
	}
	deadline := time.Now().Add(timeout)
	d := net.Dialer{Deadline: deadline}
	raw, err := d.Dial("tcp", string(address))
	if err != nil {
		return nil, fmt.Errorf("cluster: dial %s: %w", address, err)
	}
	c := raw
	if err := c.SetDeadline(deadline); err != nil {
		c.Close()
		return nil, fmt.Errorf("cluster: dial %s: %w", address, err)
	}
	if s.tlsCfg != nil {
		cfg := s.tlsCfg
		if cfg.ServerName == "" && !cfg.InsecureSkipVerify {
			// A caller's own standard config: verify the host we dialed.
			cfg = cfg.Clone()
			if host, _, err := net.SplitHostPort(string(address)); err == nil {
				cfg.ServerName = host
			}
		}
		tc := tls.Client(raw, cfg)
		if err := tc.Handshake(); err != nil {
			raw.Close()
			return nil, fmt.Errorf("cluster: dial %s: tls: %w", address, err)
		}
		c = tc
	}
	if err := writePreamble(c, raft.ServerAddress(s.advertise.String())); err != nil {
		c.Close()
		return nil, fmt.Errorf("cluster: dial %s: preamble: %w", address, err)
	}
	var ack [1]byte
	if _, err := io.ReadFull(c, ack[:]); err != nil || ack[0] != streamAccepted {
		c.Close()
		if err == nil {
			err = fmt.Errorf("unexpected answer %#x", ack[0])
		}
		return nil, fmt.Errorf("cluster: dial %s: peer refused stream: %w", address, err)
	}
	if err := c.SetDeadline(time.Time{}); err != nil {
		c.Close()
		return nil, fmt.Errorf("cluster: dial %s: %w", address, err)
	}
	return c, nil
}

// acceptLoop accepts TCP connections until Close and handshakes each on
// its own goroutine. Listener errors other than Close are transient
// (EMFILE, ECONNABORTED) and retried with backoff, as net/http does.
func (s *StreamLayer) acceptLoop() {
	defer s.wg.Done()
	var delay time.Duration
	for {
		c, err := s.ln.Accept()
		if err != nil {
			select {
			case <-s.done:
				return
			default:
			}
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			select {
			case <-s.done:
				return
			case <-time.After(delay):
			}
			continue
		}
		delay = 0
		s.mu.Lock()
		select {
		case <-s.done:
			s.mu.Unlock()
			c.Close()
			return
		default:
		}
		s.pending[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go s.handshake(c)
	}
}

// handshake runs the server side of TLS and the preamble on an accepted
// conn and queues it for Accept; a peer that fails either is dropped.
func (s *StreamLayer) handshake(raw net.Conn) {
	defer s.wg.Done()
	c, err := s.serverHandshake(raw)
	s.mu.Lock()
	delete(s.pending, raw)
	s.mu.Unlock()
	if err != nil {
		raw.Close()
		return
	}
	select {
	case s.ready <- c:
	case <-s.done:
		c.Close()
	}
}

func (s *StreamLayer) serverHandshake(raw net.Conn) (net.Conn, error) {
	var c net.Conn = raw
	if err := c.SetDeadline(time.Now().Add(handshakeTimeout)); err != nil {
		return nil, err
	}
	if s.tlsCfg != nil {
		tc := tls.Server(raw, s.tlsCfg)
		if err := tc.Handshake(); err != nil {
			return nil, err
		}
		c = tc
	}
	peer, err := readPreamble(c)
	if err != nil {
		return nil, err
	}
	if _, err := c.Write([]byte{streamAccepted}); err != nil {
		return nil, err
	}
	if err := c.SetDeadline(time.Time{}); err != nil {
		return nil, err
	}
	return &peerConn{Conn: c, peer: peer}, nil
}

func writePreamble(w io.Writer, self raft.ServerAddress) error {
	if len(self) == 0 || len(self) > 255 {
		return fmt.Errorf("own address %q must be 1 to 255 bytes", self)
	}
	b := make([]byte, 0, streamHeaderLen+len(self))
	b = append(b, streamMagic...)
	b = append(b, streamVersion, byte(len(self)))
	b = append(b, self...)
	_, err := w.Write(b)
	return err
}

// readPreamble reads exactly the preamble, leaving the rest of the stream
// for raft.
func readPreamble(r io.Reader) (raft.ServerAddress, error) {
	var h [streamHeaderLen]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return "", err
	}
	if string(h[:len(streamMagic)]) != streamMagic || h[len(streamMagic)] != streamVersion {
		return "", errors.New("cluster: not a kmsd raft stream")
	}
	n := int(h[len(h)-1])
	if n == 0 {
		return "", errors.New("cluster: empty peer address in preamble")
	}
	addr := make([]byte, n)
	if _, err := io.ReadFull(r, addr); err != nil {
		return "", err
	}
	return raft.ServerAddress(addr), nil
}

// peerConn is an accepted stream and the raft address its dialer claimed.
type peerConn struct {
	net.Conn
	peer raft.ServerAddress
}

// PeerAddress is the raft address the dialer sent in its preamble.
func (c *peerConn) PeerAddress() raft.ServerAddress { return c.peer }

// streamAddr is an advertised "host:port", kept as given (no DNS lookup).
type streamAddr string

func (a streamAddr) Network() string { return "tcp" }
func (a streamAddr) String() string  { return string(a) }

// NewTCPTransport returns raft's NetworkTransport over sl: a pool of 3
// conns per peer, a 10 s I/O timeout, and warnings and errors written to
// logOutput (nil discards them). Closing the transport closes sl.
func NewTCPTransport(sl raft.StreamLayer, logOutput io.Writer) *raft.NetworkTransport {
	if logOutput == nil {
		logOutput = io.Discard
	}
	return raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  sl,
		MaxPool: 3,
		Timeout: 10 * time.Second,
		Logger:  hclog.New(&hclog.LoggerOptions{Name: "raft-net", Level: hclog.Warn, Output: logOutput}),
	})
}
