package tokens_test

import (
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

// FuzzHashRefreshToken checks that the refresh-token decoder never panics,
// accepts only 43-character canonical strings, and that an accepted string is
// the canonical encoding of what it decodes to (one string per token).
func FuzzHashRefreshToken(f *testing.F) {
	f.Add("")
	f.Add(strings.Repeat("A", 43))
	f.Add(strings.Repeat("_", 43))
	f.Add(strings.Repeat("A", 42) + "B")
	f.Add(strings.Repeat("A", 42) + "=")
	for _, s := range readSeeds(f, "refresh-seeds.txt") {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		d, err := tokens.HashRefreshToken(in)
		if err != nil {
			if !errors.Is(err, tokens.ErrMalformedRefreshToken) {
				t.Fatalf("error %v does not wrap ErrMalformedRefreshToken", err)
			}
			if len(in) >= 8 && strings.Contains(err.Error(), in) {
				t.Fatal("error echoes the input")
			}
			return
		}
		if len(in) != tokens.RefreshTokenLength {
			t.Fatalf("accepted %d-character input", len(in))
		}
		raw := tokenstest.MustDecode(in)
		if b64(raw) != in {
			t.Fatal("accepted a non-canonical encoding")
		}
		if d2, _ := tokens.HashRefreshToken(b64(raw)); d2 != d {
			t.Fatal("digest differs for the canonical form")
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
