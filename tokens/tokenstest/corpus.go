package tokenstest

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"encoding/pem"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/latchauth/latch/tokens"
)

// Attack is one row of the attack corpus: where it comes from, what the
// attacker sends and the reason Verify must give.
type Attack struct {
	// Name says what the attacker sends.
	Name string
	// Source is where the attack is documented.
	Source string
	// Token builds the attacker's token.
	Token func(t testing.TB, k *Kit) string
	// Want is the tokens reason sentinel Verify must fail with; nil means
	// the token is genuine and must be accepted.
	Want error
}

// mapHeader signs a token whose header has been changed by fn.
func mapHeader(fn func(h map[string]any)) func(testing.TB, *Kit) string {
	return func(t testing.TB, k *Kit) string {
		h := k.Header()
		fn(h)
		return k.SignMaps(t, h, k.Claims())
	}
}

// mapClaims signs a token whose claims have been changed by fn.
func mapClaims(fn func(k *Kit, p map[string]any)) func(testing.TB, *Kit) string {
	return func(t testing.TB, k *Kit) string {
		p := k.Claims()
		fn(k, p)
		return k.SignMaps(t, k.Header(), p)
	}
}

// rawParts signs raw header and claims JSON.
func rawParts(header, claims string) func(testing.TB, *Kit) string {
	return func(t testing.TB, k *Kit) string {
		h, c := header, claims
		if h == "" {
			h = string(mustJSON(t, k.Header()))
		}
		if c == "" {
			c = string(mustJSON(t, k.Claims()))
		}
		return k.SignRaw(t, []byte(h), []byte(k.fill(c)))
	}
}

