package interceptors

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/auth"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/selector"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/latchauth/latch/internal/bearer"
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
	// Keys or revocations too old under the FailClosed stale policy.
	msgStale = "token verification unavailable: keys or revocations out of date; try again later"
	// The key source failed (WithKeySource): the token may be fine.
	msgKeysUnavailable = "signing keys unavailable; try again"
	msgNotInPolicy     = "method is not allowed by the access policy"
	msgMissingRoles    = "token lacks required role(s): "
)

// authFunc verifies the caller's token and applies the policy.
func (v *Verifier) authFunc(p *compiledPolicy) auth.AuthFunc {
	return func(ctx context.Context) (context.Context, error) {
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
		case errors.Is(err, ErrRevocationUnavailable):
			return nil, status.Error(codes.Unavailable, msgRevocationUnavailable)
		case err != nil && tokens.Reason(err) == nil:
			// No reason: the key lookup failed, not the token.
			return nil, status.Error(codes.Unavailable, msgKeysUnavailable)
		case err != nil:
			return nil, status.Error(codes.Unauthenticated, invalidMessage(err))
		}
		method, _ := grpc.Method(ctx)
		roles, allowed := p.required(method)
		if !allowed {
			return nil, status.Error(codes.PermissionDenied, msgNotInPolicy)
		}
		var missing []string
		for _, r := range roles {
			if !claims.HasRole(r) {
				missing = append(missing, r)
			}
		}
		if len(missing) > 0 {
			return nil, status.Error(codes.PermissionDenied, msgMissingRoles+strings.Join(missing, ", "))
		}
		return context.WithValue(ctx, claimsKey{}, claims), nil
	}
}

// invalidMessage names the reason a token failed (expired, wrong audience,
// ...): RFC 6750 §3.1 error_description territory, never the token.
func invalidMessage(err error) string {
	if r := tokens.Reason(err); r != nil {
		return fmt.Sprintf("%s: %v", msgInvalid, r)
	}
	return msgInvalid
}

func (p *compiledPolicy) needsAuth() selector.Matcher {
	return selector.MatchFunc(func(_ context.Context, cm interceptors.CallMeta) bool {
		return !p.isPublic(cm.FullMethod())
	})
}

// UnaryServerInterceptor verifies the bearer token of every unary call the
// policy does not mark public and puts its claims on the context. A nil
// policy is NewPolicy(): everything but health and reflection is denied.
func (v *Verifier) UnaryServerInterceptor(p *Policy) grpc.UnaryServerInterceptor {
	c := p.compile()
	return selector.UnaryServerInterceptor(auth.UnaryServerInterceptor(v.authFunc(c)), c.needsAuth())
}

// StreamServerInterceptor does for streams what UnaryServerInterceptor does
// for unary calls: the token is checked before the handler runs, and the
// claims are on the stream's context.
func (v *Verifier) StreamServerInterceptor(p *Policy) grpc.StreamServerInterceptor {
	c := p.compile()
	return selector.StreamServerInterceptor(auth.StreamServerInterceptor(v.authFunc(c)), c.needsAuth())
}
