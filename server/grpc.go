package server

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	latchv1 "github.com/latchauth/latch/gen/latch/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"
)

// MaxRecvMsgSize bounds every request message. Larger requests are refused
// by gRPC with RESOURCE_EXHAUSTED before any handler runs.
const MaxRecvMsgSize = 64 << 10

// healthInterval is how often the server's readiness is checked for
// grpc.health.v1 Watch streams (Check always checks).
const healthInterval = 5 * time.Second

// MaxHeaderListSize bounds the request metadata (headers) a client may send;
// grpc-go's default is 16 MiB. 16 KiB holds a bearer token many times over.
const MaxHeaderListSize = 16 << 10

// GRPCServer is a grpc.Server serving AuthService, grpc.health.v1 and,
// optionally, server reflection, through Latch's interceptor chain.
type GRPCServer struct {
	*grpc.Server
	health   *healthServer
	auth     *Server
	pollOnce sync.Once
	stopPoll context.CancelFunc
	pollCtx  context.Context
}

// GRPCOption configures NewGRPCServer.
type GRPCOption func(*grpcOptions)

type grpcOptions struct {
	reflection  bool
	extra       []grpc.ServerOption
	transport   Transport
	tls         *tls.Config
	accessEvery int
}

// WithReflection turns server reflection on or off. Default on (grpcurl
// needs it); reflection reveals the API's shape, not any data.
func WithReflection(on bool) GRPCOption { return func(o *grpcOptions) { o.reflection = on } }

// WithAccessLog turns on the per-call access log: one record
// ("finished call") for every oneIn calls that end OK or with a client's
// own mistake (codes logged at info). Default 0: no such records, only
// the audit events and the records of calls ending at warn or error level
// (denials, limits, outages, server faults), which are always written.
// 1 writes every call; a negative value is treated as 0. The records hold
// no payloads or metadata.
func WithAccessLog(oneIn int) GRPCOption {
	return func(o *grpcOptions) { o.accessEvery = max(oneIn, 0) }
}

// WithServerOptions appends grpc.ServerOptions (credentials, for example).
func WithServerOptions(opts ...grpc.ServerOption) GRPCOption {
	return func(o *grpcOptions) { o.extra = append(o.extra, opts...) }
}

