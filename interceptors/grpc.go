package interceptors

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/auth"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/latchauth/latch/internal/bearer"
	"github.com/latchauth/latch/internal/verifier"
	"github.com/latchauth/latch/tokens"
)

type claimsKey struct{}

// ClaimsFromContext returns the claims of the token the interceptors
// verified for this call. ok is false on public methods and outside an
// intercepted call.
func ClaimsFromContext(ctx context.Context) (Claims, bool) {
	c, ok := ctx.Value(claimsKey{}).(Claims)
	return c, ok
}

// ContextWithClaims returns ctx carrying c, as the interceptors do; for
// handler tests.
func ContextWithClaims(ctx context.Context, c Claims) context.Context {
	return context.WithValue(ctx, claimsKey{}, c)
}

// Client-visible messages: they say what is wrong, never the token.
const (
	msgInvalid = "invalid bearer token"
	msgRevoked = "bearer token revoked"
	// The revocation check failed: fail closed, and say it is worth
	// retrying (the token itself may be fine).
	msgRevocationUnavailable = "revocation state unavailable; try again"
	// Keys or revocations too old, and WithFailOpen not given.
	msgStale = "token verification unavailable: keys or revocations out of date; try again later"
	// The key source failed (inside Latch): the token may be fine.
	msgKeysUnavailable = "signing keys unavailable; try again"
	msgNotInPolicy     = "method is not allowed by the access policy"
	msgMissingRoles    = "token lacks required role(s): "
)

// AuthFunc returns a go-grpc-middleware v2 auth.AuthFunc that applies p
// (nil: NewPolicy()) to each call, for services that compose their own
// chain with auth.UnaryServerInterceptor and auth.StreamServerInterceptor:
// a public method passes without a token; any other needs a valid bearer
// token with the roles p requires, whose claims it puts on the context
// (ClaimsFromContext). p is copied: later changes to it have no effect.
func (v *Verifier) AuthFunc(p *Policy) auth.AuthFunc {
	c := p.compile()
	return func(ctx context.Context) (context.Context, error) {
		method, _ := grpc.Method(ctx)
		if c.isPublic(method) {
			return ctx, nil
		}
		tok, err := bearer.FromIncomingContext(ctx)
		if err != nil {
			return nil, status.Error(codes.Unauthenticated, err.Error())
		}
		claims, err := v.Verify(ctx, tok)
		switch {
		case errors.Is(err, ErrRevoked):
			return nil, status.Error(codes.Unauthenticated, msgRevoked)
		case errors.Is(err, ErrStale):
			return nil, status.Error(codes.Unavailable, msgStale)
		case errors.Is(err, verifier.ErrRevocationUnavailable):
			return nil, status.Error(codes.Unavailable, msgRevocationUnavailable)
		case err != nil && tokens.Reason(err) == nil:
			// No reason: the key lookup failed, not the token.
			return nil, status.Error(codes.Unavailable, msgKeysUnavailable)
		case err != nil:
			// The reason (expired, wrong audience, ...) is RFC 6750 §3.1
			// error_description territory; it never holds the token.
			return nil, status.Error(codes.Unauthenticated, fmt.Sprintf("%s: %v", msgInvalid, tokens.Reason(err)))
		}
		roles, allowed := c.required(method)
		if !allowed {
			return nil, status.Error(codes.PermissionDenied, msgNotInPolicy)
		}
		if !slices.ContainsFunc(roles, func(r string) bool { return !claims.HasRole(r) }) {
			return context.WithValue(ctx, claimsKey{}, claims), nil
		}
		missing := slices.DeleteFunc(slices.Clone(roles), claims.HasRole)
		return nil, status.Error(codes.PermissionDenied, msgMissingRoles+strings.Join(missing, ", "))
	}
}

// UnaryServerInterceptor verifies the bearer token of every unary call
// that p does not mark public and puts its claims on the context: AuthFunc
// in go-grpc-middleware's auth interceptor. A nil p is NewPolicy():
// everything but health and reflection is denied.
func (v *Verifier) UnaryServerInterceptor(p *Policy) grpc.UnaryServerInterceptor {
	return auth.UnaryServerInterceptor(v.AuthFunc(p))
}

// StreamServerInterceptor does for streams what UnaryServerInterceptor does
// for unary calls: the token is checked before the handler runs, and the
// claims are on the stream's context.
func (v *Verifier) StreamServerInterceptor(p *Policy) grpc.StreamServerInterceptor {
	return auth.StreamServerInterceptor(v.AuthFunc(p))
}
