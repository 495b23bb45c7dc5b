// Package storagetest is the conformance suite every storage.Store backend
// runs: one call to Run in the backend's tests proves it keeps the contract
// that storage documents, including the concurrency guarantees of refresh
// rotation.
package storagetest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/latchauth/latch/storage"
)

// base is the fixed clock the suite runs on.
var base = time.Unix(1_700_000_000, 0).UTC()

const (
	idle   = 7 * 24 * time.Hour
	maxAge = 30 * 24 * time.Hour
)

// Run runs the conformance suite. open must return a fresh, empty store for
// each call; Run closes it.
func Run(t *testing.T, open func(t *testing.T) storage.Store, opts ...Option) {
	t.Helper()
	var o runOptions
	for _, opt := range opts {
		opt(&o)
	}
	tests := []struct {
		name string
		fn   func(*testing.T, storage.Store)
	}{
		{"Users", testUsers},
		{"UpdateUser", testUpdateUser},
		{"Sessions", testSessions},
		{"RotationChain", testRotationChain},
		{"ReuseRevokesFamily", testReuseRevokesFamily},
		{"RotationRefusals", testRotationRefusals},
		{"ReuseGrace", testReuseGrace},
		{"ConcurrentRotation", testConcurrentRotation},
		{"ConcurrentGraceRotation", testConcurrentGraceRotation},
		{"OldGenerationReuse", testOldGenerationReuse},
		{"RefreshKeys", testRefreshKeys},
		{"RevokeSession", testRevokeSession},
		{"RevocationsReportChange", testRevocationsReportChange},
		{"DenyList", testDenyList},
		{"ListRevocations", testListRevocations},
		{"SigningKeys", testSigningKeys},
		{"UpdateSigningKeys", testUpdateSigningKeys},
		{"UpdateSigningKeysRefusals", testUpdateSigningKeysRefusals},
		{"ConcurrentKeyUpdates", testConcurrentKeyUpdates},
		{"DeleteExpired", testDeleteExpired},
		{"RotationRenewsLiveness", testRotationRenewsLiveness},
		{"SweepHonoursRotation", testSweepHonoursRotation},
		{"CancelledContext", testCancelledContext},
		{"ListUsers", testListUsers},
		{"DeleteUser", testDeleteUser},
		{"ListUserSessions", testListUserSessions},
		{"RevokeUserSessions", testRevokeUserSessions},
		{"CountLiveSessions", testCountLiveSessions},
		{"CreateSessionNeedsUser", testCreateSessionNeedsUser},
		{"DeleteUserRacesCreateSession", testDeleteUserRacesCreateSession},
		{"DisableUserRacesCreateSession", testDisableUserRacesCreateSession},
		{"SessionClientInfo", testSessionClientInfo},
		{"ResetSessions", testResetSessions},
		{"ResetSessionsRefusals", testResetSessionsRefusals},
		{"ResetSessionsByAdmin", testResetSessionsByAdmin},
		{"ResetSessionsMany", testResetSessionsMany},
		{"ResetSessionsRacesRotation", testResetSessionsRacesRotation},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, openClosed(t, open)) })
	}
	if o.footprint != nil {
		t.Run("RotationFootprint", func(t *testing.T) { testRotationFootprint(t, openClosed(t, open), o.footprint) })
	}
	if r := o.retention; r != nil {
		t.Run("RevokedSessionRetention", func(t *testing.T) { testRevokedRetention(t, openClosed(t, r.Open), r, o.footprint) })
		t.Run("RevokedSessionRetentionConcurrent", func(t *testing.T) { testRetentionConcurrent(t, openClosed(t, r.Open), r, o.footprint) })
	}
}

// openClosed opens a store that is closed when t ends.
func openClosed(t *testing.T, open func(t *testing.T) storage.Store) storage.Store {
	s := open(t)
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return c
}

// Digest returns a fresh random refresh-token digest.
func Digest(t testing.TB) storage.TokenHash {
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(raw[:])
}

func newSession(t *testing.T, s storage.Store, id string, now time.Time) storage.Session {
	t.Helper()
	return userSession(t, s, "user-"+id, id, now)
}

// race runs fn(0) … fn(n-1) in n goroutines released together, and waits
// for them all.
func race(n int, fn func(i int)) {
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			fn(i)
		})
	}
	close(start)
	wg.Wait()
}

