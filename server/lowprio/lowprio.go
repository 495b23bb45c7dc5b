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
package lowprio

import "runtime"

// Run calls work on a new thread whose nice value is raised by nice (Linux;
// elsewhere, or when nice ≤ 0, work runs on the calling goroutine) and
// returns when it has returned. A panic in work is re-raised in the caller.
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
