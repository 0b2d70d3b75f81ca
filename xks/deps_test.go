package xks

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDeps keeps DESIGN.md §5's arrows: xks may use hsmpool and agent/sigv4
// but not the API layer or the replicated state.
func TestDeps(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Skipf("go list: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, bad := range []string{"github.com/kmsd/kmsd/agent", "github.com/kmsd/kmsd/cluster", "github.com/kmsd/kmsd/cmd"} {
			if (dep == bad || strings.HasPrefix(dep, bad+"/")) && dep != "github.com/kmsd/kmsd/agent/sigv4" {
				t.Errorf("xks imports %s", dep)
			}
		}
	}
}
