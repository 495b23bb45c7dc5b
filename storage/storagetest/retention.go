package storagetest

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/latchauth/latch/storage"
)

// Retention tells Run how to open a backend that keeps revoked sessions
// for a while (see "Revoked sessions" in package storage) and how that
// backend deletes them, for WithRetention.
type Retention struct {
	// Retention is the revoked-session retention of Open's stores.
	Retention time.Duration
	// Open returns a fresh, empty store with that retention; Run closes
	// it.
	Open func(t *testing.T) storage.Store
	// Sweep makes the store delete what it may delete at now
	// (storage/bolt: DeleteExpired). Nil for a backend whose rows go by
	// themselves (storage/etcd: leases).
	Sweep func(t *testing.T, s storage.Store, now time.Time)
	// Patience is how long the store may take after Sweep to have deleted
	// what it may: 0 for a sweeper that deletes within the call; for
	// leases, long enough for them to end. Such a backend runs on real
	// time, so Retention must also leave time for the checks Run makes
	// right after the revocations (a few seconds).
	Patience time.Duration
}

// WithRetention makes Run check that the stores r.Open returns delete a
// revoked session once its retention has passed, whichever way it was
// revoked, and nothing before; with WithFootprint, that what is left is
// what was there before the sessions were created.
func WithRetention(r Retention) Option {
	return func(o *runOptions) { o.retention = &r }
}

// sweep runs r.Sweep, if the backend has one.
func (r *Retention) sweep(t *testing.T, s storage.Store, now time.Time) {
	if r.Sweep != nil {
		r.Sweep(t, s, now)
	}
}

// eventually runs check until it passes or patience has passed, and fails
// the test with its last error. With no patience it runs check once.
func eventually(t *testing.T, patience time.Duration, check func() error) {
	t.Helper()
	deadline := time.Now().Add(patience)
	for {
		err := check()
		if err == nil {
			return
		}
		if !time.Now().Before(deadline) {
			t.Fatal(err)
		}
		pause := time.NewTimer(100 * time.Millisecond)
		select {
		case <-ctx(t).Done():
			pause.Stop()
			t.Fatal(err)
		case <-pause.C:
		}
	}
}

// footprintOf is measure(t, s), or 0 without a measure.
func footprintOf(t *testing.T, s storage.Store, measure func(*testing.T, storage.Store) int) int {
	if measure == nil {
		return 0
	}
	return measure(t, s)
}

// revokedSession is a session the retention tests revoke, with the
// refresh token it held and its owner.
type revokedSession struct {
	id, user string
	token    storage.TokenHash
}

