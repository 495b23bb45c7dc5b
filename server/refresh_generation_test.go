package server_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	latchv1 "github.com/latchauth/latch/gen/latch/v1"
	"github.com/latchauth/latch/server"
	"github.com/latchauth/latch/storage"
	"github.com/latchauth/latch/tokens"
	"google.golang.org/grpc/codes"
)

// refresh exchanges tok and returns the new pair, failing the test on error.
func (e *env) refresh(tok string) *latchv1.TokenPair {
	e.t.Helper()
	resp, err := e.client.Refresh(ctxT(e.t), &latchv1.RefreshRequest{RefreshToken: tok})
	if err != nil {
		e.t.Fatalf("Refresh: %v", err)
	}
	return resp.GetTokens()
}

// activeRefreshKey returns the stored refresh-token key that mints.
func activeRefreshKey(t testing.TB, st storage.Store) storage.RefreshKey {
	t.Helper()
	keys, err := st.ListRefreshKeys(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if k.State == storage.KeyActive {
			return k
		}
	}
	t.Fatal("no active refresh-token key")
	return storage.RefreshKey{}
}

// TestRefreshOldGenerationRevokes is invariant 1 without per-rotation
// rows: a token several rotations old, of which nothing is stored any
// more, still revokes its session, and the session's access tokens turn
// inactive.
func TestRefreshOldGenerationRevokes(t *testing.T) {
	e := newEnv(t, baseConfig())
	e.addUser("alice@example.com", "alice-password")
	ictx := e.introspector()
	first := e.login("alice@example.com", "alice-password")
	cur := first
	for range 5 {
		cur = e.refresh(cur.GetRefreshToken())
	}
	_, err := e.client.Refresh(ctxT(t), &latchv1.RefreshRequest{RefreshToken: first.GetRefreshToken()})
	wantStatus(t, err, codes.Unauthenticated, "invalid refresh token")
	sess, err := e.store.GetSession(ctxT(t), first.GetSessionId())
	if err != nil || !sess.Revoked() || sess.RevokeReason != storage.ReasonReuse {
		t.Fatalf("session after an old generation came back = %+v, %v; want revoked for reuse", sess, err)
	}
	if !strings.Contains(e.logs.String(), `"event":"refresh_reuse_detected"`) {
		t.Error("no refresh_reuse_detected record")
	}
	_, err = e.client.Refresh(ctxT(t), &latchv1.RefreshRequest{RefreshToken: cur.GetRefreshToken()})
	wantStatus(t, err, codes.Unauthenticated, "invalid refresh token")
	if e.introspect(ictx, cur.GetAccessToken()).GetActive() {
		t.Error("access token of the revoked session is still active")
	}
}

// TestForgedRefreshTokenRevokesNothing: a token that names a real session
// (session ids travel in access tokens) and an old generation, made by
// someone without the server's MAC secret, is an unknown token: Refresh
// answers UNAUTHENTICATED, Revoke matches nothing, and the session goes on.
func TestForgedRefreshTokenRevokesNothing(t *testing.T) {
	e := newEnv(t, baseConfig())
	e.addUser("alice@example.com", "alice-password")
	tp := e.login("alice@example.com", "alice-password")
	tp = e.refresh(tp.GetRefreshToken())
	tp = e.refresh(tp.GetRefreshToken())
	// The right key id, a wrong secret.
	forger := tokens.RefreshKey{ID: activeRefreshKey(t, e.store).ID, Secret: bytes.Repeat([]byte{7}, tokens.RefreshSecretBytes)}
	for _, gen := range []uint64{0, 1, 2, 3} {
		forged, _, err := tokens.NewRefreshToken(rand.Reader, forger, tp.GetSessionId(), gen)
		if err != nil {
			t.Fatal(err)
		}
		_, err = e.client.Refresh(ctxT(t), &latchv1.RefreshRequest{RefreshToken: forged})
		wantStatus(t, err, codes.Unauthenticated, "invalid refresh token")
		if _, err := e.client.Revoke(ctxT(t), &latchv1.RevokeRequest{Token: forged,
			TokenTypeHint: latchv1.TokenTypeHint_TOKEN_TYPE_HINT_REFRESH_TOKEN}); err != nil {
			t.Fatalf("Revoke(forged) = %v; want OK (RFC 7009)", err)
		}
	}
	if sess, err := e.store.GetSession(ctxT(t), tp.GetSessionId()); err != nil || sess.Revoked() || sess.Generation != 2 {
		t.Fatalf("session after forged tokens = %+v, %v; want live and unchanged", sess, err)
	}
	if !strings.Contains(e.logs.String(), `"reason":"bad_mac"`) {
		t.Error("forged tokens were not logged as bad_mac")
	}
	e.refresh(tp.GetRefreshToken()) // the holder's token still works
}

