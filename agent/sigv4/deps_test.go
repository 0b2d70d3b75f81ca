package sigv4

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDeps keeps sigv4 a leaf: standard library and fasthttp only. The AWS
// SDK is the reference signer in tests and must not reach production code.
func TestDeps(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go tool not found")
	}
	out, err := exec.Command(goBin, "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		switch {
		case strings.HasPrefix(dep, "github.com/aws/"):
			t.Errorf("sigv4 imports %s: the AWS SDK is for tests only", dep)
		case strings.HasPrefix(dep, "github.com/kmsd/kmsd/") && dep != "github.com/kmsd/kmsd/agent/sigv4":
			t.Errorf("sigv4 imports %s: it must not depend on other kmsd packages", dep)
		}
	}
}
