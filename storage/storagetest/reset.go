package storagetest

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/latchauth/latch/storage"
)

// passwordUser stores user id with password hash h.
func passwordUser(t *testing.T, s storage.Store, id, h string) {
	t.Helper()
	if err := s.CreateUser(ctx(t), storage.User{ID: id, Email: id + "@example.com", PasswordHash: h, CreatedAt: base, UpdatedAt: base}); err != nil {
		t.Fatalf("CreateUser(%s): %v", id, err)
	}
}

func testSessionClientInfo(t *testing.T, s storage.Store) {
	c := ctx(t)
	sess := sessionOf(t, "u1", "s1", base)
	sess.UserAgent, sess.DeviceName, sess.LoginAddr, sess.LastAddr = "grpc-go/1.70", "Ana's phone", "192.0.2.1", "192.0.2.1"
	EnsureUser(t, s, "u1")
	if err := s.CreateSession(c, sess); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetSession(c, "s1")
	if err != nil || got.UserAgent != sess.UserAgent || got.DeviceName != sess.DeviceName || got.LoginAddr != sess.LoginAddr || got.LastAddr != sess.LastAddr {
		t.Fatalf("GetSession = %+v, %v; want the client description stored", got, err)
	}
	r := rotation(t, s, "s1", sess.CurrentHash, Digest(t), base.Add(time.Minute))
	r.Addr = "2001:db8::7"
	mustRotate(t, s, r)
	got, _ = s.GetSession(c, "s1")
	if got.LastAddr != "2001:db8::7" || got.LoginAddr != "192.0.2.1" || got.UserAgent != sess.UserAgent {
		t.Fatalf("after rotation from a new address: %+v; want LastAddr moved, the rest kept", got)
	}
	mustRotate(t, s, rotation(t, s, "s1", r.Next, Digest(t), base.Add(2*time.Minute)))
	if got, _ = s.GetSession(c, "s1"); got.LastAddr != "2001:db8::7" {
		t.Fatalf("rotation without an address changed LastAddr to %q", got.LastAddr)
	}
}

