package server

import (
	"context"
	"log/slog"
	"sync/atomic"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"google.golang.org/grpc"
)

// rpcLog returns go-grpc-middleware's logging interceptors, writing one
// record ("finished call") per finished RPC: method, code, duration, peer
// address, the client's address as resolved through the trusted proxies
// ("peer", as every other record of the request names it) and the verified
// client-certificate identity, never payloads or metadata. Levels follow
// the middleware's code-to-level mapping.
//
// Calls that end at warn or error level (a denial, a limit, an outage, a
// server fault) are always written. Calls that end at info level (OK, or a
// client's own mistake, which has its own audit event where it matters)
// are the access log: off when accessEvery is 0, else one in every
// accessEvery of them, so that a busy server does not write a line per
// request. Metrics count every call either way.
//
// It sits outside recovery in the chain (logging → auth → recovery), so a
// recovered panic is logged as the INTERNAL it became.
func rpcLog(log *slog.Logger, client func(context.Context) clientAddress, accessEvery uint64) (grpc.UnaryServerInterceptor, grpc.StreamServerInterceptor) {
	var infoCalls atomic.Uint64
	logger := logging.LoggerFunc(func(ctx context.Context, lvl logging.Level, msg string, fields ...any) {
		level := slog.Level(lvl)
		if level < slog.LevelWarn && (accessEvery == 0 || infoCalls.Add(1)%accessEvery != 0) {
			return
		}
		log.Log(ctx, level, msg, fields...)
	})
	opts := []logging.Option{
		logging.WithLogOnEvents(logging.FinishCall),
		logging.WithFieldsFromContext(func(ctx context.Context) logging.Fields {
			f := logging.Fields{"peer", client(ctx).String()}
			if id, ok := PeerIdentityFromContext(ctx); ok {
				f = append(f, "peer_identity", id.String())
			}
			return f
		}),
	}
	return logging.UnaryServerInterceptor(logger, opts...), logging.StreamServerInterceptor(logger, opts...)
}
