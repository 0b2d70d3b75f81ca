package hsmpool_test

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/miekg/pkcs11"

	"github.com/kmsd/kmsd/hsmpool"
	"github.com/kmsd/kmsd/hsmpool/hsmtest"
)

func testCtx(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// newTestPool opens a Pool with cfg's sizing on a fresh token.
func newTestPool(t testing.TB, cfg hsmpool.Config) (*hsmpool.Pool, hsmpool.Config) {
	t.Helper()
	lib, label, pin := hsmtest.NewToken(t)
	cfg.Lib, cfg.TokenLabel, cfg.PIN = lib, label, pin
	p, err := hsmpool.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	if _, err := p.EnsureDomainKey(testCtx(t)); err != nil {
		t.Fatalf("EnsureDomainKey: %v", err)
	}
	return p, cfg
}

func mustWrapped(t testing.TB, p *hsmpool.Pool) []byte {
	t.Helper()
	w, err := p.GenerateWrappedKey(testCtx(t))
	if err != nil {
		t.Fatalf("GenerateWrappedKey: %v", err)
	}
	return w
}

func TestSealOpenRoundTrip(t *testing.T) {
	p := hsmtest.NewPool(t)
	ctx := testCtx(t)
	w := mustWrapped(t, p)
	for _, tc := range []struct{ name, pt, aad string }{
		{"empty", "", ""},
		{"short", "x", ""},
		{"aad", "hello, world", "context"},
		{"32B", string(bytes.Repeat([]byte{7}, 32)), "k=v"},
		{"4KiB", string(bytes.Repeat([]byte("abcd"), 1024)), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sealed, err := p.Seal(ctx, w, []byte(tc.pt), []byte(tc.aad))
			if err != nil {
				t.Fatalf("Seal: %v", err)
			}
			if got, want := len(sealed), 12+len(tc.pt)+16; got != want {
				t.Fatalf("sealed length %d, want %d", got, want)
			}
			if len(tc.pt) > 4 && bytes.Contains(sealed, []byte(tc.pt)) {
				t.Fatal("sealed output contains the plaintext")
			}
			pt, err := p.Open(ctx, w, sealed, []byte(tc.aad))
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if string(pt) != tc.pt {
				t.Fatalf("Open = %q, want %q", pt, tc.pt)
			}
		})
	}
	// Fresh IV per call.
	a, _ := p.Seal(ctx, w, []byte("same"), nil)
	b, _ := p.Seal(ctx, w, []byte("same"), nil)
	if bytes.Equal(a[:12], b[:12]) || bytes.Equal(a, b) {
		t.Fatal("two Seals of the same plaintext share an IV")
	}
}

func TestOpenRejects(t *testing.T) {
	p := hsmtest.NewPool(t)
	ctx := testCtx(t)
	w := mustWrapped(t, p)
	sealed, err := p.Seal(ctx, w, []byte("attack at dawn"), []byte("aad"))
	if err != nil {
		t.Fatal(err)
	}
	flip := func(i int) []byte {
		b := bytes.Clone(sealed)
		b[i] ^= 0x80
		return b
	}
	badWrapped := bytes.Clone(w)
	badWrapped[3] ^= 1
	for _, tc := range []struct {
		name                 string
		wrapped, sealed, aad []byte
	}{
		{"wrong aad", w, sealed, []byte("aaD")},
		{"missing aad", w, sealed, nil},
		{"tampered iv", w, flip(0), []byte("aad")},
		{"tampered ciphertext", w, flip(14), []byte("aad")},
		{"tampered tag", w, flip(len(sealed) - 1), []byte("aad")},
		{"truncated", w, sealed[:len(sealed)-1], []byte("aad")},
		{"extended", w, append(bytes.Clone(sealed), 0), []byte("aad")},
		{"tag only", w, sealed[:12+16], []byte("aad")},
		{"short", w, sealed[:27], []byte("aad")},
		{"empty", w, nil, []byte("aad")},
		{"tampered wrapped key", badWrapped, sealed, []byte("aad")},
		{"truncated wrapped key", w[:len(w)-8], sealed, []byte("aad")},
		{"odd wrapped key", w[:len(w)-1], sealed, []byte("aad")},
		{"empty wrapped key", nil, sealed, []byte("aad")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pt, err := p.Open(ctx, tc.wrapped, tc.sealed, tc.aad)
			if !errors.Is(err, hsmpool.ErrAuthFailed) {
				t.Fatalf("Open = %q, %v; want ErrAuthFailed", pt, err)
			}
			if pt != nil {
				t.Fatalf("Open returned plaintext %q with an error", pt)
			}
		})
	}
	// Seal with a bad wrapped key fails the same way.
	if _, err := p.Seal(ctx, badWrapped, []byte("x"), nil); !errors.Is(err, hsmpool.ErrAuthFailed) {
		t.Fatalf("Seal with tampered wrapped key: %v; want ErrAuthFailed", err)
	}
	// The pool is still healthy.
	if _, err := p.Open(ctx, w, sealed, []byte("aad")); err != nil {
		t.Fatalf("Open after failures: %v", err)
	}
}

