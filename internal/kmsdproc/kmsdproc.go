// Package kmsdproc runs the real kmsd binary as a separate process for the
// tests of its clients (kmsbench, the Kubernetes KMS plugin).
//
// Build compiles cmd/kmsd once per test; Start runs `kmsd serve` on
// 127.0.0.1:0 with its own data dir (and so its own SoftHSM2 token) and
// returns its URL once it says it is serving; the process gets SIGTERM
// when the test ends. A node that does not come up (no SoftHSM2, say) skips
// the test, unless KMSD_REQUIRE_HSM is set, as `make test` does.
//
// It imports nothing of kmsd: clients stay clients.
package kmsdproc

import (
	"bufio"
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Build compiles kmsd into a temporary directory and returns the binary's
// path; it skips t if kmsd does not build.
func Build(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "kmsd")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/kmsd/kmsd/cmd/kmsd").CombinedOutput(); err != nil {
		t.Skipf("cannot build kmsd: %v\n%s", err, out)
	}
	return bin
}

var servingRE = regexp.MustCompile(`serving the AWS KMS API on (http://\S+)`)

// Start runs `bin serve --listen 127.0.0.1:0 --data-dir dataDir` plus
// extra flags and returns the node's URL; the credentials file is
// dataDir/credentials.
func Start(t testing.TB, bin, dataDir string, extra ...string) string {
	t.Helper()
	args := append([]string{"serve", "--listen", "127.0.0.1:0", "--data-dir", dataDir, "--log-level", "warn"}, extra...)
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "SOFTHSM2_CONF=") // the node makes its own token
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	urls := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			logs.Write(append(sc.Bytes(), '\n'))
			if m := servingRE.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case urls <- m[1]:
				default:
				}
			}
		}
		io.Copy(io.Discard, stdout)
		cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	})
	fail := t.Skipf
	if os.Getenv("KMSD_REQUIRE_HSM") != "" {
		fail = t.Fatalf
	}
	select {
	case url := <-urls:
		return url
	case <-exited:
		fail("kmsd exited before serving:\n%s", logs.String())
	case <-time.After(60 * time.Second):
		fail("kmsd did not start serving within 60s:\n%s", logs.String())
	}
	return ""
}

// syncBuffer is a bytes.Buffer safe for the process's writers and the test.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
