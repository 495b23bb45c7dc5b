package tokens

import (
	"context"
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

// Reason returns the reason sentinel (ErrMalformed, ErrExpired, ...) that
// an error from Verify carries, or nil when it carries none (a failing
// KeySource, or an error not from Verify). Its text is fixed, never input,
// so callers may show it to clients.
func Reason(err error) error {
	var ve *verifyError
	if errors.As(err, &ve) {
		return ve.reason
	}
	return nil
}

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
	keys      KeySource
	validator *jwt.Validator
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
		// The one claims validator, built once: the issuer and
		// audiences, exp required, iat checked, and the injected clock.
		validator: jwt.NewValidator(
			jwt.WithIssuer(issuer),
			jwt.WithAudience(audiences...),
			jwt.WithExpirationRequired(),
			jwt.WithIssuedAt(),
			jwt.WithLeeway(o.leeway),
			jwt.WithTimeFunc(o.now),
		),
	}, nil
}

// Verify checks tok and returns its claims. Every failure wraps
// ErrInvalidToken and one reason sentinel; errors never contain the token.
// Verify does not consult revocations: callers that must honour them check
// the jti and sid afterwards.
//
// The token is split, decoded and checked once, strictly, by this package
// (the header fixes the one algorithm, ES256); crypto/ecdsa then checks the
// ES256 signature over the bytes as received (es256.go), and golang-jwt's
// validator the validity of exactly the decoded claims (iss, aud, exp, nbf,
// iat). Nothing is decoded twice.
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
	// The length check keeps Decode within rawSig; strict decoding refuses
	// the non-canonical encodings (set bits beyond the 512).
	var rawSig [es256Size]byte
	if len(sig) != rawSignatureLength {
		return Claims{}, invalid(ErrSignature, "want 64-byte r||s")
	}
	if n, err := strictRawURL.Decode(rawSig[:], []byte(sig)); err != nil || n != len(rawSig) {
		return Claims{}, invalid(ErrSignature, "want 64-byte r||s")
	}
	var x verification
	if err := x.decodeClaims(p); err != nil {
		return Claims{}, err
	}
	key, err := v.keys.PublicKey(ctx, kid)
	switch {
	case errors.Is(err, ErrUnknownKey), err == nil && key == nil:
		return Claims{}, invalid(ErrUnknownKey, "")
	case err != nil:
		return Claims{}, fmt.Errorf("%w: key lookup: %w", ErrInvalidToken, err)
	}
	// ES256 over the bytes as received (es256.go): crypto/ecdsa refuses r
	// or s equal to 0 or not below the curve order. As golang-jwt's Parser
	// does, the signature is checked before the claims' validity.
	if !verifyES256(key, []byte(tok[:len(h)+1+len(p)]), &rawSig) {
		return Claims{}, invalid(ErrSignature, "")
	}
	if err := x.decodeArrays(); err != nil {
		return Claims{}, err
	}
	if err := v.validator.Validate(&x); err != nil {
		return Claims{}, classify(err)
	}
	return x.claims, nil
}

// verification holds one token's strictly decoded claims; golang-jwt's
// validator reads them through jwt.Claims.
type verification struct {
	claims        Claims
	exp, iat, nbf jwt.NumericDate
	hasNbf        bool
	// The array members as received, "" when absent; see decodeArrays.
	rawAud, rawRoles string
}

var _ jwt.Claims = (*verification)(nil)

// GetExpirationTime returns exp.
func (x *verification) GetExpirationTime() (*jwt.NumericDate, error) { return &x.exp, nil }

// GetIssuedAt returns iat.
func (x *verification) GetIssuedAt() (*jwt.NumericDate, error) { return &x.iat, nil }

// GetNotBefore returns nbf, or nil when the token has none.
func (x *verification) GetNotBefore() (*jwt.NumericDate, error) {
	if !x.hasNbf {
		return nil, nil
	}
	return &x.nbf, nil
}

// GetIssuer returns iss.
func (x *verification) GetIssuer() (string, error) { return x.claims.Issuer, nil }

// GetSubject returns sub.
func (x *verification) GetSubject() (string, error) { return x.claims.Subject, nil }

// GetAudience returns aud.
func (x *verification) GetAudience() (jwt.ClaimStrings, error) { return x.claims.Audience, nil }

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

// rawSignatureLength is the base64url length of a 64-byte r||s.
const rawSignatureLength = 86

// maxHeaderMembers bounds the members kept from a header on the stack; a
// header with more still scans (the slice grows).
const maxHeaderMembers = 8

