package interceptors_test

import (
	"context"
	"encoding/json"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/auth"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"github.com/latchauth/latch/interceptors"
	"github.com/latchauth/latch/tokens"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
)

// TestAuthFuncInOwnChain: a service that composes its own go-grpc-middleware
// chain (auth, then recovery) with the exported AuthFunc gets what the
// ready-made interceptors give, on unary calls and streams: claims on the
// context for a valid token, UNAUTHENTICATED without one, PERMISSION_DENIED
// without the role, and public methods reachable without a token.
func TestAuthFuncInOwnChain(t *testing.T) {
	k := newKey(t)
	set, _ := tokens.NewKeySet(&k.PublicKey)
	doc, _ := json.Marshal(set.JWKS())
	v, err := interceptors.NewVerifier(ctxT(t), interceptors.Config{Issuer: issuer, Audience: []string{"orders"},
		Keys: interceptors.StaticJWKS(doc)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	policy := interceptors.NewPolicy().
		Require("/grpc.testing.TestService/", "orders:read").
		Require("/grpc.testing.TestService/CacheableUnaryCall", "orders:write").
		Public("/grpc.testing.TestService/EmptyCall")
	af := v.AuthFunc(policy)

	lis := bufconn.Listen(1 << 20)
	gs := grpc.NewServer(
		grpc.ChainUnaryInterceptor(auth.UnaryServerInterceptor(af), recovery.UnaryServerInterceptor()),
		grpc.ChainStreamInterceptor(auth.StreamServerInterceptor(af), recovery.StreamServerInterceptor()))
	testpb.RegisterTestServiceServer(gs, testService{})
	go func() { _ = gs.Serve(lis) }()
	conn, err := grpc.NewClient("passthrough:///own-chain",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(); gs.Stop() })
	c := testpb.NewTestServiceClient(conn)

	tok := mint(t, k, time.Now())
	resp, err := c.UnaryCall(bearer(ctxT(t), tok), &testpb.SimpleRequest{})
	if err != nil || resp.GetUsername() != "u1" {
		t.Fatalf("valid token: %v, %v; want the caller's subject u1", resp.GetUsername(), err)
	}
	st, err := c.StreamingOutputCall(bearer(ctxT(t), tok), &testpb.StreamingOutputCallRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if msg, err := st.Recv(); err != nil || string(msg.GetPayload().GetBody()) != "u1" {
		t.Fatalf("valid token on a stream: %q, %v; want u1", msg.GetPayload().GetBody(), err)
	}
	for _, tc := range []struct {
		name string
		call func() error
		code codes.Code
		msg  string
	}{
		{"no token", func() error { _, err := c.UnaryCall(ctxT(t), &testpb.SimpleRequest{}); return err },
			codes.Unauthenticated, "missing bearer token"},
		{"no token, stream", func() error {
			st, err := c.StreamingOutputCall(ctxT(t), &testpb.StreamingOutputCallRequest{})
			if err == nil {
				_, err = st.Recv()
			}
			return err
		}, codes.Unauthenticated, "missing bearer token"},
		{"bad token", func() error { _, err := c.UnaryCall(bearer(ctxT(t), tok+"x"), &testpb.SimpleRequest{}); return err },
			codes.Unauthenticated, "invalid bearer token"},
		{"missing role", func() error {
			_, err := c.CacheableUnaryCall(bearer(ctxT(t), tok), &testpb.SimpleRequest{})
			return err
		}, codes.PermissionDenied, "orders:write"},
		{"public without token", func() error { _, err := c.EmptyCall(ctxT(t), &testpb.Empty{}); return err },
			codes.OK, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if status.Code(err) != tc.code || !strings.Contains(status.Convert(err).Message(), tc.msg) {
				t.Fatalf("got %v, want %v with a message containing %q", err, tc.code, tc.msg)
			}
			if strings.Contains(status.Convert(err).Message(), tok) {
				t.Fatal("the message holds the token")
			}
		})
	}
}

// TestConfigProblemsAtOnce: NewVerifier names every missing or bad setting
// in one error, and says how to fix each.
func TestConfigProblemsAtOnce(t *testing.T) {
	_, err := interceptors.NewVerifier(ctxT(t), interceptors.Config{},
		interceptors.WithCacheSize(-1), interceptors.WithRefreshInterval(-time.Second))
	if err == nil {
		t.Fatal("NewVerifier(Config{}) succeeded")
	}
	for _, want := range []string{"Config.Issuer", "Config.Audience", "Config.Keys", "WithCacheSize", "WithRefreshInterval"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
	_, err = interceptors.NewVerifier(ctxT(t), interceptors.Config{Issuer: issuer, Audience: []string{"orders"},
		Keys: interceptors.StaticJWKS([]byte("nope"))})
	if err == nil || !strings.Contains(err.Error(), "StaticJWKS") {
		t.Fatalf("malformed static JWKS: %v, want an error naming StaticJWKS", err)
	}
}