// TestConcurrentRefreshOneSuccessor: of N concurrent exchanges of one
// refresh token over gRPC, at most one successor is live afterwards
// (introspection calls only a live session's current token active).
func TestConcurrentRefreshOneSuccessor(t *testing.T) {
	for _, grace := range []time.Duration{-1, time.Minute} {
		t.Run("grace="+max(grace, 0).String(), func(t *testing.T) {
			cfg := baseConfig()
			cfg.RefreshReuseGrace = grace
			cfg.ProbeBurst = 1 << 20
			e := newEnv(t, cfg)
			e.addUser("alice@example.com", "alice-password")
			ictx := e.introspector()
			tp := e.login("alice@example.com", "alice-password")
			const n = 16
			got := make([]string, n)
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i := range n {
				wg.Go(func() {
					<-start
					resp, err := e.client.Refresh(ctxT(t), &latchv1.RefreshRequest{RefreshToken: tp.GetRefreshToken()})
					if err == nil {
						got[i] = resp.GetTokens().GetRefreshToken()
					}
				})
			}
			close(start)
			wg.Wait()
			won, live := 0, 0
			for _, tok := range got {
				if tok == "" {
					continue
				}
				won++
				if e.introspect(ictx, tok).GetActive() {
					live++
				}
			}
			if live > 1 || (grace < 0 && won != 1) {
				t.Fatalf("%d exchanges succeeded, %d successors live; want at most 1 live (and 1 success without a retry window)", won, live)
			}
		})
	}
}

// TestRefreshGraceRetriedSuccessorRotates: the successor a retry within
// the window minted rotates like any current token (it carries an older
// generation than its session counts), and the successor it replaced is
// still recognised as reused after that.
func TestRefreshGraceRetriedSuccessorRotates(t *testing.T) {
	cfg := baseConfig()
	cfg.RefreshReuseGrace = 10 * time.Second
	e := newEnv(t, cfg)
	e.addUser("alice@example.com", "alice-password")
	tp := e.login("alice@example.com", "alice-password")
	lost := e.refresh(tp.GetRefreshToken())
	e.clock.Advance(5 * time.Second)
	retried := e.refresh(tp.GetRefreshToken())
	again := e.refresh(retried.GetRefreshToken())
	_, err := e.client.Refresh(ctxT(t), &latchv1.RefreshRequest{RefreshToken: lost.GetRefreshToken()})
	wantStatus(t, err, codes.Unauthenticated, "invalid refresh token")
	if sess, err := e.store.GetSession(ctxT(t), tp.GetSessionId()); err != nil || sess.RevokeReason != storage.ReasonReuse {
		t.Fatalf("session after the replaced successor came back = %+v, %v; want revoked for reuse", sess, err)
	}
	_, err = e.client.Refresh(ctxT(t), &latchv1.RefreshRequest{RefreshToken: again.GetRefreshToken()})
	wantStatus(t, err, codes.Unauthenticated, "invalid refresh token")
}

// TestRevokeWithRotatedRefreshToken: Revoke (RFC 7009) accepts any refresh
// token Latch minted for the session, current or rotated, and ends the
// session; Introspect calls only the current one active.
func TestRevokeWithRotatedRefreshToken(t *testing.T) {
	e := newEnv(t, baseConfig())
	e.addUser("alice@example.com", "alice-password")
	ictx := e.introspector()
	first := e.login("alice@example.com", "alice-password")
	cur := e.refresh(first.GetRefreshToken())
	if e.introspect(ictx, first.GetRefreshToken()).GetActive() {
		t.Error("a rotated refresh token introspects active")
	}
	if !e.introspect(ictx, cur.GetRefreshToken()).GetActive() {
		t.Error("the current refresh token introspects inactive")
	}
	if _, err := e.client.Revoke(ctxT(t), &latchv1.RevokeRequest{Token: first.GetRefreshToken()}); err != nil {
		t.Fatal(err)
	}
	if sess, err := e.store.GetSession(ctxT(t), first.GetSessionId()); err != nil || sess.RevokeReason != storage.ReasonRevoked {
		t.Fatalf("session after Revoke(rotated token) = %+v, %v; want revoked", sess, err)
	}
	if e.introspect(ictx, cur.GetRefreshToken()).GetActive() {
		t.Error("the current token of a revoked session introspects active")
	}
}

