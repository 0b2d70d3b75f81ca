package hsmpool

import (
	"container/list"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"

	"github.com/miekg/pkcs11"
)

const (
	ivSize  = 12
	tagSize = 16
	keySize = 32
	// Bounds on a wrapped key accepted by Seal and Open: RFC 3394/5649
	// output is a multiple of 8 bytes and at least 16.
	minWrapped = 16
	maxWrapped = 1024
	// Bound on a wrapped private key (PKCS#8 of RSA-4096 is about 2.4 KB).
	maxWrappedPrivate = 8192
)

// keyEntry is one unwrapped key held as a session object of the keeper
// session. Fields other than sum and ready are guarded by Pool.cacheMu
// until ready is closed; h, gen and err are immutable after that.
type keyEntry struct {
	sum     [32]byte
	ready   chan struct{}
	el      *list.Element // in Pool.lru while cached
	h       pkcs11.ObjectHandle
	gen     uint64
	err     error
	refs    int  // callers holding the handle, including the unwrapper
	evicted bool // no longer in the cache; destroy when refs drops to 0
}

// ---- domain key -----------------------------------------------------------

func (p *Pool) domainKeyTemplate() []*pkcs11.Attribute {
	return []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, p.cfg.DomainKeyLabel),
	}
}

// findDomainKey looks the domain key up on the token.
func (p *Pool) findDomainKey(sh pkcs11.SessionHandle) (pkcs11.ObjectHandle, bool, error) {
	if err := p.ctx.FindObjectsInit(sh, p.domainKeyTemplate()); err != nil {
		return 0, false, fmt.Errorf("hsmpool: C_FindObjectsInit: %w", err)
	}
	objs, _, err := p.ctx.FindObjects(sh, 2)
	if ferr := p.ctx.FindObjectsFinal(sh); err == nil && ferr != nil {
		err = ferr
	}
	if err != nil {
		return 0, false, fmt.Errorf("hsmpool: C_FindObjects: %w", err)
	}
	switch len(objs) {
	case 0:
		return 0, false, nil
	case 1:
		return objs[0], true, nil
	default:
		return 0, false, fmt.Errorf("hsmpool: more than one domain key labelled %q on the token", p.cfg.DomainKeyLabel)
	}
}

// domainKey returns the cached domain key handle, looking it up with sh on
// a miss. It returns ErrNoDomainKey if the token has none.
func (p *Pool) domainKey(sh pkcs11.SessionHandle) (pkcs11.ObjectHandle, error) {
	p.dkMu.Lock()
	defer p.dkMu.Unlock()
	if p.dkSet {
		return p.dk, nil
	}
	h, ok, err := p.findDomainKey(sh)
	if err != nil {
		return 0, err
	}
	if !ok {
		return 0, fmt.Errorf("%w: label %q", ErrNoDomainKey, p.cfg.DomainKeyLabel)
	}
	p.dk, p.dkSet = h, true
	return h, nil
}

// forgetDomainKey drops the cached domain key handle after the HSM said it
// is invalid (token re-inserted, handles renumbered).
func (p *Pool) forgetDomainKey(err error) {
	if handleBad(err) {
		p.dropDomainKey()
	}
}

// dropDomainKey forgets the cached domain key handle; the next use looks
// it up again.
func (p *Pool) dropDomainKey() {
	p.dkMu.Lock()
	p.dkSet = false
	p.dkMu.Unlock()
}

