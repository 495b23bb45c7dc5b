package etcd

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/latchauth/latch/storage"
	"github.com/latchauth/latch/storage/etcd/etcdtest"
	"github.com/latchauth/latch/storage/storagetest"
)

// What RevokeUserSessions and DeleteUser guarantee when a user has more live
// sessions than one Txn holds, and that they use one Txn when they fit.

var fenceBase = time.Date(2023, 11, 14, 22, 13, 20, 0, time.UTC)

func openInternal(t *testing.T, srv *etcdtest.Server, prefix string, opts ...Option) *Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := Open(ctx, Config{Endpoints: []string{srv.Endpoint}, Prefix: prefix}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func createSessions(t *testing.T, s *Store, user string, n int, at time.Time) []storage.Session {
	t.Helper()
	storagetest.EnsureUser(t, s, user)
	var out []storage.Session
	for i := range n {
		sess := storage.Session{ID: fmt.Sprintf("%s-s%03d", user, i), UserID: user, Audience: "orders", CurrentHash: storagetest.Digest(t),
			CreatedAt: at, LastRotatedAt: at, IdleExpiresAt: at.Add(7 * 24 * time.Hour), AbsoluteExpiresAt: at.Add(30 * 24 * time.Hour)}
		if err := s.CreateSession(t.Context(), sess); err != nil {
			t.Fatal(err)
		}
		out = append(out, sess)
	}
	return out
}

func (s *Store) revision(t *testing.T) int64 {
	t.Helper()
	resp, err := s.cli.Get(t.Context(), s.p+"meta/schema")
	if err != nil {
		t.Fatal(err)
	}
	return resp.Header.Revision
}

// TestRevokeAllInOneTxnWhenItFits: with etcd's default --max-txn-ops (128),
// 32 sessions (128 operations) are revoked by RevokeUserSessions in one Txn,
// and 31 sessions plus the user's deletion by DeleteUser in one Txn: each
// call moves etcd's revision by exactly one.
func TestRevokeAllInOneTxnWhenItFits(t *testing.T) {
	srv := etcdtest.Start(t)
	s := openInternal(t, srv, "/onetxn/")
	now := fenceBase.Add(time.Hour)
	fit := DefaultMaxTxnOps / opsPerRevokedSession
	fitWithDelete := (DefaultMaxTxnOps - 2) / opsPerRevokedSession // the user and its email
	for user, n := range map[string]int{"u-revoke": fit, "u-delete": fitWithDelete} {
		if err := s.CreateUser(t.Context(), storage.User{ID: user, Email: user + "@example.com"}); err != nil {
			t.Fatal(err)
		}
		createSessions(t, s, user, n, fenceBase)
	}
	before := s.revision(t)
	revoked, err := s.RevokeUserSessions(t.Context(), "u-revoke", storage.ReasonAdmin, now)
	if err != nil || len(revoked) != fit {
		t.Fatalf("RevokeUserSessions = %d sessions, %v; want %d", len(revoked), err, fit)
	}
	if got := s.revision(t) - before; got != 1 {
		t.Fatalf("RevokeUserSessions of %d sessions took %d Txns, want 1", fit, got)
	}
	before = s.revision(t)
	gone, err := s.DeleteUser(t.Context(), "u-delete", now)
	if err != nil || len(gone) != fitWithDelete {
		t.Fatalf("DeleteUser = %d sessions, %v; want %d", len(gone), err, fitWithDelete)
	}
	if got := s.revision(t) - before; got != 1 {
		t.Fatalf("DeleteUser with %d sessions took %d Txns, want 1", fitWithDelete, got)
	}
}

// TestFencedSessionsCannotBeRefreshed: once the fence of a revocation too
// large for one Txn is committed, even if the call then stops (here it is
// never continued), no session the user had can be rotated: the rotation
// revokes it with the fence's reason and time instead, and its access
// tokens are then revoked too. A session created after the fence is not
// affected.
func TestFencedSessionsCannotBeRefreshed(t *testing.T) {
	srv := etcdtest.Start(t)
	s := openInternal(t, srv, "/fence/", WithMaxTxnOps(16))
	sessions := createSessions(t, s, "u1", 20, fenceBase)
	other := createSessions(t, s, "u2", 1, fenceBase)[0]
	now := fenceBase.Add(time.Hour)
	live, _, err := s.sessionsOf(t.Context(), "u1") // all live
	if err != nil || len(live) != 20 {
		t.Fatalf("live sessions = %d, %v", len(live), err)
	}
	if err := s.writeFence(t.Context(), "u1", storage.ReasonAdmin, now, live); err != nil {
		t.Fatal(err)
	}
	later := createSessions(t, s, "u1-later", 1, now)[0]
	later.UserID = "u1"

	rot := func(sess storage.Session) error {
		_, err := s.RotateRefreshToken(t.Context(), storage.Rotation{SessionID: sess.ID, Presented: sess.CurrentHash, Next: storagetest.Digest(t),
			Now: now.Add(time.Minute), IdleTTL: time.Hour})
		return err
	}
	for _, sess := range []storage.Session{sessions[0], sessions[19]} {
		if err := rot(sess); !errors.Is(err, storage.ErrSessionRevoked) {
			t.Fatalf("rotating fenced session %s = %v, want ErrSessionRevoked", sess.ID, err)
		}
		got, err := s.GetSession(t.Context(), sess.ID)
		if err != nil || !got.RevokedAt.Equal(now) || got.RevokeReason != storage.ReasonAdmin {
			t.Fatalf("fenced session after a refresh attempt = %+v, %v; want revoked at %v for %q", got, err, now, storage.ReasonAdmin)
		}
		if revoked, err := s.AccessTokenRevoked(t.Context(), "jti-"+sess.ID, sess.ID, now.Add(time.Minute)); err != nil || !revoked {
			t.Fatalf("access token of fenced session %s revoked = %v, %v", sess.ID, revoked, err)
		}
	}
	if err := rot(other); err != nil {
		t.Fatalf("another user's session: %v", err)
	}
	if err := rot(later); err != nil {
		t.Fatalf("session created after the fence: %v", err)
	}

	// Finishing the revocation returns the 18 sessions the rotations did
	// not already revoke; afterwards none of the 20 is live.
	revoked, err := s.RevokeUserSessions(t.Context(), "u1", storage.ReasonAdmin, now)
	if err != nil || len(revoked) != 18 {
		t.Fatalf("RevokeUserSessions = %d, %v; want 18", len(revoked), err)
	}
	for _, sess := range sessions {
		if err := rot(sess); !errors.Is(err, storage.ErrSessionRevoked) {
			t.Fatalf("rotating %s after RevokeUserSessions = %v", sess.ID, err)
		}
	}
}

// TestDeleteUserManySessionsUnderRefresh: DeleteUser of a user with more
// sessions than one Txn holds, while a refresh of one of them races a
// partial revocation Txn: the refresh fails (the user is fenced), the
// partial Txn's conflict is retried rather than reported, and when
// DeleteUser returns the user is gone and every session is revoked.
func TestDeleteUserManySessionsUnderRefresh(t *testing.T) {
	srv := etcdtest.Start(t)
	s := openInternal(t, srv, "/delete-many/", WithMaxTxnOps(16))
	if err := s.CreateUser(t.Context(), storage.User{ID: "u1", Email: "u1@example.com"}); err != nil {
		t.Fatal(err)
	}
	sessions := createSessions(t, s, "u1", 20, fenceBase)
	now := fenceBase.Add(time.Hour)
	var refreshErr error
	calls := 0
	s.testHookBeforeBatch = func() {
		calls++
		if calls == 1 { // rotate a session the first partial Txn is about to revoke
			_, refreshErr = s.RotateRefreshToken(context.Background(), storage.Rotation{SessionID: sessions[0].ID, Presented: sessions[0].CurrentHash,
				Next: storagetest.Digest(t), Now: now, IdleTTL: time.Hour})
		}
	}
	gone, err := s.DeleteUser(t.Context(), "u1", now)
	if err != nil {
		t.Fatalf("DeleteUser: %v", err)
	}
	if calls < 2 {
		t.Fatalf("%d partial Txns; the test needs the fenced path", calls)
	}
	if !errors.Is(refreshErr, storage.ErrSessionRevoked) {
		t.Fatalf("refresh during DeleteUser = %v, want ErrSessionRevoked", refreshErr)
	}
	if len(gone) != 19 {
		t.Fatalf("DeleteUser returned %d sessions, want the 19 the refresh did not revoke", len(gone))
	}
	if _, err := s.GetUser(t.Context(), "u1"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("user after DeleteUser: %v", err)
	}
	if resp, err := s.cli.Get(t.Context(), s.userFenceKey("u1")); err != nil || len(resp.Kvs) != 0 {
		t.Fatalf("fence left behind: %v, %v", resp, err)
	}
	for _, sess := range sessions {
		got, err := s.GetSession(t.Context(), sess.ID)
		if err != nil || !got.Revoked() || got.RevokeReason != storage.ReasonUserChanged {
			t.Fatalf("session %s after DeleteUser = %+v, %v", sess.ID, got, err)
		}
		if revoked, err := s.AccessTokenRevoked(t.Context(), "j", sess.ID, now); err != nil || !revoked {
			t.Fatalf("access token of %s revoked = %v, %v", sess.ID, revoked, err)
		}
	}
}

// TestAtTheClustersTxnLimit: on an etcd started with --max-txn-ops 16 (and
// the store told so), every operation whose Txn size grows with the data
// stays within the limit: listing, revoking and deleting a user with 40
// sessions (the fenced path, in Txns the cluster accepts), and deleting an
// expired session with 30 rotations' digests.
func TestAtTheClustersTxnLimit(t *testing.T) {
	srv := etcdtest.Start(t, etcdtest.WithMaxTxnOps(16))
	s := openInternal(t, srv, "/txn-limit/", WithMaxTxnOps(16))
	for _, u := range []string{"u1", "u2"} {
		if err := s.CreateUser(t.Context(), storage.User{ID: u, Email: u + "@example.com"}); err != nil {
			t.Fatal(err)
		}
	}
	createSessions(t, s, "u1", 40, fenceBase)
	createSessions(t, s, "u2", 40, fenceBase)
	now := fenceBase.Add(time.Hour)
	if all, err := s.ListUserSessions(t.Context(), "u1"); err != nil || len(all) != 40 {
		t.Fatalf("ListUserSessions = %d, %v; want 40", len(all), err)
	}
	if revoked, err := s.RevokeUserSessions(t.Context(), "u1", storage.ReasonAdmin, now); err != nil || len(revoked) != 40 {
		t.Fatalf("RevokeUserSessions = %d, %v; want 40", len(revoked), err)
	}
	if gone, err := s.DeleteUser(t.Context(), "u2", now); err != nil || len(gone) != 40 {
		t.Fatalf("DeleteUser = %d, %v; want 40", len(gone), err)
	}
	if n, err := s.CountLiveSessions(t.Context(), now); err != nil || n != 0 {
		t.Fatalf("CountLiveSessions = %d, %v; want 0", n, err)
	}

	long := createSessions(t, s, "u3", 1, fenceBase)[0]
	cur := long.CurrentHash
	for i := range 30 {
		next := storagetest.Digest(t)
		if _, err := s.RotateRefreshToken(t.Context(), storage.Rotation{SessionID: long.ID, Generation: uint64(i), Presented: cur, Next: next,
			Now: fenceBase.Add(time.Duration(i+1) * time.Minute), IdleTTL: time.Hour}); err != nil {
			t.Fatal(err)
		}
		cur = next
	}
	r, err := s.DeleteExpired(t.Context(), fenceBase.Add(365*24*time.Hour), 1000)
	if err != nil || r != (storage.SweepResult{Deleted: 81}) {
		t.Fatalf("DeleteExpired = %+v, %v; want 81 sessions deleted", r, err)
	}
	if _, err := s.RotateRefreshToken(t.Context(), storage.Rotation{SessionID: long.ID, Generation: 30, Presented: cur, Next: storagetest.Digest(t),
		Now: fenceBase.Add(time.Hour), IdleTTL: time.Hour}); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("token of a deleted session: %v", err)
	}

}
