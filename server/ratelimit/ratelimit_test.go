package ratelimit

import (
	"fmt"
	"testing"
	"time"
)

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func TestFailuresExhaustBucket(t *testing.T) {
	clk := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	l := New(3, 10*time.Second, 100, WithClock(clk.now))
	for i := range 3 {
		if ok, _ := l.Allow("k"); !ok {
			t.Fatalf("attempt %d refused, want allowed", i+1)
		}
		l.Fail("k")
	}
	ok, wait := l.Allow("k")
	if ok {
		t.Fatalf("after 3 failures Allow = true, want false")
	}
	if wait <= 0 || wait > 10*time.Second {
		t.Errorf("retryAfter = %v, want in (0, 10s]", wait)
	}
	if ok, _ := l.Allow("other"); !ok {
		t.Errorf("another key refused")
	}
	clk.t = clk.t.Add(10 * time.Second)
	if ok, _ := l.Allow("k"); !ok {
		t.Errorf("after refill Allow = false, want true")
	}
}

func TestAllowDoesNotSpend(t *testing.T) {
	l := New(1, time.Hour, 10)
	for range 100 {
		if ok, _ := l.Allow("k"); !ok {
			t.Fatalf("Allow spent a token")
		}
	}
}

func TestReset(t *testing.T) {
	l := New(1, time.Hour, 10)
	l.Fail("k")
	if ok, _ := l.Allow("k"); ok {
		t.Fatalf("Allow after failure = true")
	}
	l.Reset("k")
	if ok, _ := l.Allow("k"); !ok {
		t.Errorf("Allow after Reset = false")
	}
}

func TestBoundedKeys(t *testing.T) {
	l := New(1, time.Hour, 50)
	for i := range 1000 {
		l.Fail(fmt.Sprint("k", i))
	}
	if got := l.Len(); got != 50 {
		t.Errorf("Len = %d, want 50", got)
	}
	// The most recent keys are remembered, the oldest forgotten.
	if ok, _ := l.Allow("k999"); ok {
		t.Errorf("most recent key forgotten")
	}
	if ok, _ := l.Allow("k0"); !ok {
		t.Errorf("oldest key still remembered")
	}
}
