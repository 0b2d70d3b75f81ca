package batch

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kmsd/kmsd/hsmpool"
	"github.com/kmsd/kmsd/hsmpool/hsmtest"
)

// gatedHSM wraps the real HSM pool: it counts operations and can hold the
// first one until released, so tests can line up concurrent callers
// without sleeping.
type gatedHSM struct {
	*hsmpool.Pool
	ops     atomic.Int64
	gate    chan struct{} // nil = no gate
	entered chan struct{}
	once    sync.Once
}

func (h *gatedHSM) hold() {
	if h.gate == nil {
		return
	}
	h.once.Do(func() {
		close(h.entered)
		<-h.gate
	})
}

func (h *gatedHSM) Seal(ctx context.Context, wrapped, pt, aad []byte) ([]byte, error) {
	h.ops.Add(1)
	h.hold()
	return h.Pool.Seal(ctx, wrapped, pt, aad)
}

func (h *gatedHSM) Open(ctx context.Context, wrapped, sealed, aad []byte) ([]byte, error) {
	h.ops.Add(1)
	h.hold()
	return h.Pool.Open(ctx, wrapped, sealed, aad)
}

func newTestHSM(t *testing.T, gated bool) (*gatedHSM, []byte) {
	t.Helper()
	p := hsmtest.NewPool(t)
	h := &gatedHSM{Pool: p}
	if gated {
		h.gate, h.entered = make(chan struct{}), make(chan struct{})
	}
	m, err := p.GenerateWrappedKey(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return h, m
}

func TestLoneRequestIsABatchOfOne(t *testing.T) {
	h, m := newTestHSM(t, false)
	b, _ := New(h, Config{})
	k, s, idx, err := b.NewKey(context.Background(), m, []byte("hdr"))
	if err != nil {
		t.Fatal(err)
	}
	if len(k) != KeyLen || idx != 0 || h.ops.Load() != 1 {
		t.Fatalf("key %d bytes, index %d, ops %d", len(k), idx, h.ops.Load())
	}
	got, err := h.Pool.Open(context.Background(), m, s, []byte("hdr"))
	if err != nil || !bytes.Equal(got, k) {
		t.Fatalf("sealed key does not open to the key: %v", err)
	}
}

// TestCoalescing holds the first HSM call until 63 more callers queue, then
// checks that they were served by one more HSM call, with one shared key
// and distinct indexes.
func TestCoalescing(t *testing.T) {
	h, m := newTestHSM(t, true)
	b, _ := New(h, Config{MaxBatch: 64})
	ctx := context.Background()
	const n = 64
	type out struct {
		key, sealed []byte
		idx         uint32
		err         error
	}
	outs := make([]out, n)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		k, s, i, err := b.NewKey(ctx, m, []byte("hdr"))
		outs[0] = out{k, s, i, err}
	}()
	<-h.entered // the first caller is in the HSM
	for i := 1; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k, s, idx, err := b.NewKey(ctx, m, []byte("hdr"))
			outs[i] = out{k, s, idx, err}
		}()
	}
	// Wait until all 63 are queued behind the leader.
	g := b.group(groupName(nil, 'n', []byte("hdr"), m))
	deadline := time.Now().Add(10 * time.Second)
	for {
		g.mu.Lock()
		q := len(g.queue)
		g.mu.Unlock()
		if q == n-1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d callers queued", q)
		}
		time.Sleep(time.Millisecond)
	}
	close(h.gate)
	wg.Wait()
	if ops := h.ops.Load(); ops != 2 {
		t.Fatalf("%d HSM ops for %d requests, want 2", ops, n)
	}
	seen := map[uint32]bool{}
	for i := 1; i < n; i++ {
		o := outs[i]
		if o.err != nil {
			t.Fatal(o.err)
		}
		if !bytes.Equal(o.key, outs[1].key) || !bytes.Equal(o.sealed, outs[1].sealed) {
			t.Fatal("callers of one batch got different keys")
		}
		if seen[o.idx] {
			t.Fatalf("index %d handed out twice", o.idx)
		}
		seen[o.idx] = true
	}
	if bytes.Equal(outs[0].key, outs[1].key) {
		t.Fatal("two batches shared a key")
	}
	if st := b.Stats(); st.HSMOps != 2 || st.Items != n {
		t.Fatalf("stats %+v", st)
	}
	// Each caller owns its copy.
	clear(outs[1].key)
	if bytes.Equal(outs[1].key, outs[2].key) {
		t.Fatal("callers share one key slice")
	}
}

func TestNoBatching(t *testing.T) {
	h, m := newTestHSM(t, false)
	b, _ := New(h, Config{MaxBatch: 1})
	var wg sync.WaitGroup
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, _, _, err := b.NewKey(context.Background(), m, []byte("h")); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if h.ops.Load() != 16 {
		t.Fatalf("%d ops, want 16 with batching off", h.ops.Load())
	}
}

