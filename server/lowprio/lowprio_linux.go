package lowprio

import "syscall"

const supported = true

// lowerPriority raises the calling thread's nice value by nice. On Linux,
// PRIO_PROCESS with a thread id sets that one thread's nice value.
func lowerPriority(nice int) error {
	tid := syscall.Gettid()
	// The raw getpriority system call returns 20 - nice.
	cur, err := syscall.Getpriority(syscall.PRIO_PROCESS, tid)
	if err != nil {
		return err
	}
	return syscall.Setpriority(syscall.PRIO_PROCESS, tid, min(20-cur+nice, 19))
}