// testRevokedRetention: a session revoked by each way there is (the holder
// or an administrator: RevokeSession; log out everywhere:
// RevokeUserSessions; DeleteUser; reuse detection in RotateRefreshToken) is
// kept, and answered for as revoked, until RevokedAt + retention, even
// through a sweep just before; after it and a sweep it is gone, with every
// row it had (the footprint is what it was before the sessions and the
// deleted user were created), its refresh token is unknown, its access
// tokens still revoked. A live session of the same users is not touched.
func testRevokedRetention(t *testing.T, s storage.Store, r *Retention, measure func(*testing.T, storage.Store) int) {
	c := ctx(t)
	for _, u := range []string{"ret-a", "ret-b", "ret-c"} {
		EnsureUser(t, s, u)
	}
	create := func(user, id string) revokedSession {
		t.Helper()
		return revokedSession{id: id, user: user, token: userSession(t, s, user, id, base).CurrentHash}
	}
	live := create("ret-a", "ret-live")
	before := footprintOf(t, s, measure)
	EnsureUser(t, s, "ret-d")
	a1 := create("ret-a", "ret-a1")
	b1, b2 := create("ret-b", "ret-b1"), create("ret-b", "ret-b2")
	c1 := create("ret-c", "ret-c1")
	d1, d2 := create("ret-d", "ret-d1"), create("ret-d", "ret-d2")

	// Rotations first, so that the revoked sessions' idle expiries have
	// moved since they were stored.
	rotate := func(rs *revokedSession, at time.Time) storage.TokenHash {
		t.Helper()
		next := Digest(t)
		if _, err := s.RotateRefreshToken(c, rotation(t, s, rs.id, rs.token, next, at)); err != nil {
			t.Fatalf("rotate %s: %v", rs.id, err)
		}
		old := rs.token
		rs.token = next
		return old
	}
	rotate(&a1, base.Add(time.Minute))
	rotate(&live, base.Add(time.Minute))
	replayed := rotate(&c1, base.Add(time.Minute))

	revokedAt := base.Add(time.Hour)
	if _, changed, err := s.RevokeSession(c, a1.id, storage.ReasonRevoked, revokedAt); err != nil || !changed {
		t.Fatalf("RevokeSession(%s) = %v, %v; want changed", a1.id, changed, err)
	}
	if _, changed, err := s.RevokeSession(c, a1.id, storage.ReasonAdmin, revokedAt.Add(time.Second)); err != nil || changed {
		t.Fatalf("RevokeSession(%s) again = %v, %v; want unchanged", a1.id, changed, err)
	}
	if got, err := s.RevokeUserSessions(c, "ret-b", storage.ReasonAdmin, revokedAt); err != nil || len(got) != 2 {
		t.Fatalf("RevokeUserSessions(ret-b) = %d sessions, %v; want 2", len(got), err)
	}
	r1 := storage.Rotation{SessionID: c1.id, Generation: 0, Presented: replayed, Next: Digest(t), Now: revokedAt, IdleTTL: idle}
	wantRotateErr(t, s, "replay of a rotated token of "+c1.id, r1, storage.ErrRefreshTokenReused)
	if got, err := s.DeleteUser(c, "ret-d", revokedAt); err != nil || len(got) != 2 {
		t.Fatalf("DeleteUser(ret-d) = %d sessions, %v; want 2", len(got), err)
	}
	revoked := []revokedSession{a1, b1, b2, c1, d1, d2}

	// Just before the retention ends, after a sweep, nothing has changed.
	justBefore := revokedAt.Add(r.Retention - time.Nanosecond)
	r.sweep(t, s, justBefore)
	listed := revocationSet(t, s, justBefore)
	for _, rs := range revoked {
		if _, err := s.GetSession(c, rs.id); err != nil {
			t.Fatalf("GetSession(%s) just before the retention ends: %v", rs.id, err)
		}
		if !listed[rs.id] {
			t.Errorf("ListRevocations just before the retention ends lacks %s", rs.id)
		}
		if !userLists(t, s, rs.user, rs.id) {
			t.Errorf("ListUserSessions(%s) just before the retention ends lacks %s", rs.user, rs.id)
		}
		if rev, err := s.AccessTokenRevoked(c, "jti-"+rs.id, rs.id, justBefore); err != nil || !rev {
			t.Errorf("AccessTokenRevoked(%s) just before the retention ends = %v, %v; want revoked", rs.id, rev, err)
		}
		rot := storage.Rotation{SessionID: rs.id, Presented: rs.token, Next: Digest(t), Now: justBefore, IdleTTL: idle}
		if _, err := s.RotateRefreshToken(c, rot); !errors.Is(err, storage.ErrSessionRevoked) {
			t.Errorf("refresh of %s just before the retention ends: %v; want ErrSessionRevoked", rs.id, err)
		}
	}

	// Once it has ended, and a sweep has run, they are gone.
	after := revokedAt.Add(r.Retention + time.Nanosecond)
	r.sweep(t, s, after)
	eventually(t, r.Patience, func() error {
		for _, rs := range revoked {
			if _, err := s.GetSession(c, rs.id); !errors.Is(err, storage.ErrNotFound) {
				return fmt.Errorf("GetSession(%s) after the retention and a sweep: %v; want ErrNotFound", rs.id, err)
			}
		}
		if got := footprintOf(t, s, measure); got != before {
			return fmt.Errorf("footprint after the retention and a sweep = %d; before the sessions it was %d", got, before)
		}
		return nil
	})
	listed = revocationSet(t, s, after)
	for _, rs := range revoked {
		if listed[rs.id] {
			t.Errorf("ListRevocations after the retention still lists %s", rs.id)
		}
		if userLists(t, s, rs.user, rs.id) {
			t.Errorf("ListUserSessions(%s) after the retention still lists %s", rs.user, rs.id)
		}
		if rev, err := s.AccessTokenRevoked(c, "jti-"+rs.id, rs.id, after); err != nil || !rev {
			t.Errorf("AccessTokenRevoked(%s) after its deletion = %v, %v; want revoked", rs.id, rev, err)
		}
		rot := storage.Rotation{SessionID: rs.id, Presented: rs.token, Next: Digest(t), Now: after, IdleTTL: idle}
		if _, err := s.RotateRefreshToken(c, rot); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("refresh of %s after its deletion: %v; want ErrNotFound", rs.id, err)
		}
	}
	if got, err := s.GetSession(c, live.id); err != nil || !got.Live(after) {
		t.Fatalf("the live session after the sweep: %+v, %v; want it live", got, err)
	}
}