// EnsureDomainKey makes sure the token holds the domain key, an AES-256
// token object labelled Config.DomainKeyLabel that is sensitive (its value
// can never be read) and extractable only wrapped (so ExportDomainKey can
// hand it to another node's HSM), generating it in the HSM if absent. It reports whether it
// created the key. It is idempotent, also across Pools in one process.
func (p *Pool) EnsureDomainKey(ctx context.Context) (created bool, err error) {
	err = p.retry(ctx, func() error {
		return p.Do(ctx, func(s *Session) error {
			// Serialise find-then-create across Pools of this process on
			// the same library, so two Pools on one token make one key.
			p.mod.mu.Lock()
			defer p.mod.mu.Unlock()
			p.dkMu.Lock()
			defer p.dkMu.Unlock()
			h, ok, err := p.findDomainKey(s.handle)
			if err != nil {
				return err
			}
			if !ok {
				tmpl := append(p.domainKeyTemplate(),
					pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, keySize),
					pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
					pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
					pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, true),
					pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, true),
					pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, true),
					pkcs11.NewAttribute(pkcs11.CKA_WRAP, true),
					pkcs11.NewAttribute(pkcs11.CKA_UNWRAP, true),
				)
				h, err = s.ctx.GenerateKey(s.handle, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_GEN, nil)}, tmpl)
				if err != nil {
					return fmt.Errorf("hsmpool: generate domain key: %w", err)
				}
				created = true
			}
			p.dk, p.dkSet = h, true
			return nil
		})
	})
	return created, err
}

// HasDomainKey reports whether the token holds the domain key.
func (p *Pool) HasDomainKey(ctx context.Context) (bool, error) {
	var has bool
	err := p.retry(ctx, func() error {
		return p.Do(ctx, func(s *Session) error {
			_, err := p.domainKey(s.handle)
			switch {
			case err == nil:
				has = true
				return nil
			case isNoDomainKey(err):
				has = false
				return nil
			}
			return err
		})
	})
	return has, err
}

func isNoDomainKey(err error) bool {
	return errors.Is(err, ErrNoDomainKey)
}

// ---- key material ---------------------------------------------------------

// GenerateWrappedKey generates a fresh AES-256 key inside the HSM and
// returns it wrapped by the domain key (CKM_AES_KEY_WRAP_PAD, or
// CKM_AES_KEY_WRAP on tokens without it). The key exists in the HSM only as
// a short-lived sensitive session object; its plaintext never leaves the
// HSM. Returns ErrNoDomainKey if EnsureDomainKey has not run on the token.
func (p *Pool) GenerateWrappedKey(ctx context.Context) ([]byte, error) {
	return p.generateWrapped(ctx, "key", pkcs11.CKM_AES_KEY_GEN, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
		pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, keySize),
		pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, false),
		pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, false),
	})
}

// generateWrapped makes a secret key with mech and the attributes attrs
// (plus a sensitive, private session object's) in the HSM, wraps it with
// the domain key, destroys it and returns the wrapped bytes. what names the
// key in errors.
func (p *Pool) generateWrapped(ctx context.Context, what string, mech uint, attrs []*pkcs11.Attribute) ([]byte, error) {
	tmpl := append([]*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
		// Extractable only so that C_WrapKey accepts it.
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, true),
	}, attrs...)
	var out []byte
	err := p.retry(ctx, func() error {
		return p.Do(ctx, func(s *Session) error {
			dk, err := p.domainKey(s.handle)
			if err != nil {
				return err
			}
			k, err := s.ctx.GenerateKey(s.handle, []*pkcs11.Mechanism{pkcs11.NewMechanism(mech, nil)}, tmpl)
			if err != nil {
				return fmt.Errorf("hsmpool: generate %s: %w", what, err)
			}
			defer func() {
				if derr := s.ctx.DestroyObject(s.handle, k); derr != nil {
					// The object dies with the session at the latest.
					s.reset = true
				}
			}()
			w, err := s.ctx.WrapKey(s.handle, []*pkcs11.Mechanism{pkcs11.NewMechanism(p.wrapMech, nil)}, dk, k)
			if err != nil {
				p.forgetDomainKey(err)
				return fmt.Errorf("hsmpool: wrap %s: %w", what, err)
			}
			out = w
			return nil
		})
	})
	return out, err
}

// ---- unwrapped-key cache --------------------------------------------------

// openKeeperLocked opens the keeper session. p.keeperMu must be held.
func (p *Pool) openKeeperLocked() error {
	sh, err := p.openHandle()
	if err != nil {
		return err
	}
	p.keeper, p.keeperOK = sh, true
	return nil
}

