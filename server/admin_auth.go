package server

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/selector"
	latchv1 "github.com/latchauth/latch/gen/latch/v1"
	latchauth "github.com/latchauth/latch/interceptors"
	"github.com/latchauth/latch/internal/verifier"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// adminPolicy is AdminService's access policy: role admin on every method
// of the service. Anything it does not name is denied (the interceptors
// fail closed), so a method added to the service later is admin-only until
// a rule says otherwise.
func adminPolicy() *latchauth.Policy {
	return latchauth.NewPolicy().Require("/"+latchv1.AdminService_ServiceDesc.ServiceName+"/", RoleAdmin)
}

// newAdminVerifier builds the verifier that guards AdminService with Latch's
// own interceptors package: it accepts only access tokens for Latch's own
// audience (the issuer), so that no token a relying party receives can
// administer Latch, and verifies them against the
// server's key ring as it is at each call (a rotation is seen at once) and
// checks every token's revocation in the store, as Introspect does, so a
// revoked admin session or a disabled admin is refused at once.
func (s *Server) newAdminVerifier(ctx context.Context) (*latchauth.Verifier, error) {
	v, err := latchauth.NewVerifier(ctx, latchauth.Config{Issuer: s.cfg.Issuer, Audience: []string{s.cfg.Issuer}},
		verifier.WithKeySource(s.KeySource()),
		verifier.WithRevocationCheck(s.TokenRevoked),
		latchauth.WithLeeway(s.cfg.Leeway),
		latchauth.WithClock(s.now),
		latchauth.WithLogger(s.log))
	if err != nil {
		return nil, fmt.Errorf("server: admin verifier: %w", err)
	}
	return v, nil
}

// isAdminService selects the calls the admin interceptors apply to: the
// methods of AdminService, and nothing else, so that AuthService keeps its
// own rules (public Login, role introspect for Introspect, ...).
var isAdminService = selector.MatchFunc(func(_ context.Context, cm interceptors.CallMeta) bool {
	return cm.Service == latchv1.AdminService_ServiceDesc.ServiceName
})

// adminUnaryInterceptor guards AdminService's unary methods with the
// interceptors' verification and policy. A refused credential is charged to
// the client address's caller budget (shared with Introspect's callers) and
// logged.
func (s *Server) adminUnaryInterceptor() grpc.UnaryServerInterceptor {
	authz := s.adminAuth.UnaryServerInterceptor(adminPolicy())
	guard := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		reached := false
		resp, err := authz(ctx, req, info, func(ctx context.Context, req any) (any, error) {
			reached = true
			return handler(ctx, req)
		})
		if !reached {
			return nil, s.adminRefused(ctx, info.FullMethod, err)
		}
		return resp, err
	}
	return selector.UnaryServerInterceptor(guard, isAdminService)
}

// adminStreamInterceptor does the same for any streaming method
// AdminService may gain.
func (s *Server) adminStreamInterceptor() grpc.StreamServerInterceptor {
	authz := s.adminAuth.StreamServerInterceptor(adminPolicy())
	guard := func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		reached := false
		err := authz(srv, ss, info, func(srv any, ss grpc.ServerStream) error {
			reached = true
			return handler(srv, ss)
		})
		if !reached {
			return s.adminRefused(ss.Context(), info.FullMethod, err)
		}
		return err
	}
	return selector.StreamServerInterceptor(guard, isAdminService)
}

// adminRefused logs a call the interceptors refused and returns its error;
// an invalid credential is charged to the address's caller budget, and
// answered RESOURCE_EXHAUSTED once that is spent.
func (s *Server) adminRefused(ctx context.Context, method string, err error) error {
	event := "admin_permission_denied"
	if status.Code(err) == codes.Unauthenticated {
		event = "admin_unauthenticated"
		if limited := s.chargeFailure(ctx, bucketCaller, LimiterProbeCaller, err); limited != err {
			err = s.toStatus(ctx, method, limited)
		}
	}
	s.log.LogAttrs(ctx, slog.LevelWarn, "administration refused", slog.String("event", event),
		slog.String("method", method), slog.String("code", status.Code(err).String()), slog.String("peer", s.clientAddr(ctx).String()))
	return err
}