// rotation returns the Rotation that exchanges the token of session id
// with digest presented for next at now, carrying the generation a
// client's token would: the session's own for its current token, one less
// for its previous one, and 0 for any other (a token the session has since
// exchanged, or one it never issued).
func rotation(t *testing.T, s storage.Store, id string, presented, next storage.TokenHash, now time.Time) storage.Rotation {
	t.Helper()
	r := storage.Rotation{SessionID: id, Presented: presented, Next: next, Now: now, IdleTTL: idle}
	sess, err := s.GetSession(ctx(t), id)
	switch {
	case err != nil:
	case presented == sess.CurrentHash:
		r.Generation = sess.Generation
	case presented == sess.PreviousHash:
		r.Generation = sess.Generation - 1
	}
	return r
}

// mustRevoke, mustRotate and mustDeny call RevokeSession,
// RotateRefreshToken and DenyAccessToken, and fail t on an error.
func mustRevoke(t *testing.T, s storage.Store, id, reason string, at time.Time) {
	t.Helper()
	if _, _, err := s.RevokeSession(ctx(t), id, reason, at); err != nil {
		t.Fatalf("RevokeSession(%s): %v", id, err)
	}
}

func mustRotate(t *testing.T, s storage.Store, r storage.Rotation) {
	t.Helper()
	if _, err := s.RotateRefreshToken(ctx(t), r); err != nil {
		t.Fatalf("RotateRefreshToken(%s): %v", r.SessionID, err)
	}
}

func mustDeny(t *testing.T, s storage.Store, jti string, expiresAt time.Time) {
	t.Helper()
	if _, err := s.DenyAccessToken(ctx(t), jti, expiresAt); err != nil {
		t.Fatalf("DenyAccessToken(%s): %v", jti, err)
	}
}

// wantRevokedAt fails t unless AccessTokenRevoked(jti, sessionID, at)
// answers want without error.
func wantRevokedAt(t *testing.T, s storage.Store, jti, sessionID string, at time.Time, want bool) {
	t.Helper()
	if got, err := s.AccessTokenRevoked(ctx(t), jti, sessionID, at); err != nil || got != want {
		t.Fatalf("AccessTokenRevoked(%q, %q) at %v = %v, %v; want %v", jti, sessionID, at.Sub(base), got, err, want)
	}
}

// wantLiveCount fails t unless CountLiveSessions(at) is want.
func wantLiveCount(t *testing.T, s storage.Store, at time.Time, want int) {
	t.Helper()
	if n, err := s.CountLiveSessions(ctx(t), at); err != nil || n != want {
		t.Fatalf("CountLiveSessions at %v = %d, %v; want %d", at.Sub(base), n, err, want)
	}
}

// wantRotateErr fails t unless RotateRefreshToken(r) fails with want.
func wantRotateErr(t *testing.T, s storage.Store, what string, r storage.Rotation, want error) {
	t.Helper()
	_, err := s.RotateRefreshToken(ctx(t), r)
	wantErr(t, what, err, want)
}

func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: got error %v, want %v", what, err, want)
	}
}

func wantRevoked(t *testing.T, s storage.Store, id, reason string) storage.Session {
	t.Helper()
	got, err := s.GetSession(ctx(t), id)
	if err != nil {
		t.Fatalf("GetSession(%s): %v", id, err)
	}
	if !got.Revoked() || got.RevokeReason != reason {
		t.Fatalf("session %s: revoked=%v reason=%q, want revoked with %q", id, got.Revoked(), got.RevokeReason, reason)
	}
	return got
}

