package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kmsd/kmsd/bench"
	"github.com/kmsd/kmsd/internal/kmsdproc"
)

func runKmsbench(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func decodeReport(t *testing.T, out string) *bench.Report {
	t.Helper()
	var rep bench.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("--json output: %v\n%s", err, out)
	}
	return &rep
}

func TestRunIdealJSON(t *testing.T) {
	code, out, errOut := runKmsbench(t, "--ideal", "--duration", "1s", "--warmup", "0", "--concurrency", "4",
		"--decrypt-pool", "8", "--context", "app=kmsbench", "--json", "--mix", "gdk=1,decrypt=1,encrypt=1,gdkwp=1")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, errOut)
	}
	rep := decodeReport(t, out)
	if rep.Requests == 0 || rep.Errors != 0 || len(rep.Ops) != 4 || rep.DecryptPool != 8 {
		t.Errorf("report: %+v", rep)
	}
	for _, o := range rep.Ops {
		if o.Requests == 0 || o.Errors != 0 {
			t.Errorf("%s: %+v", o.Op, o)
		}
	}
	for _, want := range []string{"ideal twin", "created key", "req/s"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
}

func TestRunIdealTable(t *testing.T) {
	code, out, errOut := runKmsbench(t, "--ideal", "--duration", "500ms", "--warmup", "100ms", "--concurrency", "2",
		"--rate", "100", "--key", "alias/bench", "--decrypt-pool", "4")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, errOut)
	}
	for _, want := range []string{"open loop, target 100 req/s", "GenerateDataKey", "Decrypt", "total"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(errOut, "created key") {
		t.Errorf("--key given but a key was created:\n%s", errOut)
	}
}

func TestRunFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"-h"}, 0, "usage: kmsbench"},
		{[]string{"--mix", "sign=1"}, 2, "unknown operation"},
		{[]string{"--mix", "gdk=0"}, 2, "every weight is 0"},
		{[]string{"--concurrency", "0"}, 2, "--concurrency"},
		{[]string{"--duration", "0s"}, 2, "--duration"},
		{[]string{"--context", "novalue"}, 2, "--context"},
		{[]string{"--endpoint", "ftp://x", "--key", "k"}, 1, "Config.Endpoints"},
		{[]string{"--rate", "-1", "--key", "k"}, 1, "Config.Rate"},
		{[]string{"extra"}, 2, "unexpected argument"},
		{[]string{"--bogus"}, 2, "flag provided but not defined"},
	} {
		code, _, errOut := runKmsbench(t, tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d and %q", tc.args, code, errOut, tc.code, tc.want)
		}
	}
}

func writeCredentials(t *testing.T) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "credentials")
	if err := os.WriteFile(f, []byte("[default]\naws_access_key_id = AKIDTEST\naws_secret_access_key = secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

func closedPortURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr
}

func TestRunEveryRequestFails(t *testing.T) {
	url, creds := closedPortURL(t), writeCredentials(t)
	code, out, errOut := runKmsbench(t, "--endpoint", url, "--credentials", creds, "--key", "k", "--mix", "gdk=1",
		"--warmup", "0", "--max-requests", "20", "--concurrency", "2", "--json")
	if code != 1 || !strings.Contains(errOut, "no request succeeded") {
		t.Fatalf("exit %d, stderr:\n%s", code, errOut)
	}
	if rep := decodeReport(t, out); rep.Requests != 20 || rep.ErrorsByCode["transport"] != 20 {
		t.Errorf("report: %+v", rep)
	}

	// Without --key, CreateKey fails first.
	code, _, errOut = runKmsbench(t, "--endpoint", url, "--credentials", creds)
	if code != 1 || !strings.Contains(errOut, "CreateKey") {
		t.Errorf("exit %d, stderr:\n%s", code, errOut)
	}
}

// TestRunKmsd builds bin/kmsd, serves it on 127.0.0.1:0 from a temporary
// data dir (it makes its own SoftHSM2 token) and benches it for a second
// with a GenerateDataKey+Decrypt mix: every request must succeed.
func TestRunKmsd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts kmsd")
	}
	dataDir := filepath.Join(t.TempDir(), "data")
	url := kmsdproc.Start(t, kmsdproc.Build(t), dataDir)

	code, out, errOut := runKmsbench(t, "--endpoint", url, "--credentials", filepath.Join(dataDir, "credentials"),
		"--mix", "gdk=1,decrypt=1", "--duration", "1s", "--warmup", "200ms", "--concurrency", "8",
		"--decrypt-pool", "32", "--context", "app=kmsbench", "--json")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, errOut)
	}
	rep := decodeReport(t, out)
	if rep.Requests == 0 || rep.Errors != 0 {
		t.Fatalf("requests %d, errors %d %v\n%s", rep.Requests, rep.Errors, rep.ErrorsByCode, errOut)
	}
	t.Logf("kmsd: %.0f req/s, p50 %d µs, p99 %d µs over %d requests", rep.Throughput, rep.Latency.P50, rep.Latency.P99, rep.Requests)
}
