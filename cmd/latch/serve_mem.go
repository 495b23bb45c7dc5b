package main

import (
	"errors"
	"flag"
	"runtime/debug"
	"sync/atomic"

	"github.com/latchauth/latch/server/gcfloor"
)

// releaseStartupMemory returns to the OS the memory that starting up left
// behind as garbage, above all the argon2id block (19 MiB at the default
// parameters) of the dummy hash the password hasher computes once at
// construction. Without it an idle server keeps that block resident until
// the next forced collection and the scavenger catch up, minutes later.
func releaseStartupMemory() { debug.FreeOSMemory() }

// memFlags are the serve flags about the Go runtime's memory.
type memFlags struct {
	gcHeapFloorMiB int
}

// defaultGCHeapFloorMiB: see server/gcfloor. 48 MiB lets a server whose
// live heap is a few MiB collect several times less often under load,
// for tens of MiB of RSS while busy (idle RSS is unchanged).
const defaultGCHeapFloorMiB = 48

func (m *memFlags) register(fs *flag.FlagSet) {
	fs.IntVar(&m.gcHeapFloorMiB, "gc-heap-floor-mib", defaultGCHeapFloorMiB,
		"heap size (MiB) below which the garbage collector does not start a cycle; larger heaps are paced by GOGC as usual; 0 disables")
}

func (m memFlags) validate() error {
	if m.gcHeapFloorMiB < 0 || m.gcHeapFloorMiB > 1<<20 {
		return errors.New("gc-heap-floor-mib must be in [0, 1048576]")
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

func (m memFlags) gcFloor() *gcFloor { return &gcFloor{bytes: uint64(m.gcHeapFloorMiB) << 20} }

// hold is the password hasher's hook (password.WithHashHook).
func (g *gcFloor) hold() func() { return g.f.Load().Hold() }

// start starts the floor; call it after releaseStartupMemory, so that the
// floor is computed from the heap that serving starts with.
func (g *gcFloor) start() { g.f.Store(gcfloor.Start(g.bytes)) }

// stop restores the GC percent the process started with.
func (g *gcFloor) stop() { g.f.Load().Stop() }
