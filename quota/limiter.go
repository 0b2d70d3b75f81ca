package quota

import (
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

var (
	// ErrThrottled means a request exceeded a quota. Its text is AWS's
	// ThrottlingException message.
	ErrThrottled = errors.New("You have exceeded the rate at which you may call KMS. Reduce the frequency of your calls.") //nolint:staticcheck // AWS's wording, sent to clients verbatim
)

// Config configures a Limiter. The zero Config enforces AWS's default
// quotas of a Region with the default symmetric rate (DefaultRates("")).
type Config struct {
	// Rates overrides the defaults: group -> requests per second for the
	// whole account (before Share). A rate < 0 means unlimited; a rate of
	// 0 refuses every call of the group. Groups not in Rates keep their
	// default; groups with neither are unlimited.
	Rates map[Group]float64
	// Bursts overrides the burst of a group, in requests. The default
	// burst is max(1, rate), and 0 for a rate of 0.
	Bursts map[Group]int
	// Region picks the defaults (see DefaultRates); "" means the default
	// symmetric rate of 5,500.
	Region string
	// Share is this node's share of the account's rates, in (0, 1];
	// 0 means 1. A cluster of N live nodes sets 1/N.
	Share float64
	// Now is the clock; nil means time.Now. Tests pass a fake clock.
	Now func() time.Time
}

// Validate reports the first invalid field of c.
func (c Config) Validate() error {
	for g, r := range c.Rates {
		if math.IsNaN(r) || math.IsInf(r, 0) {
			return fmt.Errorf("quota: Rates[%q] must be a finite number, got %v", g, r)
		}
	}
	for g, b := range c.Bursts {
		if b < 0 {
			return fmt.Errorf("quota: Bursts[%q] must not be negative, got %d", g, b)
		}
	}
	if math.IsNaN(c.Share) || c.Share < 0 || c.Share > 1 {
		return fmt.Errorf("quota: Share must be in [0, 1], got %v", c.Share)
	}
	return nil
}

// Limiter refuses requests that exceed the quotas of an account. It keeps
// one token bucket per account and group, made on first use. It is safe for
// concurrent use.
type Limiter struct {
	now func() time.Time

	// mu guards the maps and share. Allow holds it for reading while it
	// takes tokens, so SetShare, which holds it for writing, rescales every
	// bucket at once. Lock order: mu, then a bucket's rate.Limiter.
	mu        sync.RWMutex
	rates     map[Group]float64 // account-wide rates, defaults merged with Config.Rates
	bursts    map[Group]int     // Config.Bursts
	share     float64
	overrides map[bucketKey]float64 // SetRate
	buckets   map[bucketKey]*bucket

	// afterCheck, when set by a test, runs between allowAllRLocked's check
	// and its take, where a concurrent caller may empty a bucket.
	afterCheck func()
}

type bucketKey struct {
	account string
	group   Group
}

type bucket struct {
	lim       *rate.Limiter
	base      float64 // account-wide rate before share; < 0 unlimited. Guarded by Limiter.mu.
	unlimited bool    // guarded by Limiter.mu
	err       error   // returned when this bucket refuses
}

// New returns a Limiter for cfg, or cfg's validation error.
func New(cfg Config) (*Limiter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	l := &Limiter{
		now:       cfg.Now,
		rates:     DefaultRates(cfg.Region),
		bursts:    make(map[Group]int, len(cfg.Bursts)),
		share:     normShare(cfg.Share),
		overrides: make(map[bucketKey]float64),
		buckets:   make(map[bucketKey]*bucket),
	}
	if l.now == nil {
		l.now = time.Now
	}
	for g, r := range cfg.Rates {
		l.rates[g] = r
	}
	for g, b := range cfg.Bursts {
		l.bursts[g] = b
	}
	return l, nil
}

func normShare(s float64) float64 {
	if s <= 0 || s > 1 || math.IsNaN(s) {
		return 1
	}
	return s
}

// Allow takes one token from the bucket of account for each group and
// returns nil, or an error wrapping ErrThrottled that names the first group
// that refused. It is all-or-nothing: when one group refuses, tokens taken
// from the others are given back. Groups without a rate are unlimited.
// Passing no group allows the call.
func (l *Limiter) Allow(account string, groups ...Group) error {
	if len(groups) == 0 {
		return nil
	}
	now := l.now()
	l.mu.RLock()
	defer l.mu.RUnlock()
	if len(groups) == 1 {
		b, _ := l.bucketRLocked(account, groups[0])
		if b == nil || b.unlimited || b.lim.AllowN(now, 1) {
			return nil
		}
		return b.err
	}
	var stack [4]*bucket
	bs := stack[:0]
	for {
		var relocked bool
		bs, relocked = l.collectRLocked(bs[:0], account, groups)
		if !relocked {
			break
		}
		// A bucket was made and l.mu released meanwhile; look again under
		// one uninterrupted read lock, so that all groups see one share.
	}
	return l.allowAllRLocked(now, bs)
}

// collectRLocked appends to bs the limited buckets of account for groups,
// making the missing ones. It reports whether it released l.mu to do so.
func (l *Limiter) collectRLocked(bs []*bucket, account string, groups []Group) ([]*bucket, bool) {
	relocked := false
	for _, g := range groups {
		b, made := l.bucketRLocked(account, g)
		relocked = relocked || made
		if b != nil && !b.unlimited {
			bs = append(bs, b)
		}
	}
	return bs, relocked
}

// allowAllRLocked takes one token from each of bs or none. It first checks
// that every bucket holds a token, so that a refusal under overload changes
// nothing and allocates nothing, then takes a token from each, giving them
// back if a concurrent caller emptied a bucket in between. l.mu must be
// held for reading throughout.
func (l *Limiter) allowAllRLocked(now time.Time, bs []*bucket) error {
	if len(bs) == 0 {
		return nil
	}
	for _, b := range bs {
		if b.lim.TokensAt(now) < 1 {
			return b.err
		}
	}
	if l.afterCheck != nil {
		l.afterCheck()
	}
	var rstack [4]*rate.Reservation
	rs := rstack[:0]
	giveBack := func() {
		for _, r := range rs {
			r.CancelAt(now)
		}
	}
	for _, b := range bs[:len(bs)-1] {
		r := b.lim.ReserveN(now, 1)
		if !r.OK() || r.DelayFrom(now) > 0 {
			r.CancelAt(now)
			giveBack()
			return b.err
		}
		rs = append(rs, r)
	}
	// The last bucket needs no reservation: AllowN takes nothing when it
	// refuses.
	if last := bs[len(bs)-1]; !last.lim.AllowN(now, 1) {
		giveBack()
		return last.err
	}
	return nil
}

// bucketRLocked returns the bucket of account and g, making it if g has a
// rate, or nil if g has none. l.mu must be held for reading; made reports
// that it was released and retaken to make the bucket.
func (l *Limiter) bucketRLocked(account string, g Group) (b *bucket, made bool) {
	k := bucketKey{account, g}
	if b := l.buckets[k]; b != nil {
		return b, false
	}
	if _, ok := l.baseLocked(k); !ok {
		return nil, false
	}
	l.mu.RUnlock()
	l.mu.Lock()
	b = l.buckets[k]
	if b == nil {
		b = l.makeLocked(k)
	}
	l.mu.Unlock()
	l.mu.RLock()
	// b stays valid: buckets are never removed, and SetShare and SetRate
	// update them in place.
	return b, true
}

// baseLocked returns the account-wide rate of k before share. l.mu must be
// held.
func (l *Limiter) baseLocked(k bucketKey) (float64, bool) {
	if r, ok := l.overrides[k]; ok {
		return r, true
	}
	r, ok := l.rates[k.group]
	return r, ok
}

// makeLocked makes and registers the bucket of k, which must have a rate.
// l.mu must be held for writing.
func (l *Limiter) makeLocked(k bucketKey) *bucket {
	base, _ := l.baseLocked(k)
	lim, burst := l.limitsLocked(k.group, base)
	b := &bucket{
		lim:       rate.NewLimiter(lim, burst),
		base:      base,
		unlimited: base < 0,
		err:       fmt.Errorf("quota %s: %w", k.group, ErrThrottled),
	}
	l.buckets[k] = b
	return b
}

// limitsLocked returns the rate and burst of a bucket of group g whose
// account-wide rate is base, scaled by the share. l.mu must be held.
func (l *Limiter) limitsLocked(g Group, base float64) (rate.Limit, int) {
	if base < 0 {
		return rate.Inf, 0
	}
	r := base * l.share
	if b, ok := l.bursts[g]; ok {
		burst := int(math.Floor(float64(b) * l.share))
		if b > 0 && burst < 1 {
			burst = 1
		}
		return rate.Limit(r), burst
	}
	if base == 0 {
		return 0, 0
	}
	return rate.Limit(r), max(1, int(math.Floor(r)))
}

// setLocked applies the current share and base rate to b at now. l.mu must
// be held for writing.
func (l *Limiter) setLocked(now time.Time, g Group, b *bucket) {
	lim, burst := l.limitsLocked(g, b.base)
	wasUnlimited := b.unlimited
	b.unlimited = b.base < 0
	switch {
	case b.unlimited:
		// Allow does not consult b.lim.
	case wasUnlimited:
		// A limiter that was infinite has no meaningful token count.
		b.lim = rate.NewLimiter(lim, burst)
	default:
		b.lim.SetLimitAt(now, lim)
		b.lim.SetBurstAt(now, burst)
	}
}

// SetShare sets this node's share of every account's rates, in (0, 1], and
// rescales every existing bucket's rate and burst at once; a call of Allow
// sees either the old or the new share for all its groups. A share outside
// (0, 1] (or NaN) means 1. Tokens already in a bucket are kept, up to the
// new burst.
func (l *Limiter) SetShare(share float64) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.share = normShare(share)
	for k, b := range l.buckets {
		l.setLocked(now, k.group, b)
	}
}

// SetRate overrides the account-wide rate of group g for one account, in
// requests per second before share; rps < 0 means unlimited and 0 refuses
// every call. The burst follows Config.Bursts[g], or max(1, rps). NaN is
// ignored and +Inf means unlimited.
func (l *Limiter) SetRate(account string, g Group, rps float64) {
	if math.IsNaN(rps) {
		return
	}
	if math.IsInf(rps, 1) {
		rps = -1
	}
	now := l.now()
	k := bucketKey{account, g}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.overrides[k] = rps
	if b := l.buckets[k]; b != nil {
		b.base = rps
		l.setLocked(now, g, b)
		return
	}
	l.makeLocked(k)
}
