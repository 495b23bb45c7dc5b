package tokens_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/latchauth/latch/tokens"
)

// Mint an access token and verify it against the published key set, as a
// sibling service would after fetching /.well-known/jwks.json.
func Example() {
	key, _ := tokens.GenerateKey(rand.Reader)
	signer, _ := tokens.NewSigner(key)

	now := time.Now()
	tok, _ := signer.Sign(tokens.Claims{
		Issuer: "https://latch.example", Subject: "u_123", Audience: []string{"orders"},
		IssuedAt: now, NotBefore: now, ExpiresAt: now.Add(15 * time.Minute),
		ID: "jti_1", SessionID: "sid_1", Roles: []string{"reader"},
	})

	published, _ := tokens.NewKeySet(&key.PublicKey)
	doc, _ := json.Marshal(published.JWKS()) // what Latch serves
	keys, _ := tokens.ParseJWKS(doc)         // what a verifier fetches

	v, _ := tokens.NewVerifier(keys, "https://latch.example", []string{"orders"}, tokens.WithLeeway(5*time.Second))
	claims, err := v.Verify(context.Background(), tok)
	fmt.Println(claims.Subject, claims.SessionID, claims.Roles, err)
	// Output: u_123 sid_1 [reader] <nil>
}

// Every failure wraps ErrInvalidToken and names one reason.
func ExampleVerifier_Verify_reasons() {
	key, _ := tokens.GenerateKey(rand.Reader)
	signer, _ := tokens.NewSigner(key)
	keys, _ := tokens.NewKeySet(&key.PublicKey)
	v, _ := tokens.NewVerifier(keys, "https://latch.example", []string{"orders"})

	past := time.Now().Add(-time.Hour)
	expired, _ := signer.Sign(tokens.Claims{
		Issuer: "https://latch.example", Subject: "u_123", Audience: []string{"orders"},
		IssuedAt: past, ExpiresAt: past.Add(15 * time.Minute), ID: "jti_2", SessionID: "sid_1",
	})
	_, err := v.Verify(context.Background(), expired)
	fmt.Println(errors.Is(err, tokens.ErrInvalidToken), errors.Is(err, tokens.ErrExpired))

	_, err = v.Verify(context.Background(), "eyJhbGciOiJub25lIn0.e30.")
	fmt.Println(errors.Is(err, tokens.ErrInvalidToken), errors.Is(err, tokens.ErrMalformed))
	// Output:
	// true true
	// true true
}

// Refresh tokens are opaque; only their digest is stored.
func ExampleHashRefreshToken() {
	tok, digest, _ := tokens.NewRefreshToken(rand.Reader)
	again, err := tokens.HashRefreshToken(tok)
	fmt.Println(len(tok), again == digest, err)
	// Output: 43 true <nil>
}
