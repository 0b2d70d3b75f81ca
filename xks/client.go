package xks

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// DefaultTimeout is how long AWS KMS waits for an XKS proxy call.
const DefaultTimeout = 250 * time.Millisecond

// ClientConfig configures a Client. Zero values mean defaults.
type ClientConfig struct {
	// Endpoint is XksProxyUriEndpoint: https://host[:port].
	Endpoint string
	// Path is XksProxyUriPath, ending in /kms/xks/v1.
	Path            string
	AccessKeyID     string
	SecretAccessKey string
	Region          string         // signing region; "" = us-east-1
	Timeout         time.Duration  // per call; 0 = DefaultTimeout
	RootCAs         *x509.CertPool // nil = the system's roots
}

// Client calls one XKS proxy. It keeps its TLS connections alive between
// calls (a new TLS handshake per call would eat most of the 250 ms).
type Client struct {
	cfg    ClientConfig
	base   string
	http   *http.Client
	signer *v4.Signer
}

// NewClient returns a Client for cfg.
func NewClient(cfg ClientConfig) (*Client, error) {
	if !strings.HasPrefix(cfg.Endpoint, "https://") {
		return nil, errors.New("xks: ClientConfig.Endpoint must start with https://")
	}
	if !strings.HasSuffix(cfg.Path, "/kms/xks/v1") || !strings.HasPrefix(cfg.Path, "/") {
		return nil, errors.New("xks: ClientConfig.Path must start with / and end with /kms/xks/v1")
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	tr := &http.Transport{
		TLSClientConfig:     &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: cfg.RootCAs},
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
		ForceAttemptHTTP2:   false,
		DialContext:         (&net.Dialer{KeepAlive: 30 * time.Second}).DialContext,
	}
	return &Client{cfg: cfg, base: strings.TrimSuffix(cfg.Endpoint, "/") + cfg.Path,
		http: &http.Client{Transport: tr}, signer: v4.NewSigner()}, nil
}

// Close drops the client's idle connections.
func (c *Client) Close() { c.http.CloseIdleConnections() }

// Health calls GetHealthStatus.
func (c *Client) Health(ctx context.Context, md RequestMetadata) (*Health, error) {
	var out Health
	if err := c.call(ctx, "/health", struct {
		RequestMetadata struct {
			KMSRequestID string `json:"kmsRequestId"`
			KMSOperation string `json:"kmsOperation"`
		} `json:"requestMetadata"`
	}{RequestMetadata: struct {
		KMSRequestID string `json:"kmsRequestId"`
		KMSOperation string `json:"kmsOperation"`
	}{md.KMSRequestID, md.KMSOperation}}, &out); err != nil {
		return nil, err
	}
	if out.FleetSize < 1 || len(out.EKMFleetDetails) < 1 || len(out.EKMFleetDetails) > 10 {
		return nil, fmt.Errorf("%w: health status lacks the fleet details", ErrInvalidResponse)
	}
	for _, d := range out.EKMFleetDetails {
		switch d.HealthStatus {
		case "ACTIVE", "DEGRADED", "UNAVAILABLE":
		default:
			return nil, fmt.Errorf("%w: unknown healthStatus %q", ErrInvalidResponse, d.HealthStatus)
		}
	}
	return &out, nil
}

// Available reports whether at least one external key manager in h can
// serve traffic.
func (h *Health) Available() bool {
	for _, d := range h.EKMFleetDetails {
		if d.HealthStatus != "UNAVAILABLE" {
			return true
		}
	}
	return false
}

// Metadata calls GetKeyMetadata.
func (c *Client) Metadata(ctx context.Context, keyID string, md RequestMetadata) (*KeyMetadata, error) {
	if !ValidKeyID(keyID) {
		return nil, fmt.Errorf("xks: invalid external key id")
	}
	var out KeyMetadata
	if err := c.call(ctx, "/keys/"+keyID+"/metadata", metadataRequest{RequestMetadata: &md}, &out); err != nil {
		return nil, err
	}
	if out.KeySpec == "" || out.KeyStatus == "" || out.KeyUsage == nil {
		return nil, fmt.Errorf("%w: key metadata lacks keySpec, keyUsage or keyStatus", ErrInvalidResponse)
	}
	return &out, nil
}

