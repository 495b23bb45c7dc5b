package server

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	latchv1 "github.com/latchauth/latch/gen/latch/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"
)

// MaxRecvMsgSize bounds every request message. Larger requests are refused
// by gRPC with RESOURCE_EXHAUSTED before any handler runs.
const MaxRecvMsgSize = 64 << 10

// MaxHeaderListSize bounds the request metadata (headers) a client may send;
// grpc-go's default is 16 MiB. 16 KiB holds a bearer token many times over.
const MaxHeaderListSize = 16 << 10

// GRPCServer is a grpc.Server serving AuthService, grpc.health.v1 and,
// optionally, server reflection, through Latch's interceptor chain.
type GRPCServer struct {
	*grpc.Server
	health *health.Server
	auth   *Server
}

// GRPCOption configures NewGRPCServer.
type GRPCOption func(*grpcOptions)

type grpcOptions struct {
	reflection bool
	extra      []grpc.ServerOption
}

// WithReflection turns server reflection on or off. Default on (grpcurl
// needs it); reflection reveals the API's shape, not any data.
func WithReflection(on bool) GRPCOption { return func(o *grpcOptions) { o.reflection = on } }

// WithServerOptions appends grpc.ServerOptions (credentials, for example).
func WithServerOptions(opts ...grpc.ServerOption) GRPCOption {
	return func(o *grpcOptions) { o.extra = append(o.extra, opts...) }
}

// NewGRPCServer builds the gRPC server for s: AuthService and AdminService.
// Interceptor order, outermost first: logging (method, code, duration, peer
// — never payloads), then, for AdminService methods only, Latch's own
// interceptors requiring role admin (admin_auth.go), then recovery (a panic
// becomes INTERNAL "internal error"; the panic value and stack go to the
// log only).
func NewGRPCServer(s *Server, log *slog.Logger, opts ...GRPCOption) *GRPCServer {
	o := grpcOptions{reflection: true}
	for _, opt := range opts {
		opt(&o)
	}
	logger := logging.LoggerFunc(func(ctx context.Context, lvl logging.Level, msg string, fields ...any) {
		log.Log(ctx, slog.Level(lvl), msg, fields...)
	})
	logOpts := []logging.Option{logging.WithLogOnEvents(logging.FinishCall)}
	recoverOpts := []recovery.Option{recovery.WithRecoveryHandlerContext(func(ctx context.Context, p any) error {
		log.LogAttrs(ctx, slog.LevelError, "panic in handler", slog.String("event", "panic"),
			slog.String("panic", fmt.Sprint(p)), slog.String("stack", string(debug.Stack())))
		return status.Error(codes.Internal, msgInternal)
	})}
	serverOpts := append([]grpc.ServerOption{
		grpc.MaxRecvMsgSize(MaxRecvMsgSize),
		grpc.ForceServerCodecV2(newRequestCodec()),
		grpc.MaxHeaderListSize(MaxHeaderListSize),
		grpc.MaxConcurrentStreams(1024),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: 15 * time.Minute, Time: 2 * time.Minute, Timeout: 20 * time.Second}),
		grpc.ChainUnaryInterceptor(
			logging.UnaryServerInterceptor(logger, logOpts...),
			s.adminUnaryInterceptor(),
			recovery.UnaryServerInterceptor(recoverOpts...),
		),
		grpc.ChainStreamInterceptor(
			logging.StreamServerInterceptor(logger, logOpts...),
			s.adminStreamInterceptor(),
			recovery.StreamServerInterceptor(recoverOpts...),
		),
	}, o.extra...)
	gs := grpc.NewServer(serverOpts...)
	latchv1.RegisterAuthServiceServer(gs, s)
	latchv1.RegisterAdminServiceServer(gs, NewAdminServer(s))
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus(latchv1.AuthService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus(latchv1.AdminService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(gs, hs)
	if o.reflection {
		reflection.Register(gs)
	}
	return &GRPCServer{Server: gs, health: hs, auth: s}
}

// Drain marks every service NOT_SERVING (so load balancers stop sending
// work), ends WatchRevocations streams (their clients reconnect elsewhere),
// then stops gracefully, waiting for in-flight RPCs until ctx ends, when it
// stops hard.
func (g *GRPCServer) Drain(ctx context.Context) {
	g.health.Shutdown()
	g.auth.StopWatchers()
	defer g.auth.adminAuth.Close() // after the last admin call has finished
	done := make(chan struct{})
	go func() {
		g.GracefulStop()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		g.Stop()
		<-done
	}
}
