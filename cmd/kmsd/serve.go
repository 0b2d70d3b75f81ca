package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/kmsd/kmsd/agent"
	"github.com/kmsd/kmsd/agent/audit"
	"github.com/kmsd/kmsd/cache"
	"github.com/kmsd/kmsd/cluster"
	"github.com/kmsd/kmsd/hsmpool"
	"github.com/kmsd/kmsd/quota"
)

// serveConfig is what `kmsd serve` is told by its flags and environment.
type serveConfig struct {
	listen       string
	dataDir      string
	region       string
	accountID    string
	nodeID       string
	pkcs11Lib    string
	pkcs11Slot   int
	tokenLabel   string
	pinFile      string
	pinEnv       string
	hsmSessions  int
	maxKeys      int
	clusterAddr  string
	clusterAdv   string
	apiAdvertise string
	bootstrap    bool
	join         string
	joinCreds    string
	tlsCert      string
	tlsKey       string
	tlsCA        string
	k8sSocket    string
	k8sKey       string
	maxBatch     int
	quotaSym     float64
	quotasOff    bool
	quotas       quotaFlags
	cacheTTL     time.Duration
	cacheUses    int
	cacheBytes   int64
	logLevel     string
	readyTimeout time.Duration
	auditDir     string
	auditOnFull  string
	auditFileMB  int
	auditFiles   int
	auditOff     bool
	// Custom key stores (xksproxy.go customStoreConfig).
	xksCAFile   string
	xksTimeout  time.Duration
	hsmStores   hsmStoreFlag
	xksShared   bool
	peerRegions regionMap // peers.go
	peerCreds   regionMap
}

