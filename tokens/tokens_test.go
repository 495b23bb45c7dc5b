package tokens_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/latchauth/latch/tokens"
	"github.com/latchauth/latch/tokens/tokenstest"
)

func TestSignVerifyRoundTrip(t *testing.T) {
	f := newFixture(t)
	want := validClaims()
	want.Audience = []string{"billing", testAudience}
	want.Roles = []string{"reader", "introspect"}
	tok := f.mint(t, want)
	if len(tok) > 1024 {
		t.Errorf("token is %d bytes; access tokens should stay small", len(tok))
	}
	got, err := f.verify(tok)
	if err != nil {
		t.Fatal(err)
	}
	if got.Issuer != want.Issuer || got.Subject != want.Subject || got.ID != want.ID || got.SessionID != want.SessionID ||
		!got.ExpiresAt.Equal(want.ExpiresAt) || !got.IssuedAt.Equal(want.IssuedAt) || !got.NotBefore.Equal(want.NotBefore) ||
		strings.Join(got.Audience, ",") != "billing,orders" || strings.Join(got.Roles, ",") != "reader,introspect" {
		t.Fatalf("claims = %+v, want %+v", got, want)
	}
	if !got.HasRole("introspect") || got.HasRole("admin") {
		t.Fatalf("HasRole wrong for %v", got.Roles)
	}
	// The header is exactly the documented one.
	h := tokenstest.MustDecode(strings.Split(tok, ".")[0])
	wantH := `{"alg":"ES256","typ":"at+jwt","kid":"` + f.kid + `"}`
	if string(h) != wantH {
		t.Fatalf("header = %s, want %s", h, wantH)
	}
}

func TestSignRefusesIncompleteClaims(t *testing.T) {
	f := newFixture(t)
	for name, mutate := range map[string]func(*tokens.Claims){
		"no iss":         func(c *tokens.Claims) { c.Issuer = "" },
		"no sub":         func(c *tokens.Claims) { c.Subject = "" },
		"no jti":         func(c *tokens.Claims) { c.ID = "" },
		"no sid":         func(c *tokens.Claims) { c.SessionID = "" },
		"no aud":         func(c *tokens.Claims) { c.Audience = nil },
		"empty aud":      func(c *tokens.Claims) { c.Audience = []string{""} },
		"exp before iat": func(c *tokens.Claims) { c.ExpiresAt = c.IssuedAt.Add(-time.Second) },
		"no iat":         func(c *tokens.Claims) { c.IssuedAt = time.Time{} },
	} {
		t.Run(name, func(t *testing.T) {
			c := validClaims()
			mutate(&c)
			if tok, err := f.signer.Sign(c); err == nil {
				t.Fatalf("Sign = %q, want an error", tok)
			}
		})
	}
}

func TestVerifierConfig(t *testing.T) {
	f := newFixture(t)
	for name, tc := range map[string]struct {
		keys tokens.KeySource
		iss  string
		aud  []string
		opts []tokens.VerifierOption
	}{
		"no keys":        {nil, testIssuer, []string{"a"}, nil},
		"no issuer":      {f.keys, "", []string{"a"}, nil},
		"no audience":    {f.keys, testIssuer, nil, nil},
		"empty audience": {f.keys, testIssuer, []string{""}, nil},
		"leeway too big": {f.keys, testIssuer, []string{"a"}, []tokens.VerifierOption{tokens.WithLeeway(time.Minute)}},
		"negative":       {f.keys, testIssuer, []string{"a"}, []tokens.VerifierOption{tokens.WithLeeway(-time.Second)}},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := tokens.NewVerifier(tc.keys, tc.iss, tc.aud, tc.opts...); err == nil {
				t.Fatal("NewVerifier succeeded, want an error")
			}
		})
	}
}

