package sigv4

import (
	"crypto/hmac"
	"crypto/sha256"
	"sync"
)

// maxCachedKeys bounds the derived-key cache. A key is valid for one UTC day,
// so the live set is about (active access keys) x (1 or 2 days).
const maxCachedKeys = 1024

// keyCache maps (access key id, scope) to the SigV4 signing key derived from
// a secret. An entry carries the secret it was derived from and is used only
// if the current secret is equal, so correctness never depends on a hit.
// The zero value is ready to use; safe for concurrent use.
type keyCache struct {
	mu sync.RWMutex
	m  map[cacheKey]*cachedKey
}

type cacheKey struct {
	akid  string
	scope string // yyyymmdd/region/service/aws4_request
}

type cachedKey struct {
	secret []byte
	key    [sha256.Size]byte
}

// get returns the signing key for scope "yyyymmdd/region/service/aws4_request"
// (already validated against region and service). The caller should clear
// the returned copy when done.
func (c *keyCache) get(akid string, scope, secret []byte, region, service string) [sha256.Size]byte {
	var key [sha256.Size]byte
	c.mu.RLock()
	e := c.m[cacheKey{akid, string(scope)}] // no allocation: lookup-only conversion
	hit := e != nil && hmac.Equal(e.secret, secret)
	if hit {
		key = e.key
	}
	c.mu.RUnlock()
	if hit {
		return key
	}

	key = deriveKey(secret, scope[:8], region, service)
	e = &cachedKey{secret: append([]byte(nil), secret...), key: key}
	c.mu.Lock()
	if c.m == nil {
		c.m = make(map[cacheKey]*cachedKey)
	}
	if old, ok := c.m[cacheKey{akid, string(scope)}]; ok {
		old.wipe()
	} else if len(c.m) >= maxCachedKeys {
		for k, old := range c.m { // evict one arbitrary entry
			old.wipe()
			delete(c.m, k)
			break
		}
	}
	c.m[cacheKey{akid, string(scope)}] = e
	c.mu.Unlock()
	return key
}

// wipe zeroes key material; called with the write lock held, so no reader
// is copying from the entry.
func (e *cachedKey) wipe() {
	clear(e.secret)
	clear(e.key[:])
}

// deriveKey computes kSigning = HMAC(HMAC(HMAC(HMAC("AWS4"+secret, date),
// region), service), "aws4_request").
func deriveKey(secret, date []byte, region, service string) [sha256.Size]byte {
	k := make([]byte, 0, 4+len(secret))
	k = append(k, "AWS4"...)
	k = append(k, secret...)
	step := func(key []byte, data string) []byte {
		m := hmac.New(sha256.New, key)
		m.Write([]byte(data))
		return m.Sum(nil)
	}
	kDate := step(k, string(date))
	kRegion := step(kDate, region)
	kService := step(kRegion, service)
	kSigning := step(kService, scopeTerminator)
	var out [sha256.Size]byte
	copy(out[:], kSigning)
	for _, b := range [][]byte{k, kDate, kRegion, kService, kSigning} {
		clear(b)
	}
	return out
}
