package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/kmsd/kmsd/hsmpool"
)

func TestPeerFlags(t *testing.T) {
	dir := t.TempDir()
	cred := filepath.Join(dir, "west")
	os.WriteFile(cred, []byte("[default]\naws_access_key_id = AKIAWEST\naws_secret_access_key = s3cret\n"), 0o600)
	parse := func(args ...string) (serveConfig, error) {
		var c serveConfig
		var errb bytes.Buffer
		if err := newServeFlags(&c, &errb).Parse(args); err != nil {
			return c, err
		}
		return c, nil
	}
	c, err := parse("--region", "us-east-1", "--peer-region", "us-west-2=http://127.0.0.1:5000", "--peer-credentials", "us-west-2="+cred)
	if err != nil {
		t.Fatal(err)
	}
	peers, err := c.peers()
	if err != nil || len(peers) != 1 || peers[0].Region != "us-west-2" || peers[0].Key.ID != "AKIAWEST" || peers[0].URL != "http://127.0.0.1:5000" {
		t.Fatalf("peers %+v %v", peers, err)
	}
	for _, bad := range [][]string{
		{"--peer-region", "us-west-2=http://x:1"},                                                 // no credentials
		{"--peer-credentials", "us-west-2=" + cred},                                               // no URL
		{"--peer-region", "us-east-1=http://x:1", "--peer-credentials", "us-east-1=" + cred},      // own region
		{"--peer-region", "us-west-2=ftp://x", "--peer-credentials", "us-west-2=" + cred},         // not http
		{"--peer-region", "us-west-2=http://x:1", "--peer-credentials", "us-west-2=/nonexistent"}, // unreadable
	} {
		c, err := parse(append([]string{"--region", "us-east-1"}, bad...)...)
		if err == nil {
			_, err = c.peers()
		}
		if err == nil {
			t.Errorf("%v: accepted", bad)
		}
	}
	if _, err := parse("--peer-region", "us-west-2=http://a:1", "--peer-region", "us-west-2=http://b:1"); err == nil {
		t.Error("a Region given twice was accepted")
	}
	if _, err := parse("--peer-region", "us-west-2"); err == nil {
		t.Error("--peer-region without URL was accepted")
	}
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startProcess runs the kmsd binary and waits for its API to answer.
func startProcess(t *testing.T, bin string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(bin, args...)
	var env []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "SOFTHSM2_CONF=") {
			env = append(env, e)
		}
	}
	cmd.Env = env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd
}

func stopProcess(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()
}

func waitReady(t *testing.T, url string) {
	t.Helper()
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		resp, err := http.Get(url + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
	}
	t.Fatalf("%s never became ready", url)
}

// TestMultiRegionProcesses runs two kmsd processes as two Regions, each
// with its own SoftHSM2 token, linked by --peer-region and
// --peer-credentials, and replicates a key with the AWS CLI.
func TestMultiRegionProcesses(t *testing.T) {
	if _, err := hsmpool.FindSoftHSM(); err != nil {
		t.Skip("SoftHSM2 not installed")
	}
	awsCLI, err := exec.LookPath("aws")
	if err != nil {
		t.Skip("aws CLI not on PATH")
	}
	if testing.Short() {
		t.Skip("builds and runs kmsd processes")
	}
	bin := filepath.Join(t.TempDir(), "kmsd")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	type region struct {
		name, dir, url string
		cmd            *exec.Cmd
	}
	rs := []*region{{name: "us-east-1"}, {name: "us-west-2"}}
	for _, r := range rs {
		r.dir = t.TempDir()
		r.url = fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	}
	args := func(r *region, peers bool) []string {
		a := []string{"serve", "--listen", strings.TrimPrefix(r.url, "http://"), "--data-dir", r.dir, "--region", r.name, "--log-level", "warn", "--no-audit"}
		if peers {
			for _, p := range rs {
				if p != r {
					a = append(a, "--peer-region", p.name+"="+p.url, "--peer-credentials", p.name+"="+filepath.Join(p.dir, "credentials"))
				}
			}
		}
		return a
	}
	// First start writes each Region's credentials file; the second links them.
	for _, r := range rs {
		r.cmd = startProcess(t, bin, args(r, false)...)
		waitReady(t, r.url)
		stopProcess(t, r.cmd)
	}
	for _, r := range rs {
		r.cmd = startProcess(t, bin, args(r, true)...)
	}
	for _, r := range rs {
		waitReady(t, r.url)
	}
	east, west := rs[0], rs[1]
	ctx := context.Background()
	client := func(r *region) *kms.Client {
		cfg, err := config.LoadDefaultConfig(ctx, config.WithSharedCredentialsFiles([]string{filepath.Join(r.dir, "credentials")}),
			config.WithSharedConfigFiles([]string{}), config.WithRegion(r.name))
		if err != nil {
			t.Fatal(err)
		}
		return kms.NewFromConfig(cfg, func(o *kms.Options) { o.BaseEndpoint = aws.String(r.url) })
	}
	ce, cw := client(east), client(west)
	ck, err := ce.CreateKey(ctx, &kms.CreateKeyInput{MultiRegion: aws.Bool(true)})
	if err != nil {
		t.Fatal(err)
	}
	id := *ck.KeyMetadata.KeyId

	cli := exec.Command(awsCLI, "kms", "replicate-key", "--key-id", id, "--replica-region", "us-west-2",
		"--description", "made by the CLI", "--region", "us-east-1", "--endpoint-url", east.url, "--output", "json")
	cli.Env = append(os.Environ(), "AWS_SHARED_CREDENTIALS_FILE="+filepath.Join(east.dir, "credentials"), "AWS_CONFIG_FILE=/dev/null")
	out, err := cli.CombinedOutput()
	if err != nil {
		t.Fatalf("aws kms replicate-key: %v\n%s", err, out)
	}
	var rep struct {
		ReplicaKeyMetadata struct {
			Arn, KeyState string
		}
	}
	if err := json.Unmarshal(out, &rep); err != nil || rep.ReplicaKeyMetadata.Arn != "arn:aws:kms:us-west-2:111122223333:key/"+id {
		t.Fatalf("replicate-key printed %s (%v)", out, err)
	}
	// The primary's timers (every second) finish the replica.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		d, err := cw.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: &id})
		if err == nil && d.KeyMetadata.KeyState == types.KeyStateEnabled {
			if *d.KeyMetadata.Description != "made by the CLI" || d.KeyMetadata.MultiRegionConfiguration.MultiRegionKeyType != types.MultiRegionKeyTypeReplica {
				t.Fatalf("replica %+v", d.KeyMetadata)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the replica never became Enabled: %v", err)
		}
	}
	enc, err := ce.Encrypt(ctx, &kms.EncryptInput{KeyId: &id, Plaintext: []byte("two processes")})
	if err != nil {
		t.Fatal(err)
	}
	dec, err := cw.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob})
	if err != nil || string(dec.Plaintext) != "two processes" {
		t.Fatalf("decrypt in us-west-2: %v", err)
	}
}