func TestLeewayBoundaries(t *testing.T) {
	f := newFixture(t)
	c := validClaims()
	c.ExpiresAt = testNow.Add(-4 * time.Second) // within the 5 s leeway
	if _, err := f.verify(f.mint(t, c)); err != nil {
		t.Fatalf("exp 4 s ago with 5 s leeway: %v", err)
	}
	c.ExpiresAt = testNow.Add(-6 * time.Second)
	if _, err := f.verify(f.mint(t, c)); !errors.Is(err, tokens.ErrExpired) {
		t.Fatalf("exp 6 s ago: %v, want ErrExpired", err)
	}
	c = validClaims()
	c.IssuedAt, c.NotBefore = testNow.Add(4*time.Second), testNow.Add(4*time.Second)
	if _, err := f.verify(f.mint(t, c)); err != nil {
		t.Fatalf("iat 4 s ahead: %v", err)
	}
}

type errSource struct{}

func (errSource) PublicKey(context.Context, string) (*ecdsa.PublicKey, error) {
	return nil, errors.New("jwks unreachable")
}

func TestKeySourceFailureIsInvalidToken(t *testing.T) {
	f := newFixture(t)
	v, err := tokens.NewVerifier(errSource{}, testIssuer, []string{testAudience}, tokens.WithClock(func() time.Time { return testNow }))
	if err != nil {
		t.Fatal(err)
	}
	_, err = v.Verify(context.Background(), f.mint(t, validClaims()))
	if !errors.Is(err, tokens.ErrInvalidToken) || errors.Is(err, tokens.ErrUnknownKey) {
		t.Fatalf("Verify = %v, want ErrInvalidToken that is not ErrUnknownKey", err)
	}
}

func TestKeyEncodings(t *testing.T) {
	k, err := tokens.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := tokens.MarshalPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	k2, err := tokens.ParsePrivateKey(der)
	if err != nil || !k2.Equal(k) {
		t.Fatalf("private key round trip: %v", err)
	}
	pder, err := tokens.MarshalPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	p2, err := tokens.ParsePublicKey(pder)
	if err != nil || !p2.Equal(&k.PublicKey) {
		t.Fatalf("public key round trip: %v", err)
	}
	if _, err := tokens.ParsePrivateKey(pder); err == nil {
		t.Fatal("ParsePrivateKey accepted a public key")
	}
	if _, err := tokens.ParsePublicKey([]byte("junk")); err == nil {
		t.Fatal("ParsePublicKey accepted junk")
	}
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if _, err := tokens.MarshalPrivateKey(p384); err == nil {
		t.Fatal("MarshalPrivateKey accepted a P-384 key")
	}
	der384, _ := tokens.MarshalPublicKey(&p384.PublicKey)
	if der384 != nil {
		t.Fatal("MarshalPublicKey accepted a P-384 key")
	}
}

