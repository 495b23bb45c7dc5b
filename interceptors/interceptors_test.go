package interceptors_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	latchv1 "github.com/latchauth/latch/gen/latch/v1"
	"github.com/latchauth/latch/interceptors"
	"github.com/latchauth/latch/interceptors/clientcreds"
	"github.com/latchauth/latch/server"
	"github.com/latchauth/latch/tokens"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

func policy() *interceptors.Policy {
	return interceptors.NewPolicy().
		Require("/grpc.testing.TestService/", "orders:read").
		Require("/grpc.testing.TestService/EmptyCall", "orders:write").
		Public("/grpc.testing.TestService/CacheableUnaryCall")
}

func newVerifier(t *testing.T, e *latchEnv, opts ...interceptors.Option) *interceptors.Verifier {
	t.Helper()
	v, err := interceptors.NewVerifier(ctxT(t),
		interceptors.Config{Issuer: issuer, Audience: []string{"orders"}, Keys: interceptors.JWKSFromGRPC(e.conn)},
		append([]interceptors.Option{interceptors.WithClock(e.Clock.Now)}, opts...)...)
	if err != nil {
		t.Fatalf("NewVerifier: %v", err)
	}
	t.Cleanup(v.Close)
	return v
}

// call makes the unary and the streaming call with ctx and returns both
// errors (and the subjects the handlers saw).
func call(t *testing.T, c testpb.TestServiceClient, ctx context.Context) (subs []string, unaryErr, streamErr error) {
	t.Helper()
	resp, err := c.UnaryCall(ctx, &testpb.SimpleRequest{})
	if err == nil {
		subs = append(subs, resp.GetUsername())
	}
	unaryErr = err
	st, err := c.StreamingOutputCall(ctx, &testpb.StreamingOutputCallRequest{})
	if err == nil {
		var msg *testpb.StreamingOutputCallResponse
		if msg, err = st.Recv(); err == nil {
			subs = append(subs, string(msg.GetPayload().GetBody()))
		}
	}
	streamErr = err
	return subs, unaryErr, streamErr
}

func wantCode(t *testing.T, what string, err error, code codes.Code, msgPart string) {
	t.Helper()
	st := status.Convert(err)
	if st.Code() != code {
		t.Errorf("%s: code = %v (%q), want %v", what, st.Code(), st.Message(), code)
	}
	if msgPart != "" && !strings.Contains(st.Message(), msgPart) {
		t.Errorf("%s: message %q does not contain %q", what, st.Message(), msgPart)
	}
}

