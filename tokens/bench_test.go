package tokens_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/latchauth/latch/tokens"
	"github.com/latchauth/latch/tokens/tokenstest"
)

// The raw limits the verifier is measured against, in the same run:
// BenchmarkRawECDSAVerify and BenchmarkRawGolangJWTParse. The ratio
// BenchmarkVerify / BenchmarkRawECDSAVerify is the cost of strictness.

func BenchmarkRawECDSAVerify(b *testing.B) {
	k, _ := tokens.GenerateKey(rand.Reader)
	digest := sha256.Sum256([]byte("latch"))
	sig, _ := ecdsa.SignASN1(rand.Reader, k, digest[:])
	b.ReportAllocs()
	for b.Loop() {
		if !ecdsa.VerifyASN1(&k.PublicKey, digest[:], sig) {
			b.Fatal("verify failed")
		}
	}
}

func BenchmarkRawECDSASign(b *testing.B) {
	k, _ := tokens.GenerateKey(rand.Reader)
	digest := sha256.Sum256([]byte("latch"))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ecdsa.SignASN1(rand.Reader, k, digest[:]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRawGolangJWTParse is golang-jwt's own ES256 parse+verify of the
// same token with the usual options: the library baseline.
func BenchmarkRawGolangJWTParse(b *testing.B) {
	f := newFixture(b)
	tok := f.mint(b, validClaims())
	p := jwt.NewParser(jwt.WithValidMethods([]string{"ES256"}), jwt.WithIssuer(testIssuer),
		jwt.WithAudience(testAudience), jwt.WithExpirationRequired(), jwt.WithTimeFunc(func() time.Time { return testNow }))
	keyFunc := func(*jwt.Token) (any, error) { return &f.key.PublicKey, nil }
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.Parse(tok, keyFunc); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerify(b *testing.B) {
	f := newFixture(b)
	tok := f.mint(b, validClaims())
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := f.v.Verify(ctx, tok); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyRejectMalformed measures the cost of refusing garbage: it
// must stay far below a signature verification.
func BenchmarkVerifyRejectMalformed(b *testing.B) {
	f := newFixture(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := f.v.Verify(ctx, "eyJhbGciOiJub25lIn0.e30."); err == nil {
			b.Fatal("accepted")
		}
	}
}

func BenchmarkSign(b *testing.B) {
	f := newFixture(b)
	c := validClaims()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := f.signer.Sign(c); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseRefreshToken(b *testing.B) {
	key, lookup := refreshKeys(b)
	tok, _, _ := tokens.NewRefreshToken(rand.Reader, key, "Gq3bK0jW9xWZ2tqfYb3X1w", 1)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := tokens.ParseRefreshToken(tok, lookup); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyAttackCorpus verifies every token of the attack corpus once
// per iteration: the cost of refusing the whole corpus (about 100 tokens,
// including a 10 MB one and a 1 MB header), bounded by the length check
// that runs before any decoding.
func BenchmarkVerifyAttackCorpus(b *testing.B) {
	f := newFixture(b)
	k := f.kit(b)
	var toks []string
	for _, a := range tokenstest.Corpus() {
		toks = append(toks, a.Token(b, k))
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		for _, tok := range toks {
			_, _ = f.v.Verify(ctx, tok)
		}
	}
	b.ReportMetric(float64(len(toks)), "tokens/op")
}

// BenchmarkVerifyInterleaved runs Verify, golang-jwt's own ES256
// parse+verify of the same token and a raw ecdsa.VerifyASN1 one after the
// other in every iteration, so that a noisy, shared machine slows all three
// alike, and reports the ratios: verify/jwt is the cost of Latch's
// strictness over the library alone (the interceptor target is ≤ 1.15),
// verify/ecdsa over the bare signature check.
func BenchmarkVerifyInterleaved(b *testing.B) {
	f := newFixture(b)
	tok := f.mint(b, validClaims())
	p := jwt.NewParser(jwt.WithValidMethods([]string{"ES256"}), jwt.WithIssuer(testIssuer),
		jwt.WithAudience(testAudience), jwt.WithExpirationRequired(), jwt.WithTimeFunc(func() time.Time { return testNow }))
	keyFunc := func(*jwt.Token) (any, error) { return &f.key.PublicKey, nil }
	digest := sha256.Sum256([]byte("latch"))
	sig, _ := ecdsa.SignASN1(rand.Reader, f.key, digest[:])
	ctx := context.Background()
	var tVerify, tJWT, tECDSA time.Duration
	for b.Loop() {
		t0 := time.Now()
		if _, err := f.v.Verify(ctx, tok); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if _, err := p.Parse(tok, keyFunc); err != nil {
			b.Fatal(err)
		}
		t2 := time.Now()
		if !ecdsa.VerifyASN1(&f.key.PublicKey, digest[:], sig) {
			b.Fatal("verify failed")
		}
		t3 := time.Now()
		tVerify, tJWT, tECDSA = tVerify+t1.Sub(t0), tJWT+t2.Sub(t1), tECDSA+t3.Sub(t2)
	}
	b.ReportMetric(float64(tVerify)/float64(tJWT), "verify/jwt")
	b.ReportMetric(float64(tVerify)/float64(tECDSA), "verify/ecdsa")
	b.ReportMetric(float64(tVerify.Nanoseconds())/float64(b.N), "verify-ns/op")
}
