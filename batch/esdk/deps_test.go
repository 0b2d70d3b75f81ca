package esdk

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDeps: esdk is the message format only; it imports the standard
// library and nothing else (no KMS client, no kmsd package).
func TestDeps(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Skipf("go list: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		if strings.Contains(strings.SplitN(dep, "/", 2)[0], ".") && dep != "github.com/kmsd/kmsd/batch/esdk" {
			t.Errorf("esdk imports %s: the format package uses the standard library only", dep)
		}
	}
}
