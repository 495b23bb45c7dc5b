package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"

	middleware "github.com/grpc-ecosystem/go-grpc-middleware/v2"
	latchv1 "github.com/latchauth/latch/gen/latch/v1"
	"github.com/latchauth/latch/internal/bearer"
	"github.com/latchauth/latch/storage"
	"github.com/latchauth/latch/tokens"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionv1 "google.golang.org/grpc/reflection/grpc_reflection_v1"
	reflectionv1alpha "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
)

// access is who may call one RPC: anyone (public), or a caller whose own
// access token is active, for Latch's own audience (the issuer) and
// carries role, or any role at all with anyRole (AccountService, where the
// token's subject acts on their own account only). admin marks
// AdminService, whose refusals are logged as administration events, at
// warn.
type access struct {
	public  bool
	role    string
	anyRole bool
	admin   bool
}

// accessTable is who may call each RPC Latch serves, keyed by full method
// name: every AdminService method needs role admin, every AccountService
// method the caller's own token with any role, and each other method is
// named here. A method the table does not name is refused
// PERMISSION_DENIED before any handler runs, so a method added to a service
// stays closed until a rule names it. With introspectOpen, Introspect and
// WatchRevocations are public.
func accessTable(introspectOpen bool) map[string]access {
	anyone, introspector := access{public: true}, access{role: RoleIntrospect}
	if introspectOpen {
		introspector = anyone
	}
	t := map[string]access{
		latchv1.AuthService_Login_FullMethodName:            anyone,
		latchv1.AuthService_Refresh_FullMethodName:          anyone, // the refresh token is the credential
		latchv1.AuthService_Revoke_FullMethodName:           anyone, // so is the token revoked (RFC 7009)
		latchv1.AuthService_GetJWKS_FullMethodName:          anyone,
		latchv1.AuthService_Introspect_FullMethodName:       introspector,
		latchv1.AuthService_WatchRevocations_FullMethodName: introspector,

		healthpb.Health_Check_FullMethodName: anyone,
		healthpb.Health_List_FullMethodName:  anyone,
		healthpb.Health_Watch_FullMethodName: anyone,
		// Reflection, when served, reveals the API's shape, not any data.
		reflectionv1.ServerReflection_ServerReflectionInfo_FullMethodName:      anyone,
		reflectionv1alpha.ServerReflection_ServerReflectionInfo_FullMethodName: anyone,
	}
	for _, m := range latchv1.AdminService_ServiceDesc.Methods {
		t["/"+latchv1.AdminService_ServiceDesc.ServiceName+"/"+m.MethodName] = access{role: RoleAdmin, admin: true}
	}
	for _, m := range latchv1.AccountService_ServiceDesc.Methods {
		t["/"+latchv1.AccountService_ServiceDesc.ServiceName+"/"+m.MethodName] = access{anyRole: true}
	}
	return t
}

type callerKey struct{}

// callerFrom returns the verified claims of a protected RPC's caller, put
// on its context by the access interceptors. ok is false on a public RPC.
func callerFrom(ctx context.Context) (tokens.Claims, bool) {
	c, ok := ctx.Value(callerKey{}).(tokens.Claims)
	return c, ok
}

// serveCaller runs fn for the caller the access table verified and turns
// its error into a status through the one mapper (toStatus), which logs it
// under the full method name; without a verified caller it refuses.
func serveCaller[Resp any](ctx context.Context, s *Server, fn func(caller tokens.Claims) (Resp, error)) (Resp, error) {
	err := failure(codes.Unauthenticated, msgBadCredential)
	if caller, ok := callerFrom(ctx); ok {
		var resp Resp
		if resp, err = fn(caller); err == nil {
			return resp, nil
		}
	}
	method, _ := grpc.Method(ctx)
	var zero Resp
	return zero, s.toStatus(ctx, method, err)
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
	wrapped := middleware.WrapServerStream(ss)
	wrapped.WrappedContext = ctx
	return handler(srv, wrapped)
}

