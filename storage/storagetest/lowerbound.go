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
	if _, err := s.RotateRefreshToken(c, rotation(t, s, "s1", sess.CurrentHash, next, rotatedAt)); err != nil {
		t.Fatal(err)
	}
	// Past the idle expiry the session had at creation, before the one the
	// rotation gave it.
	now := base.Add(idle + 24*time.Hour)
	if revoked, err := s.AccessTokenRevoked(c, "j1", "s1", now); err != nil || revoked {
		t.Fatalf("AccessTokenRevoked after the original idle expiry of a rotated session = %v, %v; want live", revoked, err)
	}
	if n, err := s.CountLiveSessions(c, now); err != nil || n != 1 {
		t.Fatalf("CountLiveSessions = %d, %v; want 1 (the rotated session; the other idled out)", n, err)
	}
	if got, err := s.GetSession(c, "s1"); err != nil || got.CurrentHash != next || !got.Live(now) {
		t.Fatalf("GetSession(rotated) = %+v, %v; want the live session", got, err)
	}
	// The never-rotated session has idled out: its token cannot refresh.
	_, err := s.RotateRefreshToken(c, rotation(t, s, "s2", other.CurrentHash, Digest(t), now))
	wantErr(t, "rotation of an idled-out session", err, storage.ErrSessionExpired)
	// Past the renewed idle expiry, the rotated session is dead too.
	later := rotatedAt.Add(idle)
	if n, err := s.CountLiveSessions(c, later); err != nil || n != 0 {
		t.Fatalf("CountLiveSessions after the renewed idle expiry = %d, %v; want 0", n, err)
	}
	_, err = s.RotateRefreshToken(c, rotation(t, s, "s1", next, Digest(t), later))
	wantErr(t, "rotation after the renewed idle expiry", err, storage.ErrSessionExpired)
	// Reuse detected after the original idle expiry revokes the session,
	// and the per-request check sees it at once.
	_, err = s.RotateRefreshToken(c, rotation(t, s, "s1", sess.CurrentHash, Digest(t), now))
	wantErr(t, "reuse of the first token", err, storage.ErrRefreshTokenReused)
	if revoked, err := s.AccessTokenRevoked(c, "j1", "s1", now); err != nil || !revoked {
		t.Fatalf("AccessTokenRevoked after reuse = %v, %v; want revoked", revoked, err)
	}
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
		if _, err := s.RotateRefreshToken(c, rotation(t, s, "rotated", digests[len(digests)-1], next, base.Add(at))); err != nil {
			t.Fatal(err)
		}
		digests = append(digests, next)
	}
	revokedNext := Digest(t)
	if _, err := s.RotateRefreshToken(c, rotation(t, s, "revoked", revoked.CurrentHash, revokedNext, base.Add(6*24*time.Hour))); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RevokeSession(c, "revoked", storage.ReasonAdmin, base.Add(6*24*time.Hour)); err != nil {
		t.Fatal(err)
	}
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
	if _, err := s.RotateRefreshToken(c, rotation(t, s, "idle", idleOut.CurrentHash, Digest(t), now)); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("rotation of a swept session: %v; want ErrNotFound", err)
	}
	if got, err := s.GetSession(c, "rotated"); err != nil || got.CurrentHash != digests[2] {
		t.Fatalf("rotated session after the sweep = %+v, %v; want it kept", got, err)
	}
	if revoked, err := s.AccessTokenRevoked(c, "j", "rotated", now); err != nil || revoked {
		t.Fatalf("AccessTokenRevoked(rotated) after the sweep = %v, %v; want live", revoked, err)
	}
	wantRevoked(t, s, "revoked", storage.ReasonAdmin)
	if revoked, err := s.AccessTokenRevoked(c, "j", "revoked", now); err != nil || !revoked {
		t.Fatalf("AccessTokenRevoked(revoked) after the sweep = %v, %v; want revoked", revoked, err)
	}
	if n, err := s.CountLiveSessions(c, now); err != nil || n != 1 {
		t.Fatalf("CountLiveSessions after the sweep = %d, %v; want 1", n, err)
	}
	// A second sweep at the same time finds nothing more to do.
	if r, err := s.DeleteExpired(c, now, 100); err != nil || r != (storage.SweepResult{}) {
		t.Fatalf("second DeleteExpired = %+v, %v; want nothing done", r, err)
	}
	// The kept session still rotates, and its old tokens are still reuse.
	_, err := s.RotateRefreshToken(c, rotation(t, s, "rotated", digests[0], Digest(t), now))
	wantErr(t, "reuse after the sweep", err, storage.ErrRefreshTokenReused)
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
	for _, h := range digests {
		_, err := s.RotateRefreshToken(c, rotation(t, s, "rotated", h, Digest(t), end))
		wantErr(t, "rotation of a swept session's digest", err, storage.ErrNotFound)
	}
	for _, h := range []storage.TokenHash{revoked.CurrentHash, revokedNext} {
		_, err := s.RotateRefreshToken(c, rotation(t, s, "revoked", h, Digest(t), end))
		wantErr(t, "rotation of a swept session's digest", err, storage.ErrNotFound)
	}
}
