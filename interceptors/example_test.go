package interceptors_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"log"
	"time"

	"github.com/latchauth/latch/interceptors"
	"github.com/latchauth/latch/tokens"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
)

// A sibling service protects its methods with Latch tokens. Here the keys
// come from a static JWKS so that the example runs on its own; a real
// service uses WithJWKSFromGRPC(latchConn) or WithJWKSURL(url).
func ExampleNewVerifier() {
	// What Latch publishes (normally fetched for you).
	key, _ := tokens.GenerateKey(rand.Reader)
	published, _ := tokens.NewKeySet(&key.PublicKey)
	jwks, _ := json.Marshal(published.JWKS())

	v, err := interceptors.NewVerifier(context.Background(),
		interceptors.WithStaticJWKS(bytes.NewReader(jwks)),
		interceptors.WithIssuer("https://latch.example"),
		interceptors.WithAudience("orders"))
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

// A client logs in once; the credentials keep its access token fresh and
// attach it to every call.
func ExampleLogin() {
	ctx := context.Background()
	latch, err := grpc.NewClient("latch.internal:7300", grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatal(err)
	}
	creds, err := interceptors.Login(ctx, latch, "svc@example.com", "from-a-secret-store", "orders")
	if err != nil {
		log.Fatal(err)
	}
	orders, err := grpc.NewClient("orders.internal:443",
		grpc.WithTransportCredentials(insecure.NewCredentials()), // use TLS: creds require it
		grpc.WithPerRPCCredentials(creds))
	if err != nil {
		log.Fatal(err)
	}
	defer orders.Close()
}

// Inside the process that owns the keys and the revocation state (Latch
// itself, or a service that manages its own keys), the Verifier uses them
// directly: no fetching, and a revocation check on every call.
func ExampleWithKeySource() {
	key, _ := tokens.GenerateKey(rand.Reader)
	owned, _ := tokens.NewKeySet(&key.PublicKey) // Latch passes server.KeySource()
	revoked := map[string]bool{"jti_revoked": true}

	v, err := interceptors.NewVerifier(context.Background(),
		interceptors.WithKeySource(owned),
		interceptors.WithRevocationCheck(func(_ context.Context, c interceptors.Claims) (bool, error) {
			return revoked[c.ID], nil // Latch passes server.TokenRevoked (its store)
		}),
		interceptors.WithIssuer("https://latch.example"),
		interceptors.WithAudience("orders"))
	if err != nil {
		log.Fatal(err)
	}
	defer v.Close()

	signer, _ := tokens.NewSigner(key)
	now := time.Now()
	mint := func(jti string) string {
		tok, _ := signer.Sign(tokens.Claims{Issuer: "https://latch.example", Subject: "u_123", Audience: []string{"orders"},
			IssuedAt: now, ExpiresAt: now.Add(15 * time.Minute), ID: jti, SessionID: "sid_1"})
		return tok
	}
	_, err = v.Verify(context.Background(), mint("jti_ok"))
	fmt.Println(err)
	_, err = v.Verify(context.Background(), mint("jti_revoked"))
	fmt.Println(err)
	// Output:
	// <nil>
	// interceptors: token revoked
}

// A service reports whether its Verifier's keys and revocations are fresh
// under the grpc.health.v1 service "latch.verifier".
func ExampleVerifier_ReportHealth() {
	key, _ := tokens.GenerateKey(rand.Reader)
	published, _ := tokens.NewKeySet(&key.PublicKey)
	jwks, _ := json.Marshal(published.JWKS())
	v, err := interceptors.NewVerifier(context.Background(),
		interceptors.WithStaticJWKS(bytes.NewReader(jwks)),
		interceptors.WithIssuer("https://latch.example"),
		interceptors.WithAudience("orders"),
		interceptors.WithMaxRevocationLag(time.Minute), // stale beyond this: NOT_SERVING
		interceptors.WithStalePolicy(interceptors.FailClosed))
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
func ExampleWithRevocationCredentials() {
	ctx := context.Background()
	const latchIssuer = "https://latch.example"
	latch, err := grpc.NewClient("latch.internal:7300", grpc.WithTransportCredentials(insecure.NewCredentials())) // use TLS
	if err != nil {
		log.Fatal(err)
	}
	password := func(context.Context) (string, error) { return "from-a-secret-store", nil }
	login := interceptors.PasswordLogin(latch, "svc@example.com", latchIssuer, password)
	pair, err := login(ctx)
	if err != nil {
		log.Fatal(err)
	}
	creds, err := interceptors.NewRefreshingCredentials(latch, pair, interceptors.Relogin(login))
	if err != nil {
		log.Fatal(err)
	}
	v, err := interceptors.NewVerifier(ctx,
		interceptors.WithJWKSFromGRPC(latch),
		interceptors.WithIssuer(latchIssuer),
		interceptors.WithAudience("orders"),
		interceptors.WithRevocationsFromGRPC(latch), // latch carries no per-RPC credentials
		interceptors.WithRevocationCredentials(creds))
	if err != nil {
		log.Fatal(err)
	}
	defer v.Close()
}
