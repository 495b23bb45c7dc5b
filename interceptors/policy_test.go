package interceptors_test

import (
	"testing"

	"github.com/latchauth/latch/interceptors"
	"google.golang.org/grpc/codes"
	testpb "google.golang.org/grpc/interop/grpc_testing"
)

// TestPolicyPrecedence: one rule decides each method, whatever kind it is:
// an exact rule beats a prefix rule (a public prefix included), and for
// one pattern the last call wins, so a default public prefix can be
// protected.
func TestPolicyPrecedence(t *testing.T) {
	e := newLatch(t)
	e.AddUser("alice@example.com", "alice-password", "orders:read")
	e.AddUser("root@example.com", "root-password", "admin")
	v := newVerifier(t, e)
	alice := e.Login("alice@example.com", "alice-password", "").GetAccessToken()
	root := e.Login("root@example.com", "root-password", "").GetAccessToken()

	const svc = "/grpc.testing.TestService/"
	p := interceptors.NewPolicy().
		Public(svc).
		Require(svc+"UnaryCall", "admin").
		Require(svc + "StreamingOutputCall")
	client := sibling(t, v, p)
	ctx := ctxT(t)

	// The exact Require beats the public prefix: a token is needed.
	_, err := client.UnaryCall(ctx, &testpb.SimpleRequest{})
	wantCode(t, "UnaryCall without a token", err, codes.Unauthenticated, "missing bearer token")
	_, err = client.UnaryCall(bearer(ctx, alice), &testpb.SimpleRequest{})
	wantCode(t, "UnaryCall without the role", err, codes.PermissionDenied, "admin")
	if resp, err := client.UnaryCall(bearer(ctx, root), &testpb.SimpleRequest{}); err != nil || resp.GetUsername() == "<no claims>" {
		t.Fatalf("UnaryCall with the role = %v, %v", resp, err)
	}
	st, err := client.StreamingOutputCall(ctx, &testpb.StreamingOutputCallRequest{})
	if err == nil {
		_, err = st.Recv()
	}
	wantCode(t, "StreamingOutputCall without a token", err, codes.Unauthenticated, "missing bearer token")
	// Methods only the public prefix names stay public.
	if _, err := client.EmptyCall(ctx, &testpb.Empty{}); err != nil {
		t.Fatalf("EmptyCall under the public prefix: %v", err)
	}

	// An exact Public beats a protected prefix.
	q := interceptors.NewPolicy().Require(svc, "admin").Public(svc + "EmptyCall")
	qc := sibling(t, v, q)
	if _, err := qc.EmptyCall(ctx, &testpb.Empty{}); err != nil {
		t.Fatalf("public EmptyCall under a protected prefix: %v", err)
	}
	_, err = qc.UnaryCall(bearer(ctx, alice), &testpb.SimpleRequest{})
	wantCode(t, "UnaryCall under the protected prefix", err, codes.PermissionDenied, "admin")

	// For the same pattern the last call wins: Require after Public
	// protects it, Public after Require opens it.
	r := interceptors.NewPolicy().Public(svc).Require(svc, "admin")
	_, err = sibling(t, v, r).EmptyCall(ctx, &testpb.Empty{})
	wantCode(t, "Require after Public", err, codes.Unauthenticated, "missing bearer token")
	s := interceptors.NewPolicy().Require(svc, "admin").Public(svc)
	if _, err := sibling(t, v, s).EmptyCall(ctx, &testpb.Empty{}); err != nil {
		t.Fatalf("Public after Require: %v", err)
	}
}
