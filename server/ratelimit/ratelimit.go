// Package ratelimit keeps token buckets, one per key (an account, a device,
// a client address), in a bounded table, to slow down password guessing and
// token probing.
//
// An attempt takes a token from every bucket it is counted against in one
// step (Take), before the work it guards starts: N concurrent attempts are
// limited exactly as N sequential ones, because no attempt can pass a check
// that an earlier one has not yet paid for. What an attempt took can be
// given back bucket by bucket afterwards (Ticket.Refund), for example the
// account's token after a successful login.
//
// The buckets are small hand-written token buckets rather than
// golang.org/x/time/rate limiters: a refund must return a token after the
// guarded work has taken time, and rate.Reservation.Cancel only restores a
// reservation whose time to act has not yet come.
//
// The table holds at most a fixed number of keys and forgets the least
// recently used one first, so a flood of distinct keys costs bounded memory
// (a forgotten key starts again with a full bucket).
package ratelimit

import (
	"container/list"
	"math"
	"sync"
	"time"
)

// Rule is the shape of a bucket: it holds at most Burst tokens and gets one
// back every Refill.
type Rule struct {
	Burst  int
	Refill time.Duration
}

// Valid reports whether r can limit anything: a positive burst and refill.
func (r Rule) Valid() bool { return r.Burst >= 1 && r.Refill > 0 }

// Charge names one bucket an attempt is counted against, and its shape.
type Charge struct {
	Key  string
	Rule Rule
}

// Limiter is a bounded table of token buckets. It is safe for concurrent use.
type Limiter struct {
	mu      sync.Mutex
	max     int
	now     func() time.Time
	entries map[string]*list.Element
	lru     *list.List // of *bucket; front = most recently used
}

type bucket struct {
	key    string
	rule   Rule
	tokens float64   // tokens held at last
	last   time.Time // when tokens was computed
}

// level returns the tokens b holds at now.
func (b *bucket) level(now time.Time) float64 {
	if elapsed := now.Sub(b.last); elapsed > 0 {
		return math.Min(float64(b.rule.Burst), b.tokens+float64(elapsed)/float64(b.rule.Refill))
	}
	return b.tokens
}

// wait returns how long b needs at now to hold one whole token.
func (b *bucket) wait(now time.Time) time.Duration {
	missing := 1 - b.level(now)
	if missing <= 0 {
		return 0
	}
	return time.Duration(math.Ceil(missing * float64(b.rule.Refill)))
}

// Option configures a Limiter.
type Option func(*Limiter)

// WithClock sets the clock. Default time.Now.
func WithClock(now func() time.Time) Option { return func(l *Limiter) { l.now = now } }

// New returns a Limiter that remembers at most maxKeys buckets.
func New(maxKeys int, opts ...Option) *Limiter {
	l := &Limiter{
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

// Take takes one token from the bucket of every charge, atomically: either
// every bucket holds a token and each gives one, or none gives anything, ok
// is false and retryAfter is how long until every refusing bucket holds a
// token again. A key seen for the first time starts with a full bucket. A
// charge whose rule is not Valid refuses. A key named twice is charged
// twice.
func (l *Limiter) Take(charges ...Charge) (t Ticket, retryAfter time.Duration, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	buckets := make([]*bucket, len(charges))
	need := make(map[*bucket]float64, len(charges))
	for i, c := range charges {
		if !c.Rule.Valid() {
			return Ticket{}, 0, false
		}
		b := l.lookup(c.Key, c.Rule, now)
		buckets[i] = b
		need[b]++
	}
	short := false
	for b, n := range need {
		if lvl := b.level(now); lvl < n {
			short = true
			retryAfter = max(retryAfter, time.Duration(math.Ceil((n-lvl)*float64(b.rule.Refill))))
		}
	}
	if short {
		return Ticket{}, retryAfter, false
	}
	keys := make([]string, len(buckets))
	for i, b := range buckets {
		b.tokens = b.level(now) - 1
		b.last = now
		keys[i] = b.key
	}
	return Ticket{l: l, keys: keys}, 0, true
}

// lookup returns key's bucket, creating a full one (and forgetting the least
// recently used key when the table is full). The bucket takes rule, so a
// key's shape follows its latest charge.
func (l *Limiter) lookup(key string, rule Rule, now time.Time) *bucket {
	if el, found := l.entries[key]; found {
		l.lru.MoveToFront(el)
		b := el.Value.(*bucket)
		if b.rule != rule {
			b.tokens = math.Min(b.level(now), float64(rule.Burst))
			b.last = now
			b.rule = rule
		}
		return b
	}
	b := &bucket{key: key, rule: rule, tokens: float64(rule.Burst), last: now}
	l.entries[key] = l.lru.PushFront(b)
	for l.lru.Len() > l.max {
		oldest := l.lru.Back()
		l.lru.Remove(oldest)
		delete(l.entries, oldest.Value.(*bucket).key)
	}
	return b
}

// Wait reports how long until key's bucket holds a token (zero if it does
// now, or if the key is not remembered). It spends nothing.
func (l *Limiter) Wait(key string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	el, found := l.entries[key]
	if !found {
		return 0
	}
	return el.Value.(*bucket).wait(l.now())
}

// Len returns the number of keys remembered.
func (l *Limiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lru.Len()
}

// Ticket is what one Take took. The zero Ticket took nothing.
type Ticket struct {
	l    *Limiter
	keys []string // one per token taken; "" once refunded
}

// Refund gives back one token that the Take took from key's bucket (never
// more than the bucket's burst). It does nothing when the Take took nothing
// from key, when that token was already refunded, or when the key has been
// forgotten since (its bucket is full anyway).
func (t *Ticket) Refund(key string) {
	if t.l == nil || key == "" {
		return
	}
	t.l.mu.Lock()
	defer t.l.mu.Unlock()
	for i, k := range t.keys {
		if k != key {
			continue
		}
		t.keys[i] = ""
		if el, found := t.l.entries[key]; found {
			b := el.Value.(*bucket)
			now := t.l.now()
			b.tokens = math.Min(float64(b.rule.Burst), b.level(now)+1)
			b.last = now
		}
		return
	}
}
