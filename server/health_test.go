package server_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	latchv1 "github.com/latchauth/latch/gen/latch/v1"
	"github.com/latchauth/latch/server"
	"github.com/latchauth/latch/storage"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// opsStore wraps the real store: ListSigningKeys fails while down is set
// (the readiness probe's read), and GetUserByEmail parks while hold is set
// (an in-flight Login), announcing itself on entered.
type opsStore struct {
	storage.Store
	down    atomic.Bool
	hold    atomic.Bool
	entered chan struct{}
	release chan struct{}
}

func (s *opsStore) ListSigningKeys(ctx context.Context) ([]storage.SigningKey, error) {
	if s.down.Load() {
		return nil, errors.New("injected: storage unreachable at /secret/path")
	}
	return s.Store.ListSigningKeys(ctx)
}

func (s *opsStore) CountLiveSessions(ctx context.Context, now time.Time) (int, error) {
	if s.down.Load() {
		return 0, errors.New("injected: count failed")
	}
	return s.Store.CountLiveSessions(ctx, now)
}

func (s *opsStore) GetUserByEmail(ctx context.Context, email string) (storage.User, error) {
	if s.hold.Load() {
		s.entered <- struct{}{}
		<-s.release
	}
	return s.Store.GetUserByEmail(ctx, email)
}

func newFaultyOpsEnv(t *testing.T, opts ...server.Option) (*opsEnv, *opsStore) {
	t.Helper()
	var fs *opsStore
	e := newOpsEnv(t, opsConfig{srvOpts: opts, wrappers: []wrap{func(s storage.Store) storage.Store {
		fs = &opsStore{Store: s, entered: make(chan struct{}, 1), release: make(chan struct{})}
		return fs
	}}})
	return e, fs
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func healthOf(t *testing.T, e *opsEnv, service string) (healthpb.HealthCheckResponse_ServingStatus, error) {
	t.Helper()
	resp, err := healthpb.NewHealthClient(e.conn).Check(ctxT(t), &healthpb.HealthCheckRequest{Service: service})
	return resp.GetStatus(), err
}

func wantReady(t *testing.T, e *opsEnv, step string, ready bool, reason string) {
	t.Helper()
	code, body := get(t, e.http.URL+"/readyz")
	wantCode, wantHealth := http.StatusOK, healthpb.HealthCheckResponse_SERVING
	if !ready {
		wantCode, wantHealth = http.StatusServiceUnavailable, healthpb.HealthCheckResponse_NOT_SERVING
	}
	if code != wantCode || !strings.Contains(body, reason) {
		t.Errorf("%s: /readyz = %d %q, want %d containing %q", step, code, body, wantCode, reason)
	}
	for _, svc := range []string{"", "latch.v1.AuthService"} {
		if st, err := healthOf(t, e, svc); err != nil || st != wantHealth {
			t.Errorf("%s: health(%q) = %v, %v; want %v", step, svc, st, err, wantHealth)
		}
	}
}

// TestReadiness: /readyz and grpc.health.v1 agree, and follow the store's
// reachability; /healthz (liveness) does not.
func TestReadiness(t *testing.T) {
	e, fs := newFaultyOpsEnv(t)
	wantReady(t, e, "fresh server", true, "ready")
	if _, err := healthOf(t, e, "no.such.Service"); status.Code(err) != codes.NotFound {
		t.Errorf("health of an unknown service: %v, want NOT_FOUND", err)
	}

	fs.down.Store(true)
	wantReady(t, e, "storage down", false, "storage unavailable")
	if code, _ := get(t, e.http.URL+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz while storage is down = %d, want 200 (the process is alive)", code)
	}
	_, body := get(t, e.http.URL+"/readyz")
	if strings.Contains(body, "/secret/path") {
		t.Errorf("/readyz leaks the store's error: %q", body)
	}
	if !strings.Contains(e.logs.String(), `"event":"storage_unavailable"`) {
		t.Errorf("storage failure not logged")
	}

	fs.down.Store(false)
	wantReady(t, e, "storage back", true, "ready")
	if n := strings.Count(e.logs.String(), `"event":"readiness_changed"`); n != 3 {
		t.Errorf("readiness_changed logged %d times, want 3 (ready, not ready, ready)", n)
	}
}

// TestGracefulDrain: StartDrain makes /readyz 503 and every health status
// NOT_SERVING (Watch streams are told), while RPCs still work; Drain lets
// an in-flight RPC finish before it returns.
func TestGracefulDrain(t *testing.T) {
	e, fs := newFaultyOpsEnv(t)
	e.addUser("alice@example.com", "alice-password")
	wantReady(t, e, "before drain", true, "ready")

	watch, err := healthpb.NewHealthClient(e.conn).Watch(ctxT(t), &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if first, err := watch.Recv(); err != nil || first.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("Watch first = %v, %v; want SERVING", first, err)
	}

	// An RPC in flight, parked inside the store.
	fs.hold.Store(true)
	type result struct {
		resp *latchv1.LoginResponse
		err  error
	}
	inflight := make(chan result, 1)
	go func() {
		resp, err := e.client.Login(context.Background(), &latchv1.LoginRequest{Email: "alice@example.com", Password: "alice-password"})
		inflight <- result{resp, err}
	}()
	<-fs.entered
	fs.hold.Store(false)

	e.gs.StartDrain()
	wantReady(t, e, "draining", false, "draining")
	if next, err := watch.Recv(); err != nil || next.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("Watch after StartDrain = %v, %v; want NOT_SERVING", next, err)
	}
	// Still serving work until the drain proper.
	if _, err := e.client.GetJWKS(ctxT(t), &latchv1.GetJWKSRequest{}); err != nil {
		t.Errorf("GetJWKS after StartDrain: %v", err)
	}

	drained := make(chan struct{})
	go func() {
		e.gs.Drain(ctxT(t))
		close(drained)
	}()
	select {
	case <-drained:
		t.Fatal("Drain returned while an RPC was in flight")
	case r := <-inflight:
		t.Fatalf("in-flight Login finished before it was released: %v", r.err)
	default:
	}
	close(fs.release)
	r := <-inflight
	if r.err != nil || r.resp.GetTokens().GetAccessToken() == "" {
		t.Errorf("in-flight Login during drain: %v, want tokens", r.err)
	}
	select {
	case <-drained:
	case <-ctxT(t).Done():
		t.Fatal("Drain did not return after the in-flight RPC finished")
	}
	// The Watch stream was ended, so it did not hold the graceful stop up.
	if _, err := watch.Recv(); status.Code(err) != codes.Unavailable {
		t.Errorf("Watch after Drain: %v, want UNAVAILABLE", err)
	}
	if code, _ := get(t, e.http.URL+"/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz after drain = %d, want 503", code)
	}
	if !strings.Contains(e.logs.String(), `"event":"draining"`) {
		t.Errorf("drain not logged")
	}
}
