package server_test

import (
	"testing"

	latchv1 "github.com/latchauth/latch/gen/latch/v1"
	"github.com/latchauth/latch/server"
)

// BenchmarkIntrospect measures Introspect of a hot (cached) access token by
// an authenticated caller through the full interceptor chain over bufconn,
// from 64 goroutines.
func BenchmarkIntrospect(b *testing.B) {
	introspectParallel(b, baseConfig(), 32)
}

// introspectParallel introspects one active access token by an
// authenticated caller on a server with cfg, from parallelism × GOMAXPROCS
// goroutines; the logins (argon2id hashes) are not timed.
func introspectParallel(b *testing.B, cfg server.Config, parallelism int) {
	e := newEnv(b, cfg)
	e.addUser("alice@example.com", "alice-password")
	ctx := e.introspector()
	tok := e.login("alice@example.com", "alice-password").GetAccessToken()
	b.ReportAllocs()
	b.SetParallelism(parallelism)
	b.ResetTimer()
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

// BenchmarkRefresh rotates 32 independent refresh chains concurrently
// through the full chain over bufconn (durable: every rotation is fsynced
// before the reply).
func BenchmarkRefresh(b *testing.B) {
	refreshChains(b, newEnv(b, baseConfig()))
}

// refreshChains rotates 32 refresh chains of one service account
// concurrently on e, one Refresh RPC per iteration, as 32 pods sharing it
// would (a person's account would be limited to fewer logins at once).
func refreshChains(b *testing.B, e *env) {
	e.addUser("alice@example.com", "alice-password", "service")
	const chains = 32
	tokens := make(chan string, chains)
	for range chains {
		tokens <- e.login("alice@example.com", "alice-password").GetRefreshToken()
	}
	ctx := ctxT(b)
	b.ReportAllocs()
	b.SetParallelism(chains / 2)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		rt := <-tokens
		for pb.Next() {
			resp, err := e.client.Refresh(ctx, &latchv1.RefreshRequest{RefreshToken: rt})
			if err != nil {
				b.Error(err)
				return
			}
			rt = resp.GetTokens().GetRefreshToken()
		}
	})
}

// BenchmarkIntrospectUncached is BenchmarkIntrospect with the verify cache
// off: every call verifies two tokens (the caller's credential and the
// target) with ECDSA, as `latch bench`'s "verify cache off" row does.
func BenchmarkIntrospectUncached(b *testing.B) {
	cfg := baseConfig()
	cfg.VerifyCacheSize = -1
	introspectParallel(b, cfg, 16)
}