func TestOpenKey(t *testing.T) {
	h, m := newTestHSM(t, false)
	b, _ := New(h, Config{})
	ctx := context.Background()
	k, s, _, err := b.NewKey(ctx, m, []byte("aad"))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := 0; i < 32; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := b.OpenKey(ctx, m, s, []byte("aad"))
			if err != nil || !bytes.Equal(got, k) {
				t.Errorf("OpenKey: %v", err)
			}
		}()
	}
	// A bad item fails alone.
	bad := bytes.Clone(s)
	bad[len(bad)-1] ^= 1
	wg.Add(1)
	go func() {
		defer wg.Done()
		if _, err := b.OpenKey(ctx, m, bad, []byte("aad")); !errors.Is(err, hsmpool.ErrAuthFailed) {
			t.Errorf("bad sealed key: %v", err)
		}
	}()
	wg.Wait()
	if _, err := b.OpenKey(ctx, m, s, []byte("other aad")); !errors.Is(err, hsmpool.ErrAuthFailed) {
		t.Fatalf("wrong aad: %v", err)
	}
}

func TestCancelWhileQueued(t *testing.T) {
	h, m := newTestHSM(t, true)
	b, _ := New(h, Config{})
	done := make(chan error, 1)
	go func() {
		_, _, _, err := b.NewKey(context.Background(), m, []byte("h"))
		done <- err
	}()
	<-h.entered
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, _, _, err := b.NewKey(ctx, m, []byte("h"))
		errc <- err
	}()
	g := b.group(groupName(nil, 'n', []byte("h"), m))
	for deadline := time.Now().Add(10 * time.Second); ; {
		g.mu.Lock()
		q := len(g.queue)
		g.mu.Unlock()
		if q == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("caller never queued")
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled waiter: %v", err)
	}
	close(h.gate)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestStress runs many goroutines over several groups under -race and
// checks every key opens and indexes never repeat within a key.
func TestStress(t *testing.T) {
	h, m := newTestHSM(t, false)
	b, _ := New(h, Config{MaxBatch: 8})
	var mu sync.Mutex
	used := map[string]map[uint32]bool{}
	var wg sync.WaitGroup
	for i := 0; i < 32; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			aad := []byte{byte('a' + i%3)}
			for j := 0; j < 50; j++ {
				k, s, idx, err := b.NewKey(context.Background(), m, aad)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if used[string(s)] == nil {
					used[string(s)] = map[uint32]bool{}
				}
				if used[string(s)][idx] {
					t.Errorf("index %d reused under one key", idx)
				}
				used[string(s)][idx] = true
				mu.Unlock()
				got, err := b.OpenKey(context.Background(), m, s, aad)
				if err != nil || !bytes.Equal(got, k) {
					t.Errorf("open: %v", err)
				}
			}
		}()
	}
	wg.Wait()
	st := b.Stats()
	t.Logf("%d items in %d HSM ops", st.Items, st.HSMOps)
}

func BenchmarkNewKeyBatched(b *testing.B)   { benchNewKey(b, 64) }
func BenchmarkNewKeyUnbatched(b *testing.B) { benchNewKey(b, 1) }

func benchNewKey(b *testing.B, maxBatch int) {
	p := hsmtest.NewPool(b)
	m, _ := p.GenerateWrappedKey(context.Background())
	bt, _ := New(p, Config{MaxBatch: maxBatch})
	b.ReportAllocs()
	b.SetParallelism(32)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			k, _, _, err := bt.NewKey(context.Background(), m, []byte("hdr"))
			if err != nil {
				b.Fatal(err)
			}
			clear(k)
		}
	})
	st := bt.Stats()
	b.ReportMetric(float64(st.Items)/float64(max(st.HSMOps, 1)), "items/hsmop")
}

// TestGroupName: the name of a coalescing unit tells its parts apart
// wherever the bytes fall, so requests for different keys never share one.
func TestGroupName(t *testing.T) {
	names := map[string]bool{}
	for _, parts := range [][][]byte{
		{[]byte("ab"), []byte("c")}, {[]byte("a"), []byte("bc")}, {[]byte("abc"), nil}, {nil, []byte("abc")},
		{[]byte("a\x00"), []byte("b")}, {[]byte("a"), []byte("\x00b")},
	} {
		n := string(groupName(nil, 'n', parts...))
		if names[n] {
			t.Fatalf("parts %q share the name %q with another list", parts, n)
		}
		names[n] = true
		if o := string(groupName(nil, 'o', parts...)); names[o] {
			t.Fatalf("an OpenKey name equals a NewKey name: %q", o)
		}
	}
}
