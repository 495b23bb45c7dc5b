package lowprio_test

import (
	"syscall"
	"testing"

	"github.com/latchauth/latch/server/lowprio"
)

// threadNice returns the calling thread's nice value, or -100 when it
// cannot be read (safe to call from any goroutine).
func threadNice() int {
	p, err := syscall.Getpriority(syscall.PRIO_PROCESS, syscall.Gettid())
	if err != nil {
		return -100
	}
	return 20 - p
}

func TestRunLowersOnlyTheWorkersThread(t *testing.T) {
	base := threadNice()
	var inside, tid int
	lowprio.Run(5, func() { inside, tid = threadNice(), syscall.Gettid() })
	if want := min(base+5, 19); inside != want {
		t.Fatalf("work ran at nice %d, want %d", inside, want)
	}
	if tid == syscall.Gettid() {
		t.Fatal("work ran on the caller's thread")
	}
	// Later calls start from the process's priority, not the last
	// worker's: the lowered thread is gone.
	lowprio.Run(5, func() { inside = threadNice() })
	if want := min(base+5, 19); inside != want {
		t.Fatalf("second run at nice %d, want %d", inside, want)
	}
	lowprio.Run(0, func() { inside = threadNice() })
	if inside != base {
		t.Fatalf("nice 0: work ran at nice %d, want %d", inside, base)
	}
}

func TestRunRepanics(t *testing.T) {
	defer func() {
		if r := recover(); r != "boom" {
			t.Fatalf("recovered %v, want the work's panic", r)
		}
	}()
	lowprio.Run(3, func() { panic("boom") })
	t.Fatal("Run returned after its work panicked")
}
