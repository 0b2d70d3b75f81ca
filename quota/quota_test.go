package quota

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

// fakeClock is a clock that moves only when told to.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
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

func newTestLimiter(t testing.TB, cfg Config) (*Limiter, *fakeClock) {
	t.Helper()
	clk := newFakeClock()
	if cfg.Now == nil {
		cfg.Now = clk.Now
	}
	l, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return l, clk
}

func TestDefaultRates(t *testing.T) {
	tests := []struct {
		region string
		group  Group
		want   float64
	}{
		{"", Symmetric, 5500},
		{"sa-east-1", Symmetric, 5500},
		{"us-east-2", Symmetric, 10000},
		{"ap-northeast-1", Symmetric, 10000},
		{"eu-west-2", Symmetric, 10000},
		{"us-east-1", Symmetric, 50000},
		{"us-west-2", Symmetric, 50000},
		{"eu-west-1", Symmetric, 50000},
		{"us-east-1", RSA, 500},
		{"us-east-1", ECC, 300},
		{"cn-north-1", SM, 300},
		{"", "gdkp:ECC_NIST_P256", 100},
		{"", "gdkp:ECC_SECG_P256K1", 100},
		{"", "gdkp:RSA_2048", 1},
		{"", "gdkp:RSA_3072", 0.5},
		{"", "gdkp:RSA_4096", 0.1},
		{"", "gdkp:SM2", 25},
		{"", "op:CancelKeyDeletion", 5},
		{"", "op:CreateGrant", 50},
		{"", "op:CreateKey", 5},
		{"", "op:DeleteAlias", 15},
		{"", "op:DescribeKey", 2000},
		{"", "op:EnableKeyRotation", 15},
		{"", "op:GetKeyPolicy", 1000},
		{"", "op:GetParametersForImport", 0.25},
		{"", "op:ListGrants", 100},
		{"", "op:ListResourceTags", 2000},
		{"", "op:RetireGrant", 30},
		{"", "op:TagResource", 10},
		{"", "op:UpdatePrimaryRegion", 5},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/%s", tt.region, tt.group), func(t *testing.T) {
			got, ok := DefaultRates(tt.region)[tt.group]
			if !ok || got != tt.want {
				t.Errorf("DefaultRates(%q)[%q] = %v, %v; want %v", tt.region, tt.group, got, ok, tt.want)
			}
		})
	}
	if n := len(DefaultRates("")); n != 4+8+38 {
		t.Errorf("DefaultRates has %d groups, want 50", n)
	}
	m := DefaultRates("")
	m[Symmetric] = 1
	if DefaultRates("")[Symmetric] != 5500 {
		t.Error("DefaultRates returned a shared map")
	}
}