// resetKeeper replaces the keeper session if it is still generation seen,
// which drops every cached unwrapped key (their objects die with it).
func (p *Pool) resetKeeper(seen uint64) {
	p.genMu.Lock()
	defer p.genMu.Unlock()
	p.keeperMu.Lock()
	defer p.keeperMu.Unlock()
	if p.gen != seen || p.closed.Load() {
		return
	}
	if p.keeperOK {
		_ = p.ctx.CloseSession(p.keeper)
		p.keeperOK = false
	}
	p.gen++
	p.reopens.Add(1)
	// Whatever killed the keeper may have logged the token out, which
	// invalidates handles of private token objects too.
	p.dropDomainKey()
	p.cacheMu.Lock()
	p.dropCacheLocked()
	p.cacheMu.Unlock()
	// If this fails, the next unwrap tries again.
	_ = p.openKeeperLocked()
}

// dropCacheLocked empties the cache without destroying objects (the caller
// has closed the session that held them). p.cacheMu must be held.
func (p *Pool) dropCacheLocked() {
	for sum, e := range p.cache {
		e.evicted = true
		delete(p.cache, sum)
	}
	p.lru.Init()
}

// unwrap unwraps wrapped into a non-extractable session object of the
// keeper session and returns its handle and the keeper generation.
func (p *Pool) unwrap(wrapped []byte, kind keyKind) (pkcs11.ObjectHandle, uint64, error) {
	p.keeperMu.Lock()
	if p.closed.Load() {
		p.keeperMu.Unlock()
		return 0, 0, ErrClosed
	}
	if !p.keeperOK {
		if err := p.openKeeperLocked(); err != nil {
			p.keeperMu.Unlock()
			return 0, 0, err
		}
	}
	gen := p.gen
	h, err := p.unwrapKind(p.keeper, wrapped, false, kind)
	p.keeperMu.Unlock()
	if err != nil && sessionBad(err) {
		p.resetKeeper(gen)
	}
	return h, gen, err
}

// unwrapWith unwraps wrapped with the domain key on session sh. exportable
// makes the object extractable and not sensitive (test hook only).
func (p *Pool) unwrapWith(sh pkcs11.SessionHandle, wrapped []byte, exportable bool) (pkcs11.ObjectHandle, error) {
	return p.unwrapKind(sh, wrapped, exportable, kindAES)
}

// unwrapKind unwraps wrapped as a key of the given kind.
func (p *Pool) unwrapKind(sh pkcs11.SessionHandle, wrapped []byte, exportable bool, kind keyKind) (pkcs11.ObjectHandle, error) {
	limit := maxWrapped
	if kind >= kindRSASign {
		limit = maxWrappedPrivate
	}
	if len(wrapped) < minWrapped || len(wrapped) > limit || len(wrapped)%8 != 0 {
		return 0, fmt.Errorf("%w: wrapped key has invalid length %d", ErrAuthFailed, len(wrapped))
	}
	dk, err := p.domainKey(sh)
	if err != nil {
		return 0, err
	}
	h, err := p.ctx.UnwrapKey(sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(p.wrapMech, nil)}, dk, wrapped, kind.template(exportable))
	switch {
	case err == nil:
		return h, nil
	case handleBad(err):
		p.forgetDomainKey(err)
		return 0, fmt.Errorf("hsmpool: unwrap key: %w", err)
	case authFailure(err):
		return 0, fmt.Errorf("%w: wrapped key rejected (%v)", ErrAuthFailed, err)
	}
	return 0, fmt.Errorf("hsmpool: unwrap key: %w", err)
}

