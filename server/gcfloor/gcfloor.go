// Package gcfloor keeps the Go garbage collector from running more often
// than a heap floor requires.
//
// The collector's pacer (GOGC, default 100) lets the heap grow to twice
// what was live after the last cycle before the next one starts. A server
// whose live heap is small (Latch's is a few MiB: keys, caches, limiter
// tables) but which allocates quickly under load (every RPC's frames,
// metadata and messages) therefore collects many times a second, and each
// cycle's fixed costs — scanning every goroutine's stack, the globals, the
// write barrier while marking — come out of the same cores the RPCs need.
// Measured on `latch bench`'s uncached Introspect row (interleaved runs,
// the floor at 48 MiB vs none), the server's CPU per call fell from 145 to
// 128 µs (-12%).
//
// A floor keeps the pacer's proportional rule for large heaps and only
// raises the goal of small ones. The runtime's heap goal is live + (live +
// goroutine stacks + globals) × GOGC/100; after each collection the GC
// percent is set so that the next goal is the larger of that goal at the
// GOGC the process started with (base) and the floor. A heap larger than
// the floor is paced exactly as before; an idle server allocates too little
// to reach the floor between the runtime's forced collections (every 2
// minutes), so its RSS does not grow.
//
// Large short-lived allocations are the exception: argon2id's 19 MiB
// blocks under a login flood would pile up as garbage under a raised goal,
// past the flood's stated peak-RSS bound. While any Hold is outstanding
// (the password hasher holds one per hash) the floor steps aside and the
// base percent applies, until the first collection after the last Hold
// ends. GOGC=off (a negative base) disables the package, and so does a
// floor of zero. A GOMEMLIMIT still applies: the runtime collects before
// reaching it whatever the GC percent.
package gcfloor

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"sync/atomic"
)

// maxPercent bounds the GC percent the floor may set, so that a nearly
// empty heap does not get an absurd multiplier.
const maxPercent = 10_000

// runtimeHeapMinimum is the Go runtime's minimum heap goal at GOGC=100
// (defaultHeapMinimum, 4 MiB); the runtime scales it by GOGC/100, so the
// percent set here never exceeds floor / runtimeHeapMinimum × 100, or the
// minimum alone would put the goal above the floor.
// TestFloorRaisesSmallHeapsOnly checks the resulting goal against the
// runtime's own.
const runtimeHeapMinimum = 4 << 20

// Floor is a running heap floor. Its zero value is not usable; call Start.
type Floor struct {
	floor   uint64
	base    int
	holds   atomic.Int64
	stopped atomic.Bool
	mu      sync.Mutex // serialises adjust and Stop
	samples []metrics.Sample
}

// sentinel is allocated for each collection to notice the next one: its
// cleanup runs after a cycle finds it unreachable. It holds a pointer so
// that it is not a tiny allocation, whose cleanups may be delayed
// indefinitely.
type sentinel struct {
	_ *int
	_ [2]uint64
}

// Start sets the floor to floorBytes and keeps it after every collection
// until Stop. It returns nil, and changes nothing, when floorBytes is zero
// or the collector is off (GOGC=off). All methods are safe on a nil Floor.
func Start(floorBytes uint64) *Floor {
	base := GCPercent()
	if floorBytes == 0 || base < 0 {
		return nil
	}
	f := &Floor{floor: floorBytes, base: base, samples: []metrics.Sample{
		{Name: "/gc/heap/live:bytes"}, {Name: "/gc/scan/stack:bytes"}, {Name: "/gc/scan/globals:bytes"}}}
	f.adjust()
	f.arm()
	return f
}

// Hold suspends the floor until the returned function is called (and a
// collection has run since): the base GC percent applies meanwhile. Call it
// around work that allocates large short-lived blocks.
func (f *Floor) Hold() (release func()) {
	if f == nil {
		return func() {}
	}
	if f.holds.Add(1) == 1 {
		f.mu.Lock()
		if !f.stopped.Load() {
			debug.SetGCPercent(f.base)
		}
		f.mu.Unlock()
	}
	var once sync.Once
	return func() { once.Do(func() { f.holds.Add(-1) }) }
}

// GCPercent returns the collector's current GC percent (GOGC; negative
// when off).
func GCPercent() int {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 100
	}
	v := s[0].Value.Uint64()
	if v > maxPercent*10 { // "off" reads as a huge unsigned value
		return -1
	}
	return int(v)
}

// percentFor returns the GC percent that puts the next heap goal at the
// larger of its goal at base and floor. The runtime's goal is the larger of
// live + roots × percent/100, where roots is live + stacks + globals, and
// runtimeHeapMinimum × percent/100.
func percentFor(live, roots, floor uint64, base int) int {
	if roots == 0 {
		return base
	}
	if live >= floor || live+roots*uint64(base)/100 >= floor {
		return base
	}
	p := min((floor-live)*100/roots, floor*100/runtimeHeapMinimum, maxPercent)
	return max(int(p), base)
}

func (f *Floor) arm() {
	runtime.AddCleanup(new(sentinel), func(f *Floor) {
		if f.stopped.Load() {
			return
		}
		f.adjust()
		f.arm()
	}, f)
}

func (f *Floor) adjust() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopped.Load() {
		return
	}
	if f.holds.Load() > 0 {
		debug.SetGCPercent(f.base)
		return
	}
	metrics.Read(f.samples)
	var v [3]uint64
	for i, s := range f.samples {
		if s.Value.Kind() != metrics.KindUint64 {
			return // not this runtime's metrics: leave the pacer alone
		}
		v[i] = s.Value.Uint64()
	}
	debug.SetGCPercent(percentFor(v[0], v[0]+v[1]+v[2], f.floor, f.base))
}

// Stop ends the floor and restores the GC percent the process started
// with.
func (f *Floor) Stop() {
	if f == nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopped.Swap(true) {
		return
	}
	debug.SetGCPercent(f.base)
}
