package xks

import (
	"bytes"
	"context"
	"crypto/subtle"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/kmsd/kmsd/agent/sigv4"
	"github.com/kmsd/kmsd/hsmpool"
)

// SigV4Service is the service name in the credential scope of every XKS
// request.
const SigV4Service = "kms-xks-proxy"

// DefaultHealthKey labels the test key the deep health check uses, so
// that health checks never touch a key that backs a KMS key.
const DefaultHealthKey = "kmsd-xks-health-check"

// ServerConfig configures a Server. Zero values mean defaults.
type ServerConfig struct {
	Keys *TokenKeys // required
	// Region is the only region accepted in the SigV4 credential scope:
	// the region of the KMS that calls this proxy. "" = us-east-1.
	Region string
	// PathPrefix is the optional part of XksProxyUriPath before
	// /kms/xks/v1, e.g. "/keystore1"; "" = none.
	PathPrefix string
	// Credentials maps access key ids to secret access keys.
	Credentials map[string]string
	HealthKey   string // "" = DefaultHealthKey
	// RequestTimeout bounds the HSM work of one request. 0 = 2s.
	RequestTimeout time.Duration
	Logger         *slog.Logger
	Now            func() time.Time // nil = time.Now (SigV4 clock checks)
}

// Validate reports the first invalid field, by name.
func (c ServerConfig) Validate() error {
	switch {
	case c.Keys == nil:
		return errors.New("xks: ServerConfig.Keys is required")
	case c.RequestTimeout < 0:
		return errors.New("xks: ServerConfig.RequestTimeout must not be negative")
	}
	if p := c.PathPrefix; p != "" {
		if p[0] != '/' || strings.HasSuffix(p, "/") || len(p)+len("/kms/xks/v1") > 128 || !uriPathChars(p) {
			return fmt.Errorf("xks: ServerConfig.PathPrefix %q must start with / and hold only a-z A-Z 0-9 / - _ (at most %d characters)", p, 128-len("/kms/xks/v1"))
		}
	}
	for id, secret := range c.Credentials {
		if err := CheckCredential(id, secret); err != nil {
			return fmt.Errorf("xks: ServerConfig.Credentials: %w", err)
		}
	}
	return nil
}

func uriPathChars(p string) bool {
	for i := 0; i < len(p); i++ {
		c := p[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '/' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// Server is an XKS proxy: the four XKS API operations over TokenKeys.
type Server struct {
	cfg      ServerConfig
	log      *slog.Logger
	verifier sigv4.Verifier
	creds    atomic.Pointer[map[string]string]
	base     string // PathPrefix + "/kms/xks/v1/"
	srv      *fasthttp.Server
}

// NewServer makes a Server. It does not touch the HSM; call
// EnsureHealthKey before serving.
func NewServer(cfg ServerConfig) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	if cfg.HealthKey == "" {
		cfg.HealthKey = DefaultHealthKey
	}
	if cfg.RequestTimeout == 0 {
		cfg.RequestTimeout = 2 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, log: cfg.Logger, base: cfg.PathPrefix + "/kms/xks/v1/"}
	creds := map[string]string{}
	for k, v := range cfg.Credentials {
		creds[k] = v
	}
	s.creds.Store(&creds)
	s.verifier = sigv4.Verifier{Region: cfg.Region, Service: SigV4Service, Now: cfg.Now,
		Lookup: func(id string) ([]byte, bool) {
			secret, ok := (*s.creds.Load())[id]
			return []byte(secret), ok
		}}
	s.srv = &fasthttp.Server{
		Handler:                       s.Handler,
		Name:                          "kmsd-xks-proxy",
		ReadTimeout:                   30 * time.Second,
		WriteTimeout:                  30 * time.Second,
		IdleTimeout:                   2 * time.Minute,
		MaxRequestBodySize:            256 << 10,
		DisableHeaderNamesNormalizing: false,
		NoDefaultDate:                 false,
		Logger:                        discardLogger{},
	}
	return s, nil
}

type discardLogger struct{}

func (discardLogger) Printf(string, ...any) {}

// SetCredentials replaces the accepted access keys (credential rotation
// without a restart). Invalid entries are refused as a whole.
func (s *Server) SetCredentials(creds map[string]string) error {
	c := map[string]string{}
	for id, secret := range creds {
		if err := CheckCredential(id, secret); err != nil {
			return err
		}
		c[id] = secret
	}
	s.creds.Store(&c)
	return nil
}

// EnsureHealthKey creates the health-check test key if the token lacks it.
func (s *Server) EnsureHealthKey(ctx context.Context) error {
	err := s.cfg.Keys.Create(ctx, s.cfg.HealthKey)
	if errors.Is(err, ErrKeyExists) {
		return nil
	}
	return err
}

// TLSConfig returns the proxy's TLS settings for cert: TLS 1.2 or later,
// and for TLS 1.2 only ECDHE suites with AES-GCM or ChaCha20 (the spec's
// list and its AES-128 twins).
func TLSConfig(cert tls.Certificate) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		CipherSuites: []uint16{
			tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
		},
	}
}