func testUsers(t *testing.T, s storage.Store) {
	c := ctx(t)
	u := storage.User{ID: "u1", Email: "ada@example.com", PasswordHash: "$argon2id$x", Roles: []string{"reader"}, CreatedAt: base, UpdatedAt: base}
	if err := s.CreateUser(c, u); err != nil {
		t.Fatalf("CreateUser: %v", err)
	}
	u.Roles[0] = "mutated" // the store must have copied the slice
	wantErr(t, "CreateUser same id", s.CreateUser(c, storage.User{ID: "u1", Email: "other@example.com"}), storage.ErrAlreadyExists)
	wantErr(t, "CreateUser same email", s.CreateUser(c, storage.User{ID: "u2", Email: "ada@example.com"}), storage.ErrAlreadyExists)
	wantErr(t, "CreateUser empty id", s.CreateUser(c, storage.User{Email: "x@example.com"}), storage.ErrInvalidArgument)
	wantErr(t, "CreateUser empty email", s.CreateUser(c, storage.User{ID: "u3"}), storage.ErrInvalidArgument)
	long := strings.Repeat("x", 40000) + "@example.com" // past bbolt's key size limit
	wantErr(t, "CreateUser oversized email", s.CreateUser(c, storage.User{ID: "u3", Email: long}), storage.ErrInvalidArgument)
	wantErr(t, "CreateUser email with NUL", s.CreateUser(c, storage.User{ID: "u3", Email: "a\x00@example.com"}), storage.ErrInvalidArgument)

	got, err := s.GetUser(c, "u1")
	if err != nil {
		t.Fatalf("GetUser: %v", err)
	}
	if got.Email != "ada@example.com" || got.PasswordHash != "$argon2id$x" || !slices.Equal(got.Roles, []string{"reader"}) || !got.CreatedAt.Equal(base) {
		t.Fatalf("GetUser = %+v", got)
	}
	got.Roles[0] = "mutated"
	byEmail, err := s.GetUserByEmail(c, "ada@example.com")
	if err != nil || byEmail.ID != "u1" || byEmail.Roles[0] != "reader" {
		t.Fatalf("GetUserByEmail = %+v, %v", byEmail, err)
	}
	_, err = s.GetUser(c, "nobody")
	wantErr(t, "GetUser unknown", err, storage.ErrNotFound)
	_, err = s.GetUserByEmail(c, "nobody@example.com")
	wantErr(t, "GetUserByEmail unknown", err, storage.ErrNotFound)
	if n, err := s.CountUsers(c); err != nil || n != 1 {
		t.Fatalf("CountUsers = %d, %v; want 1", n, err)
	}
}

