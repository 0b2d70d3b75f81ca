package cache

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeClock is a clock that moves only when told to.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// testCache is a Cache with a fake clock that remembers the cache's own
// copy of every value stored, by key.
type testCache struct {
	*Cache
	clk *fakeClock

	hookMu sync.Mutex
	stored map[string][][]byte // guarded by hookMu
}

// newTestCache returns a cache for cfg (MaxAge defaults to an hour) with a
// fake clock; hash, when not nil, replaces ristretto's key hash.
func newTestCache(t testing.TB, cfg Config, hash func([]byte) (uint64, uint64)) *testCache {
	t.Helper()
	clk := &fakeClock{t: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	if cfg.Now == nil {
		cfg.Now = clk.Now
	}
	c, err := newCache(cfg, hash)
	if err != nil {
		t.Fatalf("newCache: %v", err)
	}
	tc := &testCache{Cache: c, clk: clk, stored: make(map[string][][]byte)}
	c.onStore = func(key, val []byte) {
		tc.hookMu.Lock()
		defer tc.hookMu.Unlock()
		tc.stored[string(key)] = append(tc.stored[string(key)], val)
	}
	t.Cleanup(c.Close)
	return tc
}

// set is Set followed by Wait.
func (tc *testCache) set(owner, key, val string) {
	tc.Set(owner, []byte(key), []byte(val))
	tc.Wait()
}

func (tc *testCache) get(key string) (string, bool) {
	v, ok := tc.Get([]byte(key))
	return string(v), ok
}

// copies returns the cache's own copies of the values stored under key.
func (tc *testCache) copies(key string) [][]byte {
	tc.hookMu.Lock()
	defer tc.hookMu.Unlock()
	return tc.stored[key]
}

func isZero(b []byte) bool {
	for _, x := range b {
		if x != 0 {
			return false
		}
	}
	return true
}

// requireZeroed fails unless every copy of key's values is all zero.
func (tc *testCache) requireZeroed(t *testing.T, key string) {
	t.Helper()
	cs := tc.copies(key)
	if len(cs) == 0 {
		t.Fatalf("no value was stored under %q", key)
	}
	for i, v := range cs {
		if !isZero(v) {
			t.Errorf("copy %d of %q's value is not zeroed: %q", i, key, v)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name  string
		cfg   Config
		field string
	}{
		{"zero", Config{}, ""},
		{"full", Config{MaxAge: time.Minute, MaxUses: 3, MaxBytes: 1 << 20}, ""},
		{"negative MaxAge", Config{MaxAge: -time.Second}, "MaxAge"},
		{"negative MaxUses", Config{MaxAge: time.Second, MaxUses: -1}, "MaxUses"},
		{"negative MaxBytes", Config{MaxAge: time.Second, MaxBytes: -1}, "MaxBytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			switch {
			case tt.field == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tt.field != "" && (err == nil || !strings.Contains(err.Error(), tt.field)):
				t.Fatalf("Validate = %v, want an error naming %s", err, tt.field)
			}
			c, nerr := New(tt.cfg)
			if (nerr == nil) != (err == nil) {
				t.Fatalf("New = %v, Validate = %v", nerr, err)
			}
			if c != nil {
				c.Close()
			}
		})
	}
}

