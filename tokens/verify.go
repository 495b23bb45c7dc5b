package tokens

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
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
	keys   KeySource
	parser *jwt.Parser
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
	if len(audiences) == 0 || slices.Contains(audiences, "") {
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
		// The one parser, built once: ES256 only, canonical base64url,
		// the issuer and audiences, exp required, iat checked, the leeway
		// and the injected clock.
		parser: jwt.NewParser(
			jwt.WithValidMethods([]string{Algorithm}),
			jwt.WithStrictDecoding(),
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
// golang-jwt's parser decodes the token, checks the ES256 signature with a
// key from the Verifier's KeySource and validates the claims. Around it,
// Verify adds what Latch promises and the parser does not check: the size
// cap, the compact form, the header (precheck) and the claims' shape
// (verification.UnmarshalJSON), all before the key lookup, as the reasons
// of the attack corpus require.
func (v *Verifier) Verify(ctx context.Context, tok string) (Claims, error) {
	if err := precheck(tok); err != nil {
		return Claims{}, err
	}
	var x verification
	var keyErr error
	_, err := v.parser.ParseWithClaims(tok, &x, func(t *jwt.Token) (any, error) {
		var key *ecdsa.PublicKey
		key, keyErr = v.lookupKey(ctx, t, &x)
		if keyErr != nil {
			return nil, keyErr
		}
		return key, nil
	})
	switch {
	case keyErr != nil:
		return Claims{}, keyErr
	case err != nil:
		return Claims{}, classify(err)
	}
	return x.claims, nil
}

// lookupKey is the parser's keyfunc: it returns the key named by the
// token's kid from the Verifier's KeySource, and from nowhere else (jku,
// x5u, jwk and x5c are never read). The parser calls it once the claims
// are decoded into x; claims that are JSON null are never handed to
// x.UnmarshalJSON, so they are refused here, before the lookup.
func (v *Verifier) lookupKey(ctx context.Context, t *jwt.Token, x *verification) (*ecdsa.PublicKey, error) {
	if !x.decoded {
		return nil, invalid(ErrMalformed, "claims: "+errNotObject.Error())
	}
	kid, ok := t.Header["kid"].(string)
	if !ok {
		return nil, invalid(ErrMalformed, "kid is required") // precheck refused it already
	}
	key, err := v.keys.PublicKey(ctx, kid)
	switch {
	case errors.Is(err, ErrUnknownKey), err == nil && key == nil:
		return nil, invalid(ErrUnknownKey, "")
	case err != nil:
		return nil, fmt.Errorf("%w: key lookup: %w", ErrInvalidToken, err)
	case key.Curve == nil || key.Curve.Params() != elliptic.P256().Params():
		// No ES256 signature verifies under another curve's key.
		return nil, invalid(ErrSignature, "")
	}
	return key, nil
}

// rawSignatureLength is the base64url length of a 64-byte r||s.
const rawSignatureLength = 86

// maxHeaderMembers bounds the members kept from a header on the stack; a
// header with more still decodes (the slice grows).
const maxHeaderMembers = 8

// precheck refuses, before golang-jwt's parser runs, what Latch refuses
// and the parser would accept or give another reason for: a token over
// MaxTokenLength, anything but three non-empty parts in the base64url
// alphabet (the decoder alone would skip newlines), a header that is not
// strict JSON (duplicate names, invalid UTF-8, trailing data) or carries
// another alg or typ, crit, or no usable kid, and a signature that is not
// the canonical encoding of a 64-byte r||s (RFC 7518 §3.4, never DER).
func precheck(tok string) error {
	if len(tok) > MaxTokenLength {
		return invalid(ErrMalformed, "too long")
	}
	h, rest, ok1 := strings.Cut(tok, ".")
	p, sig, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || h == "" || p == "" || sig == "" ||
		!isBase64URL(h) || !isBase64URL(p) || !isBase64URL(sig) { // also refuses a fourth part
		return invalid(ErrMalformed, "not a compact JWS")
	}
	if err := checkHeader(h); err != nil {
		return err
	}
	// Strict decoding refuses the encodings of the 64 bytes whose 4 spare
	// bits are set, so that each signature has one accepted string.
	if len(sig) != rawSignatureLength {
		return invalid(ErrSignature, "want 64-byte r||s")
	}
	if _, err := strictRawURL.DecodeString(sig); err != nil {
		return invalid(ErrSignature, "want 64-byte r||s")
	}
	return nil
}

// checkHeader decodes the protected header strictly and checks alg, typ,
// crit and kid.
func checkHeader(seg string) error {
	raw, err := strictRawURL.DecodeString(seg)
	if err != nil {
		return invalid(ErrMalformed, "header encoding")
	}
	var buf [maxHeaderMembers]member
	m, err := strictObject(raw, buf[:0])
	if err != nil {
		return invalid(ErrMalformed, "header: "+err.Error())
	}
	if alg, ok := jsonString(lookup(m, "alg")); !ok || alg != Algorithm {
		return invalid(ErrUnsupported, "alg must be ES256")
	}
	typ, ok := jsonString(lookup(m, "typ"))
	if !ok || !(strings.EqualFold(typ, AccessTokenType) || strings.EqualFold(typ, "application/"+AccessTokenType)) {
		return invalid(ErrUnsupported, "typ must be at+jwt")
	}
	if lookup(m, "crit") != nil {
		return invalid(ErrUnsupported, "crit is not supported")
	}
	kid, ok := jsonString(lookup(m, "kid"))
	if !ok || kid == "" || len(kid) > maxKeyIDLength {
		return invalid(ErrMalformed, "kid is required")
	}
	return nil
}

// verification holds one token's claims as golang-jwt's parser decodes
// them: strictly (UnmarshalJSON), with the array members decoded only once
// the signature has verified (GetAudience and Validate).
type verification struct {
	claims        Claims
	exp, iat, nbf jwt.NumericDate
	hasNbf        bool
	// The array members as received, nil when absent.
	rawAud, rawRoles json.RawMessage
	// decoded is set once UnmarshalJSON has accepted the claims.
	decoded bool
}

var _ jwt.ClaimsValidator = (*verification)(nil)

// maxClaimsMembers bounds the members kept from the claims on the stack.
const maxClaimsMembers = 16

// UnmarshalJSON decodes the claims strictly: what golang-jwt does not
// check (duplicate names, integer NumericDates, required sub, jti, iat and
// sid, types of aud and roles). The parser calls it before the key lookup.
func (x *verification) UnmarshalJSON(data []byte) error {
	var buf [maxClaimsMembers]member
	m, err := strictObject(data, buf[:0])
	if err != nil {
		return invalid(ErrMalformed, "claims: "+err.Error())
	}
	c := &x.claims
	var ok bool
	str := func(name string, dst *string) bool {
		*dst, ok = jsonString(lookup(m, name))
		return ok && *dst != ""
	}
	if !str("iss", &c.Issuer) || !str("sub", &c.Subject) || !str("jti", &c.ID) || !str("sid", &c.SessionID) {
		return invalid(ErrMalformed, "iss, sub, jti and sid must be non-empty strings")
	}
	aud := lookup(m, "aud")
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
	exp, okExp := jsonNumericDate(lookup(m, "exp"))
	iat, okIat := jsonNumericDate(lookup(m, "iat"))
	if !okExp || !okIat {
		return invalid(ErrMalformed, "exp and iat must be integer NumericDates")
	}
	c.ExpiresAt, c.IssuedAt = time.Unix(exp, 0), time.Unix(iat, 0)
	x.exp.Time, x.iat.Time = c.ExpiresAt, c.IssuedAt
	if rawNbf := lookup(m, "nbf"); rawNbf != nil {
		nbf, ok := jsonNumericDate(rawNbf)
		if !ok {
			return invalid(ErrMalformed, "nbf must be an integer NumericDate")
		}
		c.NotBefore = time.Unix(nbf, 0)
		x.nbf.Time, x.hasNbf = c.NotBefore, true
	}
	if rawClient := lookup(m, "client_id"); rawClient != nil {
		if c.ClientID, ok = jsonString(rawClient); !ok {
			return invalid(ErrMalformed, "client_id must be a string")
		}
	}
	if rawRoles := lookup(m, "roles"); rawRoles != nil {
		if !isStringArray(rawRoles) {
			return invalid(ErrMalformed, "roles must be an array of strings")
		}
		x.rawRoles = rawRoles
	}
	x.decoded = true
	return nil
}

// msgAudience refuses an aud that is not a non-empty string or a non-empty
// array of them.
const msgAudience = "aud must be a non-empty string or array of strings"

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

// GetAudience returns aud, decoding an aud array. The parser's validator
// calls it only after the signature verifies: arrays are the claims whose
// decoding allocates in proportion to their length (a slice of strings),
// and a forged token must not make the verifier allocate for what it
// carries.
func (x *verification) GetAudience() (jwt.ClaimStrings, error) {
	if x.rawAud != nil {
		auds, ok := jsonStrings(x.rawAud)
		if !ok || len(auds) == 0 || slices.Contains(auds, "") {
			return nil, invalid(ErrMalformed, msgAudience)
		}
		x.claims.Audience, x.rawAud = auds, nil
	}
	return x.claims.Audience, nil
}

// Validate decodes the roles once the signature has verified (see
// GetAudience); golang-jwt's validator calls it after its own checks.
func (x *verification) Validate() error {
	if x.rawRoles != nil {
		var ok bool
		if x.claims.Roles, ok = jsonStrings(x.rawRoles); !ok {
			return invalid(ErrMalformed, "roles must be an array of strings")
		}
	}
	return nil
}

// classify maps the errors of golang-jwt's parser, past the precheck, to
// this package's reasons. A reason of this package's own (from
// UnmarshalJSON, GetAudience or Validate) comes first, as those checks
// come before the parser's claim checks.
func classify(err error) error {
	var ve *verifyError
	switch {
	case errors.As(err, &ve):
		return ve
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return invalid(ErrSignature, "")
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
