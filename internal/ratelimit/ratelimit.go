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
// (a forgotten key starts again with a full bucket). A key whose number the
// caller knows an attacker cannot grow (a stored account, a device proof the
// server issued) is charged with Keep: its bucket is never forgotten to make
// room, only once it has refilled, so that no flood of other keys can hand a
// victim's account a fresh budget. A refused Take creates no bucket.
package ratelimit

import (
	"container/list"
	"math"
	"slices"
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
	// Keep marks a key from a set an attacker cannot grow at will: its
	// bucket is not forgotten to make room for other keys while it holds
	// less than its burst.
	Keep bool
}

// Limiter is a bounded table of token buckets. It is safe for concurrent use.
type Limiter struct {
	mu      sync.Mutex
	max     int
	now     func() time.Time
	entries map[string]*list.Element
	lru     *list.List // of *bucket, forgettable to make room; front = most recently used
	kept    *list.List // of *bucket charged with Keep; front = most recently used
}

type bucket struct {
	key    string
	rule   Rule
	tokens float64   // tokens held at last
	last   time.Time // when tokens was computed
	kept   bool      // in Limiter.kept rather than Limiter.lru
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
		kept:    list.New(),
	}
	for _, o := range opts {
		o(l)
	}
	return l
}

// Take takes one token from the bucket of every charge, atomically: either
// every bucket holds a token and each gives one, or none gives anything, ok
// is false and retryAfter is how long until every refusing bucket holds a
// token again. A key seen for the first time starts with a full bucket; a
// refused Take creates no bucket. A charge whose rule is not Valid refuses.
// A key named twice is charged twice.
func (l *Limiter) Take(charges ...Charge) (t Ticket, retryAfter time.Duration, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	l.dropRefilled(now)
	need := make(map[string]float64, len(charges))
	for _, c := range charges {
		if !c.Rule.Valid() {
			return Ticket{}, 0, false
		}
		need[c.Key]++
	}
	short := false
	for _, c := range charges {
		lvl, refill := float64(c.Rule.Burst), c.Rule.Refill
		if el, found := l.entries[c.Key]; found {
			b := el.Value.(*bucket)
			lvl, refill = math.Min(b.level(now), float64(c.Rule.Burst)), b.rule.Refill
		}
		if n := need[c.Key]; lvl < n {
			short = true
			retryAfter = max(retryAfter, time.Duration(math.Ceil((n-lvl)*float64(refill))))
		}
	}
	if short {
		return Ticket{}, retryAfter, false
	}
	keys := make([]string, len(charges))
	for i, c := range charges {
		b := l.lookup(c, now)
		b.tokens = b.level(now) - 1
		b.last = now
		keys[i] = b.key
	}
	return Ticket{l: l, keys: keys}, 0, true
}

// lookup returns c's bucket, creating a full one (and forgetting the least
// recently used forgettable key when the table is full). The bucket takes
// c's rule, so a key's shape follows its latest charge, and is kept once
// any charge of it asks for Keep.
func (l *Limiter) lookup(c Charge, now time.Time) *bucket {
	if el, found := l.entries[c.Key]; found {
		b := el.Value.(*bucket)
		if b.rule != c.Rule {
			b.tokens = math.Min(b.level(now), float64(c.Rule.Burst))
			b.last = now
			b.rule = c.Rule
		}
		switch {
		case c.Keep && !b.kept:
			l.lru.Remove(el)
			b.kept = true
			l.entries[c.Key] = l.kept.PushFront(b)
		case b.kept:
			l.kept.MoveToFront(el)
		default:
			l.lru.MoveToFront(el)
		}
		return b
	}
	b := &bucket{key: c.Key, rule: c.Rule, tokens: float64(c.Rule.Burst), last: now, kept: c.Keep}
	if c.Keep {
		l.entries[c.Key] = l.kept.PushFront(b)
		return b
	}
	l.entries[c.Key] = l.lru.PushFront(b)
	for l.lru.Len() > l.max {
		oldest := l.lru.Back()
		l.lru.Remove(oldest)
		delete(l.entries, oldest.Value.(*bucket).key)
	}
	return b
}

// dropRefilled forgets kept buckets that have refilled to their burst (a
// full bucket is what a forgotten key starts with), looking at the two least
// recently used ones on each call, so that kept keys cost memory only while
// they hold a debt.
func (l *Limiter) dropRefilled(now time.Time) {
	for range 2 {
		el := l.kept.Back()
		if el == nil {
			return
		}
		b := el.Value.(*bucket)
		if b.level(now) < float64(b.rule.Burst) {
			return
		}
		l.kept.Remove(el)
		delete(l.entries, b.key)
	}
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
	return l.lru.Len() + l.kept.Len()
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
	i := slices.Index(t.keys, key)
	if i < 0 {
		return
	}
	t.keys[i] = ""
	if el, found := t.l.entries[key]; found {
		b := el.Value.(*bucket)
		now := t.l.now()
		b.tokens = math.Min(float64(b.rule.Burst), b.level(now)+1)
		b.last = now
	}
}
