package agent

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"

	"github.com/kmsd/kmsd/hsmpool"
)

// metrics are the node's Prometheus metrics, served on GET /metrics.
type metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec   // op, code ("ok" or the AWS error type)
	latency  *prometheus.HistogramVec // op
	hsmTime  prometheus.Histogram
	hsmErrs  *prometheus.CounterVec // code (CKR_... or "other")
	// throttled counts ThrottlingException answers by operation; denied
	// AccessDeniedException answers by operation.
	throttled *prometheus.CounterVec
	denied    *prometheus.CounterVec
	handler   fasthttp.RequestHandler
	// ok holds the series of successful calls by operation, made on first
	// use, so the hot path skips the label hashing of WithLabelValues.
	okMu sync.RWMutex
	ok   map[string]opSeries
}

// opSeries are an operation's series of successful calls.
type opSeries struct {
	requests prometheus.Counter
	latency  prometheus.Observer
}

func newMetrics(s *Server) *metrics {
	m := &metrics{reg: prometheus.NewRegistry(), ok: map[string]opSeries{}}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "kmsd_requests_total", Help: "API requests by operation and outcome (ok or the AWS error type).",
	}, []string{"op", "code"})
	m.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "kmsd_request_seconds", Help: "API request latency inside the server, by operation.",
		Buckets: prometheus.ExponentialBuckets(50e-6, 2, 16),
	}, []string{"op"})
	m.throttled = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "kmsd_quota_throttled_total", Help: "Requests refused with ThrottlingException, by operation.",
	}, []string{"op"})
	m.denied = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "kmsd_access_denied_total", Help: "Requests refused with AccessDeniedException, by operation.",
	}, []string{"op"})
	m.hsmTime = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "kmsd_hsm_op_seconds", Help: "Time a PKCS#11 session was in use for one operation.",
		Buckets: prometheus.ExponentialBuckets(5e-6, 2, 16),
	})
	m.hsmErrs = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "kmsd_hsm_op_errors_total", Help: "Failed HSM operations by PKCS#11 return code.",
	}, []string{"code"})
	s.pool.SetObserver(func(d time.Duration, err error) {
		m.hsmTime.Observe(d.Seconds())
		if err != nil {
			code := hsmpool.ErrorCode(err)
			if code == "" {
				code = "other"
			}
			m.hsmErrs.WithLabelValues(code).Inc()
		}
	})
	m.reg.MustRegister(m.requests, m.latency, m.hsmTime, m.hsmErrs,
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "kmsd_decrypt_cache_hits_total", Help: "Decrypts served by a cached batch key."},
			func() float64 { return float64(s.keyCache.Stats().Hits) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "kmsd_decrypt_cache_misses_total", Help: "Decrypts that needed the HSM."},
			func() float64 { return float64(s.keyCache.Stats().Misses) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "kmsd_decrypt_cache_evictions_total", Help: "Cached batch keys evicted for room or age."},
			func() float64 { return float64(s.keyCache.Stats().Evictions) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "kmsd_decrypt_cache_purges_total", Help: "Purges of a key's cached batch keys."},
			func() float64 { return float64(s.keyCache.Stats().Purges) }),
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "kmsd_batch_hsm_ops_total", Help: "HSM operations made by the batcher."},
			func() float64 { return float64(s.batch.Stats().HSMOps) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "kmsd_batch_items_total", Help: "Requests served by batched HSM operations."},
			func() float64 { return float64(s.batch.Stats().Items) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "kmsd_hsm_sessions", Help: "PKCS#11 sessions in the pool."},
			func() float64 { return float64(s.pool.Stats().Sessions) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "kmsd_hsm_sessions_in_use", Help: "PKCS#11 sessions lent out now."},
			func() float64 { return float64(s.pool.Stats().InUse) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "kmsd_hsm_waits_total", Help: "Session checkouts that had to wait."},
			func() float64 { return float64(s.pool.Stats().Waits) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "kmsd_hsm_reopens_total", Help: "Sessions re-opened after a session or token error."},
			func() float64 { return float64(s.pool.Stats().Reopens) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "kmsd_hsm_ops_total", Help: "PKCS#11 operations run."},
			func() float64 { return float64(s.pool.Stats().Ops) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "kmsd_hsm_errors_total", Help: "PKCS#11 operations that failed."},
			func() float64 { return float64(s.pool.Stats().Errors) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "kmsd_raft_applied_index", Help: "Last raft index applied to this node's state."},
			func() float64 { return float64(s.node.AppliedIndex()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "kmsd_raft_leader", Help: "1 if this node is the raft leader, else 0."},
			func() float64 {
				if s.node.IsLeader() {
					return 1
				}
				return 0
			}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "kmsd_raft_members", Help: "Servers in the raft configuration this node holds."},
			func() float64 {
				servers, err := s.node.Servers()
				if err != nil {
					return 0
				}
				return float64(len(servers))
			}),
		newRaftStateCollector(s),
		m.throttled, m.denied,
	)
	if a := s.cfg.Audit; a != nil {
		m.reg.MustRegister(
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "kmsd_audit_records_total", Help: "Audit records written."},
				func() float64 { return float64(a.Written()) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "kmsd_audit_dropped_total", Help: "Audit records dropped (buffer full under the drop policy, or unwritten at close)."},
				func() float64 { return float64(a.Dropped()) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "kmsd_audit_write_errors_total", Help: "Failed writes of the audit log (retried)."},
				func() float64 { return float64(a.WriteErrors()) }),
		)
	}
	m.handler = fasthttpadaptor.NewFastHTTPHandler(promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	return m
}

func (m *metrics) observe(op, code string, start time.Time) {
	if op == "" {
		op = "unknown"
	}
	if code == "ok" {
		m.observeOK(op, start)
		return
	}
	m.requests.WithLabelValues(op, code).Inc()
	switch code {
	case errThrottling:
		m.throttled.WithLabelValues(op).Inc()
	case errAccessDenied:
		m.denied.WithLabelValues(op).Inc()
	}
	m.latency.WithLabelValues(op).Observe(time.Since(start).Seconds())
}

// observeOK counts a successful call to op and its latency.
func (m *metrics) observeOK(op string, start time.Time) {
	m.okMu.RLock()
	ser, ok := m.ok[op]
	m.okMu.RUnlock()
	if !ok {
		ser = opSeries{m.requests.WithLabelValues(op, "ok"), m.latency.WithLabelValues(op)}
		m.okMu.Lock()
		m.ok[op] = ser
		m.okMu.Unlock()
	}
	ser.requests.Inc()
	ser.latency.Observe(time.Since(start).Seconds())
}

// raftStateCollector reports kmsd_raft_state{state="Leader|Follower|..."}
// as 1 for this node's current role.
type raftStateCollector struct {
	s    *Server
	desc *prometheus.Desc
}

func newRaftStateCollector(s *Server) *raftStateCollector {
	return &raftStateCollector{s: s, desc: prometheus.NewDesc("kmsd_raft_state", "This node's raft role (1 for the current one).", []string{"state"}, nil)}
}

func (c *raftStateCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *raftStateCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, 1, c.s.node.RaftState())
}
