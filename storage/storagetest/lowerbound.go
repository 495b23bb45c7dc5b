package storagetest

import (
	"errors"
	"testing"
	"time"

	"github.com/latchauth/latch/storage"
)

// A rotation renews the session's idle expiry, and every read that judges
// liveness must see the renewed one, whatever a backend stores to make
// rotations cheap (storage/bolt leaves its session summary and expiry index
// at their older, earlier values).
func testRotationRenewsLiveness(t *testing.T, s storage.Store) {
	c := ctx(t)
	sess := newSession(t, s, "s1", base)
	other := newSession(t, s, "s2", base)
	rotatedAt := base.Add(6 * 24 * time.Hour)
	next := Digest(t)
	mustRotate(t, s, rotation(t, s, "s1", sess.CurrentHash, next, rotatedAt))
	// Past the idle expiry the session had at creation, before the one the
	// rotation gave it.
	now := base.Add(idle + 24*time.Hour)
	wantRevokedAt(t, s, "j1", "s1", now, false)
	wantLiveCount(t, s, now, 1)
	if got, err := s.GetSession(c, "s1"); err != nil || got.CurrentHash != next || !got.Live(now) {
		t.Fatalf("GetSession(rotated) = %+v, %v; want the live session", got, err)
	}
	// The never-rotated session has idled out: its token cannot refresh.
	wantRotateErr(t, s, "rotation of an idled-out session", rotation(t, s, "s2", other.CurrentHash, Digest(t), now), storage.ErrSessionExpired)
	// Past the renewed idle expiry, the rotated session is dead too.
	later := rotatedAt.Add(idle)
	wantLiveCount(t, s, later, 0)
	wantRotateErr(t, s, "rotation after the renewed idle expiry", rotation(t, s, "s1", next, Digest(t), later), storage.ErrSessionExpired)
	// Reuse detected after the original idle expiry revokes the session,
	// and the per-request check sees it at once.
	wantRotateErr(t, s, "reuse of the first token", rotation(t, s, "s1", sess.CurrentHash, Digest(t), now), storage.ErrRefreshTokenReused)
	wantRevokedAt(t, s, "j1", "s1", now, true)
}

// The sweeper deletes a session at its real expiry, never at an earlier one
// a backend may have filed it under, and a swept session's digests never
// lead to it again.
func testSweepHonoursRotation(t *testing.T, s storage.Store) {
	c := ctx(t)
	rotated := newSession(t, s, "rotated", base)
	revoked := newSession(t, s, "revoked", base)
	idleOut := newSession(t, s, "idle", base)
	digests := []storage.TokenHash{rotated.CurrentHash}
	for _, at := range []time.Duration{24 * time.Hour, 6 * 24 * time.Hour} {
		next := Digest(t)
		mustRotate(t, s, rotation(t, s, "rotated", digests[len(digests)-1], next, base.Add(at)))
		digests = append(digests, next)
	}
	revokedNext := Digest(t)
	mustRotate(t, s, rotation(t, s, "revoked", revoked.CurrentHash, revokedNext, base.Add(6*24*time.Hour)))
	mustRevoke(t, s, "revoked", storage.ReasonAdmin, base.Add(6*24*time.Hour))
	now := base.Add(idle + 24*time.Hour) // past every original idle expiry
	// Only the idled-out session is deleted. A backend that filed the
	// other two under an earlier expiry (the rotated one under its
	// original idle expiry; the revoked one too, unless its revocation
	// filed it again) re-files them and says so; it never counts them as
	// deleted.
	if deleted, refiled := sweepAll(t, s, now, 2); deleted != 1 || refiled > 2 {
		t.Fatalf("sweep past the original idle expiries: deleted %d, re-filed %d; want 1 deleted, at most 2 re-filed", deleted, refiled)
	}
	if _, err := s.GetSession(c, "idle"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("idled-out session after the sweep: %v; want ErrNotFound", err)
	}
	wantRotateErr(t, s, "rotation of a swept session", rotation(t, s, "idle", idleOut.CurrentHash, Digest(t), now), storage.ErrNotFound)
	if got, err := s.GetSession(c, "rotated"); err != nil || got.CurrentHash != digests[2] {
		t.Fatalf("rotated session after the sweep = %+v, %v; want it kept", got, err)
	}
	wantRevokedAt(t, s, "j", "rotated", now, false)
	wantRevoked(t, s, "revoked", storage.ReasonAdmin)
	wantRevokedAt(t, s, "j", "revoked", now, true)
	wantLiveCount(t, s, now, 1)
	// A second sweep at the same time finds nothing more to do.
	if r, err := s.DeleteExpired(c, now, 100); err != nil || r != (storage.SweepResult{}) {
		t.Fatalf("second DeleteExpired = %+v, %v; want nothing done", r, err)
	}
	// The kept session still rotates, and its old tokens are still reuse.
	wantRotateErr(t, s, "reuse after the sweep", rotation(t, s, "rotated", digests[0], Digest(t), now), storage.ErrRefreshTokenReused)
	wantRevoked(t, s, "rotated", storage.ReasonReuse)

	// Past both sessions' real expiry everything goes, and every digest
	// they issued reads as unknown: never as a session, live or not.
	end := base.Add(6*24*time.Hour + idle + time.Second)
	if deleted, refiled := sweepAll(t, s, end, 2); deleted != 2 || refiled != 0 {
		t.Fatalf("sweep past the real expiries: deleted %d, re-filed %d; want 2 deleted, 0 re-filed", deleted, refiled)
	}
	for _, id := range []string{"rotated", "revoked"} {
		if _, err := s.GetSession(c, id); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("session %s after its expiry's sweep: %v; want ErrNotFound", id, err)
		}
	}
	for id, hs := range map[string][]storage.TokenHash{"rotated": digests, "revoked": {revoked.CurrentHash, revokedNext}} {
		for _, h := range hs {
			wantRotateErr(t, s, "rotation of a swept session's digest", rotation(t, s, id, h, Digest(t), end), storage.ErrNotFound)
		}
	}
}
