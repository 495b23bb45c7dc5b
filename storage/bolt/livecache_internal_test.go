package bolt

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/latchauth/latch/storage"
	"github.com/latchauth/latch/storage/storagetest"
)

// readTxs counts the read transactions s has begun.
func readTxs(s *Store) int { return s.db.Stats().TxN }

// checkRevoked asks s about ref at now and reports the answer and whether
// it took a read transaction.
func checkRevoked(t *testing.T, s *Store, ref storage.AccessTokenRef, now time.Time) (revoked, read bool) {
	t.Helper()
	before := readTxs(s)
	got, err := s.AccessTokensRevoked(t.Context(), []storage.AccessTokenRef{ref}, now)
	if err != nil {
		t.Fatal(err)
	}
	return got[0], readTxs(s) != before
}

// TestLiveCacheAnswersRepeatChecks: a token found not revoked is answered
// again without a read transaction, up to its session's absolute expiry,
// after which the cache answers revoked as the summary would.
func TestLiveCacheAnswersRepeatChecks(t *testing.T) {
	s := openStore(t)
	now := time.Now()
	createSession(t, s, "s1", storagetest.Digest(t), now, time.Hour)
	ref := storage.AccessTokenRef{JTI: "j1", SessionID: "s1"}

	if revoked, read := checkRevoked(t, s, ref, now); revoked || !read {
		t.Fatalf("first check: revoked=%v read=%v, want false, true", revoked, read)
	}
	if revoked, read := checkRevoked(t, s, ref, now.Add(time.Minute)); revoked || read {
		t.Fatalf("second check: revoked=%v read=%v, want false from the cache", revoked, read)
	}
	if revoked, read := checkRevoked(t, s, ref, now.Add(time.Hour)); !revoked || read {
		t.Fatalf("check at the absolute expiry: revoked=%v read=%v, want true from the cache", revoked, read)
	}
	// The single-token form shares the cache.
	before := readTxs(s)
	if revoked, err := s.AccessTokenRevoked(t.Context(), "j1", "s1", now); err != nil || revoked {
		t.Fatalf("AccessTokenRevoked = %v, %v; want false", revoked, err)
	}
	if readTxs(s) != before {
		t.Error("AccessTokenRevoked read the file for a cached token")
	}
	// Revoked and unknown tokens are not cached: each check reads.
	for _, r := range []storage.AccessTokenRef{{JTI: "j2", SessionID: "nosuch"}, {JTI: "j3", SessionID: "nosuch"}} {
		for range 2 {
			if revoked, read := checkRevoked(t, s, r, now); !revoked || !read {
				t.Fatalf("unknown session: revoked=%v read=%v, want true, read every time", revoked, read)
			}
		}
	}
	// An empty jti or session id fails closed, cache or not.
	for _, r := range []storage.AccessTokenRef{{SessionID: "s1"}, {JTI: "j1"}} {
		if revoked, _ := checkRevoked(t, s, r, now); !revoked {
			t.Errorf("%+v: not revoked, want revoked (fail closed)", r)
		}
	}
}

// TestRevokingWritesInvalidateLiveCache: every write that can revoke a
// token whose "not revoked" answer is cached makes the next check read
// again and answer revoked. A path that forgot to invalidate would keep
// answering "not revoked" from the cache: this fails for each of them.
func TestRevokingWritesInvalidateLiveCache(t *testing.T) {
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
			if _, err := s.RevokeSession(t.Context(), "s1", storage.ReasonRevoked, now); err != nil {
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
			ref := storage.AccessTokenRef{JTI: "j1", SessionID: "s1"}
			at := now.Add(90 * time.Minute) // idle-expired, not absolutely
			checkRevoked(t, s, ref, at)
			if revoked, read := checkRevoked(t, s, ref, at); revoked || read {
				t.Fatalf("before: revoked=%v read=%v, want false from the cache", revoked, read)
			}
			tc.revoke(t, s, first)
			if revoked, read := checkRevoked(t, s, ref, at); !revoked || !read {
				t.Fatalf("after %s: revoked=%v read=%v, want true from a read", tc.name, revoked, read)
			}
		})
	}
}

