package agent

import (
	"os"
	"regexp"
	"testing"
)

// TestReadmeStatusTable keeps the README's table of the 54 operations true.
func TestReadmeStatusTable(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	rows := regexp.MustCompile(`(?m)^\| ([A-Za-z]+) \| (implemented|not yet) \|`).FindAllStringSubmatch(string(b), -1)
	seen := map[string]bool{}
	for _, r := range rows {
		name, status := r[1], r[2]
		if _, ok := operations[name]; !ok {
			t.Errorf("README lists %s, which is not an AWS KMS operation", name)
			continue
		}
		seen[name] = true
		if got := !unimplemented[name]; got != (status == "implemented") {
			t.Errorf("README says %s is %q, code says implemented=%v", name, status, got)
		}
	}
	if len(allOperations) != 54 {
		t.Errorf("allOperations has %d names, the API has 54", len(allOperations))
	}
	for _, name := range allOperations {
		if !seen[name] {
			t.Errorf("README status table lacks %s", name)
		}
	}
}
