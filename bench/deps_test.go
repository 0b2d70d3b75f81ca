package bench

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDeps keeps DESIGN.md §5's arrows: bench is a client of the KMS API
// and must measure any endpoint the same way, so it never links kmsd's
// server-side packages.
func TestDeps(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Skipf("go list: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, bad := range []string{"/agent", "/cluster", "/hsmpool", "/batch", "/cache"} {
			if dep == "github.com/kmsd/kmsd"+bad || strings.HasPrefix(dep, "github.com/kmsd/kmsd"+bad+"/") {
				t.Errorf("bench imports %s: bench is a KMS client and must not depend on %s", dep, bad)
			}
		}
	}
}
