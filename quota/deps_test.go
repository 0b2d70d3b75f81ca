package quota

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDeps keeps DESIGN.md §5's arrows: quota is a leaf that every layer
// above may use, so it must import no other kmsd package.
func TestDeps(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	const self = "github.com/kmsd/kmsd/quota"
	for _, dep := range strings.Fields(string(out)) {
		if dep != self && (dep == "github.com/kmsd/kmsd" || strings.HasPrefix(dep, "github.com/kmsd/kmsd/")) {
			t.Errorf("quota imports %s: quota is a leaf and must not depend on other kmsd packages", dep)
		}
	}
}
