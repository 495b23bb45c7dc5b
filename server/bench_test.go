package server_test

import (
	"testing"

	latchv1 "github.com/latchauth/latch/gen/latch/v1"
)

// BenchmarkIntrospect measures Introspect of a hot (cached) access token by
// an authenticated caller through the full interceptor chain over bufconn,
// from 64 goroutines.
func BenchmarkIntrospect(b *testing.B) {
	e := newEnv(b, baseConfig())
	e.addUser("alice@example.com", "alice-password")
	ctx := e.introspector()
	tok := e.login("alice@example.com", "alice-password").GetAccessToken()
	b.ReportAllocs()
	b.SetParallelism(32)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := e.client.Introspect(ctx, &latchv1.IntrospectRequest{Token: tok})
			if err != nil || !resp.GetActive() {
				b.Error(err)
				return
			}
		}
	})
}
