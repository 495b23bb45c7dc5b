// Package lowprio runs CPU-bound work on an operating-system thread of its
// own at a lower scheduling priority (a higher nice value), so that the
// kernel gives the process's other threads — the ones serving RPCs — the
// CPU first whenever both want it. Latch runs its argon2id hashes this way:
// a login flood then takes the CPU that token checks leave idle, not the
// CPU they need.
//
// An unprivileged process may lower a thread's priority but not raise it
// back, so each call gets a fresh thread, which the Go runtime discards
// when the work ends (a goroutine that exits while locked to its thread
// takes the thread with it). A thread costs tens of microseconds to start:
// nothing next to a 19 ms hash, too much for short work.
//
// Only work done on the calling goroutine is lowered: goroutines that work
// starts run wherever the Go scheduler puts them, at the process's normal
// priority. golang.org/x/crypto/argon2 is such work: it runs every segment
// of its memory-filling passes (nearly all of its CPU) on a goroutine of
// its own, even with one lane, so for an argon2id hash only the rest
// (the initial and final BLAKE2b hashing, the first blocks) runs lowered:
// 0-25% of its CPU time, measured with getrusage(RUSAGE_THREAD) around
// argon2.IDKey at the default parameters.
package lowprio

import "runtime"

// Run calls work on a new thread whose nice value is raised by nice (Linux;
// elsewhere, or when nice ≤ 0, work runs on the calling goroutine) and
// returns when it has returned. Goroutines work starts are not lowered (see
// the package comment). A panic in work is re-raised in the caller.
func Run(nice int, work func()) {
	if nice <= 0 || !supported {
		work()
		return
	}
	done := make(chan any, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with this goroutine
		defer func() { done <- recover() }()
		// Best effort: work still runs when the kernel refuses.
		_ = lowerPriority(nice)
		work()
	}()
	if p := <-done; p != nil {
		panic(p)
	}
}
