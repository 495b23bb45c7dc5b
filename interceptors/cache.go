package interceptors

import (
	"container/list"
	"crypto/sha256"
	"sync"
	"time"

	"github.com/latchauth/latch/tokens"
)

// tokenCache remembers tokens that verified, so that a hot token is not
// re-verified with ECDSA on every call. Entries are keyed by the SHA-256 of
// the token (a collision would be a SHA-256 break), live until the token's
// exp, belong to the key set that verified them, and are evicted least
// recently used beyond the bound. Revocation is checked on every hit, not
// cached.
type tokenCache struct {
	max int

	mu    sync.Mutex
	items map[[32]byte]*list.Element
	lru   *list.List
}

type cacheEntry struct {
	key    [32]byte
	claims tokens.Claims
	keys   *tokens.KeySet // the set that verified the token
}

func newTokenCache(maxEntries int) *tokenCache {
	return &tokenCache{max: maxEntries, items: make(map[[32]byte]*list.Element), lru: list.New()}
}

func cacheKey(tok string) [32]byte { return sha256.Sum256([]byte(tok)) }

// get returns the cached claims if the entry is unexpired at now and was
// verified by the current key set.
func (c *tokenCache) get(key [32]byte, now time.Time, keys *tokens.KeySet) (tokens.Claims, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[key]
	if !ok {
		return tokens.Claims{}, false
	}
	e := el.Value.(*cacheEntry)
	if !now.Before(e.claims.ExpiresAt) || e.keys != keys {
		c.lru.Remove(el)
		delete(c.items, key)
		return tokens.Claims{}, false
	}
	c.lru.MoveToFront(el)
	return e.claims, true
}

func (c *tokenCache) put(key [32]byte, claims tokens.Claims, keys *tokens.KeySet) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[key]; ok {
		el.Value = &cacheEntry{key: key, claims: claims, keys: keys}
		c.lru.MoveToFront(el)
		return
	}
	c.items[key] = c.lru.PushFront(&cacheEntry{key: key, claims: claims, keys: keys})
	for c.lru.Len() > c.max {
		oldest := c.lru.Back()
		c.lru.Remove(oldest)
		delete(c.items, oldest.Value.(*cacheEntry).key)
	}
}

func (c *tokenCache) drop(key [32]byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[key]; ok {
		c.lru.Remove(el)
		delete(c.items, key)
	}
}