// TestThumbprint checks the RFC 7638 computation against the canonical JSON
// built independently from the JWK.
func TestThumbprint(t *testing.T) {
	k, _ := tokens.GenerateKey(rand.Reader)
	j, err := tokens.NewJWK(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	canon, _ := json.Marshal(map[string]string{"crv": "P-256", "kty": "EC", "x": j.X, "y": j.Y}) // map keys sort
	sum := sha256.Sum256(canon)
	if want := base64.RawURLEncoding.EncodeToString(sum[:]); j.Kid != want {
		t.Fatalf("kid = %s, want %s", j.Kid, want)
	}
	if len(j.X) != 43 || len(j.Y) != 43 || j.Alg != "ES256" || j.Use != "sig" || j.Kty != "EC" || j.Crv != "P-256" {
		t.Fatalf("jwk = %+v", j)
	}
	back, err := j.PublicKey()
	if err != nil || !back.Equal(&k.PublicKey) {
		t.Fatalf("JWK round trip: %v", err)
	}
}

func TestJWKPublicKeyStrict(t *testing.T) {
	k, _ := tokens.GenerateKey(rand.Reader)
	good, _ := tokens.NewJWK(&k.PublicKey)
	offCurve := good
	y := tokenstest.MustDecode(good.Y)
	y[31] ^= 1
	offCurve.Y = base64.RawURLEncoding.EncodeToString(y)
	for name, mutate := range map[string]func(*tokens.JWK){
		"kty RSA":        func(j *tokens.JWK) { j.Kty = "RSA" },
		"crv P-384":      func(j *tokens.JWK) { j.Crv = "P-384" },
		"alg RS256":      func(j *tokens.JWK) { j.Alg = "RS256" },
		"use enc":        func(j *tokens.JWK) { j.Use = "enc" },
		"no kid":         func(j *tokens.JWK) { j.Kid = "" },
		"short x":        func(j *tokens.JWK) { j.X = j.X[:40] },
		"padded x":       func(j *tokens.JWK) { j.X += "=" },
		"x with newline": func(j *tokens.JWK) { j.X = j.X[:20] + "\n" + j.X[20:] },
		"off curve":      func(j *tokens.JWK) { *j = offCurve },
	} {
		t.Run(name, func(t *testing.T) {
			j := good
			mutate(&j)
			if _, err := j.PublicKey(); err == nil {
				t.Fatal("PublicKey accepted a bad JWK")
			}
		})
	}
}

func TestParseJWKS(t *testing.T) {
	k1, _ := tokens.GenerateKey(rand.Reader)
	k2, _ := tokens.GenerateKey(rand.Reader)
	set, err := tokens.NewKeySet(&k1.PublicKey, &k2.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	doc, _ := json.Marshal(set.JWKS())
	parsed, err := tokens.ParseJWKS(doc)
	if err != nil {
		t.Fatal(err)
	}
	if parsed.Len() != 2 {
		t.Fatalf("Len = %d, want 2", parsed.Len())
	}
	for _, j := range set.JWKS().Keys {
		got, err := parsed.PublicKey(context.Background(), j.Kid)
		if err != nil {
			t.Fatalf("kid %s missing after parse: %v", j.Kid, err)
		}
		want, _ := j.PublicKey()
		if !got.Equal(want) {
			t.Fatalf("kid %s parsed to another key", j.Kid)
		}
	}
	if _, err := parsed.PublicKey(context.Background(), "nope"); !errors.Is(err, tokens.ErrUnknownKey) {
		t.Fatalf("unknown kid: %v, want ErrUnknownKey", err)
	}

	// A foreign key type is skipped; the EC key is kept.
	mixed := `{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB","kid":"r"},` + string(mustJSON(t, set.JWKS().Keys[0])) + `]}`
	if s, err := tokens.ParseJWKS([]byte(mixed)); err != nil || s.Len() != 1 {
		t.Fatalf("mixed set: %v", err)
	}

	bad := map[string]string{
		"not json":      `nope`,
		"empty set":     `{"keys":[]}`,
		"only RSA":      `{"keys":[{"kty":"RSA","kid":"r"}]}`,
		"duplicate kid": `{"keys":[` + string(mustJSON(t, set.JWKS().Keys[0])) + `,` + string(mustJSON(t, set.JWKS().Keys[0])) + `]}`,
		"bad EC key":    `{"keys":[{"kty":"EC","crv":"P-256","kid":"a","x":"AAAA","y":"AAAA"}]}`,
		"dup member":    `{"keys":[],"keys":[]}`,
		"trailing":      string(doc) + `x`,
		"too large":     `{"keys":[],"pad":"` + strings.Repeat("x", tokens.MaxJWKSSize) + `"}`,
	}
	for name, in := range bad {
		t.Run(name, func(t *testing.T) {
			if _, err := tokens.ParseJWKS([]byte(in)); err == nil {
				t.Fatal("ParseJWKS accepted it")
			}
		})
	}
	if _, err := tokens.NewKeySet(&k1.PublicKey, &k1.PublicKey); err == nil {
		t.Fatal("NewKeySet accepted a duplicate key")
	}
}

func TestJWKSIsACopy(t *testing.T) {
	k, _ := tokens.GenerateKey(rand.Reader)
	set, _ := tokens.NewKeySet(&k.PublicKey)
	j := set.JWKS()
	j.Keys[0].Kid = "changed"
	if set.JWKS().Keys[0].Kid == "changed" {
		t.Fatal("JWKS shares its slice with the set")
	}
}

// refreshKeys returns a MAC secret and a lookup that knows it alone.
func refreshKeys(t testing.TB) (tokens.RefreshKey, func(string) ([]byte, bool)) {
	t.Helper()
	key, err := tokens.NewRefreshKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key, func(id string) ([]byte, bool) {
		if id != key.ID {
			return nil, false
		}
		return key.Secret, true
	}
}

func TestRefreshTokens(t *testing.T) {
	key, lookup := refreshKeys(t)
	tok, minted, err := tokens.NewRefreshToken(rand.Reader, key, "session-1", 7)
	if err != nil {
		t.Fatal(err)
	}
	want := tokens.RefreshToken{KeyID: key.ID, SessionID: "session-1", Generation: 7, Digest: minted.Digest}
	if minted != want {
		t.Fatalf("NewRefreshToken says %+v, want %+v", minted, want)
	}
	got, err := tokens.ParseRefreshToken(tok, lookup)
	if err != nil || got != minted {
		t.Fatalf("ParseRefreshToken = %+v, %v; want %+v", got, err, minted)
	}
	raw := tokenstest.MustDecode(tok)
	if sum := sha256.Sum256(raw[:len(raw)-32]); sum != minted.Digest {
		t.Fatal("digest is not SHA-256 of the token body")
	}
	sid := strings.Repeat("s", 22)
	tok22, _, _ := tokens.NewRefreshToken(rand.Reader, key, sid, 0)
	if len(tok22) != 139 {
		t.Fatalf("token of a 22-byte session id is %d characters, want 139", len(tok22))
	}
	long, _, err := tokens.NewRefreshToken(rand.Reader, key, strings.Repeat("s", 255), 1<<63)
	if err != nil || len(long) != tokens.MaxRefreshTokenLength {
		t.Fatalf("longest token: %d characters, %v; want %d", len(long), err, tokens.MaxRefreshTokenLength)
	}
	if _, err := tokens.ParseRefreshToken(long, lookup); err != nil {
		t.Fatalf("longest token does not parse: %v", err)
	}
	tok2, minted2, _ := tokens.NewRefreshToken(rand.Reader, key, "session-1", 7)
	if tok2 == tok || minted2.Digest == minted.Digest {
		t.Fatal("two refresh tokens are equal")
	}
	// A different encoding of the same bytes must not be accepted:
	// flipping the spare low bits of the last character.
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	i := strings.IndexByte(alphabet, tok[len(tok)-1])
	alias := tok[:len(tok)-1] + string(alphabet[i^1])
	rewrite := func(edit func(b []byte) []byte) string { return b64(edit(tokenstest.MustDecode(tok))) }
	for name, in := range map[string]string{
		"empty": "", "short": tok[:len(tok)-1], "long": tok + "A", "padded": tok + "=",
		"std alphabet": strings.Repeat("+", len(tok)), "newline": tok[:20] + "\n" + tok[21:],
		"spare bits set": alias, "jwt": "a.b.c", "space": " " + tok[1:],
		"old 43-character token": strings.Repeat("A", 43),
		"version 2":              rewrite(func(b []byte) []byte { b[0] = 2; return b }),
		"empty session id":       rewrite(func(b []byte) []byte { b[17] = 0; return b }),
		"session id too long":    rewrite(func(b []byte) []byte { b[17]++; return b }),
		"trailing byte":          rewrite(func(b []byte) []byte { return append(b, 0) }),
		"too long to decode":     strings.Repeat("A", tokens.MaxRefreshTokenLength+1),
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := tokens.ParseRefreshToken(in, lookup); !errors.Is(err, tokens.ErrMalformedRefreshToken) {
				t.Fatalf("ParseRefreshToken = %v, want ErrMalformedRefreshToken", err)
			}
		})
	}
}