func newServeFlags(c *serveConfig, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("kmsd serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.listen, "listen", "127.0.0.1:4599", "`address` to serve the KMS API, /healthz and /readyz on")
	fs.StringVar(&c.dataDir, "data-dir", "./data", "`directory` for everything the node writes (HSM token, raft data, credentials)")
	fs.StringVar(&c.region, "region", "us-east-1", "AWS `region` name this node serves (used in ARNs and SigV4 scopes)")
	fs.StringVar(&c.accountID, "account-id", "111122223333", "12-digit AWS account `id` used in ARNs")
	fs.StringVar(&c.nodeID, "node-id", "node1", "raft node `id`")
	fs.StringVar(&c.pkcs11Lib, "pkcs11-lib", "", "PKCS#11 module `path` of an existing HSM; empty = a SoftHSM2 token kmsd creates under --data-dir")
	fs.IntVar(&c.pkcs11Slot, "pkcs11-slot", -1, "PKCS#11 slot `id` (with --pkcs11-lib); -1 = select by --pkcs11-token-label")
	fs.StringVar(&c.tokenLabel, "pkcs11-token-label", "kmsd", "PKCS#11 token `label`")
	fs.StringVar(&c.pinFile, "pkcs11-pin-file", "", "`file` holding the user PIN (with --pkcs11-lib)")
	fs.StringVar(&c.pinEnv, "pkcs11-pin-env", "KMSD_PKCS11_PIN", "environment `variable` holding the user PIN when no --pkcs11-pin-file (with --pkcs11-lib)")
	fs.IntVar(&c.hsmSessions, "hsm-sessions", 4, "PKCS#11 sessions in the pool")
	fs.IntVar(&c.maxBatch, "max-batch", 64, "most requests one HSM operation serves; 1 turns batching off")
	fs.Float64Var(&c.quotaSym, "quota-symmetric", 0, "shared symmetric cryptographic quota in requests/s; 0 = AWS's default for --region, -1 = unlimited")
	fs.Var(&c.quotas, "quota", "`GROUP=RPS`: the account's rate for one quota group (symmetric, rsa, ecc, sm, gdkp:<KeyPairSpec>, op:<Operation>, e.g. op:CreateKey=10); repeatable; -1 = unlimited")
	fs.BoolVar(&c.quotasOff, "no-quotas", false, "turn request quotas off (raw capacity benchmarks)")
	fs.DurationVar(&c.cacheTTL, "decrypt-cache-ttl", time.Minute, "how long an unwrapped batch key may serve Decrypts without the HSM; 0 turns the cache off")
	fs.IntVar(&c.cacheUses, "decrypt-cache-max-uses", 10000, "Decrypts one cached batch key may serve (0 = unlimited)")
	fs.Int64Var(&c.cacheBytes, "decrypt-cache-bytes", 64<<20, "memory bound of the decrypt cache in bytes")
	fs.StringVar(&c.clusterAddr, "cluster-addr", "", "raft `address` to listen on for other nodes (empty = a cluster of one, no raft listener)")
	fs.StringVar(&c.clusterAdv, "cluster-advertise", "", "raft `address` other nodes dial (default: --cluster-addr)")
	fs.StringVar(&c.apiAdvertise, "api-advertise", "", "`URL` other nodes reach this node's API at (default: http://<listen address>)")
	fs.BoolVar(&c.bootstrap, "bootstrap", false, "make this node the first voter of a new cluster (ignored when the data dir holds raft state)")
	fs.StringVar(&c.join, "join", "", "API `URL`s (comma-separated) of members to join through (ignored when the data dir holds raft state)")
	fs.StringVar(&c.joinCreds, "join-credentials", "", "AWS credentials `file` of the cluster's account root, used to join (default: DIR/credentials)")
	fs.StringVar(&c.tlsCert, "cluster-tls-cert", "", "PEM `file`: this node's certificate for mutual TLS between nodes")
	fs.StringVar(&c.tlsKey, "cluster-tls-key", "", "PEM `file`: its private key")
	fs.StringVar(&c.tlsCA, "cluster-tls-ca", "", "PEM `file`: the CA that signs every node's certificate (and nothing else)")
	fs.StringVar(&c.k8sSocket, "k8s-kms-socket", "", "also serve the Kubernetes KMS v2 API on this unix socket `path` (see kmsd k8s-kms-plugin)")
	fs.StringVar(&c.k8sKey, "k8s-kms-key", "", "KMS `key` (id, ARN or alias) the Kubernetes KMS v2 API encrypts with; required with --k8s-kms-socket")
	fs.IntVar(&c.maxKeys, "max-keys", 100000, "quota of KMS keys in the account (LimitExceededException beyond it)")
	fs.StringVar(&c.logLevel, "log-level", "info", "log `level`: debug, info, warn, error")
	fs.DurationVar(&c.readyTimeout, "ready-timeout", 30*time.Second, "how long to wait for raft and the HSM at start")
	fs.StringVar(&c.auditDir, "audit-dir", "", "`directory` of the audit log (one CloudTrail-shaped JSON line per request); default DIR/audit")
	fs.StringVar(&c.auditOnFull, "audit-on-full", "drop", "when the audit log cannot keep up (slow or full disk): drop (count in kmsd_audit_dropped_total) or block (requests wait)")
	fs.IntVar(&c.auditFileMB, "audit-max-file-mb", 100, "rotate the audit log file at this size in MiB")
	fs.IntVar(&c.auditFiles, "audit-max-files", 10, "rotated audit log files kept")
	fs.BoolVar(&c.auditOff, "no-audit", false, "write no audit log")
	fs.StringVar(&c.xksCAFile, "xks-ca-file", "", "PEM `file` of extra CAs that external key store proxies' certificates may chain to (e.g. a kmsd xks-proxy's DIR/tls.crt)")
	fs.DurationVar(&c.xksTimeout, "xks-timeout", 250*time.Millisecond, "how long each call to an external key store proxy may take")
	fs.BoolVar(&c.xksShared, "xks-shared-external-keys", false, "let one external key back several KMS keys of an external key store (Alibaba Cloud's HYOK model; AWS refuses it)")
	fs.Var(&c.hsmStores, "hsm-store", "`CLUSTER_ID=LIB:TOKEN_LABEL[:TRUST_ANCHOR_PEM]`: a PKCS#11 token AWS_CLOUDHSM key stores may use under CloudHsmClusterId CLUSTER_ID (repeatable)")
	fs.Var(&c.peerRegions, "peer-region", "`REGION=URL` of another kmsd cluster that multi-Region keys replicate to (repeatable)")
	fs.Var(&c.peerCreds, "peer-credentials", "`REGION=FILE`: AWS shared credentials file of that peer's account root (repeatable)")
	return fs
}

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var c serveConfig
	fs := newServeFlags(&c, stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "kmsd serve: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	known := quota.DefaultRates(c.region)
	for g := range c.quotas {
		if _, ok := known[g]; !ok {
			fmt.Fprintf(stderr, "kmsd serve: --quota %s: no such quota group (symmetric, rsa, ecc, sm, gdkp:<KeyPairSpec>, op:<Operation>)\n", g)
			return 2
		}
	}
	if err := serve(ctx, c, stdout, stderr); err != nil {
		fmt.Fprintf(stderr, "kmsd: %v\n", err)
		return 1
	}
	return 0
}

func newLogger(level string, w io.Writer) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: %w", level, err)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}

// serve wires the node in dependency order (HSM, raft, API), serves until
// ctx ends, and closes everything in reverse order.
func serve(ctx context.Context, c serveConfig, stdout, stderr io.Writer) error {
	log, err := newLogger(c.logLevel, stderr)
	if err != nil {
		return err
	}
	if c.clusterAddr == "" && (c.bootstrap || c.join != "") {
		return errors.New("--bootstrap and --join need --cluster-addr")
	}
	if (c.k8sSocket == "") != (c.k8sKey == "") {
		return errors.New("--k8s-kms-socket and --k8s-kms-key go together")
	}
	dir, err := filepath.Abs(c.dataDir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("--data-dir: %w", err)
	}

	hcfg, err := hsmConfig(c, dir)
	if err != nil {
		return err
	}
	pool, err := hsmpool.New(hcfg)
	if err != nil {
		return fmt.Errorf("hsm: %w", err)
	}
	defer pool.Close()
	initCtx, cancel := context.WithTimeout(ctx, c.readyTimeout)
	defer cancel()

	ccfg := cluster.Config{NodeID: c.nodeID, DataDir: dir, Bootstrap: true, LogOutput: stderr}
	if c.clusterAddr != "" {
		tlsCfg, err := cluster.TLSFiles{CertFile: c.tlsCert, KeyFile: c.tlsKey, CAFile: c.tlsCA}.Load()
		if err != nil {
			return fmt.Errorf("--cluster-tls-*: %w", err)
		}
		ccfg.BindAddr, ccfg.Advertise, ccfg.TLS, ccfg.Bootstrap = c.clusterAddr, c.clusterAdv, tlsCfg, c.bootstrap
	}
	node, err := cluster.New(ccfg)
	if err != nil {
		return err
	}
	defer node.Close()
	joining := !node.HasState() && c.join != ""
	if !joining { // a joiner gets the cluster's domain key with the join
		created, err := pool.EnsureDomainKey(initCtx)
		if err != nil {
			return fmt.Errorf("hsm domain key: %w", err)
		}
		if created {
			log.Info("created HSM domain key", "token", hcfg.TokenLabel)
		}
	}

	ln, err := net.Listen("tcp", c.listen)
	if err != nil {
		return fmt.Errorf("--listen: %w", err)
	}
	url := "http://" + ln.Addr().String()
	apiURL := ""
	if c.clusterAddr != "" {
		apiURL = url
		if c.apiAdvertise != "" {
			apiURL = c.apiAdvertise
		}
	}

	acfg := agent.Config{Region: c.region, AccountID: c.accountID, Node: node, Pool: pool, Logger: log,
		MaxKeys: c.maxKeys, MaxBatch: c.maxBatch, DisableQuotas: c.quotasOff, APIURL: apiURL,
		DecryptCache: cache.Config{MaxAge: c.cacheTTL, MaxUses: c.cacheUses, MaxBytes: c.cacheBytes}}
	if acfg.Peers, err = c.peers(); err != nil {
		return err
	}
	if err := customStoreConfig(c, &acfg); err != nil {
		return err
	}
	if c.quotaSym != 0 || len(c.quotas) > 0 {
		acfg.Quotas.Rates = map[quota.Group]float64{}
		if c.quotaSym != 0 {
			acfg.Quotas.Rates[quota.Symmetric] = c.quotaSym
		}
		for g, r := range c.quotas {
			acfg.Quotas.Rates[g] = r
		}
	}
	if !c.auditOff {
		acfg.Audit, err = openAudit(c, dir)
		if err != nil {
			return err
		}
		defer acfg.Audit.Close() // after the server stopped taking requests
	}
	srv, err := agent.New(acfg)
	if err != nil {
		return err
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }() // /healthz answers at once; /readyz once Init is done
	credFile := filepath.Join(dir, "credentials")
	if joining {
		credsPath := c.joinCreds
		if credsPath == "" {
			credsPath = credFile
		}
		if err := joinCluster(initCtx, c, node, pool, apiURL, credsPath, log); err != nil {
			srv.Shutdown()
			return err
		}
	}
	admin, err := srv.Init(initCtx)
	if err != nil {
		srv.Shutdown()
		return fmt.Errorf("init: %w", err)
	}
	if err := writeCredentials(credFile, admin, c.region); err != nil {
		srv.Shutdown()
		return err
	}

	fmt.Fprintf(stdout, "kmsd: serving the AWS KMS API on %s (region %s, account %s)\n", url, c.region, c.accountID)
	fmt.Fprintf(stdout, "kmsd: credentials: export AWS_SHARED_CREDENTIALS_FILE=%s\n", credFile)
	fmt.Fprintf(stdout, "kmsd: try: AWS_SHARED_CREDENTIALS_FILE=%s aws kms create-key --region %s --endpoint-url %s\n", credFile, c.region, url)

	timerCtx, stopTimers := context.WithCancel(ctx)
	timersDone := make(chan struct{})
	go func() { srv.RunTimers(timerCtx, time.Second); close(timersDone) }()
	defer func() { stopTimers(); <-timersDone }()

	pluginDone := make(chan struct{})
	if c.k8sSocket != "" {
		// The KMS v2 plugin calls this node's own API, like any client.
		pc := pluginConfig{socket: c.k8sSocket, endpoint: url, key: c.k8sKey, credentials: credFile,
			profile: "default", region: c.region, keyIDTTL: 10 * time.Second, logLevel: c.logLevel}
		go func() {
			defer close(pluginDone)
			if err := servePlugin(ctx, pc, stdout, stderr); err != nil {
				log.Error("kubernetes KMS v2 plugin stopped", "err", err)
			}
		}()
	} else {
		close(pluginDone)
	}
	defer func() { <-pluginDone }()

	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down")
	if err := srv.Shutdown(); err != nil {
		return err
	}
	return <-errc
}

// hsmConfig selects the HSM: an existing PKCS#11 token when --pkcs11-lib
// is set, otherwise a SoftHSM2 token that kmsd creates and owns under
// DIR/hsm (its PIN in DIR/hsm/pin, mode 0600).
func hsmConfig(c serveConfig, dir string) (hsmpool.Config, error) {
	cfg := hsmpool.Config{TokenLabel: c.tokenLabel, Sessions: c.hsmSessions}
	if c.pkcs11Lib != "" {
		cfg.Lib = c.pkcs11Lib
		if c.pkcs11Slot >= 0 {
			cfg.Slot, cfg.SlotSet = uint(c.pkcs11Slot), true
		}
		switch {
		case c.pinFile != "":
			b, err := os.ReadFile(c.pinFile)
			if err != nil {
				return cfg, fmt.Errorf("--pkcs11-pin-file: %w", err)
			}
			cfg.PIN = strings.TrimSpace(string(b))
		case os.Getenv(c.pinEnv) != "":
			cfg.PIN = os.Getenv(c.pinEnv)
		default:
			return cfg, fmt.Errorf("--pkcs11-lib needs a PIN: set --pkcs11-pin-file or $%s", c.pinEnv)
		}
		return cfg, cfg.Validate()
	}

	lib, err := hsmpool.FindSoftHSM()
	if err != nil {
		return cfg, fmt.Errorf("%w (install the softhsm2 package, or pass --pkcs11-lib)", err)
	}
	cfg.Lib = lib
	hsmDir := filepath.Join(dir, "hsm")
	conf, err := hsmpool.WriteSoftHSMConfig(hsmDir)
	if err != nil {
		return cfg, err
	}
	// SoftHSM2 reads its config once per process, at C_Initialize.
	if cur := os.Getenv("SOFTHSM2_CONF"); cur != "" && cur != conf {
		return cfg, fmt.Errorf("SOFTHSM2_CONF is %s, but this node's token lives in %s: unset it or pass --pkcs11-lib", cur, conf)
	}
	if err := os.Setenv("SOFTHSM2_CONF", conf); err != nil {
		return cfg, err
	}
	pinPath := filepath.Join(hsmDir, "pin")
	pin, err := os.ReadFile(pinPath)
	switch {
	case errors.Is(err, os.ErrNotExist):
		pin = []byte(randomHex(16))
		if err := writeFileAtomic(pinPath, pin, 0o600); err != nil {
			return cfg, err
		}
	case err != nil:
		return cfg, err
	}
	cfg.PIN = strings.TrimSpace(string(pin))
	exists, err := hsmpool.TokenExists(lib, c.tokenLabel)
	if err != nil {
		return cfg, err
	}
	if !exists {
		so := randomHex(16) // the SO PIN is not kept: kmsd never needs it again
		if err := hsmpool.InitToken(lib, c.tokenLabel, so, cfg.PIN); err != nil {
			return cfg, fmt.Errorf("init SoftHSM2 token: %w", err)
		}
	}
	return cfg, cfg.Validate()
}

// joinCluster asks the members named by --join to add this node, until one
// accepts or ctx ends.
func joinCluster(ctx context.Context, c serveConfig, node *cluster.Node, pool *hsmpool.Pool, apiURL, credsPath string, log *slog.Logger) error {
	key, err := readCredentials(credsPath)
	if err != nil {
		return fmt.Errorf("--join-credentials: %w", err)
	}
	var last error
	for attempt := 0; ; attempt++ {
		for _, u := range strings.Split(c.join, ",") {
			if u = strings.TrimSpace(u); u == "" {
				continue
			}
			if last = agent.Join(ctx, u, c.region, key, node, pool, apiURL); last == nil {
				log.Info("joined the cluster", "via", u)
				return nil
			}
			log.Warn("join failed, retrying", "via", u, "err", last)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("--join: %w (last error: %v)", ctx.Err(), last)
		case <-time.After(time.Duration(min(attempt+1, 10)) * 200 * time.Millisecond):
		}
	}
}

// readCredentials reads the [default] profile of an AWS shared
// credentials file.
func readCredentials(path string) (agent.AccessKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return agent.AccessKey{}, err
	}
	var k agent.AccessKey
	section := ""
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]") {
			section = strings.TrimSpace(line[1 : len(line)-1])
			continue
		}
		name, val, ok := strings.Cut(line, "=")
		if !ok || section != "default" {
			continue
		}
		switch strings.TrimSpace(name) {
		case "aws_access_key_id":
			k.ID = strings.TrimSpace(val)
		case "aws_secret_access_key":
			k.Secret = strings.TrimSpace(val)
		}
	}
	if k.ID == "" || k.Secret == "" {
		return k, fmt.Errorf("%s has no [default] aws_access_key_id and aws_secret_access_key", path)
	}
	return k, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// writeCredentials writes an AWS shared credentials file for the admin