// Serve serves HTTPS on ln with tlsCfg until Shutdown. It never serves
// plain HTTP.
func (s *Server) Serve(ln net.Listener, tlsCfg *tls.Config) error {
	if tlsCfg == nil || len(tlsCfg.Certificates) == 0 {
		return errors.New("xks: Serve needs a TLS certificate")
	}
	return s.srv.Serve(tls.NewListener(ln, tlsCfg))
}

// Shutdown stops Serve, letting requests in flight finish.
func (s *Server) Shutdown(ctx context.Context) error { return s.srv.ShutdownWithContext(ctx) }

// route is a parsed request path.
type route struct {
	op    string // "health", "metadata", "encrypt", "decrypt"; "" = invalid
	keyID string
}

func (s *Server) route(path string) route {
	rest, ok := strings.CutPrefix(path, s.base)
	if !ok {
		return route{}
	}
	if rest == "health" {
		return route{op: "health"}
	}
	rest, ok = strings.CutPrefix(rest, "keys/")
	if !ok {
		return route{}
	}
	id, op, ok := strings.Cut(rest, "/")
	if !ok || !ValidKeyID(id) {
		return route{}
	}
	switch op {
	case "metadata", "encrypt", "decrypt":
		return route{op: op, keyID: id}
	}
	return route{}
}

// Handler serves one request. Besides the XKS API it answers GET /healthz
// (unauthenticated, for load balancers) with 200 when the HSM answers.
func (s *Server) Handler(ctx *fasthttp.RequestCtx) {
	start := time.Now()
	path := string(ctx.Path())
	if path == "/healthz" && (ctx.IsGet() || ctx.IsHead()) {
		cctx, cancel := context.WithTimeout(context.Background(), s.cfg.RequestTimeout)
		defer cancel()
		ctx.SetContentType("text/plain; charset=utf-8")
		if _, err := s.cfg.Keys.Info(cctx, s.cfg.HealthKey); err != nil {
			ctx.SetStatusCode(fasthttp.StatusServiceUnavailable)
			ctx.SetBodyString("unavailable\n")
			return
		}
		ctx.SetBodyString("ok\n")
		return
	}
	rt := s.route(path)
	var md *RequestMetadata
	res, err := s.serve(ctx, rt, &md)
	ctx.SetContentType("application/json")
	attrs := []any{"op", rt.op, "key", rt.keyID, "ms", time.Since(start).Milliseconds()}
	if md != nil {
		attrs = append(attrs, "kmsRequestId", md.KMSRequestID, "kmsOperation", md.KMSOperation,
			"kmsKeyArn", md.KMSKeyArn, "awsPrincipalArn", md.AWSPrincipalArn)
	}
	if err != nil {
		var pe *ProxyError
		if !errors.As(err, &pe) {
			s.log.Error("xks: request failed", append(attrs, "err", err)...)
			pe = proxyErr(ErrNameInternal, "The external key manager failed.")
		} else {
			s.log.Info("xks: request refused", append(attrs, "error", pe.Name)...)
		}
		ctx.SetStatusCode(pe.Status)
		b, _ := json.Marshal(errorBody{ErrorName: pe.Name, ErrorMessage: pe.Message})
		ctx.SetBody(b)
		return
	}
	b, err := json.Marshal(res)
	wipe(res)
	if err != nil {
		ctx.SetStatusCode(500)
		ctx.SetBodyString(`{"errorName":"InternalException"}`)
		return
	}
	s.log.Info("xks: request", attrs...)
	ctx.SetBody(b)
	clear(b)
}

func wipe(v any) {
	if r, ok := v.(*decryptResponse); ok {
		clear(r.Plaintext)
	}
}

