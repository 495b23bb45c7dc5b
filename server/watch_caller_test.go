package server_test

import (
	"context"
	"sync"
	"testing"
	"time"

	latchv1 "github.com/latchauth/latch/gen/latch/v1"
	"github.com/latchauth/latch/server"
	"github.com/latchauth/latch/storage"
	"google.golang.org/grpc/codes"
)

// revokedCheckHook runs hook (once, when armed) after the store has
// answered an AccessTokenRevoked check and before the answer is returned:
// a real interleaving of a caller check with a concurrent revocation.
type revokedCheckHook struct {
	storage.Store
	mu   sync.Mutex
	hook func()
}

func (h *revokedCheckHook) AccessTokenRevoked(ctx context.Context, jti, sid string, now time.Time) (bool, error) {
	revoked, err := h.Store.AccessTokenRevoked(ctx, jti, sid, now)
	h.mu.Lock()
	f := h.hook
	h.hook = nil
	h.mu.Unlock()
	if f != nil {
		f()
	}
	return revoked, err
}

// A watcher whose session is revoked while its stream is being set up
// (after its credential was checked, before it subscribed) must still have
// its stream ended: its own revocation is in the snapshot it is sent.
func TestWatchEndsWhenCallerRevokedDuringSetup(t *testing.T) {
	hooked := &revokedCheckHook{}
	e := newEnv(t, baseConfig(), func(s storage.Store) storage.Store { hooked.Store = s; return hooked })
	e.addUser("svc@example.com", "svc-password", server.RoleIntrospect)
	tp := e.loginFor("svc@example.com", "svc-password", e.srv.Config().Issuer)
	hooked.mu.Lock()
	hooked.hook = func() {
		if _, err := e.client.Revoke(ctxT(t), &latchv1.RevokeRequest{Token: tp.GetRefreshToken()}); err != nil {
			t.Error(err)
		}
	}
	hooked.mu.Unlock()
	ctx, cancel := context.WithTimeout(bearer(ctxT(t), tp.GetAccessToken()), 3*time.Second)
	defer cancel()
	w, err := e.client.WatchRevocations(ctx, &latchv1.WatchRevocationsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	sawOwn := false
	for {
		ev, err := w.Recv()
		if err == nil {
			sawOwn = sawOwn || ev.GetSessionId() == tp.GetSessionId()
			continue // snapshot events
		}
		if !sawOwn {
			t.Errorf("the stream never carried the caller's own revocation")
		}
		wantStatus(t, err, codes.Unauthenticated, "caller credential revoked; reconnect with a valid access token")
		return
	}
}

// A watcher's stream must not outlive its credential's expiry: a caller
// whose 15-minute access token has expired keeps receiving every
// revocation for as long as the connection lasts.
func TestWatchEndsWhenCallerTokenExpires(t *testing.T) {
	e := newEnv(t, baseConfig())
	e.addUser("svc@example.com", "svc-password", server.RoleIntrospect)
	e.addUser("bob@example.com", "bob-password")
	tp := e.loginFor("svc@example.com", "svc-password", e.srv.Config().Issuer)
	ctx, cancel := context.WithTimeout(bearer(ctxT(t), tp.GetAccessToken()), 5*time.Second)
	defer cancel()
	w, err := e.client.WatchRevocations(ctx, &latchv1.WatchRevocationsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Header(); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(24 * time.Hour) // the caller's token expired long ago
	bob := e.login("bob@example.com", "bob-password")
	if _, err := e.client.Revoke(ctxT(t), &latchv1.RevokeRequest{Token: bob.GetRefreshToken()}); err != nil {
		t.Fatal(err)
	}
	ev, err := w.Recv()
	if err == nil {
		t.Fatalf("a watcher whose access token expired 24h ago received revocation %v; want its stream ended", ev)
	}
}
