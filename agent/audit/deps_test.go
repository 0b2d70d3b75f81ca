package audit

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDeps keeps DESIGN.md §5's arrows: audit is a leaf that agent uses; it
// imports the standard library only and no kmsd package.
func TestDeps(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	const self = "github.com/kmsd/kmsd/agent/audit"
	for _, dep := range strings.Fields(string(out)) {
		if dep == self {
			continue
		}
		if dep == "github.com/kmsd/kmsd" || strings.HasPrefix(dep, "github.com/kmsd/kmsd/") {
			t.Errorf("audit imports %s: audit is a leaf and must not depend on other kmsd packages", dep)
		}
		if strings.Contains(strings.SplitN(dep, "/", 2)[0], ".") {
			t.Errorf("audit imports %s: audit uses the standard library only", dep)
		}
	}
}