func testResetSessions(t *testing.T, s storage.Store) {
	c := ctx(t)
	now := base.Add(time.Hour)
	passwordUser(t, s, "u1", "old-hash")
	keep := userSession(t, s, "u1", "keep", base)
	userSession(t, s, "u1", "a", base.Add(time.Minute))
	userSession(t, s, "u1", "b", base.Add(2*time.Minute))
	userSession(t, s, "u1", "gone", base)
	mustRevoke(t, s, "gone", storage.ReasonReuse, base.Add(time.Second))
	userSession(t, s, "u2", "other", base)

	next := Digest(t)
	kept, revoked, err := s.ResetSessions(c, storage.SessionReset{UserID: "u1", Reason: storage.ReasonUserChanged, Now: now,
		Keep: "keep", KeepNext: next, IdleTTL: idle, KeepAddr: "192.0.2.9",
		NewPasswordHash: "new-hash", VerifiedPasswordHash: "old-hash"})
	if err != nil {
		t.Fatalf("ResetSessions: %v", err)
	}
	if ids := slices.Sorted(slices.Values(sessionIDs(revoked))); !slices.Equal(ids, []string{"a", "b"}) {
		t.Fatalf("revoked %v, want the other live sessions [a b]", ids)
	}
	if kept.ID != "keep" || kept.CurrentHash != next || kept.Generation != keep.Generation+1 || !kept.PreviousHash.IsZero() ||
		!kept.LastRotatedAt.Equal(now) || !kept.IdleExpiresAt.Equal(now.Add(idle)) || kept.LastAddr != "192.0.2.9" {
		t.Fatalf("kept = %+v; want rotated to the new digest at %v, no previous digest", kept, now)
	}
	if got, _ := s.GetSession(c, "keep"); got.CurrentHash != next || !got.Live(now) {
		t.Fatalf("stored kept session = %+v; want live with the new digest", got)
	}
	wantRevoked(t, s, "a", storage.ReasonUserChanged)
	wantRevoked(t, s, "b", storage.ReasonUserChanged)
	if got := wantRevoked(t, s, "gone", storage.ReasonReuse); !got.RevokedAt.Equal(base.Add(time.Second)) {
		t.Fatalf("earlier revocation overwritten: %+v", got)
	}
	if got, _ := s.GetSession(c, "other"); !got.Live(now) {
		t.Fatal("another user's session was revoked")
	}
	if u, err := s.GetUser(c, "u1"); err != nil || u.PasswordHash != "new-hash" || !u.UpdatedAt.Equal(now) {
		t.Fatalf("user after reset = %+v, %v; want the new hash, updated at %v", u, err, now)
	}
	if revoked, err := s.AccessTokenRevoked(c, "jti", "a", now); err != nil || !revoked {
		t.Fatalf("AccessTokenRevoked(a) = %v, %v; want revoked", revoked, err)
	}
	if revoked, err := s.AccessTokenRevoked(c, "jti", "keep", now); err != nil || revoked {
		t.Fatalf("AccessTokenRevoked(keep) = %v, %v; want live", revoked, err)
	}

	// The kept session's replaced token is reused: presenting it revokes
	// the session, even within what would be a grace period.
	if _, err := s.RotateRefreshToken(c, storage.Rotation{SessionID: "keep", Generation: keep.Generation, Presented: keep.CurrentHash,
		Next: Digest(t), Now: now.Add(time.Second), IdleTTL: idle, ReuseGrace: time.Minute}); !errors.Is(err, storage.ErrRefreshTokenReused) {
		t.Fatalf("rotating with the replaced generation: %v, want ErrRefreshTokenReused", err)
	}
	wantRevoked(t, s, "keep", storage.ReasonReuse)

	// Without a kept session everything ends.
	passwordUser(t, s, "u3", "h")
	userSession(t, s, "u3", "x", base)
	userSession(t, s, "u3", "y", base)
	kept, revoked, err = s.ResetSessions(c, storage.SessionReset{UserID: "u3", Reason: storage.ReasonSignedOut, Now: now})
	if err != nil || kept.ID != "" || len(revoked) != 2 {
		t.Fatalf("ResetSessions without keep = %+v, %v, %v; want no kept session and [x y] revoked", kept, sessionIDs(revoked), err)
	}
	wantRevoked(t, s, "x", storage.ReasonSignedOut)

	// Keeping without rotating leaves the kept session as it was.
	passwordUser(t, s, "u4", "h")
	k4 := userSession(t, s, "u4", "k4", base)
	userSession(t, s, "u4", "z", base)
	kept, revoked, err = s.ResetSessions(c, storage.SessionReset{UserID: "u4", Reason: storage.ReasonSignedOut, Now: now, Keep: "k4"})
	if err != nil || kept.CurrentHash != k4.CurrentHash || kept.Generation != k4.Generation || len(revoked) != 1 {
		t.Fatalf("ResetSessions keeping k4 = %+v, %v, %v; want k4 unchanged and [z] revoked", kept, sessionIDs(revoked), err)
	}
	if got, _ := s.GetSession(c, "k4"); got.CurrentHash != k4.CurrentHash || got.Revoked() {
		t.Fatalf("k4 = %+v; want unchanged", got)
	}
}

