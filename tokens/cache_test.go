package tokens_test

import (
	"crypto/sha256"
	"strings"
	"testing"
	"time"

	"github.com/latchauth/latch/tokens"
)

func TestVerifyCache(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	c := tokens.NewVerifyCache(2)
	claims := tokens.Claims{Subject: "u", ExpiresAt: now.Add(time.Minute)}
	k1, k2, k3 := tokens.CacheKey("a"), tokens.CacheKey("b"), tokens.CacheKey("c")
	c.Put(k1, claims, "epoch-1")
	if got, ok := c.Get(k1, now, "epoch-1"); !ok || got.Subject != "u" {
		t.Fatal("cached claims not returned")
	}
	if _, ok := c.Get(k1, now, "epoch-2"); ok {
		t.Fatal("entry survived a key-set change")
	}
	c.Put(k1, claims, "e")
	if _, ok := c.Get(k1, now.Add(time.Minute), "e"); ok {
		t.Fatal("entry served at its exp")
	}
	c.Put(k1, claims, "e")
	c.Put(k2, claims, "e")
	c.Get(k1, now, "e") // k1 is now the most recent
	c.Put(k3, claims, "e")
	if c.Len() != 2 {
		t.Fatalf("Len = %d, want the bound 2", c.Len())
	}
	if _, ok := c.Get(k2, now, "e"); ok {
		t.Fatal("least recently used entry not evicted")
	}
	c.Drop(k1)
	if _, ok := c.Get(k1, now, "e"); ok {
		t.Fatal("dropped entry served")
	}
	if tokens.CacheKey("a") == tokens.CacheKey("b") {
		t.Fatal("distinct tokens share a key")
	}
}

// TestCacheKey: the key is the token's SHA-256 at every length, on both
// sides of the stack buffer's size and up to the longest token Verify reads.
func TestCacheKey(t *testing.T) {
	for _, n := range []int{0, 1, 600, 2047, 2048, 2049, tokens.MaxTokenLength, tokens.MaxTokenLength + 1} {
		tok := strings.Repeat("x", n)
		if got, want := tokens.CacheKey(tok), sha256.Sum256([]byte(tok)); got != want {
			t.Errorf("CacheKey of %d bytes = %x, want its SHA-256 %x", n, got, want)
		}
	}
}

// TestCacheKeyAllocatesNothing: the key of an access token of a usual size
// costs no heap allocation (CacheKey runs on every Introspect and every
// intercepted call).
func TestCacheKeyAllocatesNothing(t *testing.T) {
	tok := strings.Repeat("e", 900)
	if allocs := testing.AllocsPerRun(100, func() { _ = tokens.CacheKey(tok) }); allocs != 0 {
		t.Fatalf("CacheKey of a 900-byte token allocated %v times per run, want 0", allocs)
	}
}
