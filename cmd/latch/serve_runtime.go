package main

import (
	"errors"
	"flag"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/latchauth/latch/server/gcfloor"
	"github.com/latchauth/latch/server/lowprio"
	"github.com/latchauth/latch/server/proclend"
)

// releaseStartupMemory returns to the OS the memory that starting up left
// behind as garbage, above all the argon2id block (19 MiB at the default
// parameters) of the dummy hash the password hasher computes once at
// construction. Without it an idle server keeps that block resident until
// the next forced collection and the scavenger catch up, minutes later.
func releaseStartupMemory() { debug.FreeOSMemory() }

// runtimeFlags are the serve flags about the Go runtime: its memory and its
// scheduler.
type runtimeFlags struct {
	gcHeapFloorMiB int
	hashLendProcs  bool
	hashNice       int
}

// defaultGCHeapFloorMiB: see server/gcfloor. 48 MiB lets a server whose
// live heap is a few MiB collect several times less often under load,
// for tens of MiB of RSS while busy (idle RSS is unchanged).
const defaultGCHeapFloorMiB = 48

func (m *runtimeFlags) register(fs *flag.FlagSet) {
	fs.IntVar(&m.gcHeapFloorMiB, "gc-heap-floor-mib", defaultGCHeapFloorMiB,
		"heap size (MiB) below which the garbage collector does not start a cycle; larger heaps are paced by GOGC as usual; 0 disables")
	fs.BoolVar(&m.hashLendProcs, "hash-lend-procs", true,
		"while passwords are hashed, raise GOMAXPROCS by one per hash so that hashing does not hold a scheduler slot other RPCs queue behind; applies only when GOMAXPROCS is not set and no CPU quota limits the process")
	fs.IntVar(&m.hashNice, "hash-nice", defaultHashNice,
		"nice value added to the thread that runs each password hash (Linux); argon2id's memory-filling passes run on goroutines of their own at normal priority, so only the rest of a hash is lowered (see server/lowprio); 0 disables")
}

// defaultHashNice: at nice 10 a thread weighs about a tenth of a normal one
// in the kernel's scheduler. That applies to the part of a hash that runs
// on the lowered thread; argon2id's passes run on goroutines at normal
// priority (server/lowprio), so a login flood does not yield to token
// checks by this alone.
const defaultHashNice = 10

func (m runtimeFlags) validate() error {
	if m.gcHeapFloorMiB < 0 || m.gcHeapFloorMiB > 1<<20 {
		return errors.New("gc-heap-floor-mib must be in [0, 1048576]")
	}
	if m.hashNice < 0 || m.hashNice > 19 {
		return errors.New("hash-nice must be in [0, 19]")
	}
	return nil
}

// gcFloor is the serve command's heap floor: created before the password
// hasher, whose hashes hold it (argon2id's blocks are paced as usual),
// and started once startup's garbage has been released.
type gcFloor struct {
	bytes uint64
	f     atomic.Pointer[gcfloor.Floor]
}

func (m runtimeFlags) gcFloor() *gcFloor { return &gcFloor{bytes: uint64(m.gcHeapFloorMiB) << 20} }

// hold suspends the floor for one hash (see hashHook).
func (g *gcFloor) hold() func() { return g.f.Load().Hold() }

// start starts the floor; call it after releaseStartupMemory, so that the
// floor is computed from the heap that serving starts with.
func (g *gcFloor) start() { g.f.Store(gcfloor.Start(g.bytes)) }

// stop restores the GC percent the process started with.
func (g *gcFloor) stop() { g.f.Load().Stop() }

// lendLinger is how long a P lent for a hash stays lent after it: longer
// than the gap between queued hashes, so that a login flood resizes the
// scheduler once, not twice per hash.
const lendLinger = 20 * time.Millisecond

// procLender returns the serve command's proclend.Lender for hashes
// concurrent hashes, or nil when --hash-lend-procs is off or does not apply
// (proclend.Applicable).
func (m runtimeFlags) procLender(hashes int) *proclend.Lender {
	if !m.hashLendProcs || !proclend.Applicable() {
		return nil
	}
	return proclend.New(hashes, lendLinger)
}

// hashHook is the password hasher's hook (password.WithHashHook): each
// hash suspends the GC heap floor and borrows a scheduler slot.
func hashHook(floor *gcFloor, lender *proclend.Lender) func() (end func()) {
	return func() func() {
		endHold, endLend := floor.hold(), lender.Lend()
		return func() { endLend(); endHold() }
	}
}

// hashRunner is the password hasher's runner (password.WithRunner): each
// argon2id computation on a thread of its own at --hash-nice (the
// goroutines argon2 starts for its passes are not lowered: server/lowprio).
func (m runtimeFlags) hashRunner() func(work func()) {
	nice := m.hashNice
	return func(work func()) { lowprio.Run(nice, work) }
}
