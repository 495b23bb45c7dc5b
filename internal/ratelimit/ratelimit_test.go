package ratelimit

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newClock() *fakeClock { return &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)} }

var threePer10s = Rule{Burst: 3, Refill: 10 * time.Second}

func TestTakeEmptiesBucketAndRefills(t *testing.T) {
	clk := newClock()
	l := New(100, WithClock(clk.now))
	for i := range 3 {
		if _, _, ok := l.Take(Charge{Key: "k", Rule: threePer10s}); !ok {
			t.Fatalf("attempt %d refused, want allowed", i+1)
		}
	}
	_, wait, ok := l.Take(Charge{Key: "k", Rule: threePer10s})
	if ok {
		t.Fatal("fourth attempt allowed, want refused")
	}
	if wait != 10*time.Second {
		t.Errorf("retryAfter = %v, want 10s", wait)
	}
	if got := l.Wait("k"); got != 10*time.Second {
		t.Errorf("Wait = %v, want 10s", got)
	}
	if _, _, ok := l.Take(Charge{Key: "other", Rule: threePer10s}); !ok {
		t.Error("another key refused")
	}
	clk.advance(5 * time.Second)
	if _, wait, ok := l.Take(Charge{Key: "k", Rule: threePer10s}); ok || wait != 5*time.Second {
		t.Errorf("after half a refill: ok=%v retryAfter=%v, want refused with 5s", ok, wait)
	}
	clk.advance(5 * time.Second)
	if _, _, ok := l.Take(Charge{Key: "k", Rule: threePer10s}); !ok {
		t.Error("after a refill still refused")
	}
}

// A refused Take spends nothing in any bucket, including the ones that had
// tokens: the buckets move together or not at all.
func TestTakeIsAllOrNothing(t *testing.T) {
	clk := newClock()
	l := New(100, WithClock(clk.now))
	one := Rule{Burst: 1, Refill: time.Hour}
	if _, _, ok := l.Take(Charge{Key: "b", Rule: one}); !ok {
		t.Fatal("first take of b refused")
	}
	for range 5 {
		if _, _, ok := l.Take(Charge{Key: "a", Rule: one}, Charge{Key: "b", Rule: one}); ok {
			t.Fatal("Take(a, b) allowed with b empty")
		}
	}
	if _, _, ok := l.Take(Charge{Key: "a", Rule: one}); !ok {
		t.Error("a lost its token to refused Takes")
	}
}

// N concurrent attempts are limited as N sequential ones: exactly Burst of
// them pass, however they interleave.
func TestConcurrentTakesAreLimitedExactly(t *testing.T) {
	l := New(100) // real clock: the burst is far larger than what refills in the test
	rule := Rule{Burst: 10, Refill: time.Hour}
	var passed atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range 500 {
		wg.Go(func() {
			<-start
			if _, _, ok := l.Take(Charge{Key: "acct", Rule: rule}, Charge{Key: "addr", Rule: Rule{Burst: 1000, Refill: time.Hour}}); ok {
				passed.Add(1)
			}
		})
	}
	close(start)
	wg.Wait()
	if got := passed.Load(); got != 10 {
		t.Errorf("%d of 500 concurrent attempts passed, want exactly the burst (10)", got)
	}
}

func TestRefundGivesBackOnlyItsOwnToken(t *testing.T) {
	clk := newClock()
	l := New(100, WithClock(clk.now))
	acct := Rule{Burst: 2, Refill: time.Hour}
	addr := Rule{Burst: 2, Refill: time.Hour}
	t1, _, ok := l.Take(Charge{Key: "acct", Rule: acct}, Charge{Key: "addr", Rule: addr})
	if !ok {
		t.Fatal("first take refused")
	}
	if _, _, ok := l.Take(Charge{Key: "acct", Rule: acct}, Charge{Key: "addr", Rule: addr}); !ok {
		t.Fatal("second take refused")
	}
	// Both buckets are empty; refunding the first ticket's account token
	// lets exactly one more account attempt through, and no address one.
	t1.Refund("acct")
	t1.Refund("acct") // a second refund of the same token gives nothing
	t1.Refund("never-taken")
	if _, _, ok := l.Take(Charge{Key: "acct", Rule: acct}); !ok {
		t.Error("refunded account token not usable")
	}
	if _, _, ok := l.Take(Charge{Key: "acct", Rule: acct}); ok {
		t.Error("a refund gave back more than one token")
	}
	if _, _, ok := l.Take(Charge{Key: "addr", Rule: addr}); ok {
		t.Error("refunding the account token refilled the address bucket")
	}
	var zero Ticket
	zero.Refund("acct") // no panic
}