// TestLiveCacheIgnoresAnswersOfOldGenerations: an answer read before a
// revoking commit, stored after it, is never served.
func TestLiveCacheIgnoresAnswersOfOldGenerations(t *testing.T) {
	var c liveCache
	ref := storage.AccessTokenRef{JTI: "j", SessionID: "s"}
	now := time.Now()
	gen := c.generation() // a read begins
	c.invalidate()        // a revoking commit lands meanwhile
	c.put(gen, ref, now.Add(time.Hour))
	if _, ok := c.revoked(ref, now); ok {
		t.Fatal("served an answer read before the last revoking commit")
	}
	c.put(c.generation(), ref, now.Add(time.Hour))
	if revoked, ok := c.revoked(ref, now); !ok || revoked {
		t.Fatalf("current answer: revoked=%v ok=%v, want false, true", revoked, ok)
	}
	c.put(gen, storage.AccessTokenRef{JTI: "old", SessionID: "s"}, now.Add(time.Hour)) // must not replace the newer set
	if _, ok := c.revoked(ref, now); !ok {
		t.Fatal("a late answer of an old generation dropped the current ones")
	}
	c.invalidate()
	if _, ok := c.revoked(ref, now); ok {
		t.Fatal("served an answer after invalidate")
	}
}

// TestLiveCacheIsBounded: a set never holds more than liveCacheMax answers;
// past the bound it starts over empty, so the tokens in use keep being
// cached.
func TestLiveCacheIsBounded(t *testing.T) {
	var c liveCache
	gen, exp, now := c.generation(), time.Now().Add(time.Hour), time.Now()
	ref := func(i int) storage.AccessTokenRef { return storage.AccessTokenRef{JTI: fmt.Sprint(i), SessionID: "s"} }
	for i := range liveCacheMax + 100 {
		c.put(gen, ref(i), exp)
		if n := c.cur.Load().n.Load(); n > liveCacheMax {
			t.Fatalf("%d answers cached after %d puts, bound %d", n, i+1, liveCacheMax)
		}
	}
	if n := c.cur.Load().n.Load(); n != 100 {
		t.Fatalf("%d answers after the set started over, want the 100 put since", n)
	}
	if _, ok := c.revoked(ref(liveCacheMax+99), now); !ok {
		t.Fatal("the newest answer was not cached")
	}
	if _, ok := c.revoked(ref(0), now); ok {
		t.Fatal("an answer from before the set started over is still served")
	}
}