func testResetSessionsRefusals(t *testing.T, s storage.Store) {
	c := ctx(t)
	now := base.Add(time.Hour)
	passwordUser(t, s, "u1", "old-hash")
	userSession(t, s, "u1", "keep", base)
	userSession(t, s, "u1", "a", base)
	userSession(t, s, "u1", "dead", base)
	mustRevoke(t, s, "dead", storage.ReasonAdmin, base.Add(time.Second))
	userSession(t, s, "u2", "theirs", base)
	passwordUser(t, s, "off", "h")
	if _, err := s.UpdateUser(c, "off", func(u *storage.User) error { u.Disabled = true; return nil }); err != nil {
		t.Fatal(err)
	}
	full := func(mod func(*storage.SessionReset)) storage.SessionReset {
		r := storage.SessionReset{UserID: "u1", Reason: storage.ReasonUserChanged, Now: now, Keep: "keep",
			KeepNext: Digest(t), IdleTTL: idle, NewPasswordHash: "new-hash", VerifiedPasswordHash: "old-hash"}
		mod(&r)
		return r
	}
	for _, tc := range []struct {
		name string
		r    storage.SessionReset
		want error
	}{
		{"no user", full(func(r *storage.SessionReset) { r.UserID = "" }), storage.ErrInvalidArgument},
		{"no reason", full(func(r *storage.SessionReset) { r.Reason = "" }), storage.ErrInvalidArgument},
		{"no time", full(func(r *storage.SessionReset) { r.Now = time.Time{} }), storage.ErrInvalidArgument},
		{"rotation without keep", full(func(r *storage.SessionReset) { r.Keep = "" }), storage.ErrInvalidArgument},
		{"rotation without idle", full(func(r *storage.SessionReset) { r.IdleTTL = 0 }), storage.ErrInvalidArgument},
		{"hash without verified", full(func(r *storage.SessionReset) { r.VerifiedPasswordHash = "" }), storage.ErrInvalidArgument},
		{"unknown user", full(func(r *storage.SessionReset) { r.UserID = "nobody" }), storage.ErrNotFound},
		{"disabled user", full(func(r *storage.SessionReset) {
			r.UserID = "off"
			r.Keep = ""
			r.KeepNext = storage.TokenHash{}
			r.VerifiedPasswordHash = "h"
		}), storage.ErrUserDisabled},
		{"stale password", full(func(r *storage.SessionReset) { r.VerifiedPasswordHash = "older-hash" }), storage.ErrConflict},
		{"unknown keep", full(func(r *storage.SessionReset) { r.Keep = "nothing" }), storage.ErrNotFound},
		{"another user's keep", full(func(r *storage.SessionReset) { r.Keep = "theirs" }), storage.ErrNotFound},
		{"revoked keep", full(func(r *storage.SessionReset) { r.Keep = "dead" }), storage.ErrSessionRevoked},
		{"expired keep", full(func(r *storage.SessionReset) { r.Now = base.Add(maxAge) }), storage.ErrSessionExpired},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := s.ResetSessions(c, tc.r)
			wantErr(t, "ResetSessions", err, tc.want)
		})
	}
	// Nothing changed.
	if u, _ := s.GetUser(c, "u1"); u.PasswordHash != "old-hash" {
		t.Fatalf("password hash = %q after refused resets, want unchanged", u.PasswordHash)
	}
	for _, id := range []string{"keep", "a", "theirs"} {
		if got, _ := s.GetSession(c, id); !got.Live(now) || got.Generation != 0 {
			t.Fatalf("session %s = %+v after refused resets, want live and unrotated", id, got)
		}
	}
}

// testResetSessionsByAdmin: an administrator's reset replaces the password
// of a disabled user without knowing the stored hash, and revokes every
// live session of that user in the same step.
func testResetSessionsByAdmin(t *testing.T, s storage.Store) {
	c := ctx(t)
	now := base.Add(time.Hour)
	passwordUser(t, s, "off", "old-hash")
	userSession(t, s, "off", "a", base)
	userSession(t, s, "off", "b", base.Add(time.Minute))
	if _, err := s.UpdateUser(c, "off", func(u *storage.User) error { u.Disabled = true; return nil }); err != nil {
		t.Fatal(err)
	}
	_, revoked, err := s.ResetSessions(c, storage.SessionReset{UserID: "off", Reason: storage.ReasonUserChanged, Now: now,
		NewPasswordHash: "new-hash", ByAdmin: true})
	if err != nil {
		t.Fatalf("ResetSessions by an administrator: %v", err)
	}
	if ids := slices.Sorted(slices.Values(sessionIDs(revoked))); !slices.Equal(ids, []string{"a", "b"}) {
		t.Fatalf("revoked %v, want every live session [a b]", ids)
	}
	wantRevoked(t, s, "a", storage.ReasonUserChanged)
	wantRevoked(t, s, "b", storage.ReasonUserChanged)
	if u, err := s.GetUser(c, "off"); err != nil || u.PasswordHash != "new-hash" || !u.UpdatedAt.Equal(now) || !u.Disabled {
		t.Fatalf("user = %+v, %v; want the new hash at %v, still disabled", u, err, now)
	}
}