// otherAlg signs valid claims with another algorithm and the key that key
// makes, under the kit's kid.
func otherAlg(m jwt.SigningMethod, key func(k *Kit) (any, error)) func(testing.TB, *Kit) string {
	return func(t testing.TB, k *Kit) string {
		tok := jwt.NewWithClaims(m, jwt.MapClaims(k.Claims()))
		tok.Header["typ"] = "at+jwt"
		tok.Header["kid"] = k.KID
		signingKey, err := key(k)
		if err != nil {
			t.Fatal(err)
		}
		s, err := tok.SignedString(signingKey)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
}

// withSig replaces the signature of a valid token.
func withSig(fn func(t testing.TB, k *Kit, r, s *big.Int) []byte) func(testing.TB, *Kit) string {
	return func(t testing.TB, k *Kit) string {
		tok := k.MintValid(t)
		i := strings.LastIndexByte(tok, '.')
		raw, err := base64.RawURLEncoding.DecodeString(tok[i+1:])
		if err != nil {
			t.Fatal(err)
		}
		r, s := new(big.Int).SetBytes(raw[:32]), new(big.Int).SetBytes(raw[32:])
		return tok[:i+1] + b64(fn(t, k, r, s))
	}
}

// edit changes a valid token's string.
func edit(fn func(tok string) string) func(testing.TB, *Kit) string {
	return func(t testing.TB, k *Kit) string { return fn(k.MintValid(t)) }
}

func rawRS(r, s *big.Int) []byte {
	out := make([]byte, 64)
	r.FillBytes(out[:32])
	s.FillBytes(out[32:])
	return out
}

var curveN = elliptic.P256().Params().N

// attackerKey signs tokens with a P-256 key Latch never published.
func attackerKey(t testing.TB) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// signWith signs the valid payload with key under header h.
func signWith(t testing.TB, k *Kit, key *ecdsa.PrivateKey, h map[string]any) string {
	other := *k
	other.Key = key
	return other.SignMaps(t, h, k.Claims())
}

func attackerJWK(t testing.TB, ak *ecdsa.PrivateKey) map[string]any {
	j, err := tokens.NewJWK(&ak.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return map[string]any{"kty": j.Kty, "crv": j.Crv, "x": j.X, "y": j.Y, "kid": j.Kid}
}

// Corpus returns the attack corpus: every row must be refused with its
// Want reason (or accepted, for the genuine baselines).
func Corpus() []Attack {
	return []Attack{
		{"valid token", "baseline", func(t testing.TB, k *Kit) string { return k.MintValid(t) }, nil},
		{"aud array containing ours", "RFC 7519 §4.1.3", mapClaims(func(k *Kit, p map[string]any) { p["aud"] = []string{"evil-service", k.Audience} }), nil},
		{"nbf within leeway", "RFC 7519 §4.1.5", mapClaims(func(k *Kit, p map[string]any) { p["nbf"] = k.Now.Add(k.Leeway - time.Second).Unix() }), nil},
		{"typ application/at+jwt", "RFC 9068 §2.1", mapHeader(func(h map[string]any) { h["typ"] = "application/at+jwt" }), nil},

		// Algorithm attacks.
		{"alg none, no signature", "RFC 8725 §2.1; CVE-2015-9235", edit(func(tok string) string {
			_, rest, _ := strings.Cut(tok, ".")
			p, _, _ := strings.Cut(rest, ".")
			return b64([]byte(`{"alg":"none","typ":"at+jwt"}`)) + "." + p + "."
		}), tokens.ErrMalformed},
		{"alg none with kid, signature kept", "RFC 8725 §2.1", mapHeader(func(h map[string]any) { h["alg"] = "none" }), tokens.ErrUnsupported},
		{"alg None", "jwt_tool -X a", mapHeader(func(h map[string]any) { h["alg"] = "None" }), tokens.ErrUnsupported},
		{"alg NONE", "jwt_tool -X a", mapHeader(func(h map[string]any) { h["alg"] = "NONE" }), tokens.ErrUnsupported},
		{"alg es256 lower case", "RFC 7515 §4.1.1 (case-sensitive)", mapHeader(func(h map[string]any) { h["alg"] = "es256" }), tokens.ErrUnsupported},
		{"alg missing", "RFC 7515 §4.1.1", mapHeader(func(h map[string]any) { delete(h, "alg") }), tokens.ErrUnsupported},
		{"HS256 keyed with the PEM public key", "RFC 8725 §2.1; CVE-2016-10555; PortSwigger alg confusion lab", otherAlg(jwt.SigningMethodHS256, func(k *Kit) (any, error) {
			der, err := x509.MarshalPKIXPublicKey(&k.Key.PublicKey)
			return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), err
		}), tokens.ErrUnsupported},
		{"HS256 keyed with the DER public key", "jwt_tool -X k", otherAlg(jwt.SigningMethodHS256, func(k *Kit) (any, error) { return x509.MarshalPKIXPublicKey(&k.Key.PublicKey) }), tokens.ErrUnsupported},
		{"ES384", "RFC 8725 §3.1", otherAlg(jwt.SigningMethodES384, func(*Kit) (any, error) { return ecdsa.GenerateKey(elliptic.P384(), rand.Reader) }), tokens.ErrUnsupported},
		{"ES512", "RFC 8725 §3.1", otherAlg(jwt.SigningMethodES512, func(*Kit) (any, error) { return ecdsa.GenerateKey(elliptic.P521(), rand.Reader) }), tokens.ErrUnsupported},
		{"RS256", "RFC 8725 §3.1", otherAlg(jwt.SigningMethodRS256, func(*Kit) (any, error) { return rsa.GenerateKey(rand.Reader, 2048) }), tokens.ErrUnsupported},
		{"PS256", "RFC 8725 §3.1", otherAlg(jwt.SigningMethodPS256, func(*Kit) (any, error) { return rsa.GenerateKey(rand.Reader, 2048) }), tokens.ErrUnsupported},
		{"EdDSA", "RFC 8725 §3.1", otherAlg(jwt.SigningMethodEdDSA, func(*Kit) (any, error) {
			_, k, err := ed25519.GenerateKey(rand.Reader)
			return k, err
		}), tokens.ErrUnsupported},

		// Signature encoding attacks.
		{"DER signature instead of r||s", "RFC 7518 §3.4", withSig(func(t testing.TB, _ *Kit, r, s *big.Int) []byte {
			der, err := asn1.Marshal(struct{ R, S *big.Int }{r, s})
			if err != nil {
				t.Fatal(err)
			}
			return der
		}), tokens.ErrSignature},
		{"r=0 s=0 (psychic signature)", "CVE-2022-21449", withSig(func(testing.TB, *Kit, *big.Int, *big.Int) []byte { return make([]byte, 64) }), tokens.ErrSignature},
		{"r=0", "CVE-2022-21449", withSig(func(_ testing.TB, _ *Kit, _, s *big.Int) []byte { return rawRS(big.NewInt(0), s) }), tokens.ErrSignature},
		{"s=0", "CVE-2022-21449", withSig(func(_ testing.TB, _ *Kit, r, _ *big.Int) []byte { return rawRS(r, big.NewInt(0)) }), tokens.ErrSignature},
		{"r = n", "SEC 1 §4.1.4 step 1", withSig(func(_ testing.TB, _ *Kit, _, s *big.Int) []byte { return rawRS(curveN, s) }), tokens.ErrSignature},
		{"r + n (r ≥ n, same residue)", "SEC 1 §4.1.4 step 1", withSig(func(_ testing.TB, _ *Kit, r, s *big.Int) []byte {
			rn := new(big.Int).Add(r, curveN)
			if rn.BitLen() > 256 {
				return rawRS(curveN, s) // r+n does not fit 32 bytes; r = n is the same class
			}
			return rawRS(rn, s)
		}), tokens.ErrSignature},
		{"s = n", "SEC 1 §4.1.4 step 1", withSig(func(_ testing.TB, _ *Kit, r, _ *big.Int) []byte { return rawRS(r, curveN) }), tokens.ErrSignature},
		{"signature 63 bytes", "RFC 7518 §3.4", withSig(func(_ testing.TB, _ *Kit, r, s *big.Int) []byte { return rawRS(r, s)[:63] }), tokens.ErrSignature},
		{"signature 65 bytes", "RFC 7518 §3.4", withSig(func(_ testing.TB, _ *Kit, r, s *big.Int) []byte { return append(rawRS(r, s), 0) }), tokens.ErrSignature},
		{"signature 96 bytes (ES384 size)", "RFC 7518 §3.4", withSig(func(_ testing.TB, _ *Kit, r, s *big.Int) []byte { return append(rawRS(r, s), make([]byte, 32)...) }), tokens.ErrSignature},
		{"flipped signature bit", "integrity", withSig(func(_ testing.TB, _ *Kit, r, s *big.Int) []byte {
			b := rawRS(r, s)
			b[10] ^= 1
			return b
		}), tokens.ErrSignature},
		{"claims changed after signing", "integrity", func(t testing.TB, k *Kit) string {
			tok := k.MintValid(t)
			parts := strings.Split(tok, ".")
			p := k.Claims()
			p["roles"] = []string{"admin"}
			return parts[0] + "." + b64(mustJSON(t, p)) + "." + parts[2]
		}, tokens.ErrSignature},

		// Key selection attacks.
		{"kid unknown", "RFC 8725 §3.10", mapHeader(func(h map[string]any) { h["kid"] = "no-such-key" }), tokens.ErrUnknownKey},
		{"kid empty", "RFC 8725 §3.10", mapHeader(func(h map[string]any) { h["kid"] = "" }), tokens.ErrMalformed},
		{"kid missing", "RFC 8725 §3.10", mapHeader(func(h map[string]any) { delete(h, "kid") }), tokens.ErrMalformed},
		{"kid not a string", "RFC 7515 §4.1.4", mapHeader(func(h map[string]any) { h["kid"] = 7 }), tokens.ErrMalformed},
		{"kid path traversal", "PortSwigger kid path traversal lab", mapHeader(func(h map[string]any) { h["kid"] = "../../../../dev/null" }), tokens.ErrUnknownKey},
		{"kid SQL injection", "OWASP JWT cheat sheet; jwt_tool -I -hc kid", mapHeader(func(h map[string]any) { h["kid"] = "x' UNION SELECT 'key' --" }), tokens.ErrUnknownKey},
		{"kid very long", "resource exhaustion", mapHeader(func(h map[string]any) { h["kid"] = strings.Repeat("k", 4000) }), tokens.ErrMalformed},
		{"embedded jwk of attacker key", "CVE-2018-0114; PortSwigger jwk header lab", func(t testing.TB, k *Kit) string {
			ak := attackerKey(t)
			h := k.Header()
			h["jwk"] = attackerJWK(t, ak)
			return signWith(t, k, ak, h)
		}, tokens.ErrSignature},
		{"embedded jwk, kid of attacker key", "CVE-2018-0114; jwt_tool -X i", func(t testing.TB, k *Kit) string {
			ak := attackerKey(t)
			h := k.Header()
			h["jwk"] = attackerJWK(t, ak)
			h["kid"] = attackerJWK(t, ak)["kid"]
			return signWith(t, k, ak, h)
		}, tokens.ErrUnknownKey},
		{"jku to attacker JWKS", "RFC 8725 §3.10; PortSwigger jku lab; jwt_tool -X s", func(t testing.TB, k *Kit) string {
			h := k.Header()
			h["jku"] = "https://attacker.example/jwks.json"
			return signWith(t, k, attackerKey(t), h)
		}, tokens.ErrSignature},
		{"x5u to attacker certificate", "RFC 8725 §3.10", func(t testing.TB, k *Kit) string {
			h := k.Header()
			h["x5u"] = "https://attacker.example/cert.pem"
			return signWith(t, k, attackerKey(t), h)
		}, tokens.ErrSignature},
		{"x5c with attacker certificate", "RFC 8725 §3.10", func(t testing.TB, k *Kit) string {
			h := k.Header()
			h["x5c"] = []string{"MIIBfake"}
			return signWith(t, k, attackerKey(t), h)
		}, tokens.ErrSignature},
		{"jku header on a genuine token is ignored", "RFC 8725 §3.10", mapHeader(func(h map[string]any) { h["jku"] = "https://attacker.example/jwks.json" }), nil},
		{"another issuer's key under our kid", "RFC 8725 §3.10", func(t testing.TB, k *Kit) string {
			return signWith(t, k, attackerKey(t), k.Header())
		}, tokens.ErrSignature},
		{"key retired past its window (not in the set)", "key life cycle", func(t testing.TB, k *Kit) string {
			old := attackerKey(t)
			kid, _ := tokens.Thumbprint(&old.PublicKey)
			h := k.Header()
			h["kid"] = kid
			return signWith(t, k, old, h)
		}, tokens.ErrUnknownKey},
		{"crit header", "RFC 7515 §4.1.11; RFC 8725 §3.1", mapHeader(func(h map[string]any) { h["crit"] = []string{"exp"} }), tokens.ErrUnsupported},

		// typ.
		{"typ missing", "RFC 8725 §3.11; RFC 9068 §4", mapHeader(func(h map[string]any) { delete(h, "typ") }), tokens.ErrUnsupported},
		{"typ JWT", "RFC 9068 §4", mapHeader(func(h map[string]any) { h["typ"] = "JWT" }), tokens.ErrUnsupported},
		{"typ refresh-like", "RFC 8725 §3.11", mapHeader(func(h map[string]any) { h["typ"] = "rt+jwt" }), tokens.ErrUnsupported},
		{"typ id token", "RFC 8725 §3.11", mapHeader(func(h map[string]any) { h["typ"] = "id_token+jwt" }), tokens.ErrUnsupported},

		// Time claims.
		{"exp missing", "RFC 9068 §2.2", mapClaims(func(k *Kit, p map[string]any) { delete(p, "exp") }), tokens.ErrMalformed},
		{"exp in the past", "RFC 7519 §4.1.4", mapClaims(func(k *Kit, p map[string]any) { p["exp"] = k.Now.Add(-time.Minute).Unix() }), tokens.ErrExpired},
		{"exp just past the leeway", "RFC 7519 §4.1.4", mapClaims(func(k *Kit, p map[string]any) { p["exp"] = k.Now.Add(-k.Leeway - time.Second).Unix() }), tokens.ErrExpired},
		{"exp non-numeric", "RFC 7519 §2 NumericDate", mapClaims(func(k *Kit, p map[string]any) { p["exp"] = "tomorrow" }), tokens.ErrMalformed},
		{"exp numeric string", "RFC 7519 §2 NumericDate", mapClaims(func(k *Kit, p map[string]any) { p["exp"] = "{EXP}" }), tokens.ErrMalformed},
		{"exp huge", "overflow", rawParts("", `{"iss":"{ISS}","sub":"u","aud":"{AUD}","exp":100000000000000000000,"iat":{IAT},"jti":"j","sid":"s"}`), tokens.ErrMalformed},
		{"exp fractional", "RFC 7519 §2 (Latch issues integers)", rawParts("", `{"iss":"{ISS}","sub":"u","aud":"{AUD}","exp":{EXP}.5,"iat":{IAT},"jti":"j","sid":"s"}`), tokens.ErrMalformed},
		{"exp exponent form", "RFC 7519 §2 (Latch issues integers)", rawParts("", `{"iss":"{ISS}","sub":"u","aud":"{AUD}","exp":1.80000084e9,"iat":{IAT},"jti":"j","sid":"s"}`), tokens.ErrMalformed},
		{"exp negative", "overflow", mapClaims(func(k *Kit, p map[string]any) { p["exp"] = -1 }), tokens.ErrMalformed},
		{"exp null", "RFC 7519 §2", mapClaims(func(k *Kit, p map[string]any) { p["exp"] = nil }), tokens.ErrMalformed},
		{"nbf in the future beyond leeway", "RFC 7519 §4.1.5", mapClaims(func(k *Kit, p map[string]any) { p["nbf"] = k.Now.Add(time.Minute).Unix() }), tokens.ErrNotYetValid},
		{"iat in the future beyond leeway", "RFC 7519 §4.1.6", mapClaims(func(k *Kit, p map[string]any) { p["iat"] = k.Now.Add(time.Minute).Unix() }), tokens.ErrNotYetValid},
		{"iat missing", "RFC 9068 §2.2", mapClaims(func(k *Kit, p map[string]any) { delete(p, "iat") }), tokens.ErrMalformed},
		{"nbf as string", "RFC 7519 §2", mapClaims(func(k *Kit, p map[string]any) { p["nbf"] = "0" }), tokens.ErrMalformed},

		// Issuer and audience.
		{"iss wrong", "RFC 8725 §3.8", mapClaims(func(k *Kit, p map[string]any) { p["iss"] = "https://evil.example" }), tokens.ErrIssuer},
		{"iss with trailing slash", "RFC 8725 §3.8 (exact match)", mapClaims(func(k *Kit, p map[string]any) { p["iss"] = k.Issuer + "/" }), tokens.ErrIssuer},
		{"iss missing", "RFC 9068 §2.2", mapClaims(func(k *Kit, p map[string]any) { delete(p, "iss") }), tokens.ErrMalformed},
		{"aud wrong", "RFC 8725 §3.9", mapClaims(func(k *Kit, p map[string]any) { p["aud"] = "evil-service" }), tokens.ErrAudience},
		{"aud array without ours", "RFC 8725 §3.9", mapClaims(func(k *Kit, p map[string]any) { p["aud"] = []string{"evil-a", "evil-b"} }), tokens.ErrAudience},
		{"aud empty string", "RFC 9068 §2.2", mapClaims(func(k *Kit, p map[string]any) { p["aud"] = "" }), tokens.ErrMalformed},
		{"aud empty array", "RFC 9068 §2.2", mapClaims(func(k *Kit, p map[string]any) { p["aud"] = []string{} }), tokens.ErrMalformed},
		{"aud array with a number", "RFC 7519 §4.1.3", mapClaims(func(k *Kit, p map[string]any) { p["aud"] = []any{k.Audience, 1} }), tokens.ErrMalformed},
		{"sub missing", "RFC 9068 §2.2", mapClaims(func(k *Kit, p map[string]any) { delete(p, "sub") }), tokens.ErrMalformed},
		{"jti missing", "RFC 9068 §2.2", mapClaims(func(k *Kit, p map[string]any) { delete(p, "jti") }), tokens.ErrMalformed},
		{"sid missing", "token format", mapClaims(func(k *Kit, p map[string]any) { delete(p, "sid") }), tokens.ErrMalformed},
		{"roles not an array", "token format", mapClaims(func(k *Kit, p map[string]any) { p["roles"] = "admin" }), tokens.ErrMalformed},

		// JSON shape.
		{"duplicate alg in header", "RFC 7515 §4 (names MUST be unique); RFC 8725 §3.x", rawParts(`{"alg":"none","alg":"ES256","typ":"at+jwt","kid":"x"}`, ""), tokens.ErrMalformed},
		{"duplicate sub in claims", "RFC 7519 §4 (names MUST be unique)", rawParts("", `{"iss":"{ISS}","sub":"admin","sub":"u","aud":"{AUD}","exp":{EXP},"iat":{IAT},"jti":"j","sid":"s"}`), tokens.ErrMalformed},
		{"duplicate exp in claims", "RFC 7519 §4", rawParts("", `{"iss":"{ISS}","sub":"u","aud":"{AUD}","exp":1,"exp":{EXP},"iat":{IAT},"jti":"j","sid":"s"}`), tokens.ErrMalformed},
		{"duplicate nested key", "parser differential", rawParts("", `{"iss":"{ISS}","sub":"u","aud":"{AUD}","exp":{EXP},"iat":{IAT},"jti":"j","sid":"s","x":{"a":1,"a":2}}`), tokens.ErrMalformed},
		{"header not JSON", "OWASP JWT cheat sheet", rawParts(`not json`, ""), tokens.ErrMalformed},
		{"header JSON array", "RFC 7515 §4", rawParts(`["ES256"]`, ""), tokens.ErrMalformed},
		{"claims not JSON", "RFC 7519 §7.2", rawParts("", `hello`), tokens.ErrMalformed},
		{"claims JSON null", "RFC 7519 §7.2 (a JSON object); decoders skip null", rawParts("", ` null `), tokens.ErrMalformed},
		{"claims JSON array", "RFC 7519 §7.2 (a JSON object)", rawParts("", `[{"sub":"admin"}]`), tokens.ErrMalformed},
		{"claims with trailing garbage", "parser differential", func(t testing.TB, k *Kit) string {
			return k.SignRaw(t, mustJSON(t, k.Header()), append(mustJSON(t, k.Claims()), []byte(`{"sub":"admin"}`)...))
		}, tokens.ErrMalformed},
		{"header with trailing garbage", "parser differential", func(t testing.TB, k *Kit) string {
			return k.SignRaw(t, append(mustJSON(t, k.Header()), 'x'), mustJSON(t, k.Claims()))
		}, tokens.ErrMalformed},
		{"claims invalid UTF-8", "RFC 8259 §8.1", rawParts("", "{\"iss\":\"{ISS}\",\"sub\":\"u\xff\",\"aud\":\"{AUD}\",\"exp\":{EXP},\"iat\":{IAT},\"jti\":\"j\",\"sid\":\"s\"}"), tokens.ErrMalformed},
		{"deep nesting", "resource exhaustion", rawParts("", `{"iss":"{ISS}","sub":"u","aud":"{AUD}","exp":{EXP},"iat":{IAT},"jti":"j","sid":"s","x":`+strings.Repeat("[", 100)+strings.Repeat("]", 100)+`}`), tokens.ErrMalformed},

		// Encoding.
		{"base64 padding", "RFC 7515 §2 (no padding)", edit(func(tok string) string {
			parts := strings.Split(tok, ".")
			return base64.URLEncoding.EncodeToString(MustDecode(parts[0])) + "." + parts[1] + "." + parts[2]
		}), tokens.ErrMalformed},
		{"standard base64 alphabet", "RFC 7515 §2 (base64url)", edit(func(tok string) string {
			parts := strings.Split(tok, ".")
			std := base64.RawStdEncoding.EncodeToString(MustDecode(parts[2]))
			if !strings.ContainsAny(std, "+/") {
				std = "+" + std[1:]
			}
			return parts[0] + "." + parts[1] + "." + std
		}), tokens.ErrMalformed},
		{"whitespace inside", "parser leniency", edit(func(tok string) string { return tok[:20] + " " + tok[20:] }), tokens.ErrMalformed},
		{"newline inside signature", "re-encoding of a revoked token", edit(func(tok string) string { return tok[:len(tok)-10] + "\n" + tok[len(tok)-10:] }), tokens.ErrMalformed},
		{"non-zero trailing bits in signature", "re-encoding of a revoked token", edit(func(tok string) string {
			last := tok[len(tok)-1]
			const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
			i := strings.IndexByte(alphabet, last)
			return tok[:len(tok)-1] + string(alphabet[i^1]) // 86 chars carry 4 spare bits
		}), tokens.ErrSignature},
		{"one part", "RFC 7515 §7.1", edit(func(tok string) string { return strings.ReplaceAll(tok, ".", "") }), tokens.ErrMalformed},
		{"two parts", "RFC 7515 §7.1", edit(func(tok string) string { return tok[:strings.LastIndexByte(tok, '.')] }), tokens.ErrMalformed},
		{"four parts", "RFC 7515 §7.1", edit(func(tok string) string { return tok + ".AAAA" }), tokens.ErrMalformed},
		{"five parts (JWE shape)", "RFC 7516 §7.1", edit(func(tok string) string { return tok + ".AAAA.AAAA" }), tokens.ErrMalformed},
		{"empty header", "RFC 7515 §7.1", edit(func(tok string) string { return tok[strings.IndexByte(tok, '.'):] }), tokens.ErrMalformed},
		{"empty signature", "RFC 7515 §7.1", edit(func(tok string) string { return tok[:strings.LastIndexByte(tok, '.')+1] }), tokens.ErrMalformed},
		{"empty string", "input validation", func(testing.TB, *Kit) string { return "" }, tokens.ErrMalformed},
		{"just dots", "input validation", func(testing.TB, *Kit) string { return ".." }, tokens.ErrMalformed},
		{"10 MB token", "resource exhaustion", func(testing.TB, *Kit) string { return strings.Repeat("A", 10<<20) + ".e30.AA" }, tokens.ErrMalformed},
		{"1 MB header", "CVE-2025-30204 class", mapHeader(func(h map[string]any) { h["pad"] = strings.Repeat("x", 1<<20) }), tokens.ErrMalformed},
		{"many dots", "CVE-2025-30204", func(testing.TB, *Kit) string { return strings.Repeat(".", 8000) }, tokens.ErrMalformed},
	}
}

// MustDecode decodes unpadded base64url or panics.
func MustDecode(s string) []byte {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}
