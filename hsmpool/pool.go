package hsmpool

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/pkcs11"
)

// Pool lends logged-in sessions on one token and runs kmsd's HSM operations
// on them. It is safe for concurrent use. The zero Pool is not usable; make
// one with New and release it with Close.
type Pool struct {
	observer atomic.Pointer[func(time.Duration, error)]
	cfg      Config
	mod      *module
	ctx      *pkcs11.Ctx
	wrapMech uint          // CKM_AES_KEY_WRAP_PAD, or CKM_AES_KEY_WRAP where unsupported
	mechs    map[uint]bool // the token's mechanisms (read-only after start)

	slotMu sync.Mutex
	slot   uint

	sessions []*Session
	free     chan *Session
	done     chan struct{}
	closed   atomic.Bool
	closing  sync.Once
	closeErr error

	// Domain key handle (token object), cached per Pool.
	dkMu  sync.Mutex
	dk    pkcs11.ObjectHandle
	dkSet bool

	// genMu is held shared while a cached unwrapped-key handle is bound to
	// an operation (C_EncryptInit/C_DecryptInit), and exclusively while the
	// keeper session is replaced, so a stale handle is never bound to
	// whatever object might reuse its number.
	genMu sync.RWMutex
	// keeperMu serialises use of the keeper session and guards keeper,
	// keeperOK and (with genMu) gen.
	keeperMu sync.Mutex
	keeper   pkcs11.SessionHandle
	keeperOK bool
	gen      uint64 // bumped when the keeper session is replaced

	// cacheMu guards cache and lru. Lock order: genMu, keeperMu, cacheMu.
	cacheMu sync.Mutex
	cache   map[[32]byte]*keyEntry
	lru     list.List // of *keyEntry, most recently used first

	inUse                        atomic.Int64
	waits, reopens, ops, errored atomic.Uint64
}

// Session is one PKCS#11 session lent by Do. It must not be used after the
// function it was lent to returns.
type Session struct {
	ctx    *pkcs11.Ctx
	handle pkcs11.SessionHandle
	open   bool // handle is valid as far as the pool knows
	reset  bool // set by pool code that left the session in an unknown state
}

// Ctx returns the PKCS#11 context the session belongs to.
func (s *Session) Ctx() *pkcs11.Ctx { return s.ctx }

// Handle returns the PKCS#11 session handle. The session is logged in as
// the user. Do not close it or log it out; the pool repairs it if you do.
func (s *Session) Handle() pkcs11.SessionHandle { return s.handle }

// Stats is a snapshot of a Pool's counters.
type Stats struct {
	Sessions, InUse             int
	Waits, Reopens, Ops, Errors uint64
}

// New opens cfg.Sessions sessions on the selected token and logs in. It
// returns ErrTokenNotFound if no initialized token matches and ErrLogin if
// the PIN is refused. The domain key is not required to exist yet.
func New(cfg Config) (*Pool, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if cfg.Lib == "" {
		lib, err := FindSoftHSM()
		if err != nil {
			return nil, err
		}
		cfg.Lib = lib
	}
	mod, err := acquireModule(cfg.Lib)
	if err != nil {
		return nil, err
	}
	p := &Pool{
		cfg:   cfg,
		mod:   mod,
		ctx:   mod.ctx,
		free:  make(chan *Session, cfg.Sessions),
		done:  make(chan struct{}),
		cache: make(map[[32]byte]*keyEntry),
	}
	if err := p.start(); err != nil {
		p.shutdown()
		return nil, err
	}
	return p, nil
}

func (p *Pool) start() error {
	slot, err := p.findSlot()
	if err != nil {
		return err
	}
	p.slot = slot
	if err := p.pickMechanisms(slot); err != nil {
		return err
	}
	p.keeperMu.Lock()
	err = p.openKeeperLocked()
	p.keeperMu.Unlock()
	if err != nil {
		return err
	}
	for range p.cfg.Sessions {
		s := &Session{ctx: p.ctx}
		if err := p.openSession(s); err != nil {
			return err
		}
		p.sessions = append(p.sessions, s)
		p.free <- s
	}
	return nil
}

// findSlot resolves the configured token to a slot id.
func (p *Pool) findSlot() (uint, error) {
	slots, err := p.ctx.GetSlotList(true)
	if err != nil {
		return 0, fmt.Errorf("hsmpool: C_GetSlotList: %w", err)
	}
	if p.cfg.SlotSet {
		for _, s := range slots {
			if s != p.cfg.Slot {
				continue
			}
			ti, err := p.ctx.GetTokenInfo(s)
			if err != nil || ti.Flags&pkcs11.CKF_TOKEN_INITIALIZED == 0 {
				break
			}
			return s, nil
		}
		return 0, fmt.Errorf("%w: no initialized token in slot %d", ErrTokenNotFound, p.cfg.Slot)
	}
	var found []uint
	for _, s := range slots {
		ti, err := p.ctx.GetTokenInfo(s)
		if err == nil && ti.Flags&pkcs11.CKF_TOKEN_INITIALIZED != 0 && ti.Label == p.cfg.TokenLabel {
			found = append(found, s)
		}
	}
	switch len(found) {
	case 0:
		return 0, fmt.Errorf("%w: no token labelled %q", ErrTokenNotFound, p.cfg.TokenLabel)
	case 1:
		return found[0], nil
	default:
		return 0, fmt.Errorf("hsmpool: %d tokens labelled %q; select one by slot", len(found), p.cfg.TokenLabel)
	}
}

