package tokens_test

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/latchauth/latch/tokens"
	"github.com/latchauth/latch/tokens/tokenstest"
)

// FuzzVerify feeds arbitrary strings to the verifier, seeded with the whole
// attack corpus, a valid token and testdata/verify-seeds.txt. Nothing may
// panic, every failure must wrap ErrInvalidToken, and anything accepted must
// re-verify to the same claims (determinism) with all required claims set.
func FuzzVerify(f *testing.F) {
	fx := newFixture(f)
	k := fx.kit(f)
	for _, a := range tokenstest.Corpus() {
		if tok := a.Token(f, k); len(tok) <= 64<<10 {
			f.Add(tok)
		}
	}
	for _, s := range readSeeds(f, "verify-seeds.txt") {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		c, err := fx.verify(tok)
		if err != nil {
			if !errors.Is(err, tokens.ErrInvalidToken) {
				t.Fatalf("error %v does not wrap ErrInvalidToken", err)
			}
			return
		}
		if c.Subject == "" || c.ID == "" || c.SessionID == "" || c.Issuer != testIssuer || c.ExpiresAt.IsZero() {
			t.Fatalf("accepted token with incomplete claims %+v", c)
		}
		c2, err := fx.verify(tok)
		if err != nil || c2.ID != c.ID {
			t.Fatalf("second verification differs: %v", err)
		}
	})
}

// FuzzParseRefreshToken checks that the refresh-token decoder never panics,
// never echoes its input, accepts only the canonical encoding of a token
// whose MAC verifies (one string per token), and that what it returns is
// what the token carries.
func FuzzParseRefreshToken(f *testing.F) {
	key, err := tokens.NewRefreshKey(bytes.NewReader(make([]byte, 40)))
	if err != nil {
		f.Fatal(err)
	}
	lookup := func(id string) ([]byte, bool) { return key.Secret, id == key.ID }
	f.Add("")
	f.Add(strings.Repeat("A", 43))
	f.Add(strings.Repeat("_", 139))
	f.Add(strings.Repeat("A", 138) + "=")
	for _, gen := range []uint64{0, 1, 1 << 63} {
		tok, _, err := tokens.NewRefreshToken(rand.Reader, key, "Gq3bK0jW9xWZ2tqfYb3X1w", gen)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(tok)
	}
	for _, s := range readSeeds(f, "refresh-seeds.txt") {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got, err := tokens.ParseRefreshToken(in, lookup)
		if err != nil {
			if !errors.Is(err, tokens.ErrMalformedRefreshToken) && !errors.Is(err, tokens.ErrRefreshTokenForged) &&
				!errors.Is(err, tokens.ErrUnknownRefreshKey) {
				t.Fatalf("error %v is not a refresh-token error", err)
			}
			if len(in) >= 8 && strings.Contains(err.Error(), in) {
				t.Fatal("error echoes the input")
			}
			return
		}
		raw := tokenstest.MustDecode(in)
		if b64(raw) != in {
			t.Fatal("accepted a non-canonical encoding")
		}
		if got.KeyID != key.ID || got.Digest != sha256.Sum256(raw[:len(raw)-32]) || !strings.Contains(string(raw), got.SessionID) {
			t.Fatalf("accepted token says %+v, not what it carries", got)
		}
	})
}

func readSeeds(tb testing.TB, name string) []string {
	tb.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		tb.Fatalf("seed corpus: %v", err)
	}
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		if line != "" && !strings.HasPrefix(line, "#") {
			out = append(out, line)
		}
	}
	return out
}
