package storagetest

import (
	"testing"
	"time"

	"github.com/latchauth/latch/storage"
)

// Option configures Run.
type Option func(*runOptions)

type runOptions struct {
	footprint func(t *testing.T, s storage.Store) int
	retention *Retention
}

// WithFootprint gives Run a measure of how much a backend stores: any
// count that grows with what the backend keeps (bbolt: the keys of every
// bucket; etcd: the keys under the store's prefix). With it, Run checks
// that a session's stored size does not grow with its rotations.
func WithFootprint(measure func(t *testing.T, s storage.Store) int) Option {
	return func(o *runOptions) { o.footprint = measure }
}

// footprintRotations is how often testRotationFootprint rotates one
// session.
const footprintRotations = 2000

// testRotationFootprint: storage per session is bounded by a constant
// (design, invariant 8): thousands of rotations of one session, each
// presenting the current token as a client does, leave the backend's
// footprint where one rotation left it.
func testRotationFootprint(t *testing.T, s storage.Store, measure func(*testing.T, storage.Store) int) {
	c := ctx(t)
	sess := newSession(t, s, "busy", base)
	now := base
	cur := sess.CurrentHash
	rotate := func() {
		t.Helper()
		now = now.Add(time.Millisecond)
		next := Digest(t)
		if _, err := s.RotateRefreshToken(c, rotation(t, s, "busy", cur, next, now)); err != nil {
			t.Fatalf("rotation at %v: %v", now.Sub(base), err)
		}
		cur = next
	}
	rotate()
	after1 := measure(t, s)
	for range footprintRotations - 1 {
		rotate()
	}
	if afterN := measure(t, s); afterN != after1 {
		t.Fatalf("footprint after %d rotations of one session = %d; after 1 it was %d: storage grows with rotations",
			footprintRotations, afterN, after1)
	}
}
