package server_test

import (
	"context"
	"strings"
	"testing"
	"time"

	latchv1 "github.com/latchauth/latch/gen/latch/v1"
	"github.com/latchauth/latch/server"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// recv reads one event or fails after a bound.
func recv(t *testing.T, st grpc.ServerStreamingClient[latchv1.RevocationEvent]) *latchv1.RevocationEvent {
	t.Helper()
	type res struct {
		ev  *latchv1.RevocationEvent
		err error
	}
	ch := make(chan res, 1)
	go func() {
		ev, err := st.Recv()
		ch <- res{ev, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("Recv: %v", r.err)
		}
		return r.ev
	case <-time.After(10 * time.Second):
		t.Fatal("no revocation event within 10 s")
		return nil
	}
}

// TestWatchRevocationsAuth: WatchRevocations refuses callers without a
// valid access token for Latch's own audience (UNAUTHENTICATED), including
// a token with the role minted for a relying party's audience, and callers
// lacking role introspect (PERMISSION_DENIED).
func TestWatchRevocationsAuth(t *testing.T) {
	e := newEnv(t, baseConfig())
	e.addUser("alice@example.com", "alice-password")
	alice := e.loginSelf("alice@example.com", "alice-password")
	e.addUser("svc@example.com", "svc-password", server.RoleIntrospect)
	relyingParty := e.login("svc@example.com", "svc-password")
	for name, tc := range map[string]struct {
		ctx  context.Context
		code codes.Code
	}{
		"no credential":   {ctxT(t), codes.Unauthenticated},
		"garbage":         {metadata.AppendToOutgoingContext(ctxT(t), "authorization", "Bearer nope"), codes.Unauthenticated},
		"wrong scheme":    {metadata.AppendToOutgoingContext(ctxT(t), "authorization", "Basic "+alice.GetAccessToken()), codes.Unauthenticated},
		"lacks the role":  {metadata.AppendToOutgoingContext(ctxT(t), "authorization", "Bearer "+alice.GetAccessToken()), codes.PermissionDenied},
		"refresh as cred": {metadata.AppendToOutgoingContext(ctxT(t), "authorization", "Bearer "+alice.GetRefreshToken()), codes.Unauthenticated},
		"relying party's audience": {metadata.AppendToOutgoingContext(ctxT(t), "authorization", "Bearer "+relyingParty.GetAccessToken()),
			codes.Unauthenticated},
	} {
		t.Run(name, func(t *testing.T) {
			st, err := e.client.WatchRevocations(tc.ctx, &latchv1.WatchRevocationsRequest{})
			if err == nil {
				_, err = st.Recv()
			}
			wantStatus(t, err, tc.code, "")
		})
	}
}

// TestWatchRevocationsSnapshotThenLive: a watcher first gets everything
// revoked before it subscribed, then each revocation as it happens — by
// Revoke of an access token (jti), of a refresh token (session) and by reuse
// detection (session).
func TestWatchRevocationsSnapshotThenLive(t *testing.T) {
	e := newEnv(t, baseConfig())
	e.addUser("alice@example.com", "alice-password")
	ctx := e.introspector()
	before := e.login("alice@example.com", "alice-password")
	if _, err := e.client.Revoke(ctxT(t), &latchv1.RevokeRequest{Token: before.GetRefreshToken()}); err != nil {
		t.Fatal(err)
	}

	st, err := e.client.WatchRevocations(ctx, &latchv1.WatchRevocationsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if ev := recv(t, st); ev.GetSessionId() != before.GetSessionId() || ev.GetJti() != "" || ev.GetExp() <= e.clock.Now().Unix() {
		t.Fatalf("snapshot event = %v, want session %s", ev, before.GetSessionId())
	}

	// Live: deny an access token's jti.
	live := e.login("alice@example.com", "alice-password")
	if _, err := e.client.Revoke(ctxT(t), &latchv1.RevokeRequest{Token: live.GetAccessToken()}); err != nil {
		t.Fatal(err)
	}
	c, err := e.srv.Verifier().Verify(ctxT(t), live.GetAccessToken())
	if err != nil {
		t.Fatal(err)
	}
	if ev := recv(t, st); ev.GetJti() != c.ID || ev.GetSessionId() != "" || ev.GetExp() != c.ExpiresAt.Unix() {
		t.Fatalf("live jti event = %v, want jti %s exp %d", ev, c.ID, c.ExpiresAt.Unix())
	}

	// Live: reuse detection (a replay past the retry window) revokes the
	// session.
	if _, err := e.client.Refresh(ctxT(t), &latchv1.RefreshRequest{RefreshToken: live.GetRefreshToken()}); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(server.DefaultRefreshReuseGrace + time.Second)
	if _, err := e.client.Refresh(ctxT(t), &latchv1.RefreshRequest{RefreshToken: live.GetRefreshToken()}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("reuse = %v", err)
	}
	if ev := recv(t, st); ev.GetSessionId() != live.GetSessionId() {
		t.Fatalf("reuse event = %v, want session %s", ev, live.GetSessionId())
	}
}

// TestDrainEndsWatchers: a graceful stop must not wait for watch streams;
// they end with UNAVAILABLE so that clients reconnect elsewhere.
func TestDrainEndsWatchers(t *testing.T) {
	e := newEnv(t, baseConfig())
	ctx := e.introspector()
	st, err := e.client.WatchRevocations(ctx, &latchv1.WatchRevocationsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	// Make sure the stream is established (the handler is running).
	waitForLog(t, e, "watch_started")
	drained := make(chan struct{})
	go func() {
		dctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		e.gs.Drain(dctx)
		close(drained)
	}()
	_, err = st.Recv()
	wantStatus(t, err, codes.Unavailable, "")
	select {
	case <-drained:
	case <-time.After(20 * time.Second):
		t.Fatal("Drain did not finish")
	}
}

func TestWatchRevocationsOpenMode(t *testing.T) {
	cfg := baseConfig()
	cfg.IntrospectOpen = true
	e := newEnv(t, cfg)
	st, err := e.client.WatchRevocations(ctxT(t), &latchv1.WatchRevocationsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	e.addUser("alice@example.com", "alice-password")
	waitForLog(t, e, "watch_started")
	a := e.login("alice@example.com", "alice-password")
	if _, err := e.client.Revoke(ctxT(t), &latchv1.RevokeRequest{Token: a.GetRefreshToken(),
		TokenTypeHint: latchv1.TokenTypeHint_TOKEN_TYPE_HINT_REFRESH_TOKEN}); err != nil {
		t.Fatal(err)
	}
	if ev := recv(t, st); ev.GetSessionId() != a.GetSessionId() {
		t.Fatalf("event = %v", ev)
	}
	_ = server.RoleIntrospect
}

func waitForLog(t *testing.T, e *env, event string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(e.logs.String(), `"event":"`+event+`"`) {
		if time.Now().After(deadline) {
			t.Fatalf("no %s log within 10 s", event)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
