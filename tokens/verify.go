package tokens

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

const (
	// MaxTokenLength is the longest access token Verifier reads, in bytes.
	MaxTokenLength = 8192
	// MaxLeeway is the largest clock-skew allowance Verifier accepts.
	MaxLeeway = 30 * time.Second
)

// ErrInvalidToken is wrapped by every verification failure. The more precise
// sentinels below say why; none of their messages contains the token.
var ErrInvalidToken = errors.New("tokens: invalid token")

// Reasons a token fails verification. Each error returned by Verify matches
// ErrInvalidToken and exactly one of these with errors.Is.
var (
	// ErrMalformed: not a compact JWS in canonical encoding, bad JSON,
	// or a required claim missing or of the wrong type.
	ErrMalformed = errors.New("malformed token")
	// ErrUnsupported: a header Latch does not accept (alg other than
	// ES256, typ other than at+jwt, crit).
	ErrUnsupported = errors.New("unsupported token header")
	// ErrUnknownKey: no published key has the token's kid.
	ErrUnknownKey = errors.New("unknown signing key")
	// ErrSignature: the signature does not verify.
	ErrSignature = errors.New("bad signature")
	// ErrExpired: exp has passed (beyond the leeway).
	ErrExpired = errors.New("token expired")
	// ErrNotYetValid: nbf or iat lies in the future (beyond the leeway).
	ErrNotYetValid = errors.New("token not yet valid")
	// ErrIssuer: iss is not the expected issuer.
	ErrIssuer = errors.New("wrong issuer")
	// ErrAudience: aud names none of the expected audiences.
	ErrAudience = errors.New("wrong audience")
)

// verifyError joins ErrInvalidToken and a reason.
type verifyError struct {
	reason error
	detail string // fixed text, never input
}

func (e *verifyError) Error() string {
	if e.detail == "" {
		return "tokens: invalid token: " + e.reason.Error()
	}
	return "tokens: invalid token: " + e.reason.Error() + ": " + e.detail
}

func (e *verifyError) Unwrap() []error { return []error{ErrInvalidToken, e.reason} }

func invalid(reason error, detail string) error { return &verifyError{reason: reason, detail: detail} }

// VerifierOption configures a Verifier.
type VerifierOption func(*verifierOptions)

type verifierOptions struct {
	leeway time.Duration
	now    func() time.Time
}

// WithLeeway allows for clock skew when checking exp, nbf and iat. The
// default is 0; more than MaxLeeway is refused by NewVerifier. A larger
// leeway lets an expired token live longer.
func WithLeeway(d time.Duration) VerifierOption {
	return func(o *verifierOptions) { o.leeway = d }
}

// WithClock sets the clock used for exp, nbf and iat. The default is
// time.Now; tests use a fixed clock.
func WithClock(now func() time.Time) VerifierOption {
	return func(o *verifierOptions) { o.now = now }
}

// Verifier verifies Latch access tokens strictly (see the package doc). It
// is safe for concurrent use.
type Verifier struct {
	keys   KeySource
	parser *jwt.Parser
}

// jwtClaims is what golang-jwt decodes and validates; Latch's own strict
// decoding (decodeClaims) has already vetted the same bytes.
type jwtClaims struct {
	jwt.RegisteredClaims
	SessionID string   `json:"sid"`
	Roles     []string `json:"roles"`
}

