package server_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"syscall"
	"testing"

	latchv1 "github.com/latchauth/latch/gen/latch/v1"
	"github.com/latchauth/latch/storage"
)

// unreadableRevoked is the real store whose revoked sessions cannot be
// read while fail is set, as when the disk fails just after a revocation
// was committed: the revocation is durable, the session no longer readable.
type unreadableRevoked struct {
	storage.Store
	fail atomic.Bool
}

func (u *unreadableRevoked) GetSession(ctx context.Context, id string) (storage.Session, error) {
	sess, err := u.Store.GetSession(ctx, id)
	if err == nil && sess.Revoked() && u.fail.Load() {
		return storage.Session{}, fmt.Errorf("bolt: get session %s: read latch.db: %w", id, syscall.EIO)
	}
	return sess, err
}

// TestRevokeSessionByIDAnnouncesWhatItCommitted: revoking one session by
// id (AdminService.RevokeSession, AccountService.RevokeMySession) answers
// with the session as the revocation stored it and announces it on
// WatchRevocations, even when the store cannot read the session back once
// the revocation is committed: a durable revocation is never reported as
// failed, nor kept from the verifiers that follow the stream.
func TestRevokeSessionByIDAnnouncesWhatItCommitted(t *testing.T) {
	u := &unreadableRevoked{}
	a := newAdminEnv(t, func(s storage.Store) storage.Store { u.Store = s; return u })
	a.addUser("alice@example.com", "alice-password")
	st, err := a.client.WatchRevocations(a.introspector(), &latchv1.WatchRevocationsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	waitForLog(t, a.env, "watch_started")
	account := latchv1.NewAccountServiceClient(a.conn)
	u.fail.Store(true)

	for _, tc := range []struct {
		name, reason string
		revoke       func(id string) (*latchv1.Session, error)
	}{
		{"AdminService.RevokeSession", storage.ReasonAdmin, func(id string) (*latchv1.Session, error) {
			resp, err := a.admin.RevokeSession(a.adminCtx, &latchv1.RevokeSessionRequest{SessionId: id})
			return resp.GetSession(), err
		}},
		{"AccountService.RevokeMySession", storage.ReasonSignedOut, func(id string) (*latchv1.Session, error) {
			own := a.loginSelf("alice@example.com", "alice-password")
			resp, err := account.RevokeMySession(bearerCtx(t, own.GetAccessToken()), &latchv1.RevokeMySessionRequest{SessionId: id})
			return resp.GetSession(), err
		}},
	} {
		victim := a.login("alice@example.com", "alice-password")
		sess, err := tc.revoke(victim.GetSessionId())
		if err != nil {
			t.Fatalf("%s with the session unreadable after its revocation: %v, want OK (the revocation is committed)", tc.name, err)
		}
		if sess.GetId() != victim.GetSessionId() || sess.GetState() != latchv1.SessionState_SESSION_STATE_REVOKED ||
			sess.GetRevokeReason() != tc.reason || sess.GetRevokeTime() == nil {
			t.Errorf("%s answered session %v, want %s revoked with reason %q", tc.name, sess, victim.GetSessionId(), tc.reason)
		}
		if ev := recv(t, st); ev.GetSessionId() != victim.GetSessionId() || ev.GetExp() != sess.GetExpireTime().GetSeconds() {
			t.Errorf("%s: event %v, want session %s expiring at %d", tc.name, ev, victim.GetSessionId(), sess.GetExpireTime().GetSeconds())
		}
	}
}

// unreadableAfterReset is the real store whose users cannot be read once a
// session reset has committed, as when the disk fails just after it.
type unreadableAfterReset struct {
	storage.Store
	reset atomic.Bool
}

func (u *unreadableAfterReset) ResetSessions(ctx context.Context, r storage.SessionReset) (storage.Session, []storage.Session, error) {
	kept, revoked, err := u.Store.ResetSessions(ctx, r)
	u.reset.Store(err == nil)
	return kept, revoked, err
}

func (u *unreadableAfterReset) GetUser(ctx context.Context, id string) (storage.User, error) {
	if u.reset.Load() {
		return storage.User{}, fmt.Errorf("bolt: get user %s: read latch.db: %w", id, syscall.EIO)
	}
	return u.Store.GetUser(ctx, id)
}

// TestAdminSetPasswordReportsWhatItCommitted: an administrator's password
// reset that revoked the user's sessions is answered as done, with the
// revoked sessions counted, even when the user cannot be read after the
// commit: a durable change is never reported as failed.
func TestAdminSetPasswordReportsWhatItCommitted(t *testing.T) {
	u := &unreadableAfterReset{}
	a := newAdminEnv(t, func(s storage.Store) storage.Store { u.Store = s; return u })
	id := a.addUser("alice@example.com", "alice-password").ID
	a.login("alice@example.com", "alice-password")
	resp, err := a.admin.SetPassword(a.adminCtx, &latchv1.SetPasswordRequest{UserId: id, Password: "a-new-password-1"})
	if err != nil {
		t.Fatalf("SetPassword with the user unreadable after the reset: %v, want OK (the reset is committed)", err)
	}
	if resp.GetUser().GetId() != id || resp.GetRevokedSessions() != 1 {
		t.Errorf("SetPassword answered user %q with %d sessions revoked, want %q with 1", resp.GetUser().GetId(), resp.GetRevokedSessions(), id)
	}
}