func TestGroupFor(t *testing.T) {
	tests := []struct {
		op, spec string
		want     []Group
	}{
		{"Encrypt", "SYMMETRIC_DEFAULT", []Group{Symmetric}},
		{"Decrypt", "SYMMETRIC_DEFAULT", []Group{Symmetric}},
		{"ReEncrypt", "", []Group{Symmetric}},
		{"GenerateDataKey", "SYMMETRIC_DEFAULT", []Group{Symmetric}},
		{"GenerateDataKeyWithoutPlaintext", "SYMMETRIC_DEFAULT", []Group{Symmetric}},
		{"GenerateMac", "HMAC_256", []Group{Symmetric}},
		{"VerifyMac", "HMAC_512", []Group{Symmetric}},
		{"GenerateRandom", "", []Group{Symmetric}},
		{"Encrypt", "RSA_2048", []Group{RSA}},
		{"Decrypt", "RSA_4096", []Group{RSA}},
		{"Sign", "RSA_3072", []Group{RSA}},
		{"Verify", "RSA_2048", []Group{RSA}},
		{"Sign", "ECC_NIST_P256", []Group{ECC}},
		{"Verify", "ECC_SECG_P256K1", []Group{ECC}},
		{"Sign", "SM2", []Group{SM}},
		{"DeriveSharedSecret", "ECC_NIST_P384", []Group{ECC}},
		{"DeriveSharedSecret", "SM2", []Group{SM}},
		{"Sign", "SYMMETRIC_DEFAULT", []Group{Symmetric}},
		{"GenerateDataKeyPair", "RSA_2048", []Group{"gdkp:RSA_2048"}},
		{"GenerateDataKeyPairWithoutPlaintext", "ECC_NIST_P384", []Group{"gdkp:ECC_NIST_P384"}},
		{"GenerateDataKeyPair", "BOGUS", []Group{"gdkp:BOGUS"}},
		{"CreateKey", "", []Group{"op:CreateKey"}},
		{"DescribeKey", "RSA_2048", []Group{"op:DescribeKey"}},
		{"GetParametersForImport", "", []Group{"op:GetParametersForImport"}},
		{"ScheduleKeyDeletion", "", []Group{"op:ScheduleKeyDeletion"}},
		{"NoSuchOperation", "", nil},
		{"", "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.op+"/"+tt.spec, func(t *testing.T) {
			got := GroupFor(tt.op, tt.spec)
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("GroupFor(%q, %q) = %v, want %v", tt.op, tt.spec, got, tt.want)
			}
		})
	}
	// Every management operation with a default rate has a group that has one.
	rates := DefaultRates("")
	for op := range opRates {
		for _, g := range GroupFor(op, "") {
			if _, ok := rates[g]; !ok {
				t.Errorf("GroupFor(%q) = %q, which has no default rate", op, g)
			}
		}
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name  string
		cfg   Config
		field string // "" means valid
	}{
		{"zero", Config{}, ""},
		{"full", Config{Rates: map[Group]float64{Symmetric: -1, "op:CreateKey": 0}, Bursts: map[Group]int{RSA: 0}, Share: 0.5}, ""},
		{"share one", Config{Share: 1}, ""},
		{"NaN rate", Config{Rates: map[Group]float64{Symmetric: math.NaN()}}, "Rates"},
		{"Inf rate", Config{Rates: map[Group]float64{Symmetric: math.Inf(1)}}, "Rates"},
		{"negative burst", Config{Bursts: map[Group]int{Symmetric: -1}}, "Bursts"},
		{"negative share", Config{Share: -0.1}, "Share"},
		{"share above one", Config{Share: 1.5}, "Share"},
		{"NaN share", Config{Share: math.NaN()}, "Share"},
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
			if _, nerr := New(tt.cfg); (nerr == nil) != (err == nil) {
				t.Fatalf("New = %v, Validate = %v", nerr, err)
			}
		})
	}
}

// simulate offers load requests per second, evenly spaced, to g for d of
// fake time and returns how many were accepted.
func simulate(l *Limiter, clk *fakeClock, g Group, load float64, d time.Duration) int {
	n := int(load * d.Seconds())
	step := time.Duration(float64(time.Second) / load)
	accepted := 0
	for range n {
		if l.Allow("111122223333", g) == nil {
			accepted++
		}
		clk.Advance(step)
	}
	return accepted
}

func TestSustainedRate(t *testing.T) {
	tests := []struct {
		group Group
		share float64
		secs  int
	}{
		{Symmetric, 1, 10},
		{Symmetric, 0.5, 10},
		{RSA, 1, 10},
		{ECC, 0.25, 10},
		{"op:CreateKey", 1, 10},
		{"op:DescribeKey", 1, 10},
		{"op:DescribeKey", 1.0 / 3, 10},
		{"gdkp:ECC_NIST_P256", 1, 10},
		{"op:GetParametersForImport", 1, 400},
		{"gdkp:RSA_4096", 1, 1000},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/share=%.2f", tt.group, tt.share), func(t *testing.T) {
			l, clk := newTestLimiter(t, Config{Share: tt.share})
			r := DefaultRates("")[tt.group] * tt.share
			burst := max(1, math.Floor(r))
			got := simulate(l, clk, tt.group, 2*r, time.Duration(tt.secs)*time.Second)
			want := r*float64(tt.secs) + burst
			if math.Abs(float64(got)-want) > 0.05*want {
				t.Errorf("accepted %d of %.0f offered over %ds, want %.1f ± 5%%", got, 2*r*float64(tt.secs), tt.secs, want)
			}
		})
	}
}

func TestSetShareHalves(t *testing.T) {
	const secs = 10
	full, clk := newTestLimiter(t, Config{})
	r := DefaultRates("")[Symmetric]
	whole := simulate(full, clk, Symmetric, 2*r, secs*time.Second)

	half, clk := newTestLimiter(t, Config{})
	// Make the bucket first, so SetShare has an existing bucket to rescale.
	if err := half.Allow("111122223333", Symmetric); err != nil {
		t.Fatal(err)
	}
	half.SetShare(0.5)
	got := simulate(half, clk, Symmetric, 2*r, secs*time.Second)
	if want := float64(whole) / 2; math.Abs(float64(got)-want) > 0.05*want {
		t.Errorf("share 0.5 accepted %d, share 1 accepted %d; want about half", got, whole)
	}

	// And back: SetShare(1) restores the full rate. SetShare(0) means 1.
	half.SetShare(0)
	clk.Advance(time.Second) // refill to the full burst
	got = simulate(half, clk, Symmetric, 2*r, secs*time.Second)
	if math.Abs(float64(got)-float64(whole)) > 0.05*float64(whole) {
		t.Errorf("after SetShare(0) accepted %d, want about %d", got, whole)
	}
}

