package agent

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// A request's context used to be context.WithTimeout's: five allocations
// and a runtime timer per request. Every request gets the same timeout, so
// their deadlines only grow: requests whose deadlines fall in the same tick
// (deadlineTick, at most 10ms) now share one context.WithDeadline at the end
// of the tick, and each request holds it in a reqCtx (kept in its request,
// no allocation). A request thus gets up to one tick more than its timeout.
// Deadline, Done and Err are all the shared context's, so they agree: code
// that checks Deadline (raft applies refuse a request past it) and code
// that waits on Done see the deadline pass at the same moment (a request's
// own, earlier Deadline let a forwarded write see "past its deadline" while
// Done was still open, and answer DependencyTimeoutException instead of
// the no-leader KMSInternalException). Contexts derived from it are
// children of the shared one (no goroutine per derived context), and Value
// holds no request value.

// reqCtx is a request's context: the shared context of its deadline's tick.
type reqCtx struct {
	context.Context
}

// deadlineTicks hands out the shared context of a tick.
type deadlineTicks struct {
	tick time.Duration
	cur  atomic.Pointer[deadlineTick]
	mu   sync.Mutex // held while a tick's context is made
}

type deadlineTick struct {
	end    time.Time // the tick's deadlines are in (end-tick, end]
	ctx    context.Context
	cancel context.CancelFunc // called by the timer at end; kept for vet
}

// newDeadlineTicks returns ticks for requests of timeout d: 1/64 of it,
// at most 10ms, at least 1 microsecond.
func newDeadlineTicks(d time.Duration) *deadlineTicks {
	return &deadlineTicks{tick: min(max(d/64, time.Microsecond), 10*time.Millisecond)}
}

// set makes c the context of a request due at deadline.
func (t *deadlineTicks) set(c *reqCtx, deadline time.Time) {
	if cur := t.cur.Load(); cur != nil && !deadline.After(cur.end) && deadline.After(cur.end.Add(-t.tick)) {
		c.Context = cur.ctx
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	cur := t.cur.Load()
	if cur == nil || deadline.After(cur.end) || !deadline.After(cur.end.Add(-t.tick)) {
		end := deadline.Truncate(t.tick)
		if end.Before(deadline) {
			end = end.Add(t.tick)
		}
		ctx, cancel := context.WithDeadline(context.Background(), end)
		nt := &deadlineTick{end: end, ctx: ctx, cancel: cancel}
		if cur == nil || end.After(cur.end) {
			t.cur.Store(nt) // an earlier tick (a clock step back) is not cached
		}
		cur = nt
	}
	c.Context = cur.ctx
}
