package audit

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Policy says what Log does when the queue is full because the sink is
// slower than the requests, stalled or failing.
type Policy uint8

const (
	// Drop counts the event in Dropped and returns at once: a full or slow
	// disk never slows a request. The default.
	Drop Policy = iota
	// Block waits for room in the queue, however long the sink takes: no
	// event is lost, and request latency absorbs the disk's. A stalled sink
	// stalls every request that logs (until Close).
	Block
)

func (p Policy) String() string {
	switch p {
	case Drop:
		return "drop"
	case Block:
		return "block"
	}
	return fmt.Sprintf("Policy(%d)", uint8(p))
}

// ParsePolicy parses "drop" or "block" (a flag's value) into a Policy.
func ParsePolicy(s string) (Policy, error) {
	switch s {
	case "drop", "":
		return Drop, nil
	case "block":
		return Block, nil
	}
	return Drop, fmt.Errorf("audit: policy %q is neither drop nor block", s)
}

// Config configures a Logger. Zero values mean the defaults.
type Config struct {
	// Dir is the directory of the log files, created 0700 if missing
	// (cmd sets it to the node's --data-dir/audit). Required unless Sink is set.
	Dir string
	// MaxFileBytes: the current file is rotated before a record would take
	// it past this size (default 100 MiB). A record longer than that gets a
	// file of its own.
	MaxFileBytes int64
	// MaxFiles is how many rotated files are kept (default 10); the oldest
	// are removed.
	MaxFiles int
	// Buffer is how many events may wait in memory for the writer (default 8192).
	Buffer int
	// OnFull is what Log does when Buffer events are already waiting (default Drop).
	OnFull Policy
	// SyncInterval bounds how long a written record may stay in the page
	// cache before fsync (default 1s). Records are handed to the kernel as
	// soon as the writer takes them, so only a machine crash, not a kmsd
	// crash, can lose the last SyncInterval of written records.
	SyncInterval time.Duration
	// RetryInterval is how soon a failed write is tried again when no new
	// event comes to trigger it (default 100ms).
	RetryInterval time.Duration
	// MaxPendingBytes bounds the encoded records the writer holds while the
	// sink fails (default 4 MiB); beyond it the writer stops taking events
	// from the queue, so the queue fills and OnFull applies.
	MaxPendingBytes int
	// CloseTimeout bounds how long Close waits for a stalled sink (default
	// 10s); what is still unwritten then is counted in Dropped.
	CloseTimeout time.Duration
	// Sink, when set, receives the records instead of the files of Dir
	// (Dir, MaxFileBytes and MaxFiles are then unused). A seam for tests.
	Sink Sink
	// Now is the clock for EventTime and rotated file names (default time.Now).
	Now func() time.Time
}