// TestRevokeIsSeenByEveryLaterCheck races checks of many sessions' tokens
// against their revocation: once RevokeSession has returned, a check that
// starts then must answer revoked, whatever the concurrent checks cached.
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
				ref := storage.AccessTokenRef{JTI: "j", SessionID: fmt.Sprintf("s%d", i%n)}
				if _, err := s.AccessTokensRevoked(t.Context(), []storage.AccessTokenRef{ref}, now); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	for i := range n {
		id := fmt.Sprintf("s%d", i)
		if _, err := s.RevokeSession(t.Context(), id, storage.ReasonRevoked, now); err != nil {
			t.Fatal(err)
		}
		got, err := s.AccessTokensRevoked(t.Context(), []storage.AccessTokenRef{{JTI: "j", SessionID: id}}, now)
		if err != nil || !got[0] {
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
	got, err := s.AccessTokensRevoked(ctx, []storage.AccessTokenRef{{JTI: "j", SessionID: "s"}}, time.Now())
	if !got[0] || err == nil || err.Error() != "bolt: access tokens revoked: context canceled" {
		t.Fatalf("AccessTokensRevoked = %v, %v", got, err)
	}
}

// TestSweeperRefileKeepsLiveCache: re-filing a session (the sweeper's
// common case for live sessions that rotated) keeps the cached answers;
// only deleting a session drops them.
func TestSweeperRefileKeepsLiveCache(t *testing.T) {
	s := openStore(t)
	now := time.Now()
	first := storagetest.Digest(t)
	createSession(t, s, "rotated", first, now, 24*time.Hour) // filed at its idle expiry, now + 1 h
	if _, err := s.RotateRefreshToken(t.Context(), storage.Rotation{SessionID: "rotated", Presented: first, Next: storagetest.Digest(t),
		Now: now.Add(50 * time.Minute), IdleTTL: time.Hour}); err != nil {
		t.Fatal(err)
	}
	ref := storage.AccessTokenRef{JTI: "j", SessionID: "rotated"}
	at := now.Add(70 * time.Minute)
	checkRevoked(t, s, ref, at)
	res, err := s.DeleteExpired(t.Context(), at, 100)
	if err != nil || res.Refiled != 1 || res.Deleted != 0 {
		t.Fatalf("DeleteExpired = %+v, %v; want the rotated session re-filed", res, err)
	}
	if revoked, read := checkRevoked(t, s, ref, at); revoked || read {
		t.Fatalf("after a re-file: revoked=%v read=%v, want false from the cache", revoked, read)
	}
}

// TestRepeatedRevocationKeepsLiveCache: a revocation that finds its target
// already revoked changes nothing, so it writes nothing and keeps the
// cached answers of other tokens.
func TestRepeatedRevocationKeepsLiveCache(t *testing.T) {
	now := time.Now()
	s := openStore(t)
	createSession(t, s, "s1", storagetest.Digest(t), now, 24*time.Hour)
	createSession(t, s, "s2", storagetest.Digest(t), now, 24*time.Hour)
	if changed, err := s.RevokeSession(t.Context(), "s1", storage.ReasonRevoked, now); err != nil || !changed {
		t.Fatalf("RevokeSession = %v, %v", changed, err)
	}
	if changed, err := s.DenyAccessToken(t.Context(), "j1", now.Add(time.Hour)); err != nil || !changed {
		t.Fatalf("DenyAccessToken = %v, %v", changed, err)
	}
	other := storage.AccessTokenRef{JTI: "j2", SessionID: "s2"}
	checkRevoked(t, s, other, now)
	if revoked, read := checkRevoked(t, s, other, now); revoked || read {
		t.Fatalf("set-up: revoked=%v read=%v, want a cached live answer", revoked, read)
	}
	writes := s.WriteStats().Writes
	for range 3 {
		if changed, err := s.RevokeSession(t.Context(), "s1", storage.ReasonAdmin, now); err != nil || changed {
			t.Fatalf("repeated RevokeSession = %v, %v; want unchanged", changed, err)
		}
		if changed, err := s.DenyAccessToken(t.Context(), "j1", now.Add(time.Hour)); err != nil || changed {
			t.Fatalf("repeated DenyAccessToken = %v, %v; want unchanged", changed, err)
		}
	}
	if got := s.WriteStats().Writes; got != writes {
		t.Errorf("repeated revocations made %d writes, want 0", got-writes)
	}
	if revoked, read := checkRevoked(t, s, other, now); revoked || read {
		t.Fatalf("after repeats: revoked=%v read=%v, want the cached live answer", revoked, read)
	}
}

// TestFailedCommitDropsLiveCache: a write transaction that fails to commit
// may have made its pages visible without running its OnCommit handlers
// (a failed fsync), so it drops the cached answers, through the group
// committer and through Store.update alike. The commits here fail because
// the file is closed under them.
func TestFailedCommitDropsLiveCache(t *testing.T) {
	for name, write := range map[string]func(s *Store) error{
		"group commit": func(s *Store) error { return s.writes.Do(func(*bbolt.Tx) error { return nil }) },
		"update":       func(s *Store) error { return s.update(func(*bbolt.Tx) error { return nil }) },
	} {
		t.Run(name, func(t *testing.T) {
			s := openStore(t)
			gen := s.live.generation()
			if err := s.writes.Do(func(*bbolt.Tx) error { return errors.New("refused") }); err == nil {
				t.Fatal("a failing write function succeeded")
			}
			if got := s.live.generation(); got != gen {
				t.Fatalf("a write whose function failed (nothing committed) dropped the cache")
			}
			if err := s.db.Close(); err != nil {
				t.Fatal(err)
			}
			if err := write(s); err == nil {
				t.Fatal("a write on a closed file succeeded")
			}
			if got := s.live.generation(); got == gen {
				t.Fatal("a write that failed to commit kept the cache")
			}
		})
	}
}
