package tokens

import (
	"container/list"
	"crypto/sha256"
	"sync"
	"time"
)

// VerifyCache remembers tokens that verified, so that a hot token is not
// verified with ECDSA on every use. Entries are keyed by the SHA-256 of the
// token (CacheKey; a collision would be a SHA-256 break), live until the
// token's exp, belong to the key-set epoch that verified them (any
// comparable value that changes when the keys do) and are evicted least
// recently used beyond the bound. The cache holds verification only:
// callers check revocation on every hit. It is safe for concurrent use.
type VerifyCache struct {
	max int

	mu    sync.Mutex
	items map[[32]byte]*list.Element
	lru   *list.List
}

type cacheEntry struct {
	key    [32]byte
	claims Claims
	epoch  any
}

// NewVerifyCache returns a cache of at most maxEntries tokens (at least 1).
func NewVerifyCache(maxEntries int) *VerifyCache {
	return &VerifyCache{max: max(maxEntries, 1), items: make(map[[32]byte]*list.Element), lru: list.New()}
}

// cacheKeyStack is the longest token CacheKey hashes from a buffer on its
// stack: longer than Latch's access tokens (600–900 bytes). Converting the
// string instead copies it to the heap (Go keeps only conversions of up to
// 32 bytes on the stack), and CacheKey runs on every Introspect and every
// intercepted call, twice for an authorized Introspect.
const cacheKeyStack = 2048

// CacheKey is the key under which tok is cached: its SHA-256.
func CacheKey(tok string) [32]byte {
	if len(tok) > cacheKeyStack {
		return sha256.Sum256([]byte(tok))
	}
	var buf [cacheKeyStack]byte
	return sha256.Sum256(buf[:copy(buf[:], tok)])
}

// Get returns the cached claims when the entry is unexpired at now and was
// verified in the same key-set epoch.
func (c *VerifyCache) Get(key [32]byte, now time.Time, epoch any) (Claims, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[key]
	if !ok {
		return Claims{}, false
	}
	e := el.Value.(*cacheEntry)
	if !now.Before(e.claims.ExpiresAt) || e.epoch != epoch {
		c.lru.Remove(el)
		delete(c.items, key)
		return Claims{}, false
	}
	c.lru.MoveToFront(el)
	return e.claims, true
}

// Put stores claims that verified under epoch.
func (c *VerifyCache) Put(key [32]byte, claims Claims, epoch any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[key]; ok {
		el.Value = &cacheEntry{key: key, claims: claims, epoch: epoch}
		c.lru.MoveToFront(el)
		return
	}
	c.items[key] = c.lru.PushFront(&cacheEntry{key: key, claims: claims, epoch: epoch})
	for c.lru.Len() > c.max {
		oldest := c.lru.Back()
		c.lru.Remove(oldest)
		delete(c.items, oldest.Value.(*cacheEntry).key)
	}
}

// Drop forgets the entry under key (a revoked token, for example).
func (c *VerifyCache) Drop(key [32]byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[key]; ok {
		c.lru.Remove(el)
		delete(c.items, key)
	}
}

// Len returns the number of cached tokens.
func (c *VerifyCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}
