// Package tokenstest holds Latch's JWT attack corpus and the kit that builds
// its tokens, so that the tokens package and every service that verifies
// Latch tokens (server, interceptors) run the same table against their own
// keys and clocks. It is for tests only.
package tokenstest

import (
	"crypto/ecdsa"
	"encoding/base64"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/latchauth/latch/tokens"
)

// Kit is what the corpus needs to build tokens against one verifier: the
// genuine signing key, the claims a genuine token carries and the
// verifier's clock and leeway.
type Kit struct {
	// Key is the genuine signing key (its thumbprint is KID).
	Key *ecdsa.PrivateKey
	KID string
	// Issuer and Audience are what the verifier expects.
	Issuer, Audience string
	// Subject, SessionID and JTI go into genuine tokens; a server test uses
	// a real, live session so that genuine tokens are active.
	Subject, SessionID, JTI string
	// Roles go into genuine tokens.
	Roles []string
	// Now is the verifier's clock; Leeway its clock-skew allowance.
	Now    time.Time
	Leeway time.Duration
}

// NewKit returns a kit for key. The caller fills in the rest.
func NewKit(tb testing.TB, key *ecdsa.PrivateKey) *Kit {
	tb.Helper()
	kid, err := tokens.Thumbprint(&key.PublicKey)
	if err != nil {
		tb.Fatal(err)
	}
	return &Kit{Key: key, KID: kid, Subject: "user-1", SessionID: "sid-1", JTI: "jti-1", Roles: []string{"reader"}}
}

// Header returns a genuine header as a map to tamper with.
func (k *Kit) Header() map[string]any {
	return map[string]any{"alg": "ES256", "typ": "at+jwt", "kid": k.KID}
}

// Claims returns genuine claims as a map to tamper with.
func (k *Kit) Claims() map[string]any {
	return map[string]any{
		"iss": k.Issuer, "sub": k.Subject, "aud": k.Audience,
		"exp": k.Now.Add(14 * time.Minute).Unix(), "iat": k.Now.Add(-time.Minute).Unix(),
		"nbf": k.Now.Add(-time.Minute).Unix(), "jti": k.JTI, "sid": k.SessionID, "roles": k.Roles,
	}
}

// ValidClaims returns the genuine claims as tokens.Claims.
func (k *Kit) ValidClaims() tokens.Claims {
	return tokens.Claims{
		Issuer: k.Issuer, Subject: k.Subject, Audience: []string{k.Audience},
		IssuedAt: k.Now.Add(-time.Minute), NotBefore: k.Now.Add(-time.Minute), ExpiresAt: k.Now.Add(14 * time.Minute),
		ID: k.JTI, SessionID: k.SessionID, Roles: k.Roles,
	}
}

// MintValid returns a genuine token signed by the tokens package's Signer.
func (k *Kit) MintValid(tb testing.TB) string {
	tb.Helper()
	s, err := tokens.NewSigner(k.Key)
	if err != nil {
		tb.Fatal(err)
	}
	tok, err := s.Sign(k.ValidClaims())
	if err != nil {
		tb.Fatal(err)
	}
	return tok
}

// SignRaw signs arbitrary header and claims bytes with the genuine key, so
// that an attack reaches the checks that run after the signature.
func (k *Kit) SignRaw(tb testing.TB, header, claims []byte) string {
	tb.Helper()
	signing := b64(header) + "." + b64(claims)
	sig, err := jwt.SigningMethodES256.Sign(signing, k.Key)
	if err != nil {
		tb.Fatal(err)
	}
	return signing + "." + b64(sig)
}

// SignMaps signs a header and claims given as maps.
func (k *Kit) SignMaps(tb testing.TB, h, p map[string]any) string {
	tb.Helper()
	return k.SignRaw(tb, mustJSON(tb, h), mustJSON(tb, p))
}

// fill replaces {ISS}, {AUD}, {EXP} and {IAT} in a raw claims template.
func (k *Kit) fill(s string) string {
	return strings.NewReplacer("{ISS}", k.Issuer, "{AUD}", k.Audience,
		"{EXP}", strconv.FormatInt(k.Now.Add(14*time.Minute).Unix(), 10),
		"{IAT}", strconv.FormatInt(k.Now.Add(-time.Minute).Unix(), 10)).Replace(s)
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func mustJSON(tb testing.TB, v any) []byte {
	tb.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}