// testResetSessionsMany resets more sessions than one etcd Txn holds at
// the default --max-txn-ops (4 operations each): the kept session keeps
// working, every other one is revoked and cannot be rotated.
func testResetSessionsMany(t *testing.T, s storage.Store) {
	c := ctx(t)
	now := base.Add(time.Hour)
	passwordUser(t, s, "u1", "old-hash")
	keep := userSession(t, s, "u1", "keep", base)
	others := map[string]storage.Session{}
	for i := range 50 {
		id := fmt.Sprintf("s%02d", i)
		others[id] = userSession(t, s, "u1", id, base.Add(time.Duration(i)*time.Second))
	}
	next := Digest(t)
	kept, revoked, err := s.ResetSessions(c, storage.SessionReset{UserID: "u1", Reason: storage.ReasonUserChanged, Now: now,
		Keep: "keep", KeepNext: next, IdleTTL: idle, NewPasswordHash: "new-hash", VerifiedPasswordHash: "old-hash"})
	if err != nil {
		t.Fatalf("ResetSessions: %v", err)
	}
	if len(revoked) != len(others) || kept.CurrentHash != next {
		t.Fatalf("revoked %d of %d, kept %+v", len(revoked), len(others), kept)
	}
	for id, sess := range others {
		wantRevoked(t, s, id, storage.ReasonUserChanged)
		r := storage.Rotation{SessionID: id, Generation: sess.Generation, Presented: sess.CurrentHash, Next: Digest(t), Now: now.Add(time.Second), IdleTTL: idle}
		wantRotateErr(t, s, "rotating revoked "+id, r, storage.ErrSessionRevoked)
	}
	mustRotate(t, s, storage.Rotation{SessionID: "keep", Generation: keep.Generation + 1, Presented: next, Next: Digest(t), Now: now.Add(time.Second), IdleTTL: idle})
	// A later login is not touched by the finished reset.
	fresh := userSession(t, s, "u1", "fresh", now.Add(time.Minute))
	mustRotate(t, s, storage.Rotation{SessionID: "fresh", Presented: fresh.CurrentHash, Next: Digest(t), Now: now.Add(2 * time.Minute), IdleTTL: idle})
	// A second reset that keeps the same session, while the first one's
	// record of it may still stand, works like the first: the later login
	// is revoked, the kept session rotates.
	next2 := Digest(t)
	kept, revoked, err = s.ResetSessions(c, storage.SessionReset{UserID: "u1", Reason: storage.ReasonSignedOut, Now: now.Add(3 * time.Minute),
		Keep: "keep", KeepNext: next2, IdleTTL: idle})
	if err != nil {
		t.Fatalf("second ResetSessions keeping the same session: %v", err)
	}
	if len(revoked) != 1 || revoked[0].ID != "fresh" || kept.CurrentHash != next2 {
		t.Fatalf("second reset revoked %+v, kept %+v; want fresh revoked and keep rotated", revoked, kept)
	}
	wantRevoked(t, s, "fresh", storage.ReasonSignedOut)
}

// testResetSessionsRacesRotation rotates the user's other sessions from
// many goroutines while a reset runs: once the reset has returned, none of
// them is live, whatever won the races, and the kept session is.
func testResetSessionsRacesRotation(t *testing.T, s storage.Store) {
	c := ctx(t)
	now := base.Add(time.Hour)
	passwordUser(t, s, "u1", "old-hash")
	userSession(t, s, "u1", "keep", base)
	const n = 40
	var ids []string
	for i := range n {
		id := fmt.Sprintf("r%02d", i)
		userSession(t, s, "u1", id, base)
		ids = append(ids, id)
	}
	start := make(chan struct{})
	var wg sync.WaitGroup
	for _, id := range ids {
		wg.Go(func() {
			<-start
			for step := range 5 {
				sess, err := s.GetSession(c, id)
				if err != nil || sess.Revoked() {
					return
				}
				r := storage.Rotation{SessionID: id, Generation: sess.Generation, Presented: sess.CurrentHash, Next: Digest(t),
					Now: now.Add(time.Duration(step) * time.Millisecond), IdleTTL: idle}
				if _, err := s.RotateRefreshToken(c, r); err != nil {
					return
				}
			}
		})
	}
	close(start)
	_, _, err := s.ResetSessions(c, storage.SessionReset{UserID: "u1", Reason: storage.ReasonUserChanged, Now: now,
		Keep: "keep", KeepNext: Digest(t), IdleTTL: idle, NewPasswordHash: "new-hash", VerifiedPasswordHash: "old-hash"})
	if err != nil {
		t.Fatalf("ResetSessions: %v", err)
	}
	later := now.Add(time.Second)
	for _, id := range ids {
		sess, err := s.GetSession(c, id)
		if err != nil {
			t.Fatal(err)
		}
		if sess.Live(later) {
			t.Fatalf("session %s is live after the reset returned (generation %d)", id, sess.Generation)
		}
		r := storage.Rotation{SessionID: id, Generation: sess.Generation, Presented: sess.CurrentHash, Next: Digest(t), Now: later, IdleTTL: idle}
		if _, err := s.RotateRefreshToken(c, r); err == nil {
			t.Fatalf("session %s rotated after the reset returned", id)
		}
	}
	wg.Wait()
	for _, id := range ids {
		if sess, _ := s.GetSession(c, id); !sess.Revoked() {
			t.Fatalf("session %s not revoked once the rotations settled", id)
		}
	}
	if sess, _ := s.GetSession(c, "keep"); !sess.Live(later) {
		t.Fatal("kept session not live")
	}
}