// key returns the cached entry for wrapped, unwrapping it on a miss
// (once, however many callers ask concurrently). The caller must
// releaseKey the entry.
func (p *Pool) key(ctx context.Context, wrapped []byte, kind keyKind) (*keyEntry, error) {
	sum := cacheSum(wrapped, kind)
	p.cacheMu.Lock()
	if e, ok := p.cache[sum]; ok {
		e.refs++
		p.touchLocked(e)
		p.cacheMu.Unlock()
		select {
		case <-e.ready:
		case <-ctx.Done():
			p.releaseKey(e)
			return nil, fmt.Errorf("hsmpool: %w", ctx.Err())
		}
		if e.err != nil {
			p.releaseKey(e)
			return nil, e.err
		}
		return e, nil
	}
	if p.closed.Load() {
		p.cacheMu.Unlock()
		return nil, ErrClosed
	}
	e := &keyEntry{sum: sum, ready: make(chan struct{}), refs: 1}
	p.cache[sum] = e
	e.el = p.lru.PushFront(e)
	victims := p.evictLocked()
	p.cacheMu.Unlock()
	p.destroy(victims)

	h, gen, err := p.unwrap(wrapped, kind)
	p.cacheMu.Lock()
	e.h, e.gen, e.err = h, gen, err
	if err != nil && !e.evicted {
		p.removeLocked(e)
	}
	p.cacheMu.Unlock()
	close(e.ready)
	if err != nil {
		p.releaseKey(e)
		return nil, err
	}
	return e, nil
}

// cacheSum names the cache entry of wrapped unwrapped as kind: one
// wrapped key unwrapped as two kinds is two objects with different
// attributes, never one object serving both.
func cacheSum(wrapped []byte, kind keyKind) [32]byte {
	if kind == kindAES {
		return sha256.Sum256(wrapped)
	}
	h := sha256.New()
	h.Write([]byte{byte(kind)})
	h.Write(wrapped)
	var sum [32]byte
	h.Sum(sum[:0])
	return sum
}

// touchLocked moves e to the front of the LRU list.
func (p *Pool) touchLocked(e *keyEntry) {
	if !e.evicted {
		p.lru.MoveToFront(e.el)
	}
}

// removeLocked takes e out of the cache. p.cacheMu must be held.
func (p *Pool) removeLocked(e *keyEntry) {
	if e.evicted {
		return
	}
	e.evicted = true
	delete(p.cache, e.sum)
	p.lru.Remove(e.el)
}

// evictLocked trims the cache to MaxKeyHandles and returns the evicted
// entries nobody holds, to be destroyed once p.cacheMu is released.
func (p *Pool) evictLocked() []*keyEntry {
	var victims []*keyEntry
	for len(p.cache) > p.cfg.MaxKeyHandles {
		el := p.lru.Back()
		if el == nil {
			break
		}
		e := p.lru.Remove(el).(*keyEntry)
		delete(p.cache, e.sum)
		e.evicted = true
		if e.refs == 0 {
			victims = append(victims, e)
		}
	}
	return victims
}

// releaseKey drops the caller's hold on e and destroys its object if it
// was evicted meanwhile.
func (p *Pool) releaseKey(e *keyEntry) {
	p.cacheMu.Lock()
	e.refs--
	dead := e.refs == 0 && e.evicted
	p.cacheMu.Unlock()
	if dead {
		p.destroy([]*keyEntry{e})
	}
}

// destroy destroys the objects of evicted, unreferenced entries.
func (p *Pool) destroy(es []*keyEntry) {
	if len(es) == 0 {
		return
	}
	p.keeperMu.Lock()
	defer p.keeperMu.Unlock()
	for _, e := range es {
		if e.err != nil || !p.keeperOK || e.gen != p.gen || p.closed.Load() {
			continue // never created, or died with an old keeper session
		}
		_ = p.ctx.DestroyObject(p.keeper, e.h)
	}
}

// Forget drops the cached unwrapped handles for wrapped (of every kind:
// AES key, HMAC secret, private key), if any, and destroys their HSM
// objects once no operation is using them.
func (p *Pool) Forget(wrapped []byte) {
	var dead []*keyEntry
	p.cacheMu.Lock()
	for kind := kindAES; kind <= kindLast; kind++ {
		if e, ok := p.cache[cacheSum(wrapped, kind)]; ok {
			p.removeLocked(e)
			if e.refs == 0 {
				dead = append(dead, e)
			}
		}
	}
	p.cacheMu.Unlock()
	p.destroy(dead)
}

// withKey runs op with the unwrapped handle of wrapped on a lent session,
// retrying once after a stale handle or a repaired session.
func (p *Pool) withKey(ctx context.Context, wrapped []byte, op func(s *Session, e *keyEntry) error) error {
	return p.withKeyKind(ctx, wrapped, kindAES, op)
}

