package bolt

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/latchauth/latch/storage"
	"github.com/latchauth/latch/storage/storagetest"
)

// TestRevokingWritesRevokeAccessTokens: every write that revokes (a denial,
// a session or user revocation, a user's deletion, refresh-token reuse, the
// sweeper's deletion of a session) makes the next check of the session's
// access token answer revoked.
func TestRevokingWritesRevokeAccessTokens(t *testing.T) {
	now := time.Now()
	for _, tc := range []struct {
		name   string
		revoke func(t *testing.T, s *Store, first storage.TokenHash)
	}{
		{"DenyAccessToken", func(t *testing.T, s *Store, _ storage.TokenHash) {
			if _, err := s.DenyAccessToken(t.Context(), "j1", now.Add(time.Hour)); err != nil {
				t.Fatal(err)
			}
		}},
		{"RevokeSession", func(t *testing.T, s *Store, _ storage.TokenHash) {
			if _, _, err := s.RevokeSession(t.Context(), "s1", storage.ReasonRevoked, now); err != nil {
				t.Fatal(err)
			}
		}},
		{"RevokeUserSessions", func(t *testing.T, s *Store, _ storage.TokenHash) {
			if _, err := s.RevokeUserSessions(t.Context(), "u", storage.ReasonUserChanged, now); err != nil {
				t.Fatal(err)
			}
		}},
		{"DeleteUser", func(t *testing.T, s *Store, _ storage.TokenHash) {
			if _, err := s.DeleteUser(t.Context(), "u", now); err != nil {
				t.Fatal(err)
			}
		}},
		{"refresh token reuse", func(t *testing.T, s *Store, first storage.TokenHash) {
			next := storagetest.Digest(t)
			r := storage.Rotation{SessionID: "s1", Presented: first, Next: next, Now: now, IdleTTL: time.Hour}
			if _, err := s.RotateRefreshToken(t.Context(), r); err != nil {
				t.Fatal(err)
			}
			r.Next = storagetest.Digest(t)
			if _, err := s.RotateRefreshToken(t.Context(), r); err == nil {
				t.Fatal("a reused refresh token rotated")
			}
		}},
		{"sweeper deletes the idle-expired session", func(t *testing.T, s *Store, _ storage.TokenHash) {
			// Idle expiry does not end the session's access tokens
			// (TokenLive reads only revocation and absolute expiry);
			// deleting the session does.
			res, err := s.DeleteExpired(t.Context(), now.Add(2*time.Hour), 100)
			if err != nil || res.Deleted != 1 {
				t.Fatalf("DeleteExpired = %+v, %v; want one session deleted", res, err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openStore(t)
			if err := s.CreateUser(t.Context(), storage.User{ID: "u", Email: "u@example.com", PasswordHash: "x", CreatedAt: now, UpdatedAt: now}); err != nil {
				t.Fatal(err)
			}
			first := storagetest.Digest(t)
			createSession(t, s, "s1", first, now, 24*time.Hour) // idle lifetime 1 h
			at := now.Add(90 * time.Minute)                     // idle-expired, not absolutely
			if revoked, err := s.AccessTokenRevoked(t.Context(), "j1", "s1", at); err != nil || revoked {
				t.Fatalf("before: AccessTokenRevoked = %v, %v; want false", revoked, err)
			}
			tc.revoke(t, s, first)
			if revoked, err := s.AccessTokenRevoked(t.Context(), "j1", "s1", at); err != nil || !revoked {
				t.Fatalf("after %s: AccessTokenRevoked = %v, %v; want true", tc.name, revoked, err)
			}
		})
	}
}

// TestRevokeIsSeenByEveryLaterCheck races checks of many sessions' tokens
// against their revocation: once RevokeSession has returned, a check that
// starts then must answer revoked, whatever checks run concurrently.
func TestRevokeIsSeenByEveryLaterCheck(t *testing.T) {
	s := openStore(t)
	now := time.Now()
	const n = 40
	for i := range n {
		createSession(t, s, fmt.Sprintf("s%d", i), storagetest.Digest(t), now, time.Hour)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := s.AccessTokenRevoked(t.Context(), "j", fmt.Sprintf("s%d", i%n), now); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	for i := range n {
		id := fmt.Sprintf("s%d", i)
		if _, _, err := s.RevokeSession(t.Context(), id, storage.ReasonRevoked, now); err != nil {
			t.Fatal(err)
		}
		got, err := s.AccessTokenRevoked(t.Context(), "j", id, now)
		if err != nil || !got {
			t.Errorf("session %s: revoked=%v (%v) right after RevokeSession returned", id, got, err)
		}
	}
	close(stop)
	wg.Wait()
}

// TestAccessTokenRevokedContextError: a cancelled context fails closed with
// one "bolt: <check>:" prefix, not two.
func TestAccessTokenRevokedContextError(t *testing.T) {
	s := openStore(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	revoked, err := s.AccessTokenRevoked(ctx, "j", "s", time.Now())
	if !revoked || !errors.Is(err, context.Canceled) || err.Error() != "bolt: access token revoked: context canceled" {
		t.Fatalf("AccessTokenRevoked = %v, %q; want true and %q", revoked, err, "bolt: access token revoked: context canceled")
	}
}
