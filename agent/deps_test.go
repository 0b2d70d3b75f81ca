package agent

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDeps keeps DESIGN.md §5's arrows: agent is at the top below cmd; it
// must not import cmd or the bench client.
func TestDeps(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Skipf("go list: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		if strings.HasPrefix(dep, "github.com/kmsd/kmsd/cmd") || strings.HasPrefix(dep, "github.com/kmsd/kmsd/bench") {
			t.Errorf("agent imports %s", dep)
		}
	}
}