func testUpdateUser(t *testing.T, s storage.Store) {
	c := ctx(t)
	for _, u := range []storage.User{{ID: "u1", Email: "a@example.com"}, {ID: "u2", Email: "b@example.com"}} {
		if err := s.CreateUser(c, u); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.UpdateUser(c, "u1", func(u *storage.User) error {
		u.Email, u.Roles, u.Disabled = "c@example.com", []string{"admin"}, true
		return nil
	})
	if err != nil || got.Email != "c@example.com" || !got.Disabled {
		t.Fatalf("UpdateUser = %+v, %v", got, err)
	}
	if _, err := s.GetUserByEmail(c, "a@example.com"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("old email still indexed: %v", err)
	}
	if u, err := s.GetUserByEmail(c, "c@example.com"); err != nil || u.ID != "u1" || !slices.Equal(u.Roles, []string{"admin"}) {
		t.Fatalf("new email: %+v, %v", u, err)
	}
	_, err = s.UpdateUser(c, "u1", func(u *storage.User) error { u.Email = "b@example.com"; return nil })
	wantErr(t, "UpdateUser to a taken email", err, storage.ErrAlreadyExists)
	_, err = s.UpdateUser(c, "u1", func(u *storage.User) error { u.ID = "u9"; return nil })
	wantErr(t, "UpdateUser changing id", err, storage.ErrInvalidArgument)
	_, err = s.UpdateUser(c, "u1", func(u *storage.User) error { u.Email = strings.Repeat("x", 40000) + "@example.com"; return nil })
	wantErr(t, "UpdateUser to an oversized email", err, storage.ErrInvalidArgument)
	boom := errors.New("boom")
	_, err = s.UpdateUser(c, "u1", func(u *storage.User) error { u.Roles = nil; u.Email = "z@example.com"; return boom })
	wantErr(t, "UpdateUser fn error", err, boom)
	if u, _ := s.GetUser(c, "u1"); u.Email != "c@example.com" || len(u.Roles) != 1 {
		t.Fatalf("failed update changed the user: %+v", u)
	}
	if _, err := s.GetUserByEmail(c, "z@example.com"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("failed update changed the email index: %v", err)
	}
	_, err = s.UpdateUser(c, "nobody", func(*storage.User) error { return nil })
	wantErr(t, "UpdateUser unknown", err, storage.ErrNotFound)
	_, err = s.UpdateUser(c, "u1", nil)
	wantErr(t, "UpdateUser with nil fn", err, storage.ErrInvalidArgument)
}

func testSessions(t *testing.T, s storage.Store) {
	c := ctx(t)
	sess := newSession(t, s, "s1", base)
	wantErr(t, "CreateSession same id", s.CreateSession(c, storage.Session{ID: "s1", UserID: sess.UserID, CurrentHash: Digest(t),
		IdleExpiresAt: base.Add(idle), AbsoluteExpiresAt: base.Add(maxAge)}), storage.ErrAlreadyExists)
	wantErr(t, "CreateSession empty digest", s.CreateSession(c, storage.Session{ID: "s3", UserID: "u"}), storage.ErrInvalidArgument)

	got, err := s.GetSession(c, "s1")
	if err != nil || got.UserID != "user-s1" || got.Audience != "orders" || got.CurrentHash != sess.CurrentHash ||
		!got.PreviousHash.IsZero() || got.Generation != 0 || !got.IdleExpiresAt.Equal(sess.IdleExpiresAt) || !got.AbsoluteExpiresAt.Equal(sess.AbsoluteExpiresAt) || got.Revoked() {
		t.Fatalf("GetSession = %+v, %v", got, err)
	}
	_, err = s.GetSession(c, "nope")
	wantErr(t, "GetSession unknown", err, storage.ErrNotFound)
}

func testRotationChain(t *testing.T, s storage.Store) {
	c := ctx(t)
	sess := newSession(t, s, "s1", base)
	issued := []storage.TokenHash{sess.CurrentHash}
	now := base
	for i := 1; i <= 5; i++ {
		now = now.Add(time.Hour)
		next := Digest(t)
		got, err := s.RotateRefreshToken(c, rotation(t, s, "s1", issued[len(issued)-1], next, now))
		if err != nil {
			t.Fatalf("rotation %d: %v", i, err)
		}
		if got.CurrentHash != next || got.Generation != uint64(i) || !got.LastRotatedAt.Equal(now) || !got.IdleExpiresAt.Equal(now.Add(idle)) ||
			!got.AbsoluteExpiresAt.Equal(sess.AbsoluteExpiresAt) {
			t.Fatalf("rotation %d returned %+v", i, got)
		}
		issued = append(issued, next)
	}
	// The session keeps the current digest and the one before it.
	stored, err := s.GetSession(c, "s1")
	if err != nil || stored.CurrentHash != issued[5] || stored.PreviousHash != issued[4] || stored.Generation != 5 {
		t.Fatalf("stored after chain = %+v, %v", stored, err)
	}
}

func testReuseRevokesFamily(t *testing.T, s storage.Store) {
	sess := newSession(t, s, "s1", base)
	t1, t2 := Digest(t), Digest(t)
	mustRotate(t, s, rotation(t, s, "s1", sess.CurrentHash, t1, base.Add(time.Minute)))
	mustRotate(t, s, rotation(t, s, "s1", t1, t2, base.Add(2*time.Minute)))
	// The attacker replays the first token (generation 0).
	wantRotateErr(t, s, "replay of a rotated token", rotation(t, s, "s1", sess.CurrentHash, Digest(t), base.Add(3*time.Minute)), storage.ErrRefreshTokenReused)
	got := wantRevoked(t, s, "s1", storage.ReasonReuse)
	if !got.RevokedAt.Equal(base.Add(3 * time.Minute)) {
		t.Fatalf("RevokedAt = %v", got.RevokedAt)
	}
	// The legitimate holder's current token is dead too.
	wantRotateErr(t, s, "current token after reuse", rotation(t, s, "s1", t2, Digest(t), base.Add(4*time.Minute)), storage.ErrSessionRevoked)
	wantRevokedAt(t, s, "any-jti", "s1", base.Add(4*time.Minute), true)
}

func testRotationRefusals(t *testing.T, s storage.Store) {
	c := ctx(t)
	sess := newSession(t, s, "s1", base)
	other := newSession(t, s, "s2", base)

	wantRotateErr(t, s, "a digest the session never issued", rotation(t, s, "s1", Digest(t), Digest(t), base), storage.ErrNotFound)
	wantRotateErr(t, s, "unknown session", rotation(t, s, "nosuch", sess.CurrentHash, Digest(t), base), storage.ErrNotFound)
	wantRotateErr(t, s, "another session's digest", rotation(t, s, "s2", sess.CurrentHash, Digest(t), base), storage.ErrNotFound)
	wantRotateErr(t, s, "same digest", rotation(t, s, "s1", sess.CurrentHash, sess.CurrentHash, base), storage.ErrInvalidArgument)
	wantRotateErr(t, s, "no idle ttl", storage.Rotation{SessionID: "s1", Presented: sess.CurrentHash, Next: Digest(t), Now: base}, storage.ErrInvalidArgument)
	wantRotateErr(t, s, "no session id", storage.Rotation{Presented: sess.CurrentHash, Next: Digest(t), Now: base, IdleTTL: idle}, storage.ErrInvalidArgument)
	if got, _ := s.GetSession(c, "s1"); got.CurrentHash != sess.CurrentHash || got.Generation != 0 || got.Revoked() {
		t.Fatalf("refused rotations changed the session: %+v", got)
	}
	if got, _ := s.GetSession(c, "s2"); got.CurrentHash != other.CurrentHash || got.Revoked() {
		t.Fatalf("a digest presented for the wrong session changed it: %+v", got)
	}

	// Idle expiry: nothing changes, the token stays current (and dead).
	wantRotateErr(t, s, "idle-expired session", rotation(t, s, "s1", sess.CurrentHash, Digest(t), base.Add(idle)), storage.ErrSessionExpired)
	if got, _ := s.GetSession(c, "s1"); got.CurrentHash != sess.CurrentHash || got.Revoked() {
		t.Fatalf("expired rotation changed the session: %+v", got)
	}

	// Absolute lifetime: rotating every day never gets past it.
	now := base
	cur := other.CurrentHash
	for now.Before(base.Add(maxAge - 24*time.Hour)) {
		now = now.Add(24 * time.Hour)
		next := Digest(t)
		if _, err := s.RotateRefreshToken(c, rotation(t, s, "s2", cur, next, now)); err != nil {
			t.Fatalf("daily rotation at %v: %v", now.Sub(base), err)
		}
		cur = next
	}
	wantRotateErr(t, s, "past absolute lifetime", rotation(t, s, "s2", cur, Digest(t), base.Add(maxAge)), storage.ErrSessionExpired)

	// Revoked session.
	third := newSession(t, s, "s3", base)
	mustRevoke(t, s, "s3", storage.ReasonRevoked, base)
	wantRotateErr(t, s, "revoked session", rotation(t, s, "s3", third.CurrentHash, Digest(t), base.Add(time.Second)), storage.ErrSessionRevoked)
	wantRevoked(t, s, "s3", storage.ReasonRevoked)
}

func testReuseGrace(t *testing.T, s storage.Store) {
	c := ctx(t)
	sess := newSession(t, s, "s1", base)
	grace := func(id string, p, n storage.TokenHash, now time.Time) storage.Rotation {
		r := rotation(t, s, id, p, n, now)
		r.ReuseGrace = 10 * time.Second
		return r
	}
	lost, retried := Digest(t), Digest(t)
	mustRotate(t, s, grace("s1", sess.CurrentHash, lost, base))
	// The client never saw "lost" and retries with the original within grace.
	got, err := s.RotateRefreshToken(c, grace("s1", sess.CurrentHash, retried, base.Add(5*time.Second)))
	if err != nil || got.CurrentHash != retried {
		t.Fatalf("retry within grace = %+v, %v", got, err)
	}
	// The replaced successor is now a reused token and kills the family.
	r := grace("s1", lost, Digest(t), base.Add(6*time.Second))
	r.Generation = 1 // what the replaced successor carries
	wantRotateErr(t, s, "replaced successor", r, storage.ErrRefreshTokenReused)
	wantRevoked(t, s, "s1", storage.ReasonReuse)

	// Past the grace period the retry is reuse.
	s2 := newSession(t, s, "s2", base)
	mustRotate(t, s, grace("s2", s2.CurrentHash, Digest(t), base))
	wantRotateErr(t, s, "retry after grace", grace("s2", s2.CurrentHash, Digest(t), base.Add(11*time.Second)), storage.ErrRefreshTokenReused)
	wantRevoked(t, s, "s2", storage.ReasonReuse)
}

// testConcurrentRotation is invariant 1: of N concurrent exchanges of one
// token exactly one wins, and the losers, which count as reuse, revoke the
// family (the documented decision: a lost race is indistinguishable from a
// replay, so the family dies unless a reuse grace is configured).
func testConcurrentRotation(t *testing.T, s storage.Store) {
	for _, n := range []int{2, 8, 64} {
		t.Run(fmt.Sprintf("N=%d", n), func(t *testing.T) {
			c := ctx(t)
			id := fmt.Sprintf("race-%d", n)
			sess := newSession(t, s, id, base)
			rotations := make([]storage.Rotation, n)
			for i := range rotations {
				rotations[i] = rotation(t, s, id, sess.CurrentHash, Digest(t), base.Add(time.Second))
			}
			errs := make([]error, n)
			race(n, func(i int) { _, errs[i] = s.RotateRefreshToken(c, rotations[i]) })
			wins := 0
			for i, err := range errs {
				switch {
				case err == nil:
					wins++
				case errors.Is(err, storage.ErrRefreshTokenReused), errors.Is(err, storage.ErrSessionRevoked):
				default:
					t.Errorf("caller %d: unexpected error %v", i, err)
				}
			}
			if wins != 1 {
				t.Fatalf("%d of %d concurrent rotations succeeded, want exactly 1", wins, n)
			}
			wantRevoked(t, s, id, storage.ReasonReuse)
		})
	}
}

// testRevokeSession: a revocation returns the session as stored after it
// (the first one's reason and time, also on a repeat), so that a caller
// can announce it without reading it again.
func testRevokeSession(t *testing.T, s storage.Store) {
	c := ctx(t)
	newSession(t, s, "s1", base)
	first := base.Add(time.Minute)
	for i, reason := range []string{storage.ReasonRevoked, storage.ReasonAdmin} {
		sess, changed, err := s.RevokeSession(c, "s1", reason, first.Add(time.Duration(i)*time.Minute))
		if err != nil || changed != (i == 0) {
			t.Fatalf("RevokeSession #%d = changed %v, %v; want changed %v, no error", i+1, changed, err, i == 0)
		}
		stored := wantRevoked(t, s, "s1", storage.ReasonRevoked)
		if !stored.RevokedAt.Equal(first) {
			t.Fatalf("RevokedAt = %v, want the first revocation's time", stored.RevokedAt)
		}
		if sess.ID != "s1" || sess.UserID != stored.UserID || sess.RevokeReason != stored.RevokeReason ||
			!sess.RevokedAt.Equal(stored.RevokedAt) || !sess.ExpiresAt().Equal(stored.ExpiresAt()) {
			t.Fatalf("RevokeSession #%d returned session %s of %s revoked %v (%q) expiring %v; stored: %s of %s revoked %v (%q) expiring %v",
				i+1, sess.ID, sess.UserID, sess.RevokedAt, sess.RevokeReason, sess.ExpiresAt(),
				stored.ID, stored.UserID, stored.RevokedAt, stored.RevokeReason, stored.ExpiresAt())
		}
	}
	_, _, err := s.RevokeSession(c, "nope", storage.ReasonRevoked, base)
	wantErr(t, "revoke unknown", err, storage.ErrNotFound)
	for _, id := range []string{"", "a\x00b", strings.Repeat("x", storage.MaxIDLen+1)} {
		_, _, err := s.RevokeSession(c, id, storage.ReasonRevoked, base)
		wantErr(t, fmt.Sprintf("revoke session id %.10q", id), err, storage.ErrInvalidArgument)
	}
}

// testRevocationsReportChange: of many concurrent revocations of one
// session, and of many concurrent denials of one jti, exactly one reports a
// change; the rest, and every later repeat, report none.
func testRevocationsReportChange(t *testing.T, s storage.Store) {
	const n = 16
	newSession(t, s, "s1", base)
	c := ctx(t)
	exp := base.Add(15 * time.Minute)
	for name, revoke := range map[string]func() (bool, error){
		"RevokeSession": func() (bool, error) {
			_, changed, err := s.RevokeSession(c, "s1", storage.ReasonRevoked, base.Add(time.Minute))
			return changed, err
		},
		"DenyAccessToken": func() (bool, error) { return s.DenyAccessToken(c, "j1", exp) },
	} {
		changed := make([]bool, n)
		errs := make([]error, n)
		race(n, func(i int) { changed[i], errs[i] = revoke() })
		wins := 0
		for i := range n {
			if errs[i] != nil {
				t.Fatalf("%s %d: %v", name, i, errs[i])
			}
			if changed[i] {
				wins++
			}
		}
		if wins != 1 {
			t.Fatalf("%d of %d concurrent %s calls reported a change, want 1", wins, n, name)
		}
		if again, err := revoke(); err != nil || again {
			t.Fatalf("%s repeated = %v, %v; want unchanged", name, again, err)
		}
	}
}

func testDenyList(t *testing.T, s storage.Store) {
	c := ctx(t)
	newSession(t, s, "s1", base)
	now := base.Add(time.Minute)
	wantRevokedAt(t, s, "j1", "s1", now, false)
	if changed, err := s.DenyAccessToken(c, "j1", now.Add(15*time.Minute)); err != nil || !changed {
		t.Fatalf("DenyAccessToken = %v, %v; want changed", changed, err)
	}
	for _, exp := range []time.Time{now.Add(10 * time.Minute), now.Add(15 * time.Minute)} {
		if changed, err := s.DenyAccessToken(c, "j1", exp); err != nil || changed {
			t.Fatalf("DenyAccessToken again until %v = %v, %v; want unchanged", exp.Sub(now), changed, err)
		}
	}
	if changed, err := s.DenyAccessToken(c, "j1", now.Add(20*time.Minute)); err != nil || !changed {
		t.Fatalf("DenyAccessToken with a later expiry = %v, %v; want changed", changed, err)
	}
	wantRevokedAt(t, s, "j1", "s1", now, true)
	wantRevokedAt(t, s, "j2", "s1", now, false)
	wantRevokedAt(t, s, "j2", "missing-session", now, true)
	// The session's idle expiry is not consulted (see
	// storage.DenyList.AccessTokenRevoked); its absolute expiry is.
	wantRevokedAt(t, s, "j2", "s1", base.Add(idle), false)
	wantRevokedAt(t, s, "j2", "s1", base.Add(maxAge).Add(-time.Nanosecond), false)
	wantRevokedAt(t, s, "j2", "s1", base.Add(maxAge), true)
	wantRevokedAt(t, s, "", "s1", now, true)
	wantRevokedAt(t, s, "j2", "", now, true)
	mustRevoke(t, s, "s1", storage.ReasonRevoked, now)
	wantRevokedAt(t, s, "j2", "s1", now, true)
	newSession(t, s, "s2", base)
	wantRevokedAt(t, s, "j2", "s2", now, false)
	cancelled, cancel := context.WithCancel(c)
	cancel()
	if got, err := s.AccessTokenRevoked(cancelled, "j2", "s2", now); err == nil || !got {
		t.Fatalf("AccessTokenRevoked on a cancelled context = %v, %v; want true and an error", got, err)
	}
	_, err := s.DenyAccessToken(c, "", now)
	wantErr(t, "deny empty jti", err, storage.ErrInvalidArgument)
}

func testSigningKeys(t *testing.T, s storage.Store) {
	c := ctx(t)
	if keys, err := s.ListSigningKeys(c); err != nil || len(keys) != 0 {
		t.Fatalf("ListSigningKeys on empty store = %v, %v", keys, err)
	}
	key := func(id string) storage.SigningKey { return testKey(id, storage.KeyNext, base) }
	got := make([]storage.SigningKey, 8)
	errs := make([]error, 8)
	race(8, func(i int) { got[i], errs[i] = s.InitSigningKey(c, key(fmt.Sprintf("k%d", i))) })
	for i := range 8 {
		if errs[i] != nil {
			t.Fatalf("InitSigningKey %d: %v", i, errs[i])
		}
		if got[i].ID != got[0].ID {
			t.Fatalf("concurrent InitSigningKey disagree: %s vs %s", got[i].ID, got[0].ID)
		}
	}
	if got[0].State != storage.KeyActive || !got[0].ActivatedAt.Equal(base) || string(got[0].PrivateKey) != "priv-"+got[0].ID {
		t.Fatalf("initialised key = %+v", got[0])
	}
	again, err := s.InitSigningKey(c, key("later"))
	if err != nil || again.ID != got[0].ID {
		t.Fatalf("InitSigningKey with an active key = %s, %v; want %s", again.ID, err, got[0].ID)
	}
	keys, err := s.ListSigningKeys(c)
	if err != nil || len(keys) != 1 || keys[0].ID != got[0].ID || string(keys[0].PublicKey) != "pub-"+got[0].ID {
		t.Fatalf("ListSigningKeys = %+v, %v", keys, err)
	}
	_, err = s.InitSigningKey(c, storage.SigningKey{ID: "empty"})
	wantErr(t, "InitSigningKey without material", err, storage.ErrInvalidArgument)
}

func testDeleteExpired(t *testing.T, s storage.Store) {
	c := ctx(t)
	var expired []storage.Session
	for i := range 5 {
		expired = append(expired, newSession(t, s, fmt.Sprintf("old%d", i), base))
	}
	// Rotate one, so that it holds a previous digest too.
	mustRotate(t, s, rotation(t, s, expired[0].ID, expired[0].CurrentHash, Digest(t), base.Add(time.Hour)))
	live := newSession(t, s, "live", base.Add(20*24*time.Hour))
	for i := range 3 {
		mustDeny(t, s, fmt.Sprintf("oldjti%d", i), base.Add(time.Hour))
	}
	mustDeny(t, s, "livejti", base.Add(40*24*time.Hour))
	now := base.Add(8 * 24 * time.Hour) // past the old sessions' idle expiry

	total, _ := sweepAll(t, s, now, 3)
	if total != 8 {
		t.Fatalf("deleted %d rows, want 8 (5 sessions, 3 jtis)", total)
	}
	for _, sess := range expired {
		if _, err := s.GetSession(c, sess.ID); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("expired session %s survived: %v", sess.ID, err)
		}
		wantRotateErr(t, s, "rotation of a swept session", rotation(t, s, sess.ID, sess.CurrentHash, Digest(t), now), storage.ErrNotFound)
	}
	if _, err := s.GetSession(c, live.ID); err != nil {
		t.Fatalf("live session swept: %v", err)
	}
	if revoked, _ := s.AccessTokenRevoked(c, "livejti", live.ID, now); !revoked {
		t.Fatal("unexpired denial swept")
	}
	if r, err := s.DeleteExpired(c, now, 100); err != nil || r != (storage.SweepResult{}) {
		t.Fatalf("second sweep = %+v, %v; want nothing done", r, err)
	}
}

