package server_test

import (
	"crypto/elliptic"
	"encoding/base64"
	"math/big"
	"strings"
	"testing"
	"time"

	latchv1 "github.com/latchauth/latch/gen/latch/v1"
	"github.com/latchauth/latch/server"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

func wantRetryHint(t *testing.T, err error) {
	t.Helper()
	for _, d := range status.Convert(err).Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok && ri.GetRetryDelay().AsDuration() > 0 {
			return
		}
	}
	t.Errorf("RESOURCE_EXHAUSTED without a RetryInfo detail: %v", err)
}

// TestRefreshProbingIsLimited: invalid refresh tokens are charged to their
// address's budget; once it is spent, every invalid token from that address
// is refused with RESOURCE_EXHAUSTED and a retry hint, until the bucket
// refills, so scanning for valid refresh tokens is bounded to ProbeBurst +
// one per ProbeRefill. A valid refresh token from the same address is still
// exchanged (a valid credential is never refused because of what other
// clients behind the address did), and a reuse detected meanwhile still
// revokes its session.
func TestRefreshProbingIsLimited(t *testing.T) {
	cfg := baseConfig()
	cfg.ProbeBurst, cfg.ProbeRefill = 5, time.Minute
	e := newEnv(t, cfg)
	e.addUser("alice@example.com", "alice-password")
	tp := e.login("alice@example.com", "alice-password")
	probe := func(i int) error {
		_, err := e.client.Refresh(ctxT(t), &latchv1.RefreshRequest{RefreshToken: strings.Repeat("A", 42) + string(rune('A'+i))})
		return err
	}
	// Valid exchanges spend nothing.
	for range 3 {
		r, err := e.client.Refresh(ctxT(t), &latchv1.RefreshRequest{RefreshToken: tp.GetRefreshToken()})
		if err != nil {
			t.Fatalf("valid refresh: %v", err)
		}
		tp = r.GetTokens()
	}
	for i := range 5 {
		wantStatus(t, probe(i), codes.Unauthenticated, "invalid refresh token")
	}
	err := probe(5)
	wantStatus(t, err, codes.ResourceExhausted, "too many invalid tokens; retry later")
	wantRetryHint(t, err)
	if !strings.Contains(e.logs.String(), `"event":"probe_rate_limited"`) {
		t.Error("probe limiting not logged")
	}

	// The valid token from the same address is still exchanged, and that
	// gives nothing back to the invalid ones.
	prev := tp
	r, err := e.client.Refresh(ctxT(t), &latchv1.RefreshRequest{RefreshToken: tp.GetRefreshToken()})
	if err != nil {
		t.Fatalf("a valid refresh token refused after other tokens failed: %v", err)
	}
	tp = r.GetTokens()
	wantStatus(t, probe(6), codes.ResourceExhausted, "too many invalid tokens; retry later")

	// A replay of the rotated token past its retry window is refused like
	// any failing token, and still revokes the session.
	e.clock.Advance(server.DefaultRefreshReuseGrace + time.Second)
	_, err = e.client.Refresh(ctxT(t), &latchv1.RefreshRequest{RefreshToken: prev.GetRefreshToken()})
	wantStatus(t, err, codes.ResourceExhausted, "too many invalid tokens; retry later")
	if sess, err := e.store.GetSession(ctxT(t), tp.GetSessionId()); err != nil || !sess.Revoked() {
		t.Fatalf("session after a reuse answered RESOURCE_EXHAUSTED = %+v, %v; want revoked", sess, err)
	}

	// The budget refills: one invalid token is answered as such again.
	e.clock.Advance(time.Minute)
	wantStatus(t, probe(7), codes.Unauthenticated, "invalid refresh token")
	wantStatus(t, probe(8), codes.ResourceExhausted, "too many invalid tokens; retry later")
}

// TestIntrospectorNotThrottledForInactive: an authenticated introspector is
// never throttled for inactive answers (its credential is what stops
// scanning, and expired tokens are everyday traffic), nor do its inactive
// answers spend the address's budget for caller credentials.
func TestIntrospectorNotThrottledForInactive(t *testing.T) {
	cfg := baseConfig()
	cfg.ProbeBurst, cfg.ProbeRefill = 5, time.Minute
	e := newEnv(t, cfg)
	ctxA := e.introspector()
	e.addUser("alice@example.com", "alice-password")
	tp := e.login("alice@example.com", "alice-password")
	for i := range 20 {
		r, err := e.client.Introspect(ctxA, &latchv1.IntrospectRequest{Token: "garbage"})
		if err != nil || r.GetActive() {
			t.Fatalf("inactive answer %d = %v, %v; want inactive and no error", i, r, err)
		}
	}
	if r := e.introspect(ctxA, tp.GetAccessToken()); !r.GetActive() {
		t.Fatal("live token inactive after many inactive answers")
	}
	bad := metadata.AppendToOutgoingContext(ctxT(t), "authorization", "Bearer nope")
	for range 5 {
		_, err := e.client.Introspect(bad, &latchv1.IntrospectRequest{Token: "x"})
		wantStatus(t, err, codes.Unauthenticated, "invalid caller credential")
	}
}