func TestWrappedKeysDiffer(t *testing.T) {
	p := hsmtest.NewPool(t)
	ctx := testCtx(t)
	w1, w2 := mustWrapped(t, p), mustWrapped(t, p)
	if bytes.Equal(w1, w2) {
		t.Fatal("two generated keys wrap to the same bytes")
	}
	if len(w1) != 40 {
		t.Errorf("wrapped AES-256 key is %d bytes, want 40", len(w1))
	}
	sealed, err := p.Seal(ctx, w1, []byte("secret"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Open(ctx, w2, sealed, nil); !errors.Is(err, hsmpool.ErrAuthFailed) {
		t.Fatalf("Open with the other key: %v; want ErrAuthFailed", err)
	}
	// A key wrapped on another token (other domain key) is rejected.
	other := hsmtest.NewPool(t)
	if _, err := other.Open(ctx, w1, sealed, nil); !errors.Is(err, hsmpool.ErrAuthFailed) {
		t.Fatalf("Open on another token: %v; want ErrAuthFailed", err)
	}
}

func TestDomainKeyPersists(t *testing.T) {
	lib, label, pin := hsmtest.NewToken(t)
	cfg := hsmpool.Config{Lib: lib, TokenLabel: label, PIN: pin}
	ctx := testCtx(t)

	p, err := hsmpool.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if has, err := p.HasDomainKey(ctx); err != nil || has {
		t.Fatalf("HasDomainKey on a fresh token = %v, %v", has, err)
	}
	if _, err := p.GenerateWrappedKey(ctx); !errors.Is(err, hsmpool.ErrNoDomainKey) {
		t.Fatalf("GenerateWrappedKey without domain key: %v; want ErrNoDomainKey", err)
	}
	if created, err := p.EnsureDomainKey(ctx); err != nil || !created {
		t.Fatalf("first EnsureDomainKey = %v, %v; want true, nil", created, err)
	}
	if created, err := p.EnsureDomainKey(ctx); err != nil || created {
		t.Fatalf("second EnsureDomainKey = %v, %v; want false, nil", created, err)
	}
	if has, err := p.HasDomainKey(ctx); err != nil || !has {
		t.Fatalf("HasDomainKey = %v, %v", has, err)
	}
	w := mustWrapped(t, p)
	sealed, err := p.Seal(ctx, w, []byte("persist me"), []byte("aad"))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := p.Seal(ctx, w, []byte("x"), nil); !errors.Is(err, hsmpool.ErrClosed) {
		t.Fatalf("Seal after Close: %v; want ErrClosed", err)
	}

	p2, err := hsmpool.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer p2.Close()
	if created, err := p2.EnsureDomainKey(ctx); err != nil || created {
		t.Fatalf("EnsureDomainKey after reopen = %v, %v; want false, nil", created, err)
	}
	pt, err := p2.Open(ctx, w, sealed, []byte("aad"))
	if err != nil || string(pt) != "persist me" {
		t.Fatalf("Open after reopen = %q, %v", pt, err)
	}

	// The domain key is a sensitive, never-extractable AES-256 token key.
	err = p2.Do(ctx, func(s *hsmpool.Session) error {
		c, sh := s.Ctx(), s.Handle()
		if err := c.FindObjectsInit(sh, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_LABEL, hsmpool.DefaultDomainKeyLabel)}); err != nil {
			return err
		}
		objs, _, err := c.FindObjects(sh, 10)
		c.FindObjectsFinal(sh)
		if err != nil {
			return err
		}
		if len(objs) != 1 {
			return fmt.Errorf("found %d domain keys", len(objs))
		}
		attrs, err := c.GetAttributeValue(sh, objs[0], []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, nil),
			pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, nil),
			pkcs11.NewAttribute(pkcs11.CKA_TOKEN, nil),
			pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, nil),
			pkcs11.NewAttribute(pkcs11.CKA_NEVER_EXTRACTABLE, nil),
			pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, nil),
		})
		if err != nil {
			return err
		}
		// Extractable only wrapped (domain-key transfer), sensitive, a
		// private token object, so never "never extractable".
		want := []bool{true, true, true, true, false}
		for i, w := range want {
			if got := len(attrs[i].Value) == 1 && attrs[i].Value[0] == 1; got != w {
				return fmt.Errorf("attribute %#x = %v, want %v", attrs[i].Type, got, w)
			}
		}
		if v := attrs[5].Value; len(v) == 0 || v[0] != 32 {
			return fmt.Errorf("CKA_VALUE_LEN = %v, want 32", v)
		}
		// Reading the value must be refused.
		if _, err := c.GetAttributeValue(sh, objs[0], []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_VALUE, nil)}); err == nil {
			return errors.New("CKA_VALUE of the domain key is readable")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestNewErrors(t *testing.T) {
	lib, label, pin := hsmtest.NewToken(t)
	if _, err := hsmpool.New(hsmpool.Config{Lib: lib, TokenLabel: "no-such-token", PIN: pin}); !errors.Is(err, hsmpool.ErrTokenNotFound) {
		t.Fatalf("unknown label: %v; want ErrTokenNotFound", err)
	}
	if _, err := hsmpool.New(hsmpool.Config{Lib: lib, TokenLabel: label, PIN: "wrong"}); !errors.Is(err, hsmpool.ErrLogin) {
		t.Fatalf("wrong PIN: %v; want ErrLogin", err)
	}
	p, err := hsmpool.New(hsmpool.Config{Lib: lib, TokenLabel: label, PIN: pin})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	// While p keeps the token logged in, PKCS#11 would accept any PIN.
	if _, err := hsmpool.New(hsmpool.Config{Lib: lib, TokenLabel: label, PIN: "wrong"}); !errors.Is(err, hsmpool.ErrLogin) {
		t.Fatalf("wrong PIN while logged in: %v; want ErrLogin", err)
	}
	// A second pool on the same token with the right PIN is fine.
	p2, err := hsmpool.New(hsmpool.Config{Lib: lib, TokenLabel: label, PIN: pin, Sessions: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := p2.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Ping(testCtx(t)); err != nil {
		t.Fatalf("Ping after a sibling pool closed: %v", err)
	}
	if err := hsmpool.InitToken(lib, label, "so", "user"); err == nil {
		t.Fatal("InitToken with an existing label succeeded")
	}
	if ok, err := hsmpool.TokenExists(lib, label); err != nil || !ok {
		t.Fatalf("TokenExists = %v, %v", ok, err)
	}
	if ok, err := hsmpool.TokenExists(lib, "no-such-token"); err != nil || ok {
		t.Fatalf("TokenExists(unknown) = %v, %v", ok, err)
	}
	if _, err := hsmpool.New(hsmpool.Config{Lib: "/nonexistent/lib.so", TokenLabel: label, PIN: pin}); err == nil {
		t.Fatal("New with a missing library succeeded")
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg   hsmpool.Config
		field string
	}{
		{hsmpool.Config{PIN: "1"}, "TokenLabel"},
		{hsmpool.Config{TokenLabel: "x"}, "PIN"},
		{hsmpool.Config{TokenLabel: "012345678901234567890123456789012", PIN: "1"}, "TokenLabel"},
		{hsmpool.Config{TokenLabel: "x", PIN: "1", Sessions: -1}, "Sessions"},
		{hsmpool.Config{TokenLabel: "x", PIN: "1", MaxKeyHandles: -1}, "MaxKeyHandles"},
		{hsmpool.Config{TokenLabel: "x", PIN: "1"}, ""},
		{hsmpool.Config{SlotSet: true, PIN: "1"}, ""},
	} {
		err := tc.cfg.Validate()
		switch {
		case tc.field == "" && err != nil:
			t.Errorf("%+v: unexpected %v", tc.cfg, err)
		case tc.field != "" && (err == nil || !bytes.Contains([]byte(err.Error()), []byte("Config."+tc.field))):
			t.Errorf("%+v: got %v, want an error naming Config.%s", tc.cfg, err, tc.field)
		}
	}
}

func TestExhausted(t *testing.T) {
	p, _ := newTestPool(t, hsmpool.Config{Sessions: 2})
	hold, release := make(chan struct{}), make(chan struct{})
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.Do(context.Background(), func(*hsmpool.Session) error {
				hold <- struct{}{}
				<-release
				return nil
			})
		}()
	}
	<-hold
	<-hold
	if st := p.Stats(); st.InUse != 2 || st.Sessions != 2 {
		t.Fatalf("Stats = %+v, want 2 of 2 in use", st)
	}
	short, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	err := p.Do(short, func(*hsmpool.Session) error { t.Error("fn ran"); return nil })
	if !errors.Is(err, hsmpool.ErrExhausted) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Do with short ctx: %v; want ErrExhausted wrapping DeadlineExceeded", err)
	}
	cancelled, cancel2 := context.WithCancel(context.Background())
	cancel2()
	if _, err := p.Random(cancelled, 8); !errors.Is(err, hsmpool.ErrExhausted) || !errors.Is(err, context.Canceled) {
		t.Fatalf("Random with cancelled ctx: %v; want ErrExhausted wrapping Canceled", err)
	}
	close(release)
	wg.Wait()
	if st := p.Stats(); st.InUse != 0 || st.Waits < 2 {
		t.Fatalf("Stats after = %+v", st)
	}
	if _, err := p.Random(testCtx(t), 8); err != nil {
		t.Fatalf("Random after release: %v", err)
	}
}