// sweepAll calls DeleteExpired(now, limit) until it reports no more, and
// sums what it did; each call must stay within limit.
func sweepAll(t *testing.T, s storage.Store, now time.Time, limit int) (deleted, refiled int) {
	t.Helper()
	for range 100 {
		r, err := s.DeleteExpired(ctx(t), now, limit)
		if err != nil {
			t.Fatalf("DeleteExpired at %v: %v", now.Sub(base), err)
		}
		if r.Deleted+r.Refiled > limit {
			t.Fatalf("DeleteExpired at %v = %+v with limit %d", now.Sub(base), r, limit)
		}
		deleted += r.Deleted
		refiled += r.Refiled
		if !r.More {
			return deleted, refiled
		}
	}
	t.Fatalf("DeleteExpired at %v never finished", now.Sub(base))
	return 0, 0
}

// testCancelledContext: every method fails with the context's error on a
// cancelled context, and writes nothing.
func testCancelledContext(t *testing.T, s storage.Store) {
	userSession(t, s, "u1", "a", base)
	c, cancel := context.WithCancel(context.Background())
	cancel()
	calls := map[string]func() error{
		"CreateUser": func() error { return s.CreateUser(c, storage.User{ID: "u", Email: "e@example.com"}) },
		"GetSession": func() error { _, err := s.GetSession(c, "a"); return err },
		"RotateRefreshToken": func() error {
			_, err := s.RotateRefreshToken(c, storage.Rotation{SessionID: "a", Presented: Digest(t), Next: Digest(t), Now: base, IdleTTL: idle})
			return err
		},
		"ListUsers":          func() error { _, err := s.ListUsers(c, "", 10); return err },
		"DeleteUser":         func() error { _, err := s.DeleteUser(c, "u1", base); return err },
		"ListUserSessions":   func() error { _, err := s.ListUserSessions(c, "u1"); return err },
		"RevokeUserSessions": func() error { _, err := s.RevokeUserSessions(c, "u1", storage.ReasonAdmin, base); return err },
		"CountLiveSessions":  func() error { _, err := s.CountLiveSessions(c, base); return err },
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, context.Canceled) {
			t.Fatalf("%s with a cancelled context = %v, want context.Canceled", name, err)
		}
	}
	if n, _ := s.CountUsers(ctx(t)); n != 1 {
		t.Fatal("cancelled CreateUser wrote")
	}
	if _, err := s.GetUser(ctx(t), "u1"); err != nil {
		t.Fatalf("cancelled DeleteUser wrote: %v", err)
	}
	if got, _ := s.GetSession(ctx(t), "a"); got.Revoked() {
		t.Fatal("cancelled RevokeUserSessions wrote")
	}
}