// TestRefreshTokenMAC: a token whose session id, generation or random part
// was changed, or that was minted under another secret, is refused before
// anything it names could be trusted; one naming an unknown secret is told
// apart (so that a server can reload its secrets).
func TestRefreshTokenMAC(t *testing.T) {
	key, lookup := refreshKeys(t)
	other, _ := refreshKeys(t)
	tok, _, err := tokens.NewRefreshToken(rand.Reader, key, "session-1", 7)
	if err != nil {
		t.Fatal(err)
	}
	flip := func(at int) string {
		b := tokenstest.MustDecode(tok)
		b[at] ^= 1
		return b64(b)
	}
	forgedWithOther, _, _ := tokens.NewRefreshToken(rand.Reader, tokens.RefreshKey{ID: key.ID, Secret: other.Secret}, "session-1", 3)
	for name, in := range map[string]string{
		"generation":     flip(16),
		"session id":     flip(18),
		"random part":    flip(18 + len("session-1")),
		"mac":            flip(len(tokenstest.MustDecode(tok)) - 1),
		"another secret": forgedWithOther,
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := tokens.ParseRefreshToken(in, lookup); !errors.Is(err, tokens.ErrRefreshTokenForged) {
				t.Fatalf("ParseRefreshToken = %v, want ErrRefreshTokenForged", err)
			}
		})
	}
	unknown, _, _ := tokens.NewRefreshToken(rand.Reader, other, "session-1", 7)
	if _, err := tokens.ParseRefreshToken(unknown, lookup); !errors.Is(err, tokens.ErrUnknownRefreshKey) {
		t.Fatalf("token of an unknown secret: %v, want ErrUnknownRefreshKey", err)
	}
	for name, mint := range map[string]func() error{
		"bad key id": func() error {
			_, _, err := tokens.NewRefreshToken(rand.Reader, tokens.RefreshKey{ID: "x", Secret: key.Secret}, "s", 0)
			return err
		},
		"short secret": func() error {
			_, _, err := tokens.NewRefreshToken(rand.Reader, tokens.RefreshKey{ID: key.ID, Secret: key.Secret[:16]}, "s", 0)
			return err
		},
		"no session id": func() error { _, _, err := tokens.NewRefreshToken(rand.Reader, key, "", 0); return err },
		"long session id": func() error {
			_, _, err := tokens.NewRefreshToken(rand.Reader, key, strings.Repeat("s", 256), 0)
			return err
		},
	} {
		if err := mint(); err == nil {
			t.Errorf("NewRefreshToken with %s succeeded", name)
		}
	}
	if !tokens.ValidRefreshKeyID(key.ID) || tokens.ValidRefreshKeyID(key.ID+"A") || tokens.ValidRefreshKeyID("") {
		t.Error("ValidRefreshKeyID does not accept exactly NewRefreshKey's ids")
	}
}