func TestHitMiss(t *testing.T) {
	tc := newTestCache(t, Config{MaxAge: time.Hour}, nil)
	tc.set("key-1", "blob-a", "plaintext-a")
	tc.set("key-1", "blob-b", "")
	tc.set("key-2", "blob-c", "plaintext-c")

	tests := []struct {
		key, want string
		ok        bool
	}{
		{"blob-a", "plaintext-a", true},
		{"blob-a", "plaintext-a", true}, // unlimited uses
		{"blob-b", "", true},            // empty values are values
		{"blob-c", "plaintext-c", true},
		{"blob-d", "", false},
		{"blob-", "", false},
		{"", "", false},
	}
	for _, tt := range tests {
		got, ok := tc.get(tt.key)
		if ok != tt.ok || got != tt.want {
			t.Errorf("Get(%q) = %q, %v; want %q, %v", tt.key, got, ok, tt.want, tt.ok)
		}
	}
	if s := tc.Stats(); s.Hits != 4 || s.Misses != 3 {
		t.Errorf("Stats = %+v, want 4 hits and 3 misses", s)
	}

	// Set replaces.
	tc.set("key-1", "blob-a", "plaintext-a2")
	if got, ok := tc.get("blob-a"); !ok || got != "plaintext-a2" {
		t.Errorf("after replace, Get = %q, %v", got, ok)
	}
	if first := tc.copies("blob-a")[0]; !isZero(first) {
		t.Errorf("replaced value not zeroed: %q", first)
	}
}

func TestCopies(t *testing.T) {
	tc := newTestCache(t, Config{MaxAge: time.Hour}, nil)
	key, val := []byte("blob"), []byte("secret")
	tc.Set("k", key, val)
	tc.Wait()
	key[0], val[0] = 'X', 'X'
	got, ok := tc.Get([]byte("blob"))
	if !ok || string(got) != "secret" {
		t.Fatalf("Get = %q, %v: Set did not copy", got, ok)
	}
	got[0] = 'Y'
	if again, _ := tc.Get([]byte("blob")); string(again) != "secret" {
		t.Fatalf("Get = %q: Get did not return a copy", again)
	}
}

// TestFullKeyCompared forces every key to one hash: ristretto cannot tell
// them apart, the cache must.
func TestFullKeyCompared(t *testing.T) {
	collide := func([]byte) (uint64, uint64) { return 42, 0 }
	tc := newTestCache(t, Config{MaxAge: time.Hour}, collide)
	tc.set("key-1", "blob-a", "plaintext-a")
	if _, ok := tc.get("blob-b"); ok {
		t.Fatal("Get(blob-b) hit blob-a's entry")
	}
	if got, ok := tc.get("blob-a"); !ok || got != "plaintext-a" {
		t.Fatalf("Get(blob-a) = %q, %v", got, ok)
	}
	// A colliding Set replaces; the old key then misses.
	tc.set("key-2", "blob-b", "plaintext-b")
	if _, ok := tc.get("blob-a"); ok {
		t.Fatal("Get(blob-a) hit after blob-b replaced it")
	}
	if got, ok := tc.get("blob-b"); !ok || got != "plaintext-b" {
		t.Fatalf("Get(blob-b) = %q, %v", got, ok)
	}
	tc.requireZeroed(t, "blob-a")
}

func TestMaxAge(t *testing.T) {
	const maxAge = time.Minute
	tests := []struct {
		age time.Duration
		hit bool
	}{
		{0, true},
		{maxAge / 2, true},
		{maxAge - time.Nanosecond, true},
		{maxAge, false},
		{2 * maxAge, false},
	}
	for _, tt := range tests {
		t.Run(tt.age.String(), func(t *testing.T) {
			tc := newTestCache(t, Config{MaxAge: maxAge}, nil)
			tc.set("k", "blob", "secret")
			tc.clk.Advance(tt.age)
			if _, ok := tc.get("blob"); ok != tt.hit {
				t.Fatalf("Get at age %v: hit = %v, want %v", tt.age, ok, tt.hit)
			}
			if !tt.hit {
				tc.requireZeroed(t, "blob")
				tc.clk.Advance(-tt.age) // still gone
				if _, ok := tc.get("blob"); ok {
					t.Fatal("an expired entry came back")
				}
			}
		})
	}
}