func (p *Pool) pickMechanisms(slot uint) error {
	mechs, err := p.ctx.GetMechanismList(slot)
	if err != nil {
		return fmt.Errorf("hsmpool: C_GetMechanismList: %w", err)
	}
	has := make(map[uint]bool, len(mechs))
	for _, m := range mechs {
		has[m.Mechanism] = true
	}
	p.mechs = has
	for _, m := range []uint{pkcs11.CKM_AES_KEY_GEN, pkcs11.CKM_AES_GCM} {
		if !has[m] {
			return fmt.Errorf("hsmpool: token does not support mechanism %#x", m)
		}
	}
	switch {
	case has[pkcs11.CKM_AES_KEY_WRAP_PAD]:
		p.wrapMech = pkcs11.CKM_AES_KEY_WRAP_PAD
	case has[pkcs11.CKM_AES_KEY_WRAP]:
		p.wrapMech = pkcs11.CKM_AES_KEY_WRAP
	default:
		return fmt.Errorf("hsmpool: token supports neither CKM_AES_KEY_WRAP_PAD nor CKM_AES_KEY_WRAP")
	}
	return nil
}

func (p *Pool) currentSlot() uint {
	p.slotMu.Lock()
	defer p.slotMu.Unlock()
	return p.slot
}

// openHandle opens a read-write session and logs the user in. A token that
// moved to another slot (re-inserted) is looked up again by label.
func (p *Pool) openHandle() (pkcs11.SessionHandle, error) {
	slot := p.currentSlot()
	sh, err := p.ctx.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	if err != nil && !p.cfg.SlotSet && (isRV(err, pkcs11.CKR_SLOT_ID_INVALID) || isRV(err, pkcs11.CKR_TOKEN_NOT_PRESENT)) {
		if s, ferr := p.findSlot(); ferr == nil {
			p.slotMu.Lock()
			p.slot = s
			p.slotMu.Unlock()
			slot = s
			sh, err = p.ctx.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
		}
	}
	if err != nil {
		return 0, fmt.Errorf("hsmpool: C_OpenSession: %w", err)
	}
	if err := p.mod.login(sh, slot, p.cfg.PIN); err != nil {
		_ = p.ctx.CloseSession(sh)
		return 0, err
	}
	return sh, nil
}

// openSession (re)opens s. The caller owns s.
func (p *Pool) openSession(s *Session) error {
	if s.open {
		_ = p.ctx.CloseSession(s.handle)
		s.open = false
		p.reopens.Add(1)
		p.dropDomainKey()
	}
	sh, err := p.openHandle()
	if err != nil {
		return err
	}
	s.handle, s.open, s.reset = sh, true, false
	return nil
}

// check makes sure s is open and logged in, re-opening it if not. It costs
// one C_GetSessionInfo.
func (p *Pool) check(s *Session) error {
	if s.open && !s.reset {
		info, err := p.ctx.GetSessionInfo(s.handle)
		if err == nil {
			switch info.State {
			case pkcs11.CKS_RW_USER_FUNCTIONS, pkcs11.CKS_RO_USER_FUNCTIONS:
				return nil
			}
			// Logged out behind our back (e.g. every session of this
			// process on the token was closed): log in again. Handles of
			// private token objects did not survive the logout.
			p.dropDomainKey()
			if err := p.mod.login(s.handle, p.currentSlot(), p.cfg.PIN); err == nil {
				return nil
			}
		}
	}
	return p.openSession(s)
}

// Do lends a logged-in session to fn and returns fn's error. It waits for a
// free session until ctx is done and then returns an error wrapping both
// ErrExhausted and ctx.Err(); if ctx is already done while a session is
// free it returns ctx.Err() without calling fn. After Close it returns
// ErrClosed. A session that fn leaves closed, logged out or otherwise broken
// is re-opened before it is lent again. Do does not retry fn.
func (p *Pool) Do(ctx context.Context, fn func(s *Session) error) (err error) {
	if ctx == nil {
		ctx = context.Background()
	}
	if fn == nil {
		return errors.New("hsmpool: Do: nil func")
	}
	s, err := p.acquire(ctx)
	if err != nil {
		p.errored.Add(1)
		return err
	}
	defer func() {
		if err != nil {
			p.errored.Add(1)
			if sessionBad(err) {
				s.reset = true
			}
		}
		p.inUse.Add(-1)
		p.free <- s
	}()
	p.ops.Add(1)
	if obs := p.observer.Load(); obs != nil {
		start := time.Now()
		defer func() { (*obs)(time.Since(start), err) }()
	}
	return fn(s)
}

