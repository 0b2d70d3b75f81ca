package job

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kmsd/kmsd/batch/esdk"
)

// KMS is the part of the AWS KMS API a job uses. Implementations wrap
// throttling in ErrThrottled and transport failures or 5xx answers in
// ErrUnavailable (with %w) so the job can retry and fail over; any other
// error is final for the file it concerns. Safe for concurrent use.
type KMS interface {
	// GenerateDataKey returns a 32-byte data key, its ciphertext blob and
	// the key's ARN.
	GenerateDataKey(ctx context.Context, keyID string, ec map[string]string) (plaintext, blob []byte, keyARN string, err error)
	// Decrypt returns the plaintext of blob and the ARN of the key that
	// decrypted it; keyID, when not empty, must be that key.
	Decrypt(ctx context.Context, keyID string, blob []byte, ec map[string]string) (plaintext []byte, keyARN string, err error)
	// Encrypt returns plaintext's ciphertext blob under keyID and the key's ARN.
	Encrypt(ctx context.Context, keyID string, plaintext []byte, ec map[string]string) (blob []byte, keyARN string, err error)
	// ReEncrypt re-wraps blob (under srcKeyID, which may be empty) to
	// dstKeyID with the same encryption context.
	ReEncrypt(ctx context.Context, srcKeyID string, blob []byte, ec map[string]string, dstKeyID string) (newBlob []byte, keyARN string, err error)
}

var (
	// ErrThrottled marks a KMS answer that asks the caller to slow down.
	ErrThrottled = errors.New("job: KMS throttled the request")
	// ErrUnavailable marks an endpoint that could not answer (transport
	// error, 5xx): the job tries the next endpoint.
	ErrUnavailable = errors.New("job: KMS endpoint unavailable")
	// ErrNoDataKey: no encrypted data key in the header can be used.
	ErrNoDataKey = errors.New("job: no usable encrypted data key")
	// ErrContext: the message's encryption context lacks a required pair.
	ErrContext = errors.New("job: encryption context mismatch")
	// ErrExists: the output exists and the job does not overwrite it.
	ErrExists = errors.New("job: output exists")
	// ErrSourceChanged: the source changed while the job read it.
	ErrSourceChanged = errors.New("job: source changed while it was read")
	// ErrVerify: the output did not read back as the input.
	ErrVerify = errors.New("job: output verification failed")
)

// kmsCalls counts the KMS requests a job made, by operation.
type kmsCalls struct {
	generate, decrypt, encrypt, reencrypt, retries atomic.Int64
}

