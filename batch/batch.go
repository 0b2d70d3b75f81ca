package batch

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// KeyLen is the size of a batch key.
const KeyLen = 32

// HSM seals and opens small secrets under wrapped key material; hsmpool.Pool
// is one. Seal's output and Open's input are the sealed form.
type HSM interface {
	Seal(ctx context.Context, wrapped, plaintext, aad []byte) ([]byte, error)
	Open(ctx context.Context, wrapped, sealed, aad []byte) ([]byte, error)
}

// Config configures a Batcher. Zero values mean defaults.
type Config struct {
	// MaxBatch is the most requests one HSM operation serves; 0 = 64,
	// 1 = no batching.
	MaxBatch int
	// OpTimeout bounds one HSM operation made on behalf of a batch; 0 = 10s.
	OpTimeout time.Duration
}

// Validate checks the config, naming the bad field.
func (c Config) Validate() error {
	if c.MaxBatch < 0 {
		return fmt.Errorf("batch: Config.MaxBatch %d must not be negative", c.MaxBatch)
	}
	if c.OpTimeout < 0 {
		return fmt.Errorf("batch: Config.OpTimeout %v must not be negative", c.OpTimeout)
	}
	return nil
}

// Batcher coalesces HSM work. Make one with New.
type Batcher struct {
	hsm HSM
	cfg Config
	// groups are the coalescing units by name (groupName); looked up with
	// a name built on the caller's stack, so a hit allocates nothing.
	mu     sync.RWMutex
	groups map[string]*group

	stats struct {
		ops, items atomic.Uint64
	}
}

// New returns a Batcher over hsm.
func New(hsm HSM, cfg Config) (*Batcher, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if hsm == nil {
		return nil, errors.New("batch: nil HSM")
	}
	if cfg.MaxBatch == 0 {
		cfg.MaxBatch = 64
	}
	if cfg.OpTimeout == 0 {
		cfg.OpTimeout = 10 * time.Second
	}
	return &Batcher{hsm: hsm, cfg: cfg, groups: map[string]*group{}}, nil
}

// Stats counts HSM operations made and requests served by them; their
// ratio is the mean batch size.
type Stats struct {
	HSMOps uint64
	Items  uint64
}

// Stats returns counters since New.
func (b *Batcher) Stats() Stats {
	return Stats{HSMOps: b.stats.ops.Load(), Items: b.stats.items.Load()}
}

// waiter is one request in a group's queue.
type waiter struct {
	done chan struct{} // closed when res is set, or when the waiter must lead
	lead bool          // set before done is closed: the waiter leads the next batch
	res  result
}

type result struct {
	key    []byte
	aead   cipher.AEAD // NewAEAD's, shared by the batch
	sealed []byte
	index  uint32
	err    error
}

// group is the queue of one coalescing unit (one key and material version
// for NewKey; one sealed batch key for OpenKey).
type group struct {
	mu      sync.Mutex
	queue   []*waiter
	leading bool
}

