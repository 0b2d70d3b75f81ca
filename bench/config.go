package bench

import (
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// Operation names, as AWS spells them (the X-Amz-Target suffix).
const (
	OpGenerateDataKey                 = "GenerateDataKey"
	OpDecrypt                         = "Decrypt"
	OpEncrypt                         = "Encrypt"
	OpGenerateDataKeyWithoutPlaintext = "GenerateDataKeyWithoutPlaintext"
)

// ops lists the operations a Mix weighs, in Mix field and report order.
var ops = [...]string{OpGenerateDataKey, OpDecrypt, OpEncrypt, OpGenerateDataKeyWithoutPlaintext}

// Mix gives the relative weight of each operation: with {GenerateDataKey: 3,
// Decrypt: 1}, three requests in four are GenerateDataKey. The zero Mix means
// GenerateDataKey=1, Decrypt=1.
type Mix struct {
	GenerateDataKey                 int
	Decrypt                         int
	Encrypt                         int
	GenerateDataKeyWithoutPlaintext int
}

func (m Mix) weights() [len(ops)]int {
	return [len(ops)]int{m.GenerateDataKey, m.Decrypt, m.Encrypt, m.GenerateDataKeyWithoutPlaintext}
}

// String gives the Mix in ParseMix's form.
func (m Mix) String() string {
	return fmt.Sprintf("gdk=%d,decrypt=%d,encrypt=%d,gdkwp=%d",
		m.GenerateDataKey, m.Decrypt, m.Encrypt, m.GenerateDataKeyWithoutPlaintext)
}

// ParseMix parses "gdk=1,decrypt=1,encrypt=0,gdkwp=0". Names not given are 0;
// the AWS operation names are accepted too (case-insensitive).
func ParseMix(s string) (Mix, error) {
	var m Mix
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, val, ok := strings.Cut(part, "=")
		if !ok {
			return Mix{}, fmt.Errorf("bench: mix %q: want name=weight", part)
		}
		w, err := strconv.Atoi(strings.TrimSpace(val))
		if err != nil || w < 0 {
			return Mix{}, fmt.Errorf("bench: mix %q: weight must be a non-negative integer", part)
		}
		switch strings.ToLower(strings.TrimSpace(name)) {
		case "gdk", "generatedatakey":
			m.GenerateDataKey = w
		case "decrypt":
			m.Decrypt = w
		case "encrypt":
			m.Encrypt = w
		case "gdkwp", "generatedatakeywithoutplaintext":
			m.GenerateDataKeyWithoutPlaintext = w
		default:
			return Mix{}, fmt.Errorf("bench: mix %q: unknown operation (want gdk, decrypt, encrypt or gdkwp)", name)
		}
	}
	return m, nil
}

// Config describes one run. Zero values mean the defaults given on each
// field; Endpoints and KeyID are required.
type Config struct {
	// Endpoints are the base URLs requests go to ("http://127.0.0.1:4599").
	// Workers are spread over them and move to the next one on a transport
	// error or an HTTP 5xx.
	Endpoints []string
	// Region is the SigV4 signing region. Default us-east-1.
	Region string
	// Credentials signs the requests. If nil, CredentialsFile is used; if
	// that is empty too, the AWS SDK's default chain (environment, shared
	// files, ...).
	Credentials aws.CredentialsProvider
	// CredentialsFile is an AWS shared credentials file (kmsd writes one to
	// DIR/credentials); Profile selects the profile in it. Default "default".
	CredentialsFile string
	Profile         string
	// KeyID is the KMS key every request uses: key id, ARN, alias name or
	// alias ARN.
	KeyID string
	// Mix weighs the operations. Zero means GenerateDataKey=1, Decrypt=1.
	Mix Mix
	// DecryptPool is the number of distinct ciphertext blobs made before the
	// run (with GenerateDataKey) for Decrypt to choose from at random; each
	// is decrypted about (Decrypt requests / DecryptPool) times, which is the
	// reuse a Decrypt cache sees. Default 1000. Unused if Mix.Decrypt is 0.
	DecryptPool int
	// EncryptionContext is sent with every request (and must match on
	// Decrypt). Nil sends none.
	EncryptionContext map[string]string
	// PlaintextSize is the size of Encrypt's plaintext in bytes (1..4096).
	// Default 32.
	PlaintextSize int
	// Concurrency is the number of workers: in a closed loop each sends one
	// request at a time; in an open loop it bounds the requests in flight.
	// Default 64.
	Concurrency int
	// Rate, if positive, makes the run an open loop of Rate requests per
	// second with latency measured from each request's scheduled time.
	// Zero is a closed loop.
	Rate float64
	// Warmup is sent before the measurement and not recorded. Default 0.
	Warmup time.Duration
	// Duration is the measured window. Default 10s.
	Duration time.Duration
	// MaxRequests, if positive, bounds the requests sent during warm-up and
	// measurement together (the Decrypt pool's are extra).
	MaxRequests int64
	// Timeout bounds each request. Default 10s.
	Timeout time.Duration
	// Raw sends pre-signed requests over plain keep-alive connections (one
	// per worker and endpoint; answers parsed by fasthttp) instead of through the
	// AWS SDK: each distinct request (one per op, one per Decrypt pool blob)
	// is SigV4-signed once with the SDK's signer and replayed, which SigV4
	// allows within its 5-minute window. It takes the client's own cost
	// (about 150 us of CPU per SDK call) out of the measurement, so a
	// 2-core machine running client and server measures the server. Runs
	// are limited to 4 minutes of warm-up plus duration.
	Raw bool
	// Progress, if not nil, gets one line per second (and one for the last
	// partial second): elapsed time, requests per second and errors in that
	// interval, warm-up included and marked.
	Progress io.Writer
}

