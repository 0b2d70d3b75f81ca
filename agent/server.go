package agent

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/kmsd/kmsd/agent/audit"
	"github.com/kmsd/kmsd/agent/sigv4"
	"github.com/kmsd/kmsd/batch"
	"github.com/kmsd/kmsd/cache"
	"github.com/kmsd/kmsd/cluster"
	"github.com/kmsd/kmsd/hsmpool"
	"github.com/kmsd/kmsd/quota"
)

// Config configures a Server. Zero values mean defaults.
type Config struct {
	Region    string // "" = "us-east-1"
	AccountID string // "" = "111122223333"
	Node      *cluster.Node
	Pool      *hsmpool.Pool
	Logger    *slog.Logger // nil = discard
	// RequestTimeout bounds each request's work (HSM waits, raft applies);
	// 0 = 30s.
	RequestTimeout time.Duration
	// MaxBatch is the most requests one HSM operation serves (batch/);
	// 0 = 64, 1 = batching off.
	MaxBatch int
	// Quotas configures request quotas (ThrottlingException beyond them);
	// the zero value enforces AWS's defaults for Region. DisableQuotas
	// turns them off (benchmarks of raw capacity, tests).
	Quotas        quota.Config
	DisableQuotas bool
	// DecryptCache bounds the cache of unwrapped batch keys that lets a
	// Decrypt skip the HSM; the zero value disables it.
	DecryptCache cache.Config
	// APIURL is the URL other nodes reach this node's API at (forwarded
	// writes, cluster status); "" for a node that is a cluster of one.
	APIURL string
	// MaxKeys is the resource quota of KMS keys in the account; 0 = AWS's
	// 100,000. Exceeding it is LimitExceededException.
	MaxKeys int
	// Now is the clock of timestamps and of the leader's schedules
	// (rotation, deletion); nil = time.Now. Tests pass a fake clock.
	Now func() time.Time
	// Audit receives one record per API call; nil = no audit log. The
	// caller opens and closes it.
	Audit *audit.Logger
	// SealKeyPairs makes every new asymmetric private key in Go, sealed by
	// the HSM, even where the token could make and use it itself (README
	// "Asymmetric, HMAC and key-agreement keys").
	SealKeyPairs bool
	// Custom key stores (keystores.go): XKSTimeout bounds each call to an
	// XKS proxy (0 = 250 ms, as AWS); XKSRootCAs are the CAs a proxy's
	// certificate may chain to (nil = the system's); HSMStores are the
	// PKCS#11 tokens AWS_CLOUDHSM key stores may use, by CloudHsmClusterId.
	XKSTimeout time.Duration
	XKSRootCAs *x509.CertPool
	// XKSSharedKeys lets one external key back several KMS keys of a store
	// (Alibaba Cloud's model); AWS, and the default, refuse it.
	XKSSharedKeys bool
	HSMStores     map[string]HSMStoreConfig
	// Peers are the other kmsd clusters (Regions) multi-Region keys
	// replicate to; see SetPeers.
	Peers []Peer
}

