package tokens_test

import (
	"crypto/elliptic"
	"errors"
	"math/big"
	"runtime"
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

// TestForgedTokenArraysNotDecoded: the roles and aud arrays are the
// claims whose decoding allocates in proportion to their length. A token
// whose signature does not verify must cost the verifier the same
// allocations whether it carries one element or thousands (a forged 8 KiB
// token used to make it allocate ~100 KB), and must still be refused as a
// bad signature.
func TestForgedTokenArraysNotDecoded(t *testing.T) {
	f := newFixture(t)
	forger := newFixture(t)
	forged := func(set func(*tokens.Claims)) string {
		c := validClaims()
		set(&c)
		tok := forger.mint(t, c)
		// Same header (kid) as f's tokens, forger's payload and signature.
		head := f.mint(t, validClaims())
		return head[:strings.IndexByte(head, '.')] + tok[strings.IndexByte(tok, '.'):]
	}
	// Bytes allocated per verify: the old decoding made one allocation
	// either way, sized by the array.
	bytesPerVerify := func(tok string) uint64 {
		const runs = 50
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for range runs {
			if _, err := f.verify(tok); !errors.Is(err, tokens.ErrSignature) {
				t.Fatalf("forged token: err %v, want ErrSignature", err)
			}
		}
		runtime.ReadMemStats(&after)
		return (after.TotalAlloc - before.TotalAlloc) / runs
	}
	// Two payloads of the same length (what decoding the payload and
	// hashing the signing input cost grows with it): one element, or 1400.
	many := make([]string, 1400)
	for i := range many {
		many[i] = "r"
	}
	one := []string{strings.Repeat("r", len(many)*4-3)}
	for _, c := range []struct {
		claim string
		set   func(*tokens.Claims, []string)
	}{
		{"roles", func(c *tokens.Claims, v []string) { c.Roles = v }},
		{"aud", func(c *tokens.Claims, v []string) { c.Audience = append(v[:len(v):len(v)], testAudience) }},
	} {
		small := forged(func(cl *tokens.Claims) { c.set(cl, one) })
		large := forged(func(cl *tokens.Claims) { c.set(cl, many) })
		if len(small) != len(large) {
			t.Fatalf("%s: test tokens are %d and %d bytes long, want equal", c.claim, len(small), len(large))
		}
		if len(large) > tokens.MaxTokenLength {
			t.Fatalf("%s: test token is %d bytes, over the %d limit", c.claim, len(large), tokens.MaxTokenLength)
		}
		bytesPerVerify(large) // warm up
		// 1400 decoded strings take 22 KiB (a 16-byte string header each);
		// the allowance only absorbs allocations of the test itself.
		if a, b := bytesPerVerify(small), bytesPerVerify(large); b > a+1024 {
			t.Fatalf("forged token with 1400 %s: %d bytes allocated per verify, with 1 %d; the %s were decoded before the signature was checked",
				c.claim, b, a, c.claim)
		}
	}
	// A genuine token still carries its roles.
	c := validClaims()
	c.Roles = []string{"a", "b\u00e9"}
	got, err := f.verify(f.mint(t, c))
	if err != nil || strings.Join(got.Roles, ",") != "a,b\u00e9" {
		t.Fatalf("genuine token: roles %q, err %v", got.Roles, err)
	}
}