// TestRefreshKeyRotation: the refresh-token key rotates with the signing
// key; tokens minted under the old key still refresh (and new ones use the
// new key) until the old key's window, the longer of RefreshMaxAge and
// DeviceProofTTL after it retired, is over; then it is removed.
func TestRefreshKeyRotation(t *testing.T) {
	cfg := keyConfig()
	cfg.RefreshIdleTTL, cfg.RefreshMaxAge, cfg.DeviceProofTTL = 2*time.Hour, 3*time.Hour, 4*time.Hour
	e := newEnv(t, cfg)
	e.addUser("alice@example.com", "alice-password")
	before := activeRefreshKey(t, e.store)
	old := e.login("alice@example.com", "alice-password")
	e.clock.Advance(time.Hour) // the next signing key is ready
	if _, err := e.srv.RotateSigningKey(ctxT(t), false); err != nil {
		t.Fatal(err)
	}
	after := activeRefreshKey(t, e.store)
	if after.ID == before.ID {
		t.Fatal("the refresh-token key did not rotate with the signing key")
	}
	if !strings.Contains(e.logs.String(), `"event":"refresh_key_retired"`) {
		t.Error("no refresh_key_retired record")
	}
	next := e.refresh(old.GetRefreshToken())
	p, err := tokens.ParseRefreshToken(next.GetRefreshToken(), func(id string) ([]byte, bool) { return nil, id == after.ID })
	if !errors.Is(err, tokens.ErrRefreshTokenForged) { // the lookup knows the id, not the secret
		t.Fatalf("successor of an old-key token: %+v, %v; want it minted under the new key %s", p, err, after.ID)
	}
	// Past the old key's window it is removed.
	e.clock.Advance(cfg.DeviceProofTTL + cfg.KeyReloadInterval + time.Second)
	if err := e.srv.SyncSigningKeys(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	keys, err := e.store.ListRefreshKeys(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if k.ID == before.ID {
			t.Fatalf("retired refresh-token key %s still stored past its window", k.ID)
		}
	}
}

// TestRefreshKeySealed: with a key-encryption key, the refresh-token keys
// are stored sealed, never in clear, and tokens minted under them refresh
// after a restart with the same key-encryption key.
func TestRefreshKeySealed(t *testing.T) {
	kek := newKEK(t)
	path := filepath.Join(t.TempDir(), "latch.db")
	e := startEnv(t, path, opsConfig{cfg: baseConfig(), srvOpts: []server.Option{server.WithKeySealer(kek)}})
	e.addUser("alice@example.com", "alice-password")
	tp := e.login("alice@example.com", "alice-password")
	keys, err := e.store.ListRefreshKeys(ctxT(t))
	if err != nil || len(keys) < 2 {
		t.Fatalf("ListRefreshKeys = %d keys, %v; want an active and a next key", len(keys), err)
	}
	for _, k := range keys {
		secret, err := kek.Open("refresh-key:"+k.ID, k.Secret)
		if err != nil || len(secret) != tokens.RefreshSecretBytes {
			t.Fatalf("refresh-token key %s is not sealed under the key-encryption key: %v", k.ID, err)
		}
		if bytes.Contains(k.Secret, secret) {
			t.Fatalf("refresh-token key %s holds its secret in clear", k.ID)
		}
		if strings.Contains(e.logs.String(), string(secret)) {
			t.Fatalf("refresh-token key %s is logged", k.ID)
		}
	}
	e.close()
	e2 := startEnv(t, path, opsConfig{cfg: baseConfig(), srvOpts: []server.Option{server.WithKeySealer(kek)}})
	e2.refresh(tp.GetRefreshToken())
}
