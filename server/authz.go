package server

import (
	"context"
	"fmt"
	"log/slog"
	"slices"

	latchv1 "github.com/latchauth/latch/gen/latch/v1"
	"github.com/latchauth/latch/internal/bearer"
	"github.com/latchauth/latch/tokens"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionv1 "google.golang.org/grpc/reflection/grpc_reflection_v1"
	reflectionv1alpha "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
)

// access is who may call one RPC.
type access struct {
	// public: anyone, no credential is read.
	public bool
	// role is what the caller's own access token, which must be active and
	// for Latch's own audience (the issuer), has to carry.
	role string
	// admin marks AdminService: its refusals are logged as administration
	// events, at warn.
	admin bool
}

// accessTable is who may call each RPC Latch serves, keyed by full method
// name. A method it does not name is refused PERMISSION_DENIED before any
// handler runs, so a method added to a service stays closed until a rule
// here says otherwise. With introspectOpen, Introspect and
// WatchRevocations are public.
func accessTable(introspectOpen bool) map[string]access {
	anyone := access{public: true}
	introspector := access{role: RoleIntrospect}
	if introspectOpen {
		introspector = anyone
	}
	admin := access{role: RoleAdmin, admin: true}
	return map[string]access{
		latchv1.AuthService_Login_FullMethodName:            anyone,
		latchv1.AuthService_Refresh_FullMethodName:          anyone, // the refresh token is the credential
		latchv1.AuthService_Revoke_FullMethodName:           anyone, // possession of the token is the credential (RFC 7009)
		latchv1.AuthService_GetJWKS_FullMethodName:          anyone,
		latchv1.AuthService_Introspect_FullMethodName:       introspector,
		latchv1.AuthService_WatchRevocations_FullMethodName: introspector,

		latchv1.AdminService_CreateUser_FullMethodName:         admin,
		latchv1.AdminService_GetUser_FullMethodName:            admin,
		latchv1.AdminService_ListUsers_FullMethodName:          admin,
		latchv1.AdminService_UpdateUser_FullMethodName:         admin,
		latchv1.AdminService_SetPassword_FullMethodName:        admin,
		latchv1.AdminService_DeleteUser_FullMethodName:         admin,
		latchv1.AdminService_ListSessions_FullMethodName:       admin,
		latchv1.AdminService_RevokeSession_FullMethodName:      admin,
		latchv1.AdminService_RevokeUserSessions_FullMethodName: admin,
		latchv1.AdminService_RotateSigningKey_FullMethodName:   admin,
		latchv1.AdminService_ListSigningKeys_FullMethodName:    admin,

		healthpb.Health_Check_FullMethodName: anyone,
		healthpb.Health_List_FullMethodName:  anyone,
		healthpb.Health_Watch_FullMethodName: anyone,
		// Reflection (when served) reveals the API's shape, not any data.
		reflectionv1.ServerReflection_ServerReflectionInfo_FullMethodName:      anyone,
		reflectionv1alpha.ServerReflection_ServerReflectionInfo_FullMethodName: anyone,
	}
}

// msgNotInTable answers a call to a method the access table does not name.
const msgNotInTable = "method is not in Latch's access table"

type callerKey struct{}

// callerFrom returns the verified claims of the caller of a protected RPC,
// as the access interceptors put them on its context. ok is false on a
// public method.
func callerFrom(ctx context.Context) (tokens.Claims, bool) {
	c, ok := ctx.Value(callerKey{}).(tokens.Claims)
	return c, ok
}

// authorize applies method's rule to the call whose context is ctx. It
// returns the context the handler runs with: for a protected method, one
// carrying the verified caller (callerFrom).
func (s *Server) authorize(ctx context.Context, method string) (context.Context, error) {
	rule, ok := s.access[method]
	if !ok {
		s.log.LogAttrs(ctx, slog.LevelWarn, "method not in access table", slog.String("event", "caller_permission_denied"),
			slog.String("method", method), slog.String("reason", "method not in access table"), slog.String("peer", s.clientAddr(ctx).String()))
		return nil, s.toStatus(ctx, method, failure(codes.PermissionDenied, msgNotInTable))
	}
	if rule.public {
		return ctx, nil
	}
	c, err := s.checkCaller(ctx, method, rule)
	if err != nil {
		return nil, s.toStatus(ctx, method, err)
	}
	return context.WithValue(ctx, callerKey{}, c), nil
}

