package batch

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDeps keeps DESIGN.md §5's arrows: batch may use hsmpool, never the
// packages above it or beside it.
func TestDeps(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Skipf("go list: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, bad := range []string{"/agent", "/cluster", "/cache", "/quota", "/bench"} {
			if dep == "github.com/kmsd/kmsd"+bad || strings.HasPrefix(dep, "github.com/kmsd/kmsd"+bad+"/") {
				t.Errorf("batch imports %s: batch coalesces HSM work and must not depend on %s", dep, bad)
			}
		}
	}
}