// authorize applies method's rule and returns the context its handler runs
// with: for a protected method, one carrying the verified caller.
func (s *Server) authorize(ctx context.Context, method string) (context.Context, error) {
	rule, ok := s.access[method]
	if !ok {
		s.refused(ctx, method, rule, "permission_denied", "method not in access table")
		return nil, s.toStatus(ctx, method, failure(codes.PermissionDenied, "method is not in Latch's access table"))
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
// "authorization: Bearer <token>" metadata, against rule. A failed
// credential is charged to the client address's caller budget and refused
// RESOURCE_EXHAUSTED once that is spent; a valid one never is, whatever role
// it lacks. A revocation that cannot be read refuses the call with the
// store's error.
func (s *Server) checkCaller(ctx context.Context, method string, rule access) (tokens.Claims, error) {
	tok, err := bearer.FromIncomingContext(ctx)
	if err != nil {
		return tokens.Claims{}, s.badCredential(ctx, method, rule, err.Error(), err.Error())
	}
	c, err := s.verifySelf(ctx, tok)
	if err != nil {
		reason := "token invalid"
		if r := tokens.Reason(err); r != nil {
			reason = r.Error()
		}
		return tokens.Claims{}, s.badCredential(ctx, method, rule, reason, msgBadCredential)
	}
	revoked, err := s.TokenRevoked(ctx, c)
	if err != nil {
		return tokens.Claims{}, fmt.Errorf("caller credential: %w", err)
	}
	if revoked {
		return tokens.Claims{}, s.badCredential(ctx, method, rule, "token revoked", msgBadCredential)
	}
	if !rule.anyRole && !slices.Contains(c.Roles, rule.role) {
		s.refused(ctx, method, rule, "permission_denied", "token lacks role", slog.String("user_id", c.Subject), slog.String("role", rule.role))
		return tokens.Claims{}, failure(codes.PermissionDenied, fmt.Sprintf("caller token lacks role %q", rule.role))
	}
	if rule.admin {
		return c, s.adminNow(ctx, method, rule, c)
	}
	return c, nil
}

// adminNow checks that the account behind an administrator's token still
// exists, is enabled and holds RoleAdmin now: a demoted or disabled
// administrator's unexpired token does not administer.
func (s *Server) adminNow(ctx context.Context, method string, rule access, c tokens.Claims) error {
	u, err := s.store.GetUser(ctx, c.Subject)
	switch {
	case errors.Is(err, storage.ErrNotFound), err == nil && (u.Disabled || !slices.Contains(u.Roles, RoleAdmin)):
		s.refused(ctx, method, rule, "permission_denied", "not an enabled administrator", slog.String("actor", c.Subject))
		return failure(codes.PermissionDenied, msgNotAdmin)
	case err != nil:
		return fmt.Errorf("get calling admin %s: %w", c.Subject, err)
	}
	return nil
}

// badCredential logs a refused credential and charges it to the client
// address's caller budget: UNAUTHENTICATED msg, or RESOURCE_EXHAUSTED once
// the budget is spent.
func (s *Server) badCredential(ctx context.Context, method string, rule access, reason, msg string) error {
	s.refused(ctx, method, rule, "unauthenticated", reason)
	return s.chargeFailure(ctx, bucketCaller, LimiterProbeCaller, failure(codes.Unauthenticated, msg))
}

// refused logs a refused call as event caller_<what>, or admin_<what> at
// warn for AdminService.
func (s *Server) refused(ctx context.Context, method string, rule access, what, reason string, attrs ...slog.Attr) {
	event, level := "caller_"+what, slog.LevelInfo
	if rule.admin {
		event, level = "admin_"+what, slog.LevelWarn
	}
	attrs = append(attrs, slog.String("event", event), slog.String("method", method), slog.String("reason", reason),
		slog.String("peer", s.clientAddr(ctx).String()))
	s.log.LogAttrs(ctx, level, "caller refused", attrs...)
}