// access key (mode 0600), replacing it atomically.
func writeCredentials(path string, k agent.AccessKey, region string) error {
	body := fmt.Sprintf("[default]\naws_access_key_id = %s\naws_secret_access_key = %s\nregion = %s\n", k.ID, k.Secret, region)
	return writeFileAtomic(path, []byte(body), 0o600)
}

func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// openAudit opens the node's audit log as the --audit-* flags say.
func openAudit(c serveConfig, dataDir string) (*audit.Logger, error) {
	acfg := audit.Config{Dir: c.auditDir, MaxFileBytes: int64(c.auditFileMB) << 20, MaxFiles: c.auditFiles}
	if acfg.Dir == "" {
		acfg.Dir = filepath.Join(dataDir, "audit")
	}
	var err error
	if acfg.OnFull, err = audit.ParsePolicy(c.auditOnFull); err != nil {
		return nil, fmt.Errorf("--audit-on-full: %w", err)
	}
	lg, err := audit.Open(acfg)
	if err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	return lg, nil
}

// quotaFlags collects repeated --quota GROUP=RPS flags.
type quotaFlags map[quota.Group]float64

func (q *quotaFlags) String() string { return fmt.Sprint(map[quota.Group]float64(*q)) }

func (q *quotaFlags) Set(v string) error {
	g, r, ok := strings.Cut(v, "=")
	if !ok || g == "" {
		return fmt.Errorf("want GROUP=RPS, got %q", v)
	}
	rate, err := strconv.ParseFloat(r, 64)
	if err != nil || (rate < 0 && rate != -1) {
		return fmt.Errorf("rate %q: want a number of requests per second, or -1 for unlimited", r)
	}
	if *q == nil {
		*q = quotaFlags{}
	}
	(*q)[quota.Group(g)] = rate
	return nil
}
