package interceptors_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"log"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/auth"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"github.com/latchauth/latch/interceptors"
	"github.com/latchauth/latch/interceptors/clientcreds"
	"github.com/latchauth/latch/tokens"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
)

// A sibling service protects its methods with Latch tokens. Here the keys
// come from a static JWKS so that the example runs on its own; a real
// service uses JWKSFromGRPC(latchConn) or JWKSURL(url).
func ExampleNewVerifier() {
	// What Latch publishes (normally fetched for you).
	key, _ := tokens.GenerateKey(rand.Reader)
	published, _ := tokens.NewKeySet(&key.PublicKey)
	jwks, _ := json.Marshal(published.JWKS())

	v, err := interceptors.NewVerifier(context.Background(), interceptors.Config{
		Issuer:   "https://latch.example",
		Audience: []string{"orders"},
		Keys:     interceptors.StaticJWKS(jwks),
	})
	if err != nil {
		log.Fatal(err)
	}
	defer v.Close()

	policy := interceptors.NewPolicy().
		Require("/orders.v1.Orders/", "orders:read").
		Require("/orders.v1.Orders/CancelOrder", "orders:write")
	srv := grpc.NewServer(
		grpc.ChainUnaryInterceptor(v.UnaryServerInterceptor(policy)),
		grpc.ChainStreamInterceptor(v.StreamServerInterceptor(policy)))
	defer srv.Stop()

	// A token as Latch would mint it, verified the way the interceptors do.
	signer, _ := tokens.NewSigner(key)
	now := time.Now()
	tok, _ := signer.Sign(tokens.Claims{Issuer: "https://latch.example", Subject: "u_123", Audience: []string{"orders"},
		IssuedAt: now, ExpiresAt: now.Add(15 * time.Minute), ID: "jti_1", SessionID: "sid_1", Roles: []string{"orders:read"}})
	claims, err := v.Verify(context.Background(), tok)
	fmt.Println(claims.Subject, claims.Roles, err)
	// Output: u_123 [orders:read] <nil>
}

// A service that composes its own go-grpc-middleware chain puts the
// Verifier's AuthFunc in it, here before recovery.
func ExampleVerifier_AuthFunc() {
	ctx := context.Background()
	latch, err := grpc.NewClient("latch.internal:7300", grpc.WithTransportCredentials(insecure.NewCredentials())) // use TLS
	if err != nil {
		log.Fatal(err)
	}
	v, err := interceptors.NewVerifier(ctx, interceptors.Config{
		Issuer:   "https://latch.example",
		Audience: []string{"orders"},
		Keys:     interceptors.JWKSFromGRPC(latch),
	}, interceptors.WithLazyStart())
	if err != nil {
		log.Fatal(err)
	}
	defer v.Close()
	authFn := v.AuthFunc(interceptors.NewPolicy().Require("/orders.v1.Orders/", "orders:read"))
	srv := grpc.NewServer(
		grpc.ChainUnaryInterceptor(auth.UnaryServerInterceptor(authFn), recovery.UnaryServerInterceptor()),
		grpc.ChainStreamInterceptor(auth.StreamServerInterceptor(authFn), recovery.StreamServerInterceptor()))
	defer srv.Stop()
}

// Inside a handler, the verified claims are on the context.
func ExampleClaimsFromContext() {
	handler := func(ctx context.Context) string {
		c, ok := interceptors.ClaimsFromContext(ctx)
		if !ok {
			return "public call"
		}
		return "called by " + c.Subject + " in session " + c.SessionID
	}
	ctx := interceptors.ContextWithClaims(context.Background(), interceptors.Claims{Subject: "u_123", SessionID: "sid_1"})
	fmt.Println(handler(ctx))
	fmt.Println(handler(context.Background()))
	// Output:
	// called by u_123 in session sid_1
	// public call
}

// A service reports whether its Verifier's keys and revocations are fresh
// under the grpc.health.v1 service "latch.verifier".
func ExampleVerifier_ReportHealth() {
	key, _ := tokens.GenerateKey(rand.Reader)
	published, _ := tokens.NewKeySet(&key.PublicKey)
	jwks, _ := json.Marshal(published.JWKS())
	v, err := interceptors.NewVerifier(context.Background(),
		interceptors.Config{Issuer: "https://latch.example", Audience: []string{"orders"}, Keys: interceptors.StaticJWKS(jwks)},
		interceptors.WithMaxRevocationLag(time.Minute)) // stale beyond this: NOT_SERVING
	if err != nil {
		log.Fatal(err)
	}
	defer v.Close()

	hs := health.NewServer() // register it on the service's gRPC server
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go v.ReportHealth(ctx, hs, 5*time.Second)

	fmt.Println(v.UpdateHealth(hs).Serving())
	// Output: true
}

// A sibling service follows Latch's revocations with credentials of its
// own, logged in for Latch's own audience (its issuer) and able to log in
// again when their session ends, reading the password each time.
func ExampleWithRevocations() {
	ctx := context.Background()
	const latchIssuer = "https://latch.example"
	latch, err := grpc.NewClient("latch.internal:7300", grpc.WithTransportCredentials(insecure.NewCredentials())) // use TLS
	if err != nil {
		log.Fatal(err)
	}
	password := func(context.Context) (string, error) { return "from-a-secret-store", nil }
	login := clientcreds.PasswordLogin(latch, "svc@example.com", latchIssuer, password)
	pair, err := login(ctx)
	if err != nil {
		log.Fatal(err)
	}
	creds, err := clientcreds.New(latch, pair, clientcreds.WithRelogin(login))
	if err != nil {
		log.Fatal(err)
	}
	v, err := interceptors.NewVerifier(ctx, interceptors.Config{
		Issuer:   latchIssuer,
		Audience: []string{"orders"},
		Keys:     interceptors.JWKSFromGRPC(latch),
	}, interceptors.WithRevocations(latch, creds)) // latch carries no per-RPC credentials of its own
	if err != nil {
		log.Fatal(err)
	}
	defer v.Close()
}