func testListRevocations(t *testing.T, s storage.Store) {
	c := ctx(t)
	if revs, err := s.ListRevocations(c, base); err != nil || len(revs) != 0 {
		t.Fatalf("ListRevocations on an empty store = %v, %v", revs, err)
	}
	newSession(t, s, "live", base)
	newSession(t, s, "revoked", base)
	newSession(t, s, "old", base.Add(-maxAge))
	mustRevoke(t, s, "revoked", storage.ReasonRevoked, base)
	mustRevoke(t, s, "old", storage.ReasonRevoked, base)
	mustDeny(t, s, "j-live", base.Add(10*time.Minute))
	mustDeny(t, s, "j-expired", base.Add(-time.Minute))
	revs, err := s.ListRevocations(c, base)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]time.Time{}
	for _, r := range revs {
		if (r.JTI == "") == (r.SessionID == "") {
			t.Fatalf("revocation %+v must name exactly one of jti and session", r)
		}
		got[r.JTI+"|"+r.SessionID] = r.ExpiresAt
	}
	want := map[string]time.Time{"j-live|": base.Add(10 * time.Minute), "|revoked": base.Add(idle)}
	if len(got) != len(want) {
		t.Fatalf("ListRevocations = %v, want %v", got, want)
	}
	for k, exp := range want {
		if !got[k].Equal(exp) {
			t.Fatalf("ListRevocations[%s] = %v, want %v (all: %v)", k, got[k], exp, got)
		}
	}
}