// checkHeader decodes the protected header and returns its kid.
func checkHeader(seg string) (string, error) {
	raw, err := strictRawURL.DecodeString(seg)
	if err != nil {
		return "", invalid(ErrMalformed, "header encoding")
	}
	var buf [maxHeaderMembers]member
	m, _, err := scanObject(string(raw), buf[:0])
	if err != nil {
		return "", invalid(ErrMalformed, "header: "+err.Error())
	}
	alg, _ := lookup(m, "alg")
	if alg, ok := jsonString(alg); !ok || alg != Algorithm {
		return "", invalid(ErrUnsupported, "alg must be ES256")
	}
	typ, _ := lookup(m, "typ")
	typ, ok := jsonString(typ)
	if !ok || !(strings.EqualFold(typ, AccessTokenType) || strings.EqualFold(typ, "application/"+AccessTokenType)) {
		return "", invalid(ErrUnsupported, "typ must be at+jwt")
	}
	if _, ok := lookup(m, "crit"); ok {
		return "", invalid(ErrUnsupported, "crit is not supported")
	}
	kid, _ := lookup(m, "kid")
	kid, ok = jsonString(kid)
	if !ok || kid == "" || len(kid) > maxKeyIDLength {
		return "", invalid(ErrMalformed, "kid is required")
	}
	return kid, nil
}

// maxClaimsMembers bounds the members kept from the claims on the stack.
const maxClaimsMembers = 16

// decodeClaims decodes the payload strictly into x: what golang-jwt does
// not check (duplicate names, integer NumericDates, required sub, jti, iat
// and sid, types of aud and roles). Strings are substrings of one copy of
// the payload.
func (x *verification) decodeClaims(seg string) error {
	raw, err := strictRawURL.DecodeString(seg)
	if err != nil {
		return invalid(ErrMalformed, "claims encoding")
	}
	var buf [maxClaimsMembers]member
	m, _, err := scanObject(string(raw), buf[:0])
	if err != nil {
		return invalid(ErrMalformed, "claims: "+err.Error())
	}
	c := &x.claims
	var ok bool
	str := func(name string, dst *string) bool {
		v, _ := lookup(m, name)
		*dst, ok = jsonString(v)
		return ok && *dst != ""
	}
	if !str("iss", &c.Issuer) || !str("sub", &c.Subject) || !str("jti", &c.ID) || !str("sid", &c.SessionID) {
		return invalid(ErrMalformed, "iss, sub, jti and sid must be non-empty strings")
	}
	aud, _ := lookup(m, "aud")
	if one, isString := jsonString(aud); isString {
		if one == "" {
			return invalid(ErrMalformed, msgAudience)
		}
		c.Audience = []string{one}
	} else if !isStringArray(aud) {
		return invalid(ErrMalformed, msgAudience)
	} else {
		x.rawAud = aud
	}
	rawExp, _ := lookup(m, "exp")
	rawIat, _ := lookup(m, "iat")
	exp, okExp := jsonNumericDate(rawExp)
	iat, okIat := jsonNumericDate(rawIat)
	if !okExp || !okIat {
		return invalid(ErrMalformed, "exp and iat must be integer NumericDates")
	}
	c.ExpiresAt, c.IssuedAt = time.Unix(exp, 0), time.Unix(iat, 0)
	x.exp.Time, x.iat.Time = c.ExpiresAt, c.IssuedAt
	if rawNbf, present := lookup(m, "nbf"); present {
		nbf, ok := jsonNumericDate(rawNbf)
		if !ok {
			return invalid(ErrMalformed, "nbf must be an integer NumericDate")
		}
		c.NotBefore = time.Unix(nbf, 0)
		x.nbf.Time, x.hasNbf = c.NotBefore, true
	}
	if rawRoles, present := lookup(m, "roles"); present {
		if !isStringArray(rawRoles) {
			return invalid(ErrMalformed, "roles must be an array of strings")
		}
		x.rawRoles = rawRoles
	}
	return nil
}

// msgAudience refuses an aud that is not a non-empty string or a non-empty
// array of them.
const msgAudience = "aud must be a non-empty string or array of strings"

// decodeArrays decodes the aud array and the roles that decodeClaims only
// checked the shape of. It runs after the signature verifies: arrays are
// the claims whose decoding allocates in proportion to their length (a
// slice of strings), and a forged token must not make the verifier
// allocate for what it carries.
func (x *verification) decodeArrays() error {
	if x.rawAud != "" {
		auds, ok := jsonStrings(x.rawAud)
		if !ok || len(auds) == 0 || slicesHasEmpty(auds) {
			return invalid(ErrMalformed, msgAudience)
		}
		x.claims.Audience = auds
	}
	if x.rawRoles != "" {
		var ok bool
		if x.claims.Roles, ok = jsonStrings(x.rawRoles); !ok {
			return invalid(ErrMalformed, "roles must be an array of strings")
		}
	}
	return nil
}

// classify maps the errors of golang-jwt's claims validator to this
// package's reasons.
func classify(err error) error {
	switch {
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
