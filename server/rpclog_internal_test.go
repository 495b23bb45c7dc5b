package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// testRPCLog is the server's logging interceptors with no trusted proxies.
func testRPCLog(log *slog.Logger, accessEvery uint64) (grpc.UnaryServerInterceptor, grpc.StreamServerInterceptor) {
	return rpcLog(log, (&Server{}).clientAddr, accessEvery)
}

func rpcLogCtx(t testing.TB) context.Context {
	t.Helper()
	ctx := peer.NewContext(context.Background(), &peer.Peer{Addr: &net.TCPAddr{IP: net.IPv4(10, 1, 2, 3), Port: 4567}})
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// TestRPCLogRecord: with the access log on, one record per finished call with the middleware's keys,
// the code's level, and the error text, but nothing from the request.
func TestRPCLogRecord(t *testing.T) {
	for _, tc := range []struct {
		err       error
		code, lvl string
	}{
		{nil, "OK", "INFO"},
		{status.Error(codes.Unauthenticated, "invalid credential"), "Unauthenticated", "INFO"},
		{status.Error(codes.ResourceExhausted, "slow down"), "ResourceExhausted", "WARN"},
		{status.Error(codes.Internal, "internal error"), "Internal", "ERROR"},
		{errors.New("plain"), "Unknown", "ERROR"},
	} {
		var buf bytes.Buffer
		unary, _ := testRPCLog(slog.New(slog.NewJSONHandler(&buf, nil)), 1)
		info := &grpc.UnaryServerInfo{FullMethod: "/latch.v1.AuthService/Introspect"}
		_, err := unary(rpcLogCtx(t), "request-secret", info, func(context.Context, any) (any, error) { return "response-secret", tc.err })
		if !errors.Is(err, tc.err) {
			t.Fatalf("interceptor changed the error: %v", err)
		}
		lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
		if len(lines) != 1 {
			t.Fatalf("%s: %d records, want 1:\n%s", tc.code, len(lines), buf.String())
		}
		if strings.Contains(buf.String(), "secret") {
			t.Errorf("record contains the payload: %s", buf.String())
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(lines[0]), &rec); err != nil {
			t.Fatal(err)
		}
		for k, want := range map[string]string{
			"msg": "finished call", "level": tc.lvl, "grpc.code": tc.code, "grpc.service": "latch.v1.AuthService",
			"grpc.method": "Introspect", "grpc.method_type": "unary", "peer.address": "10.1.2.3:4567",
			"protocol": "grpc", "grpc.component": "server", "peer": "10.1.2.3",
		} {
			if rec[k] != want {
				t.Errorf("%s: %s = %v, want %q", tc.code, k, rec[k], want)
			}
		}
		for _, k := range []string{"grpc.time_ms", "grpc.start_time", "grpc.request.deadline"} {
			if s, _ := rec[k].(string); s == "" {
				t.Errorf("%s: %s missing", tc.code, k)
			}
		}
		if _, has := rec["grpc.error"]; has != (tc.err != nil) {
			t.Errorf("%s: grpc.error present = %v", tc.code, has)
		}
	}
}

// TestRPCLogStreamType: stream records carry the stream's kind.
func TestRPCLogStreamType(t *testing.T) {
	var buf bytes.Buffer
	_, stream := testRPCLog(slog.New(slog.NewJSONHandler(&buf, nil)), 1)
	info := &grpc.StreamServerInfo{FullMethod: "/latch.v1.AuthService/WatchRevocations", IsServerStream: true}
	ss := fakeStream{ctx: rpcLogCtx(t)}
	if err := stream(nil, ss, info, func(any, grpc.ServerStream) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), `"grpc.method_type":"server_stream"`) || !strings.Contains(buf.String(), `"grpc.method":"WatchRevocations"`) {
		t.Errorf("stream record: %s", buf.String())
	}
}

// TestRPCLogLevelDisabled: below the handler's level nothing is written,
// but an error-level code still is.
func TestRPCLogLevelDisabled(t *testing.T) {
	var buf bytes.Buffer
	unary, _ := testRPCLog(slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelError})), 1)
	info := &grpc.UnaryServerInfo{FullMethod: "/latch.v1.AuthService/Introspect"}
	ctx := rpcLogCtx(t)
	_, _ = unary(ctx, nil, info, func(context.Context, any) (any, error) { return nil, nil })
	if buf.Len() != 0 {
		t.Errorf("OK call logged at level error: %s", buf.String())
	}
	_, _ = unary(ctx, nil, info, func(context.Context, any) (any, error) { return nil, status.Error(codes.Internal, "x") })
	if !strings.Contains(buf.String(), `"grpc.code":"Internal"`) {
		t.Errorf("INTERNAL not logged at level error: %q", buf.String())
	}
}

// TestRPCLogDefaultWritesOnlyProblems: without the access log, calls that
// end OK or with a client's mistake write nothing at info; denials, limits
// and server faults are written.
func TestRPCLogDefaultWritesOnlyProblems(t *testing.T) {
	info := &grpc.UnaryServerInfo{FullMethod: "/latch.v1.AuthService/Introspect"}
	for _, tc := range []struct {
		err   error
		wrote bool
	}{
		{nil, false},
		{status.Error(codes.Unauthenticated, "x"), false},
		{status.Error(codes.InvalidArgument, "x"), false},
		{status.Error(codes.PermissionDenied, "x"), true},
		{status.Error(codes.ResourceExhausted, "x"), true},
		{status.Error(codes.Unavailable, "x"), true},
		{status.Error(codes.Internal, "x"), true},
	} {
		var buf bytes.Buffer
		unary, _ := testRPCLog(slog.New(slog.NewJSONHandler(&buf, nil)), 0)
		_, _ = unary(rpcLogCtx(t), nil, info, func(context.Context, any) (any, error) { return nil, tc.err })
		if wrote := buf.Len() > 0; wrote != tc.wrote {
			t.Errorf("%v: record written = %v, want %v: %s", status.Code(tc.err), wrote, tc.wrote, buf.String())
		}
	}
}

type fakeStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (f fakeStream) Context() context.Context { return f.ctx }