func TestMaxUses(t *testing.T) {
	for _, uses := range []int{1, 2, 5} {
		t.Run(fmt.Sprint(uses), func(t *testing.T) {
			tc := newTestCache(t, Config{MaxAge: time.Hour, MaxUses: uses}, nil)
			tc.set("k", "blob", "secret")
			for i := range uses {
				if got, ok := tc.get("blob"); !ok || got != "secret" {
					t.Fatalf("use %d: Get = %q, %v", i+1, got, ok)
				}
			}
			if _, ok := tc.get("blob"); ok {
				t.Fatalf("use %d of %d hit", uses+1, uses)
			}
			tc.requireZeroed(t, "blob")
			// A fresh Set starts a fresh count.
			tc.set("k", "blob", "secret")
			if _, ok := tc.get("blob"); !ok {
				t.Fatal("Get after a fresh Set missed")
			}
		})
	}
}

func TestDisabled(t *testing.T) {
	for _, cfg := range []Config{{}, {MaxUses: 3, MaxBytes: 1 << 20}} {
		c, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		c.Set("k", []byte("blob"), []byte("secret"))
		c.Wait()
		if _, ok := c.Get([]byte("blob")); ok {
			t.Fatal("a disabled cache hit")
		}
		c.Purge("k")
		if s := c.Stats(); s.Hits != 0 || s.Misses != 1 || s.Purges != 1 {
			t.Fatalf("Stats = %+v", s)
		}
		c.Close()
		c.Close()
	}
}

func TestPurge(t *testing.T) {
	tc := newTestCache(t, Config{MaxAge: time.Hour}, nil)
	tc.set("key-1", "blob-a", "a")
	tc.set("key-1", "blob-b", "b")
	tc.set("key-2", "blob-c", "c")
	tc.Purge("key-1")
	for _, k := range []string{"blob-a", "blob-b"} {
		if _, ok := tc.get(k); ok {
			t.Errorf("Get(%q) hit after Purge", k)
		}
		tc.requireZeroed(t, k)
	}
	if _, ok := tc.get("blob-c"); !ok {
		t.Error("Purge(key-1) dropped key-2's entry")
	}
	tc.Purge("no-such-key")
	// The owner works again after a purge.
	tc.set("key-1", "blob-a", "a2")
	if got, ok := tc.get("blob-a"); !ok || got != "a2" {
		t.Errorf("Get after re-Set = %q, %v", got, ok)
	}
	if s := tc.Stats(); s.Purges != 2 {
		t.Errorf("Purges = %d, want 2", s.Purges)
	}
	tc.Wait()
	tc.Cache.mu.Lock()
	defer tc.Cache.mu.Unlock()
	if n := len(tc.owners); n != 2 {
		t.Errorf("%d owners indexed, want 2", n)
	}
}

func TestZeroedOnClose(t *testing.T) {
	tc := newTestCache(t, Config{MaxAge: time.Hour}, nil)
	tc.set("key-1", "blob-a", "a")
	tc.set("key-2", "blob-b", "b")
	tc.Close()
	tc.requireZeroed(t, "blob-a")
	tc.requireZeroed(t, "blob-b")
	if _, ok := tc.get("blob-a"); ok {
		t.Error("Get hit after Close")
	}
	tc.Set("k", []byte("x"), []byte("y")) // no-ops, no panics
	tc.Purge("key-1")
	tc.Wait()
	tc.Cache.mu.Lock()
	defer tc.Cache.mu.Unlock()
	if tc.held != 0 || len(tc.owners) != 0 {
		t.Errorf("after Close: held %d, %d owners", tc.held, len(tc.owners))
	}
}

