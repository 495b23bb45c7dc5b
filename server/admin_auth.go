package server

import (
	"context"
	"fmt"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/selector"
	latchv1 "github.com/latchauth/latch/gen/latch/v1"
	latchauth "github.com/latchauth/latch/interceptors"
	"google.golang.org/grpc"
)

// adminPolicy is AdminService's access policy: role admin on every method
// of the service. Anything it does not name is denied (the interceptors
// fail closed), so a method added to the service later is admin-only until
// a rule says otherwise.
func adminPolicy() *latchauth.Policy {
	return latchauth.NewPolicy().Require("/"+latchv1.AdminService_ServiceDesc.ServiceName+"/", RoleAdmin)
}

// newAdminVerifier builds the verifier that guards AdminService with Latch's
// own interceptors package: it verifies callers' access tokens against the
// server's key ring as it is at each call (a rotation is seen at once) and
// checks every token's revocation in the store, as Introspect does, so a
// revoked admin session or a disabled admin is refused at once.
func (s *Server) newAdminVerifier(ctx context.Context) (*latchauth.Verifier, error) {
	v, err := latchauth.NewVerifier(ctx,
		latchauth.WithKeySource(s.KeySource()),
		latchauth.WithRevocationCheck(s.TokenRevoked),
		latchauth.WithIssuer(s.cfg.Issuer),
		latchauth.WithAudience(s.cfg.Audiences...),
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

// adminUnaryInterceptor guards AdminService's unary methods.
func (s *Server) adminUnaryInterceptor() grpc.UnaryServerInterceptor {
	return selector.UnaryServerInterceptor(s.adminAuth.UnaryServerInterceptor(adminPolicy()), isAdminService)
}

// adminStreamInterceptor guards any streaming method AdminService may gain.
func (s *Server) adminStreamInterceptor() grpc.StreamServerInterceptor {
	return selector.StreamServerInterceptor(s.adminAuth.StreamServerInterceptor(adminPolicy()), isAdminService)
}