// NewGRPCServer builds the gRPC server for s: AuthService, AdminService and
// AccountService.
// Interceptor order, outermost first: metrics (when s has a Metrics),
// logging (rpclog.go: method, code, duration, peer, verified
// client-certificate identity — never payloads; calls ending OK only with
// WithAccessLog), then recovery (a panic, in the handler or in the caller
// check, becomes INTERNAL "internal error"; the panic value and stack go
// to the log only), then the access table (authz.go: every RPC's rule,
// deny by default). grpc.health.v1
// answers from s.Ready, and SERVING for LivenessService.
func NewGRPCServer(s *Server, log *slog.Logger, opts ...GRPCOption) *GRPCServer {
	o := grpcOptions{reflection: true, transport: DefaultTransport()}
	for _, opt := range opts {
		opt(&o)
	}
	rpcLog := rpcLogger{log: log, client: s.clientAddr, accessEvery: uint64(o.accessEvery), accessCalls: new(atomic.Uint64)}
	recoverOpts := []recovery.Option{recovery.WithRecoveryHandlerContext(func(ctx context.Context, p any) error {
		log.LogAttrs(ctx, slog.LevelError, "panic in handler", slog.String("event", "panic"),
			slog.String("panic", fmt.Sprint(p)), slog.String("stack", string(debug.Stack())))
		return status.Error(codes.Internal, msgInternal)
	})}
	var unary []grpc.UnaryServerInterceptor
	var stream []grpc.StreamServerInterceptor
	if s.metrics != nil {
		unary = append(unary, s.metrics.grpc.UnaryServerInterceptor())
		stream = append(stream, s.metrics.grpc.StreamServerInterceptor())
	}
	unary = append(unary, rpcLog.unary, recovery.UnaryServerInterceptor(recoverOpts...), s.unaryAccess)
	stream = append(stream, rpcLog.stream, recovery.StreamServerInterceptor(recoverOpts...), s.streamAccess)
	serverOpts := append([]grpc.ServerOption{
		grpc.MaxRecvMsgSize(MaxRecvMsgSize),
		grpc.MaxHeaderListSize(MaxHeaderListSize),
		grpc.MaxConcurrentStreams(o.transport.MaxConcurrentStreams),
		// Kept goroutines serve the RPCs, so a call runs on a stack already
		// grown through the interceptor chain and handler rather than on a
		// fresh goroutine whose stack grows by copying on every call. An
		// RPC that finds every worker busy (16 per core leaves room for
		// handlers waiting on a commit's fsync) gets a goroutine of its own.
		grpc.NumStreamWorkers(uint32(16 * runtime.GOMAXPROCS(0))),
		grpc.KeepaliveEnforcementPolicy(o.transport.Enforcement),
		grpc.KeepaliveParams(o.transport.Keepalive),
		grpc.ChainUnaryInterceptor(unary...),
		grpc.ChainStreamInterceptor(stream...),
	}, o.extra...)
	if o.tls != nil {
		serverOpts = append(serverOpts, grpc.Creds(handshakeLogger{TransportCredentials: credentials.NewTLS(o.tls), log: log}))
	}
	gs := grpc.NewServer(serverOpts...)
	latchv1.RegisterAuthServiceServer(gs, s)
	latchv1.RegisterAdminServiceServer(gs, &adminServer{s: s})
	latchv1.RegisterAccountServiceServer(gs, &accountServer{s: s})
	hs := newHealthServer(s, func() []string {
		names := []string{""}
		for name := range gs.GetServiceInfo() {
			if name != healthpb.Health_ServiceDesc.ServiceName {
				names = append(names, name)
			}
		}
		return names
	})
	healthpb.RegisterHealthServer(gs, hs)
	if o.reflection {
		reflection.Register(gs)
	}
	if s.metrics != nil {
		s.metrics.grpc.InitializeMetrics(gs)
	}
	pollCtx, stopPoll := context.WithCancel(context.Background())
	return &GRPCServer{Server: gs, health: hs, auth: s, pollCtx: pollCtx, stopPoll: stopPoll}
}

// Serve accepts connections on lis (see grpc.Server.Serve) and, from the
// first call on, keeps the health statuses in step with the server's
// readiness for Watch streams.
func (g *GRPCServer) Serve(lis net.Listener) error {
	g.pollOnce.Do(func() { go g.health.watchReadiness(g.pollCtx, healthInterval) })
	return g.Server.Serve(lis)
}

// StartDrain reports the server as stopping without refusing anything yet:
// grpc.health.v1 answers NOT_SERVING for every service and /readyz 503, so
// that load balancers move new work elsewhere. Drain calls it; call it
// earlier to give balancers time to notice before connections close.
func (g *GRPCServer) StartDrain() {
	g.auth.SetDraining()
	g.health.Shutdown()
	g.stopPoll()
}

// Stop stops the server at once (see grpc.Server.Stop).
func (g *GRPCServer) Stop() {
	g.stopPoll()
	g.Server.Stop()
}

// GracefulStop stops the server after in-flight RPCs finish (see
// grpc.Server.GracefulStop). Drain is the complete sequence.
func (g *GRPCServer) GracefulStop() {
	g.stopPoll()
	g.Server.GracefulStop()
}

// Drain marks every service NOT_SERVING (so load balancers stop sending
// work), ends WatchRevocations and health Watch streams (their clients
// reconnect elsewhere), then stops gracefully, waiting for in-flight RPCs until ctx ends, when it
// stops hard.
func (g *GRPCServer) Drain(ctx context.Context) {
	g.StartDrain()
	g.auth.StopWatchers()
	g.health.stopWatch()
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
