package agent

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/smithy-go"

	"github.com/kmsd/kmsd/cache"
	"github.com/kmsd/kmsd/cluster"
	"github.com/kmsd/kmsd/hsmpool"
	"github.com/kmsd/kmsd/hsmpool/hsmtest"
)

// testServer is a real node: a SoftHSM2 token, a one-node raft cluster in a
// temp dir, and the API on 127.0.0.1.
type testServer struct {
	*Server
	dir    string
	url    string
	admin  AccessKey
	client *kms.Client
	node   *cluster.Node
	pool   *hsmpool.Pool
	ln     net.Listener

	stopOnce sync.Once
}

type tokenRef struct{ lib, label, pin string }

func newTestServer(t testing.TB) *testServer {
	t.Helper()
	lib, label, pin := hsmtest.NewToken(t)
	return startTestServer(t, t.TempDir(), tokenRef{lib, label, pin})
}

// startTestServer starts a node on dir and tok; a second call with the same
// arguments after stop() is a restart.
func startTestServer(t testing.TB, dir string, tok tokenRef) *testServer {
	t.Helper()
	return startTestServerClock(t, dir, tok, nil)
}

// fakeClock is a settable clock for the leader's schedules.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func newTestServerClock(t testing.TB) (*testServer, *fakeClock) {
	t.Helper()
	lib, label, pin := hsmtest.NewToken(t)
	clk := &fakeClock{now: time.Now()}
	return startTestServerClock(t, t.TempDir(), tokenRef{lib, label, pin}, clk.Now), clk
}

func startTestServerClock(t testing.TB, dir string, tok tokenRef, now func() time.Time) *testServer {
	t.Helper()
	return startTestServerCfg(t, dir, tok, Config{Now: now})
}

// startTestServerCfg starts a node with cfg (Node and Pool are filled in).
func startTestServerCfg(t testing.TB, dir string, tok tokenRef, cfg Config) *testServer {
	t.Helper()
	return startNode(t, dir, tok, cfg, cluster.Config{DataDir: dir, Bootstrap: true}, nil)
}

// startNode starts one node: pool on tok, raft with ccfg, the API on
// 127.0.0.1:0. With join set, the node joins join's cluster before Init.
func startNode(t testing.TB, dir string, tok tokenRef, cfg Config, ccfg cluster.Config, join *testServer) *testServer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pool, err := hsmpool.New(hsmpool.Config{Lib: tok.lib, TokenLabel: tok.label, PIN: tok.pin})
	if err != nil {
		t.Fatal(err)
	}
	if join == nil {
		if _, err := pool.EnsureDomainKey(ctx); err != nil {
			t.Fatal(err)
		}
	}
	node, err := cluster.New(ccfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String()
	cfg.Node, cfg.Pool = node, pool
	if ccfg.BindAddr != "" || ccfg.Stream != nil {
		cfg.APIURL = url
	}
	if cfg.Quotas.Rates == nil {
		cfg.DisableQuotas = true // tests make keys faster than CreateKey's 5/s
	}
	if cfg.DecryptCache.MaxAge == 0 {
		cfg.DecryptCache = cache.Config{MaxAge: time.Minute}
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	ts := &testServer{Server: srv, dir: dir, url: url, node: node, pool: pool, ln: ln}
	t.Cleanup(ts.stop)
	if join != nil {
		if err := Join(ctx, join.url, "us-east-1", join.admin, node, pool, url); err != nil {
			t.Fatalf("join: %v", err)
		}
	}
	admin, err := srv.Init(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ts.admin = admin
	ts.client = ts.newClient(admin.ID, admin.Secret)
	return ts
}

func (ts *testServer) stop() {
	ts.stopOnce.Do(func() {
		ts.Shutdown()
		ts.node.Close()
		ts.pool.Close()
	})
}

func (ts *testServer) newClient(id, secret string) *kms.Client {
	return kms.New(kms.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(ts.url),
		Credentials:  credentials.NewStaticCredentialsProvider(id, secret, ""),
		Retryer:      testRetryer(),
	})
}

// testRetryer retries nothing but a request whose connection the
// client's own transport closed under it (net.ErrClosed, "use of closed
// network connection": net/http reaping an idle connection as it is
// reused, aws/aws-sdk-go-v2#2737; the SDK's default retryer retries it
// too), once. Every answer of the server reaches the test as it came.
func testRetryer() aws.Retryer {
	return retry.NewStandard(func(o *retry.StandardOptions) {
		o.MaxAttempts = 2
		o.Retryables = []retry.IsErrorRetryable{retry.IsErrorRetryableFunc(func(err error) aws.Ternary {
			if errors.Is(err, net.ErrClosed) || strings.Contains(err.Error(), "use of closed network connection") {
				return aws.TrueTernary
			}
			return aws.FalseTernary
		})}
	})
}

func (ts *testServer) createKey(t testing.TB) string {
	t.Helper()
	out, err := ts.client.CreateKey(context.Background(), &kms.CreateKeyInput{})
	if err != nil {
		t.Fatal(err)
	}
	return *out.KeyMetadata.KeyId
}

// wantAPIError fails t unless err is an AWS API error with code code.
func wantAPIError(t testing.TB, err error, code string) {
	t.Helper()
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		t.Fatalf("want %s, got %v", code, err)
	}
	if ae.ErrorCode() != code {
		t.Fatalf("want %s, got %s: %s", code, ae.ErrorCode(), ae.ErrorMessage())
	}
}
