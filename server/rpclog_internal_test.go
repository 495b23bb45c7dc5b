package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

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
		l := rpcLogger{log: slog.New(slog.NewJSONHandler(&buf, nil)), accessEvery: 1}
		info := &grpc.UnaryServerInfo{FullMethod: "/latch.v1.AuthService/Introspect"}
		_, err := l.unary(rpcLogCtx(t), "request-secret", info, func(context.Context, any) (any, error) { return "response-secret", tc.err })
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
			"protocol": "grpc", "grpc.component": "server",
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
	l := rpcLogger{log: slog.New(slog.NewJSONHandler(&buf, nil)), accessEvery: 1}
	info := &grpc.StreamServerInfo{FullMethod: "/latch.v1.AuthService/WatchRevocations", IsServerStream: true}
	ss := fakeStream{ctx: rpcLogCtx(t)}
	if err := l.stream(nil, ss, info, func(any, grpc.ServerStream) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), `"grpc.method_type":"server_stream"`) || !strings.Contains(buf.String(), `"grpc.method":"WatchRevocations"`) {
		t.Errorf("stream record: %s", buf.String())
	}
}

// TestRPCLogLevelDisabled: below the handler's level nothing is written (the
// point of the level check), but an error-level code still is.
func TestRPCLogLevelDisabled(t *testing.T) {
	var buf bytes.Buffer
	l := rpcLogger{log: slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelError})), accessEvery: 1}
	info := &grpc.UnaryServerInfo{FullMethod: "/latch.v1.AuthService/Introspect"}
	ctx := rpcLogCtx(t)
	_, _ = l.unary(ctx, nil, info, func(context.Context, any) (any, error) { return nil, nil })
	if buf.Len() != 0 {
		t.Errorf("OK call logged at level error: %s", buf.String())
	}
	_, _ = l.unary(ctx, nil, info, func(context.Context, any) (any, error) { return nil, status.Error(codes.Internal, "x") })
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
		l := rpcLogger{log: slog.New(slog.NewJSONHandler(&buf, nil)), accessCalls: new(atomic.Uint64)}
		_, _ = l.unary(rpcLogCtx(t), nil, info, func(context.Context, any) (any, error) { return nil, tc.err })
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

// BenchmarkRPCLog compares the per-call cost of our logging interceptor with
// go-grpc-middleware's (configured as Latch used it) at info (a record is
// written, to io.Discard) and at error (OK calls are dropped).
func BenchmarkRPCLog(b *testing.B) {
	info := &grpc.UnaryServerInfo{FullMethod: "/latch.v1.AuthService/Introspect"}
	handler := func(context.Context, any) (any, error) { return nil, nil }
	for _, lvl := range []slog.Level{slog.LevelInfo, slog.LevelError} {
		log := slog.New(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: lvl}))
		mw := logging.UnaryServerInterceptor(logging.LoggerFunc(func(ctx context.Context, l logging.Level, msg string, fields ...any) {
			log.Log(ctx, slog.Level(l), msg, fields...)
		}), logging.WithLogOnEvents(logging.FinishCall), logging.WithFieldsFromContext(func(ctx context.Context) logging.Fields {
			if id, ok := PeerIdentityFromContext(ctx); ok {
				return logging.Fields{"peer_identity", id.String()}
			}
			return nil
		}))
		ours := rpcLogger{log: log, accessEvery: 1}.unary
		for name, ic := range map[string]grpc.UnaryServerInterceptor{"middleware": mw, "latch": ours} {
			b.Run(name+"/"+lvl.String(), func(b *testing.B) {
				ctx := rpcLogCtx(b)
				b.ReportAllocs()
				for b.Loop() {
					_, _ = ic(ctx, nil, info, handler)
				}
			})
		}
	}
}