// TestMaxBytes overfills a small cache from several goroutines: the total
// cost never exceeds MaxBytes, evictions happen and every entry that is
// gone has been zeroed.
func TestMaxBytes(t *testing.T) {
	const (
		maxBytes = 16 << 10
		valLen   = 700
		workers  = 4
		perW     = 300
	)
	tc := newTestCache(t, Config{MaxAge: time.Hour, MaxBytes: maxBytes}, nil)
	val := strings.Repeat("v", valLen)

	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perW {
				key := fmt.Sprintf("w%d-blob-%04d", w, i)
				tc.Set(fmt.Sprint("key-", i%7), []byte(key), []byte(val))
				if i%10 == 0 {
					tc.Wait()
					if used := tc.rc.MaxCost() - tc.rc.RemainingCost(); used > maxBytes {
						t.Errorf("ristretto holds cost %d > MaxBytes %d", used, maxBytes)
					}
				}
			}
		}()
	}
	wg.Wait()
	tc.Wait()
	tc.Cache.mu.Lock()
	held := tc.held
	tc.Cache.mu.Unlock()
	if held > maxBytes {
		t.Errorf("entries hold cost %d > MaxBytes %d", held, maxBytes)
	}
	if used := tc.rc.MaxCost() - tc.rc.RemainingCost(); used > maxBytes {
		t.Errorf("ristretto holds cost %d > MaxBytes %d", used, maxBytes)
	}
	if s := tc.Stats(); s.Evictions == 0 {
		t.Errorf("no evictions after offering %d bytes to a %d-byte cache", workers*perW*valLen, maxBytes)
	}

	// Every value that is not served any more is zeroed; what is served is
	// intact; and the live ones fit.
	live := 0
	for w := range workers {
		for i := range perW {
			key := fmt.Sprintf("w%d-blob-%04d", w, i)
			got, ok := tc.get(key)
			cs := tc.copies(key)
			if len(cs) != 1 {
				t.Fatalf("%d copies of %q", len(cs), key)
			}
			if ok {
				live++
				if got != val || isZero(cs[0]) {
					t.Fatalf("live entry %q damaged", key)
				}
			} else if !isZero(cs[0]) {
				t.Fatalf("entry %q is gone but its value was not zeroed", key)
			}
		}
	}
	if cost := int64(live) * (entryOverhead + valLen + 12); cost > maxBytes || live == 0 {
		t.Errorf("%d live entries (cost %d) in a %d-byte cache", live, cost, maxBytes)
	}
	t.Logf("%d live entries, %+v", live, tc.Stats())
}

// TestPurgeRace has goroutines Set and Get the entries of a few owners while
// others Purge them, and checks the contract: once Purge has returned, no
// Get returns a value whose Set returned before Purge was called.
func TestPurgeRace(t *testing.T) {
	const (
		owners   = 4
		keys     = 8 // per owner
		setters  = 4
		purgers  = 2
		rounds   = 2000 // per purger
		maxWrite = 1 << 20
	)
	c, err := New(Config{MaxAge: time.Hour, MaxUses: 0})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	// Values are 8-byte write ids (+ padding); doneAt[id] is a stamp taken
	// after the Set of id returned.
	var clock, nextID atomic.Int64
	doneAt := make([]atomic.Int64, maxWrite)
	key := func(o, k int) []byte { return fmt.Appendf(nil, "owner-%d/blob-%d", o, k) }
	value := func(id int64) []byte {
		v := make([]byte, 32)
		binary.BigEndian.PutUint64(v, uint64(id))
		return v
	}

	var stop atomic.Bool
	var bg sync.WaitGroup
	for s := range setters {
		bg.Add(1)
		go func() {
			defer bg.Done()
			for i := s; !stop.Load(); i++ {
				id := nextID.Add(1)
				if id >= maxWrite {
					return
				}
				o, k := i%owners, (i/owners)%keys
				c.Set(fmt.Sprint("key-", o), key(o, k), value(id))
				doneAt[id].Store(clock.Add(1))
				if i%5 == 0 {
					c.Get(key(o, (k+1)%keys))
				}
				if i%16 == 0 {
					c.Wait() // keep ristretto's buffer short, as real traffic would
				}
			}
		}()
	}

	var violations atomic.Int64
	var pw sync.WaitGroup
	for p := range purgers {
		pw.Add(1)
		go func() {
			defer pw.Done()
			for r := range rounds {
				o := (p + r) % owners
				// A Set of our own that certainly precedes the Purge.
				id := nextID.Add(1)
				if id >= maxWrite {
					t.Error("ran out of write ids")
					return
				}
				c.Set(fmt.Sprint("key-", o), key(o, 0), value(id))
				doneAt[id].Store(clock.Add(1))
				if r%4 == 0 {
					c.Wait()
				}

				start := clock.Add(1)
				c.Purge(fmt.Sprint("key-", o))
				for k := range keys {
					v, ok := c.Get(key(o, k))
					if !ok {
						continue
					}
					got := int64(binary.BigEndian.Uint64(v))
					if d := doneAt[got].Load(); d != 0 && d < start {
						violations.Add(1)
						t.Errorf("round %d: Get(%s) returned write %d, Set before Purge", r, key(o, k), got)
					}
				}
			}
		}()
	}
	pw.Wait()
	stop.Store(true)
	bg.Wait()
	if violations.Load() == 0 {
		t.Logf("%d writes, %+v", nextID.Load(), c.Stats())
	}
}

