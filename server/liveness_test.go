package server_test

import (
	"testing"

	"github.com/latchauth/latch/server"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// TestGRPCLiveness: the liveness name answers SERVING while the process
// runs — during a storage outage, when the readiness names answer
// NOT_SERVING, and while draining — on Check and on Watch.
func TestGRPCLiveness(t *testing.T) {
	e, fs := newFaultyOpsEnv(t)
	hc := healthpb.NewHealthClient(e.conn)
	wantLive := func(step string) {
		t.Helper()
		if st, err := healthOf(t, e, server.LivenessService); err != nil || st != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("%s: health(%q) = %v, %v; want SERVING", step, server.LivenessService, st, err)
		}
	}
	wantLive("fresh server")
	watch, err := hc.Watch(ctxT(t), &healthpb.HealthCheckRequest{Service: server.LivenessService})
	if err != nil {
		t.Fatal(err)
	}
	if first, err := watch.Recv(); err != nil || first.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("Watch(%q) first = %v, %v; want SERVING", server.LivenessService, first, err)
	}

	fs.down.Store(true)
	wantReady(t, e, "storage down", false, "storage unavailable")
	wantLive("storage down")

	fs.down.Store(false)
	e.gs.StartDrain()
	wantReady(t, e, "draining", false, "draining")
	wantLive("draining")
}
