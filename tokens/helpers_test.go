package tokens_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"testing"
	"time"

	"github.com/latchauth/latch/tokens"
	"github.com/latchauth/latch/tokens/tokenstest"
)

const (
	testIssuer   = "https://latch.test"
	testAudience = "orders"
)

// testNow is the fixed clock of every verification test.
var testNow = time.Unix(1_800_000_000, 0)

type fixture struct {
	key    *ecdsa.PrivateKey
	kid    string
	signer *tokens.Signer
	keys   *tokens.KeySet
	v      *tokens.Verifier
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	key, err := tokens.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := tokens.NewSigner(key)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := tokens.NewKeySet(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	v, err := tokens.NewVerifier(keys, testIssuer, []string{testAudience},
		tokens.WithLeeway(5*time.Second), tokens.WithClock(func() time.Time { return testNow }))
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{key: key, kid: signer.KeyID(), signer: signer, keys: keys, v: v}
}

// kit returns the attack-corpus kit for this fixture's key and verifier.
func (f *fixture) kit(tb testing.TB) *tokenstest.Kit {
	k := tokenstest.NewKit(tb, f.key)
	k.Issuer, k.Audience, k.Now, k.Leeway = testIssuer, testAudience, testNow, 5*time.Second
	return k
}

func validClaims() tokens.Claims {
	return tokens.Claims{
		Issuer: testIssuer, Subject: "user-1", Audience: []string{testAudience},
		IssuedAt: testNow.Add(-time.Minute), NotBefore: testNow.Add(-time.Minute), ExpiresAt: testNow.Add(14 * time.Minute),
		ID: "jti-1", SessionID: "sid-1", Roles: []string{"reader"},
	}
}

func (f *fixture) mint(t testing.TB, c tokens.Claims) string {
	t.Helper()
	tok, err := f.signer.Sign(c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func (f *fixture) verify(tok string) (tokens.Claims, error) {
	return f.v.Verify(context.Background(), tok)
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