// TestOpenIntrospectProbingIsLimited: with IntrospectOpen, Introspect is a
// validity oracle for anyone, so its inactive answers are charged to the
// asking address; once the budget is spent they are refused with
// RESOURCE_EXHAUSTED and a retry hint, while a live token from the same
// address is still described.
func TestOpenIntrospectProbingIsLimited(t *testing.T) {
	cfg := baseConfig()
	cfg.ProbeBurst, cfg.ProbeRefill = 5, time.Minute
	cfg.IntrospectOpen = true
	e := newEnv(t, cfg)
	e.addUser("alice@example.com", "alice-password")
	tp := e.login("alice@example.com", "alice-password")
	for i := range 5 {
		if r := e.introspect(ctxT(t), "garbage"); r.GetActive() {
			t.Fatalf("garbage %d active", i)
		}
	}
	_, err := e.client.Introspect(ctxT(t), &latchv1.IntrospectRequest{Token: "garbage"})
	wantStatus(t, err, codes.ResourceExhausted, "too many invalid tokens; retry later")
	wantRetryHint(t, err)
	for range 3 {
		if r := e.introspect(ctxT(t), tp.GetAccessToken()); !r.GetActive() || r.GetSub() == "" {
			t.Fatalf("live token after the budget was spent: %v", r)
		}
	}
	_, err = e.client.Introspect(ctxT(t), &latchv1.IntrospectRequest{Token: "garbage"})
	wantStatus(t, err, codes.ResourceExhausted, "too many invalid tokens; retry later")
	e.clock.Advance(time.Minute)
	if r := e.introspect(ctxT(t), "garbage"); r.GetActive() {
		t.Fatal("garbage active after the refill")
	}
}

// TestBadCallerCredentialsAreLimited: the authorization header of
// Introspect cannot be used as an oracle either: past the address's budget,
// bad caller credentials are refused with RESOURCE_EXHAUSTED, while a valid
// caller from the same address is still served.
func TestBadCallerCredentialsAreLimited(t *testing.T) {
	cfg := baseConfig()
	cfg.ProbeBurst, cfg.ProbeRefill = 3, time.Minute
	e := newEnv(t, cfg)
	good := e.introspector()
	bad := metadata.AppendToOutgoingContext(ctxT(t), "authorization", "Bearer nope")
	for range 3 {
		_, err := e.client.Introspect(bad, &latchv1.IntrospectRequest{Token: "x"})
		wantStatus(t, err, codes.Unauthenticated, "")
	}
	_, err := e.client.Introspect(bad, &latchv1.IntrospectRequest{Token: "x"})
	wantStatus(t, err, codes.ResourceExhausted, "too many invalid tokens; retry later")
	wantRetryHint(t, err)
	if _, err := e.client.Introspect(good, &latchv1.IntrospectRequest{Token: "x"}); err != nil {
		t.Fatalf("a valid caller refused after bad credentials from its address: %v", err)
	}
}

// TestRevokedTokenReencodedStaysRevoked: ECDSA signatures have a second
// valid form (r, n−s). A revoked access token re-encoded that way is a
// different string that still verifies; revocation keys on the jti, so it
// must stay inactive — in Introspect and as a caller credential.
func TestRevokedTokenReencodedStaysRevoked(t *testing.T) {
	cfg := baseConfig()
	cfg.IntrospectOpen = true
	e := newEnv(t, cfg)
	e.addUser("alice@example.com", "alice-password", "introspect")
	tp := e.login("alice@example.com", "alice-password")
	tok := tp.GetAccessToken()
	i := strings.LastIndexByte(tok, '.')
	sig, err := base64.RawURLEncoding.DecodeString(tok[i+1:])
	if err != nil || len(sig) != 64 {
		t.Fatal("bad signature encoding")
	}
	s := new(big.Int).SetBytes(sig[32:])
	s.Sub(elliptic.P256().Params().N, s)
	alt := make([]byte, 64)
	copy(alt, sig[:32])
	s.FillBytes(alt[32:])
	twin := tok[:i+1] + base64.RawURLEncoding.EncodeToString(alt)
	if twin == tok {
		t.Fatal("twin equals the token")
	}
	if r := e.introspect(ctxT(t), twin); !r.GetActive() {
		t.Fatal("the (r, n-s) twin of a live token must verify (ECDSA accepts it); otherwise this test proves nothing")
	}
	if _, err := e.client.Revoke(ctxT(t), &latchv1.RevokeRequest{Token: tok}); err != nil {
		t.Fatal(err)
	}
	for name, s := range map[string]string{"original": tok, "twin": twin} {
		if r := e.introspect(ctxT(t), s); r.GetActive() {
			t.Errorf("%s of a revoked token is active", name)
		}
	}
}
