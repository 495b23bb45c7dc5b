package storagetest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/latchauth/latch/storage"
)

// EnsureUser stores an enabled user with the id (and the email
// id@example.com), unless a user with the id exists: CreateSession needs
// its session's owner. Backends' own tests call it before storing sessions.
func EnsureUser(t testing.TB, s storage.UserStore, id string) {
	t.Helper()
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := s.CreateUser(c, storage.User{ID: id, Email: id + "@example.com", CreatedAt: base, UpdatedAt: base})
	if err != nil && !errors.Is(err, storage.ErrAlreadyExists) {
		t.Fatalf("CreateUser(%s): %v", id, err)
	}
}

// sessionOf returns a session of user, created at now, not yet stored.
func sessionOf(t testing.TB, user, id string, now time.Time) storage.Session {
	return storage.Session{
		ID: id, UserID: user, Audience: "orders", CurrentHash: Digest(t),
		CreatedAt: now, LastRotatedAt: now, IdleExpiresAt: now.Add(idle), AbsoluteExpiresAt: now.Add(maxAge),
	}
}

// wantNotStored checks that sess left no trace: neither its id nor its
// digest finds it, and its owner lists no session.
func wantNotStored(t *testing.T, s storage.Store, sess storage.Session) {
	t.Helper()
	c := ctx(t)
	if _, err := s.GetSession(c, sess.ID); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("GetSession(%s) after a refused create = %v; want ErrNotFound", sess.ID, err)
	}
	if got, err := s.ListUserSessions(c, sess.UserID); err != nil || len(got) != 0 {
		t.Fatalf("ListUserSessions(%s) after a refused create = %v, %v; want none", sess.UserID, sessionIDs(got), err)
	}
}

// testCreateSessionNeedsUser: a session is stored only for a user that
// exists and is enabled, checked in the transaction that stores it.
func testCreateSessionNeedsUser(t *testing.T, s storage.Store) {
	c := ctx(t)
	orphan := sessionOf(t, "nobody", "s1", base)
	wantErr(t, "CreateSession for an unknown user", s.CreateSession(c, orphan), storage.ErrNotFound)
	wantNotStored(t, s, orphan)

	EnsureUser(t, s, "off")
	if _, err := s.UpdateUser(c, "off", func(u *storage.User) error { u.Disabled = true; return nil }); err != nil {
		t.Fatal(err)
	}
	disabled := sessionOf(t, "off", "s2", base)
	wantErr(t, "CreateSession for a disabled user", s.CreateSession(c, disabled), storage.ErrUserDisabled)
	wantNotStored(t, s, disabled)

	EnsureUser(t, s, "on")
	if _, err := s.UpdateUser(c, "on", func(u *storage.User) error { u.Roles = []string{"reader"}; return nil }); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateSession(c, sessionOf(t, "on", "s3", base)); err != nil {
		t.Fatalf("CreateSession for an enabled, updated user: %v", err)
	}
	if _, err := s.DeleteUser(c, "on", base.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	gone := sessionOf(t, "on", "s4", base.Add(2*time.Minute))
	wantErr(t, "CreateSession for a deleted user", s.CreateSession(c, gone), storage.ErrNotFound)
	if _, err := s.GetSession(c, gone.ID); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("GetSession(%s) after a refused create = %v; want ErrNotFound", gone.ID, err)
	}
}

// raceTrials and raceCreators size the races below: each trial races
// raceCreators concurrent CreateSession calls against one removal of their
// owner.
const (
	raceTrials   = 40
	raceCreators = 8
)

// testDeleteUserRacesCreateSession: DeleteUser racing CreateSession (as
// an administrator deleting a user races that user's Login) never leaves
// the deleted user a live session. Each create either fails with
// ErrNotFound or stores a session that the deletion revoked.
func testDeleteUserRacesCreateSession(t *testing.T, s storage.Store) {
	raceUserRemoval(t, s, func(t *testing.T, user string, now time.Time) {
		if _, err := s.DeleteUser(ctx(t), user, now); err != nil {
			t.Errorf("DeleteUser(%s): %v", user, err)
		}
	})
}

// testDisableUserRacesCreateSession: disabling a user and then revoking its
// sessions (what AdminService.UpdateUser does) racing CreateSession never
// leaves the disabled user a live session.
func testDisableUserRacesCreateSession(t *testing.T, s storage.Store) {
	raceUserRemoval(t, s, func(t *testing.T, user string, now time.Time) {
		c := ctx(t)
		if _, err := s.UpdateUser(c, user, func(u *storage.User) error { u.Disabled = true; return nil }); err != nil {
			t.Errorf("UpdateUser(%s, disabled): %v", user, err)
			return
		}
		if _, err := s.RevokeUserSessions(c, user, storage.ReasonUserChanged, now); err != nil {
			t.Errorf("RevokeUserSessions(%s): %v", user, err)
		}
	})
}

// raceUserRemoval runs raceTrials races of raceCreators CreateSession calls
// for a fresh user against remove, and checks after each that the user has
// no live session and that every session a create reported stored is
// revoked.
func raceUserRemoval(t *testing.T, s storage.Store, remove func(t *testing.T, user string, now time.Time)) {
	now := base.Add(time.Minute)
	refusals := 0
	for trial := range raceTrials {
		user := fmt.Sprintf("racer-%d", trial)
		EnsureUser(t, s, user)
		sessions := make([]storage.Session, raceCreators)
		for i := range sessions {
			sessions[i] = sessionOf(t, user, fmt.Sprintf("%s-s%d", user, i), base)
		}
		errs := make([]error, raceCreators)
		race(raceCreators+1, func(i int) {
			if i == raceCreators {
				remove(t, user, now)
				return
			}
			errs[i] = s.CreateSession(ctx(t), sessions[i])
		})
		if t.Failed() {
			t.FailNow()
		}
		c := ctx(t)
		for i, err := range errs {
			switch {
			case err == nil:
				if revoked, err := s.AccessTokenRevoked(c, "jti", sessions[i].ID, now); err != nil || !revoked {
					t.Fatalf("trial %d: session %s, stored for a removed user, is live to AccessTokenRevoked (%v, %v)",
						trial, sessions[i].ID, revoked, err)
				}
			case errors.Is(err, storage.ErrNotFound), errors.Is(err, storage.ErrUserDisabled): // its owner was gone or disabled
				refusals++
			default:
				t.Fatalf("trial %d: CreateSession(%s): %v", trial, sessions[i].ID, err)
			}
		}
		all, err := s.ListUserSessions(c, user)
		if err != nil {
			t.Fatal(err)
		}
		for _, sess := range all {
			if sess.Live(now) {
				t.Fatalf("trial %d: removed user %s has live session %s", trial, user, sess.ID)
			}
		}
	}
	t.Logf("%d of %d creates refused for a removed user", refusals, raceTrials*raceCreators)
}
