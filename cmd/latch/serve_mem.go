package main

import (
	"errors"
	"flag"
	"runtime/debug"

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

// startGCFloor starts the heap floor (nil when disabled or GOGC=off); call
// it after releaseStartupMemory, so that the floor is computed from the
// heap that serving starts with.
func (m memFlags) startGCFloor() *gcfloor.Floor {
	return gcfloor.Start(uint64(m.gcHeapFloorMiB) << 20)
}
