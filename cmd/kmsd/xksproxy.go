package main

import (
	"context"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/kmsd/kmsd/agent"
	"github.com/kmsd/kmsd/hsmpool"
	"github.com/kmsd/kmsd/xks"
)

const xksUsage = `usage: kmsd xks-proxy [flags]                    serve the XKS Proxy API over HTTPS
       kmsd xks-proxy create-key --label ID [flags]  make an external key, print its id
       kmsd xks-proxy delete-key --label ID [flags]  destroy an external key
`

// runXKSProxy is `kmsd xks-proxy`: an XKS proxy over a PKCS#11 token.
func runXKSProxy(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	sub := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		sub, args = args[0], args[1:]
	}
	var c serveConfig
	var listen, label, prefix, certFile, keyFile, hosts, region string
	fs := flag.NewFlagSet("kmsd xks-proxy", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, xksUsage); fs.PrintDefaults() }
	fs.StringVar(&listen, "listen", "127.0.0.1:4443", "`address` to serve HTTPS on")
	fs.StringVar(&c.dataDir, "data-dir", "./xks-data", "`directory` for the token (unless --pkcs11-lib), tls.crt/tls.key and xks-credentials")
	fs.StringVar(&c.pkcs11Lib, "pkcs11-lib", "", "PKCS#11 module `path` of an existing HSM; empty = a SoftHSM2 token under --data-dir")
	fs.IntVar(&c.pkcs11Slot, "pkcs11-slot", -1, "PKCS#11 slot `id` (with --pkcs11-lib); -1 = select by --pkcs11-token-label")
	fs.StringVar(&c.tokenLabel, "pkcs11-token-label", "kmsd-xks", "PKCS#11 token `label`")
	fs.StringVar(&c.pinFile, "pkcs11-pin-file", "", "`file` holding the user PIN (with --pkcs11-lib)")
	fs.StringVar(&c.pinEnv, "pkcs11-pin-env", "KMSD_PKCS11_PIN", "environment `variable` holding the user PIN (with --pkcs11-lib)")
	fs.IntVar(&c.hsmSessions, "hsm-sessions", 4, "PKCS#11 sessions in the pool")
	fs.StringVar(&region, "region", "us-east-1", "the calling KMS's `region` (the only one accepted in SigV4 scopes)")
	fs.StringVar(&prefix, "path-prefix", "", "optional `path` before /kms/xks/v1 (XksProxyUriPath = PREFIX/kms/xks/v1)")
	fs.StringVar(&certFile, "tls-cert", "", "PEM certificate `file`; default DIR/tls.crt, self-signed and written there if absent")
	fs.StringVar(&keyFile, "tls-key", "", "PEM key `file`; default DIR/tls.key")
	fs.StringVar(&hosts, "tls-hosts", "localhost,127.0.0.1", "comma-separated DNS names and IPs the self-signed certificate names")
	fs.StringVar(&label, "label", "", "external key `id` (create-key, delete-key): 1-128 of A-Z a-z 0-9 - . _")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if err := os.MkdirAll(c.dataDir, 0o700); err != nil {
		fmt.Fprintln(stderr, "kmsd xks-proxy:", err)
		return 1
	}
	hcfg, err := hsmConfig(c, c.dataDir)
	if err != nil {
		fmt.Fprintln(stderr, "kmsd xks-proxy:", err)
		return 1
	}
	pool, err := hsmpool.New(hcfg)
	if err != nil {
		fmt.Fprintln(stderr, "kmsd xks-proxy:", err)
		return 1
	}
	defer pool.Close()
	keys := xks.NewTokenKeys(pool)
	switch sub {
	case "create-key", "delete-key":
		if !xks.ValidKeyID(label) {
			fmt.Fprintln(stderr, "kmsd xks-proxy: --label must be 1-128 of A-Z a-z 0-9 - . _")
			return 2
		}
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if sub == "create-key" {
			err = keys.Create(cctx, label)
		} else {
			err = keys.Delete(cctx, label)
		}
		if err != nil {
			fmt.Fprintln(stderr, "kmsd xks-proxy:", err)
			return 1
		}
		if sub == "create-key" {
			fmt.Fprintln(stdout, label)
		}
		return 0
	case "serve":
	default:
		fmt.Fprintf(stderr, "kmsd xks-proxy: unknown command %q\n%s", sub, xksUsage)
		return 2
	}
	return serveXKS(ctx, keys, c.dataDir, listen, region, prefix, certFile, keyFile, hosts, stdout, stderr)
}

