package gcfloor

import (
	"context"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"
)

func TestPercentFor(t *testing.T) {
	const mib = 1 << 20
	for _, tc := range []struct {
		live, roots, floor uint64
		base, want         int
	}{
		{live: 4 * mib, roots: 4 * mib, floor: 48 * mib, base: 100, want: 1100},    // 4 + 4 × 11 = 48
		{live: 4 * mib, roots: 8 * mib, floor: 48 * mib, base: 100, want: 550},     // stacks count: 4 + 8 × 5.5 = 48
		{live: 1 * mib, roots: 2 * mib, floor: 48 * mib, base: 100, want: 1200},    // not 2350: 4 MiB × 23.5 would be 94
		{live: 24 * mib, roots: 24 * mib, floor: 48 * mib, base: 100, want: 100},   // the base goal reaches the floor
		{live: 100 * mib, roots: 101 * mib, floor: 48 * mib, base: 100, want: 100}, // large heaps keep GOGC
		{live: 10 * mib, roots: 10 * mib, floor: 48 * mib, base: 400, want: 400},   // 10 + 10 × 4 ≥ 48: the operator's GOGC
		{live: 8 * mib, roots: 10 * mib, floor: 48 * mib, base: 200, want: 400},    // 8 + 10 × 4 = 48
		{live: 1, roots: 1, floor: 48 * mib, base: 100, want: 1200},                // the runtime's 4 MiB minimum × 12 = 48
		{live: 1, roots: 1, floor: 1 << 40, base: 100, want: maxPercent},           // bounded
		{live: 0, roots: 0, floor: 48 * mib, base: 100, want: 100},                 // nothing measured yet
	} {
		if got := percentFor(tc.live, tc.roots, tc.floor, tc.base); got != tc.want {
			t.Errorf("percentFor(live %d, roots %d, floor %d, base %d) = %d, want %d", tc.live, tc.roots, tc.floor, tc.base, got, tc.want)
		}
	}
}

// waitPercent runs collections until the GC percent is want (the floor
// adjusts from a cleanup, after the cycle) or the test's time runs out.
func waitPercent(t *testing.T, want func(int) bool) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		runtime.GC()
		got := GCPercent()
		if want(got) {
			return got
		}
		select {
		case <-ctx.Done():
			t.Fatalf("GC percent stayed %d", got)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// TestFloorRaisesSmallHeapsOnly runs the floor for real: a small live heap
// gets a GC percent that puts its next target at the floor, a live heap
// above the floor keeps the base percent, and Stop restores it.
func TestFloorRaisesSmallHeapsOnly(t *testing.T) {
	base := debug.SetGCPercent(100)
	defer debug.SetGCPercent(base)
	const floor = 256 << 20 // far above this test binary's live heap
	f := Start(floor)
	if f == nil {
		t.Fatal("Start returned nil with GOGC=100")
	}
	defer f.Stop()
	got := waitPercent(t, func(p int) bool { return p > 100 })
	if got <= 100 || got > maxPercent {
		t.Fatalf("GC percent %d with a small heap under a 256 MiB floor, want in (100, %d]", got, maxPercent)
	}
	// The runtime's own heap goal is now the floor (the live heap moves a
	// little between the cycle and this read).
	goal := []metrics.Sample{{Name: "/gc/heap/goal:bytes"}}
	metrics.Read(goal)
	if g := goal[0].Value.Uint64(); g < floor*8/10 || g > floor*12/10 {
		t.Errorf("heap goal %d MiB, want about the %d MiB floor", g>>20, floor>>20)
	}

	// A live heap above half the floor: the base percent already reaches it.
	ballast := make([][]byte, 0, 160)
	for range 160 {
		ballast = append(ballast, make([]byte, 1<<20))
	}
	waitPercent(t, func(p int) bool { return p == 100 })
	runtime.KeepAlive(ballast)

	f.Stop()
	if got := GCPercent(); got != 100 {
		t.Errorf("after Stop GC percent is %d, want 100", got)
	}
	runtime.GC()
	runtime.GC()
	if got := GCPercent(); got != 100 {
		t.Errorf("a collection after Stop changed the GC percent to %d", got)
	}
}

func TestStartOffOrZero(t *testing.T) {
	base := debug.SetGCPercent(-1)
	defer debug.SetGCPercent(base)
	if f := Start(48 << 20); f != nil {
		f.Stop()
		t.Error("Start with GOGC=off returned a floor")
	}
	if got := GCPercent(); got >= 0 {
		t.Errorf("GC percent %d, want off (negative)", got)
	}
	debug.SetGCPercent(100)
	if f := Start(0); f != nil {
		f.Stop()
		t.Error("Start with a zero floor returned a floor")
	}
	var nilFloor *Floor
	nilFloor.Stop() // safe
}

// TestHoldSuspendsTheFloor: while a Hold is outstanding the base percent
// applies, through collections; after its release the next collection
// restores the floor. A nil Floor's Hold is a no-op.
func TestHoldSuspendsTheFloor(t *testing.T) {
	base := debug.SetGCPercent(100)
	defer debug.SetGCPercent(base)
	f := Start(256 << 20)
	defer f.Stop()
	waitPercent(t, func(p int) bool { return p > 100 })

	release := f.Hold()
	if got := GCPercent(); got != 100 {
		t.Fatalf("GC percent %d while held, want the base 100", got)
	}
	second := f.Hold()
	release()
	release() // idempotent: must not release the second hold
	runtime.GC()
	runtime.GC()
	time.Sleep(10 * time.Millisecond) // let a cleanup run, if one were wrongly to raise it
	if got := GCPercent(); got != 100 {
		t.Fatalf("GC percent %d with one hold left, want the base 100", got)
	}
	second()
	waitPercent(t, func(p int) bool { return p > 100 })

	var nilFloor *Floor
	nilFloor.Hold()()
}