func (c *Config) setDefaults() {
	if c.MaxFileBytes == 0 {
		c.MaxFileBytes = 100 << 20
	}
	if c.MaxFiles == 0 {
		c.MaxFiles = 10
	}
	if c.Buffer == 0 {
		c.Buffer = 8192
	}
	if c.SyncInterval == 0 {
		c.SyncInterval = time.Second
	}
	if c.RetryInterval == 0 {
		c.RetryInterval = 100 * time.Millisecond
	}
	if c.MaxPendingBytes == 0 {
		c.MaxPendingBytes = 4 << 20
	}
	if c.CloseTimeout == 0 {
		c.CloseTimeout = 10 * time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Validate reports the first invalid field of c (after defaults), by name.
func (c Config) Validate() error {
	c.setDefaults()
	switch {
	case c.Dir == "" && c.Sink == nil:
		return errors.New("audit: Config.Dir is required (or a Sink)")
	case c.MaxFileBytes < 0:
		return fmt.Errorf("audit: Config.MaxFileBytes %d is negative", c.MaxFileBytes)
	case c.MaxFiles < 0:
		return fmt.Errorf("audit: Config.MaxFiles %d is negative", c.MaxFiles)
	case c.Buffer < 0:
		return fmt.Errorf("audit: Config.Buffer %d is negative", c.Buffer)
	case c.OnFull != Drop && c.OnFull != Block:
		return fmt.Errorf("audit: Config.OnFull %v is neither Drop nor Block", c.OnFull)
	case c.SyncInterval < 0:
		return fmt.Errorf("audit: Config.SyncInterval %v is negative", c.SyncInterval)
	case c.RetryInterval < 0:
		return fmt.Errorf("audit: Config.RetryInterval %v is negative", c.RetryInterval)
	case c.MaxPendingBytes < 0:
		return fmt.Errorf("audit: Config.MaxPendingBytes %d is negative", c.MaxPendingBytes)
	case c.CloseTimeout < 0:
		return fmt.Errorf("audit: Config.CloseTimeout %v is negative", c.CloseTimeout)
	}
	return nil
}

// ErrCloseTimeout is returned by Close when the sink did not take the
// remaining records within Config.CloseTimeout.
var ErrCloseTimeout = errors.New("audit: sink stalled; unwritten records counted as dropped")

// Logger writes audit events, one JSON line each, from one writer goroutine.
type Logger struct {
	cfg  Config
	sink Sink
	ch   chan *Event

	mu      sync.RWMutex // Log holds it shared while sending; Close takes it to stop sends
	closed  bool
	closing chan struct{} // closed by Close: blocked Logs give up
	stop    chan struct{} // closed by Close once no Log can send: the writer drains and exits
	done    chan struct{} // closed by the writer when it has finished
	abandon atomic.Bool   // set when Close timed out: the writer writes nothing more

	dropped, written, writeErrors atomic.Uint64
	inWriter                      atomic.Int64 // events taken by the writer, not yet written or dropped
	closeErr                      error        // the sink's Close error, set before done closes

	closeOnce   sync.Once
	closeResult error
}

// Open starts a Logger. With the default sink it creates Dir and opens
// Dir/audit.log (mode 0600, appending to what is there).
func Open(cfg Config) (*Logger, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	sink := cfg.Sink
	if sink == nil {
		fs, err := newFileSink(cfg.Dir, cfg.MaxFileBytes, cfg.MaxFiles, cfg.Now)
		if err != nil {
			return nil, err
		}
		sink = fs
	}
	l := &Logger{
		cfg:     cfg,
		sink:    sink,
		ch:      make(chan *Event, cfg.Buffer),
		closing: make(chan struct{}),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	go l.run()
	return l, nil
}

// Log queues ev for writing and takes ownership of it: the caller must not
// touch ev afterwards. Under Drop it never blocks; under Block it waits for
// room in the queue. It is safe for concurrent use; on a nil Logger it does
// nothing, and after Close it counts ev as dropped. ev.EventTime is set to
// now when zero.
func (l *Logger) Log(ev *Event) {
	if l == nil || ev == nil {
		return
	}
	if ev.EventTime.IsZero() {
		ev.EventTime = l.cfg.Now()
	}
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		l.dropped.Add(1)
		return
	}
	if l.cfg.OnFull == Block {
		select {
		case l.ch <- ev:
		case <-l.closing:
			l.dropped.Add(1)
		}
		return
	}
	select {
	case l.ch <- ev:
	default:
		l.dropped.Add(1)
	}
}

// Dropped is the number of events not written: refused under Drop because
// the queue was full, logged after Close, unencodable, or still unwritten
// when Close gave up on a stalled sink.
func (l *Logger) Dropped() uint64 {
	if l == nil {
		return 0
	}
	return l.dropped.Load()
}

// Written is the number of events the sink accepted in full.
func (l *Logger) Written() uint64 {
	if l == nil {
		return 0
	}
	return l.written.Load()
}

// WriteErrors is the number of failed sink writes and syncs (each failed
// write is retried; its events are not lost by it).
func (l *Logger) WriteErrors() uint64 {
	if l == nil {
		return 0
	}
	return l.writeErrors.Load()
}

// Close stops accepting events, writes and syncs what is queued, and closes
// the sink. If the sink does not take it within Config.CloseTimeout, Close
// counts what is unwritten as dropped and returns ErrCloseTimeout (the
// writer goroutine then exits as soon as the sink returns; should the
// stalled write still succeed, its records reach the sink though counted
// as dropped). Close is safe to call more than once and concurrently; a nil
// Logger's Close returns nil.
func (l *Logger) Close() error {
	if l == nil {
		return nil
	}
	l.closeOnce.Do(func() { l.closeResult = l.close() })
	return l.closeResult
}

func (l *Logger) close() error {
	close(l.closing) // Logs blocked under Block give up and release RLock
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	close(l.stop) // no Log sends from here on: the writer drains and exits
	t := time.NewTimer(l.cfg.CloseTimeout)
	defer t.Stop()
	select {
	case <-l.done:
		return l.closeErr
	case <-t.C:
		l.abandon.Store(true)
		n := uint64(len(l.ch)) + uint64(max(l.inWriter.Swap(0), 0))
		l.dropped.Add(n)
		return fmt.Errorf("%w (%d records)", ErrCloseTimeout, n)
	}
}

// pending holds encoded records the sink has not taken yet.
type pending struct {
	buf  []byte
	ends []int // offset just past each record's newline in buf
}

// run is the writer goroutine: it takes the first queued event blocking,
// drains what else is queued (up to MaxPendingBytes), hands the lot to the
// sink in one write, and syncs every SyncInterval when something was written.
func (l *Logger) run() {
	defer close(l.done)
	var p pending
	tick := time.NewTicker(l.cfg.SyncInterval)
	defer tick.Stop()
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	retrying := false
	dirty := false

	flush := func() {
		ok, n := l.flush(&p)
		dirty = dirty || n > 0
		if !ok && !retrying && !l.abandon.Load() {
			retry.Reset(l.cfg.RetryInterval)
			retrying = true
		}
	}
	for {
		in := l.ch
		if len(p.buf) >= l.cfg.MaxPendingBytes {
			in = nil // the sink is failing: let the queue fill so OnFull applies
		}
		select {
		case ev := <-in:
			l.take(&p, ev)
			l.drain(&p)
			// Under load, let the request goroutines that are runnable log
			// too before the write: one write then carries many records.
			// Idle, Gosched returns at once and nothing waits.
			runtime.Gosched()
			l.drain(&p)
			flush()
		case <-retry.C:
			retrying = false
			flush()
		case <-tick.C:
			if dirty {
				if err := l.sink.Sync(); err != nil {
					l.writeErrors.Add(1)
				} else {
					dirty = false
				}
			}
		case <-l.stop:
			l.finish(&p)
			return
		}
		if l.abandon.Load() {
			return
		}
	}
}

// drain takes what is queued into p, up to MaxPendingBytes.
func (l *Logger) drain(p *pending) {
	for len(p.buf) < l.cfg.MaxPendingBytes {
		select {
		case ev := <-l.ch:
			l.take(p, ev)
		default:
			return
		}
	}
}

// finish writes everything still queued, retrying a failing sink until it
// succeeds or Close gives up, then syncs and closes the sink.
func (l *Logger) finish(p *pending) {
	for {
		l.drain(p)
		ok, _ := l.flush(p)
		if l.abandon.Load() {
			return
		}
		if ok && len(l.ch) == 0 {
			break
		}
		if !ok {
			time.Sleep(l.cfg.RetryInterval)
		}
	}
	if err := l.sink.Close(); err != nil {
		l.writeErrors.Add(1)
		l.closeErr = fmt.Errorf("audit: closing the sink: %w", err)
	}
}

// take encodes ev into p.
func (l *Logger) take(p *pending, ev *Event) {
	ev.fill()
	b, err := ev.appendJSON(p.buf)
	if buf := ev.callBuf; buf != nil {
		ev.reqJSON, ev.respJSON, ev.addJSON, ev.callBuf = nil, nil, nil, nil
		callBufs.Put(buf)
	}
	if err != nil {
		l.dropped.Add(1) // p.buf keeps its length: the partial record is cut off
		return
	}
	p.buf = append(b, '\n')
	p.ends = append(p.ends, len(p.buf))
	l.inWriter.Add(1)
}

// flush hands p to the sink and keeps what it did not take. It reports
// whether the write succeeded and how many bytes the sink took.
func (l *Logger) flush(p *pending) (bool, int) {
	if len(p.buf) == 0 {
		return true, 0
	}
	n, err := l.sink.Write(p.buf)
	if l.abandon.Load() {
		return false, n // Close has counted these as dropped
	}
	n = min(max(n, 0), len(p.buf))
	k := 0
	for k < len(p.ends) && p.ends[k] <= n {
		k++
	}
	l.written.Add(uint64(k))
	l.inWriter.Add(-int64(k))
	rest := copy(p.buf, p.buf[n:])
	p.buf = p.buf[:rest]
	m := copy(p.ends, p.ends[k:])
	p.ends = p.ends[:m]
	for i := range p.ends {
		p.ends[i] -= n
	}
	if err != nil {
		l.writeErrors.Add(1)
		return false, n
	}
	return true, n
}
