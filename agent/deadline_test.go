package agent

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestRequestDeadline: a request's context reports a deadline at most one
// tick after the request's own, the one its Done keeps (never before it),
// is done then (with Err DeadlineExceeded), cancels contexts derived from
// it, and requests due in the same tick share one underlying context.
func TestRequestDeadline(t *testing.T) {
	ticks := newDeadlineTicks(640 * time.Millisecond) // 10ms ticks
	if ticks.tick != 10*time.Millisecond {
		t.Fatalf("tick %v, want 10ms", ticks.tick)
	}
	due := time.Now().Add(50 * time.Millisecond)
	var a, b reqCtx
	ticks.set(&a, due)
	ticks.set(&b, due.Add(time.Nanosecond))
	ad, ok := a.Deadline()
	if !ok || ad.Before(due) || ad.Sub(due) > ticks.tick {
		t.Fatalf("Deadline() = %v, %v; want within a tick after %v", ad, ok, due)
	}
	if a.Context != b.Context && due.Truncate(ticks.tick) == due.Add(time.Nanosecond).Truncate(ticks.tick) {
		t.Error("two deadlines in one tick got two contexts")
	}
	if a.Err() != nil || a.Value("x") != nil {
		t.Fatalf("fresh context: Err %v, Value %v", a.Err(), a.Value("x"))
	}
	derived, cancel := context.WithTimeout(&a, time.Hour)
	defer cancel()
	if d, _ := derived.Deadline(); !d.Equal(ad) {
		t.Errorf("derived deadline %v, want the request's %v", d, ad)
	}
	select {
	case <-a.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("request context never done")
	}
	if now := time.Now(); now.Before(ad) {
		t.Errorf("done %v before the deadline it reports", ad.Sub(now))
	}
	if !errors.Is(a.Err(), context.DeadlineExceeded) {
		t.Errorf("Err() = %v, want DeadlineExceeded", a.Err())
	}
	select {
	case <-derived.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("derived context not cancelled with the request's")
	}

	// A deadline before the current tick (the clock stepped back) still gets
	// a context that ends at or after it, and does not replace the tick.
	cur := ticks.cur.Load()
	var c reqCtx
	early := time.Now().Add(-time.Second)
	ticks.set(&c, early)
	if d, ok := c.Context.Deadline(); !ok || d.Before(early) || d.Sub(early) > ticks.tick {
		t.Errorf("early deadline %v got a context ending %v", early, d)
	}
	if ticks.cur.Load() != cur {
		t.Error("an earlier tick replaced the current one")
	}
	<-c.Done()
}
