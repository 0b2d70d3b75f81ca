package job

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDeps keeps DESIGN.md §5's arrows: job talks to KMS through its KMS
// interface and imports no SDK and no kmsd package but batch/esdk.
func TestDeps(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Skipf("go list: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		if !strings.Contains(strings.SplitN(dep, "/", 2)[0], ".") {
			continue // standard library
		}
		switch dep {
		case "github.com/kmsd/kmsd/batch/job", "github.com/kmsd/kmsd/batch/esdk",
			"golang.org/x/sys/unix": // syncfs(2), mmap(2), fallocate(2), madvise(2)
			continue
		}
		t.Errorf("job imports %s: it may use batch/esdk, x/sys/unix and the standard library only (the SDK adapter is in cmd/kmsd)", dep)
	}
}
