package job

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// Printer renders Progress: a redrawn bar on a terminal, or a plain line
// every Every (default 5s) otherwise. It is called from one goroutine
// (Config.Progress).
type Printer struct {
	W        io.Writer
	Terminal bool
	Every    time.Duration
	last     time.Time
	drawn    bool
}

// Print renders p.
func (pr *Printer) Print(p Progress) {
	secs := p.Elapsed.Seconds()
	rate := 0.0
	if secs > 0 {
		rate = float64(p.Bytes) / secs
	}
	files := p.Done + p.Failed + p.Skipped
	eta := "?"
	if p.WalkDone && rate > 0 {
		eta = (time.Duration(float64(p.TotalBytes-p.Bytes)/rate) * time.Second).Round(time.Second).String()
	}
	total := fmt.Sprint(p.Seen)
	if !p.WalkDone {
		total += "+"
	}
	if !pr.Terminal {
		every := pr.Every
		if every == 0 {
			every = 5 * time.Second
		}
		if time.Since(pr.last) < every && !(p.WalkDone && files == p.Seen) {
			return
		}
		pr.last = time.Now()
		fmt.Fprintf(pr.W, "job: %d/%s files (%d failed, %d skipped), %s/%s, %s/s, %.0f files/s, eta %s\n",
			files, total, p.Failed, p.Skipped, human(p.Bytes), human(p.TotalBytes), human(int64(rate)), float64(files)/max(secs, 1e-9), eta)
		return
	}
	frac := 0.0
	if p.TotalBytes > 0 {
		frac = float64(p.Bytes) / float64(p.TotalBytes)
	} else if p.Seen > 0 {
		frac = float64(files) / float64(p.Seen)
	}
	const width = 30
	fill := int(frac * width)
	bar := strings.Repeat("=", fill) + strings.Repeat(" ", width-fill)
	fmt.Fprintf(pr.W, "\r[%s] %3.0f%% %d/%s files, %d failed, %s/s, eta %s   ", bar, frac*100, files, total, p.Failed, human(int64(rate)), eta)
	pr.drawn = true
}

// Done ends the bar's line.
func (pr *Printer) Done() {
	if pr.Terminal && pr.drawn {
		fmt.Fprintln(pr.W)
	}
}

func human(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
