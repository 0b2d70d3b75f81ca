package job

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// TestPrinter: a terminal gets a redrawn bar (carriage return, no
// newline until Done); anything else gets plain lines, at most one per
// Every, plus the last one.
func TestPrinter(t *testing.T) {
	p := Progress{Done: 3, Failed: 1, Seen: 10, Bytes: 3 << 20, TotalBytes: 10 << 20, WalkDone: true, Elapsed: time.Second}
	var tty bytes.Buffer
	bar := &Printer{W: &tty, Terminal: true}
	bar.Print(p)
	bar.Print(p)
	if out := tty.String(); strings.Count(out, "\r") != 2 || strings.Contains(out, "\n") || !strings.Contains(out, " 30% 4/10 files, 1 failed, 3.0 MiB/s, eta 2s") {
		t.Fatalf("bar: %q", out)
	}
	bar.Done()
	if !strings.HasSuffix(tty.String(), "\n") {
		t.Fatal("Done does not end the bar's line")
	}

	var log bytes.Buffer
	line := &Printer{W: &log, Every: time.Hour}
	line.Print(p)
	line.Print(p) // within Every: nothing
	p.Done, p.Bytes = 9, 10<<20
	line.Print(p) // the last one: printed
	lines := strings.Split(strings.TrimSpace(log.String()), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "job: 4/10 files (1 failed, 0 skipped), 3.0 MiB/10.0 MiB") || !strings.HasPrefix(lines[1], "job: 10/10 files") {
		t.Fatalf("lines: %q", lines)
	}
}
