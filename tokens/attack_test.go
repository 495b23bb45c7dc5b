package tokens_test

import (
	"crypto/elliptic"
	"errors"
	"math/big"
	"strings"
	"testing"

	"github.com/latchauth/latch/tokens"
	"github.com/latchauth/latch/tokens/tokenstest"
)

// TestAttackCorpus runs every attack against the strict verifier: each must
// fail with exactly the expected reason, wrapped in ErrInvalidToken, and the
// error must not echo the token.
func TestAttackCorpus(t *testing.T) {
	f := newFixture(t)
	k := f.kit(t)
	reasons := []error{tokens.ErrMalformed, tokens.ErrUnsupported, tokens.ErrUnknownKey, tokens.ErrSignature,
		tokens.ErrExpired, tokens.ErrNotYetValid, tokens.ErrIssuer, tokens.ErrAudience}
	corpus := tokenstest.Corpus()
	if n := len(corpus); n < 40 {
		t.Fatalf("attack corpus holds %d cases, want at least 40", n)
	}
	for _, a := range corpus {
		t.Run(a.Name, func(t *testing.T) {
			tok := a.Token(t, k)
			c, err := f.verify(tok)
			if a.Want == nil {
				if err != nil {
					t.Fatalf("Verify: %v, want success (source: %s)", err, a.Source)
				}
				if c.Subject != "user-1" || c.ID != "jti-1" {
					t.Fatalf("claims = %+v, want sub user-1 and jti jti-1", c)
				}
				return
			}
			if err == nil {
				t.Fatalf("Verify accepted the token, want %v (source: %s)", a.Want, a.Source)
			}
			if !errors.Is(err, tokens.ErrInvalidToken) || !errors.Is(err, a.Want) {
				t.Fatalf("Verify: %v, want %v (source: %s)", err, a.Want, a.Source)
			}
			for _, r := range reasons {
				if r != a.Want && errors.Is(err, r) {
					t.Fatalf("Verify: %v matches %v too", err, r)
				}
			}
			if len(tok) > 16 && strings.Contains(err.Error(), tok[len(tok)-16:]) {
				t.Fatalf("error %q echoes the token", err)
			}
			if c.Subject != "" || c.ID != "" {
				t.Fatalf("claims %+v returned with an error", c)
			}
		})
	}
}

// TestMalleableSignatureKeepsIdentity: ECDSA signatures are malleable ((r,
// n−s) verifies too). Such a re-encoded token is a different string, so
// revocation must key on the jti (and sid), never the token string; this test
// pins that the re-encoded token carries the same jti and sid.
func TestMalleableSignatureKeepsIdentity(t *testing.T) {
	f := newFixture(t)
	tok := f.mint(t, validClaims())
	i := strings.LastIndexByte(tok, '.')
	sig := tokenstest.MustDecode(tok[i+1:])
	s := new(big.Int).SetBytes(sig[32:])
	s.Sub(elliptic.P256().Params().N, s)
	alt := append([]byte(nil), sig...)
	s.FillBytes(alt[32:])
	mall := tok[:i+1] + b64(alt)
	if mall == tok {
		t.Fatal("malleated token equals the original")
	}
	c1, err := f.verify(tok)
	if err != nil {
		t.Fatal(err)
	}
	c2, err := f.verify(mall)
	if err != nil {
		t.Fatalf("(r, n-s) signature: %v; ECDSA accepts it, so revocation must not key on the string", err)
	}
	if c1.ID != c2.ID || c1.SessionID != c2.SessionID {
		t.Fatalf("re-encoded token has jti/sid %s/%s, want %s/%s", c2.ID, c2.SessionID, c1.ID, c1.SessionID)
	}
}

// TestSignatureSpareBitsRefused: the 86th character of the signature
// carries 2 bits of r||s and 4 spare bits. A token whose spare bits are set
// decodes to the same 64 bytes, so ECDSA would accept it; the strict
// decoder must refuse it, keeping one string per signature.
func TestSignatureSpareBitsRefused(t *testing.T) {
	f := newFixture(t)
	tok := f.mint(t, validClaims())
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	last := strings.IndexByte(alphabet, tok[len(tok)-1])
	for bit := 0; bit < 4; bit++ {
		alias := tok[:len(tok)-1] + string(alphabet[last^1<<bit])
		if _, err := f.verify(alias); !errors.Is(err, tokens.ErrSignature) {
			t.Errorf("spare bit %d set: err %v, want ErrSignature", bit, err)
		}
	}
}