// withKeyKind is withKey for a wrapped key of the given kind. A wrapped
// key is always used as one kind (the cache is keyed by its bytes).
func (p *Pool) withKeyKind(ctx context.Context, wrapped []byte, kind keyKind, op func(s *Session, e *keyEntry) error) error {
	return p.retry(ctx, func() error {
		e, err := p.key(ctx, wrapped, kind)
		if err != nil {
			return err
		}
		defer p.releaseKey(e)
		err = p.Do(ctx, func(s *Session) error { return op(s, e) })
		if handleBad(err) {
			// The keeper lost its objects (closed, token reset).
			p.resetKeeper(e.gen)
		}
		return err
	})
}

// initGCM binds e's key to an AES-GCM encrypt or decrypt operation on s.
func (p *Pool) initGCM(s *Session, e *keyEntry, params *pkcs11.GCMParams, encrypt bool) error {
	p.genMu.RLock()
	defer p.genMu.RUnlock()
	if e.gen != p.gen {
		return errStale
	}
	mech := []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_GCM, params)}
	if encrypt {
		return s.ctx.EncryptInit(s.handle, mech, e.h)
	}
	return s.ctx.DecryptInit(s.handle, mech, e.h)
}

// Seal encrypts plaintext with AES-256-GCM in the HSM under the key wrapped
// in wrapped, authenticating aad. The result is iv(12) || ciphertext ||
// tag(16), with a fresh random IV. A malformed or foreign wrapped key gives
// ErrAuthFailed.
func (p *Pool) Seal(ctx context.Context, wrapped, plaintext, aad []byte) ([]byte, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	var out []byte
	err := p.withKey(ctx, wrapped, func(s *Session, e *keyEntry) error {
		iv := make([]byte, ivSize, ivSize+len(plaintext)+tagSize)
		_, _ = rand.Read(iv) // never fails (crypto/rand crashes the program instead)
		params := pkcs11.NewGCMParams(iv, aad, tagSize*8)
		defer params.Free()
		if err := p.initGCM(s, e, params, true); err != nil {
			return fmt.Errorf("hsmpool: seal: %w", err)
		}
		ct, err := s.ctx.Encrypt(s.handle, plaintext)
		if err != nil {
			return fmt.Errorf("hsmpool: seal: %w", err)
		}
		if len(ct) != len(plaintext)+tagSize {
			return fmt.Errorf("hsmpool: seal: HSM returned %d bytes for %d", len(ct), len(plaintext))
		}
		// An HSM may choose its own IV; use the one it actually used.
		if got := params.IV(); len(got) == ivSize {
			copy(iv, got)
		}
		out = append(iv, ct...)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Open authenticates and decrypts sealed (as made by Seal with the same
// wrapped key and aad) in the HSM. Any mismatch - wrong key, wrong aad,
// tampered, truncated or short input - gives an error wrapping
// ErrAuthFailed. The returned plaintext belongs to the caller.
func (p *Pool) Open(ctx context.Context, wrapped, sealed, aad []byte) ([]byte, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	if len(sealed) < ivSize+tagSize {
		return nil, fmt.Errorf("%w: sealed data too short (%d bytes)", ErrAuthFailed, len(sealed))
	}
	var out []byte
	err := p.withKey(ctx, wrapped, func(s *Session, e *keyEntry) error {
		params := pkcs11.NewGCMParams(sealed[:ivSize], aad, tagSize*8)
		defer params.Free()
		if err := p.initGCM(s, e, params, false); err != nil {
			return fmt.Errorf("hsmpool: open: %w", err)
		}
		pt, err := s.ctx.Decrypt(s.handle, sealed[ivSize:])
		switch {
		case err == nil:
		case authFailure(err):
			return fmt.Errorf("%w (%v)", ErrAuthFailed, err)
		default:
			return fmt.Errorf("hsmpool: open: %w", err)
		}
		if len(pt) != len(sealed)-ivSize-tagSize {
			clear(pt)
			return fmt.Errorf("hsmpool: open: HSM returned %d bytes for %d", len(pt), len(sealed))
		}
		out = pt
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
