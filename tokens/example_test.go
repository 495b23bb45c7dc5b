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

// Refresh tokens are opaque to clients; the server reads its session id
// and generation back once the MAC verifies, and stores only the digest.
func ExampleParseRefreshToken() {
	key, _ := tokens.NewRefreshKey(rand.Reader)
	tok, minted, _ := tokens.NewRefreshToken(rand.Reader, key, "Gq3bK0jW9xWZ2tqfYb3X1w", 4)
	got, err := tokens.ParseRefreshToken(tok, func(id string) ([]byte, bool) {
		return key.Secret, id == key.ID
	})
	fmt.Println(len(tok), got.SessionID, got.Generation, got.Digest == minted.Digest, err)
	// Output: 139 Gq3bK0jW9xWZ2tqfYb3X1w 4 true <nil>
}