// TestZeroedOnEviction checks the value ristretto evicts for room is zeroed.
func TestZeroedOnEviction(t *testing.T) {
	const valLen = 1000
	tc := newTestCache(t, Config{MaxAge: time.Hour, MaxBytes: 4 * (entryOverhead + valLen + 8)}, nil)
	val := strings.Repeat("s", valLen)
	for i := range 50 {
		tc.set("k", fmt.Sprintf("blob-%02d", i), val)
	}
	if tc.Stats().Evictions == 0 {
		t.Fatal("nothing evicted")
	}
	gone := 0
	for i := range 50 {
		key := fmt.Sprintf("blob-%02d", i)
		if _, ok := tc.get(key); ok {
			continue
		}
		gone++
		tc.requireZeroed(t, key)
	}
	if gone < 46 {
		t.Fatalf("only %d of 50 entries gone from a 4-entry cache", gone)
	}
}

// benchKeys returns n 32-byte keys and a 32-byte value.
func benchKeys(n int) ([][]byte, []byte) {
	keys := make([][]byte, n)
	for i := range keys {
		keys[i] = bytes.Repeat([]byte{byte(i), byte(i >> 8)}, 16) // 32 bytes, like a SHA-256
	}
	return keys, bytes.Repeat([]byte{7}, 32) // a data key
}

func BenchmarkGet(b *testing.B) {
	c, err := New(Config{MaxAge: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	keys, val := benchKeys(1024)
	for _, k := range keys {
		c.Set("key-1", k, val)
	}
	c.Wait()
	for _, k := range keys {
		if _, ok := c.Get(k); !ok {
			b.Fatal("miss after Set and Wait")
		}
	}
	var seed atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := int(seed.Add(97))
		for pb.Next() {
			v, ok := c.Get(keys[i&1023])
			if !ok || len(v) != 32 {
				b.Fatal("miss")
			}
			i++
		}
	})
}

// BenchmarkGetBaseline is BenchmarkGet's twin: a sync.Map load plus the
// copy Get makes.
func BenchmarkGetBaseline(b *testing.B) {
	var m sync.Map
	keys, val := benchKeys(1024)
	for _, k := range keys {
		m.Store(string(k), val)
	}
	var seed atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := int(seed.Add(97))
		for pb.Next() {
			v, ok := m.Load(string(keys[i&1023]))
			if !ok {
				b.Fatal("miss")
			}
			if c := bytes.Clone(v.([]byte)); len(c) != 32 {
				b.Fatal("short")
			}
			i++
		}
	})
}

func BenchmarkSet(b *testing.B) {
	c, err := New(Config{MaxAge: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	keys, val := benchKeys(1 << 14)
	var seed atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := int(seed.Add(97))
		for pb.Next() {
			c.Set("key-1", keys[i&(1<<14-1)], val)
			i++
		}
	})
}

// BenchmarkSetBaseline is BenchmarkSet's twin: a sync.Map store of a copy.
func BenchmarkSetBaseline(b *testing.B) {
	var m sync.Map
	keys, val := benchKeys(1 << 14)
	var seed atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := int(seed.Add(97))
		for pb.Next() {
			m.Store(string(keys[i&(1<<14-1)]), bytes.Clone(val))
			i++
		}
	})
}
