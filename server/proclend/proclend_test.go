package proclend_test

import (
	"runtime"
	"testing"
	"time"

	"github.com/latchauth/latch/server/proclend"
)

// waitProcs polls GOMAXPROCS until it is want (the Lender shrinks on a
// timer) or a generous deadline passes.
func waitProcs(t *testing.T, want int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.GOMAXPROCS(0) != want {
		if time.Now().After(deadline) {
			t.Fatalf("GOMAXPROCS %d, want %d", runtime.GOMAXPROCS(0), want)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestLendRaisesAndRestores(t *testing.T) {
	base := runtime.GOMAXPROCS(0)
	t.Cleanup(func() { runtime.GOMAXPROCS(base) })
	l := proclend.New(2, time.Millisecond)

	end1 := l.Lend()
	if got := runtime.GOMAXPROCS(0); got != base+1 {
		t.Fatalf("one computation: GOMAXPROCS %d, want %d", got, base+1)
	}
	end2 := l.Lend()
	end3 := l.Lend()
	if got := runtime.GOMAXPROCS(0); got != base+2 {
		t.Fatalf("three computations, at most 2 lent: GOMAXPROCS %d, want %d", got, base+2)
	}
	end3()
	end3() // a second call is harmless
	end2()
	waitProcs(t, base+1)
	end1()
	waitProcs(t, base)
}

// TestLingerKeepsBackToBackLends: a computation that starts within the
// linger of the previous one's end finds its P still lent (a queue of
// hashes does not resize the scheduler between them).
func TestLingerKeepsBackToBackLends(t *testing.T) {
	base := runtime.GOMAXPROCS(0)
	t.Cleanup(func() { runtime.GOMAXPROCS(base) })
	l := proclend.New(1, time.Hour)
	l.Lend()()
	if got := runtime.GOMAXPROCS(0); got != base+1 {
		t.Fatalf("within the linger: GOMAXPROCS %d, want %d", got, base+1)
	}
	end := l.Lend()
	end()
	l.Stop()
	if got := runtime.GOMAXPROCS(0); got != base {
		t.Fatalf("after Stop: GOMAXPROCS %d, want %d", got, base)
	}
	l.Lend()() // lends nothing once stopped
	if got := runtime.GOMAXPROCS(0); got != base {
		t.Fatalf("Lend after Stop: GOMAXPROCS %d, want %d", got, base)
	}
}

func TestNilLenderLendsNothing(t *testing.T) {
	base := runtime.GOMAXPROCS(0)
	var l *proclend.Lender
	if proclend.New(0, time.Second) != nil {
		t.Fatal("New(0) is not nil")
	}
	l.Lend()()
	l.Stop()
	if got := runtime.GOMAXPROCS(0); got != base {
		t.Fatalf("GOMAXPROCS %d, want %d", got, base)
	}
}

// TestApplicable: an explicit GOMAXPROCS is the operator's to keep.
func TestApplicable(t *testing.T) {
	t.Setenv("GOMAXPROCS", "1")
	if proclend.Applicable() {
		t.Fatal("Applicable with GOMAXPROCS set in the environment")
	}
}

// TestConcurrentLends runs lends and releases from many goroutines (for
// the race detector) and checks that everything lent is taken back.
func TestConcurrentLends(t *testing.T) {
	base := runtime.GOMAXPROCS(0)
	t.Cleanup(func() { runtime.GOMAXPROCS(base) })
	l := proclend.New(3, 100*time.Microsecond)
	done := make(chan struct{})
	for range 8 {
		go func() {
			defer func() { done <- struct{}{} }()
			for range 200 {
				end := l.Lend()
				if got := runtime.GOMAXPROCS(0); got < base+1 || got > base+3 {
					t.Errorf("GOMAXPROCS %d while lending, want in [%d, %d]", got, base+1, base+3)
				}
				end()
			}
		}()
	}
	for range 8 {
		<-done
	}
	waitProcs(t, base)
}