func serveXKS(ctx context.Context, keys *xks.TokenKeys, dir, listen, region, prefix, certFile, keyFile, hosts string, stdout, stderr io.Writer) int {
	log := slog.New(slog.NewJSONHandler(stderr, nil))
	credPath := filepath.Join(dir, "xks-credentials")
	if _, err := os.Stat(credPath); errors.Is(err, os.ErrNotExist) {
		id, secret := xks.NewCredential()
		if err := xks.WriteCredentials(credPath, id, secret); err != nil {
			fmt.Fprintln(stderr, "kmsd xks-proxy:", err)
			return 1
		}
	}
	creds, err := xks.ReadCredentials(credPath)
	if err != nil {
		fmt.Fprintln(stderr, "kmsd xks-proxy:", err)
		return 1
	}
	if certFile == "" {
		certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	}
	cert, err := xks.SelfSignedCert(certFile, keyFile, strings.Split(hosts, ","))
	if err != nil {
		fmt.Fprintln(stderr, "kmsd xks-proxy: TLS certificate:", err)
		return 1
	}
	srv, err := xks.NewServer(xks.ServerConfig{Keys: keys, Region: region, PathPrefix: prefix, Credentials: creds, Logger: log})
	if err != nil {
		fmt.Fprintln(stderr, "kmsd xks-proxy:", err)
		return 1
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err = srv.EnsureHealthKey(cctx)
	cancel()
	if err != nil {
		fmt.Fprintln(stderr, "kmsd xks-proxy: health-check key:", err)
		return 1
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		fmt.Fprintln(stderr, "kmsd xks-proxy:", err)
		return 1
	}
	fmt.Fprintf(stdout, "kmsd xks-proxy: serving https://%s%s/kms/xks/v1 (certificate %s, credentials %s)\n", ln.Addr(), prefix, certFile, credPath)
	// SIGHUP re-reads the credentials file (rotation without a restart).
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln, xks.TLSConfig(cert)) }()
	for {
		select {
		case <-hup:
			if c, err := xks.ReadCredentials(credPath); err != nil {
				log.Error("xks: credentials not reloaded", "err", err)
			} else if err := srv.SetCredentials(c); err != nil {
				log.Error("xks: credentials not reloaded", "err", err)
			} else {
				log.Info("xks: credentials reloaded", "count", len(c))
			}
		case err := <-errc:
			fmt.Fprintln(stderr, "kmsd xks-proxy:", err)
			return 1
		case <-ctx.Done():
			sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = srv.Shutdown(sctx)
			return 0
		}
	}
}

// hsmStoreFlag collects --hsm-store values.
type hsmStoreFlag []string

func (f *hsmStoreFlag) String() string     { return strings.Join(*f, ",") }
func (f *hsmStoreFlag) Set(v string) error { *f = append(*f, v); return nil }

// customStoreConfig fills the custom key store settings of the agent's
// config from --xks-ca-file, --xks-timeout and --hsm-store.
func customStoreConfig(c serveConfig, acfg *agent.Config) error {
	acfg.XKSTimeout, acfg.XKSSharedKeys = c.xksTimeout, c.xksShared
	if c.xksCAFile != "" {
		pem, err := os.ReadFile(c.xksCAFile)
		if err != nil {
			return fmt.Errorf("--xks-ca-file: %w", err)
		}
		roots, err := x509.SystemCertPool()
		if err != nil || roots == nil {
			roots = x509.NewCertPool()
		}
		if !roots.AppendCertsFromPEM(pem) {
			return fmt.Errorf("--xks-ca-file: %s holds no PEM certificate", c.xksCAFile)
		}
		acfg.XKSRootCAs = roots
	}
	for _, v := range c.hsmStores {
		id, rest, ok := strings.Cut(v, "=")
		parts := strings.Split(rest, ":")
		if !ok || id == "" || len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
			return fmt.Errorf("--hsm-store %q: want CLUSTER_ID=LIB:TOKEN_LABEL[:TRUST_ANCHOR_PEM]", v)
		}
		hc := agent.HSMStoreConfig{Lib: parts[0], TokenLabel: parts[1]}
		if len(parts) == 3 {
			pem, err := os.ReadFile(parts[2])
			if err != nil {
				return fmt.Errorf("--hsm-store %s: %w", id, err)
			}
			hc.TrustAnchorPEM = string(pem)
		}
		if acfg.HSMStores == nil {
			acfg.HSMStores = map[string]agent.HSMStoreConfig{}
		}
		acfg.HSMStores[id] = hc
	}
	return nil
}
