package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	latchv1 "github.com/latchauth/latch/gen/latch/v1"
	"github.com/latchauth/latch/storage"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
)

// revocationReads records, in order, the jti of every access token whose
// revocation state the server reads from the real store, and can make the
// read for one jti fail.
type revocationReads struct {
	storage.Store
	mu      sync.Mutex
	checked []string
	failJTI string
}

func (r *revocationReads) record(jti string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.checked = append(r.checked, jti)
	if r.failJTI != "" && jti == r.failJTI {
		return errors.New("disk on fire")
	}
	return nil
}

func (r *revocationReads) AccessTokenRevoked(ctx context.Context, jti, sid string, now time.Time) (bool, error) {
	if err := r.record(jti); err != nil {
		return false, err
	}
	return r.Store.AccessTokenRevoked(ctx, jti, sid, now)
}

// take returns the jtis checked since the last take.
func (r *revocationReads) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.checked
	r.checked = nil
	return out
}

// jtiOf returns the jti claim of an access token.
func jtiOf(t *testing.T, tok string) string {
	t.Helper()
	var c struct {
		JTI string `json:"jti"`
	}
	if err := json.Unmarshal([]byte(decodeSegment(t, strings.Split(tok, ".")[1])), &c); err != nil {
		t.Fatal(err)
	}
	return c.JTI
}

// TestIntrospectRevocationReads: Introspect checks the revocation state of
// every access token it relies on, once each, the caller's first: the
// target's state is read only for an authorized caller, so a revoked caller
// (UNAUTHENTICATED) or one without the role (PERMISSION_DENIED) learns
// nothing about the target, and a target that does not verify costs no read
// of its own. A revoked target is inactive, and a failed read is INTERNAL,
// never "active".
func TestIntrospectRevocationReads(t *testing.T) {
	rr := &revocationReads{}
	e := newEnv(t, baseConfig(), func(s storage.Store) storage.Store { rr.Store = s; return rr })
	e.addUser("alice@example.com", "alice-password")
	caller := e.introspector()
	md, _ := metadata.FromOutgoingContext(caller)
	callerTok := strings.TrimPrefix(md.Get("authorization")[0], "Bearer ")
	callerJTI := jtiOf(t, callerTok)
	target := e.login("alice@example.com", "alice-password")
	targetJTI := jtiOf(t, target.GetAccessToken())
	reads := func(what string, want ...string) {
		t.Helper()
		if got := rr.take(); !slices.Equal(got, want) {
			t.Errorf("%s: revocation reads for jtis %v, want %v", what, got, want)
		}
	}
	rr.take()

	if resp := e.introspect(caller, target.GetAccessToken()); !resp.GetActive() || resp.GetSub() == "" {
		t.Fatalf("live target: %v", resp)
	}
	reads("live caller + live access target", callerJTI, targetJTI)

	// A refresh token target: the caller's check, then the refresh path.
	if resp := e.introspect(caller, target.GetRefreshToken()); !resp.GetActive() || resp.GetTokenType() != "refresh_token" {
		t.Fatalf("refresh target: %v", resp)
	}
	reads("refresh target", callerJTI)

	// A target that does not verify costs no storage read of its own.
	if resp := e.introspect(caller, target.GetAccessToken()+"x"); resp.GetActive() {
		t.Fatalf("tampered target active: %v", resp)
	}
	reads("tampered target", callerJTI)

	// A failed read is INTERNAL, not an answer: the target's ...
	rr.failJTI = targetJTI
	_, err := e.client.Introspect(caller, &latchv1.IntrospectRequest{Token: target.GetAccessToken()})
	wantStatus(t, err, codes.Internal, "internal error")
	reads("target's read failing", callerJTI, targetJTI)
	// ... and the caller's, before the target is looked at.
	rr.failJTI = callerJTI
	_, err = e.client.Introspect(caller, &latchv1.IntrospectRequest{Token: target.GetAccessToken()})
	wantStatus(t, err, codes.Internal, "internal error")
	reads("caller's read failing", callerJTI)
	rr.failJTI = ""

	// A caller without the role: its own check only, PERMISSION_DENIED.
	plainTok := e.loginSelf("alice@example.com", "alice-password").GetAccessToken()
	rr.take()
	plain := metadata.AppendToOutgoingContext(ctxT(t), "authorization", "Bearer "+plainTok)
	_, err = e.client.Introspect(plain, &latchv1.IntrospectRequest{Token: target.GetAccessToken()})
	wantStatus(t, err, codes.PermissionDenied, "")
	reads("caller without role", jtiOf(t, plainTok))

	// A caller token for a relying party's audience does not verify as a
	// caller credential: UNAUTHENTICATED, no read at all.
	rp := metadata.AppendToOutgoingContext(ctxT(t), "authorization", "Bearer "+target.GetAccessToken())
	_, err = e.client.Introspect(rp, &latchv1.IntrospectRequest{Token: target.GetAccessToken()})
	wantStatus(t, err, codes.Unauthenticated, "invalid caller credential")
	reads("caller token for a relying party's audience")

	// A revoked target, a live caller: inactive.
	if _, err := e.client.Revoke(ctxT(t), &latchv1.RevokeRequest{Token: target.GetAccessToken()}); err != nil {
		t.Fatal(err)
	}
	if resp := e.introspect(caller, target.GetAccessToken()); resp.GetActive() || resp.GetSub() != "" {
		t.Errorf("revoked target: %v, want inactive and empty", resp)
	}

	// A revoked caller, a live target: UNAUTHENTICATED, the target unread.
	other := e.login("alice@example.com", "alice-password")
	if _, err := e.client.Revoke(ctxT(t), &latchv1.RevokeRequest{Token: callerTok}); err != nil {
		t.Fatal(err)
	}
	rr.take()
	_, err = e.client.Introspect(caller, &latchv1.IntrospectRequest{Token: other.GetAccessToken()})
	wantStatus(t, err, codes.Unauthenticated, "invalid caller credential")
	reads("revoked caller", callerJTI)
}
