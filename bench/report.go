package bench

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Histogram range: latencies are recorded in microseconds from 1 µs to 60 s
// with three significant digits; longer ones are recorded as 60 s.
const (
	minLatencyMicros = 1
	maxLatencyMicros = 60_000_000
	sigFigs          = 3
)

func newHistogram() *hdrhistogram.Histogram {
	return hdrhistogram.New(minLatencyMicros, maxLatencyMicros, sigFigs)
}

// Report is the result of one run. Its JSON field names are stable:
//
//	endpoints          []string   the endpoints the run used
//	mode               string     "closed" or "open"
//	mix                string     the Mix, as "gdk=1,decrypt=1,encrypt=0,gdkwp=0"
//	concurrency        int        workers (closed) or the in-flight bound (open)
//	target_rate        float      requests/s asked for (open loop; 0 when closed)
//	decrypt_pool       int        distinct blobs Decrypt chose from (0 without Decrypt)
//	decrypt_reuse      float      measured Decrypt requests per pool blob
//	warmup_seconds     float      warm-up asked for
//	duration_seconds   float      measurement asked for
//	elapsed_seconds    float      measured window: first measured send to last answer
//	requests           int        measured requests (successes and errors)
//	errors             int        measured requests that failed
//	throughput_rps     float      requests / elapsed_seconds
//	errors_by_code     {code:int} AWS error code, or "transport"
//	unsent             int        open loop: requests due before the end that were never
//	                              sent because every worker was busy (the server fell
//	                              behind the schedule); not in requests
//	failovers          int        times a worker moved to the next endpoint
//	latency_us         Latency    successful requests, all operations
//	ops                []OpReport one per operation with weight > 0, in Mix order
type Report struct {
	Endpoints       []string         `json:"endpoints"`
	Mode            string           `json:"mode"`
	Mix             string           `json:"mix"`
	Concurrency     int              `json:"concurrency"`
	TargetRate      float64          `json:"target_rate"`
	DecryptPool     int              `json:"decrypt_pool"`
	DecryptReuse    float64          `json:"decrypt_reuse"`
	WarmupSeconds   float64          `json:"warmup_seconds"`
	DurationSeconds float64          `json:"duration_seconds"`
	ElapsedSeconds  float64          `json:"elapsed_seconds"`
	Requests        int64            `json:"requests"`
	Errors          int64            `json:"errors"`
	Throughput      float64          `json:"throughput_rps"`
	ErrorsByCode    map[string]int64 `json:"errors_by_code"`
	Unsent          int64            `json:"unsent"`
	Failovers       int64            `json:"failovers"`
	Latency         Latency          `json:"latency_us"`
	Ops             []OpReport       `json:"ops"`
}

// OpReport is one operation's share of a run. JSON names: op, requests,
// errors, throughput_rps, errors_by_code, latency_us (as in Report).
type OpReport struct {
	Op           string           `json:"op"`
	Requests     int64            `json:"requests"`
	Errors       int64            `json:"errors"`
	Throughput   float64          `json:"throughput_rps"`
	ErrorsByCode map[string]int64 `json:"errors_by_code"`
	Latency      Latency          `json:"latency_us"`
}

// Latency holds percentiles of successful requests in microseconds (JSON:
// count, mean, p50, p90, p99, p999, max). All are 0 when Count is 0.
type Latency struct {
	Count int64   `json:"count"`
	Mean  float64 `json:"mean"`
	P50   int64   `json:"p50"`
	P90   int64   `json:"p90"`
	P99   int64   `json:"p99"`
	P999  int64   `json:"p999"`
	Max   int64   `json:"max"`
}

func latencyOf(h *hdrhistogram.Histogram) Latency {
	if h == nil || h.TotalCount() == 0 {
		return Latency{}
	}
	return Latency{
		Count: h.TotalCount(),
		Mean:  h.Mean(),
		P50:   h.ValueAtQuantile(50),
		P90:   h.ValueAtQuantile(90),
		P99:   h.ValueAtQuantile(99),
		P999:  h.ValueAtQuantile(99.9),
		Max:   h.Max(),
	}
}

// WriteTable writes r as an aligned text table: a summary, then one row per
// operation and a total row, then errors by code.
func (r *Report) WriteTable(w io.Writer) error {
	var b strings.Builder
	mode := r.Mode
	if r.Mode == "open" {
		mode = fmt.Sprintf("open loop, target %.0f req/s, up to %d in flight", r.TargetRate, r.Concurrency)
	} else {
		mode = fmt.Sprintf("closed loop, %d workers", r.Concurrency)
	}
	fmt.Fprintf(&b, "endpoints  %s\n", strings.Join(r.Endpoints, ", "))
	fmt.Fprintf(&b, "load       %s, mix %s\n", mode, r.Mix)
	fmt.Fprintf(&b, "window     %.2fs measured after %.2fs warm-up", r.ElapsedSeconds, r.WarmupSeconds)
	if r.DecryptPool > 0 {
		fmt.Fprintf(&b, "; decrypt pool %d blobs, each used %.1f times", r.DecryptPool, r.DecryptReuse)
	}
	if r.Unsent > 0 {
		fmt.Fprintf(&b, "; %d requests due but never sent (server behind the schedule)", r.Unsent)
	}
	if r.Failovers > 0 {
		fmt.Fprintf(&b, "; %d failovers", r.Failovers)
	}
	b.WriteString("\n\n")

	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "op\trequests\terrors\treq/s\tp50 µs\tp90 µs\tp99 µs\tp99.9 µs\tmax µs\t")
	row := func(name string, n, errs int64, rps float64, l Latency) {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.0f\t%d\t%d\t%d\t%d\t%d\t\n",
			name, n, errs, rps, l.P50, l.P90, l.P99, l.P999, l.Max)
	}
	for _, o := range r.Ops {
		row(o.Op, o.Requests, o.Errors, o.Throughput, o.Latency)
	}
	row("total", r.Requests, r.Errors, r.Throughput, r.Latency)
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(r.ErrorsByCode) > 0 {
		b.WriteString("\nerrors\n")
		codes := make([]string, 0, len(r.ErrorsByCode))
		for c := range r.ErrorsByCode {
			codes = append(codes, c)
		}
		sort.Slice(codes, func(i, j int) bool {
			ci, cj := r.ErrorsByCode[codes[i]], r.ErrorsByCode[codes[j]]
			return ci > cj || ci == cj && codes[i] < codes[j]
		})
		tw = tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
		for _, c := range codes {
			fmt.Fprintf(tw, "  %s\t%d\n", c, r.ErrorsByCode[c])
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}
