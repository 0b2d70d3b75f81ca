package cache

import (
	"bytes"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/ristretto/v2"
)

// DefaultMaxBytes is the total cost of a Cache whose Config.MaxBytes is 0.
const DefaultMaxBytes = 64 << 20

// entryOverhead is the cost of an entry beyond its key and value: the entry
// itself and ristretto's and the owner index's bookkeeping, roughly.
const entryOverhead = 256

// Config configures a Cache. The zero Config is a disabled cache.
type Config struct {
	// MaxAge is how long an entry may be served after Set. 0 disables
	// the cache: every Get misses and Set does nothing.
	MaxAge time.Duration
	// MaxUses is how many Gets an entry may serve; 0 means unlimited.
	MaxUses int
	// MaxBytes bounds the total cost of the entries: key + value +
	// a fixed per-entry overhead. 0 means DefaultMaxBytes.
	MaxBytes int64
	// Now is the clock MaxAge is measured by; nil means time.Now.
	Now func() time.Time
}

// Validate reports the first invalid field of c.
func (c Config) Validate() error {
	switch {
	case c.MaxAge < 0:
		return fmt.Errorf("cache: MaxAge must not be negative, got %v", c.MaxAge)
	case c.MaxUses < 0:
		return fmt.Errorf("cache: MaxUses must not be negative, got %d", c.MaxUses)
	case c.MaxBytes < 0:
		return fmt.Errorf("cache: MaxBytes must not be negative, got %d", c.MaxBytes)
	}
	return nil
}

// Stats counts what a Cache did since New.
type Stats struct {
	Hits      uint64 // Gets that returned a value
	Misses    uint64 // Gets that did not
	Evictions uint64 // entries ristretto evicted for room or age
	Purges    uint64 // calls of Purge
}

// Cache maps byte-string keys to secret values for a bounded time and
// number of uses. It is safe for concurrent use, but see Close.
type Cache struct {
	maxAge   time.Duration
	maxUses  int
	maxBytes int64
	now      func() time.Time

	rc     *ristretto.Cache[[]byte, *entry] // nil when disabled
	closed atomic.Bool
	once   sync.Once

	// mu guards owners, every owner's entries and every entry's
	// registered flag, and held. Lock order: mu, then an entry's mu.
	mu     sync.Mutex
	owners map[string]*ownerState
	held   int64 // total cost of registered entries

	hits, misses, evictions, purges atomic.Uint64

	// onStore, when set by a test, sees the cache's own copy of each key
	// and value Set stores, so the test can check it is zeroed later.
	onStore func(key, val []byte)
}

// ownerState is the index of one KMS key's entries.
type ownerState struct {
	name string
	// gen is bumped by Purge. An entry made under an older generation is
	// never served.
	gen atomic.Uint64
	// entries are the owner's registered entries; nil once the owner is
	// retired (purged, emptied or closed). Guarded by Cache.mu.
	entries map[*entry]struct{}
}

// entry is one cached value with its full key.
type entry struct {
	key   []byte      // immutable; not secret
	owner *ownerState // immutable
	gen   uint64      // owner's generation at Set; immutable
	born  time.Time
	cost  int64

	// registered: the entry is in owner.entries and counted in held.
	// Guarded by Cache.mu.
	registered bool

	mu   sync.Mutex
	dead bool   // val has been zeroed; guarded by mu
	uses int    // guarded by mu
	val  []byte // guarded by mu
}

// New returns a Cache for cfg, or cfg's validation error.
func New(cfg Config) (*Cache, error) {
	return newCache(cfg, nil)
}

// newCache is New with ristretto's key hash replaced by hash, when not nil,
// so that tests can make distinct keys collide.
func newCache(cfg Config, hash func([]byte) (uint64, uint64)) (*Cache, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := &Cache{
		maxAge:   cfg.MaxAge,
		maxUses:  cfg.MaxUses,
		maxBytes: cfg.MaxBytes,
		now:      cfg.Now,
		owners:   make(map[string]*ownerState),
	}
	if c.maxBytes == 0 {
		c.maxBytes = DefaultMaxBytes
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.maxAge == 0 {
		return c, nil
	}
	// ristretto suggests 10 counters per entry the cache can hold.
	counters := min(max(10*(c.maxBytes/(entryOverhead+64)), 1<<10), 1<<24)
	rc, err := ristretto.NewCache(&ristretto.Config[[]byte, *entry]{
		NumCounters:        counters,
		MaxCost:            c.maxBytes,
		BufferItems:        64,
		IgnoreInternalCost: true, // entryOverhead accounts for it
		KeyToHash:          hash,
		// Never replace a stored value in place: that would bypass
		// admission and eviction, and so MaxBytes. Set deletes first.
		ShouldUpdate: func(cur, prev *entry) bool { return false },
		OnEvict: func(it *ristretto.Item[*entry]) {
			if it.Value != nil && !c.closed.Load() {
				c.evictions.Add(1)
			}
		},
		// OnExit runs for every value ristretto lets go of: evicted,
		// rejected, deleted, expired, cleared.
		OnExit: c.release,
	})
	if err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	c.rc = rc
	return c, nil
}

// Get returns a copy of the value stored under key, if it is younger than
// MaxAge, has uses left and its owner has not been purged since it was
// Set; each Get consumes one use. The key is compared in full. ok is false
// otherwise, and then the stale entry, if any, is zeroed and dropped.
func (c *Cache) Get(key []byte) (val []byte, ok bool) {
	if c.rc == nil || c.closed.Load() {
		c.misses.Add(1)
		return nil, false
	}
	e, found := c.rc.Get(key)
	if !found || e == nil {
		c.misses.Add(1)
		return nil, false
	}
	val, res := e.use(key, c.now(), c.maxAge, c.maxUses)
	if res == useStale || res == useLast {
		// Drop it now rather than at eviction. If another entry has
		// replaced it meanwhile, that one goes too: only a miss.
		c.rc.Del(key)
	}
	if res == useMiss || res == useStale {
		c.misses.Add(1)
		return nil, false
	}
	c.hits.Add(1)
	return val, true
}

type useResult int

const (
	useHit   useResult = iota
	useLast            // a hit that consumed the last use
	useMiss            // the entry is for another key, or already dead
	useStale           // expired or purged: zeroed now
)

// use serves one Get from e.
func (e *entry) use(key []byte, now time.Time, maxAge time.Duration, maxUses int) ([]byte, useResult) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.dead || !bytes.Equal(e.key, key) {
		return nil, useMiss
	}
	if e.gen != e.owner.gen.Load() || now.Sub(e.born) >= maxAge {
		e.killLocked()
		return nil, useStale
	}
	e.uses++
	val := bytes.Clone(e.val)
	if val == nil {
		val = []byte{}
	}
	if maxUses > 0 && e.uses >= maxUses {
		e.killLocked()
		return val, useLast
	}
	return val, useHit
}

