// Package tokens mints and verifies Latch's tokens. It knows nothing of gRPC
// or storage: it holds pure functions and small types.
//
// Access tokens are ES256 JWTs (RFC 7519, RFC 9068) with the header
// {"alg":"ES256","typ":"at+jwt","kid":<RFC 7638 thumbprint>}, signed and
// verified with github.com/golang-jwt/jwt/v5. This package is the one place
// in Latch where a JWT is parsed: Verifier runs golang-jwt's Parser (ES256
// only, strict base64url, issuer, audience, required exp, iat, leeway,
// injected clock, and a keyfunc that looks the kid up in a KeySource the
// caller controls) and adds, on the decoded segments and with
// encoding/json, what Latch promises beyond it:
//
//   - at most MaxTokenLength bytes, three non-empty parts in the unpadded
//     base64url alphabet, canonical encodings only (no padding, no
//     whitespace, zero trailing bits);
//   - header and claims are JSON objects with no duplicate member names at
//     any depth, nesting of at most 16 levels, valid UTF-8 and nothing after
//     the object;
//   - typ must be at+jwt and crit is refused; jku, x5u, jwk and x5c are
//     ignored (a key named by the token is never fetched or trusted);
//   - the signature is the 64-byte raw r||s of RFC 7518 §3.4 (never DER);
//   - iss, sub, aud, exp, iat, jti and sid are required; exp, iat and nbf
//     are JSON integers; exp must be in the future and iat and nbf not in
//     the future, each with a leeway of at most MaxLeeway.
//
// Each failure carries one reason (ErrMalformed, ErrSignature, ...); the
// attack corpus in tokenstest pins the reason of every known attack.
//
// Refresh tokens are opaque to clients: a session id, a generation and 32
// random bytes, under an HMAC-SHA256 keyed with a server secret, base64url
// (see NewRefreshToken for the layout). ParseRefreshToken trusts nothing in
// a token before its MAC verifies; only the SHA-256 digest of a token is
// ever stored.
package tokens
