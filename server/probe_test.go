package server_test

import (
	"crypto/elliptic"
	"encoding/base64"
	"math/big"
	"strings"
	"testing"
	"time"

	latchv1 "github.com/latchauth/latch/gen/latch/v1"
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

// TestRefreshProbingIsLimited: an address that presents too many invalid
// refresh tokens is refused with RESOURCE_EXHAUSTED and a retry hint, and
// recovers as the bucket refills. Scanning for valid refresh tokens is
// therefore bounded to ProbeBurst + one per ProbeRefill.
func TestRefreshProbingIsLimited(t *testing.T) {
	cfg := baseConfig()
	cfg.ProbeBurst, cfg.ProbeRefill = 5, time.Minute
	e := newEnv(t, cfg)
	e.addUser("alice@example.com", "alice-password")
	tp := e.login("alice@example.com", "alice-password")
	for i := range 5 {
		_, err := e.client.Refresh(ctxT(t), &latchv1.RefreshRequest{RefreshToken: strings.Repeat("A", 42) + string(rune('A'+i))})
		wantStatus(t, err, codes.Unauthenticated, "invalid refresh token")
	}
	_, err := e.client.Refresh(ctxT(t), &latchv1.RefreshRequest{RefreshToken: tp.GetRefreshToken()})
	wantStatus(t, err, codes.ResourceExhausted, "too many invalid tokens; retry later")
	wantRetryHint(t, err)
	// Refused before any work: the valid token was not consumed.
	e.clock.advance(time.Minute)
	if _, err := e.client.Refresh(ctxT(t), &latchv1.RefreshRequest{RefreshToken: tp.GetRefreshToken()}); err != nil {
		t.Fatalf("after the refill the valid token must still work: %v", err)
	}
	if !strings.Contains(e.logs.String(), `"event":"probe_rate_limited"`) {
		t.Error("probe limiting not logged")
	}
}

// TestIntrospectProbingIsLimitedPerCaller: a caller whose introspections
// keep finding inactive tokens is refused; another caller is not.
func TestIntrospectProbingIsLimitedPerCaller(t *testing.T) {
	cfg := baseConfig()
	cfg.ProbeBurst, cfg.ProbeRefill = 5, time.Minute
	e := newEnv(t, cfg)
	ctxA := e.introspector()
	e.addUser("other@example.com", "other-password", "introspect")
	b := e.login("other@example.com", "other-password")
	ctxB := metadata.AppendToOutgoingContext(ctxT(t), "authorization", "Bearer "+b.GetAccessToken())
	for range 5 {
		if r := e.introspect(ctxA, "garbage"); r.GetActive() {
			t.Fatal("garbage active")
		}
	}
	_, err := e.client.Introspect(ctxA, &latchv1.IntrospectRequest{Token: "garbage"})
	wantStatus(t, err, codes.ResourceExhausted, "too many invalid tokens; retry later")
	wantRetryHint(t, err)
	if r := e.introspect(ctxB, b.GetAccessToken()); !r.GetActive() {
		t.Fatal("another caller was limited too")
	}
}

// TestBadCallerCredentialsAreLimited: the authorization header of
// Introspect cannot be used as an oracle either.
func TestBadCallerCredentialsAreLimited(t *testing.T) {
	cfg := baseConfig()
	cfg.ProbeBurst, cfg.ProbeRefill = 3, time.Minute
	e := newEnv(t, cfg)
	bad := metadata.AppendToOutgoingContext(ctxT(t), "authorization", "Bearer nope")
	for range 3 {
		_, err := e.client.Introspect(bad, &latchv1.IntrospectRequest{Token: "x"})
		wantStatus(t, err, codes.Unauthenticated, "")
	}
	_, err := e.client.Introspect(bad, &latchv1.IntrospectRequest{Token: "x"})
	wantStatus(t, err, codes.ResourceExhausted, "")
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