func (b *Batcher) group(name []byte) *group {
	b.mu.RLock()
	g := b.groups[string(name)]
	b.mu.RUnlock()
	if g != nil {
		return g
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if g = b.groups[string(name)]; g == nil {
		g = &group{}
		b.groups[string(name)] = g
	}
	return g
}

// groupName appends the name of a coalescing unit to buf: kind ('n' for
// NewKey, 'o' for OpenKey) and parts, each preceded by its length so that
// no two lists of parts share a name.
func groupName(buf []byte, kind byte, parts ...[]byte) []byte {
	buf = append(buf, kind)
	for _, p := range parts {
		buf = binary.AppendUvarint(buf, uint64(len(p)))
		buf = append(buf, p...)
	}
	return buf
}

// NewKey returns a fresh batch key, its sealed form (sealed by the HSM
// under material with aad), and an index unique among the requests that
// share this key (for deterministic, never-repeating nonces). Concurrent
// callers with the same aad and material share one key and one HSM call.
// The caller owns key and must zero it.
func (b *Batcher) NewKey(ctx context.Context, material, aad []byte) (key, sealed []byte, index uint32, err error) {
	r := b.newKey(ctx, material, aad, false)
	return r.key, r.sealed, r.index, r.err
}

// NewAEAD is NewKey for callers that only seal under the batch key: the
// requests that share a batch key share one AES-256-GCM instance made from
// it (stateless, so safe for concurrent use) instead of each getting a copy
// of the key and expanding it again; the key's bytes are zeroed once the
// instance is made.
func (b *Batcher) NewAEAD(ctx context.Context, material, aad []byte) (aead cipher.AEAD, sealed []byte, index uint32, err error) {
	r := b.newKey(ctx, material, aad, true)
	return r.aead, r.sealed, r.index, r.err
}

// newKey runs NewKey (each caller gets a copy of the key) and NewAEAD
// (shared says they share one AEAD made from it).
func (b *Batcher) newKey(ctx context.Context, material, aad []byte, shared bool) result {
	if b.cfg.MaxBatch == 1 {
		b.stats.ops.Add(1)
		b.stats.items.Add(1)
		var w waiter
		b.fresh(ctx, material, aad, shared, []*waiter{&w})
		return w.res
	}
	var buf [256]byte
	return b.run(ctx, groupName(buf[:0], 'n', aad, material), func(ctx context.Context, ws []*waiter) {
		b.fresh(ctx, material, aad, shared, ws)
	})
}

// fresh seals one fresh batch key for ws and sets their results.
func (b *Batcher) fresh(ctx context.Context, material, aad []byte, shared bool, ws []*waiter) {
	k, s, err := b.sealFresh(ctx, material, aad)
	defer clear(k)
	var aead cipher.AEAD
	if err == nil && shared {
		aead, err = newGCM(k)
	}
	for i, w := range ws {
		switch {
		case err != nil:
			w.res = result{err: err}
		case shared:
			w.res = result{aead: aead, sealed: s, index: uint32(i)}
		default:
			w.res = result{key: append([]byte(nil), k...), sealed: s, index: uint32(i)}
		}
	}
}

func newGCM(key []byte) (cipher.AEAD, error) {
	blk, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(blk)
}

// OpenKey unseals a batch key. Concurrent callers with the same material,
// sealed key and aad share one HSM call. The caller owns key and must zero it.
func (b *Batcher) OpenKey(ctx context.Context, material, sealed, aad []byte) ([]byte, error) {
	if b.cfg.MaxBatch == 1 {
		b.stats.ops.Add(1)
		b.stats.items.Add(1)
		return b.hsm.Open(ctx, material, sealed, aad)
	}
	var buf [256]byte
	name := groupName(buf[:0], 'o', aad, sealed, material)
	r := b.run(ctx, name, func(ctx context.Context, ws []*waiter) {
		k, err := b.hsm.Open(ctx, material, sealed, aad)
		for _, w := range ws {
			if err != nil {
				w.res = result{err: err}
				continue
			}
			w.res = result{key: append([]byte(nil), k...)}
		}
		clear(k)
	})
	if r.err == nil {
		// OpenKey groups are one-shot; drop idle ones so the map stays small.
		b.dropIdle(name)
	}
	return r.key, r.err
}

func (b *Batcher) sealFresh(ctx context.Context, material, aad []byte) ([]byte, []byte, error) {
	k := make([]byte, KeyLen)
	if _, err := rand.Read(k); err != nil {
		return nil, nil, err
	}
	s, err := b.hsm.Seal(ctx, material, k, aad)
	if err != nil {
		clear(k)
		return nil, nil, err
	}
	return k, s, nil
}

// run queues the caller in group name and returns its result. The first
// caller of an idle group leads: it drains the queue (up to MaxBatch), runs
// op for that batch, and hands the lead to the next queued waiter.
func (b *Batcher) run(ctx context.Context, name []byte, op func(context.Context, []*waiter)) result {
	g := b.group(name)
	w := &waiter{done: make(chan struct{})}
	g.mu.Lock()
	g.queue = append(g.queue, w)
	lead := !g.leading
	if lead {
		g.leading = true
	}
	g.mu.Unlock()

	for {
		if lead {
			b.lead(g, op)
			// The batch we led included us (we were first in the queue).
			<-w.done
			if !w.lead {
				return w.res
			}
		}
		select {
		case <-w.done:
		case <-ctx.Done():
			if b.abandon(g, w) {
				return result{err: ctx.Err()}
			}
			<-w.done // already taken into a batch: wait for its result
		}
		if !w.lead {
			return w.res
		}
		// Handed the lead: run the next batch.
		w.lead = false
		w.done = make(chan struct{})
		lead = true
		g.mu.Lock()
		g.queue = append([]*waiter{w}, g.queue...)
		g.mu.Unlock()
	}
}

// lead runs one batch of g and passes the lead on (or marks g idle).
func (b *Batcher) lead(g *group, op func(context.Context, []*waiter)) {
	// Under load, let the request goroutines that are runnable reach the
	// queue before the batch is taken: one HSM operation then serves more
	// of them. Idle, Gosched returns at once and nothing waits (no timer).
	runtime.Gosched()
	g.mu.Lock()
	n := min(len(g.queue), b.cfg.MaxBatch)
	batch := append([]*waiter(nil), g.queue[:n]...)
	g.queue = g.queue[n:]
	g.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), b.cfg.OpTimeout)
	op(ctx, batch)
	cancel()
	b.stats.ops.Add(1)
	b.stats.items.Add(uint64(len(batch)))

	g.mu.Lock()
	var next *waiter
	if len(g.queue) > 0 {
		next = g.queue[0]
		g.queue = g.queue[1:]
	} else {
		g.leading = false
	}
	g.mu.Unlock()
	for _, w := range batch {
		close(w.done)
	}
	if next != nil {
		next.lead = true
		close(next.done)
	}
}

// abandon removes w from g's queue if it is still there.
func (b *Batcher) abandon(g *group, w *waiter) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	for i, q := range g.queue {
		if q == w {
			g.queue = append(g.queue[:i], g.queue[i+1:]...)
			return true
		}
	}
	return false
}

func (b *Batcher) dropIdle(name []byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	g := b.groups[string(name)]
	if g == nil {
		return
	}
	g.mu.Lock()
	if !g.leading && len(g.queue) == 0 {
		delete(b.groups, string(name))
	}
	g.mu.Unlock()
}
