package cache

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDeps keeps DESIGN.md §5's arrows: cache is a leaf that agent
// uses; it may import ristretto and no other kmsd package.
func TestDeps(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	const self = "github.com/kmsd/kmsd/cache"
	for _, dep := range strings.Fields(string(out)) {
		if dep != self && (dep == "github.com/kmsd/kmsd" || strings.HasPrefix(dep, "github.com/kmsd/kmsd/")) {
			t.Errorf("cache imports %s: cache is a leaf (ristretto only) and must not depend on other kmsd packages", dep)
		}
	}
}