// Encrypt calls Encrypt, asking for a CDIV and checking it, so a sealed
// value that comes back corrupted is never handed out.
func (c *Client) Encrypt(ctx context.Context, keyID string, md RequestMetadata, plaintext, aad []byte) (*Sealed, error) {
	if !ValidKeyID(keyID) {
		return nil, fmt.Errorf("xks: invalid external key id")
	}
	var out Sealed
	in := encryptRequest{RequestMetadata: &md, AAD: aad, Plaintext: plaintext, Algorithm: "AES_GCM", CDIVAlgorithm: "SHA_256"}
	if err := c.call(ctx, "/keys/"+keyID+"/encrypt", in, &out); err != nil {
		return nil, err
	}
	switch {
	case len(out.Ciphertext) != len(plaintext):
		return nil, fmt.Errorf("%w: ciphertext length %d for %d bytes of plaintext", ErrInvalidResponse, len(out.Ciphertext), len(plaintext))
	case len(out.IV) != 12 && len(out.IV) != 16, len(out.Tag) != TagSize, len(out.CiphertextMetadata) > maxMetadata:
		return nil, fmt.Errorf("%w: bad IV, tag or ciphertext metadata size", ErrInvalidResponse)
	case subtle.ConstantTimeCompare(out.CDIV, CDIV(aad, &out)) != 1:
		return nil, fmt.Errorf("%w: ciphertext data integrity value does not match", ErrInvalidResponse)
	}
	return &out, nil
}

// Decrypt calls Decrypt. The plaintext belongs to the caller.
func (c *Client) Decrypt(ctx context.Context, keyID string, md RequestMetadata, s *Sealed, aad []byte) ([]byte, error) {
	if !ValidKeyID(keyID) {
		return nil, fmt.Errorf("xks: invalid external key id")
	}
	var out decryptResponse
	in := decryptRequest{RequestMetadata: &md, Ciphertext: s.Ciphertext, CiphertextMetadata: s.CiphertextMetadata,
		Algorithm: "AES_GCM", AAD: aad, Tag: s.Tag, IV: s.IV}
	if err := c.call(ctx, "/keys/"+keyID+"/decrypt", in, &out); err != nil {
		return nil, err
	}
	if len(out.Plaintext) != len(s.Ciphertext) {
		clear(out.Plaintext)
		return nil, fmt.Errorf("%w: plaintext length %d for %d bytes of ciphertext", ErrInvalidResponse, len(out.Plaintext), len(s.Ciphertext))
	}
	return out.Plaintext, nil
}

// call POSTs in as JSON to base+path, signed with SigV4, and decodes a 200
// answer into out.
func (c *Client) call(ctx context.Context, path string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	defer clear(body) // may hold plaintext (Base64)
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+path, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("xks: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	sum := sha256.Sum256(body)
	creds := aws.Credentials{AccessKeyID: c.cfg.AccessKeyID, SecretAccessKey: c.cfg.SecretAccessKey}
	if err := c.signer.SignHTTP(ctx, creds, req, hex.EncodeToString(sum[:]), SigV4Service, c.cfg.Region, time.Now()); err != nil {
		return fmt.Errorf("xks: sign: %w", err)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return transportError(ctx, err)
	}
	defer resp.Body.Close()
	rb, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return transportError(ctx, err)
	}
	defer clear(rb)
	if resp.StatusCode != http.StatusOK {
		var eb errorBody
		if json.Unmarshal(rb, &eb) != nil || errorStatus[eb.ErrorName] == 0 {
			return fmt.Errorf("%w: HTTP %d without a known errorName", ErrInvalidResponse, resp.StatusCode)
		}
		return &ProxyError{Status: resp.StatusCode, Name: eb.ErrorName, Message: printable(eb.ErrorMessage)}
	}
	if err := json.Unmarshal(rb, out); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidResponse, err)
	}
	return nil
}

// transportError classifies a failed round trip.
func transportError(ctx context.Context, err error) error {
	var netErr net.Error
	var certErr *tls.CertificateVerificationError
	var unknownCA x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var alert tls.AlertError
	var rec tls.RecordHeaderError
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded), errors.As(err, &netErr) && netErr.Timeout():
		return fmt.Errorf("%w: %v", ErrTimeout, err)
	case errors.As(err, &certErr), errors.As(err, &unknownCA), errors.As(err, &hostErr),
		errors.As(err, &alert), errors.As(err, &rec):
		return fmt.Errorf("%w: %v", ErrTLS, err)
	}
	return fmt.Errorf("%w: %v", ErrUnreachable, err)
}
