package interceptors_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/latchauth/latch/interceptors"
	"github.com/latchauth/latch/tokens"
	"github.com/latchauth/latch/tokens/tokenstest"
)

// TestAttackCorpusAgainstInterceptors: the interceptors' Verifier refuses
// every attack of the shared corpus with the same reason as the tokens
// package (it is the same verifier), cached or not.
func TestAttackCorpusAgainstInterceptors(t *testing.T) {
	key := newKey(t)
	set, _ := tokens.NewKeySet(&key.PublicKey)
	doc, _ := json.Marshal(set.JWKS())
	now := time.Now().Truncate(time.Second)
	v, err := interceptors.NewVerifier(context.Background(),
		interceptors.Config{Issuer: issuer, Audience: []string{"orders"}, Keys: interceptors.StaticJWKS(doc)},
		interceptors.WithLeeway(5*time.Second),
		interceptors.WithClock(func() time.Time { return now }))
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	k := tokenstest.NewKit(t, key)
	k.Issuer, k.Audience, k.Now, k.Leeway = issuer, "orders", now, 5*time.Second
	for _, a := range tokenstest.Corpus() {
		t.Run(a.Name, func(t *testing.T) {
			tok := a.Token(t, k)
			for range 2 { // the second pass would hit the cache if the first had wrongly accepted
				_, err := v.Verify(context.Background(), tok)
				if a.Want == nil {
					if err != nil {
						t.Fatalf("genuine token (%s): %v", a.Source, err)
					}
					continue
				}
				if !errors.Is(err, a.Want) {
					t.Fatalf("Verify = %v, want %v (%s)", err, a.Want, a.Source)
				}
			}
		})
	}
}
