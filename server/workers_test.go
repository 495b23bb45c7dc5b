package server_test

import (
	"runtime/metrics"
	"testing"

	latchv1 "github.com/latchauth/latch/gen/latch/v1"
)

// TestRPCsRunOnReusedGoroutines: the gRPC server serves RPCs on goroutines
// it keeps, so a call does not start a goroutine whose stack then grows by
// copying through the handler chain (a tenth of the server's CPU on the
// Introspect hot path when every RPC had a goroutine of its own). Counted
// with the runtime's goroutines-created metric over sequential calls.
func TestRPCsRunOnReusedGoroutines(t *testing.T) {
	e := newEnv(t, baseConfig())
	e.addUser("alice@example.com", "alice-password")
	ctx := e.introspector()
	tok := e.login("alice@example.com", "alice-password").GetAccessToken()
	introspect := func() {
		t.Helper()
		resp, err := e.client.Introspect(ctx, &latchv1.IntrospectRequest{Token: tok})
		if err != nil || !resp.GetActive() {
			t.Fatalf("Introspect = %v, %v; want active", resp, err)
		}
	}
	introspect() // the caller's and the target's verification are cached from here on
	sample := []metrics.Sample{{Name: "/sched/goroutines-created:goroutines"}}
	metrics.Read(sample)
	before := sample[0].Value.Uint64()
	const calls = 500
	for range calls {
		introspect()
	}
	metrics.Read(sample)
	if created := sample[0].Value.Uint64() - before; created > calls/10 {
		t.Errorf("%d goroutines created for %d sequential RPCs; want RPCs served on the server's kept goroutines (at most %d new)", created, calls, calls/10)
	}
}