// checkCaller checks the caller's own access token, sent as
// "authorization: Bearer <token>" metadata: it must verify for Latch's own
// audience, be neither revoked nor in a revoked session, and carry
// rule.role. When its revocation cannot be read the call is refused, as
// toStatus maps the store's error (UNAVAILABLE for an unreachable backend,
// INTERNAL otherwise). A failed credential is charged to the client address's caller
// budget (and refused RESOURCE_EXHAUSTED once that is spent); a valid one
// never is, whatever role it lacks.
func (s *Server) checkCaller(ctx context.Context, method string, rule access) (tokens.Claims, error) {
	tok, err := bearer.FromIncomingContext(ctx)
	if err != nil {
		return tokens.Claims{}, s.unauthenticated(ctx, method, rule, err.Error(), failure(codes.Unauthenticated, err.Error()))
	}
	c, err := s.verifySelf(ctx, tok)
	if err != nil {
		reason := "token invalid"
		if r := tokens.Reason(err); r != nil {
			reason = r.Error()
		}
		return tokens.Claims{}, s.unauthenticated(ctx, method, rule, reason, failure(codes.Unauthenticated, msgBadCredential))
	}
	revoked, err := s.TokenRevoked(ctx, c)
	if err != nil {
		return tokens.Claims{}, fmt.Errorf("caller credential: %w", err)
	}
	if revoked {
		return tokens.Claims{}, s.unauthenticated(ctx, method, rule, "token revoked", failure(codes.Unauthenticated, msgBadCredential))
	}
	if !slices.Contains(c.Roles, rule.role) {
		s.refused(ctx, method, rule, "permission_denied", codes.PermissionDenied, "token lacks role",
			slog.String("user_id", c.Subject), slog.String("role", rule.role))
		return tokens.Claims{}, failure(codes.PermissionDenied, fmt.Sprintf("caller token lacks role %q", rule.role))
	}
	return c, nil
}

// unauthenticated logs and charges a refused credential and returns the
// error to answer: failed, or RESOURCE_EXHAUSTED once the address's caller
// budget is spent.
func (s *Server) unauthenticated(ctx context.Context, method string, rule access, reason string, failed error) error {
	err := s.chargeFailure(ctx, bucketCaller, LimiterProbeCaller, failed)
	code := codes.Unauthenticated
	if err != failed {
		code = codes.ResourceExhausted
	}
	s.refused(ctx, method, rule, "unauthenticated", code, reason)
	return err
}

// refused logs a refused call: event caller_<what>, or admin_<what> at
// warn for AdminService.
func (s *Server) refused(ctx context.Context, method string, rule access, what string, code codes.Code, reason string, attrs ...slog.Attr) {
	event, level := "caller_"+what, slog.LevelInfo
	if rule.admin {
		event, level = "admin_"+what, slog.LevelWarn
	}
	attrs = append([]slog.Attr{slog.String("event", event), slog.String("method", method), slog.String("code", code.String()),
		slog.String("reason", reason), slog.String("peer", s.clientAddr(ctx).String())}, attrs...)
	s.log.LogAttrs(ctx, level, "caller refused", attrs...)
}

// unaryAccess is the one unary interceptor that enforces the access table.
func (s *Server) unaryAccess(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	ctx, err := s.authorize(ctx, info.FullMethod)
	if err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

// streamAccess is the one stream interceptor that enforces the access
// table.
func (s *Server) streamAccess(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	ctx, err := s.authorize(ss.Context(), info.FullMethod)
	if err != nil {
		return err
	}
	return handler(srv, callerStream{ServerStream: ss, ctx: ctx})
}

// callerStream is a stream whose context carries the verified caller.
type callerStream struct {
	grpc.ServerStream
	ctx context.Context
}

// Context returns the stream's context with the caller on it.
func (c callerStream) Context() context.Context { return c.ctx }