// NewVerifier returns a Verifier that accepts tokens signed by a key from
// keys, issued by issuer, for at least one of audiences.
func NewVerifier(keys KeySource, issuer string, audiences []string, opts ...VerifierOption) (*Verifier, error) {
	o := verifierOptions{now: time.Now}
	for _, opt := range opts {
		opt(&o)
	}
	var errs []error
	if keys == nil {
		errs = append(errs, errors.New("a key source is required"))
	}
	if issuer == "" {
		errs = append(errs, errors.New("an issuer is required"))
	}
	if len(audiences) == 0 || slicesHasEmpty(audiences) {
		errs = append(errs, errors.New("at least one non-empty audience is required"))
	}
	if o.leeway < 0 || o.leeway > MaxLeeway {
		errs = append(errs, fmt.Errorf("leeway must be in [0, %v]", MaxLeeway))
	}
	if o.now == nil {
		errs = append(errs, errors.New("clock must not be nil"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("tokens: new verifier: %w", err)
	}
	return &Verifier{
		keys: keys,
		// The one parser, built once: one algorithm, the issuer and
		// audiences, exp required, iat checked, strict base64, and the
		// injected clock.
		parser: jwt.NewParser(
			jwt.WithValidMethods([]string{Algorithm}),
			jwt.WithIssuer(issuer),
			jwt.WithAudience(audiences...),
			jwt.WithExpirationRequired(),
			jwt.WithIssuedAt(),
			jwt.WithLeeway(o.leeway),
			jwt.WithStrictDecoding(),
			jwt.WithTimeFunc(o.now),
		),
	}, nil
}

// Verify checks tok and returns its claims. Every failure wraps
// ErrInvalidToken and one reason sentinel; errors never contain the token.
// Verify does not consult revocations: callers that must honour them check
// the jti and sid afterwards.
func (v *Verifier) Verify(ctx context.Context, tok string) (Claims, error) {
	if len(tok) > MaxTokenLength {
		return Claims{}, invalid(ErrMalformed, "too long")
	}
	h, p, sig, ok := splitCompact(tok)
	if !ok {
		return Claims{}, invalid(ErrMalformed, "not a compact JWS")
	}
	kid, err := checkHeader(h)
	if err != nil {
		return Claims{}, err
	}
	if raw, err := strictRawURL.DecodeString(sig); err != nil || len(raw) != 64 {
		return Claims{}, invalid(ErrSignature, "want 64-byte r||s")
	}
	c, err := decodeClaims(p)
	if err != nil {
		return Claims{}, err
	}
	var keyErr error
	keyFunc := func(t *jwt.Token) (any, error) {
		k, ok := t.Header["kid"].(string)
		if !ok || k != kid {
			keyErr = invalid(ErrMalformed, "kid is required")
			return nil, keyErr
		}
		key, err := v.keys.PublicKey(ctx, k)
		switch {
		case errors.Is(err, ErrUnknownKey):
			keyErr = invalid(ErrUnknownKey, "")
		case err != nil:
			keyErr = fmt.Errorf("%w: key lookup: %w", ErrInvalidToken, err)
		}
		return key, keyErr
	}
	// golang-jwt checks the signature length and calls ecdsa.Verify, which
	// refuses r or s equal to 0 or not below the curve order; then it
	// validates iss, aud, exp, nbf and iat.
	if _, err := v.parser.ParseWithClaims(tok, &jwtClaims{}, keyFunc); err != nil {
		if keyErr != nil {
			return Claims{}, keyErr
		}
		return Claims{}, classify(err)
	}
	return c, nil
}

// splitCompact splits a compact JWS into its three non-empty parts, which
// must hold only the unpadded base64url alphabet.
func splitCompact(tok string) (h, p, sig string, ok bool) {
	h, rest, ok1 := strings.Cut(tok, ".")
	p, sig, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || h == "" || p == "" || sig == "" {
		return "", "", "", false
	}
	if !isBase64URL(h) || !isBase64URL(p) || !isBase64URL(sig) {
		return "", "", "", false // also refuses a fourth part
	}
	return h, p, sig, true
}

// checkHeader decodes the protected header and returns its kid.
func checkHeader(seg string) (string, error) {
	raw, err := strictRawURL.DecodeString(seg)
	if err != nil {
		return "", invalid(ErrMalformed, "header encoding")
	}
	m, err := decodeObject(raw)
	if err != nil {
		return "", invalid(ErrMalformed, "header: "+err.Error())
	}
	if alg, ok := jsonString(m["alg"]); !ok || alg != Algorithm {
		return "", invalid(ErrUnsupported, "alg must be ES256")
	}
	typ, ok := jsonString(m["typ"])
	if !ok || !(strings.EqualFold(typ, AccessTokenType) || strings.EqualFold(typ, "application/"+AccessTokenType)) {
		return "", invalid(ErrUnsupported, "typ must be at+jwt")
	}
	if _, ok := m["crit"]; ok {
		return "", invalid(ErrUnsupported, "crit is not supported")
	}
	kid, ok := jsonString(m["kid"])
	if !ok || kid == "" || len(kid) > maxKeyIDLength {
		return "", invalid(ErrMalformed, "kid is required")
	}
	return kid, nil
}

// decodeClaims decodes the payload strictly into Claims: what golang-jwt
// does not check (duplicate names, integer NumericDates, required sub, jti,
// iat and sid, types of aud and roles).
func decodeClaims(seg string) (Claims, error) {
	raw, err := strictRawURL.DecodeString(seg)
	if err != nil {
		return Claims{}, invalid(ErrMalformed, "claims encoding")
	}
	m, err := decodeObject(raw)
	if err != nil {
		return Claims{}, invalid(ErrMalformed, "claims: "+err.Error())
	}
	var c Claims
	var ok bool
	str := func(name string, dst *string) bool {
		*dst, ok = jsonString(m[name])
		return ok && *dst != ""
	}
	if !str("iss", &c.Issuer) || !str("sub", &c.Subject) || !str("jti", &c.ID) || !str("sid", &c.SessionID) {
		return Claims{}, invalid(ErrMalformed, "iss, sub, jti and sid must be non-empty strings")
	}
	if c.Audience, ok = audience(m["aud"]); !ok {
		return Claims{}, invalid(ErrMalformed, "aud must be a non-empty string or array of strings")
	}
	exp, okExp := jsonNumericDate(m["exp"])
	iat, okIat := jsonNumericDate(m["iat"])
	if !okExp || !okIat {
		return Claims{}, invalid(ErrMalformed, "exp and iat must be integer NumericDates")
	}
	c.ExpiresAt, c.IssuedAt = time.Unix(exp, 0), time.Unix(iat, 0)
	if rawNbf, present := m["nbf"]; present {
		nbf, ok := jsonNumericDate(rawNbf)
		if !ok {
			return Claims{}, invalid(ErrMalformed, "nbf must be an integer NumericDate")
		}
		c.NotBefore = time.Unix(nbf, 0)
	}
	if rawRoles, present := m["roles"]; present {
		if c.Roles, ok = jsonStrings(rawRoles); !ok {
			return Claims{}, invalid(ErrMalformed, "roles must be an array of strings")
		}
	}
	return c, nil
}

func audience(raw json.RawMessage) ([]string, bool) {
	if s, ok := jsonString(raw); ok {
		return []string{s}, s != ""
	}
	auds, ok := jsonStrings(raw)
	return auds, ok && len(auds) > 0 && !slicesHasEmpty(auds)
}

// classify maps golang-jwt's errors to this package's reasons.
func classify(err error) error {
	switch {
	case errors.Is(err, jwt.ErrTokenSignatureInvalid), errors.Is(err, jwt.ErrECDSAVerification):
		return invalid(ErrSignature, "")
	case errors.Is(err, jwt.ErrTokenMalformed):
		return invalid(ErrMalformed, "")
	case errors.Is(err, jwt.ErrTokenExpired):
		return invalid(ErrExpired, "")
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return invalid(ErrNotYetValid, "")
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return invalid(ErrIssuer, "")
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return invalid(ErrAudience, "")
	default:
		return invalid(ErrMalformed, "claims")
	}
}