func (s *Server) serve(ctx *fasthttp.RequestCtx, rt route, mdOut **RequestMetadata) (any, error) {
	if rt.op != "" && !ctx.IsPost() {
		ctx.Response.Header.Set("Allow", "POST")
		return nil, &ProxyError{Status: 405, Name: ErrNameValidation, Message: "Method Not Allowed: use POST."}
	}
	if _, err := s.verifier.Verify(&ctx.Request); err != nil {
		return nil, proxyErr(ErrNameAuthenticationFailed, "%s", err.Error())
	}
	if rt.op == "" {
		return nil, proxyErr(ErrNameInvalidURIPath, "The URI path is not a valid XKS API path under %s.", strings.TrimSuffix(s.base, "/"))
	}
	if !ctx.IsPost() {
		return nil, &ProxyError{Status: 405, Name: ErrNameValidation, Message: "Method Not Allowed: use POST."}
	}
	cctx, cancel := context.WithTimeout(context.Background(), s.cfg.RequestTimeout)
	defer cancel()
	body := ctx.PostBody()
	switch rt.op {
	case "health":
		var in metadataRequest
		if err := decodeBody(body, &in); err != nil {
			return nil, err
		}
		*mdOut = in.RequestMetadata
		return s.health(cctx), nil
	case "metadata":
		var in metadataRequest
		if err := decodeBody(body, &in); err != nil {
			return nil, err
		}
		*mdOut = in.RequestMetadata
		if err := checkMetadata(in.RequestMetadata, false); err != nil {
			return nil, err
		}
		return s.keyMetadata(cctx, rt.keyID)
	case "encrypt":
		var in encryptRequest
		err := decodeBody(body, &in)
		defer clear(in.Plaintext)
		if err != nil {
			return nil, err
		}
		*mdOut = in.RequestMetadata
		if err := checkMetadata(in.RequestMetadata, true); err != nil {
			return nil, err
		}
		return s.encrypt(cctx, rt.keyID, &in)
	default:
		var in decryptRequest
		if err := decodeBody(body, &in); err != nil {
			return nil, err
		}
		*mdOut = in.RequestMetadata
		if err := checkMetadata(in.RequestMetadata, true); err != nil {
			return nil, err
		}
		return s.decrypt(cctx, rt.keyID, &in)
	}
}

func decodeBody(body []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(body))
	if err := d.Decode(v); err != nil {
		return proxyErr(ErrNameValidation, "The request body is not valid JSON with Base64 binary fields.")
	}
	if d.More() {
		return proxyErr(ErrNameValidation, "The request body has trailing data after the JSON object.")
	}
	return nil
}

// checkMetadata enforces the fields the spec marks REQUIRED. Unknown
// kmsOperation values are accepted, as the spec demands.
func checkMetadata(md *RequestMetadata, keyArn bool) error {
	switch {
	case md == nil:
		return proxyErr(ErrNameValidation, "requestMetadata is required.")
	case md.KMSOperation == "":
		return proxyErr(ErrNameValidation, "requestMetadata.kmsOperation is required.")
	case md.KMSRequestID == "":
		return proxyErr(ErrNameValidation, "requestMetadata.kmsRequestId is required.")
	case md.AWSPrincipalArn == "":
		return proxyErr(ErrNameValidation, "requestMetadata.awsPrincipalArn is required.")
	case keyArn && md.KMSKeyArn == "":
		return proxyErr(ErrNameValidation, "requestMetadata.kmsKeyArn is required.")
	case len(md.KMSKeyArn) > 2048 || len(md.AWSPrincipalArn) > 2048:
		return proxyErr(ErrNameValidation, "ARNs in requestMetadata must be at most 2048 characters.")
	}
	return nil
}

// hsmError turns a TokenKeys error into the spec's error.
func hsmError(err error, keyID string) error {
	switch {
	case errors.Is(err, ErrKeyNotFound):
		return proxyErr(ErrNameKeyNotFound, "External key %s was not found.", keyID)
	case errors.Is(err, ErrAuthFailed):
		return proxyErr(ErrNameInvalidCiphertext, "The ciphertext, initialization vector, additional authenticated data or authentication tag is invalid.")
	case errors.Is(err, hsmpool.ErrExhausted), errors.Is(err, context.DeadlineExceeded):
		return proxyErr(ErrNameDependencyTimeout, "The HSM did not answer in time.")
	}
	return err
}

func (s *Server) health(ctx context.Context) *Health {
	status := "ACTIVE"
	iv, ct, tag, err := s.cfg.Keys.Encrypt(ctx, s.cfg.HealthKey, []byte("xks health check"), nil)
	if err == nil {
		var pt []byte
		pt, err = s.cfg.Keys.Decrypt(ctx, s.cfg.HealthKey, iv, ct, tag, nil)
		if err == nil && string(pt) != "xks health check" {
			err = errors.New("xks: health check round trip mismatch")
		}
	}
	if err != nil {
		s.log.Warn("xks: health check failed", "err", err)
		status = "UNAVAILABLE"
	}
	return &Health{FleetSize: 1, Vendor: "kmsd", Model: "kmsd xks-proxy 1", EKMVendor: "PKCS#11",
		EKMFleetDetails: []EKMDetail{{ID: "hsm-1", Model: "PKCS#11 token", HealthStatus: status}}}
}