func (e *entry) kill() {
	e.mu.Lock()
	e.killLocked()
	e.mu.Unlock()
}

// killLocked zeroes the value and marks e dead. Idempotent.
func (e *entry) killLocked() {
	if e.dead {
		return
	}
	clear(e.val)
	e.dead = true
}

// Set stores a copy of val under key, owned by owner (a KMS key id), so
// that Purge(owner) drops it. Set replaces an entry stored under key. It
// may drop the entry (ristretto's admission policy and buffers decide), so
// a later Get may miss; call Wait to make an admitted entry visible.
func (c *Cache) Set(owner string, key, val []byte) {
	if c.rc == nil || c.closed.Load() {
		return
	}
	cost := int64(len(key)+len(val)) + entryOverhead
	if cost > c.maxBytes {
		return
	}
	buf := make([]byte, len(key)+len(val))
	copy(buf, key)
	copy(buf[len(key):], val)
	e := &entry{
		key:  buf[:len(key):len(key)],
		val:  buf[len(key):],
		born: c.now(),
		cost: cost,
	}

	c.mu.Lock()
	o := c.owners[owner]
	if o == nil {
		o = &ownerState{name: owner, entries: make(map[*entry]struct{})}
		c.owners[owner] = o
	}
	e.owner = o
	e.gen = o.gen.Load()
	o.entries[e] = struct{}{}
	e.registered = true
	c.held += cost
	c.mu.Unlock()

	if c.onStore != nil {
		c.onStore(e.key, e.val)
	}
	// Delete what is stored under key first, so that the new entry goes
	// through admission and eviction like any other. (Two concurrent Sets
	// of one key may still leave ristretto charging the second's cost for
	// the first's value.)
	c.rc.Del(key)
	// ristretto's own TTL, by the wall clock, lets its sweep zero entries
	// nobody asks for; Get checks MaxAge by c.now.
	if !c.rc.SetWithTTL(key, e, cost, c.maxAge) {
		c.release(e) // dropped: ristretto will not call OnExit
	}
}

// release zeroes e and takes it out of the owner index. It is ristretto's
// OnExit, and may be called more than once for an entry, or with nil.
func (c *Cache) release(e *entry) {
	if e == nil {
		return
	}
	e.kill()
	c.mu.Lock()
	defer c.mu.Unlock()
	if !e.registered {
		return
	}
	e.registered = false
	c.held -= e.cost
	o := e.owner
	delete(o.entries, e)
	if len(o.entries) == 0 && c.owners[o.name] == o {
		delete(c.owners, o.name)
		o.entries = nil
	}
}

// Purge makes every entry of owner unreachable at once and zeroes them.
// After Purge returns, no Get returns an entry Set before Purge was called.
// Entries Set concurrently with Purge may survive it.
func (c *Cache) Purge(owner string) {
	c.purges.Add(1)
	if c.rc == nil {
		return
	}
	c.mu.Lock()
	o := c.owners[owner]
	if o == nil {
		c.mu.Unlock()
		return
	}
	// From here on no Get serves an entry of o: each checks o.gen.
	o.gen.Add(1)
	victims := o.entries
	o.entries = nil
	delete(c.owners, owner)
	for e := range victims {
		e.registered = false
		c.held -= e.cost
	}
	c.mu.Unlock()

	for e := range victims {
		e.kill()
		c.rc.Del(e.key)
	}
}

// Wait blocks until every Set made before it has been applied or dropped.
func (c *Cache) Wait() {
	if c.rc == nil || c.closed.Load() {
		return
	}
	c.rc.Wait()
}

// Close zeroes every entry and releases the cache's goroutines. It must not
// run concurrently with other calls; afterwards every call is a no-op and
// Get misses. Close is idempotent.
func (c *Cache) Close() {
	c.once.Do(func() {
		if c.rc == nil {
			return
		}
		c.closed.Store(true)
		c.rc.Close() // clears: OnExit for every stored and buffered entry
		// Zero whatever ristretto let go of without telling.
		c.mu.Lock()
		defer c.mu.Unlock()
		for name, o := range c.owners {
			for e := range o.entries {
				e.kill()
				e.registered = false
				c.held -= e.cost
			}
			o.entries = nil
			delete(c.owners, name)
		}
	})
}

// Stats returns the counters. They are read one by one, not as a snapshot.
func (c *Cache) Stats() Stats {
	return Stats{
		Hits:      c.hits.Load(),
		Misses:    c.misses.Load(),
		Evictions: c.evictions.Load(),
		Purges:    c.purges.Load(),
	}
}