func TestCloseUnblocksWaiters(t *testing.T) {
	p, _ := newTestPool(t, hsmpool.Config{Sessions: 1})
	hold, release := make(chan struct{}), make(chan struct{})
	go p.Do(context.Background(), func(*hsmpool.Session) error {
		close(hold)
		<-release
		return nil
	})
	<-hold
	waiter := make(chan error)
	go func() { waiter <- p.Do(context.Background(), func(*hsmpool.Session) error { return nil }) }()
	closed := make(chan error)
	go func() { closed <- p.Close() }()
	if err := <-waiter; !errors.Is(err, hsmpool.ErrClosed) {
		t.Fatalf("waiting Do during Close: %v; want ErrClosed", err)
	}
	close(release)
	if err := <-closed; err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := p.Ping(testCtx(t)); !errors.Is(err, hsmpool.ErrClosed) {
		t.Fatalf("Ping after Close: %v", err)
	}
}

func TestConcurrentSealOpen(t *testing.T) {
	p, _ := newTestPool(t, hsmpool.Config{Sessions: 4, MaxKeyHandles: 3})
	ctx := testCtx(t)
	keys := make([][]byte, 5)
	for i := range keys {
		keys[i] = mustWrapped(t, p)
	}
	var wg sync.WaitGroup
	errc := make(chan error, 16)
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 40 {
				w := keys[(g+i)%len(keys)]
				msg := fmt.Appendf(nil, "goroutine %d message %d", g, i)
				aad := fmt.Appendf(nil, "%d", g)
				sealed, err := p.Seal(ctx, w, msg, aad)
				if err != nil {
					errc <- fmt.Errorf("Seal: %w", err)
					return
				}
				if i%7 == 0 {
					p.Forget(w)
				}
				pt, err := p.Open(ctx, w, sealed, aad)
				if err != nil || !bytes.Equal(pt, msg) {
					errc <- fmt.Errorf("Open = %q, %v", pt, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	if st := p.Stats(); st.InUse != 0 || st.Ops < 16*40*2 {
		t.Errorf("Stats = %+v", st)
	}
}

func TestEvictionCorrect(t *testing.T) {
	p, _ := newTestPool(t, hsmpool.Config{MaxKeyHandles: 2})
	ctx := testCtx(t)
	type sealedMsg struct{ w, sealed, pt []byte }
	var all []sealedMsg
	for i := range 6 {
		w := mustWrapped(t, p)
		pt := fmt.Appendf(nil, "message under key %d", i)
		s, err := p.Seal(ctx, w, pt, nil)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, sealedMsg{w, s, pt})
	}
	for round := range 3 {
		for i, m := range all {
			pt, err := p.Open(ctx, m.w, m.sealed, nil)
			if err != nil || !bytes.Equal(pt, m.pt) {
				t.Fatalf("round %d key %d: Open = %q, %v", round, i, pt, err)
			}
			// Cross-check: key i never opens key i+1's message.
			n := all[(i+1)%len(all)]
			if _, err := p.Open(ctx, m.w, n.sealed, nil); !errors.Is(err, hsmpool.ErrAuthFailed) {
				t.Fatalf("round %d: key %d opened another key's message: %v", round, i, err)
			}
		}
	}
	// Evicted objects are destroyed: count session objects in the HSM.
	var n int
	err := p.Do(ctx, func(s *hsmpool.Session) error {
		c, sh := s.Ctx(), s.Handle()
		if err := c.FindObjectsInit(sh, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false)}); err != nil {
			return err
		}
		defer c.FindObjectsFinal(sh)
		objs, _, err := c.FindObjects(sh, 100)
		n = len(objs)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if n > 2 {
		t.Fatalf("%d session objects in the HSM, want at most MaxKeyHandles=2", n)
	}
}

func TestReopenClosedSession(t *testing.T) {
	p, _ := newTestPool(t, hsmpool.Config{Sessions: 1})
	ctx := testCtx(t)
	w := mustWrapped(t, p)
	sealed, err := p.Seal(ctx, w, []byte("before"), nil)
	if err != nil {
		t.Fatal(err)
	}
	var old pkcs11.SessionHandle
	err = p.Do(ctx, func(s *hsmpool.Session) error {
		old = s.Handle()
		return s.Ctx().CloseSession(s.Handle())
	})
	if err != nil {
		t.Fatal(err)
	}
	// The only session was closed, which logs the token out too (no other
	// session of ours... except the keeper). The next Do must just work.
	err = p.Do(ctx, func(s *hsmpool.Session) error {
		if s.Handle() == old {
			t.Log("session handle number reused")
		}
		_, err := s.Ctx().GenerateRandom(s.Handle(), 16)
		return err
	})
	if err != nil {
		t.Fatalf("Do after the session was closed behind the pool's back: %v", err)
	}
	if st := p.Stats(); st.Reopens < 1 {
		t.Fatalf("Stats.Reopens = %d, want >= 1", st.Reopens)
	}
	if pt, err := p.Open(ctx, w, sealed, nil); err != nil || string(pt) != "before" {
		t.Fatalf("Open = %q, %v", pt, err)
	}
}

func TestAllSessionsClosedBehindBack(t *testing.T) {
	// C_CloseAllSessions kills every session of this process on the token,
	// including the keeper holding unwrapped keys, and logs the user out.
	p, _ := newTestPool(t, hsmpool.Config{Sessions: 2})
	ctx := testCtx(t)
	w := mustWrapped(t, p)
	sealed, err := p.Seal(ctx, w, []byte("survive"), nil)
	if err != nil {
		t.Fatal(err)
	}
	err = p.Do(ctx, func(s *hsmpool.Session) error {
		info, err := s.Ctx().GetSessionInfo(s.Handle())
		if err != nil {
			return err
		}
		return s.Ctx().CloseAllSessions(info.SlotID)
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		pt, err := p.Open(ctx, w, sealed, nil)
		if err != nil || string(pt) != "survive" {
			t.Fatalf("Open #%d after CloseAllSessions = %q, %v", i, pt, err)
		}
		if _, err := p.Seal(ctx, w, []byte("again"), nil); err != nil {
			t.Fatalf("Seal #%d after CloseAllSessions: %v", i, err)
		}
	}
	if _, err := p.GenerateWrappedKey(ctx); err != nil {
		t.Fatalf("GenerateWrappedKey after CloseAllSessions: %v", err)
	}
	if err := p.Ping(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}
}

func TestManyTokensOneProcess(t *testing.T) {
	ctx := testCtx(t)
	type node struct {
		p       *hsmpool.Pool
		w, seal []byte
	}
	var nodes []node
	for i := range 20 {
		p, _ := newTestPool(t, hsmpool.Config{Sessions: 1})
		w := mustWrapped(t, p)
		s, err := p.Seal(ctx, w, fmt.Appendf(nil, "node %d", i), nil)
		if err != nil {
			t.Fatalf("token %d: Seal: %v", i, err)
		}
		nodes = append(nodes, node{p, w, s})
	}
	for i, n := range nodes {
		pt, err := n.p.Open(ctx, n.w, n.seal, nil)
		if err != nil || string(pt) != fmt.Sprintf("node %d", i) {
			t.Fatalf("token %d: Open = %q, %v", i, pt, err)
		}
		// Each token has its own domain key.
		o := nodes[(i+1)%len(nodes)]
		if _, err := o.p.Open(ctx, n.w, n.seal, nil); !errors.Is(err, hsmpool.ErrAuthFailed) {
			t.Fatalf("token %d's key opened on another token: %v", i, err)
		}
	}
	// Close them all: the library is finalized and unloaded, then loaded
	// again by the next user.
	for _, n := range nodes {
		if err := n.p.Close(); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 3 {
		p := hsmtest.NewPool(t)
		if _, err := p.Random(ctx, 8); err != nil {
			t.Fatalf("reload %d: %v", i, err)
		}
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestRandom(t *testing.T) {
	p := hsmtest.NewPool(t)
	ctx := testCtx(t)
	for _, n := range []int{0, 1, 16, 32, 1024, 4096} {
		b, err := p.Random(ctx, n)
		if err != nil || len(b) != n {
			t.Fatalf("Random(%d) = %d bytes, %v", n, len(b), err)
		}
	}
	a, _ := p.Random(ctx, 32)
	b, _ := p.Random(ctx, 32)
	if bytes.Equal(a, b) {
		t.Fatal("Random repeated itself")
	}
	if _, err := p.Random(ctx, -1); err == nil {
		t.Fatal("Random(-1) succeeded")
	}
}

func TestWriteSoftHSMConfigIdempotent(t *testing.T) {
	dir := t.TempDir()
	c1, err := hsmpool.WriteSoftHSMConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	c2, err := hsmpool.WriteSoftHSMConfig(dir)
	if err != nil || c1 != c2 {
		t.Fatalf("second call = %q, %v; first %q", c2, err, c1)
	}
}

var payload = bytes.Repeat([]byte{0x42}, 32)

func BenchmarkSeal(b *testing.B) {
	p := hsmtest.NewPool(b)
	ctx := context.Background()
	w := mustWrapped(b, p)
	if _, err := p.Seal(ctx, w, payload, nil); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(payload)))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := p.Seal(ctx, w, payload, nil); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkOpen(b *testing.B) {
	p := hsmtest.NewPool(b)
	ctx := context.Background()
	w := mustWrapped(b, p)
	sealed, err := p.Seal(ctx, w, payload, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(payload)))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := p.Open(ctx, w, sealed, nil); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkGoGCM is the baseline twin of BenchmarkSeal: the same payload
// sealed with crypto/aes in the process.
func BenchmarkGoGCM(b *testing.B) {
	key := make([]byte, 32)
	rand.Read(key)
	block, _ := aes.NewCipher(key)
	aead, _ := cipher.NewGCM(block)
	b.ReportAllocs()
	b.SetBytes(int64(len(payload)))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			iv := make([]byte, 12, 12+len(payload)+16)
			rand.Read(iv)
			_ = aead.Seal(iv, iv, payload, nil)
		}
	})
}

func TestSelectBySlot(t *testing.T) {
	p, cfg := newTestPool(t, hsmpool.Config{Sessions: 1})
	ctx := testCtx(t)
	var slot uint
	err := p.Do(ctx, func(s *hsmpool.Session) error {
		info, err := s.Ctx().GetSessionInfo(s.Handle())
		slot = info.SlotID
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	w := mustWrapped(t, p)
	sealed, err := p.Seal(ctx, w, []byte("by slot"), nil)
	if err != nil {
		t.Fatal(err)
	}
	bySlot, err := hsmpool.New(hsmpool.Config{Lib: cfg.Lib, Slot: slot, SlotSet: true, PIN: cfg.PIN, Sessions: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer bySlot.Close()
	if pt, err := bySlot.Open(ctx, w, sealed, nil); err != nil || string(pt) != "by slot" {
		t.Fatalf("Open via slot-selected pool = %q, %v", pt, err)
	}
	if _, err := hsmpool.New(hsmpool.Config{Lib: cfg.Lib, Slot: 1 << 30, SlotSet: true, PIN: cfg.PIN}); !errors.Is(err, hsmpool.ErrTokenNotFound) {
		t.Fatalf("unknown slot: %v; want ErrTokenNotFound", err)
	}
}

func TestDoMisuse(t *testing.T) {
	p := hsmtest.NewPool(t)
	var nilCtx context.Context // callers must not, but Do must not panic
	if err := p.Do(nilCtx, func(*hsmpool.Session) error { return nil }); err != nil {
		t.Fatalf("Do(nil ctx): %v", err)
	}
	if err := p.Do(testCtx(t), nil); err == nil {
		t.Fatal("Do(nil fn) succeeded")
	}
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	if err := p.Do(cancelled, func(*hsmpool.Session) error { t.Error("fn ran"); return nil }); !errors.Is(err, context.Canceled) {
		t.Fatalf("Do(cancelled ctx) with a free session: %v; want context.Canceled", err)
	}
	// An error from fn comes back unchanged and does not break the pool.
	sentinel := errors.New("mine")
	if err := p.Do(testCtx(t), func(*hsmpool.Session) error { return sentinel }); err != sentinel {
		t.Fatalf("Do returned %v, want fn's error", err)
	}
	if err := p.Ping(testCtx(t)); err != nil {
		t.Fatal(err)
	}
}
