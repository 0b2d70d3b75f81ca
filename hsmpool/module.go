package hsmpool

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"path/filepath"
	"sync"

	"github.com/miekg/pkcs11"
)

// module is one loaded PKCS#11 library, shared by every Pool, InitToken and
// TokenExists call in the process that names it. PKCS#11 state (C_Initialize,
// login, slot ids) is per process and library, so it must be shared.
type module struct {
	path string
	ctx  *pkcs11.Ctx
	refs int  // guarded by modules.mu
	own  bool // we called C_Initialize successfully, so we C_Finalize

	// mu serialises token provisioning and domain-key creation, and guards
	// pins.
	mu sync.Mutex
	// pins holds sha256 of the user PIN that last logged in to each slot.
	// PKCS#11 answers CKR_USER_ALREADY_LOGGED_IN without checking the PIN
	// when another session of this process is logged in; this lets a second
	// Pool with a wrong PIN still fail with ErrLogin.
	pins map[uint][sha256.Size]byte
}

var modules struct {
	mu  sync.Mutex
	all map[string]*module
}

// acquireModule loads and initializes lib, or takes another reference to it.
// Every successful call must be paired with release.
func acquireModule(lib string) (*module, error) {
	path := canonical(lib)
	modules.mu.Lock()
	defer modules.mu.Unlock()
	if m, ok := modules.all[path]; ok {
		m.refs++
		return m, nil
	}
	ctx := pkcs11.New(path)
	if ctx == nil {
		return nil, fmt.Errorf("hsmpool: cannot load PKCS#11 module %q", lib)
	}
	m := &module{path: path, ctx: ctx, refs: 1, pins: make(map[uint][sha256.Size]byte)}
	switch err := ctx.Initialize(); {
	case err == nil:
		m.own = true
	case isRV(err, pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED):
		// Someone else in this process initialized it; leave finalizing to them.
	default:
		ctx.Destroy()
		return nil, fmt.Errorf("hsmpool: C_Initialize %q: %w", lib, err)
	}
	if modules.all == nil {
		modules.all = make(map[string]*module)
	}
	modules.all[path] = m
	return m, nil
}

// release drops one reference; the last one finalizes and unloads the
// library. No PKCS#11 call on m.ctx may follow the caller's release.
func (m *module) release() error {
	modules.mu.Lock()
	defer modules.mu.Unlock()
	m.refs--
	if m.refs > 0 {
		return nil
	}
	delete(modules.all, m.path)
	var err error
	if m.own {
		if e := m.ctx.Finalize(); e != nil {
			err = fmt.Errorf("hsmpool: C_Finalize: %w", e)
		}
	}
	m.ctx.Destroy()
	return err
}

// login logs the user in on sh's token with pin. Already being logged in is
// fine if the PIN matches the one that logged in.
func (m *module) login(sh pkcs11.SessionHandle, slot uint, pin string) error {
	sum := sha256.Sum256([]byte(pin))
	m.mu.Lock()
	defer m.mu.Unlock()
	err := m.ctx.Login(sh, pkcs11.CKU_USER, pin)
	switch {
	case err == nil:
		m.pins[slot] = sum
		return nil
	case isRV(err, pkcs11.CKR_USER_ALREADY_LOGGED_IN):
		if prev, ok := m.pins[slot]; ok && subtle.ConstantTimeCompare(prev[:], sum[:]) != 1 {
			return fmt.Errorf("%w: PIN differs from the one this process is logged in with", ErrLogin)
		}
		return nil
	case sessionBad(err):
		return fmt.Errorf("hsmpool: C_Login: %w", err)
	default:
		return fmt.Errorf("%w: %w", ErrLogin, err)
	}
}

func canonical(lib string) string {
	if p, err := filepath.EvalSymlinks(lib); err == nil {
		lib = p
	}
	if p, err := filepath.Abs(lib); err == nil {
		lib = p
	}
	return filepath.Clean(lib)
}

func isRV(err error, code uint) bool {
	c, ok := rv(err)
	return ok && c == code
}