// Defaults.
const (
	DefaultRegion        = "us-east-1"
	DefaultDecryptPool   = 1000
	DefaultPlaintextSize = 32
	DefaultConcurrency   = 64
	DefaultDuration      = 10 * time.Second
	DefaultTimeout       = 10 * time.Second
)

// withDefaults returns c with its zero values replaced by the defaults.
func (c Config) withDefaults() Config {
	if c.Region == "" {
		c.Region = DefaultRegion
	}
	if c.Profile == "" {
		c.Profile = "default"
	}
	if c.Mix == (Mix{}) {
		c.Mix = Mix{GenerateDataKey: 1, Decrypt: 1}
	}
	if c.DecryptPool == 0 {
		c.DecryptPool = DefaultDecryptPool
	}
	if c.PlaintextSize == 0 {
		c.PlaintextSize = DefaultPlaintextSize
	}
	if c.Concurrency == 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.Duration == 0 {
		c.Duration = DefaultDuration
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	return c
}

// Validate reports the first field of c (after defaults) that cannot be
// used, naming it.
func (c Config) Validate() error {
	c = c.withDefaults()
	if len(c.Endpoints) == 0 {
		return fmt.Errorf("bench: Config.Endpoints: at least one endpoint is required")
	}
	for _, e := range c.Endpoints {
		u, err := url.Parse(e)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("bench: Config.Endpoints: %q is not an http(s) URL", e)
		}
	}
	if c.KeyID == "" {
		return fmt.Errorf("bench: Config.KeyID: a key is required")
	}
	for _, w := range c.Mix.weights() {
		if w < 0 {
			return fmt.Errorf("bench: Config.Mix: weights must not be negative (%s)", c.Mix)
		}
	}
	if c.DecryptPool < 0 {
		return fmt.Errorf("bench: Config.DecryptPool: %d is negative", c.DecryptPool)
	}
	if c.PlaintextSize < 1 || c.PlaintextSize > 4096 {
		return fmt.Errorf("bench: Config.PlaintextSize: %d is outside 1..4096", c.PlaintextSize)
	}
	if c.Concurrency < 0 {
		return fmt.Errorf("bench: Config.Concurrency: %d is negative", c.Concurrency)
	}
	if c.Rate < 0 {
		return fmt.Errorf("bench: Config.Rate: %g is negative", c.Rate)
	}
	if c.Warmup < 0 {
		return fmt.Errorf("bench: Config.Warmup: %v is negative", c.Warmup)
	}
	if c.Duration < 0 {
		return fmt.Errorf("bench: Config.Duration: %v is negative", c.Duration)
	}
	if c.MaxRequests < 0 {
		return fmt.Errorf("bench: Config.MaxRequests: %d is negative", c.MaxRequests)
	}
	if c.Timeout < 0 {
		return fmt.Errorf("bench: Config.Timeout: %v is negative", c.Timeout)
	}
	if c.Raw && c.Warmup+c.Duration > 4*time.Minute {
		return fmt.Errorf("bench: Config.Raw: pre-signed requests expire after 5 minutes; Warmup+Duration %v is over 4m", c.Warmup+c.Duration)
	}
	return nil
}
