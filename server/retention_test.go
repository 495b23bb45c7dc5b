package server_test

import (
	"testing"
	"time"

	latchv1 "github.com/latchauth/latch/gen/latch/v1"
	"github.com/latchauth/latch/server"
	"github.com/latchauth/latch/storage"
	"github.com/latchauth/latch/storage/bolt"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestSessionCapLeavesBoundedStorage: one account logging in again and
// again past its live-session cap revokes its oldest session at each
// login; with the store's retention set from the configuration
// (Config.RevokedSessionRetention), the sweep after that retention leaves
// the account no more stored sessions than the cap, all live, instead of
// every session it ever revoked until its idle expiry. Until then the
// revoked sessions stay, and refuse refresh as revoked sessions do; after,
// their refresh tokens are answered as any unknown token is.
func TestSessionCapLeavesBoundedStorage(t *testing.T) {
	const maxSessions, logins = 3, 12
	cfg := baseConfig()
	cfg.PersonLimits = server.AccountLimits{MaxSessions: maxSessions}
	retention := cfg.RevokedSessionRetention()
	if want := 15*time.Minute + 30*time.Second; retention != want {
		t.Fatalf("RevokedSessionRetention() = %v, want AccessTTL + Leeway = %v", retention, want)
	}
	e := startEnv(t, t.TempDir()+"/latch.db", opsConfig{cfg: cfg,
		boltOpts: []bolt.Option{bolt.WithRevokedSessionRetention(retention)}})
	u := e.addUser("busy@example.com", "busy-password")
	var pairs []*latchv1.TokenPair
	for range logins {
		pairs = append(pairs, e.login("busy@example.com", "busy-password"))
		e.clock.Advance(time.Minute) // within the account's login rate
	}
	lastRevocation := e.clock.Now().Add(-time.Minute)
	count := func() (stored, live int) {
		t.Helper()
		all, err := e.store.ListUserSessions(ctxT(t), u.ID)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range all {
			if s.Live(e.clock.Now()) {
				live++
			}
		}
		return len(all), live
	}
	sweep := func() {
		t.Helper()
		if _, err := storage.SweepOnce(ctxT(t), e.store, 1000, e.clock.Now()); err != nil {
			t.Fatalf("SweepOnce: %v", err)
		}
	}
	refresh := func(tp *latchv1.TokenPair) error {
		_, err := e.client.Refresh(ctxT(t), &latchv1.RefreshRequest{RefreshToken: tp.GetRefreshToken()})
		return err
	}

	// Just before the last revocation's retention ends, the session it
	// revoked is still stored (those revoked earlier are gone), and its
	// refresh token is refused.
	e.clock.Advance(lastRevocation.Add(retention - time.Second).Sub(e.clock.Now()))
	sweep()
	if stored, live := count(); stored != maxSessions+1 || live != maxSessions {
		t.Fatalf("just before the last retention ends: %d sessions stored, %d live; want %d, %d", stored, live, maxSessions+1, maxSessions)
	}
	if err := refresh(pairs[logins-maxSessions-1]); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("refresh of the last revoked session = %v; want UNAUTHENTICATED", err)
	}

	// After it, and a sweep, no more than the cap are stored.
	e.clock.Advance(2 * time.Second)
	sweep()
	if stored, live := count(); stored > maxSessions || live != maxSessions {
		t.Fatalf("after the retention and a sweep: %d sessions stored, %d live; want at most %d, all live", stored, live, maxSessions)
	}
	for i, tp := range pairs {
		err := refresh(tp)
		if i < logins-maxSessions {
			if status.Code(err) != codes.Unauthenticated {
				t.Errorf("refresh of swept session %d = %v; want UNAUTHENTICATED", i, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("refresh of live session %d: %v", i, err)
		}
	}
}