// testRetentionConcurrent: rotations, repeated revocations of each
// session, a log-out-everywhere and sweeps before the retention ends, all
// at once, leave every session revoked and stored (the sweeps delete
// nothing); after the retention and a sweep, nothing of them is left.
func testRetentionConcurrent(t *testing.T, s storage.Store, r *Retention, measure func(*testing.T, storage.Store) int) {
	c := ctx(t)
	const user, n = "ret-many", 12
	EnsureUser(t, s, user)
	before := footprintOf(t, s, measure)
	tokens := make([]storage.TokenHash, n)
	ids := make([]string, n)
	for i := range n {
		ids[i] = fmt.Sprintf("ret-many-%d", i)
		tokens[i] = userSession(t, s, user, ids[i], base).CurrentHash
	}
	revokedAt := base.Add(time.Hour)
	errs := make(chan error, 8*n)
	rotate := func(i int) { // a client refreshing until its session is revoked
		cur := tokens[i]
		for k := range 5 {
			next := Digest(t)
			at := revokedAt.Add(-time.Duration(10-k) * time.Minute)
			_, err := s.RotateRefreshToken(c, rotation(t, s, ids[i], cur, next, at))
			switch {
			case errors.Is(err, storage.ErrSessionRevoked):
				return
			case err != nil:
				errs <- fmt.Errorf("rotate %s: %w", ids[i], err)
				return
			}
			cur = next
		}
	}
	race(3*n+2, func(i int) {
		switch {
		case i < n:
			rotate(i)
		case i < 3*n: // a revocation, repeated
			if _, _, err := s.RevokeSession(c, ids[i%n], storage.ReasonRevoked, revokedAt); err != nil {
				errs <- fmt.Errorf("RevokeSession(%s): %w", ids[i%n], err)
			}
		case i == 3*n:
			if _, err := s.RevokeUserSessions(c, user, storage.ReasonAdmin, revokedAt); err != nil {
				errs <- fmt.Errorf("RevokeUserSessions: %w", err)
			}
		default: // the sweeper, before the retention ends
			for k := range 5 {
				res, err := s.DeleteExpired(c, revokedAt.Add(time.Duration(k)*r.Retention/5), 1000)
				if err != nil || res.Deleted != 0 {
					errs <- fmt.Errorf("DeleteExpired before the retention ends = %+v, %v; want nothing deleted", res, err)
					return
				}
			}
		}
	})
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		return
	}
	if _, err := s.RevokeUserSessions(c, user, storage.ReasonAdmin, revokedAt); err != nil {
		t.Fatalf("RevokeUserSessions after the race: %v", err)
	}
	justBefore := revokedAt.Add(r.Retention - time.Nanosecond)
	r.sweep(t, s, justBefore)
	all, err := s.ListUserSessions(c, user)
	if err != nil || len(all) != n {
		t.Fatalf("ListUserSessions just before the retention ends = %d sessions, %v; want %d", len(all), err, n)
	}
	for _, sess := range all {
		if !sess.Revoked() || !sess.RevokedAt.Equal(revokedAt) {
			t.Fatalf("session %s: revoked at %v, want at %v", sess.ID, sess.RevokedAt, revokedAt)
		}
	}
	after := revokedAt.Add(r.Retention + time.Nanosecond)
	r.sweep(t, s, after)
	eventually(t, r.Patience, func() error {
		all, err := s.ListUserSessions(c, user)
		if err != nil || len(all) != 0 {
			return fmt.Errorf("ListUserSessions after the retention and a sweep = %d sessions, %v; want none", len(all), err)
		}
		if got := footprintOf(t, s, measure); got != before {
			return fmt.Errorf("footprint after the retention and a sweep = %d; before the sessions it was %d", got, before)
		}
		return nil
	})
}

// revocationSet returns the session ids ListRevocations reports at now.
func revocationSet(t *testing.T, s storage.Store, now time.Time) map[string]bool {
	t.Helper()
	revs, err := s.ListRevocations(ctx(t), now)
	if err != nil {
		t.Fatalf("ListRevocations: %v", err)
	}
	out := map[string]bool{}
	for _, r := range revs {
		if r.SessionID != "" {
			out[r.SessionID] = true
		}
	}
	return out
}

// userLists reports whether ListUserSessions(user) holds the session id.
func userLists(t *testing.T, s storage.Store, user, id string) bool {
	t.Helper()
	all, err := s.ListUserSessions(ctx(t), user)
	if err != nil {
		t.Fatalf("ListUserSessions(%s): %v", user, err)
	}
	return slices.ContainsFunc(all, func(x storage.Session) bool { return x.ID == id })
}
