package cluster

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDeps keeps DESIGN.md §5's arrows: cluster holds the state model and
// raft; it must not reach the HSM or the API.
func TestDeps(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Skipf("go list: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, bad := range []string{"/agent", "/hsmpool", "/batch", "/cache", "/quota", "/bench"} {
			if dep == "github.com/kmsd/kmsd"+bad || strings.HasPrefix(dep, "github.com/kmsd/kmsd"+bad+"/") {
				t.Errorf("cluster imports %s: the FSM must stay deterministic and HSM-free", dep)
			}
		}
	}
}
