package kmsplugin

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDeps keeps DESIGN.md §5's arrows: kmsplugin reaches kmsd only through
// the AWS KMS API, so it never links kmsd's server-side packages.
func TestDeps(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Skipf("go list: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, bad := range []string{"/agent", "/cluster", "/hsmpool", "/batch", "/cache", "/quota"} {
			if dep == "github.com/kmsd/kmsd"+bad || strings.HasPrefix(dep, "github.com/kmsd/kmsd"+bad+"/") {
				t.Errorf("kmsplugin imports %s: it is a KMS client and must not depend on %s", dep, bad)
			}
		}
	}
}
