package interceptors_test

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	latchv1 "github.com/latchauth/latch/gen/latch/v1"
	"github.com/latchauth/latch/interceptors"
	"github.com/latchauth/latch/internal/latchtest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/test/bufconn"
)

const issuer = latchtest.Issuer

// clock is a settable test clock for verifiers that run without a Latch.
type clock = latchtest.Clock

func newClock(start time.Time) *clock { return latchtest.NewClock(start) }

func ctxT(t testing.TB) context.Context { return latchtest.Context(t) }

// latchEnv is a real Latch (bbolt in a temp dir) over bufconn, with a
// client connection that counts the Refresh calls made through it.
type latchEnv struct {
	*latchtest.Latch
	conn    *grpc.ClientConn
	client  latchv1.AuthServiceClient
	refresh atomic.Int64 // Refresh calls made through conn
}

func newLatch(t *testing.T) *latchEnv {
	t.Helper()
	e := &latchEnv{Latch: latchtest.Start(t, latchtest.Options{ClockStart: time.Now().Truncate(time.Second)})}
	e.conn = e.Dial(grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if method == latchv1.AuthService_Refresh_FullMethodName {
			e.refresh.Add(1)
		}
		return invoker(ctx, method, req, reply, cc, opts...)
	}))
	e.client = latchv1.NewAuthServiceClient(e.conn)
	return e
}

// testService is a protected sibling service with a unary and a
// server-streaming method that report the caller's claims.
type testService struct {
	testpb.UnimplementedTestServiceServer
}

func (testService) UnaryCall(ctx context.Context, _ *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	c, ok := interceptors.ClaimsFromContext(ctx)
	if !ok {
		return &testpb.SimpleResponse{Username: "<no claims>"}, nil
	}
	return &testpb.SimpleResponse{Username: c.Subject}, nil
}

func (s testService) CacheableUnaryCall(ctx context.Context, r *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	return s.UnaryCall(ctx, r)
}

func (testService) EmptyCall(context.Context, *testpb.Empty) (*testpb.Empty, error) {
	return &testpb.Empty{}, nil
}

func (testService) StreamingOutputCall(_ *testpb.StreamingOutputCallRequest, st grpc.ServerStreamingServer[testpb.StreamingOutputCallResponse]) error {
	c, ok := interceptors.ClaimsFromContext(st.Context())
	body := "<no claims>"
	if ok {
		body = c.Subject
	}
	for range 2 {
		if err := st.Send(&testpb.StreamingOutputCallResponse{Payload: &testpb.Payload{Body: []byte(body)}}); err != nil {
			return err
		}
	}
	return nil
}

// sibling serves testService behind the interceptors and returns a client.
func sibling(t *testing.T, v *interceptors.Verifier, p *interceptors.Policy) testpb.TestServiceClient {
	return siblingB(t, v, p)
}

func siblingB(t testing.TB, v *interceptors.Verifier, p *interceptors.Policy) testpb.TestServiceClient {
	lis := bufconn.Listen(1 << 20)
	gs := grpc.NewServer(grpc.ChainUnaryInterceptor(v.UnaryServerInterceptor(p)), grpc.ChainStreamInterceptor(v.StreamServerInterceptor(p)))
	testpb.RegisterTestServiceServer(gs, testService{})
	go func() { _ = gs.Serve(lis) }()
	conn, err := grpc.NewClient("passthrough:///sibling",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		gs.Stop()
	})
	return testpb.NewTestServiceClient(conn)
}

func bearer(ctx context.Context, tok string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
}