func TestRefundNeverExceedsBurst(t *testing.T) {
	clk := newClock()
	l := New(100, WithClock(clk.now))
	r := Rule{Burst: 2, Refill: time.Second}
	tk, _, _ := l.Take(Charge{Key: "k", Rule: r})
	clk.advance(time.Hour) // refilled to the burst meanwhile
	tk.Refund("k")
	for i := range 2 {
		if _, _, ok := l.Take(Charge{Key: "k", Rule: r}); !ok {
			t.Fatalf("take %d refused", i+1)
		}
	}
	if _, _, ok := l.Take(Charge{Key: "k", Rule: r}); ok {
		t.Error("refund raised the bucket above its burst")
	}
}

func TestInvalidRuleRefuses(t *testing.T) {
	l := New(10)
	if _, _, ok := l.Take(Charge{Key: "k", Rule: Rule{}}); ok {
		t.Error("zero rule allowed an attempt")
	}
}

func TestBoundedKeys(t *testing.T) {
	l := New(50)
	one := Rule{Burst: 1, Refill: time.Hour}
	for i := range 1000 {
		l.Take(Charge{Key: fmt.Sprint("k", i), Rule: one})
	}
	if got := l.Len(); got != 50 {
		t.Errorf("Len = %d, want 50", got)
	}
	// The most recent keys are remembered, the oldest forgotten.
	if _, _, ok := l.Take(Charge{Key: "k999", Rule: one}); ok {
		t.Error("most recent key forgotten")
	}
	if _, _, ok := l.Take(Charge{Key: "k0", Rule: one}); !ok {
		t.Error("oldest key still remembered")
	}
}

// Keys charged with Keep are never forgotten to make room while they hold a
// debt: a flood of other keys cannot hand them a fresh budget.
func TestKeptKeysSurviveAFlood(t *testing.T) {
	clk := newClock()
	l := New(50, WithClock(clk.now))
	victim := Rule{Burst: 2, Refill: time.Hour}
	for range 2 {
		if _, _, ok := l.Take(Charge{Key: "acct:victim", Rule: victim, Keep: true}); !ok {
			t.Fatal("victim's first attempts refused")
		}
	}
	for i := range 10_000 {
		l.Take(Charge{Key: fmt.Sprint("acct:nobody-", i), Rule: victim})
	}
	if _, _, ok := l.Take(Charge{Key: "acct:victim", Rule: victim, Keep: true}); ok {
		t.Fatal("a flood of other keys gave the kept key a fresh bucket")
	}
	if got := l.Len(); got != 51 {
		t.Errorf("Len = %d, want the 50 forgettable keys and the kept one", got)
	}
	// Once refilled, a kept bucket is dropped (it is what a new key gets).
	clk.advance(2 * time.Hour)
	l.Take(Charge{Key: "other", Rule: victim})
	if got := l.Len(); got != 50 {
		t.Errorf("Len after the kept bucket refilled = %d, want 50", got)
	}
}

// A refused Take creates no bucket, so refused requests cannot churn the
// table.
func TestRefusedTakeCreatesNothing(t *testing.T) {
	l := New(100)
	one := Rule{Burst: 1, Refill: time.Hour}
	l.Take(Charge{Key: "addr", Rule: one})
	for i := range 50 {
		if _, _, ok := l.Take(Charge{Key: "addr", Rule: one}, Charge{Key: fmt.Sprint("acct:", i), Rule: one}); ok {
			t.Fatal("Take allowed with the address bucket empty")
		}
	}
	if got := l.Len(); got != 1 {
		t.Errorf("Len = %d after refused Takes, want 1", got)
	}
}