// Validate checks the config, naming the bad field.
func (c Config) Validate() error {
	if c.Node == nil {
		return errors.New("agent: Config.Node is required")
	}
	if c.Pool == nil {
		return errors.New("agent: Config.Pool is required")
	}
	if c.MaxBatch < 0 {
		return fmt.Errorf("agent: Config.MaxBatch %d must not be negative", c.MaxBatch)
	}
	if c.AccountID != "" && (len(c.AccountID) != 12 || !isDigits(c.AccountID)) {
		return fmt.Errorf("agent: Config.AccountID %q must be 12 digits", c.AccountID)
	}
	if c.Region != "" && !validRegion(c.Region) {
		return fmt.Errorf("agent: Config.Region %q is not a region name", c.Region)
	}
	return nil
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

func validRegion(r string) bool {
	if len(r) < 2 || len(r) > 64 {
		return false
	}
	for i := 0; i < len(r); i++ {
		c := r[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// Server serves the KMS API for one node.
type Server struct {
	cfg       Config
	partition string
	node      *cluster.Node
	pool      *hsmpool.Pool
	log       *slog.Logger
	verifier  *sigv4.Verifier
	creds     credCache
	ops       map[string]opFunc
	usage     *usageTracker
	batch     *batch.Batcher
	quota     *quota.Limiter // nil = no quotas
	keyCache  *cache.Cache
	metrics   *metrics
	authz     authCache
	mr        mrState
	// defaultPolicyText is the default key policy of this account; keys
	// with it skip policy evaluation for the account root.
	defaultPolicyText string
	http              *fasthttp.Server
	stores            storeState // custom key stores (keystores.go)

	readyMu sync.Mutex
	ready   bool

	deadlines *deadlineTicks // the requests' contexts (deadline.go)
}

// opFunc runs one API operation on a decoded request body and returns the
// response value to encode as JSON.
type opFunc func(s *Server, r *request) (any, error)

// request is one API call in flight.
type request struct {
	ctx       context.Context
	id        string    // x-amzn-RequestId
	at        time.Time // when the request arrived
	op        string
	body      []byte
	bodyValid bool // body decoded: one valid JSON value (the audit filter skips its check)
	principal string
	akid      string
	// http is the fasthttp request (valid until the handler returns).
	http *fasthttp.RequestCtx
	// sourceIP is the caller's address (aws:SourceIp, see remoteIP); viaService the
	// service its credential acts for (kms:ViaService), if any; alias the
	// alias the request named its key by (kms:RequestAlias).
	sourceIP   string
	viaService string
	alias      string
	// resources are the ARNs of the keys the request was authorized on
	// (the audit record's resources).
	resources []string
	// rctx is ctx as serveAPI sets it (deadline.go).
	rctx reqCtx
}

// New makes a Server. Call Init before serving.
func New(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	if cfg.AccountID == "" {
		cfg.AccountID = "111122223333"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.RequestTimeout == 0 {
		cfg.RequestTimeout = 30 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Server{
		cfg:       cfg,
		partition: partitionOf(cfg.Region),
		node:      cfg.Node,
		pool:      cfg.Pool,
		log:       cfg.Logger,
		ops:       operations,
		deadlines: newDeadlineTicks(cfg.RequestTimeout),
	}
	bt, err := batch.New(cfg.Pool, batch.Config{MaxBatch: cfg.MaxBatch})
	if err != nil {
		return nil, err
	}
	s.batch = bt
	if !cfg.DisableQuotas {
		qc := cfg.Quotas
		if qc.Region == "" {
			qc.Region = cfg.Region
		}
		if s.quota, err = quota.New(qc); err != nil {
			return nil, fmt.Errorf("agent: Config.Quotas: %w", err)
		}
	}
	if s.keyCache, err = cache.New(cfg.DecryptCache); err != nil {
		return nil, fmt.Errorf("agent: Config.DecryptCache: %w", err)
	}
	// Forget cached secrets of a key on every node as soon as its state or
	// material changes (disable, deletion, rotation).
	cfg.Node.OnKeyChange(s.keyCache.Purge)
	s.metrics = newMetrics(s)
	s.creds.init(s)
	s.defaultPolicyText = s.defaultPolicy()
	s.SetPeers(cfg.Peers)
	s.usage = newUsageTracker(cfg.Now())
	// SigV4 checks skew against the wall clock, as AWS does; cfg.Now is the
	// clock of schedules (rotation, deletion) and timestamps.
	s.verifier = &sigv4.Verifier{Region: cfg.Region, Service: "kms", Lookup: s.creds.lookup}
	s.http = &fasthttp.Server{
		Handler:               s.Handler,
		Name:                  "kmsd",
		ReadTimeout:           60 * time.Second,
		WriteTimeout:          60 * time.Second,
		IdleTimeout:           120 * time.Second,
		MaxRequestBodySize:    1 << 20,
		NoDefaultServerHeader: false,
		NoDefaultContentType:  true,
		ReduceMemoryUsage:     false,
	}
	return s, nil
}

func partitionOf(region string) string {
	switch {
	case strings.HasPrefix(region, "cn-"):
		return "aws-cn"
	case strings.HasPrefix(region, "us-gov-"):
		return "aws-us-gov"
	}
	return "aws"
}

// Serve serves HTTP on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error { return s.http.Serve(ln) }

// Shutdown stops accepting connections, waits for requests in flight and
// drops every cached secret. The node and pool stay the caller's to close.
func (s *Server) Shutdown() error {
	err := s.http.Shutdown()
	s.node.OnKeyChange(nil)
	s.pool.SetObserver(nil)
	s.keyCache.Close()
	s.closeStores()
	return err
}

// Handler is the fasthttp handler: /healthz, /readyz, and the KMS API on
// POST /.
func (s *Server) Handler(ctx *fasthttp.RequestCtx) {
	path := ctx.Path()
	if ctx.IsGet() || ctx.IsHead() {
		switch string(path) {
		case "/healthz":
			ctx.SetContentType("text/plain; charset=utf-8")
			ctx.SetBodyString("ok\n")
			return
		case "/readyz":
			ctx.SetContentType("text/plain; charset=utf-8")
			if err := s.Ready(ctx); err != nil {
				ctx.SetStatusCode(fasthttp.StatusServiceUnavailable)
				ctx.SetBodyString("not ready: " + err.Error() + "\n")
				return
			}
			ctx.SetBodyString("ready\n")
			return
		case "/metrics":
			s.metrics.handler(ctx)
			return
		}
	}
	s.serveAPI(ctx)
}

// Ready reports whether this node can serve crypto operations: the raft
// state is loaded, the HSM answers and the domain key is present.
func (s *Server) Ready(ctx context.Context) error {
	s.readyMu.Lock()
	ready := s.ready
	s.readyMu.Unlock()
	if !ready {
		return errors.New("initialising")
	}
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := s.pool.Ping(cctx); err != nil {
		return fmt.Errorf("hsm: %w", err)
	}
	return nil
}

const targetPrefix = "TrentService."

// opNames interns the operation names: a request's target needs no copy.
var opNames = func() map[string]string {
	m := make(map[string]string, len(allOperations))
	for _, n := range allOperations {
		m[n] = n
	}
	return m
}()

func (s *Server) serveAPI(ctx *fasthttp.RequestCtx) {
	start := time.Now()
	reqID := audit.NewUUID()
	ctx.Response.Header.Set("x-amzn-RequestId", reqID)
	ctx.SetContentType("application/x-amz-json-1.1")
	// r describes the call (for the audit log too) as far as it is known.
	r := &request{id: reqID, http: ctx}

	if !ctx.IsPost() {
		s.writeError(ctx, r, start, &APIError{Type: errUnknownOperation, Message: "Only POST is supported.", Status: 400})
		return
	}
	// Authenticate before anything else is looked at.
	res, err := s.verifier.Verify(&ctx.Request)
	if err != nil {
		r.akid = claimedAccessKey(ctx)
		s.writeError(ctx, r, start, err)
		return
	}
	r.akid = res.AccessKeyID
	principal, ok := s.creds.principal(res.AccessKeyID)
	if !ok {
		s.writeError(ctx, r, start, sigv4.ErrUnknownAccessKey)
		return
	}
	r.principal = principal
	target := ctx.Request.Header.Peek("X-Amz-Target")
	op, ok := "", false
	if name, has := bytes.CutPrefix(target, []byte(targetPrefix)); has {
		if op, ok = opNames[string(name)]; !ok {
			op, ok = string(name), true
		}
	}
	fn := s.ops[op]
	if !ok {
		if cop, isCluster := strings.CutPrefix(string(target), clusterPrefix); isCluster {
			op, fn, ok = clusterPrefix+cop, clusterOps[cop], true
		}
	}
	if !ok || fn == nil {
		s.writeError(ctx, r, start, &APIError{Type: errUnknownOperation, Status: 400})
		return
	}
	r.op = op
	r.body = ctx.PostBody()
	// The body may carry plaintext (Encrypt): zero fasthttp's copy when done.
	defer clear(ctx.Request.Body())
	if s.quota != nil && !quotaAfterKey[op] {
		if err := s.quota.Allow(s.cfg.AccountID, quota.GroupFor(op, "")...); err != nil {
			s.writeError(ctx, r, start, err)
			return
		}
	}
	s.deadlines.set(&r.rctx, time.Now().Add(s.cfg.RequestTimeout))
	r.ctx, r.at = &r.rctx, s.cfg.Now()
	if p, ok := s.node.Principal(principal); ok {
		r.viaService = p.ViaService
	}
	out, err := fn(s, r)
	if err != nil {
		s.writeError(ctx, r, start, err)
		return
	}
	b, buf, err := encodeResponse(out)
	wipeResponse(out)
	if err != nil {
		s.writeError(ctx, r, start, err)
		return
	}
	s.auditCall(ctx, r, b, nil)
	ctx.SetBody(b)
	clear(b)
	if buf != nil {
		*buf = b[:0]
		respBufs.Put(buf)
	}
	s.metrics.observe(op, "ok", start)
}

// respBufs holds the buffers hot responses are encoded into (cleared
// before they are put back: a response may carry a data key).
var respBufs = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// encodeResponse encodes out as JSON: a hot response shape into a pooled
// buffer (returned as buf, for the caller to clear and put back), any
// other through encoding/json (buf nil).
func encodeResponse(out any) (b []byte, buf *[]byte, err error) {
	if a, ok := out.(jsonAppender); ok {
		buf = respBufs.Get().(*[]byte)
		return a.appendJSON((*buf)[:0]), buf, nil
	}
	b, err = json.Marshal(out)
	return b, nil, err
}

func (s *Server) writeError(ctx *fasthttp.RequestCtx, r *request, start time.Time, err error) {
	ae, unexpected := apiErrorFrom(err)
	if r.op == "" {
		r.op = string(ctx.Request.Header.Peek("X-Amz-Target"))
	}
	op := r.op
	if _, known := s.ops[op]; !known && !strings.HasPrefix(op, clusterPrefix) {
		op = "" // an unauthenticated or unknown target names no operation
	}
	s.metrics.observe(op, ae.Type, start)
	if unexpected {
		s.log.Error("request failed", "op", op, "err", err)
	}
	s.auditCall(ctx, r, nil, ae)
	ctx.SetStatusCode(ae.Status)
	b, _ := json.Marshal(struct {
		Type    string `json:"__type"`
		Message string `json:"message,omitempty"`
	}{ae.Type, ae.Message})
	ctx.SetBody(b)
}

// decode parses the JSON request body into v. An empty body is "{}".
// Anything that is not the operation's JSON shape is SerializationException.
func decode(r *request, v any) error {
	body := r.body
	if len(body) == 0 {
		return nil
	}
	if fd, ok := v.(fastDecoder); ok && fd.decodeFast(body) {
		r.bodyValid = true
		return nil
	}
	if err := json.Unmarshal(body, v); err != nil {
		var ute *json.UnmarshalTypeError
		if errors.As(err, &ute) {
			return apiErr(errSerialization, "Value for '%s' has the wrong type: expected %s", ute.Field, ute.Type)
		}
		return &APIError{Type: errSerialization, Message: "The request body is not valid JSON.", Status: 400}
	}
	r.bodyValid = true
	return nil
}

// remoteIP returns the caller's IP address, computed once.
func (r *request) remoteIP() string {
	if r.sourceIP == "" && r.http != nil {
		r.sourceIP = ipString(r.http.RemoteIP())
	}
	return r.sourceIP
}

// lastIP is the last caller address ipString formatted: a sidecar's
// callers all come from one address, whose string is then not built (and
// allocated) again for every request.
var lastIP atomic.Pointer[ipText]

type ipText struct {
	ip net.IP
	s  string
}

func ipString(ip net.IP) string {
	if l := lastIP.Load(); l != nil && l.ip.Equal(ip) {
		return l.s
	}
	s := ip.String()
	lastIP.Store(&ipText{ip: bytes.Clone(ip), s: s})
	return s
}
