// Package proclend lends the Go scheduler one more processor (a P, see
// runtime.GOMAXPROCS) for each long CPU-bound computation in progress, so
// that such a computation does not take a processor away from the
// goroutines serving requests.
//
// An argon2id hash (the password hasher's) runs on one goroutine for ~19
// ms without blocking. It holds its P all that time, and the scheduler
// preempts it only every 10 ms: goroutines queued on that P's run queue
// wait for it, and with GOMAXPROCS = 2 a login flood leaves one P to every
// other RPC. Lending a P for each hash gives the scheduler GOMAXPROCS + 1
// runnable threads, and the kernel time-slices them over the cores at its
// finer granularity instead. The work is the same: this only changes who
// waits. Measured with `latch bench --only unloaded,flood` (issue 8, three
// interleaved pairs on 2 cores): the p99 of Introspect during a login
// flood went from 3.00–3.11× its unloaded p99 to 2.56–3.01×, and the
// flood row's Introspect rate from ~16,400/s to 15,600–19,000/s.
//
// Lending is for a process that may use every CPU of the machine. Under a
// CPU quota (a container limit, which the runtime's default GOMAXPROCS
// follows) more threads than the quota allows would get the whole process
// throttled, so the caller leaves the Lender nil there (see Applicable).
package proclend

import (
	"os"
	"runtime"
	"sync"
	"time"
)

// Lender raises GOMAXPROCS while computations are in progress. All methods
// are safe for concurrent use and on a nil Lender, which lends nothing.
type Lender struct {
	base   int           // GOMAXPROCS with nothing lent
	max    int           // the most Ps lent at once
	linger time.Duration // how long a P stays lent after its computation

	mu      sync.Mutex
	active  int // computations in progress
	lent    int // Ps lent now: GOMAXPROCS is base + lent
	timer   *time.Timer
	stopped bool
}

// Applicable reports whether lending suits this process: GOMAXPROCS was
// not set by the environment, and the runtime's default uses every CPU
// the process may run on (no CPU quota lowered it).
func Applicable() bool {
	return os.Getenv("GOMAXPROCS") == "" && runtime.GOMAXPROCS(0) == runtime.NumCPU()
}

// New returns a Lender that lends up to max Ps at once, each until linger
// after the computation it was lent for ends (so that back-to-back
// computations, a queue of hashes, do not resize the scheduler between
// them: each resize stops the world briefly). It returns nil when max < 1.
func New(max int, linger time.Duration) *Lender {
	if max < 1 {
		return nil
	}
	return &Lender{base: runtime.GOMAXPROCS(0), max: max, linger: linger}
}

// Lend lends a P (up to the Lender's max) until the returned function is
// called; calling it more than once is harmless.
func (l *Lender) Lend() (release func()) {
	if l == nil {
		return func() {}
	}
	l.mu.Lock()
	l.active++
	if l.active > l.lent {
		l.setLocked(l.active)
	}
	l.mu.Unlock()
	var once sync.Once
	return func() { once.Do(l.release) }
}

func (l *Lender) release() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.active--
	if l.active < l.lent && l.timer == nil && !l.stopped {
		l.timer = time.AfterFunc(l.linger, l.shrink)
	}
}

// shrink takes back the Ps lent beyond the computations now in progress.
func (l *Lender) shrink() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.timer = nil
	if l.active < l.lent {
		l.setLocked(l.active)
	}
}

// setLocked sets GOMAXPROCS to base + n (n bounded by max). With nothing
// lent it restores base: the runtime's default when the environment does
// not set GOMAXPROCS, which also resumes the runtime's own updates of it.
func (l *Lender) setLocked(n int) {
	n = min(n, l.max)
	if l.stopped || n == l.lent {
		return
	}
	switch {
	case n == 0 && os.Getenv("GOMAXPROCS") == "":
		runtime.SetDefaultGOMAXPROCS()
	case n == 0:
		runtime.GOMAXPROCS(l.base)
	default:
		runtime.GOMAXPROCS(l.base + n)
	}
	l.lent = n
}

// Stop takes back every lent P and lends no more.
func (l *Lender) Stop() {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.timer != nil {
		l.timer.Stop()
		l.timer = nil
	}
	l.setLocked(0)
	l.stopped = true
}
