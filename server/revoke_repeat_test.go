package server_test

import (
	"strings"
	"sync"
	"testing"

	latchv1 "github.com/latchauth/latch/gen/latch/v1"
	"github.com/latchauth/latch/server"
	"github.com/latchauth/latch/storage/bolt"
)

// TestRepeatedRevokeIsNoOp: revoking a token that is already revoked
// answers OK (RFC 7009) and changes nothing: no storage write, no event at
// a WatchRevocations watcher, no metric. The same refresh token and the same
// access token are each revoked many times, one after another and
// concurrently, over gRPC; exactly one write, one event and one count
// follow from each.
func TestRepeatedRevokeIsNoOp(t *testing.T) {
	m := server.NewMetrics()
	e := newOpsEnv(t, opsConfig{srvOpts: []server.Option{server.WithMetrics(m)}})
	bs, ok := e.store.(*bolt.Store)
	if !ok {
		t.Fatalf("store is %T, want *bolt.Store", e.store)
	}
	e.addUser("alice@example.com", "alice-password")
	watcher := e.introspector()
	st, err := e.client.WatchRevocations(watcher, &latchv1.WatchRevocationsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	waitForLog(t, e.env, "watch_started")
	tp := e.login("alice@example.com", "alice-password")
	sentinel := e.login("alice@example.com", "alice-password")
	claims, err := e.srv.Verifier().Verify(ctxT(t), tp.GetAccessToken())
	if err != nil {
		t.Fatal(err)
	}
	counts := func() (session, access float64) {
		fams := scrape(t, e)
		session, _ = sample(fams, "latch_revocations_total", map[string]string{"kind": server.RevokedSession})
		access, _ = sample(fams, "latch_revocations_total", map[string]string{"kind": server.RevokedAccess})
		return session, access
	}
	sessionBefore, accessBefore := counts()
	writesBefore := bs.WriteStats().Writes

	const sequential, concurrent = 40, 40
	revoke := func(tok string, hint latchv1.TokenTypeHint) {
		if _, err := e.client.Revoke(ctxT(t), &latchv1.RevokeRequest{Token: tok, TokenTypeHint: hint}); err != nil {
			t.Errorf("Revoke: %v", err)
		}
	}
	for _, tok := range []string{tp.GetRefreshToken(), tp.GetAccessToken()} {
		for i := range sequential {
			revoke(tok, latchv1.TokenTypeHint(i%3))
		}
		var wg sync.WaitGroup
		for i := range concurrent {
			wg.Go(func() { revoke(tok, latchv1.TokenTypeHint(i%3)) })
		}
		wg.Wait()
	}
	if t.Failed() {
		t.FailNow()
	}

	if got := bs.WriteStats().Writes - writesBefore; got != 2 {
		t.Errorf("storage writes for %d revocations of one session and one access token = %d, want 2",
			2*(sequential+concurrent), got)
	}
	sessionAfter, accessAfter := counts()
	if d := sessionAfter - sessionBefore; d != 1 {
		t.Errorf("latch_revocations_total{kind=session} moved by %v, want 1", d)
	}
	if d := accessAfter - accessBefore; d != 1 {
		t.Errorf("latch_revocations_total{kind=access} moved by %v, want 1", d)
	}

	// A last, different revocation marks the end of the stream: events are
	// published before each Revoke returns, in order, so everything the
	// repeats published arrives before it.
	revoke(sentinel.GetRefreshToken(), latchv1.TokenTypeHint_TOKEN_TYPE_HINT_REFRESH_TOKEN)
	var sessionEvents, jtiEvents int
	for {
		ev := recv(t, st)
		if ev.GetSessionId() == sentinel.GetSessionId() {
			break
		}
		switch {
		case ev.GetSessionId() == tp.GetSessionId():
			sessionEvents++
		case ev.GetJti() == claims.ID:
			jtiEvents++
		default:
			t.Fatalf("unexpected event %v", ev)
		}
	}
	if sessionEvents != 1 || jtiEvents != 1 {
		t.Fatalf("watcher got %d session events and %d jti events, want 1 and 1", sessionEvents, jtiEvents)
	}
	if n := strings.Count(e.logs.String(), `"event":"session_revoked","session_id":"`+tp.GetSessionId()+`"`); n != 1 {
		t.Errorf("%d session_revoked log records, want 1", n)
	}
	if n := strings.Count(e.logs.String(), `"event":"access_token_revoked","jti":"`+claims.ID+`"`); n != 1 {
		t.Errorf("%d access_token_revoked log records, want 1", n)
	}
}

// TestAdminRepeatedRevokeSessionIsNoOp: AdminService.RevokeSession of a
// session that is already revoked answers with the session as it is and
// announces nothing: one event reaches a watcher however often, and however
// concurrently, an administrator repeats it (with RevokeUserSessions
// repeats among them).
func TestAdminRepeatedRevokeSessionIsNoOp(t *testing.T) {
	a := newAdminEnv(t)
	a.addUser("bob@example.com", "bob-password-1")
	st, err := a.client.WatchRevocations(a.introspector(), &latchv1.WatchRevocationsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	waitForLog(t, a.env, "watch_started")
	tp := a.login("bob@example.com", "bob-password-1")
	c, err := a.srv.Verifier().Verify(ctxT(t), tp.GetAccessToken())
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 24 {
		wg.Go(func() {
			if i%4 == 3 {
				if _, err := a.admin.RevokeUserSessions(a.adminCtx, &latchv1.RevokeUserSessionsRequest{UserId: c.Subject}); err != nil {
					t.Errorf("RevokeUserSessions: %v", err)
				}
				return
			}
			resp, err := a.admin.RevokeSession(a.adminCtx, &latchv1.RevokeSessionRequest{SessionId: tp.GetSessionId()})
			if err != nil || resp.GetSession().GetState() != latchv1.SessionState_SESSION_STATE_REVOKED {
				t.Errorf("RevokeSession = %v, %v; want the revoked session", resp, err)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	sentinel := a.login("bob@example.com", "bob-password-1")
	if _, err := a.client.Revoke(ctxT(t), &latchv1.RevokeRequest{Token: sentinel.GetRefreshToken()}); err != nil {
		t.Fatal(err)
	}
	events := 0
	for {
		ev := recv(t, st)
		if ev.GetSessionId() == sentinel.GetSessionId() {
			break
		}
		if ev.GetSessionId() != tp.GetSessionId() {
			t.Fatalf("unexpected event %v", ev)
		}
		events++
	}
	if events != 1 {
		t.Fatalf("watcher got %d events for one session revoked 24 times, want 1", events)
	}
}
