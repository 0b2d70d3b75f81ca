package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kms"

	"github.com/kmsd/kmsd/kmsplugin"
)

// pluginConfig is what `kmsd k8s-kms-plugin` is told by its flags.
type pluginConfig struct {
	socket      string
	endpoint    string
	key         string
	credentials string
	profile     string
	region      string
	keyIDTTL    time.Duration
	logLevel    string
}

func newPluginFlags(c *pluginConfig, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("kmsd k8s-kms-plugin", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.socket, "socket", "/var/run/kmsd/kms.sock", "unix socket `path` the kube-apiserver dials (EncryptionConfiguration endpoint unix://PATH)")
	fs.StringVar(&c.endpoint, "endpoint", "http://127.0.0.1:4599", "`URL` of the KMS API (any kmsd node, or its Service)")
	fs.StringVar(&c.key, "key", "", "KMS `key` that encrypts the apiserver's DEKs: key id, key ARN, alias name or alias ARN (required)")
	fs.StringVar(&c.credentials, "credentials", "", "AWS shared credentials `file` (kmsd writes DATA-DIR/credentials); empty = the AWS SDK's default chain")
	fs.StringVar(&c.profile, "profile", "default", "`profile` in --credentials")
	fs.StringVar(&c.region, "region", "us-east-1", "`region` of the endpoint (its SigV4 scope)")
	fs.DurationVar(&c.keyIDTTL, "key-id-ttl", kmsplugin.DefaultKeyIDTTL, "how long Encrypt reuses the key's current material id before asking DescribeKey again")
	fs.StringVar(&c.logLevel, "log-level", "info", "log `level`: debug, info, warn, error")
	return fs
}

// runPlugin is `kmsd k8s-kms-plugin`: it serves the Kubernetes KMS v2 gRPC
// API on a unix socket, backed by a key of a KMS endpoint, until ctx ends.
func runPlugin(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var c pluginConfig
	fs := newPluginFlags(&c, stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "kmsd k8s-kms-plugin: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if c.key == "" {
		fmt.Fprintln(stderr, "kmsd k8s-kms-plugin: --key is required")
		return 2
	}
	if err := servePlugin(ctx, c, stdout, stderr); err != nil {
		fmt.Fprintf(stderr, "kmsd k8s-kms-plugin: %v\n", err)
		return 1
	}
	return 0
}

func servePlugin(ctx context.Context, c pluginConfig, stdout, stderr io.Writer) error {
	log, err := newLogger(c.logLevel, stderr)
	if err != nil {
		return err
	}
	client, err := newKMSClient(ctx, c)
	if err != nil {
		return err
	}
	p, err := kmsplugin.New(kmsplugin.Config{KMS: client, KeyID: c.key, KeyIDTTL: c.keyIDTTL, Logger: log})
	if err != nil {
		return err
	}
	ln, err := kmsplugin.Listen(c.socket)
	if err != nil {
		return fmt.Errorf("--socket: %w", err)
	}
	srv := p.GRPCServer()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	fmt.Fprintf(stdout, "kmsd: serving the Kubernetes KMS v2 API on unix://%s (key %s at %s)\n", c.socket, c.key, c.endpoint)

	// One status at start, logged only: the endpoint may come up later,
	// and the apiserver polls Status itself.
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	if st, _ := p.Status(sctx); st.Healthz == "ok" {
		log.Info("kms endpoint healthy", "key_id", st.KeyID)
	}
	cancel()

	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	// Let in-flight calls finish, but not for ever.
	stopped := make(chan struct{})
	go func() { srv.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		srv.Stop()
	}
	<-errc
	return nil
}

// newKMSClient builds the AWS SDK client for the endpoint. With
// --credentials only that file's profile is used, so keys in the
// environment cannot win over it.
func newKMSClient(ctx context.Context, c pluginConfig) (*kms.Client, error) {
	opts := []func(*config.LoadOptions) error{
		config.WithRegion(c.region),
		// Buildable, so that the SDK can still apply AWS_CA_BUNDLE.
		config.WithHTTPClient(awshttp.NewBuildableClient().WithTimeout(30 * time.Second)),
	}
	if c.credentials != "" {
		sc, err := config.LoadSharedConfigProfile(ctx, c.profile, func(o *config.LoadSharedConfigOptions) {
			o.CredentialsFiles = []string{c.credentials}
			o.ConfigFiles = []string{}
		})
		if err != nil {
			return nil, fmt.Errorf("--credentials: %w", err)
		}
		if !sc.Credentials.HasKeys() {
			return nil, fmt.Errorf("--credentials: profile %q in %s has no access key", c.profile, c.credentials)
		}
		opts = append(opts, config.WithCredentialsProvider(credentials.StaticCredentialsProvider{Value: sc.Credentials}))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("loading AWS config: %w", err)
	}
	return kms.NewFromConfig(cfg, func(o *kms.Options) { o.BaseEndpoint = aws.String(c.endpoint) }), nil
}

// healthcheckConfig is what `kmsd healthcheck` is told by its flags.
type healthcheckConfig struct {
	url     string
	ready   bool
	timeout time.Duration
}

func newHealthcheckFlags(c *healthcheckConfig, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("kmsd healthcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.url, "url", "http://127.0.0.1:4599", "base `URL` of the node (its --listen address)")
	fs.BoolVar(&c.ready, "ready", false, "check /readyz (raft state, credentials, HSM) instead of /healthz (process up)")
	fs.DurationVar(&c.timeout, "timeout", 2*time.Second, "how long to wait for the answer")
	return fs
}

// runHealthcheck is `kmsd healthcheck`: GET URL/healthz (or /readyz with
// --ready) and exit 0 on 200, 1 otherwise, including on bad flags (exit 2
// is reserved by Docker's HEALTHCHECK). It exists for container probes and
// HEALTHCHECK: the runtime image has no curl, and a node listening on
// 127.0.0.1 inside a pod cannot be probed by the kubelet's httpGet.
func runHealthcheck(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var c healthcheckConfig
	fs := newHealthcheckFlags(&c, stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 1
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "kmsd healthcheck: unexpected argument %q\n", fs.Arg(0))
		return 1
	}
	path := "/healthz"
	if c.ready {
		path = "/readyz"
	}
	u := strings.TrimRight(c.url, "/") + path
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		fmt.Fprintf(stderr, "kmsd healthcheck: %v\n", err)
		return 1
	}
	// No proxy: probes target the node itself.
	hc := &http.Client{Transport: &http.Transport{Proxy: nil}}
	resp, err := hc.Do(req)
	if err != nil {
		fmt.Fprintf(stderr, "kmsd healthcheck: %v\n", err)
		return 1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "kmsd healthcheck: %s: %s %s\n", u, resp.Status, strings.TrimSpace(string(body)))
		return 1
	}
	fmt.Fprintf(stdout, "%s: %s\n", u, strings.TrimSpace(string(body)))
	return 0
}