func TestNewIDAndRandomnessFailure(t *testing.T) {
	id, err := tokens.NewID(rand.Reader)
	if err != nil || len(id) != 22 {
		t.Fatalf("NewID = %q, %v", id, err)
	}
	if _, err := tokens.NewID(bytes.NewReader(nil)); err == nil {
		t.Fatal("NewID succeeded with no randomness")
	}
	key, _ := refreshKeys(t)
	if _, _, err := tokens.NewRefreshToken(bytes.NewReader(make([]byte, 31)), key, "s", 0); err == nil {
		t.Fatal("NewRefreshToken succeeded with short randomness")
	}
	if _, err := tokens.NewRefreshKey(bytes.NewReader(make([]byte, 39))); err == nil {
		t.Fatal("NewRefreshKey succeeded with short randomness")
	}
}

// TestReason: every Verify failure with a reason names exactly the
// sentinel errors.Is finds, and other errors name none.
func TestReason(t *testing.T) {
	f := newFixture(t)
	c := validClaims()
	c.ExpiresAt = testNow.Add(-6 * time.Second) // beyond the 5 s leeway
	_, err := f.verify(f.mint(t, c))
	if r := tokens.Reason(err); r != tokens.ErrExpired || !errors.Is(err, r) {
		t.Fatalf("Reason(expired) = %v (err %v), want ErrExpired", r, err)
	}
	_, err = f.verify("not.a.token!")
	if r := tokens.Reason(err); r != tokens.ErrMalformed {
		t.Fatalf("Reason(malformed) = %v (err %v), want ErrMalformed", r, err)
	}
	if r := tokens.Reason(fmt.Errorf("%w: key lookup: %w", tokens.ErrInvalidToken, errors.New("store down"))); r != nil {
		t.Fatalf("Reason(key source failure) = %v, want nil", r)
	}
	if r := tokens.Reason(nil); r != nil {
		t.Fatalf("Reason(nil) = %v, want nil", r)
	}
}