func (s *Server) keyMetadata(ctx context.Context, id string) (*KeyMetadata, error) {
	ki, err := s.cfg.Keys.Info(ctx, id)
	if err != nil {
		return nil, hsmError(err, id)
	}
	md := &KeyMetadata{KeySpec: "AES_256", KeyStatus: "ENABLED", KeyUsage: []string{}}
	if ki.Bits != 256 {
		md.KeySpec = fmt.Sprintf("AES_%d", ki.Bits)
	}
	for _, u := range []struct {
		on   bool
		name string
	}{{ki.Encrypt, "ENCRYPT"}, {ki.Decrypt, "DECRYPT"}, {ki.Wrap, "WRAP"}, {ki.Unwrap, "UNWRAP"}} {
		if u.on {
			md.KeyUsage = append(md.KeyUsage, u.name)
		}
	}
	if !ki.Encrypt && !ki.Decrypt {
		// A key that can do neither is how a PKCS#11 token says "disabled".
		md.KeyStatus = "DISABLED"
	}
	return md, nil
}

func (s *Server) encrypt(ctx context.Context, id string, in *encryptRequest) (*Sealed, error) {
	switch {
	case in.Algorithm != "AES_GCM":
		return nil, proxyErr(ErrNameValidation, "encryptionAlgorithm must be AES_GCM.")
	case in.Plaintext == nil:
		return nil, proxyErr(ErrNameValidation, "plaintext is required.")
	case in.CDIVAlgorithm != "" && in.CDIVAlgorithm != "SHA_256":
		return nil, proxyErr(ErrNameValidation, "ciphertextDataIntegrityValueAlgorithm must be SHA_256.")
	case len(in.Plaintext) > MaxPlaintext:
		return nil, proxyErr(ErrNameUnsupported, "plaintext larger than %d bytes is not supported.", MaxPlaintext)
	case len(in.AAD) > MaxAAD:
		return nil, proxyErr(ErrNameUnsupported, "additionalAuthenticatedData larger than %d bytes is not supported.", MaxAAD)
	}
	aad := gcmAAD(in.AAD, nil)
	iv, ct, tag, err := s.cfg.Keys.Encrypt(ctx, id, in.Plaintext, aad)
	if err != nil {
		return nil, hsmError(err, id)
	}
	out := &Sealed{Ciphertext: ct, IV: iv, Tag: tag}
	if in.CDIVAlgorithm != "" {
		// Appendix C: hash first, then prove the output decrypts.
		out.CDIV = CDIV(in.AAD, out)
		pt, err := s.cfg.Keys.Decrypt(ctx, id, iv, ct, tag, aad)
		if err != nil {
			return nil, hsmError(err, id)
		}
		same := subtle.ConstantTimeCompare(pt, in.Plaintext) == 1
		clear(pt)
		if !same {
			return nil, proxyErr(ErrNameInternal, "The encryption could not be verified.")
		}
	}
	return out, nil
}

func (s *Server) decrypt(ctx context.Context, id string, in *decryptRequest) (*decryptResponse, error) {
	switch {
	case in.Algorithm != "AES_GCM":
		return nil, proxyErr(ErrNameValidation, "encryptionAlgorithm must be AES_GCM.")
	case in.Ciphertext == nil, in.IV == nil, in.Tag == nil:
		return nil, proxyErr(ErrNameInvalidCiphertext, "ciphertext, initializationVector and authenticationTag are required.")
	case len(in.IV) != 12 && len(in.IV) != 16, len(in.Tag) != TagSize:
		return nil, proxyErr(ErrNameInvalidCiphertext, "The initialization vector must be 12 or 16 bytes and the authentication tag 16.")
	case len(in.CiphertextMetadata) > maxMetadata:
		return nil, proxyErr(ErrNameInvalidCiphertext, "ciphertextMetadata must be at most %d bytes.", maxMetadata)
	case len(in.Ciphertext) > MaxCiphertext:
		return nil, proxyErr(ErrNameUnsupported, "ciphertext larger than %d bytes is not supported.", MaxCiphertext)
	case len(in.AAD) > MaxAAD:
		return nil, proxyErr(ErrNameUnsupported, "additionalAuthenticatedData larger than %d bytes is not supported.", MaxAAD)
	}
	pt, err := s.cfg.Keys.Decrypt(ctx, id, in.IV, in.Ciphertext, in.Tag, gcmAAD(in.AAD, in.CiphertextMetadata))
	if err != nil {
		return nil, hsmError(err, id)
	}
	return &decryptResponse{Plaintext: pt}, nil
}