// SetObserver registers fn to be told the duration and error of every
// operation run through Do (for metrics); nil removes it. fn must be quick
// and safe for concurrent use.
func (p *Pool) SetObserver(fn func(d time.Duration, err error)) {
	if fn == nil {
		p.observer.Store(nil)
		return
	}
	p.observer.Store(&fn)
}

// ErrorCode names the PKCS#11 return value in err's chain ("CKR_...",
// as miekg/pkcs11 spells it), or "" if there is none.
func ErrorCode(err error) string {
	var pe pkcs11.Error
	if errors.As(err, &pe) {
		return pe.Error()
	}
	return ""
}

func (p *Pool) acquire(ctx context.Context) (*Session, error) {
	if p.closed.Load() {
		return nil, ErrClosed
	}
	var s *Session
	select {
	case s = <-p.free:
		if err := ctx.Err(); err != nil {
			p.free <- s
			return nil, fmt.Errorf("hsmpool: %w", err)
		}
	default:
		p.waits.Add(1)
		select {
		case s = <-p.free:
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: %w", ErrExhausted, ctx.Err())
		case <-p.done:
			return nil, ErrClosed
		}
	}
	if p.closed.Load() {
		p.free <- s
		return nil, ErrClosed
	}
	if err := p.check(s); err != nil {
		p.free <- s
		return nil, err
	}
	p.inUse.Add(1)
	return s, nil
}

// Ping checks that a session can be had and is logged in before ctx is done.
func (p *Pool) Ping(ctx context.Context) error {
	return p.Do(ctx, func(s *Session) error {
		info, err := s.ctx.GetSessionInfo(s.handle)
		if err != nil {
			return fmt.Errorf("hsmpool: ping: %w", err)
		}
		if info.State != pkcs11.CKS_RW_USER_FUNCTIONS && info.State != pkcs11.CKS_RO_USER_FUNCTIONS {
			return fmt.Errorf("hsmpool: ping: session not logged in (state %d)", info.State)
		}
		return nil
	})
}

// Random returns n random bytes from the HSM's generator.
func (p *Pool) Random(ctx context.Context, n int) ([]byte, error) {
	if n < 0 {
		return nil, fmt.Errorf("hsmpool: Random: negative length %d", n)
	}
	if n == 0 {
		return []byte{}, nil
	}
	var out []byte
	err := p.retry(ctx, func() error {
		return p.Do(ctx, func(s *Session) error {
			b, err := s.ctx.GenerateRandom(s.handle, n)
			if err != nil {
				return fmt.Errorf("hsmpool: C_GenerateRandom: %w", err)
			}
			if len(b) != n {
				return fmt.Errorf("hsmpool: C_GenerateRandom returned %d bytes, want %d", len(b), n)
			}
			out = b
			return nil
		})
	})
	return out, err
}

// maxAttempts bounds retry. One failure repairs one thing (a session, the
// keeper session, the cached domain key handle), so after a token reset an
// operation may need one attempt per thing.
const maxAttempts = 3

// retry runs op again, up to maxAttempts in all, while it fails in a way
// the pool has repaired (a re-opened session, a dropped stale handle).
func (p *Pool) retry(ctx context.Context, op func() error) error {
	err := op()
	for i := 1; i < maxAttempts && err != nil && retryable(err) && ctx.Err() == nil && !p.closed.Load(); i++ {
		err = op()
	}
	return err
}

// Stats returns a snapshot of the pool's counters.
func (p *Pool) Stats() Stats {
	return Stats{
		Sessions: len(p.sessions),
		InUse:    int(p.inUse.Load()),
		Waits:    p.waits.Load(),
		Reopens:  p.reopens.Load(),
		Ops:      p.ops.Load(),
		Errors:   p.errored.Load(),
	}
}

// Close waits for running Do calls to return, destroys cached key handles,
// closes every session and releases the library. Later calls return
// ErrClosed from every operation. Close is idempotent.
func (p *Pool) Close() error {
	p.closing.Do(func() { p.closeErr = p.shutdown() })
	return p.closeErr
}

func (p *Pool) shutdown() error {
	p.closed.Store(true)
	close(p.done)
	for range p.sessions {
		s := <-p.free
		if s.open {
			_ = p.ctx.CloseSession(s.handle)
			s.open = false
		}
	}
	p.genMu.Lock()
	p.keeperMu.Lock()
	if p.keeperOK {
		// Closing the keeper destroys every unwrapped session object.
		_ = p.ctx.CloseSession(p.keeper)
		p.keeperOK = false
	}
	p.gen++
	p.cacheMu.Lock()
	p.dropCacheLocked()
	p.cacheMu.Unlock()
	p.keeperMu.Unlock()
	p.genMu.Unlock()
	return p.mod.release()
}