// TestAuthMatrix runs every case of the auth matrix against a unary AND a
// streaming method of a sibling service protected by the interceptors,
// with keys and revocations from a real Latch.
func TestAuthMatrix(t *testing.T) {
	e := newLatch(t)
	e.AddUser("alice@example.com", "alice-password", "orders:read")
	e.AddUser("bob@example.com", "bob-password", "billing:read")
	e.AddUser("svc@example.com", "svc-password", server.RoleIntrospect)
	svc, err := clientcreds.Login(ctxT(t), e.conn, "svc@example.com", "svc-password", issuer, clientcreds.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	v := newVerifier(t, e, interceptors.WithRevocations(e.Dial(grpc.WithPerRPCCredentials(svc)), nil))
	client := sibling(t, v, policy())

	alice := e.Login("alice@example.com", "alice-password", "")
	signer := e.Signer()
	forged := func(mut func(*tokens.Claims)) string {
		now := e.Clock.Now()
		c := tokens.Claims{Issuer: issuer, Subject: "forged", Audience: []string{"orders"}, IssuedAt: now, NotBefore: now,
			ExpiresAt: now.Add(10 * time.Minute), ID: "jti-forged", SessionID: alice.GetSessionId(), Roles: []string{"orders:read"}}
		mut(&c)
		tok, err := signer.Sign(c)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	otherKey, _ := tokens.GenerateKey(rand.Reader)
	otherSigner, _ := tokens.NewSigner(otherKey)
	wrongKey, _ := otherSigner.Sign(tokens.Claims{Issuer: issuer, Subject: "x", Audience: []string{"orders"}, IssuedAt: e.Clock.Now(),
		ExpiresAt: e.Clock.Now().Add(time.Minute), ID: "j", SessionID: alice.GetSessionId(), Roles: []string{"orders:read"}})
	tampered := alice.GetAccessToken()
	parts := strings.Split(tampered, ".")
	claims, _ := base64.RawURLEncoding.DecodeString(parts[1])
	claims = []byte(strings.Replace(string(claims), `"orders:read"`, `"orders:admin"`, 1))
	tampered = parts[0] + "." + base64.RawURLEncoding.EncodeToString(claims) + "." + parts[2]

	ctx := ctxT(t)
	cases := []struct {
		name string
		ctx  context.Context
		code codes.Code
		msg  string
	}{
		{"valid", bearer(ctx, alice.GetAccessToken()), codes.OK, ""},
		{"no token", ctx, codes.Unauthenticated, "missing bearer token"},
		{"two values", metadata.AppendToOutgoingContext(bearer(ctx, alice.GetAccessToken()), "authorization", "Bearer x"), codes.Unauthenticated, "more than one"},
		{"wrong scheme", metadata.AppendToOutgoingContext(ctx, "authorization", "Basic "+alice.GetAccessToken()), codes.Unauthenticated, "Bearer scheme"},
		{"empty", metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "), codes.Unauthenticated, "empty bearer token"},
		{"oversized", bearer(ctx, strings.Repeat("a", 9000)), codes.Unauthenticated, "longer than 8 KiB"},
		{"malformed", bearer(ctx, "not-a-jwt"), codes.Unauthenticated, "malformed"},
		{"tampered", bearer(ctx, tampered), codes.Unauthenticated, "bad signature"},
		{"wrong key", bearer(ctx, wrongKey), codes.Unauthenticated, "invalid bearer token"},
		{"wrong issuer", bearer(ctx, forged(func(c *tokens.Claims) { c.Issuer = "https://evil.example" })), codes.Unauthenticated, "wrong issuer"},
		{"wrong audience", bearer(ctx, forged(func(c *tokens.Claims) { c.Audience = []string{"billing"} })), codes.Unauthenticated, "wrong audience"},
		{"expired", bearer(ctx, forged(func(c *tokens.Claims) {
			c.IssuedAt, c.ExpiresAt = c.IssuedAt.Add(-time.Hour), c.IssuedAt.Add(-30*time.Minute)
		})), codes.Unauthenticated, "expired"},
		{"refresh token as bearer", bearer(ctx, alice.GetRefreshToken()), codes.Unauthenticated, "malformed"},
		{"missing role", bearer(ctx, e.Login("bob@example.com", "bob-password", "orders").GetAccessToken()), codes.PermissionDenied, "orders:read"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			subs, uerr, serr := call(t, client, tc.ctx)
			wantCode(t, "unary", uerr, tc.code, tc.msg)
			wantCode(t, "stream", serr, tc.code, tc.msg)
			if tc.code == codes.OK && (len(subs) != 2 || subs[0] == "<no claims>" || subs[0] != subs[1]) {
				t.Errorf("handlers saw claims %v", subs)
			}
			for _, err := range []error{uerr, serr} {
				if m := status.Convert(err).Message(); len(m) > 20 && strings.Contains(alice.GetAccessToken(), m) {
					t.Errorf("message echoes the token")
				}
			}
		})
	}

	t.Run("exact rule beats prefix", func(t *testing.T) {
		_, err := client.EmptyCall(bearer(ctx, alice.GetAccessToken()), &testpb.Empty{})
		wantCode(t, "EmptyCall", err, codes.PermissionDenied, "orders:write")
	})
	t.Run("public method needs no token", func(t *testing.T) {
		resp, err := client.CacheableUnaryCall(ctx, &testpb.SimpleRequest{})
		if err != nil || resp.GetUsername() != "<no claims>" {
			t.Fatalf("public call = %v, %v", resp, err)
		}
	})

	t.Run("revoked jti", func(t *testing.T) {
		pair := e.Login("alice@example.com", "alice-password", "")
		if _, uerr, serr := call(t, client, bearer(ctx, pair.GetAccessToken())); uerr != nil || serr != nil {
			t.Fatalf("before revoke: %v / %v", uerr, serr)
		}
		if _, err := e.client.Revoke(ctx, &latchv1.RevokeRequest{Token: pair.GetAccessToken()}); err != nil {
			t.Fatal(err)
		}
		waitRejected(t, client, pair.GetAccessToken())
		_, _, serr := call(t, client, bearer(ctx, pair.GetAccessToken()))
		wantCode(t, "stream", serr, codes.Unauthenticated, "revoked")
	})
	t.Run("revoked session", func(t *testing.T) {
		pair := e.Login("alice@example.com", "alice-password", "")
		if _, err := e.client.Revoke(ctx, &latchv1.RevokeRequest{Token: pair.GetRefreshToken()}); err != nil {
			t.Fatal(err)
		}
		waitRejected(t, client, pair.GetAccessToken())
		_, _, serr := call(t, client, bearer(ctx, pair.GetAccessToken()))
		wantCode(t, "stream", serr, codes.Unauthenticated, "revoked")
	})
	t.Run("reuse detection revokes the session's access tokens", func(t *testing.T) {
		pair := e.Login("alice@example.com", "alice-password", "")
		next, err := e.client.Refresh(ctx, &latchv1.RefreshRequest{RefreshToken: pair.GetRefreshToken()})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.client.Refresh(ctx, &latchv1.RefreshRequest{RefreshToken: next.GetTokens().GetRefreshToken()}); err != nil {
			t.Fatal(err)
		}
		// Two rotations back: reuse, even within the retry window.
		_, _ = e.client.Refresh(ctx, &latchv1.RefreshRequest{RefreshToken: pair.GetRefreshToken()})
		waitRejected(t, client, pair.GetAccessToken())
	})
}

// waitRejected waits (bounded) for the revocation to arrive over the stream.
func waitRejected(t *testing.T, c testpb.TestServiceClient, tok string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := c.UnaryCall(bearer(ctxT(t), tok), &testpb.SimpleRequest{})
		if status.Code(err) == codes.Unauthenticated && strings.Contains(status.Convert(err).Message(), "revoked") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("token still accepted 10 s after its revocation (last: %v)", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestDefaultDenyAndPublicHealth(t *testing.T) {
	e := newLatch(t)
	e.AddUser("alice@example.com", "alice-password", "orders:read")
	v := newVerifier(t, e)
	alice := e.Login("alice@example.com", "alice-password", "")
	// No rule names TestService: denied even with a valid token.
	client := sibling(t, v, interceptors.NewPolicy())
	_, uerr, serr := call(t, client, bearer(ctxT(t), alice.GetAccessToken()))
	wantCode(t, "unary", uerr, codes.PermissionDenied, "not allowed by the access policy")
	wantCode(t, "stream", serr, codes.PermissionDenied, "not allowed by the access policy")
	// Without a token it is UNAUTHENTICATED first.
	_, uerr, _ = call(t, client, ctxT(t))
	wantCode(t, "unary without token", uerr, codes.Unauthenticated, "")

	// AllowAuthenticated flips the default for unnamed methods.
	open := sibling(t, v, interceptors.NewPolicy().AllowAuthenticated())
	if _, uerr, serr := call(t, open, bearer(ctxT(t), alice.GetAccessToken())); uerr != nil || serr != nil {
		t.Fatalf("AllowAuthenticated: %v / %v", uerr, serr)
	}
	_, uerr, _ = call(t, open, ctxT(t))
	wantCode(t, "AllowAuthenticated without token", uerr, codes.Unauthenticated, "")
}

func TestPolicyPanicsOnBadPattern(t *testing.T) {
	for _, p := range []string{"", "Orders/Get", "/Orders", "/a/b/c"} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Require(%q) did not panic", p)
				}
			}()
			interceptors.NewPolicy().Require(p)
		}()
	}
}
