package server_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	latchv1 "github.com/latchauth/latch/gen/latch/v1"
	"github.com/latchauth/latch/storage"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
)

// revocationReads counts the revocation reads the server makes on the real
// store, and can make the batched one fail.
type revocationReads struct {
	storage.Store
	single, batch atomic.Int64
	failBatch     error
}

func (r *revocationReads) AccessTokenRevoked(ctx context.Context, jti, sid string, now time.Time) (bool, error) {
	r.single.Add(1)
	return r.Store.AccessTokenRevoked(ctx, jti, sid, now)
}

func (r *revocationReads) AccessTokensRevoked(ctx context.Context, refs []storage.AccessTokenRef, now time.Time) ([]bool, error) {
	r.batch.Add(1)
	if r.failBatch != nil {
		return []bool{true, true}, r.failBatch
	}
	return r.Store.AccessTokensRevoked(ctx, refs, now)
}

func (r *revocationReads) take() (single, batch int64) { return r.single.Swap(0), r.batch.Swap(0) }

// TestIntrospectOneRevocationRead: an authorized Introspect of an access
// token checks the caller's and the target's revocation state in ONE storage
// read, and the answers are those of two separate checks: a revoked target
// is inactive, a revoked caller is UNAUTHENTICATED (learning nothing about
// the target), a caller without the role is PERMISSION_DENIED, and a failed
// read is INTERNAL, never "active".
func TestIntrospectOneRevocationRead(t *testing.T) {
	rr := &revocationReads{}
	e := newEnv(t, baseConfig(), func(s storage.Store) storage.Store { rr.Store = s; return rr })
	e.addUser("alice@example.com", "alice-password")
	caller := e.introspector()
	target := e.login("alice@example.com", "alice-password")
	rr.take()

	if resp := e.introspect(caller, target.GetAccessToken()); !resp.GetActive() || resp.GetSub() == "" {
		t.Fatalf("live target: %v", resp)
	}
	if single, batch := rr.take(); single != 0 || batch != 1 {
		t.Errorf("live caller + live access target: %d single + %d batched reads, want 0 + 1", single, batch)
	}

	// A refresh token target: the caller's check alone, then the refresh path.
	if resp := e.introspect(caller, target.GetRefreshToken()); !resp.GetActive() || resp.GetTokenType() != "refresh_token" {
		t.Fatalf("refresh target: %v", resp)
	}
	if single, batch := rr.take(); single != 1 || batch != 0 {
		t.Errorf("refresh target: %d single + %d batched reads, want 1 + 0", single, batch)
	}

	// A target that does not verify costs no storage read of its own.
	if resp := e.introspect(caller, target.GetAccessToken()+"x"); resp.GetActive() {
		t.Fatalf("tampered target active: %v", resp)
	}
	if single, batch := rr.take(); single != 1 || batch != 0 {
		t.Errorf("tampered target: %d single + %d batched reads, want 1 + 0", single, batch)
	}

	// The read failing is INTERNAL, not an answer.
	rr.failBatch = errors.New("disk on fire")
	_, err := e.client.Introspect(caller, &latchv1.IntrospectRequest{Token: target.GetAccessToken()})
	wantStatus(t, err, codes.Internal, "internal error")
	rr.failBatch = nil
	rr.take()

	// A caller without the role: its own check only, PERMISSION_DENIED.
	plain := metadata.AppendToOutgoingContext(ctxT(t), "authorization", "Bearer "+target.GetAccessToken())
	_, err = e.client.Introspect(plain, &latchv1.IntrospectRequest{Token: target.GetAccessToken()})
	wantStatus(t, err, codes.PermissionDenied, "")
	if single, batch := rr.take(); single != 1 || batch != 0 {
		t.Errorf("caller without role: %d single + %d batched reads, want 1 + 0", single, batch)
	}

	// A revoked target, a live caller: inactive.
	if _, err := e.client.Revoke(ctxT(t), &latchv1.RevokeRequest{Token: target.GetAccessToken()}); err != nil {
		t.Fatal(err)
	}
	if resp := e.introspect(caller, target.GetAccessToken()); resp.GetActive() || resp.GetSub() != "" {
		t.Errorf("revoked target: %v, want inactive and empty", resp)
	}

	// A revoked caller, a live target: UNAUTHENTICATED.
	other := e.login("alice@example.com", "alice-password")
	md, _ := metadata.FromOutgoingContext(caller)
	callerTok := md.Get("authorization")[0][len("Bearer "):]
	if _, err := e.client.Revoke(ctxT(t), &latchv1.RevokeRequest{Token: callerTok}); err != nil {
		t.Fatal(err)
	}
	rr.take()
	_, err = e.client.Introspect(caller, &latchv1.IntrospectRequest{Token: other.GetAccessToken()})
	wantStatus(t, err, codes.Unauthenticated, "")
	if single, batch := rr.take(); single+batch != 1 {
		t.Errorf("revoked caller: %d single + %d batched reads, want one read", single, batch)
	}
}
