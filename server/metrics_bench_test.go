package server_test

import (
	"testing"

	latchv1 "github.com/latchauth/latch/gen/latch/v1"
	"github.com/latchauth/latch/server"
)

// BenchmarkMetricsOverhead measures GetJWKS (the cheapest RPC, so the
// interceptor's share is largest) over bufconn through the full chain,
// without and with the Prometheus interceptors and domain hooks. Compare
// the two as a ratio.
func BenchmarkMetricsOverhead(b *testing.B) {
	for _, on := range []bool{false, true} {
		name := map[bool]string{false: "off", true: "on"}[on]
		b.Run(name, func(b *testing.B) {
			var opts []server.Option
			if on { // a fresh registry per run: one Metrics serves one Server
				opts = append(opts, server.WithMetrics(server.NewMetrics()))
			}
			e := newOpsEnv(b, opsConfig{srvOpts: opts})
			ctx := ctxT(b)
			b.ReportAllocs()
			b.SetParallelism(8)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := e.client.GetJWKS(ctx, &latchv1.GetJWKSRequest{}); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
