package policy

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDeps keeps policy pure: it is a leaf that imports only the standard
// library, so that agent (authorization) and cluster (validation at
// PutKeyPolicy) can both use it without pulling anything in.
func TestDeps(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	const self = "github.com/kmsd/kmsd/agent/policy"
	for _, dep := range strings.Fields(string(out)) {
		if dep != self {
			t.Errorf("policy imports %s: it must import only the standard library", dep)
		}
	}
}
