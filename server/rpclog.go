package server

import (
	"context"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// rpcLogger writes one structured record per finished RPC: method, code,
// duration, peer and the verified client-certificate identity, never
// payloads or metadata. The keys and the code-to-level mapping are
// go-grpc-middleware's logging interceptor's (grpc.service, grpc.method,
// grpc.code, grpc.time_ms, peer.address, ...), so log pipelines built for
// that interceptor read these records too.
//
// Calls that end at warn or error level (a denial, a limit, an outage, a
// server fault) are always written. Calls that end at info level (OK, or a
// client's own mistake, which has its own audit event where it matters)
// are the access log: off unless accessEvery is set, then one in every
// accessEvery of them, so that a busy server does not write a line per
// request. Metrics count every call either way.
//
// The level is checked before anything is built, so a record that the
// handler would drop costs nothing. It sits outside recovery in the chain
// (logging → auth → recovery), so a recovered panic is logged as the
// INTERNAL it became.
type rpcLogger struct {
	log *slog.Logger
	// client resolves the client's address through the trusted proxies
	// (Server.clientAddr); logged as "peer" beside the transport's
	// "peer.address", as every other record of the request names it.
	client func(context.Context) clientAddress
	// accessEvery is the access log's sampling: 0 writes no info-level
	// record, n writes one for every n info-level calls.
	accessEvery uint64
	// accessCalls counts the info-level calls the sampling is taken from.
	accessCalls *atomic.Uint64
}

// rpcLevel is go-grpc-middleware's DefaultServerCodeToLevel.
func rpcLevel(err error) (slog.Level, string) {
	code := status.Code(err)
	switch code {
	case codes.OK, codes.Canceled, codes.InvalidArgument, codes.NotFound, codes.AlreadyExists, codes.Unauthenticated:
		return slog.LevelInfo, code.String()
	case codes.DeadlineExceeded, codes.PermissionDenied, codes.ResourceExhausted, codes.FailedPrecondition,
		codes.Aborted, codes.OutOfRange, codes.Unavailable:
		return slog.LevelWarn, code.String()
	default: // Unknown, Unimplemented, Internal, DataLoss and anything new
		return slog.LevelError, code.String()
	}
}

func (l rpcLogger) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	start := time.Now()
	resp, err := handler(ctx, req)
	l.finished(ctx, info.FullMethod, "unary", start, err)
	return resp, err
}

func (l rpcLogger) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	start := time.Now()
	err := handler(srv, ss)
	typ := "bidi_stream"
	switch {
	case info.IsServerStream && !info.IsClientStream:
		typ = "server_stream"
	case info.IsClientStream && !info.IsServerStream:
		typ = "client_stream"
	}
	l.finished(ss.Context(), info.FullMethod, typ, start, err)
	return err
}

// finished logs the record for a call that started at start and ended
// with err. Nothing is built when the level is disabled.
func (l rpcLogger) finished(ctx context.Context, fullMethod, typ string, start time.Time, err error) {
	lvl, code := rpcLevel(err)
	if !l.log.Enabled(ctx, lvl) || (lvl < slog.LevelWarn && !l.sampled()) {
		return
	}
	elapsed := time.Since(start)
	service, method := splitMethod(fullMethod)
	attrs := make([]slog.Attr, 0, 12)
	attrs = append(attrs,
		slog.String("protocol", "grpc"),
		slog.String("grpc.component", "server"),
		slog.String("grpc.service", service),
		slog.String("grpc.method", method),
		slog.String("grpc.method_type", typ))
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		attrs = append(attrs, slog.String("peer.address", p.Addr.String()))
	}
	if l.client != nil {
		attrs = append(attrs, slog.String("peer", l.client(ctx).String()))
	}
	attrs = append(attrs, slog.String("grpc.start_time", start.Format(time.RFC3339)))
	if d, ok := ctx.Deadline(); ok {
		attrs = append(attrs, slog.String("grpc.request.deadline", d.Format(time.RFC3339)))
	}
	if id, ok := PeerIdentityFromContext(ctx); ok {
		attrs = append(attrs, slog.String("peer_identity", id.String()))
	}
	attrs = append(attrs, slog.String("grpc.code", code))
	if err != nil {
		attrs = append(attrs, slog.String("grpc.error", err.Error()))
	}
	ms := float32(elapsed.Nanoseconds()/1000) / 1000
	attrs = append(attrs, slog.String("grpc.time_ms", strconv.FormatFloat(float64(ms), 'g', -1, 32)))
	l.log.LogAttrs(ctx, lvl, "finished call", attrs...)
}

// sampled reports whether this info-level call is one the access log
// writes.
func (l rpcLogger) sampled() bool {
	switch {
	case l.accessEvery == 0:
		return false
	case l.accessEvery == 1:
		return true
	default:
		return l.accessCalls.Add(1)%l.accessEvery == 0
	}
}

// splitMethod splits "/pkg.Service/Method" into its service and method.
func splitMethod(full string) (service, method string) {
	full = strings.TrimPrefix(full, "/")
	if i := strings.LastIndexByte(full, '/'); i >= 0 {
		return full[:i], full[i+1:]
	}
	return "unknown", full
}
