package server_test

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"testing"

	latchv1 "github.com/latchauth/latch/gen/latch/v1"
	"github.com/latchauth/latch/server"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/test/bufconn"
)

// Every protected RPC, unary and stream, AuthService and AdminService
// alike, answers a malformed authorization value with the same code and
// the same message naming what is wrong.
func TestCallerCredentialShape(t *testing.T) {
	e := newEnv(t, baseConfig())
	admin := latchv1.NewAdminServiceClient(e.conn)
	long := strings.Repeat("a", 9000)
	cases := []struct {
		name string
		md   []string
		msg  string
	}{
		{"missing", nil, `missing bearer token: send "authorization: Bearer <access token>"`},
		{"two values", []string{"authorization", "Bearer a.b.c", "authorization", "Bearer a.b.c"}, "more than one authorization value"},
		{"oversized", []string{"authorization", "Bearer " + long}, "bearer token longer than 8 KiB"},
		{"basic scheme", []string{"authorization", "Basic YWxpY2U6cHc="}, "authorization must use the Bearer scheme"},
		{"empty token", []string{"authorization", "Bearer "}, "empty bearer token"},
	}
	calls := map[string]func(context.Context) error{
		"Introspect": func(ctx context.Context) error {
			_, err := e.client.Introspect(ctx, &latchv1.IntrospectRequest{Token: "x"})
			return err
		},
		"WatchRevocations": func(ctx context.Context) error {
			w, err := e.client.WatchRevocations(ctx, &latchv1.WatchRevocationsRequest{})
			if err == nil {
				_, err = w.Recv()
			}
			return err
		},
		"ListUsers": func(ctx context.Context) error {
			_, err := admin.ListUsers(ctx, &latchv1.ListUsersRequest{})
			return err
		},
	}
	for _, c := range cases {
		for name, call := range calls {
			t.Run(c.name+"/"+name, func(t *testing.T) {
				ctx := metadata.AppendToOutgoingContext(ctxT(t), c.md...)
				wantStatus(t, call(ctx), codes.Unauthenticated, c.msg)
			})
		}
	}
	if logs := e.logs.String(); strings.Contains(logs, "YWxpY2U6cHc=") {
		t.Error("a credential reached the log")
	}
}

// countingTestService counts the calls that reach it.
type countingTestService struct {
	testgrpc.UnimplementedTestServiceServer
	reached atomic.Int32
}

func (s *countingTestService) EmptyCall(context.Context, *testgrpc.Empty) (*testgrpc.Empty, error) {
	s.reached.Add(1)
	return &testgrpc.Empty{}, nil
}

func (s *countingTestService) StreamingOutputCall(*testgrpc.StreamingOutputCallRequest, grpc.ServerStreamingServer[testgrpc.StreamingOutputCallResponse]) error {
	s.reached.Add(1)
	return nil
}

// A service served beside Latch's but absent from the access table is
// refused PERMISSION_DENIED before its handler runs, with or without a
// credential, unary and stream, from many clients at once; a method no
// service registers is UNIMPLEMENTED, answered by gRPC itself.
func TestMethodNotInAccessTableDenied(t *testing.T) {
	e := newEnv(t, baseConfig())
	e.addUser("root@example.com", "root-password", server.RoleAdmin, server.RoleIntrospect)
	root := e.loginSelf("root@example.com", "root-password")

	gs := server.NewGRPCServer(e.srv, slog.New(slog.NewJSONHandler(e.logs, nil)))
	svc := &countingTestService{}
	testgrpc.RegisterTestServiceServer(gs, svc)
	lis := bufconn.Listen(1 << 20)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	client := testgrpc.NewTestServiceClient(conn)

	const msg = "method is not in Latch's access table"
	ctxs := map[string]func(t *testing.T) context.Context{
		"no credential": func(t *testing.T) context.Context { return ctxT(t) },
		"admin":         func(t *testing.T) context.Context { return bearer(ctxT(t), root.GetAccessToken()) },
	}
	for name, ctx := range ctxs {
		t.Run(name, func(t *testing.T) {
			done := make(chan error, 16)
			for range 8 {
				go func() {
					_, err := client.EmptyCall(ctx(t), &testgrpc.Empty{})
					done <- err
				}()
				go func() {
					s, err := client.StreamingOutputCall(ctx(t), &testgrpc.StreamingOutputCallRequest{})
					if err == nil {
						_, err = s.Recv()
					}
					done <- err
				}()
			}
			for range 16 {
				wantStatus(t, <-done, codes.PermissionDenied, msg)
			}
		})
	}
	if n := svc.reached.Load(); n != 0 {
		t.Errorf("%d calls reached a handler the access table does not list", n)
	}
	err = conn.Invoke(ctxT(t), "/latch.v1.AuthService/NoSuchMethod", &latchv1.GetJWKSRequest{}, &latchv1.GetJWKSResponse{})
	wantStatus(t, err, codes.Unimplemented, "")
}
