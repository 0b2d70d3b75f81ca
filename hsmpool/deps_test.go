package hsmpool_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDeps keeps hsmpool's imports to the standard library and
// github.com/miekg/pkcs11 (DESIGN.md §5), and hsmtest's to those plus
// hsmpool and testing.
func TestDeps(t *testing.T) {
	for _, pkg := range []string{".", "./hsmtest"} {
		for _, tags := range []string{"", "kmsdtest"} {
			out, err := exec.Command("go", "list", "-tags", tags, "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", pkg).CombinedOutput()
			if err != nil {
				t.Fatalf("go list %s: %v\n%s", pkg, err, out)
			}
			for _, dep := range strings.Fields(string(out)) {
				switch {
				case dep == "github.com/kmsd/kmsd/hsmpool",
					dep == "github.com/kmsd/kmsd/hsmpool/hsmtest" && pkg != ".",
					dep == "github.com/miekg/pkcs11":
				default:
					t.Errorf("%s imports %s: hsmpool may import only the standard library and github.com/miekg/pkcs11", pkg, dep)
				}
			}
		}
	}
}

// TestNoTestHookInNormalBuilds makes sure UnsafeExportForTest exists only
// with the kmsdtest build tag.
func TestNoTestHookInNormalBuilds(t *testing.T) {
	out, err := exec.Command("go", "doc", "-all", "-u", ".").CombinedOutput()
	if err != nil {
		t.Skipf("go doc: %v", err)
	}
	if strings.Contains(string(out), "UnsafeExportForTest") {
		t.Fatal("UnsafeExportForTest is compiled into normal builds")
	}
}