// client calls KMS through the endpoints in order with retries.
type client struct {
	eps     []KMS
	cur     atomic.Int32 // the endpoint in use
	retry   RetryConfig
	calls   *kmsCalls
	sleepFn func(context.Context, time.Duration) error
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// do runs op against the current endpoint; a throttled call backs off
// (exponential, full jitter) and retries; an unavailable endpoint gives
// way to the next one, backing off once every endpoint has failed in a
// row. Other errors return at once.
func (c *client) do(ctx context.Context, counter *atomic.Int64, op func(KMS) error) error {
	var err error
	failedInRow := 0
	for attempt := 0; attempt < c.retry.MaxAttempts; attempt++ {
		if attempt > 0 {
			c.calls.retries.Add(1)
		}
		i := int(c.cur.Load()) % len(c.eps)
		counter.Add(1)
		err = op(c.eps[i])
		switch {
		case err == nil:
			return nil
		case errors.Is(err, ErrThrottled):
			failedInRow = 0
		case errors.Is(err, ErrUnavailable):
			c.cur.CompareAndSwap(int32(i), int32((i+1)%len(c.eps)))
			failedInRow++
			if failedInRow < len(c.eps) {
				continue // the next endpoint, at once
			}
			failedInRow = 0
		default:
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		ceil := c.retry.BaseDelay << min(attempt, 20)
		if ceil > c.retry.MaxDelay || ceil <= 0 {
			ceil = c.retry.MaxDelay
		}
		if e := c.sleepFn(ctx, rand.N(ceil)+1); e != nil {
			return e
		}
	}
	return fmt.Errorf("after %d attempts: %w", c.retry.MaxAttempts, err)
}

// encMaterials are data-key materials shared by the messages of a cache
// entry: the data key, its wrapped copy, the context (with the public key
// for signed suites) and the signing key.
type encMaterials struct {
	dataKey []byte
	edk     esdk.DataKey
	ec      map[string]string
	sk      *esdk.SigningKey

	created  time.Time
	messages int64
	bytes    int64
}

// encCache keeps the current encryption materials of a job (one key, one
// context, one suite, so one entry) within the cache limits, as the AWS
// Encryption SDK's caching materials manager does.
type encCache struct {
	mu  sync.Mutex
	cfg CacheConfig
	cur *encMaterials
	now func() time.Time
}

// take returns a copy of usable materials for a message of size bytes
// (size < 0: unknown, never cached), calling fresh when the entry is
// missing, too old, or out of messages or bytes. The caller zeroes the
// returned data key.
func (c *encCache) take(size int64, fresh func() (*encMaterials, error)) (*encMaterials, error) {
	if c.cfg.Disabled || size < 0 || size > c.cfg.MaxBytes {
		return fresh()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	e := c.cur
	if e == nil || now.Sub(e.created) >= c.cfg.MaxAge || e.messages+1 > c.cfg.MaxMessages || e.bytes+size > c.cfg.MaxBytes {
		if e != nil {
			clear(e.dataKey)
			c.cur = nil
		}
		n, err := fresh()
		if err != nil {
			return nil, err
		}
		n.created = now
		c.cur, e = n, n
	}
	e.messages++
	e.bytes += size
	cp := *e
	cp.dataKey = append([]byte(nil), e.dataKey...)
	return &cp, nil
}

func (c *encCache) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur != nil {
		clear(c.cur.dataKey)
		c.cur = nil
	}
}

// decEntry is a decrypted data key (and, for re-wrap, its new blob).
type decEntry struct {
	dataKey []byte
	newEDK  esdk.DataKey
	created time.Time
	uses    int64
}

// decCache maps an encrypted data key (blob, ARN, context) to its
// plaintext, so files that share a data key (written with caching) cost
// one KMS Decrypt, within the same age and message limits.
type decCache struct {
	mu       sync.Mutex
	cfg      CacheConfig
	m        map[string]*decEntry
	inflight map[string]chan struct{}
	now      func() time.Time
}

// lead makes the caller the one that opens key (it must call the
// returned release), or returns a channel closed when the current leader
// is done, so files sharing a data key cost one KMS call between them.
func (c *decCache) lead(key string) (release func(), wait <-chan struct{}) {
	if c.cfg.Disabled {
		return func() {}, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if ch := c.inflight[key]; ch != nil {
		return nil, ch
	}
	ch := make(chan struct{})
	c.inflight[key] = ch
	return func() {
		c.mu.Lock()
		delete(c.inflight, key)
		c.mu.Unlock()
		close(ch)
	}, nil
}

const maxDecEntries = 4096

func (c *decCache) getEntry(key string) (dk []byte, edk esdk.DataKey, ok bool) {
	if c.cfg.Disabled {
		return nil, edk, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.m[key]
	if e == nil {
		return nil, edk, false
	}
	if c.now().Sub(e.created) >= c.cfg.MaxAge || e.uses+1 > c.cfg.MaxMessages {
		clear(e.dataKey)
		delete(c.m, key)
		return nil, edk, false
	}
	e.uses++
	return append([]byte(nil), e.dataKey...), e.newEDK, true
}

func (c *decCache) put(key string, dk []byte, newEDK esdk.DataKey) {
	if c.cfg.Disabled {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= maxDecEntries {
		for k, e := range c.m {
			clear(e.dataKey)
			delete(c.m, k)
		}
	}
	if old := c.m[key]; old != nil {
		clear(old.dataKey)
	}
	c.m[key] = &decEntry{dataKey: append([]byte(nil), dk...), newEDK: newEDK, created: c.now(), uses: 1}
}

func (c *decCache) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, e := range c.m {
		clear(e.dataKey)
		delete(c.m, k)
	}
}
