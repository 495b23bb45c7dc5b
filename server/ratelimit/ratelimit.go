// Package ratelimit keeps one token bucket per key (an account, a client
// address) in a bounded table, to slow down password guessing.
//
// Only failures spend tokens: a key is refused once its failures have emptied
// its bucket, until the bucket refills. The table holds at most a fixed number
// of keys and forgets the least recently used one first, so a flood of
// distinct keys costs bounded memory.
package ratelimit

import (
	"container/list"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Limiter is a bounded table of token buckets. It is safe for concurrent use.
type Limiter struct {
	mu      sync.Mutex
	every   rate.Limit
	burst   int
	max     int
	now     func() time.Time
	entries map[string]*list.Element
	lru     *list.List // front = most recently used
}

type entry struct {
	key string
	lim *rate.Limiter
}

// Option configures a Limiter.
type Option func(*Limiter)

// WithClock sets the clock. Default time.Now.
func WithClock(now func() time.Time) Option { return func(l *Limiter) { l.now = now } }

// New returns a Limiter that allows burst failures per key, refilled at one
// every refill, and remembers at most maxKeys keys (least recently used
// forgotten first; a forgotten key starts again with a full bucket).
func New(burst int, refill time.Duration, maxKeys int, opts ...Option) *Limiter {
	l := &Limiter{
		every:   rate.Every(refill),
		burst:   max(burst, 1),
		max:     max(maxKeys, 1),
		now:     time.Now,
		entries: make(map[string]*list.Element),
		lru:     list.New(),
	}
	for _, o := range opts {
		o(l)
	}
	return l
}

// Allow reports whether key may make another attempt now, without spending
// anything. When it may not, retryAfter says when one token will be back.
func (l *Limiter) Allow(key string) (ok bool, retryAfter time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	el, found := l.entries[key]
	if !found {
		return true, 0
	}
	l.lru.MoveToFront(el)
	lim := el.Value.(*entry).lim
	now := l.now()
	if lim.TokensAt(now) >= 1 {
		return true, 0
	}
	r := lim.ReserveN(now, 1)
	d := r.DelayFrom(now)
	r.CancelAt(now)
	return false, d
}

// Fail spends one token of key's bucket.
func (l *Limiter) Fail(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	el, found := l.entries[key]
	if !found {
		el = l.lru.PushFront(&entry{key: key, lim: rate.NewLimiter(l.every, l.burst)})
		l.entries[key] = el
		if l.lru.Len() > l.max {
			oldest := l.lru.Back()
			l.lru.Remove(oldest)
			delete(l.entries, oldest.Value.(*entry).key)
		}
	} else {
		l.lru.MoveToFront(el)
	}
	el.Value.(*entry).lim.AllowN(l.now(), 1)
}

// Reset forgets key, giving it a full bucket again (after a successful login).
func (l *Limiter) Reset(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if el, found := l.entries[key]; found {
		l.lru.Remove(el)
		delete(l.entries, key)
	}
}

// Len returns the number of keys remembered.
func (l *Limiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lru.Len()
}