func TestAllOrNothing(t *testing.T) {
	const a, b Group = "a", "b"
	l, clk := newTestLimiter(t, Config{
		Rates:  map[Group]float64{a: 1, b: 1},
		Bursts: map[Group]int{a: 5, b: 2},
	})
	const acct = "111122223333"
	for i := range 2 {
		if err := l.Allow(acct, a, b); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	err := l.Allow(acct, a, b)
	if !errors.Is(err, ErrThrottled) || !strings.Contains(err.Error(), string(b)) {
		t.Fatalf("third call: %v, want ErrThrottled naming %q", err, b)
	}
	// Refused by b's pre-check and by b's own refusal when a is taken first:
	// either way a keeps its 3 tokens.
	err = l.Allow(acct, b, a)
	if !errors.Is(err, ErrThrottled) {
		t.Fatalf("fourth call: %v", err)
	}
	for i := range 3 {
		if err := l.Allow(acct, a); err != nil {
			t.Fatalf("a alone, call %d: %v (tokens not given back)", i, err)
		}
	}
	if err := l.Allow(acct, a); !errors.Is(err, ErrThrottled) || !strings.Contains(err.Error(), "quota a:") {
		t.Fatalf("a exhausted: %v", err)
	}
	// Another account has its own buckets.
	if err := l.Allow("444455556666", a, b); err != nil {
		t.Fatalf("other account: %v", err)
	}
	// Groups refill independently.
	clk.Advance(time.Second)
	if err := l.Allow(acct, a, b); err != nil {
		t.Fatalf("after refill: %v", err)
	}
}

// TestAllOrNothingGiveBack drives the give-back path: every bucket passes
// the check, then one is emptied (as a concurrent caller would) before its
// token is taken, and the tokens already taken must come back.
func TestAllOrNothingGiveBack(t *testing.T) {
	tests := []struct {
		name    string
		drain   Group // emptied between check and take
		wantErr bool
	}{
		{"middle refuses", "b", true},
		{"last refuses", "c", true},
		{"first refuses", "a", true},
		{"none refuses", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, _ := newTestLimiter(t, Config{
				Rates:  map[Group]float64{"a": 1, "b": 1, "c": 1},
				Bursts: map[Group]int{"a": 2, "b": 2, "c": 2},
			})
			now := l.now()
			tokens := func(g Group) float64 {
				return l.buckets[bucketKey{"acct", g}].lim.TokensAt(now)
			}
			l.afterCheck = func() {
				if tt.drain != "" {
					l.buckets[bucketKey{"acct", tt.drain}].lim.AllowN(now, 2)
				}
			}
			err := l.Allow("acct", "a", "b", "c")
			if tt.wantErr {
				if !errors.Is(err, ErrThrottled) || !strings.Contains(err.Error(), "quota "+string(tt.drain)+":") {
					t.Fatalf("Allow = %v, want ErrThrottled naming %s", err, tt.drain)
				}
				for _, g := range []Group{"a", "b", "c"} {
					want := 2.0
					if g == tt.drain {
						want = 0
					}
					if got := tokens(g); got != want {
						t.Errorf("%s has %v tokens after the refusal, want %v", g, got, want)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("Allow = %v", err)
			}
			for _, g := range []Group{"a", "b", "c"} {
				if got := tokens(g); got != 1 {
					t.Errorf("%s has %v tokens, want 1", g, got)
				}
			}
		})
	}
}

func TestUnlimitedAndZero(t *testing.T) {
	l, clk := newTestLimiter(t, Config{Rates: map[Group]float64{
		Symmetric:      -1,
		"op:CreateKey": 0,
	}})
	for i := range 100000 {
		if err := l.Allow("acct", Symmetric); err != nil {
			t.Fatalf("unlimited call %d: %v", i, err)
		}
	}
	if err := l.Allow("acct", Symmetric, "no-such-group"); err != nil {
		t.Fatalf("unknown group: %v", err)
	}
	if err := l.Allow("acct"); err != nil {
		t.Fatalf("no group: %v", err)
	}
	clk.Advance(time.Hour)
	if err := l.Allow("acct", "op:CreateKey"); !errors.Is(err, ErrThrottled) {
		t.Fatalf("rate 0: %v, want ErrThrottled", err)
	}
}

func TestSetRate(t *testing.T) {
	l, clk := newTestLimiter(t, Config{})
	const g Group = "op:CreateKey"
	// An override for an account before its bucket exists.
	l.SetRate("big", g, 100)
	// An override of an existing bucket: make it, then lower it.
	_ = l.Allow("small", g)
	l.SetRate("small", g, 1)
	clk.Advance(time.Second)

	count := func(acct string) int {
		n := 0
		for range 1000 {
			if l.Allow(acct, g) == nil {
				n++
			}
		}
		return n
	}
	if got := count("big"); got != 100 {
		t.Errorf("big: %d accepted at once, want burst 100", got)
	}
	if got := count("small"); got != 1 {
		t.Errorf("small: %d accepted at once, want burst 1", got)
	}
	if got := count("default"); got != 5 {
		t.Errorf("default: %d accepted at once, want burst 5", got)
	}
	// Unlimited, and back to limited with a full bucket.
	l.SetRate("small", g, -1)
	if got := count("small"); got != 1000 {
		t.Errorf("small unlimited: %d accepted, want 1000", got)
	}
	l.SetRate("small", g, 2)
	if got := count("small"); got != 2 {
		t.Errorf("small back to 2/s: %d accepted, want 2", got)
	}
	l.SetRate("small", g, math.NaN()) // ignored
	clk.Advance(time.Second)
	if got := count("small"); got != 2 {
		t.Errorf("after NaN: %d accepted, want 2", got)
	}
	// Overrides scale with the share like the defaults.
	l.SetShare(0.5)
	clk.Advance(time.Hour)
	if got := count("big"); got != 50 {
		t.Errorf("big at share 0.5: %d accepted, want 50", got)
	}
}

// TestConcurrent has goroutines share buckets under a frozen clock, so the
// total accepted is exactly the burst, while another rescales the share.
func TestConcurrent(t *testing.T) {
	l, _ := newTestLimiter(t, Config{Rates: map[Group]float64{"a": 10, "b": 1000}})
	const workers, calls = 16, 500
	var accepted, acceptedB atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range calls {
				if l.Allow("acct", "a", "b") == nil {
					accepted.Add(1)
				}
				if l.Allow(fmt.Sprint("acct-", w%4), "b") == nil {
					acceptedB.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if got := accepted.Load(); got != 10 {
		t.Errorf("accepted %d calls against a (burst 10), want exactly 10", got)
	}
	if got := acceptedB.Load(); got != 4*1000 {
		t.Errorf("accepted %d calls against b over 4 accounts, want 4000", got)
	}

	// SetShare and SetRate racing with Allow: only -race has a say here.
	var stop atomic.Bool
	wg.Add(2)
	go func() {
		defer wg.Done()
		for i := 0; !stop.Load(); i++ {
			l.SetShare(1 / float64(1+i%3))
		}
	}()
	go func() {
		defer wg.Done()
		for i := 0; !stop.Load(); i++ {
			l.SetRate(fmt.Sprint("acct-", i%8), "a", float64(i%3-1))
		}
	}()
	var cw sync.WaitGroup
	for w := range workers {
		cw.Add(1)
		go func() {
			defer cw.Done()
			for i := range calls {
				_ = l.Allow(fmt.Sprint("acct-", (w+i)%8), "a", "b", Symmetric)
			}
		}()
	}
	cw.Wait()
	stop.Store(true)
	wg.Wait()
}

func BenchmarkAllow(b *testing.B) {
	l, err := New(Config{Rates: map[Group]float64{Symmetric: 1e12}})
	if err != nil {
		b.Fatal(err)
	}
	g := GroupFor("Decrypt", "SYMMETRIC_DEFAULT")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := l.Allow("111122223333", g...); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkAllowBaseline is BenchmarkAllow's twin: one bare rate.Limiter.
func BenchmarkAllowBaseline(b *testing.B) {
	lim := rate.NewLimiter(1e12, 1e12)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if !lim.Allow() {
				b.Fatal("refused")
			}
		}
	})
}

// BenchmarkAllowTwoGroups is the all-or-nothing path (e.g. a crypto call
// counted against two quotas).
func BenchmarkAllowTwoGroups(b *testing.B) {
	l, err := New(Config{Rates: map[Group]float64{Symmetric: 1e12, "store": 1e12}})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := l.Allow("111122223333", Symmetric, "store"); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkAllowThrottled measures refusals: under overload they must stay
// cheap and allocation-free.
func BenchmarkAllowThrottled(b *testing.B) {
	l, err := New(Config{Rates: map[Group]float64{Symmetric: 0}})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := l.Allow("111122223333", Symmetric); err == nil {
				b.Fatal("allowed")
			}
		}
	})
}
